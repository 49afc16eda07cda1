"""CIF's quantity loss (Dong & Xu, "CIF: Continuous Integrate-and-Fire", 2020)."""

import torch


def quantity_loss(alphas: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``|sum_t alpha_t - target_length|``.

    Teaches the weight predictor to fire as many times as there are target
    tokens, so that at inference ``round(sum alpha)`` is the right length.

    Args:
        alphas: (B, T) firing weights, before any scaling, 0 on padding.
        target_lengths: (B,) the number of tokens each row should yield.

    Returns:
        A float32 scalar.
    """
    total = alphas.float().sum(dim=-1)  # (B,)
    return (total - target_lengths.to(total.dtype)).abs().mean()
