"""Any HF ``AutoModelForCausalLM``, frozen (optionally with LoRA), as the BLSP language model."""

import copy
import functools
import types
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet_blsp.llm import greedy
from espnet_blsp.llm.abs_llm import AbsLLM
from espnet_blsp.utils.dtype import resolve_dtype
from espnet_blsp.utils.frozen import FrozenModule

LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}


class HFCausalLM(AbsLLM, FrozenModule):
    """A frozen HF causal LM and its tokenizer, optionally with LoRA.

    With ``lora`` the model is wrapped by peft: the pretrained weights stay
    frozen in ``dtype`` and the LoRA weights train in float32 (bf16 weights
    lose AdamW's small updates). The frozen base always runs in eval mode
    (no dropout: it behaves as pretrained); only LoRA's dropout follows
    ``train()``/``eval()``.

    Args:
        model_name_or_path: HF hub name or local checkpoint dir.
        dtype: Dtype the frozen weights are kept and run in; "auto" is
            bfloat16 where the hardware computes it natively (~2x faster
            than float32 with AMX, and half the memory), else float32.
        gguf_file: Optional GGUF file name inside ``model_name_or_path``.
        attn_implementation: Passed to transformers ("sdpa", "eager", ...).
        train_attn_implementation: The attention implementation while
            gradients flow through :meth:`hidden_states` (training); None:
            ``attn_implementation``. On a CPU, "eager" (matmuls and a
            softmax) takes one third of SDPA's flash-kernel time backward at
            the demos' lengths, while SDPA's forward is the faster one for
            scoring and generation (``bench/README.md``). Not with
            ``gradient_checkpointing``.
        lora: LoRA on the LLM, e.g. ``{r: 8, alpha: 16, dropout: 0.05,
            target_modules: [q_proj, v_proj]}`` (these are the defaults of
            missing keys; ``{}`` takes them all). ``target_modules`` is a list
            of module name suffixes, a regex or "all-linear", as in peft.
            None: no LoRA, the LLM is wholly frozen.
        gradient_checkpointing: Recompute each decoder layer's activations
            in the backward pass instead of keeping them from the forward
            (``torch.utils.checkpoint``, non-reentrant). A layer then keeps
            only its input, D numbers per position, instead of ~15-17x that
            (the norms' float32 inputs, attention's queries, keys, values
            and output, the MLP's three intermediate-size tensors; see
            ``bench/train_memory.py``), for one more forward of the LLM per
            step: ~1.5x the step time, as the frozen LLM's backward costs
            about one forward (1.49x measured on the CPU demo). The
            gradients are the same. It acts only where gradients are taken
            through :meth:`hidden_states` (training); scoring under
            ``no_grad`` and generation run as without it. HF's own
            ``gradient_checkpointing_enable`` would do nothing here: it acts
            only on modules in training mode, and the frozen LLM stays in
            eval mode (it would also drop the prompt-prefix cache).
        compile: ``torch.compile`` (dynamic shapes) each decoder layer's
            parts other than attention (the MLP and the norms, where
            elementwise ops fuse), at the first training forward. Same
            gradients (tested). On the 2-core AVX2 CPU it bought nothing
            measurable (demo step 1149/1191 ms without, 1164/1179 ms with,
            ``bench/profile_step.py --compile``; matmuls are 2/3 of the step)
            and costs ~10-25 s of compiling per process; not measured on a
            GPU, where elementwise ops weigh more. Whole layers recompile
            per layer and fall back to eager. Processes that only generate
            or score never compile.
    """

    @typechecked
    def __init__(
        self,
        model_name_or_path: str,
        dtype: str = "auto",
        gguf_file: Optional[str] = None,
        attn_implementation: str = "sdpa",
        train_attn_implementation: Optional[str] = None,
        lora: Optional[Dict] = None,
        gradient_checkpointing: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.lora = None if lora is None else lora_config(lora)

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **extra)
        if self.tokenizer.pad_token_id is None:
            # Llama-style tokenizers ship no pad token; masks make its id moot.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path,
            dtype=resolve_dtype(dtype),
            attn_implementation=attn_implementation,
            **extra,
        )
        # HF generate feeds lm_head a strided last-position slice, on which
        # PyTorch's bf16 CPU matmul is ~200x slower (measured 2.9 s instead of
        # 15 ms for 32 rows of SmolLM2): hand it a contiguous copy.
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        self._prefix_kv = {}  # (prompt prefix, device, adapters on) -> per-layer (keys, values)
        # Loaded weights (e.g. trained LoRA for inference) make cached keys stale.
        self.register_load_state_dict_post_hook(_forget_prefixes)
        self._adapters_off = False  # inside pretrained()
        self.freeze()
        if self.lora is not None:
            self.model = _with_lora(self.model, self.lora)
        self.gradient_checkpointing = gradient_checkpointing
        if train_attn_implementation and gradient_checkpointing:
            # The backward's recomputation runs outside the switch and would attend otherwise.
            raise ValueError("train_attn_implementation and gradient_checkpointing cannot be combined")
        self.train_attn_implementation = train_attn_implementation
        self.compile_layers = compile
        self._compiled = False
        # Found once: checkpointing wraps them and compile compiles their parts.
        self._layers = decoder_layers(self._body())
        if gradient_checkpointing and not self._layers:
            raise ValueError(
                f"{model_name_or_path}: gradient_checkpointing needs HF decoder layers "
                f"(GradientCheckpointingLayer), and {type(self._body()).__name__} has none"
            )

    def hf_model(self) -> torch.nn.Module:
        """The HF causal LM itself (with LoRA layers in place, if any)."""
        return self.model.get_base_model() if self.lora is not None else self.model

    def hidden_size(self) -> int:
        return self.hf_model().config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_table().dtype

    def embedding_table(self) -> torch.Tensor:
        return self.hf_model().get_input_embeddings().weight

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf_model().get_input_embeddings()(ids)

    def train(self, mode: bool = True) -> "HFCausalLM":
        super().train(mode)  # FrozenModule: all in eval mode
        if self.lora is not None:
            from peft.tuners.lora import LoraLayer

            for m in self.modules():
                if isinstance(m, LoraLayer):
                    m.lora_dropout.train(mode)
        return self

    @contextmanager
    def pretrained(self) -> Iterator[None]:
        """LoRA disabled: the LLM computes as the pretrained model."""
        if self.lora is None or self._adapters_off:
            yield
            return
        with self.model.disable_adapter():
            self._adapters_off = True
            try:
                yield
            finally:
                self._adapters_off = False

    def hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        prefix: Sequence[int] = (),
    ) -> torch.Tensor:
        if self.compile_layers and not self._compiled and torch.is_grad_enabled():
            self._compile()
        past = None
        if len(prefix):
            past, attention_mask = self._after_prefix(prefix, attention_mask, read_only=True)
        if attention_mask.dim() == 4:  # boolean; every attention implementation takes the additive form
            attention_mask = torch.zeros_like(attention_mask, dtype=self.dtype).masked_fill(
                ~attention_mask, torch.finfo(self.dtype).min
            )
        # The body alone: the vocabulary projection is applied only where a
        # loss is taken, which saves a large matmul per padded position.
        with self._checkpointing(), self._training_attention():
            out = self._body()(
                inputs_embeds=inputs_embeds.to(self.dtype),
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past,
                use_cache=False,
            )
        return out.last_hidden_state

    def _compile(self) -> None:
        """Compiles the decoder layers' non-attention parts in place (their
        parameter names stay)."""
        for layer in self._layers:
            for name, part in layer.named_children():
                if "attn" not in name:
                    part.compile(dynamic=True)
        self._compiled = True

    @contextmanager
    def _training_attention(self) -> Iterator[None]:
        """Inside, while grad is enabled, the LLM attends with ``train_attn_implementation``."""
        if not (self.train_attn_implementation and torch.is_grad_enabled()):
            yield
            return
        with greedy.attention_implementation(self.hf_model().config, self.train_attn_implementation):
            yield

    @contextmanager
    def _checkpointing(self) -> Iterator[None]:
        """Inside, while gradient checkpointing is on and grad is enabled,
        each decoder layer's forward runs under ``torch.utils.checkpoint``.

        The layers' ``forward`` is wrapped on the instances for the duration
        only (the classes and state dict keys stay as they are); the
        backward pass recomputes through the wrapped forward, after the
        context is left.
        """
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            yield
            return
        layers = self._layers
        own = [layer.__dict__.get("forward") for layer in layers]  # e.g. accelerate's hooks
        for layer in layers:
            layer.forward = functools.partial(_checkpointed, layer.forward)
        try:
            yield
        finally:
            for layer, forward in zip(layers, own):
                if forward is None:
                    del layer.forward
                else:
                    layer.forward = forward

    def _body(self) -> torch.nn.Module:
        """The transformer without its vocabulary projection (HF's
        ``base_model``; under peft ``self.model.base_model`` is the LoRA
        wrapper, hence through :meth:`hf_model`)."""
        return self.hf_model().base_model

    def _after_prefix(
        self, prefix: Sequence[int], attention_mask: torch.Tensor, read_only: bool = False, expand: int = 1
    ):
        """The prefix's keys/values for the batch (each row ``expand`` times,
        as HF generate expands the rows for beams), and the batch's mask
        extended over the prefix."""
        batch_size = attention_mask.size(0)
        cache = self._prefix_cache(tuple(prefix), batch_size * expand, read_only)
        if attention_mask.dim() == 4:  # (B, 1, L, P + L) which keys each position sees: prefix included
            return cache, attention_mask
        ones = attention_mask.new_ones(batch_size, len(prefix))
        return cache, torch.cat([ones, attention_mask], dim=1)

    def _prefix_cache(self, prefix: Tuple[int, ...], batch_size: int, read_only: bool = False):
        """The prefix's keys and values as a cache for ``batch_size`` rows.

        ``read_only``: a forward reads the cache but does not extend it, so a
        decoder layer run twice (recomputed under gradient checkpointing)
        sees the same prefix both times; it holds the prefix once, not once
        per row (a checkpointed step keeps the cache until its backward).
        """
        from transformers import DynamicCache

        rows = 1 if read_only else batch_size
        # The config keeps each layer's kind (full or sliding-window attention).
        cache = DynamicCache(
            [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self._prefix_kv_of(prefix)],
            config=self.hf_model().config,
        )
        if read_only:
            cache.update = types.MethodType(_update_without_storing, cache)
        return cache

    def _prefix_kv_of(self, prefix: Tuple[int, ...]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the (1, heads, len, dim) keys and values of a shared
        prompt prefix.

        While no LLM weight requires grad, the prefix's keys and values do not
        change (until weights are loaded): they are computed once, without
        gradient. While LLM weights train (LoRA), they change at every step
        and carry gradient, so they are recomputed at every call.
        """
        if self._weights_train():
            return self._prefix_kv_now(prefix)
        key = (prefix, self.get_device(), not self._adapters_off)
        if key not in self._prefix_kv:
            with torch.no_grad():
                self._prefix_kv[key] = self._prefix_kv_now(prefix)
        return self._prefix_kv[key]

    def _prefix_kv_now(self, prefix: Tuple[int, ...]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        ids = torch.tensor([prefix], device=self.get_device())
        out = self._body()(input_ids=ids, use_cache=True)
        return [(k, v) for k, v, *_ in out.past_key_values]

    def _weights_train(self) -> bool:
        """Whether any weight the LLM computes with requires grad (LoRA's do
        not count inside :meth:`pretrained`, where they are not used)."""
        return any(
            p.requires_grad
            for n, p in self.named_parameters()
            if not (self._adapters_off and ".lora_" in n)
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.hf_model().get_output_embeddings()(hidden).float()

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix: Sequence[int] = (),
        **kwargs,
    ) -> List[List[int]]:
        inputs_embeds = inputs_embeds.to(self.dtype)
        model = self.hf_model()
        if greedy.handles(model, kwargs):
            out = greedy.greedy_decode(
                self._body(),
                model.get_output_embeddings(),
                model.get_input_embeddings(),
                self._prefix_kv_of(tuple(prefix)) if len(prefix) else [],
                inputs_embeds,
                attention_mask,
                max_new_tokens=kwargs["max_new_tokens"],
                eos_token_id=kwargs.get("eos_token_id", model.generation_config.eos_token_id),
                pad_token_id=self.tokenizer.pad_token_id,
            )
        else:
            out = self._hf_generate(inputs_embeds, attention_mask, prefix, **kwargs)
        return [strip_after_eos(row.tolist(), kwargs.get("eos_token_id")) for row in out]

    def _hf_generate(self, inputs_embeds, attention_mask, prefix, **kwargs) -> torch.Tensor:
        """HF's own generate (sampling, beams, ...)."""
        if len(prefix):
            # The shared prefix comes from the cache (it is most of a short
            # prompt's prefill). HF wants the full rows and skips the cached
            # part: [prefix | left padding | row], the padding masked out.
            head = self.embed(torch.tensor(prefix, device=inputs_embeds.device))
            inputs_embeds = torch.cat([head.expand(inputs_embeds.size(0), -1, -1), inputs_embeds], dim=1)
            config = self.hf_model().generation_config
            beams = kwargs.get("num_beams", config.num_beams) or 1
            expand = beams if beams > 1 else kwargs.get("num_return_sequences", config.num_return_sequences) or 1
            kwargs["past_key_values"], attention_mask = self._after_prefix(prefix, attention_mask, expand=expand)
        # The HF model's own generate: its LoRA layers are in place, and peft's
        # wrapper would only add prompt-learning input handling.
        return self.hf_model().generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )


