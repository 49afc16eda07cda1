"""Interface of the (frozen, or LoRA-adapted) LLM the speech is fed into."""

from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import ContextManager, List, Sequence

import torch


class AbsLLM(torch.nn.Module, ABC):
    """A pretrained causal LM that reads input embeddings.

    Its pretrained weights are frozen; an implementation may add trainable
    weights (LoRA), which :meth:`pretrained` switches off.

    Attributes:
        tokenizer: Its HF tokenizer (also builds the prompt).
    """

    tokenizer = None

    def get_device(self) -> torch.device:
        """Where the LLM's weights live."""
        return next(self.parameters()).device

    @abstractmethod
    def hidden_size(self) -> int:
        """Width of the input embeddings."""

    @abstractmethod
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> input embeddings."""

    @abstractmethod
    def embedding_table(self) -> torch.Tensor:
        """The (vocabulary, D) input embedding matrix."""

    def embedding_std(self) -> float:
        """Standard deviation of the token embeddings' entries."""
        return self.embedding_table().float().std().item()

    def pretrained(self) -> ContextManager:
        """Context in which the LLM computes as the pretrained model, any
        trainable additions (LoRA) off: e.g. a distillation teacher.

        ``with llm.pretrained(): ...``; nothing to switch off by default.
        """
        return nullcontext()

    @abstractmethod
    def hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        prefix: Sequence[int] = (),
    ) -> torch.Tensor:
        """Last-layer hidden states (B, L, D) of a right-padded batch.

        Args:
            attention_mask: (B, L) 1 on real positions (causal attention), or
                (B, 1, L, P + L) booleans: which keys, the ``prefix``'s P
                first, each position sees (e.g. options packed after one
                prompt).
            prefix: Token ids that precede every row (not in the batch).
        """

    @abstractmethod
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states -> vocabulary logits."""

    @abstractmethod
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix: Sequence[int] = (),
        **kwargs,
    ) -> List[List[int]]:
        """Decode from a left-padded batch; returns the new token ids.

        Args:
            prefix: Token ids that precede every row (not in the batch).
        """
