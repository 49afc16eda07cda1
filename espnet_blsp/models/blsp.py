"""BLSPModel: speech -> frozen encoder -> adapter -> frozen LLM -> LM loss."""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.adapters.ctc_compress import compress_runs
from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.llm.batch import Row, generate, response_logits
from espnet_blsp.llm.prompt import SPEECH, TEXT_SLOTS, Prompt, PromptSpec, build_prompt
from espnet_blsp.llm.task_mix import build_tasks
from espnet_blsp.losses.ctc import TokenCTC
from espnet_blsp.losses.kd import kd_loss
from espnet_blsp.utils.dtype import resolve_dtype
from espnet_blsp.utils.frozen import frozen_state_dict_hooks


class BLSPModel(AbsESPnetModel):
    """Behavior alignment of continuation writing (arXiv 2309.00916).

    The speech takes the place of the transcript in the LLM's prompt and the
    adapter learns to make the LLM answer as it did for the transcript. The
    prompt may hold further named slots (e.g. ``<asr_hyp>``, filled with the
    data of that name), and several tasks may be mixed (``tasks``).

    Args:
        encoder: Frozen speech encoder.
        adapter: The trainable modality adapter.
        llm: The LLM (frozen, or with trainable LoRA weights).
        instruction: The training prompt (default: continuation writing),
            answered with the ``response`` data: a name from
            ``llm.prompt.INSTRUCTIONS``, text with a ``<speech>`` slot, or
            chat turns.
        tasks: Instead of ``instruction``, several (instruction, target,
            weight) tasks mixed per utterance (see ``llm.task_mix``).
        use_chat_template: Prompt through the LLM's chat template if any.
        ctc_weight: Weight of a CTC loss of the transcript over the adapter's
            outputs in the LLM's token space (``losses.ctc``; not in the
            paper; 0 turns it off). Needs the ``transcript`` data. At 1 the
            LLM is not run at all: a cheap pre-alignment of the adapter.
        ctc_negatives: Random tokens the CTC scores besides the batch's.
        ctc_compress: Feed the LLM one embedding per CTC token instead of
            one per frame (needs a CTC-trained head, e.g. from pre-alignment).
        kd_weight: Weight of BLSP-KD's distillation loss (arXiv 2405.19041):
            KL from the LLM's next-token distributions given the transcript
            (the teacher, run as the pretrained LLM) to those given the
            speech, on every response token; the LM loss keeps
            ``1 - ctc_weight - kd_weight``. Needs the ``transcript`` data.
        adapter_loss_weight: Weight of the adapter's own losses (e.g. CIF's
            quantity loss), added on top.
        adapter_dtype: Compute dtype of the adapter: "float32", "bfloat16"
            (autocast: its matmuls and attention in bfloat16; weights,
            gradients and the optimizer's state stay float32) or "auto"
            (bfloat16 where the hardware computes it natively). The frozen
            encoder has its own ``encoder_conf.dtype``.
        extract_feats_in_collect_stats: ESPnet flag; shapes need no model.
    """

    @typechecked
    def __init__(
        self,
        encoder: AbsSpeechEncoder,
        adapter: AbsAdapter,
        llm: AbsLLM,
        instruction: Optional[PromptSpec] = None,
        tasks: Optional[List[Dict]] = None,
        use_chat_template: bool = True,
        ctc_weight: float = 0.0,
        ctc_negatives: int = 4096,
        ctc_compress: bool = False,
        kd_weight: float = 0.0,
        adapter_loss_weight: float = 1.0,
        adapter_dtype: str = "float32",
        extract_feats_in_collect_stats: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.use_chat_template = use_chat_template
        self.tasks = build_tasks(llm.tokenizer, instruction, tasks, use_chat_template)
        if ctc_weight + kd_weight > 1:
            raise ValueError(f"ctc_weight + kd_weight must be <= 1, got {ctc_weight} + {kd_weight}")
        self.ctc_weight = ctc_weight
        self.kd_weight = kd_weight
        self.lm_weight = round(1 - ctc_weight - kd_weight, 6)
        self.adapter_loss_weight = adapter_loss_weight
        self.adapter_dtype = resolve_dtype(adapter_dtype)
        self.ctc_compress = ctc_compress
        # Always there (hidden size + 1 numbers), so a pre-aligned model
        # initialises any BLSP model.
        self.ctc = TokenCTC(llm.hidden_size(), llm.embedding_std(), ctc_negatives)
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats
        frozen_state_dict_hooks(self)

    @property
    def prompt(self) -> Prompt:
        """The (first) training prompt."""
        return self.tasks[0].prompt

    def make_prompt(self, spec: PromptSpec) -> Prompt:
        """The LLM prompt for another instruction (or chat turns)."""
        return build_prompt(self.llm.tokenizer, spec, self.use_chat_template)

    # ---- what fills the speech slot --------------------------------------------
    def speech_frames(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> List[torch.Tensor]:
        """Speech -> the adapter's (n_i, D_llm) outputs per utterance."""
        feats, feats_lengths = self.encoder(speech, speech_lengths)
        low = self.adapter_dtype != torch.float32
        with torch.autocast(feats.device.type, dtype=self.adapter_dtype, enabled=low):
            embeds, lengths = self.adapter(feats, feats_lengths, target_lengths)
        # float32 out, as without autocast: the losses on the frames and the LLM see the same.
        return [e[:n].float() for e, n in zip(embeds, lengths.tolist())]

    def speech_slots(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> List[torch.Tensor]:
        """Speech -> one (n_i, D_llm) embedding sequence per utterance, as
        the LLM reads it in the ``<speech>`` slot."""
        return self.to_slots(self.speech_frames(speech, speech_lengths))

    def to_slots(self, frames: List[torch.Tensor]) -> List[torch.Tensor]:
        """The adapter's outputs as the LLM reads them (see ``ctc_compress``)."""
        if not self.ctc_compress:
            return frames
        best = self.ctc.best_path(frames, self.llm.embedding_table())
        return [compress_runs(f, b) for f, b in zip(frames, best)]

    # ---- losses -----------------------------------------------------------------
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        response: Optional[torch.Tensor] = None,
        response_lengths: Optional[torch.Tensor] = None,
        transcript: Optional[torch.Tensor] = None,
        transcript_lengths: Optional[torch.Tensor] = None,
        task: Optional[torch.Tensor] = None,
        task_lengths: Optional[torch.Tensor] = None,
        **texts: torch.Tensor,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """LM loss of each utterance's target given its prompt with the speech.

        Args:
            speech: (B, T) waveform or (B, T, D) cached encoder frames.
            speech_lengths: (B,)
            response: (B, L) target token ids (the preprocessor puts each
                utterance's task target here), padded.
            response_lengths: (B,)
            transcript: (B, L') transcript token ids, for the CTC and KD
                losses and a ``<transcript>`` slot.
            transcript_lengths: (B,)
            task: (B, 1) each utterance's task index (default: task 0).
            task_lengths: (B,)
            texts: Further text slots as ``name``, ``name_lengths`` (e.g. asr_hyp).

        Returns:
            Loss, stats and the batch weight, as ESPnet's trainer expects.
        """
        if transcript is not None:
            texts.update(transcript=transcript, transcript_lengths=transcript_lengths)
        slot_texts = {
            name: unpad(texts[name], texts[f"{name}_lengths"]) for name in TEXT_SLOTS if name in texts
        }
        transcripts = slot_texts.get("transcript")
        need_transcript = self.ctc_weight > 0 or self.kd_weight > 0
        if need_transcript and transcripts is None:
            raise ValueError("ctc_weight or kd_weight > 0 needs the transcript data (name 'transcript')")
        token_counts = None
        if transcripts is not None and self.training:
            token_counts = torch.tensor([t.numel() for t in transcripts], device=speech.device)
        frames = self.speech_frames(speech, speech_lengths, token_counts)
        losses, stats = {}, {}
        for name, value in self.adapter.extra_losses().items():
            losses[name] = (self.adapter_loss_weight, value)
        if self.lm_weight > 0 or self.kd_weight > 0:
            if response is None:
                raise ValueError("the LM loss needs the response data (name 'response')")
            targets = [t.tolist() for t in unpad(response, response_lengths)]
            prompts = self.row_prompts(task, len(targets))
            rows = [
                {SPEECH: s, **{name: v[i] for name, v in slot_texts.items()}}
                for i, s in enumerate(self.to_slots(frames))
            ]
            logits, target, _ = response_logits(self.llm, rows, prompts, targets)
            lm_loss = torch.nn.functional.cross_entropy(logits, target)
            stats.update(acc=(logits.argmax(-1) == target).float().mean(), ppl=lm_loss.detach().exp())
            losses["lm_loss"] = (self.lm_weight, lm_loss)
        if self.ctc_weight > 0:
            table = self.llm.embedding_table()
            losses["ctc_loss"] = (self.ctc_weight, self.ctc(frames, transcripts, table))
        if self.kd_weight > 0:
            # The teacher: the pretrained LLM reading the transcript where the speech was.
            with torch.no_grad(), self.llm.pretrained():
                teacher_rows = [{**row, SPEECH: t} for row, t in zip(rows, transcripts)]
                teacher, _, _ = response_logits(self.llm, teacher_rows, prompts, targets)
            losses["kd_loss"] = (self.kd_weight, kd_loss(logits, teacher))
        stats.update({name: value.detach() for name, (_, value) in losses.items()})
        loss = sum(w * value for w, value in losses.values())
        stats["loss"] = loss.detach()
        batch_size = torch.tensor(speech.size(0), device=loss.device)
        return force_gatherable((loss, stats, batch_size), loss.device)

    def row_prompts(self, task: Optional[torch.Tensor], n: int) -> List[Prompt]:
        """Each utterance's prompt, from its task index."""
        if task is None:
            return [self.prompt] * n
        return [self.tasks[k].prompt for k in task[:, 0].tolist()]

    def collect_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, torch.Tensor]:
        # Nothing is normalised: collect_stats only needs the data shapes.
        return {}

    # ---- decoding ---------------------------------------------------------------
    def generate(self, rows: Sequence[Row], prompt: Union[Prompt, Sequence[Prompt]], **kwargs) -> List[str]:
        """See :func:`espnet_blsp.llm.batch.generate`."""
        return generate(self.llm, rows, prompt, **kwargs)


def unpad(x: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
    """(B, L) padded ids -> a list of (n_i,) ids."""
    return [row[:n] for row, n in zip(x, lengths.tolist())]
