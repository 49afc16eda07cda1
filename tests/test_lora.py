"""LoRA on the LLM, and checkpoints that hold exactly what trains."""

import pytest
import torch

from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.encoders.whisper_encoder import WhisperSpeechEncoder
from espnet_blsp.llm.hf_causal_lm import LORA_DEFAULTS, HFCausalLM, lora_config
from espnet_blsp.models.blsp import BLSPModel
from espnet_blsp.utils.frozen import FrozenModule, frozen_state_dict_hooks

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def lora_llm(llm_dir, dtype="float32", **conf) -> HFCausalLM:
    """A LoRA LLM whose LoRA weights are random (peft starts B at zero,
    which would make LoRA a no-op)."""
    torch.manual_seed(0)
    llm = HFCausalLM(str(llm_dir), dtype=dtype, lora={**LORA, **conf})
    perturb(llm)
    return llm


def perturb(module: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g).to(p.dtype))


def lora_names(module: torch.nn.Module):
    return [n for n, _ in module.named_parameters() if ".lora_" in n]


def build_blsp(whisper_dir, llm_dir, lora=LORA) -> BLSPModel:
    torch.manual_seed(0)
    encoder = WhisperSpeechEncoder(str(whisper_dir))
    llm = HFCausalLM(str(llm_dir), dtype="float32", lora=lora)
    adapter = ConvGLUAdapter(encoder.output_size(), llm.hidden_size(), bottleneck_dim=8)
    return BLSPModel(encoder, adapter, llm)


def llm_inputs(n: int = 6):
    g = torch.Generator().manual_seed(3)
    embeds = torch.randn(2, n, 32, generator=g)
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, -2:] = 0
    return embeds, mask, torch.arange(n).expand(2, -1)


def llm_logits(llm: HFCausalLM, prefix=()) -> torch.Tensor:
    with torch.no_grad():
        return llm.logits(llm.hidden_states(*llm_inputs(), prefix=prefix))


# ---- LoRA on the LLM ------------------------------------------------------------
def test_lora_config_defaults_and_unknown_keys(tiny_llm_dir):
    assert lora_config({}) == LORA_DEFAULTS
    assert lora_config({"r": 2})["r"] == 2 and lora_config({"r": 2})["alpha"] == 16
    with pytest.raises(ValueError, match="rank.*allowed"):
        HFCausalLM(str(tiny_llm_dir), lora={"rank": 4})


def test_lora_weights_train_in_float32_on_a_bf16_base(tiny_llm_dir):
    llm = HFCausalLM(str(tiny_llm_dir), dtype="bfloat16", lora={})
    llm.to(dtype=torch.float32)  # as ESPnet's trainer casts the model
    trainable = {n: p for n, p in llm.named_parameters() if p.requires_grad}
    assert set(trainable) == set(lora_names(llm)) and len(trainable) == 2 * 2 * 2  # layers x {q,v} x {A,B}
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert llm.dtype == torch.bfloat16
    embeds, mask, positions = llm_inputs()
    llm.logits(llm.hidden_states(embeds, mask, positions, prefix=[1, 2])).sum().backward()
    # B starts at zero, so only B gets a gradient at first.
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n)


def test_only_lora_dropout_follows_train_mode(tiny_llm_dir):
    llm = lora_llm(tiny_llm_dir, dropout=0.5)
    llm.train()
    training = {n for n, m in llm.named_modules() if m.training}
    assert training and all(".lora_dropout" in n for n in training)
    assert not torch.equal(llm_logits(llm), llm_logits(llm))  # dropout acts
    llm.eval()
    assert not any(m.training for m in llm.modules())
    torch.testing.assert_close(llm_logits(llm), llm_logits(llm))


def test_pretrained_context_runs_the_base_model(tiny_llm_dir):
    llm = lora_llm(tiny_llm_dir)
    base = HFCausalLM(str(tiny_llm_dir), dtype="float32")
    for prefix in [(), (5, 6, 7)]:
        assert not torch.allclose(llm_logits(llm, prefix), llm_logits(base, prefix), atol=1e-3)
        with llm.pretrained():
            with llm.pretrained():  # nesting keeps LoRA off until the outer exit
                pass
            torch.testing.assert_close(llm_logits(llm, prefix), llm_logits(base, prefix))
        assert not torch.allclose(llm_logits(llm, prefix), llm_logits(base, prefix), atol=1e-3)
    embeds, mask, _ = llm_inputs()
    kwargs = dict(max_new_tokens=4, do_sample=False)
    with llm.pretrained():
        assert llm.generate(embeds, mask, prefix=[5], **kwargs) == base.generate(embeds, mask, prefix=[5], **kwargs)
    with base.pretrained():  # no LoRA: nothing to switch off
        torch.testing.assert_close(llm_logits(base), llm_logits(base))


