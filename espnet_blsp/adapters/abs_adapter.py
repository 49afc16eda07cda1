"""Interface of a modality adapter: encoder frames -> LLM input embeddings."""

from abc import ABC, abstractmethod
from typing import Tuple

import torch


class AbsAdapter(torch.nn.Module, ABC):
    """Maps speech-encoder outputs to the LLM's embedding space."""

    @abstractmethod
    def output_size(self) -> int:
        """Width of the produced embeddings (the LLM's hidden size)."""

    @abstractmethod
    def forward(
        self, feats: torch.Tensor, feats_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Adapt a padded batch.

        Args:
            feats: (B, T, D_enc) encoder outputs.
            feats_lengths: (B,) valid frames per utterance.

        Returns:
            (B, T', D_llm) embeddings and their (B,) valid lengths.
        """
