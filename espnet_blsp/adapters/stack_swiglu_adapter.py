"""Ultravox's projector: stack frames, RMSNorm, Linear, SwiGLU, Linear, RMSNorm."""

from typing import Optional, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter


class StackSwiGLUAdapter(AbsAdapter):
    """Stacks ``stack_factor`` frames into one, then a SwiGLU MLP to the LLM.

    The layout of Ultravox's ``UltravoxProjector`` (norm after the second
    linear, as in Ultravox up to v0.4.1): the default 8 stacked Whisper frames
    turn 50 Hz into 6.25 Hz, like BLSP's conv stack, but with no overlap and a
    single wide matrix. The last group of a row is zero-padded.

    Args:
        input_size: Encoder frame width (all tapped layers, concatenated).
        output_size: LLM hidden size.
        input_layers: How many encoder layers ``input_size`` concatenates.
            Ignored: the stacked frame is read as one vector.
        output_scale: Initial gain of the final RMSNorm, so that outputs start
            at the scale of the LLM's token embeddings.
        stack_factor: Frames stacked into one output position.
        hidden_size: Width of the first linear; SwiGLU halves it. Ultravox's
            default is 4096. Must be even.
        norm_init: Initial gain of the input RMSNorm (Ultravox: 0.4).
        eps: RMSNorm epsilon (Ultravox, as Llama: 1e-6).
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int,
        input_layers: int = 1,
        output_scale: float = 1.0,
        stack_factor: int = 8,
        hidden_size: int = 4096,
        norm_init: float = 0.4,
        eps: float = 1e-6,
    ):
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"hidden_size must be even for SwiGLU, got {hidden_size}")
        self._output_size = output_size
        self.stack_factor = stack_factor
        stacked = stack_factor * input_size
        self.ln_pre = torch.nn.RMSNorm(stacked, eps=eps)
        self.linear_1 = torch.nn.Linear(stacked, hidden_size, bias=False)
        self.linear_2 = torch.nn.Linear(hidden_size // 2, output_size, bias=False)
        self.ln_post = torch.nn.RMSNorm(output_size, eps=eps)
        torch.nn.init.constant_(self.ln_pre.weight, norm_init)
        torch.nn.init.constant_(self.ln_post.weight, output_scale)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """See ``AbsAdapter.forward``; ``target_lengths`` is ignored."""
        k = self.stack_factor
        B, T, D = feats.shape
        n = -(-T // k)  # ceil(T / k) output positions
        valid = torch.arange(T, device=feats.device) < feats_lengths[:, None]  # (B, T)
        # Zero the padding: the last group of a row must look as it would alone.
        x = feats * valid[..., None].to(feats.dtype)  # (B, T, D)
        x = torch.nn.functional.pad(x, (0, 0, 0, n * k - T))  # (B, n*k, D)
        x = x.reshape(B, n, k * D)  # (B, n, k*D)
        x = self.linear_1(self.ln_pre(x))  # (B, n, H)
        x, gate = x.chunk(2, dim=-1)  # (B, n, H/2) each
        x = torch.nn.functional.silu(gate) * x  # (B, n, H/2)
        x = self.ln_post(self.linear_2(x))  # (B, n, output_size)
        lengths = torch.div(feats_lengths + k - 1, k, rounding_mode="floor")  # (B,)
        return x, lengths
