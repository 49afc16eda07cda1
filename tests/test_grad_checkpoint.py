"""llm_conf.gradient_checkpointing: same gradients, fewer kept activations."""

import pytest
import torch

from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.llm.batch import assemble, generate, response_logits, token_logits
from espnet_blsp.llm.hf_causal_lm import HFCausalLM, decoder_layers
from espnet_blsp.models.blsp import BLSPModel

WIDTH = 16  # encoder frame width
LORA = {"r": 4, "alpha": 8, "dropout": 0.1}  # dropout: the recompute must replay its RNG


def build(llm_dir, lora=None, checkpointing=True) -> BLSPModel:
    torch.manual_seed(0)
    llm = HFCausalLM(str(llm_dir), dtype="float32", lora=lora, gradient_checkpointing=checkpointing)
    if lora is not None:  # peft starts LoRA's B at zero: give A a gradient too
        with torch.no_grad():
            for p in llm.parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
    adapter = ConvGLUAdapter(WIDTH, llm.hidden_size(), bottleneck_dim=8)
    return BLSPModel(PrecomputedEncoder(WIDTH), adapter, llm).train()


def batch():
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 40, WIDTH, generator=g)
    lengths = torch.tensor([40, 28])
    return frames, lengths, [[20, 21, 22, 23], [24, 25]]


def loss(model: BLSPModel, prefix_cache: bool) -> torch.Tensor:
    """The LM loss, the prompt's shared prefix from the KV cache or recomputed."""
    frames, lengths, targets = batch()
    slots = [{"speech": s} for s in model.speech_slots(frames, lengths)]
    if prefix_cache:
        logits, target, _ = response_logits(model.llm, slots, model.prompt, targets)
    else:
        logits, target, _ = token_logits(model.llm, assemble(model.llm, slots, model.prompt, targets))
    return torch.nn.functional.cross_entropy(logits, target)


def step(model: BLSPModel, prefix_cache: bool):
    """One step's loss and the gradients of the adapter's and LoRA's weights."""
    model.zero_grad()
    torch.manual_seed(2)  # LoRA dropout's draws
    value = loss(model, prefix_cache)
    value.backward()
    trained = [*model.adapter.named_parameters("adapter"), *model.llm.named_parameters("llm")]
    return value.detach(), {n: p.grad.clone() for n, p in trained if p.requires_grad}


class Counter:
    """Calls of each decoder layer's attention (a layer's inner modules run
    again when the layer is recomputed; counted as they start, for the
    recompute stops once it has what backward needs) and bytes autograd
    saves for backward."""

    def __init__(self, model: BLSPModel):
        self.calls = 0
        self.saved = {}
        for layer in decoder_layers(model.llm._body()):
            layer.self_attn.register_forward_pre_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def _pack(self, t: torch.Tensor):
        self.saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def run(self, fn):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            return fn()


@pytest.mark.parametrize("lora", [None, LORA], ids=["frozen", "lora"])
@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix_cache", "full_prompt"])
def test_checkpointing_gives_the_same_gradients(tiny_llm_dir, lora, prefix_cache):
    """The adapter's (and LoRA's) gradients equal those without
    checkpointing, the prompt prefix from the KV cache or not; with LoRA
    dropout on, whose draws the recompute must repeat."""
    model = build(tiny_llm_dir, lora)
    model.llm.gradient_checkpointing = False
    plain_loss, plain = step(model, prefix_cache)
    model.llm.gradient_checkpointing = True
    ckpt_loss, ckpt = step(model, prefix_cache)
    names = set(plain)
    assert any(n.startswith("adapter.") for n in names)
    assert (lora is not None) == any(".lora_" in n for n in names)
    assert all(plain[n].abs().sum() > 0 for n in names)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=0)
    for n in names:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=1e-6, atol=1e-8, msg=n)


@pytest.mark.parametrize("lora", [None, LORA], ids=["frozen", "lora"])
def test_checkpointing_recomputes_the_layers_and_keeps_less(tiny_llm_dir, lora):
    """The option (from the constructor) makes each decoder layer run twice
    per step and autograd keep fewer bytes for backward."""
    model = build(tiny_llm_dir, lora, checkpointing=True)
    plain = build(tiny_llm_dir, lora, checkpointing=False)
    n_layers = len(decoder_layers(model.llm._body()))
    runs = {}
    for name, m in [("ckpt", model), ("plain", plain)]:
        loss(m, True)  # the prefix's keys and values are cached (without LoRA) before counting
        counter = Counter(m)
        value = counter.run(lambda: loss(m, True))
        forward_calls = counter.calls
        value.backward()
        runs[name] = (forward_calls, counter.calls, sum(counter.saved.values()))
    prefix_calls = n_layers if lora is not None else 0  # the prefix recomputed (LoRA trains), not checkpointed
    assert runs["plain"][:2] == (prefix_calls + n_layers,) * 2
    assert runs["ckpt"][:2] == (prefix_calls + n_layers, prefix_calls + 2 * n_layers)
    assert runs["ckpt"][2] < 0.7 * runs["plain"][2], runs
    # The layers' forward is wrapped only during the step.
    assert not any("forward" in layer.__dict__ for layer in decoder_layers(model.llm._body()))


def test_no_checkpointing_without_grad(tiny_llm_dir, monkeypatch):
    """Scoring under no_grad and generation run as without the option."""
    import torch.utils.checkpoint

    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    model = build(tiny_llm_dir, checkpointing=True)
    plain = build(tiny_llm_dir, checkpointing=False)
    with torch.no_grad():
        torch.testing.assert_close(loss(model, True), loss(plain, True), rtol=0, atol=0)
        slots = [{"speech": s} for s in model.speech_slots(*batch()[:2])]
    for kwargs in [{"do_sample": False}, {"do_sample": True, "top_k": 5}]:  # our greedy decoder, HF's generate
        texts = []
        for m in (model, plain):
            torch.manual_seed(3)
            texts.append(generate(m.llm, slots, m.prompt, max_new_tokens=4, **kwargs))
        assert texts[0] == texts[1]
    assert not calls
    loss(model, True)  # with grad
    assert len(calls) == len(decoder_layers(model.llm._body()))
