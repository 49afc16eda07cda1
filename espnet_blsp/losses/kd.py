"""BLSP-KD's distillation loss (arXiv 2405.19041)."""

import torch


def kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher || student) per token between (N, V) logits: the LLM
    given the speech should predict each response token as it does given the
    transcript."""
    return torch.nn.functional.kl_div(
        student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean"
    )
