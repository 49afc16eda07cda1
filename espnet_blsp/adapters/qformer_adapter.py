"""DeSTA2's Q-Former connector (arXiv 2409.20007), in plain PyTorch."""

import math
from typing import Optional, Tuple

import torch
from torch.nn import functional as F
from typeguard import typechecked

from espnet_blsp.adapters.abs_adapter import AbsAdapter


class QFormerAdapter(AbsAdapter):
    """Learned queries read each tapped encoder layer through a shared Q-Former.

    For every tapped layer k, its own ``num_queries`` learned queries go
    through one shared BERT-style Q-Former (post-LN layers: bidirectional
    self-attention among the queries, cross-attention to layer k's frames,
    a GELU FFN). Each query then mixes its per-layer results with its own
    softmax weights over the layers, and ``LayerNorm + Linear`` maps it to the
    LLM. The output always has ``num_queries`` positions, whatever the length.

    The parameter names are those of transformers' ``BertEncoder`` (``qformer.
    layer.{i}.attention.self.query`` ...), so DeSTA2's ``qformer_connector.pth``
    loads with ``load_state_dict``. BERT is not used itself: under
    transformers 5 its decoder self-attention turns causal under SDPA.

    Args:
        input_size: Encoder frame width: ``input_layers`` layers of width d,
            concatenated layer-major.
        output_size: LLM hidden size.
        input_layers: Number of tapped encoder layers in a frame.
        output_scale: Initial gain of the output LayerNorm.
        num_queries: Learned queries per layer (= output positions).
        num_hidden_layers: Q-Former layers.
        num_attention_heads: Attention heads; None -> d // 64 (Whisper's count).
        intermediate_size: FFN width (BERT's 3072).
        dropout: Dropout on attention probabilities and sub-layer outputs.
        layer_norm_eps: Q-Former LayerNorm epsilon (BERT's 1e-12).
        mask_padding: Hide padded frames from the cross-attention. False
            reproduces DeSTA2, which attends to the whole 30-s window.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int,
        input_layers: int = 1,
        output_scale: float = 1.0,
        num_queries: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: Optional[int] = None,
        intermediate_size: int = 3072,
        dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        mask_padding: bool = True,
    ):
        super().__init__()
        if input_size % input_layers:
            raise ValueError(f"input_size {input_size} is not {input_layers} layers wide")
        d = input_size // input_layers
        heads = num_attention_heads or max(1, d // 64)
        self._output_size = output_size
        self.input_layers = input_layers
        self.num_queries = num_queries
        self.mask_padding = mask_padding
        self.layer_prompts = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(1, num_queries, d)) for _ in range(input_layers)
        )
        # Zeros: every query starts with the mean over layers.
        self.layer_weights = torch.nn.Parameter(torch.zeros(num_queries, input_layers))
        self.qformer = QFormer(
            d, num_hidden_layers, heads, intermediate_size, dropout, layer_norm_eps
        )
        self.proj = torch.nn.Sequential(
            torch.nn.LayerNorm(d), torch.nn.Linear(d, output_size)
        )
        torch.nn.init.constant_(self.proj[0].weight, output_scale)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        target_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """See ``AbsAdapter.forward``; ``target_lengths`` is ignored."""
        B, T, _ = feats.shape
        n, Q = self.input_layers, self.num_queries
        # All layers in one Q-Former pass: layer k is batch block k.
        frames = feats.reshape(B, T, n, -1).permute(2, 0, 1, 3).flatten(0, 1)  # (n*B, T, d)
        queries = torch.cat([p.expand(B, -1, -1) for p in self.layer_prompts])  # (n*B, Q, d)
        mask = None
        if self.mask_padding:
            valid = torch.arange(T, device=feats.device) < feats_lengths[:, None]  # (B, T)
            mask = valid.repeat(n, 1)[:, None, None, :]  # (n*B, 1, 1, T)
        h = self.qformer(queries, frames, mask)  # (n*B, Q, d)
        h = h.reshape(n, B, Q, -1)  # (n, B, Q, d)
        w = self.layer_weights.softmax(dim=-1).t()  # (n, Q): per query, over layers
        h = (w[:, None, :, None].to(h.dtype) * h).sum(0)  # (B, Q, d)
        out = self.proj(h)  # (B, Q, output_size)
        lengths = torch.full_like(feats_lengths, Q)  # (B,)
        return out, lengths


class QFormer(torch.nn.Module):
    """A stack of BERT decoder layers without embeddings (``BertEncoder``)."""

    def __init__(self, d, num_layers, heads, intermediate_size, dropout, eps):
        super().__init__()
        self.layer = torch.nn.ModuleList(
            QFormerLayer(d, heads, intermediate_size, dropout, eps)
            for _ in range(num_layers)
        )

    def forward(self, x, memory, memory_mask=None):
        for layer in self.layer:
            x = layer(x, memory, memory_mask)
        return x


class QFormerLayer(torch.nn.Module):
    """Post-LN BERT layer: self-attention, cross-attention, FFN (``BertLayer``)."""

    def __init__(self, d, heads, intermediate_size, dropout, eps):
        super().__init__()
        self.attention = Attention(d, heads, dropout, eps)
        self.crossattention = Attention(d, heads, dropout, eps)
        self.intermediate = Intermediate(d, intermediate_size)
        self.output = AddNorm(intermediate_size, d, dropout, eps)

    def forward(self, x, memory, memory_mask=None):
        x = self.attention(x, x)  # (B, Q, d), queries see each other both ways
        x = self.crossattention(x, memory, memory_mask)  # (B, Q, d)
        return self.output(self.intermediate(x), x)  # (B, Q, d)


class Attention(torch.nn.Module):
    """Multi-head attention and its add & norm (``BertAttention``)."""

    def __init__(self, d, heads, dropout, eps):
        super().__init__()
        self.self = MultiHeadAttention(d, heads, dropout)
        self.output = AddNorm(d, d, dropout, eps)

    def forward(self, x, memory, memory_mask=None):
        return self.output(self.self(x, memory, memory_mask), x)


class MultiHeadAttention(torch.nn.Module):
    """Scaled dot-product attention, no causal mask (``BertSelfAttention``)."""

    def __init__(self, d, heads, dropout):
        super().__init__()
        if d % heads:
            raise ValueError(f"width {d} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = torch.nn.Linear(d, d)
        self.key = torch.nn.Linear(d, d)
        self.value = torch.nn.Linear(d, d)

    def forward(self, x, memory, memory_mask=None):
        B, Q, d = x.shape
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        q = split(self.query(x))  # (B, h, Q, d/h)
        k = split(self.key(memory))  # (B, h, T, d/h)
        v = split(self.value(memory))  # (B, h, T, d/h)
        a = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=memory_mask,  # (B, 1, 1, T) True = attend, or None
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0 / math.sqrt(d // self.heads),
        )  # (B, h, Q, d/h)
        return a.transpose(1, 2).reshape(B, Q, d)  # (B, Q, d)


class Intermediate(torch.nn.Module):
    """FFN up-projection with exact (erf) GELU (``BertIntermediate``)."""

    def __init__(self, d, intermediate_size):
        super().__init__()
        self.dense = torch.nn.Linear(d, intermediate_size)

    def forward(self, x):
        return F.gelu(self.dense(x))


class AddNorm(torch.nn.Module):
    """Linear, dropout, residual, LayerNorm (``BertSelfOutput``/``BertOutput``)."""

    def __init__(self, d_in, d, dropout, eps):
        super().__init__()
        self.dense = torch.nn.Linear(d_in, d)
        self.LayerNorm = torch.nn.LayerNorm(d, eps=eps)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)
