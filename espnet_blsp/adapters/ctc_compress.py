"""CTC compression: one embedding per token instead of one per frame."""

import torch


def compress_runs(frames: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """(n, D) frames -> the mean frame of each run of the same non-blank CTC
    label in ``best`` (n,) (0 = blank); all frames if all are blank.

    With a CTC-trained head (``losses.ctc.TokenCTC``), the LLM then reads about
    one embedding per transcript token, like CIF's output but without a
    learned length.
    """
    starts = torch.ones_like(best, dtype=torch.bool)
    starts[1:] = best[1:] != best[:-1]
    run = starts.long().cumsum(0) - 1
    sums = frames.new_zeros(int(run[-1]) + 1, frames.size(1)).index_add(0, run, frames)
    means = sums / torch.bincount(run).to(frames.dtype)[:, None]
    keep = best[starts] != 0
    return means[keep] if keep.any() else frames
