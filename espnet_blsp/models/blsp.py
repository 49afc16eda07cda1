"""BLSPModel: speech -> frozen encoder -> adapter -> frozen LLM -> LM loss."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.batch import LLMBatch, assemble, generate, response_nll, text_slots
from espnet_blsp.llm.prompt import CONTINUATION_INSTRUCTION, Prompt, build_prompt
from espnet_blsp.utils.frozen import frozen_state_dict_hooks


class BLSPModel(AbsESPnetModel):
    """Behavior alignment of continuation writing (arXiv 2309.00916).

    The speech takes the place of the transcript in the LLM's prompt and the
    adapter learns to make the LLM answer as it did for the transcript.

    Args:
        encoder: Frozen speech encoder.
        adapter: The trainable modality adapter.
        llm: Frozen causal LM.
        instruction: Training instruction with a ``<speech>`` slot.
        use_chat_template: Prompt through the LLM's chat template if any.
        extract_feats_in_collect_stats: ESPnet flag; shapes need no model.
    """

    @typechecked
    def __init__(
        self,
        encoder: AbsSpeechEncoder,
        adapter: AbsAdapter,
        llm: AbsLLM,
        instruction: str = CONTINUATION_INSTRUCTION,
        use_chat_template: bool = True,
        extract_feats_in_collect_stats: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.use_chat_template = use_chat_template
        self.instruction = instruction
        self.prompt = self.make_prompt(instruction)
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats
        frozen_state_dict_hooks(self)

    def make_prompt(self, instruction: str) -> Prompt:
        """The LLM prompt for another instruction (with a ``<speech>`` slot)."""
        return build_prompt(self.llm.tokenizer, instruction, self.use_chat_template)

    # ---- slots: what stands where the transcript would -------------------------
    def speech_slots(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> List[torch.Tensor]:
        """Speech -> one (n_i, D_llm) embedding sequence per utterance."""
        feats, feats_lengths = self.encoder(speech, speech_lengths)
        embeds, lengths = self.adapter(feats, feats_lengths)
        return [e[:n] for e, n in zip(embeds, lengths.tolist())]

    def text_slots(self, texts: Sequence[str], prompt: Prompt) -> List[torch.Tensor]:
        """Transcripts -> their token embeddings (the Text+LLM path)."""
        return text_slots(self.llm, texts, prompt)

    def assemble(self, slots, prompt: Prompt, targets=None, left_pad: bool = False) -> LLMBatch:
        """See :func:`espnet_blsp.llm.batch.assemble`."""
        return assemble(self.llm, slots, prompt, targets, left_pad)

    # ---- losses -----------------------------------------------------------------
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """LM loss of the target response given the speech.

        Args:
            speech: (B, T) waveform or (B, T, D) cached encoder frames.
            speech_lengths: (B,)
            text: (B, L) target token ids (the LLM's continuation), padded.
            text_lengths: (B,)

        Returns:
            Loss, stats and the batch weight, as ESPnet's trainer expects.
        """
        slots = self.speech_slots(speech, speech_lengths)
        targets = [t[:n].tolist() for t, n in zip(text, text_lengths.tolist())]
        nll, _, correct = response_nll(self.llm, slots, self.prompt, targets)
        loss = nll.mean()
        stats = dict(
            loss=loss.detach(), acc=correct.float().mean(), ppl=loss.detach().exp()
        )
        batch_size = torch.tensor(len(slots), device=loss.device)
        return force_gatherable((loss, stats, batch_size), loss.device)

    def collect_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, torch.Tensor]:
        # Nothing is normalised: collect_stats only needs the data shapes.
        return {}

    # ---- decoding ---------------------------------------------------------------
    def generate(self, slots: Sequence[torch.Tensor], prompt: Prompt, **kwargs) -> List[str]:
        """See :func:`espnet_blsp.llm.batch.generate`."""
        return generate(self.llm, slots, prompt, **kwargs)
