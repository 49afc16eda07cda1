"""Any HF ``AutoModelForCausalLM``, frozen, as the BLSP language model."""

from typing import List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.utils.frozen import FrozenModule


class HFCausalLM(AbsLLM, FrozenModule):
    """A frozen HF causal LM and its tokenizer.

    Args:
        model_name_or_path: HF hub name or local checkpoint dir.
        dtype: Dtype the frozen weights are kept and run in; bfloat16 is ~4x
            faster than float32 on recent CPUs and halves memory.
        gguf_file: Optional GGUF file name inside ``model_name_or_path``.
        attn_implementation: Passed to transformers ("sdpa", "eager", ...).
    """

    @typechecked
    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "bfloat16",
        gguf_file: Optional[str] = None,
        attn_implementation: str = "sdpa",
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **extra)
        if self.tokenizer.pad_token_id is None:
            # Llama-style tokenizers ship no pad token; masks make its id moot.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path,
            dtype=getattr(torch, dtype),
            attn_implementation=attn_implementation,
            **extra,
        )
        self._prefix_kv = {}  # prompt prefix -> per-layer (keys, values)
        self.freeze()

    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def embedding_std(self) -> float:
        """Standard deviation of the token embeddings' entries."""
        return self.model.get_input_embeddings().weight.float().std().item()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        prefix: Sequence[int] = (),
    ) -> torch.Tensor:
        past = None
        if len(prefix):
            past = self._prefix_cache(tuple(prefix), inputs_embeds.size(0))
            ones = attention_mask.new_ones(attention_mask.size(0), len(prefix))
            attention_mask = torch.cat([ones, attention_mask], dim=1)
        # The body alone: the vocabulary projection is applied only where a
        # loss is taken, which saves a large matmul per padded position.
        out = self.model.base_model(
            inputs_embeds=inputs_embeds.to(self.dtype),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past,
            use_cache=False,
        )
        return out.last_hidden_state

    def _prefix_cache(self, prefix: Tuple[int, ...], batch_size: int):
        """Keys and values of a shared prompt prefix, computed once.

        The LLM is frozen and nothing trainable comes before the speech, so
        the prefix's keys and values never change and carry no gradient.
        """
        from transformers import DynamicCache

        device = self.get_device()
        key = (prefix, device)
        if key not in self._prefix_kv:
            with torch.no_grad():
                ids = torch.tensor([prefix], device=device)
                out = self.model.base_model(input_ids=ids, use_cache=True)
            self._prefix_kv[key] = [(k, v) for k, v, *_ in out.past_key_values]
        # The config keeps each layer's kind (full or sliding-window attention).
        return DynamicCache(
            [(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
             for k, v in self._prefix_kv[key]],
            config=self.model.config,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.get_output_embeddings()(hidden).float()

    @torch.no_grad()
    def generate(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kwargs
    ) -> List[List[int]]:
        out = self.model.generate(
            inputs_embeds=inputs_embeds.to(self.dtype),
            attention_mask=attention_mask,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )
        return [strip_after_eos(row.tolist(), kwargs.get("eos_token_id")) for row in out]


def strip_after_eos(ids: List[int], eos) -> List[int]:
    """Cut a generated row at its first end token (batch rows run on)."""
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k]
    return ids
