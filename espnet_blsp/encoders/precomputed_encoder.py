"""Identity encoder for encoder outputs dumped once by ``dump_encoder``."""

from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder


class PrecomputedEncoder(AbsSpeechEncoder):
    """Passes cached frozen-encoder frames through unchanged.

    Running a frozen encoder every epoch wastes compute, so the recipe can dump
    its outputs once (kaldiio ark/scp) and train on them with this encoder.

    Args:
        output_size: Width of the cached frames.
        num_layers: Encoder layers each frame holds (concatenated).
        dumped_from: The encoder that made them, as ``dump_encoder`` records
            it (``{"encoder": name, "encoder_conf": {...}}``), so inference on
            waveforms can run it.
    """

    @typechecked
    def __init__(self, output_size: int, num_layers: int = 1, dumped_from: Optional[Dict] = None):
        super().__init__()
        self._output_size = output_size
        self._num_layers = num_layers
        self.dumped_from = dumped_from

    def output_size(self) -> int:
        return self._output_size

    def num_layers(self) -> int:
        return self._num_layers

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if speech.dim() != 3 or speech.size(-1) != self._output_size:
            raise ValueError(
                f"expected cached features (B, T, {self._output_size}), got "
                f"{tuple(speech.shape)}: was the dump made with another encoder?"
            )
        return speech, speech_lengths
