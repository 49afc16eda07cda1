"""The adapter zoo: shapes, lengths, padding, gradients, and each adapter's own facts."""

import pytest
import torch
from espnet2.asr.postencoder.abs_postencoder import AbsPostEncoder
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from espnet_blsp.adapters.abs_adapter import AbsAdapter
from espnet_blsp.adapters.cif_adapter import CIFAdapter, cif_integrate
from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.adapters.qformer_adapter import QFormerAdapter
from espnet_blsp.adapters.stack_swiglu_adapter import StackSwiGLUAdapter
from espnet_blsp.losses.quantity import quantity_loss

D_IN, D_OUT = 16, 24  # tiny encoder frame and LLM widths


def build(name, **kwargs):
    """A tiny adapter of each kind, as the task would build it by keyword."""
    torch.manual_seed(0)
    own = {
        "conv_glu": (ConvGLUAdapter, dict(bottleneck_dim=8)),
        "stack_swiglu": (StackSwiGLUAdapter, dict(stack_factor=4, hidden_size=32)),
        "qformer": (
            QFormerAdapter,
            dict(input_layers=2, num_queries=4, num_attention_heads=2, intermediate_size=32),
        ),
        "cif": (CIFAdapter, dict(hidden_size=12)),
    }
    cls, conf = own[name]
    return cls(input_size=D_IN, output_size=D_OUT, **{**conf, **kwargs}).eval()


def random_batch(lengths, seed=1):
    """Frames for rows of the given lengths, with loud garbage in the padding."""
    g = torch.Generator().manual_seed(seed)
    feats = 100 * torch.randn(len(lengths), max(lengths), D_IN, generator=g)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, D_IN, generator=g)
    return feats, torch.tensor(lengths)


def assert_padding_invariant(adapter, **kwargs):
    """Row 0 alone gives the same valid outputs as inside a padded batch."""
    feats, lengths = random_batch([13, 21])
    targets = kwargs.pop("target_lengths", None)
    first = None if targets is None else targets[:1]
    alone, n_alone = adapter(feats[:1, :13], lengths[:1], target_lengths=first, **kwargs)
    out, n = adapter(feats, lengths, target_lengths=targets, **kwargs)
    assert n[0] == n_alone[0]
    torch.testing.assert_close(out[0, : n[0]], alone[0, : n[0]], atol=1e-5, rtol=1e-5)


def assert_gradient_reaches_all(adapter, **kwargs):
    adapter.train()
    feats, lengths = random_batch([13, 21])
    out, n = adapter(feats, lengths, **kwargs)
    # Random weights: the sum of a normalised vector has no gradient.
    loss = (out * torch.randn_like(out)).sum()
    for value in adapter.extra_losses().values():
        loss = loss + value
    loss.backward()
    for name, p in adapter.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---- the contract, for every adapter --------------------------------------------------
@pytest.mark.parametrize("name", ["conv_glu", "stack_swiglu", "qformer", "cif"])
def test_contract(name):
    adapter = build(name, input_layers=2, output_scale=0.05)
    assert isinstance(adapter, AbsAdapter) and isinstance(adapter, AbsPostEncoder)
    assert adapter.output_size() == D_OUT
    feats, lengths = random_batch([13, 21])
    out, n = adapter(feats, lengths)
    assert out.shape == (2, int(n.max()), D_OUT) and n.shape == (2,)
    assert adapter.extra_losses() == {}
    adapter(feats, lengths, target_lengths=torch.tensor([3, 5]))  # accepted by all
    norms = (torch.nn.LayerNorm, torch.nn.RMSNorm)
    final = [m for m in adapter.modules() if isinstance(m, norms)][-1]
    assert (final.weight == 0.05).all()  # qformer's sits before its last Linear (DeSTA2)


@pytest.mark.parametrize("name", ["stack_swiglu", "qformer", "cif"])
def test_padding_invariance_and_gradients(name):
    adapter = build(name)
    assert_padding_invariant(adapter)
    assert_padding_invariant(adapter, target_lengths=torch.tensor([3, 5]))
    assert_gradient_reaches_all(adapter, target_lengths=torch.tensor([3, 5]))


