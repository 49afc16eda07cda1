"""The wrong weights never load silently: model files are checked against the config."""

import numpy as np
import pytest
import torch
import yaml
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

from espnet_blsp.bin.blsp_inference import Speech2Response
from espnet_blsp.tasks.blsp import BLSPTask

INSTRUCTION = "Transcribe the speech. <speech>"
LORA = ["--llm_conf", "lora={r: 4, alpha: 8, dropout: 0.0}"]
ADAPTERS = {"conv_glu": ["bottleneck_dim=8"], "stack_swiglu": ["hidden_size=16", "stack_factor=4"]}


def write_config(tmp_path, whisper_dir, llm_dir, name="config", adapter="conv_glu", extra=()):
    """A training config.yaml (as ESPnet writes it) and its model with "trained" weights."""
    args = BLSPTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"),
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={whisper_dir}",
        "--speech_adapter", adapter, *[a for c in ADAPTERS[adapter] for a in ("--speech_adapter_conf", c)],
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={llm_dir}", "--llm_conf", "dtype=float32",
        "--model_conf", f"instruction={INSTRUCTION}", *extra,
    ])
    torch.manual_seed(0)
    model = BLSPTask.build_model(args)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # unlike any fresh init (LoRA's B starts at zero)
                p.add_(0.3 * torch.randn_like(p))
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    return config, model


def save(model, path):
    torch.save(model.state_dict(), path)
    return path


def speech():
    return np.random.default_rng(0).normal(0, 0.1, 8000).astype("float32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    """config.yaml and valid.loss.ave.pth of a conv_glu model, and the model."""
    tmp = tmp_path_factory.mktemp("exp")
    config, model = write_config(tmp, tiny_whisper_dir, tiny_llm_dir)
    return config, save(model, tmp / "valid.loss.ave.pth"), model.eval()


def weights(model):
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def test_a_model_file_of_the_config_loads_and_answers_the_same(trained):
    config, model_file, model = trained
    state = torch.load(model_file)
    assert not any(k.startswith(("encoder.", "llm.")) for k in state)  # frozen parts absent: fine
    s2r = Speech2Response(config, model_file)
    loaded = weights(s2r.model)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v)
    x = torch.from_numpy(speech())
    expected = model.speech_slots(x[None], torch.tensor([len(x)]))
    for got, want in zip(s2r.slots([speech()]), expected):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(Speech2Response(config).slots([speech()])[0], expected[0])  # untrained differs
    # A full state dict (frozen weights included) loads as a whole.
    head = "llm.model.model.norm.weight"
    torch.save({**state, head: loaded[head] + 1}, model_file.parent / "full.pth")
    full = Speech2Response(config, model_file.parent / "full.pth")
    torch.testing.assert_close(weights(full.model)[head], loaded[head] + 1)


def test_trainer_checkpoint_names_the_model_file_to_use(trained, tmp_path):
    config, model_file, _ = trained
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": torch.load(model_file), "reporter": {}, "optimizers": [{}], "schedulers": [None],
                "scaler": None}, checkpoint)
    with pytest.raises(ValueError, match=rf"{checkpoint} is ESPnet's trainer checkpoint .*"
                                         rf"pass e.g. {tmp_path / 'valid.loss.ave.pth'}"):
        Speech2Response(config, checkpoint)


def test_config_yaml_as_model_file(trained):
    config, _, _ = trained
    with pytest.raises(ValueError, match=rf"{config} is not a PyTorch model file \(it looks like YAML/text\); "
                                         r"pass --model_file exp/\.\.\./valid\.loss\.ave\.pth"):
        Speech2Response(config, config)


def test_another_adapters_weights(trained, tmp_path, tiny_whisper_dir, tiny_llm_dir):
    config, _, _ = trained
    _, other = write_config(tmp_path, tiny_whisper_dir, tiny_llm_dir, "swiglu", adapter="stack_swiglu")
    model_file = save(other, tmp_path / "swiglu.pth")
    with pytest.raises(ValueError) as e:
        Speech2Response(config, model_file)
    message = str(e.value)
    assert message.startswith(f"{model_file} is not a model of {config}: ")
    assert "missing keys (adapter.bottleneck" in message and "unexpected keys (adapter." in message


def test_another_size(trained, tmp_path, tiny_whisper_dir, tiny_llm_dir):
    config, _, _ = trained
    wider = ["--speech_adapter_conf", "bottleneck_dim=12"]
    _, model = write_config(tmp_path, tiny_whisper_dir, tiny_llm_dir, "wide", extra=wider)
    model_file = save(model, tmp_path / "wide.pth")
    with pytest.raises(ValueError) as e:
        Speech2Response(config, model_file)
    assert str(e.value) == (
        f"{model_file} is not a model of {config}: 2 keys of another shape (adapter.bottleneck.0.weight 12x32 "
        "(model: 8x32), adapter.bottleneck.2.weight 32x12 (model: 32x8))"
    )


def test_lora_model_round_trip_and_adapter_only_file(tmp_path, tiny_whisper_dir, tiny_llm_dir, trained):
    config, model = write_config(tmp_path, tiny_whisper_dir, tiny_llm_dir, "lora", extra=LORA)
    state = model.state_dict()
    assert any(".lora_B." in k for k in state)
    s2r = Speech2Response(config, save(model, tmp_path / "lora.pth"))
    loaded = weights(s2r.model)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v)
    assert s2r.batch([speech()], INSTRUCTION)

    no_lora_config, adapter_only, _ = trained
    with pytest.raises(ValueError, match=rf"{adapter_only} is not a model of {config}: 8 missing keys \(llm\.\S*lora_A"):
        Speech2Response(config, adapter_only)
    with pytest.raises(ValueError, match=rf"lora.pth is not a model of {no_lora_config}: 8 unexpected keys \(llm\."):
        Speech2Response(no_lora_config, tmp_path / "lora.pth")


def test_init_param_still_starts_a_lora_model_from_an_adapter_only_file(trained, tmp_path, tiny_whisper_dir,
                                                                        tiny_llm_dir):
    """ESPnet's --init_param (the recipe's pre-alignment init) fills what the
    file holds and keeps the rest (LoRA) at its init; a trainer checkpoint is refused."""
    _, prealigned, source = trained
    _, model = write_config(tmp_path, tiny_whisper_dir, tiny_llm_dir, "lora", extra=LORA)
    lora = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" in k}
    load_pretrained_model(str(prealigned), model, ignore_init_mismatch=False)
    state = model.state_dict()
    for k, v in source.state_dict().items():
        torch.testing.assert_close(state[k], v)
    for k, v in lora.items():
        torch.testing.assert_close(state[k], v)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": torch.load(prealigned), "optimizers": [{}]}, checkpoint)
    with pytest.raises(RuntimeError, match="Unexpected key.*optimizers"):
        load_pretrained_model(str(checkpoint), model, ignore_init_mismatch=False)