@typechecked
def lora_config(conf: Dict) -> Dict:
    """``llm_conf.lora`` with defaults filled in; unknown keys are an error."""
    unknown = set(conf) - set(LORA_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown llm_conf.lora keys {sorted(unknown)}; allowed: {sorted(LORA_DEFAULTS)}")
    return {**LORA_DEFAULTS, **conf}


def _with_lora(model: torch.nn.Module, conf: Dict) -> torch.nn.Module:
    """``model`` wrapped by peft with trainable float32 LoRA weights."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=conf["r"],
        lora_alpha=conf["alpha"],
        lora_dropout=conf["dropout"],
        target_modules=conf["target_modules"],
        task_type="CAUSAL_LM",
    )
    # peft freezes the rest and (autocast_adapter_dtype) makes 16-bit LoRA
    # weights float32; FrozenModule keeps them so under the trainer's cast.
    return get_peft_model(model, config)


def decoder_layers(body: torch.nn.Module) -> List[torch.nn.Module]:
    """The repeated decoder layers of an HF transformer body (HF marks
    them as ``GradientCheckpointingLayer``), outermost ones only."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers, names = [], []
    for name, module in body.named_modules():
        if isinstance(module, GradientCheckpointingLayer) and not any(name.startswith(n + ".") for n in names):
            layers.append(module)
            names.append(name)
    return layers


def _checkpointed(forward, *args, **kwargs):
    """``forward(*args, **kwargs)``, its activations recomputed in the
    backward pass.

    Non-reentrant checkpointing: gradients reach every tensor the forward
    used (the adapter's ``inputs_embeds``, LoRA weights, prefix keys and
    values that carry gradient), not only the positional inputs, and the RNG
    state is replayed (LoRA dropout drops the same units twice). A decoder
    layer's forward is HF's checkpointing wrapper, a pass-through in eval
    mode.
    """
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def _update_without_storing(
    cache, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
):
    """``Cache.update`` on a copy of the layer's cache, its one row expanded
    to the batch: the keys and values the layer attends to (the cached
    ones, then the new ones), the cache itself unchanged."""
    layer = copy.copy(cache.layers[layer_idx])
    rows = key_states.size(0)
    layer.keys, layer.values = layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)
    return layer.update(key_states, value_states, *args, **kwargs)


def _forget_prefixes(llm: HFCausalLM, incompatible_keys) -> None:
    llm._prefix_kv.clear()


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def strip_after_eos(ids: List[int], eos) -> List[int]:
    """Cut a generated row at its first end token (batch rows run on)."""
    stops = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k]
    return ids
