"""Continuous integrate-and-fire adapter (CIF, Dong & Xu 2020), as in BLSP-KD."""

import math
from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.losses.quantity import quantity_loss


class CIFAdapter(AbsAdapter):
    """Integrates frames into one embedding per LLM token.

    Frames are projected to ``hidden_size``. A weight predictor (Conv1d over
    the projected frames, ReLU, Linear, sigmoid) gives each valid frame a
    weight alpha in (0, 1), 0 on padding. Walking along the frames, the
    weights accumulate; each time the sum crosses a whole number (threshold
    1.0) an output fires. Each output is the alpha-weighted sum of the frames
    it integrated (a frame that straddles a firing is split between two
    outputs). The outputs are then projected to ``output_size`` and normalised
    (LayerNorm, gain ``output_scale``).

    Output length:

    - with ``target_lengths`` (training: the transcript's token count, as in
      BLSP-KD, so speech and text positions align), the alphas are scaled so
      that each row sums to its target, and ``extra_losses()`` returns
      ``{"quantity_loss": mean |sum(alpha) - target|}`` on the unscaled ones;
    - without (inference), ``round(sum(alpha))`` outputs (at least 1); the
      alphas are scaled to that sum too, so that every output integrates a
      full unit of weight, as in training.

    Args:
        input_size: Encoder frame width (all tapped layers, concatenated).
        output_size: LLM hidden size.
        input_layers: How many encoder layers ``input_size`` concatenates.
            Ignored: the frame is read as one vector.
        output_scale: Initial gain of the output LayerNorm.
        hidden_size: Width of the projected frames that are integrated.
        kernel_size: Width of the weight predictor's conv (odd).
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int,
        input_layers: int = 1,
        output_scale: float = 1.0,
        hidden_size: int = 1024,
        kernel_size: int = 3,
    ):
        super().__init__()
        self._output_size = output_size
        self.frame_proj = torch.nn.Linear(input_size, hidden_size)
        self.weight_conv = torch.nn.Conv1d(
            hidden_size, hidden_size, kernel_size, padding=kernel_size // 2
        )
        self.weight_out = torch.nn.Linear(hidden_size, 1)
        self.out_proj = torch.nn.Linear(hidden_size, output_size)
        self.norm = torch.nn.LayerNorm(output_size)
        torch.nn.init.constant_(self.norm.weight, output_scale)
        self._extra_losses: Dict[str, torch.Tensor] = {}

    def output_size(self) -> int:
        return self._output_size

    def extra_losses(self) -> Dict[str, torch.Tensor]:
        """``{"quantity_loss": ...}`` if the last forward had target lengths."""
        return dict(self._extra_losses)

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """See ``AbsAdapter.forward``; ``target_lengths`` fixes the output length."""
        T = feats.size(1)
        valid = torch.arange(T, device=feats.device) < feats_lengths[:, None]  # (B, T)
        keep = valid[..., None].to(feats.dtype)  # (B, T, 1)
        # Zero the padding after the (biased) projection too: the conv must see
        # the zeros it would pad with if the row were alone.
        h = self.frame_proj(feats * keep) * keep  # (B, T, H)
        a = torch.relu(self.weight_conv(h.transpose(1, 2))).transpose(1, 2)  # (B, T, H)
        alphas = torch.sigmoid(self.weight_out(a)).squeeze(-1).float() * valid  # (B, T)
        total = alphas.sum(dim=-1)  # (B,)
        if target_lengths is not None:
            lengths = target_lengths.long()  # (B,)
            self._extra_losses = {"quantity_loss": quantity_loss(alphas, lengths)}
        else:
            lengths = total.detach().round().long().clamp(min=1)  # (B,)
            self._extra_losses = {}
        scaled = alphas * (lengths / total.clamp(min=1e-6))[:, None]  # (B, T)
        x = cif_integrate(h, scaled, lengths)  # (B, N, H)
        x = self.norm(self.out_proj(x))  # (B, N, output_size)
        fired = torch.arange(x.size(1), device=x.device) < lengths[:, None]  # (B, N)
        return x * fired[..., None].to(x.dtype), lengths


def cif_integrate(
    frames: torch.Tensor, alphas: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Integrate-and-fire at threshold 1, vectorised over frames.

    Frame t owns the interval [c_{t-1}, c_t) of the running sum c of alphas;
    output j integrates [j, j+1). A frame adds ``frames[t]`` times the length
    of the overlap to each output it overlaps: with alpha <= 1 that is at most
    two consecutive outputs; scaled alphas above 1 can reach more, so the
    offsets are counted from the largest alpha. Weight past ``lengths`` (e.g.
    a rounded-off tail) is dropped.

    Args:
        frames: (B, T, H) frames to integrate.
        alphas: (B, T) non-negative weights, 0 on padding.
        lengths: (B,) outputs per row.

    Returns:
        (B, max(lengths), H) outputs, zero past each row's length.
    """
    B, T, H = frames.shape
    N = max(int(lengths.max()), 1)
    end = alphas.float().cumsum(dim=-1)  # (B, T)
    start = torch.nn.functional.pad(end[:, :-1], (1, 0))  # (B, T), exactly the previous end
    first = start.floor().long()  # (B, T): the first output frame t reaches
    row = torch.arange(B, device=frames.device)[:, None] * N  # (B, 1)
    out = frames.new_zeros(B * N, H)  # (B*N, H)
    span = int(math.ceil(alphas.max().item())) + 1  # outputs one frame can touch
    for offset in range(span):  # usually 2: a frame splits over two outputs
        j = first + offset  # (B, T)
        w = torch.minimum(end, j + 1.0) - torch.maximum(start, j.float())  # (B, T)
        w = w.clamp(min=0) * (j < lengths[:, None])  # (B, T)
        index = (row + j.clamp(max=N - 1)).flatten()  # (B*T,)
        src = (w[..., None].to(frames.dtype) * frames).flatten(0, 1)  # (B*T, H)
        out = out.index_add(0, index, src)  # (B*N, H)
    return out.view(B, N, H)
