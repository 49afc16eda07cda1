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
        # HF generate feeds lm_head a strided last-position slice, on which
        # PyTorch's bf16 CPU matmul is ~200x slower (measured 2.9 s instead of
        # 15 ms for 32 rows of SmolLM2): hand it a contiguous copy.
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        self._prefix_kv = {}  # prompt prefix -> per-layer (keys, values)
        self.freeze()

    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_table().dtype

    def embedding_table(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

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
            past, attention_mask = self._after_prefix(prefix, attention_mask)
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

    def _after_prefix(self, prefix: Sequence[int], attention_mask: torch.Tensor):
        """The prefix's cached keys/values for the batch, and the batch's mask
        extended over the prefix."""
        batch_size = attention_mask.size(0)
        ones = attention_mask.new_ones(batch_size, len(prefix))
        return self._prefix_cache(tuple(prefix), batch_size), torch.cat([ones, attention_mask], dim=1)

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
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix: Sequence[int] = (),
        **kwargs,
    ) -> List[List[int]]:
        inputs_embeds = inputs_embeds.to(self.dtype)
        if len(prefix):
            # The shared prefix comes from the cache (it is most of a short
            # prompt's prefill). HF wants the full rows and skips the cached
            # part: [prefix | left padding | row], the padding masked out.
            head = self.embed(torch.tensor(prefix, device=inputs_embeds.device))
            inputs_embeds = torch.cat([head.expand(inputs_embeds.size(0), -1, -1), inputs_embeds], dim=1)
            kwargs["past_key_values"], attention_mask = self._after_prefix(prefix, attention_mask)
        out = self.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )
        return [strip_after_eos(row.tolist(), kwargs.get("eos_token_id")) for row in out]


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def strip_after_eos(ids: List[int], eos) -> List[int]:
    """Cut a generated row at its first end token (batch rows run on)."""
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k]
    return ids