# ---- stack_swiglu ----------------------------------------------------------------------
def test_stack_swiglu_lengths_and_scale():
    adapter = build("stack_swiglu", output_scale=0.1)
    for T in [1, 3, 4, 5, 8, 9]:
        out, n = adapter(torch.randn(1, T, D_IN), torch.tensor([T]))
        assert n.item() == -(-T // 4) and out.shape == (1, n.item(), D_OUT)
        # RMSNorm with gain 0.1: every output vector has RMS 0.1 (up to eps).
        torch.testing.assert_close(
            out.pow(2).mean(-1).sqrt(), torch.full((1, n.item()), 0.1), rtol=1e-2, atol=0
        )
    feats, lengths = random_batch([5, 9, 12])
    assert adapter(feats, lengths)[1].tolist() == [2, 3, 3]


# ---- qformer ---------------------------------------------------------------------------
def hf_bert_encoder(d, heads, intermediate, layers=2):
    config = BertConfig(
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        is_decoder=True,
        add_cross_attention=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",  # SDPA would make the queries causal (DESTA2.md §2.2)
    )
    return BertEncoder(config).eval()


def test_qformer_parameter_counts():
    with torch.device("meta"):
        demo = QFormerAdapter(4 * 384, 576, input_layers=4)  # whisper tiny.en -> SmolLM2
        desta2 = QFormerAdapter(4 * 768, 4096, input_layers=4)  # whisper small -> Llama 3 8B
    assert sum(p.numel() for p in demo.parameters()) == 7_416_640
    assert sum(p.numel() for p in desta2.parameters()) == 22_251_776
    assert demo.qformer.layer[0].attention.self.heads == 6
    assert desta2.qformer.layer[0].attention.self.heads == 12


def test_qformer_state_dict_is_desta2s():
    adapter = build("qformer")
    keys = set(adapter.state_dict())
    hf = {"qformer." + k for k in hf_bert_encoder(8, 2, 32).state_dict()}
    assert {k for k in keys if k.startswith("qformer.")} == hf
    rest = {"layer_prompts.0", "layer_prompts.1", "layer_weights"}
    rest |= {f"proj.{i}.{w}" for i in (0, 1) for w in ("weight", "bias")}
    assert keys - hf == rest
    assert adapter.layer_prompts[0].shape == (1, 4, 8)
    assert adapter.layer_weights.shape == (4, 2) and not adapter.layer_weights.any()


def test_qformer_matches_hf_bert_without_masks():
    """DeSTA2's code path: HF BertEncoder per layer, no masks, softmax mix, proj."""
    adapter = build("qformer", mask_padding=False)
    with torch.no_grad():
        adapter.layer_weights.normal_()
    bert = hf_bert_encoder(8, 2, 32)
    bert.load_state_dict(adapter.qformer.state_dict())
    feats, lengths = random_batch([13, 21])
    with torch.no_grad():
        out, n = adapter(feats, lengths)
        per_layer = [
            bert(
                hidden_states=prompt.expand(2, -1, -1),
                encoder_hidden_states=feats[..., k * 8 : (k + 1) * 8],
            )[0]
            for k, prompt in enumerate(adapter.layer_prompts)
        ]
        w = adapter.layer_weights.softmax(-1)  # (Q, n_layers)
        mixed = sum(w[:, k, None] * h for k, h in enumerate(per_layer))
        expected = adapter.proj(mixed)
    assert n.tolist() == [4, 4]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_qformer_queries_attend_both_ways():
    qformer = build("qformer").qformer
    x, memory = torch.randn(1, 4, 8), torch.randn(1, 7, 8)
    changed = x.clone()
    changed[:, -1] += 1.0
    first, first_changed = qformer(x, memory)[0, 0], qformer(changed, memory)[0, 0]
    assert not torch.allclose(first, first_changed)


def test_qformer_mask_padding_switch():
    """Masked, padding changes nothing; unmasked (DeSTA2), it does."""
    feats, lengths = random_batch([13, 21])
    for mask_padding in (True, False):
        adapter = build("qformer", mask_padding=mask_padding)
        alone = adapter(feats[:1, :13], lengths[:1])[0]
        batched = adapter(feats, lengths)[0][:1]
        assert torch.allclose(alone, batched, atol=1e-5) == mask_padding


# ---- cif -------------------------------------------------------------------------------
def cif_reference(frames, alphas, n):
    """Integrate-and-fire frame by frame, for one row (the paper's loop)."""
    outs, acc, cur = [], 0.0, torch.zeros(frames.size(-1))
    for h, a in zip(frames, alphas.tolist()):
        while acc + a >= 1.0:
            need = 1.0 - acc
            outs.append(cur + need * h)
            acc, cur, a = 0.0, torch.zeros_like(cur), a - need
        acc, cur = acc + a, cur + a * h
    if len(outs) < n:
        outs.append(cur)  # the tail, when rounding left it just short of 1
    return torch.stack(outs[:n])


def test_cif_integrate_matches_the_loop():
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(3, 10, 5, generator=g)
    alphas = torch.rand(3, 10, generator=g)
    alphas[1, 7:] = 0  # padding
    alphas[2] *= 3  # scaled alphas above 1 reach three outputs
    targets = torch.tensor([4, 3, 9])
    alphas = alphas * (targets / alphas.sum(-1))[:, None]
    assert alphas[2].max() > 1
    out = cif_integrate(frames, alphas, targets)
    assert out.shape == (3, 9, 5)
    for b in range(3):
        n = targets[b].item()
        expected = cif_reference(frames[b], alphas[b], n)
        torch.testing.assert_close(out[b, :n], expected, atol=1e-5, rtol=1e-5)
        assert not out[b, n:].any()
    # Every output integrates exactly one unit of weight.
    ones = cif_integrate(torch.ones(3, 10, 1), alphas, targets)[..., 0]
    torch.testing.assert_close(ones, (torch.arange(9) < targets[:, None]).float())


def test_cif_constant_half_alpha_averages_frame_pairs():
    adapter = build("cif")
    with torch.no_grad():
        adapter.weight_out.weight.zero_()
        adapter.weight_out.bias.zero_()  # sigmoid(0) = 0.5 everywhere
    feats, lengths = random_batch([8, 6])
    out, n = adapter(feats, lengths)
    assert n.tolist() == [4, 3]
    with torch.no_grad():
        h = adapter.frame_proj(feats)  # (B, T, H)
        pairs = (h[:, 0::2] + h[:, 1::2]) / 2  # (B, 4, H)
        expected = adapter.norm(adapter.out_proj(pairs))
    torch.testing.assert_close(out[0], expected[0])
    torch.testing.assert_close(out[1, :3], expected[1, :3])
    assert not out[1, 3:].any()


def test_cif_target_lengths_and_quantity_loss():
    adapter = build("cif")
    feats, lengths = random_batch([13, 21])
    targets = torch.tensor([6, 2])
    out, n = adapter(feats, lengths, target_lengths=targets)
    assert n.tolist() == [6, 2] and out.shape == (2, 6, D_OUT)
    assert not out[1, 2:].any()
    losses = adapter.extra_losses()
    assert set(losses) == {"quantity_loss"}
    # The loss is on the unscaled alphas: recompute them from the predictor.
    valid = torch.arange(21) < lengths[:, None]  # (B, T)
    h = adapter.frame_proj(feats) * valid[..., None]
    a = torch.relu(adapter.weight_conv(h.transpose(1, 2))).transpose(1, 2)
    alphas = torch.sigmoid(adapter.weight_out(a)).squeeze(-1) * valid
    expected = (alphas.sum(-1) - targets).abs().mean()
    torch.testing.assert_close(losses["quantity_loss"], expected)
    torch.testing.assert_close(quantity_loss(alphas, targets), expected)
    # Without targets, the length is the rounded sum of alphas, and no loss.
    _, n = adapter(feats, lengths)
    assert n.tolist() == alphas.sum(-1).round().long().clamp(min=1).tolist()
    assert adapter.extra_losses() == {}


def test_cif_predictor_learns_from_both_losses():
    feats, lengths = random_batch([13, 21])
    targets = torch.tensor([6, 2])
    for use_quantity in (True, False):
        adapter = build("cif").train()
        out, _ = adapter(feats, lengths, target_lengths=targets)
        if use_quantity:
            loss = adapter.extra_losses()["quantity_loss"]
        else:
            loss = (out * torch.randn_like(out)).sum()
        loss.backward()
        for p in (adapter.weight_out.weight, adapter.weight_conv.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0
