"""Interface of a speech encoder: waveform (or cached features) -> frames."""

from abc import ABC, abstractmethod
from typing import Tuple

import torch


class AbsSpeechEncoder(torch.nn.Module, ABC):
    """Turns a padded batch of speech into encoder frames."""

    @abstractmethod
    def output_size(self) -> int:
        """Width of each output frame (all handed-over layers together)."""

    def num_layers(self) -> int:
        """How many encoder layers each frame holds, concatenated on the
        feature axis (layer-major); adapters such as the Q-Former split them."""
        return 1

    @abstractmethod
    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            speech: (B, T) waveform or (B, T, D) cached features.
            speech_lengths: (B,) valid samples or frames.

        Returns:
            (B, T', D) frames and their (B,) valid lengths.
        """
