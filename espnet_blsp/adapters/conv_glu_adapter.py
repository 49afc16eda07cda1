"""The BLSP modality adapter (arXiv 2309.00916, section 3)."""

from typing import Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter


class ConvGLUAdapter(AbsAdapter):
    """Strided Conv1d+GLU stack, then a residual bottleneck and LayerNorm.

    Each conv block halves the frame rate (kernel 5, stride 2, padding 2), so the
    default three blocks turn Whisper's 50 Hz into 6.25 Hz. Every conv produces
    twice the next width and GLU halves it back; the last one targets the LLM's
    hidden size.

    Args:
        input_size: Encoder output width.
        output_size: LLM hidden size.
        input_layers: How many encoder layers ``input_size`` concatenates.
            Ignored: the convs read the concatenation as one stream.
        num_conv_layers: Number of stride-2 conv blocks.
        kernel_size: Conv kernel width.
        bottleneck_dim: Hidden width of the residual bottleneck.
        output_scale: Initial LayerNorm gain. The paper's 1.0 makes speech
            embeddings far larger than the LLM's token embeddings (std ~0.02
            to 0.15); starting at the LLM's own scale trains faster.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int,
        input_layers: int = 1,
        num_conv_layers: int = 3,
        kernel_size: int = 5,
        bottleneck_dim: int = 512,
        output_scale: float = 1.0,
    ):
        super().__init__()
        self._output_size = output_size
        self.kernel_size = kernel_size
        self.stride = 2
        self.padding = kernel_size // 2
        widths = [input_size] * num_conv_layers + [output_size]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(
                widths[i],
                2 * widths[i + 1],
                kernel_size,
                stride=self.stride,
                padding=self.padding,
            )
            for i in range(num_conv_layers)
        )
        self.bottleneck = torch.nn.Sequential(
            torch.nn.Linear(output_size, bottleneck_dim, bias=False),
            torch.nn.GELU(),
            torch.nn.Linear(bottleneck_dim, output_size, bias=False),
        )
        self.norm = torch.nn.LayerNorm(output_size)
        torch.nn.init.constant_(self.norm.weight, output_scale)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2)
        lengths = feats_lengths
        for conv in self.convs:
            # Zero the padded frames so they cannot leak into valid outputs.
            mask = torch.arange(x.size(-1), device=x.device) < lengths[:, None]
            x = x * mask[:, None, :].to(x.dtype)
            x = torch.nn.functional.glu(conv(x), dim=1)
            lengths = self._conv_lengths(lengths)
        x = x.transpose(1, 2)
        x = x + self.bottleneck(x)
        return self.norm(x), lengths

    def _conv_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames left after one conv block, as Conv1d computes them."""
        return (
            torch.div(
                lengths + 2 * self.padding - self.kernel_size,
                self.stride,
                rounding_mode="floor",
            )
            + 1
        )
