"""Greedy decoding of a batch that shares a prompt prefix, at CPU speed.

HF ``generate`` copies every row's whole key/value cache at each step
(``torch.cat``), keeps one copy of the shared prefix per row, and computes
rows that have ended until the last one ends. Here the prefix's keys and
values are kept once and attended to by all rows in one matmul (the rows
folded into the query axis), the rows' own keys and values go into buffers
allocated once, and rows that ended leave the batch. Same tokens as HF
generate; twice its throughput on DeSTA2's descriptions (434-token prefix)
with SmolLM2-135M on a 2-core CPU (``bench/generate_throughput.py``).

The attention runs through transformers' attention-function registry: the
model computes projections and rotary embeddings as always, and hands this
module's :func:`_attention` the current queries, keys and values, with the
decoding state passed down as a keyword argument.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch

NAME = "espnet_blsp_shared_prefix"

# Models whose attention is plain causal multi-head/grouped-query attention
# (no sliding window, soft-capping or sinks): checked against HF generate.
MODEL_TYPES = {"llama", "qwen2", "qwen3"}

# HF generate settings this decoder reproduces; anything else goes to HF.
GREEDY_KWARGS = {"max_new_tokens", "do_sample", "num_beams", "eos_token_id"}

# A model's own generation defaults (generation_config.json) that leave greedy
# decoding as it is; any other, e.g. Qwen2.5-Instruct's repetition_penalty
# 1.05, HF generate applies, and so the decoding goes to HF.
NEUTRAL_DEFAULTS = {
    "do_sample", "num_beams", "temperature", "top_k", "top_p", "min_p", "typical_p",  # sampling (off) or beams (checked)
    "max_length", "max_new_tokens", "bos_token_id", "eos_token_id", "pad_token_id",
    "use_cache", "output_attentions", "output_hidden_states", "_from_model_config", "transformers_version",
}


def handles(model, generate_kwargs: Dict) -> bool:
    """Whether :func:`greedy_decode` computes what HF ``generate`` would for
    ``model`` (an HF causal LM) and these ``generate`` keyword arguments."""
    config, defaults = model.config, model.generation_config
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return (
        config.model_type in MODEL_TYPES
        and not sliding
        and "max_new_tokens" in generate_kwargs
        and set(generate_kwargs) <= GREEDY_KWARGS
        and not generate_kwargs.get("do_sample", defaults.do_sample)
        and (generate_kwargs.get("num_beams", defaults.num_beams) or 1) == 1  # unset: 1
        and set(defaults.to_diff_dict()) <= NEUTRAL_DEFAULTS
    )


@dataclass
class _State:
    """What the attention function needs besides queries, keys and values."""

    prefix: Sequence[Tuple[torch.Tensor, torch.Tensor]]  # per layer (1, Hkv, P, d)
    valid: torch.Tensor  # (B, L) keys that may be attended to (not padding)
    start: int = 0  # buffer position of the current input's first token
    allowed: Optional[torch.Tensor] = None  # (B, q, start + q) which keys each query sees
    buffers: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def begin(self, length: int) -> None:
        """Prepares the mask for the next ``length`` input positions."""
        end = self.start + length
        keys = torch.arange(end, device=self.valid.device)
        queries = torch.arange(self.start, end, device=self.valid.device)[:, None]
        # A position sees the real positions up to itself, and always itself,
        # so a padding position's output stays finite (no one reads it).
        self.allowed = (self.valid[:, None, :end] & (keys <= queries)) | (keys == queries)

    def write(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        """Stores the layer's new keys/values; returns all of the rows' so far."""
        if layer not in self.buffers:
            b, h, _, d = key.shape
            size = (b, h, self.valid.size(1), d)
            self.buffers[layer] = (key.new_empty(size), value.new_empty(size))
        keys, values = self.buffers[layer]
        end = self.start + key.size(2)
        keys[:, :, self.start : end] = key
        values[:, :, self.start : end] = value
        return keys[:, :, :end], values[:, :, :end]

    def keep(self, rows: torch.Tensor) -> None:
        """Drops the rows not in the boolean mask ``rows``."""
        self.valid = self.valid[rows]
        self.buffers = {k: (keys[rows], values[rows]) for k, (keys, values) in self.buffers.items()}


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, H, n, k) -> (H, B * n, k): the rows as one long query axis."""
    b, h, n, k = x.shape
    return x.transpose(0, 1).reshape(h, b * n, k)


