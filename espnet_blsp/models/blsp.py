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
        ctc_weight: Weight of a CTC loss (not in the paper; 0 turns it off)
            that scores each speech embedding against the LLM's own token
            embeddings and the transcript's tokens: a direct signal of what
            was said, which the LM loss only gives through the whole LLM.
            Needs the ``transcript`` data. At 1 the LLM is not run at all:
            a cheap pre-alignment of the adapter before BLSP training.
        ctc_negatives: Random token ids scored besides the batch's
            transcript tokens (a sampled softmax: the full 49k-token
            vocabulary costs 5x more for the same accuracy); 0 scores the
            whole vocabulary.
        ctc_compress: Feed the LLM one embedding per CTC token instead of
            one per frame: frames the CTC head calls blank are dropped and
            runs of the same token averaged (needs a CTC-trained head, e.g.
            from pre-alignment).
        kd_weight: Weight of BLSP-KD's distillation loss (arXiv 2405.19041):
            the KL divergence from the LLM's next-token distributions given
            the transcript (the teacher) to those given the speech, on every
            response token; the LM loss keeps ``1 - ctc_weight - kd_weight``.
            Needs the ``transcript`` data. (In the CPU demo's 300-step runs
            it did not help.)
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
        ctc_negatives: int = 4096,
        ctc_compress: bool = False,
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
        self.ctc_negatives = ctc_negatives
        self.kd_weight = kd_weight
        self.lm_weight = round(1 - ctc_weight - kd_weight, 6)
        self.ctc_compress = ctc_compress
        # The CTC head is always there (hidden size + 1 numbers), so a pre-aligned model
        # initialises any BLSP model. The blank gets its own learned vector
        # (not an LLM token the LLM would read), and a learned logit scale
        # lets the posteriors sharpen without inflating the speech embeddings.
        self.ctc_blank = torch.nn.Parameter(torch.zeros(llm.hidden_size()))
        self.ctc_scale = torch.nn.Parameter(torch.tensor(1 / llm.embedding_std()))
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats
        frozen_state_dict_hooks(self)

    def make_prompt(self, instruction: str) -> Prompt:
        """The LLM prompt for another instruction (with a ``<speech>`` slot)."""
        return build_prompt(self.llm.tokenizer, instruction, self.use_chat_template)

    # ---- slots: what stands where the transcript would -------------------------
    def speech_frames(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> List[torch.Tensor]:
        """Speech -> the adapter's (n_i, D_llm) outputs per utterance."""
        feats, feats_lengths = self.encoder(speech, speech_lengths)
        embeds, lengths = self.adapter(feats, feats_lengths)
        return [e[:n] for e, n in zip(embeds, lengths.tolist())]

    def speech_slots(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> List[torch.Tensor]:
        """Speech -> one (n_i, D_llm) embedding sequence per utterance, as
        the LLM reads it in place of the transcript."""
        return self.to_slots(self.speech_frames(speech, speech_lengths))

    def to_slots(self, frames: List[torch.Tensor]) -> List[torch.Tensor]:
        """The adapter's outputs as the LLM reads them (see ``ctc_compress``)."""
        if not self.ctc_compress:
            return frames
        with torch.no_grad():
            # Only the argmax, over the whole vocabulary: the table's dtype will
            # do, and the (positive) logit scale cannot change it.
            table = self.llm.embedding_table()
            x = torch.cat(frames).to(table.dtype)
            tokens = (x @ table.t()).float().max(-1)
            blank = (x.float() @ self.ctc_blank.float()) > tokens.values
            best = torch.where(blank, 0, tokens.indices + 1)
        return [self.compress(f, b) for f, b in zip(frames, best.split([f.size(0) for f in frames]))]

    def ctc_logits(self, x: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
        """CTC logits of speech embeddings ``x`` (..., D): column 0 is the
        blank, column 1 + i the token ``vocab[i]``."""
        table = self.llm.embedding_table()[vocab]
        rows = torch.cat([self.ctc_blank[None], table.to(self.ctc_blank.dtype)])
        return self.ctc_scale * (x.to(rows.dtype) @ rows.t())

    @staticmethod
    def compress(frames: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """(n, D) frames -> the mean frame of each run of the same non-blank
        CTC label in ``best`` (n,) (0 = blank); all frames if all are blank."""
        starts = torch.ones_like(best, dtype=torch.bool)
        starts[1:] = best[1:] != best[:-1]
        run = starts.long().cumsum(0) - 1
        sums = frames.new_zeros(int(run[-1]) + 1, frames.size(1)).index_add(0, run, frames)
        means = sums / torch.bincount(run).to(frames.dtype)[:, None]
        keep = best[starts] != 0
        return means[keep] if keep.any() else frames

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
        frames = self.speech_frames(speech, speech_lengths)
        slots = self.to_slots(frames)
        losses, stats = {}, {}
        if self.lm_weight > 0 or self.kd_weight > 0:
            targets = [t[:n].tolist() for t, n in zip(text, text_lengths.tolist())]
            logits, target, _ = response_logits(self.llm, slots, self.prompt, targets)
            lm_loss = torch.nn.functional.cross_entropy(logits, target)
            stats.update(acc=(logits.argmax(-1) == target).float().mean(), ppl=lm_loss.detach().exp())
            losses["lm_loss"] = (self.lm_weight, lm_loss)
        if self.ctc_weight > 0 or self.kd_weight > 0:
            if transcript is None:
                raise ValueError("ctc_weight or kd_weight > 0 needs the transcript data (name 'transcript')")
            if self.ctc_weight > 0:
                losses["ctc_loss"] = (self.ctc_weight, self.ctc_loss(frames, transcript, transcript_lengths))
            if self.kd_weight > 0:
                losses["kd_loss"] = (self.kd_weight, self.kd_loss(logits, transcript, transcript_lengths, targets))
        stats.update({name: value.detach() for name, (_, value) in losses.items()})
        loss = sum(w * value for w, value in losses.values())
        stats["loss"] = loss.detach()
        batch_size = torch.tensor(len(slots), device=loss.device)
        return force_gatherable((loss, stats, batch_size), loss.device)

    def ctc_loss(
        self, frames: List[torch.Tensor], transcript: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """CTC of the transcript tokens over the speech embeddings, scored by
        their scaled dot products with the LLM's (frozen) token embeddings,
        over the batch's tokens and ``ctc_negatives`` random others."""
        tokens = torch.cat([t[:n] for t, n in zip(transcript, lengths.tolist())])
        size = self.llm.embedding_table().size(0)
        if self.ctc_negatives > 0:
            negatives = torch.randint(size, (self.ctc_negatives,), device=tokens.device)
            vocab = torch.unique(torch.cat([tokens, negatives]))  # sorted
        else:
            vocab = torch.arange(size, device=tokens.device)
        x = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
        logits = self.ctc_logits(x, vocab)
        # Column 0 is the blank; token t sits at 1 + its place in ``vocab``.
        targets = 1 + torch.searchsorted(vocab, tokens)
        in_lengths = torch.tensor([f.size(0) for f in frames], device=x.device)
        return torch.nn.functional.ctc_loss(
            logits.log_softmax(-1).transpose(0, 1), targets, in_lengths, lengths,
            blank=0, zero_infinity=True,
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
