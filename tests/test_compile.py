"""llm_conf.compile: the LLM's MLPs and norms compiled at the first training
forward, with the same loss and gradients; never in scoring or generation."""

import torch

from espnet_blsp.adapters.conv_glu_adapter import ConvGLUAdapter
from espnet_blsp.encoders.precomputed_encoder import PrecomputedEncoder
from espnet_blsp.llm.batch import generate, response_logits
from espnet_blsp.llm.hf_causal_lm import HFCausalLM, decoder_layers
from espnet_blsp.models.blsp import BLSPModel

WIDTH = 16


def build(llm_dir, compile: bool) -> BLSPModel:
    torch.manual_seed(0)
    llm = HFCausalLM(str(llm_dir), dtype="float32", compile=compile)
    adapter = ConvGLUAdapter(WIDTH, llm.hidden_size(), bottleneck_dim=8)
    return BLSPModel(PrecomputedEncoder(WIDTH), adapter, llm).train()


def compiled_parts(model: BLSPModel):
    """Names of the decoder layers' compiled children."""
    return {
        f"{i}.{name}"
        for i, layer in enumerate(decoder_layers(model.llm.hf_model().base_model))
        for name, part in layer.named_children()
        if getattr(part, "_compiled_call_impl", None) is not None
    }


def rows(model: BLSPModel):
    g = torch.Generator().manual_seed(1)
    frames, lengths = torch.randn(2, 40, WIDTH, generator=g), torch.tensor([40, 28])
    return [{"speech": s} for s in model.speech_slots(frames, lengths)]


def test_compiled_training_step_matches_eager(tiny_llm_dir):
    eager, compiled = build(tiny_llm_dir, False), build(tiny_llm_dir, True)
    targets = [[20, 21, 22, 23], [24, 25]]
    with torch.no_grad():  # scoring compiles nothing
        response_logits(compiled.llm, rows(compiled), compiled.prompt, targets)
        generate(compiled.llm, rows(compiled), compiled.prompt, max_new_tokens=3, do_sample=False)
    assert compiled_parts(compiled) == set()
    results = []
    for model in (eager, compiled):
        logits, target, _ = response_logits(model.llm, rows(model), model.prompt, targets)
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.adapter.named_parameters()}))
    layers = len(decoder_layers(compiled.llm.hf_model().base_model))
    # Llama: mlp, input_layernorm, post_attention_layernorm; not self_attn.
    assert compiled_parts(compiled) == {
        f"{i}.{name}" for i in range(layers) for name in ("mlp", "input_layernorm", "post_attention_layernorm")
    }
    assert compiled_parts(eager) == set()
    (loss_e, grads_e), (loss_c, grads_c) = results
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-6)
    # The parameter names (checkpoint keys) stay as they were.
    assert set(compiled.state_dict()) == set(eager.state_dict())