def _unfold(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`_fold`."""
    h, bn, k = x.shape
    return x.reshape(h, batch, bn // batch, k).transpose(0, 1)


def _attention(module, query, key, value, attention_mask, scaling, dropout=0.0, blsp_decode=None, **kwargs):
    """Causal attention over [shared prefix | the rows' own keys] in the
    query's dtype; returns (B, q, H, d) as HF's attention functions do."""
    state: _State = blsp_decode
    keys, values = state.write(module.layer_idx, key, value)
    batch, heads, length, dim = query.shape
    prefix_keys, prefix_values = state.prefix[module.layer_idx] if state.prefix else (None, None)
    if length > 1 or prefix_keys is None:
        # Prefill (compute-bound): PyTorch's fused kernel, the prefix copied
        # per row once.
        allowed = state.allowed[:, None]
        if prefix_keys is not None:
            keys = torch.cat([prefix_keys.expand(batch, -1, -1, -1), keys], dim=2)
            values = torch.cat([prefix_values.expand(batch, -1, -1, -1), values], dim=2)
            allowed = torch.cat([allowed.new_ones(*allowed.shape[:3], prefix_keys.size(2)), allowed], dim=-1)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=allowed, scale=scaling, enable_gqa=heads > key.size(1)
        )
        return out.transpose(1, 2).contiguous(), None
    # One new token per row: the prefix's keys read once for all rows, not per row.
    groups = key.size(1)
    query = query.reshape(batch, groups, heads // groups, dim) * scaling
    own = (query @ keys.transpose(-1, -2)).masked_fill(~state.allowed[:, None], float("-inf"))
    shared = _unfold(_fold(query) @ prefix_keys[0].transpose(-1, -2), batch)
    weights = torch.cat([shared, own], dim=-1).softmax(dim=-1)
    n = shared.size(-1)
    out = _unfold(_fold(weights[..., :n]) @ prefix_values[0], batch) + weights[..., n:] @ values
    return out.reshape(batch, 1, heads, dim), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, _attention)


@contextmanager
def attention_implementation(config, name: str) -> Iterator[None]:
    """Inside, the model of ``config`` attends with the registered attention
    implementation ``name`` (transformers reads it at every call)."""
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


@torch.no_grad()
def greedy_decode(
    body: torch.nn.Module,
    head: torch.nn.Module,
    embed: torch.nn.Module,
    prefix: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id,
    pad_token_id: int,
) -> torch.Tensor:
    """Greedy continuations of left-padded rows after a shared prefix.

    Args:
        body: The HF transformer without its vocabulary projection.
        head: The vocabulary projection.
        embed: The input embedding.
        prefix: Per layer, the prefix's (1, Hkv, P, d) keys and values
            (P may be 0 when rows share nothing).
        inputs_embeds: (B, T, D) left-padded rows after the prefix.
        attention_mask: (B, T) 1 on real positions.
        eos_token_id: An id or list of ids that end a row.

    Returns:
        (B, n) new ids; a row that ended goes on with ``pad_token_id``.
    """
    batch, length = attention_mask.shape
    device = inputs_embeds.device
    offset = prefix[0][0].size(2) if len(prefix) else 0
    valid = torch.zeros(batch, length + max_new_tokens, dtype=torch.bool, device=device)
    valid[:, :length] = attention_mask.bool()
    state = _State(prefix=prefix, valid=valid)
    positions = (offset + attention_mask.long().cumsum(-1) - 1).clamp(min=offset)
    stops = torch.tensor(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id], device=device)
    new = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # the rows still decoding, by index in the batch
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # of those, rows that ended
    x = inputs_embeds
    _register()
    with attention_implementation(body.config, NAME):
        for step in range(max_new_tokens):
            state.begin(x.size(1))
            hidden = body(inputs_embeds=x, position_ids=positions, use_cache=False, blsp_decode=state)
            token = head(hidden.last_hidden_state[:, -1]).argmax(-1)
            new[rows[~done], step] = token[~done]
            done |= torch.isin(token, stops)
            if bool(done.all()):
                return new[:, : step + 1]
            state.start += x.size(1)
            state.valid[:, state.start] = True
            x, positions = embed(token)[:, None], positions[:, -1:] + 1
            # Rows that ended cost a step's compute each: drop them once they
            # are an eighth of the batch (dropping copies the keys/values).
            if int(done.sum()) * 8 >= done.numel():
                keep = ~done
                state.keep(keep)
                rows, x, positions, done = rows[keep], x[keep], positions[keep], done[keep]
    return new