def test_prefix_keys_and_values_train_with_lora(tiny_llm_dir):
    """With LoRA the cached-prefix path gives the full sequence's loss and
    LoRA gradients, also after a step has changed the LoRA weights."""
    llm = lora_llm(tiny_llm_dir)
    prefix = [5, 6, 7, 8]
    embeds, mask, positions = llm_inputs()  # the rows after the prefix
    targets = torch.randint(len(llm.tokenizer), mask.shape, generator=torch.Generator().manual_seed(4))
    real = mask.bool()
    params = {n: p for n, p in llm.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(params.values(), lr=0.5)

    def loss_and_grads(cached: bool):
        opt.zero_grad()
        if cached:
            hidden = llm.hidden_states(embeds, mask, positions + len(prefix), prefix)
        else:
            head = llm.embed(torch.tensor(prefix)).expand(2, -1, -1)
            n = len(prefix) + mask.size(1)
            full_mask = torch.cat([torch.ones(2, len(prefix), dtype=torch.long), mask], dim=1)
            hidden = llm.hidden_states(torch.cat([head, embeds], dim=1), full_mask, torch.arange(n).expand(2, -1))
            hidden = hidden[:, len(prefix) :]
        loss = torch.nn.functional.cross_entropy(llm.logits(hidden[real]), targets[real])
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in params.items()}

    for step in range(2):
        full, full_grads = loss_and_grads(False)
        cached, cached_grads = loss_and_grads(True)
        torch.testing.assert_close(cached, full)
        for n in params:
            assert full_grads[n].abs().sum() > 0
            torch.testing.assert_close(cached_grads[n], full_grads[n], atol=1e-6, rtol=1e-4)
        opt.step()
    # A prefix cached once without gradient (right only for a frozen LLM)
    # would miss the prefix's share of the gradients.
    llm._weights_train = lambda: False
    _, frozen_prefix_grads = loss_and_grads(True)
    assert any(not torch.allclose(frozen_prefix_grads[n], cached_grads[n]) for n in params)


def test_loaded_weights_refresh_the_prefix_cache(tiny_llm_dir):
    trained = lora_llm(tiny_llm_dir).requires_grad_(False)  # as for inference
    llm = HFCausalLM(str(tiny_llm_dir), dtype="float32", lora=LORA).requires_grad_(False)
    before = llm_logits(llm, (5, 6))  # caches the prefix's keys and values
    llm.load_state_dict({k: v for k, v in trained.state_dict().items() if ".lora_" in k}, strict=False)
    assert not torch.allclose(llm_logits(llm, (5, 6)), before)
    torch.testing.assert_close(llm_logits(llm, (5, 6)), llm_logits(trained, (5, 6)))


# ---- checkpoints: exactly what requires grad -----------------------------------
def test_lora_checkpoint_holds_lora_and_adapter_and_round_trips(tiny_whisper_dir, tiny_llm_dir, tmp_path):
    model = build_blsp(tiny_whisper_dir, tiny_llm_dir)
    perturb(model)
    state = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(state) and all(k.startswith("adapter.") for k in set(state) - trainable)  # + its buffers
    assert any(".lora_A." in k for k in state) and any(".lora_B." in k for k in state)
    assert any(k.startswith("adapter.") for k in state)
    assert not any(k.startswith("encoder.") or "base_layer" in k for k in state)
    torch.save(state, tmp_path / "model.pth")

    fresh = build_blsp(tiny_whisper_dir, tiny_llm_dir)
    fresh.load_state_dict(torch.load(tmp_path / "model.pth"))  # strict
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k])
    torch.testing.assert_close(llm_logits(fresh.llm), llm_logits(model.llm))

    lora_key = next(k for k in state if ".lora_B." in k)
    with pytest.raises(RuntimeError, match="lora_B"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != lora_key})
    with pytest.raises(RuntimeError, match="unknown"):
        fresh.load_state_dict({**state, "unknown.weight": torch.zeros(1)})


class _Tree(torch.nn.Module):
    """A frozen pretrained part, a trainable part with running statistics
    (and no parameters of its own), and a frozen parameter at the top."""

    def __init__(self):
        super().__init__()
        self.pretrained = FrozenModule()
        self.pretrained.linear = torch.nn.Linear(3, 3)
        self.pretrained.norm = torch.nn.BatchNorm1d(3)
        self.pretrained.freeze()
        self.head = torch.nn.Sequential(torch.nn.BatchNorm1d(3, affine=False), torch.nn.Linear(3, 2))
        self.scale = torch.nn.Parameter(torch.ones(1), requires_grad=False)
        frozen_state_dict_hooks(self)


def test_frozen_only_checkpoint_holds_the_trainable_params_and_their_buffers():
    tree = _Tree()
    tree.train()
    tree.head(torch.randn(4, 3))  # moves the running statistics
    state = tree.state_dict()
    assert set(state) == {
        "head.0.running_mean", "head.0.running_var", "head.0.num_batches_tracked",
        "head.1.weight", "head.1.bias",
    }
    fresh = _Tree()
    fresh.load_state_dict(state)  # strict: frozen keys are not required
    torch.testing.assert_close(fresh.head[0].running_mean, tree.head[0].running_mean)
    with pytest.raises(RuntimeError, match="running_var"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "head.0.running_var"})
    # What is frozen is decided at each call, on requires_grad alone.
    tree.head[1].weight.requires_grad_(False)
    assert "head.1.weight" not in tree.state_dict()


def test_lora_checkpoints_average_like_any_weights(tiny_whisper_dir, tiny_llm_dir, tmp_path):
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    model = build_blsp(tiny_whisper_dir, tiny_llm_dir)
    reporter, states = Reporter(), []
    for epoch in (1, 2):
        perturb(model, seed=epoch)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        assert all(v.is_floating_point() for k, v in states[-1].items() if ".lora_" in k)
        torch.save(states[-1], tmp_path / f"{epoch}epoch.pth")
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": 1.0 / epoch})
            sub.next()
    average_nbest_models(tmp_path, reporter, [("valid", "loss", "min")], nbest=2)
    model.load_state_dict(torch.load(tmp_path / "valid.loss.ave_2best.pth"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, (states[0][k] + states[1][k]) / 2)
