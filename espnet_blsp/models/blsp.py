"""BLSPModel: speech -> frozen encoder -> adapter -> frozen LLM -> LM loss."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.batch import LLMBatch, assemble, generate, response_logits, text_slots
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
        ctc_weight: Weight of an auxiliary CTC loss (not in the paper; 0 turns
            it off) that scores each speech embedding against the LLM's own
            token embeddings and the transcript's tokens: a direct signal of
            what was said, which the LM loss only gives through the whole
            LLM. Needs the ``transcript`` data. (In the CPU demo's 300-step
            runs it did not help.)
        kd_weight: Weight of BLSP-KD's distillation loss (arXiv 2405.19041):
            the KL divergence from the LLM's next-token distributions given
            the transcript (the teacher) to those given the speech, on every
            response token; the LM loss keeps ``1 - ctc_weight - kd_weight``.
            Needs the ``transcript`` data. (In the CPU demo's 300-step runs
            it did not help either.)
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
        ctc_weight: float = 0.0,
        kd_weight: float = 0.0,
        extract_feats_in_collect_stats: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.use_chat_template = use_chat_template
        self.instruction = instruction
        self.prompt = self.make_prompt(instruction)
        if ctc_weight + kd_weight > 1:
            raise ValueError(f"ctc_weight + kd_weight must be <= 1, got {ctc_weight} + {kd_weight}")
        self.ctc_weight = ctc_weight
        self.kd_weight = kd_weight
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
        transcript: Optional[torch.Tensor] = None,
        transcript_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """LM loss of the target response given the speech.

        Args:
            speech: (B, T) waveform or (B, T, D) cached encoder frames.
            speech_lengths: (B,)
            text: (B, L) target token ids (the LLM's continuation), padded.
            text_lengths: (B,)
            transcript: (B, L') transcript token ids, for ``ctc_weight``/``kd_weight``.
            transcript_lengths: (B,)

        Returns:
            Loss, stats and the batch weight, as ESPnet's trainer expects.
        """
        slots = self.speech_slots(speech, speech_lengths)
        targets = [t[:n].tolist() for t, n in zip(text, text_lengths.tolist())]
        logits, target, _ = response_logits(self.llm, slots, self.prompt, targets)
        lm_loss = torch.nn.functional.cross_entropy(logits, target)
        stats = dict(acc=(logits.argmax(-1) == target).float().mean(), ppl=lm_loss.detach().exp())
        losses = {"lm_loss": (1 - self.ctc_weight - self.kd_weight, lm_loss)}
        if self.ctc_weight > 0 or self.kd_weight > 0:
            if transcript is None:
                raise ValueError("ctc_weight or kd_weight > 0 needs the transcript data (name 'transcript')")
            if self.ctc_weight > 0:
                losses["ctc_loss"] = (self.ctc_weight, self.ctc_loss(slots, transcript, transcript_lengths))
            if self.kd_weight > 0:
                losses["kd_loss"] = (self.kd_weight, self.kd_loss(logits, transcript, transcript_lengths, targets))
            stats.update({name: value.detach() for name, (_, value) in losses.items()})
        loss = sum(w * value for w, value in losses.values())
        stats["loss"] = loss.detach()
        batch_size = torch.tensor(len(slots), device=loss.device)
        return force_gatherable((loss, stats, batch_size), loss.device)

    def ctc_loss(
        self, slots: List[torch.Tensor], transcript: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """CTC of the transcript tokens over the speech embeddings, scored by
        their dot products with the LLM's (frozen) token embeddings; the
        end-of-turn token, never in a transcript, is the blank."""
        table = self.llm.model.get_input_embeddings().weight
        x = torch.nn.utils.rnn.pad_sequence(slots, batch_first=True)
        logits = x.float() @ table.float().t()
        log_probs = logits.log_softmax(-1).transpose(0, 1)
        in_lengths = torch.tensor([s.size(0) for s in slots], device=x.device)
        return torch.nn.functional.ctc_loss(
            log_probs, transcript.clamp(min=0), in_lengths, lengths,
            blank=self.prompt.end, zero_infinity=True,
        )

    def kd_loss(
        self,
        logits: torch.Tensor,
        transcript: torch.Tensor,
        lengths: torch.Tensor,
        targets: List[List[int]],
    ) -> torch.Tensor:
        """Mean KL(teacher || student) per response token, where the teacher is
        the same frozen LLM reading the transcript instead of the speech."""
        tok = self.llm.tokenizer
        texts = [tok.decode(t[:n].tolist()) for t, n in zip(transcript, lengths.tolist())]
        with torch.no_grad():
            teacher, _, _ = response_logits(
                self.llm, self.text_slots(texts, self.prompt), self.prompt, targets
            )
        return torch.nn.functional.kl_div(
            logits.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean"
        )

    def collect_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, torch.Tensor]:
        # Nothing is normalised: collect_stats only needs the data shapes.
        return {}

    # ---- decoding ---------------------------------------------------------------
    def generate(self, slots: Sequence[torch.Tensor], prompt: Prompt, **kwargs) -> List[str]:
        """See :func:`espnet_blsp.llm.batch.generate`."""
        return generate(self.llm, slots, prompt, **kwargs)
