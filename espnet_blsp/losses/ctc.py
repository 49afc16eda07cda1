"""CTC of the transcript over the speech embeddings, in the LLM's token space."""

from typing import List

import torch
from typeguard import typechecked


class TokenCTC(torch.nn.Module):
    """Scores each speech embedding against the frozen LLM's token embeddings.

    A direct signal of what was said, which the LM loss only gives through
    the whole LLM (not in the BLSP paper). The blank gets a learned vector of
    its own (not an LLM token the LLM would read), and a learned logit scale
    lets the posteriors sharpen without inflating the speech embeddings.

    Args:
        hidden_size: The LLM's embedding width.
        embedding_std: Std of the LLM's token embeddings (sets the initial scale).
        negatives: Random token ids scored besides the batch's transcript
            tokens (a sampled softmax: the full 49k-token vocabulary costs
            5x more for the same accuracy); 0 scores the whole vocabulary.
    """

    @typechecked
    def __init__(self, hidden_size: int, embedding_std: float, negatives: int = 4096):
        super().__init__()
        self.blank = torch.nn.Parameter(torch.zeros(hidden_size))
        self.scale = torch.nn.Parameter(torch.tensor(1 / embedding_std))
        self.negatives = negatives

    def logits(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Logits of embeddings ``x`` (..., D) over [blank] + the rows of ``table``."""
        rows = torch.cat([self.blank[None], table.to(self.blank.dtype)])
        return self.scale * (x.to(rows.dtype) @ rows.t())

    def forward(
        self,
        frames: List[torch.Tensor],
        tokens: List[torch.Tensor],
        table: torch.Tensor,
    ) -> torch.Tensor:
        """Mean CTC loss of each utterance's token ids over its (n_i, D) frames.

        Args:
            frames: Speech embeddings per utterance.
            tokens: Transcript token ids per utterance.
            table: The LLM's (vocabulary, D) input embeddings.
        """
        flat = torch.cat(tokens)
        if self.negatives > 0:
            negatives = torch.randint(table.size(0), (self.negatives,), device=flat.device)
            vocab = torch.unique(torch.cat([flat, negatives]))  # sorted
        else:
            vocab = torch.arange(table.size(0), device=flat.device)
        x = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
        logits = self.logits(x, table[vocab])
        # Column 0 is the blank; token t sits at 1 + its place in ``vocab``.
        targets = 1 + torch.searchsorted(vocab, flat)
        in_lengths = torch.tensor([f.size(0) for f in frames], device=x.device)
        out_lengths = torch.tensor([t.numel() for t in tokens], device=x.device)
        return torch.nn.functional.ctc_loss(
            logits.log_softmax(-1).transpose(0, 1), targets, in_lengths, out_lengths,
            blank=0, zero_infinity=True,
        )

    @torch.no_grad()
    def best_path(self, frames: List[torch.Tensor], table: torch.Tensor) -> List[torch.Tensor]:
        """Each frame's argmax label over the whole vocabulary (0 = blank,
        1 + i = token i), in one matmul in the table's dtype: the (positive)
        scale cannot change an argmax, and fp32 over 49k tokens made training
        steps twice as slow."""
        x = torch.cat(frames).to(table.dtype)
        tokens = (x @ table.t()).float().max(-1)
        blank = (x.float() @ self.blank.float()) > tokens.values
        best = torch.where(blank, 0, tokens.indices + 1)
        return list(best.split([f.size(0) for f in frames]))
