"""Identity encoder for encoder outputs dumped once by ``dump_encoder``."""

from typing import Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder


class PrecomputedEncoder(AbsSpeechEncoder):
    """Passes cached frozen-encoder frames through unchanged.

    Running a frozen encoder every epoch wastes compute, so the recipe can dump
    its outputs once (kaldiio ark/scp) and train on them with this encoder.

    Args:
        output_size: Width of the cached frames.
        dumped_from: The encoder that made them (HF Whisper name or dir), so
            inference on waveforms can run it.
    """

    @typechecked
    def __init__(self, output_size: int, dumped_from: Optional[str] = None):
        super().__init__()
        self._output_size = output_size
        self.dumped_from = dumped_from

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if speech.dim() != 3 or speech.size(-1) != self._output_size:
            raise ValueError(
                f"expected cached features (B, T, {self._output_size}), got "
                f"{tuple(speech.shape)}: was the dump made with another encoder?"
            )
        return speech, speech_lengths
