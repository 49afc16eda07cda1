"""BLSPTask: config round trip, optimizer contents, Speech2Response loading."""

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoTokenizer

from espnet_blsp.bin.blsp_inference import Speech2Response
from espnet_blsp.tasks.blsp import BLSPTask


def parse(tiny_whisper_dir, tiny_llm_dir, tmp_path, *extra):
    return BLSPTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"),
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}",
        "--speech_adapter", "conv_glu", "--speech_adapter_conf", "bottleneck_dim=8",
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={tiny_llm_dir}",
        "--llm_conf", "dtype=float32",
        "--model_conf", "instruction=Transcribe the speech. <speech>",
        *extra,
    ])


def test_config_round_trip_and_checkpoint(tmp_path, tiny_whisper_dir, tiny_llm_dir, monkeypatch):
    # Trained from a recipe dir with relative model paths...
    monkeypatch.chdir(tiny_llm_dir.parent)
    args = parse(tiny_whisper_dir, tiny_llm_dir.name, tmp_path)
    assert args.llm_conf == {"model_name_or_path": tiny_llm_dir.name, "dtype": "float32"}
    torch.manual_seed(0)
    model = BLSPTask.build_model(args)
    assert args.llm_conf["model_name_or_path"] == str(tiny_llm_dir)  # ... saved absolute
    monkeypatch.chdir(tmp_path)  # ... and loaded from anywhere
    with torch.no_grad():
        for p in model.adapter.parameters():
            p.add_(0.5)  # "trained" weights, unlike any fresh init
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    model_file = tmp_path / "1epoch.pth"
    torch.save(model.state_dict(), model_file)
    assert model_file.stat().st_size < 1_000_000  # the adapter only

    s2r = Speech2Response(config, model_file, generate_kwargs={"max_new_tokens": 4, "do_sample": False})
    loaded = dict(s2r.model.named_parameters())
    assert model.state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded[k], v)
    assert s2r.model.make_prompt("Transcribe the speech. <speech>").prefix == model.prompt.prefix
    moved = yaml.safe_load(config.read_text())
    moved["llm_conf"]["model_name_or_path"] = str(tmp_path / "moved_llm")
    (tmp_path / "moved.yaml").write_text(yaml.safe_dump(moved))
    with pytest.raises(FileNotFoundError, match="llm_conf.model_name_or_path: .*moved_llm does not exist"):
        Speech2Response(tmp_path / "moved.yaml", model_file)
    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype("float32")
    out = s2r(wav, "Transcribe the speech. <speech>")
    assert isinstance(out, str)
    nll = s2r.response_nll([wav], ["the fox"], "Transcribe the speech. <speech>")
    assert nll[0][0] > 0 and nll[0][1] >= 2
    for bad, message in [
        (np.stack([wav, wav], axis=1), r"utterance 0 of the batch: shape \(16000, 2\).*multi-channel"),
        ((wav * 32767).astype("int16"), "int16 samples"),
        (wav * 32767, "peak 1[0-9]{4}.*int16-scaled"),
        (np.where(np.arange(16000) == 5, np.nan, wav).astype("float32"), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            s2r(bad, "Transcribe the speech. <speech>")


def test_optimizer_gets_only_the_adapter_and_its_ctc_head(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    args = parse(tiny_whisper_dir, tiny_llm_dir, tmp_path, "--optim", "adamw")
    model = BLSPTask.build_model(args)
    (optim,) = BLSPTask.build_optimizers(args, model)
    in_optim = {id(p) for g in optim.param_groups for p in g["params"]}
    head = [model.ctc.blank, model.ctc.scale]
    assert in_optim == {id(p) for p in [*model.adapter.parameters(), *head]}


def test_preprocess_tokenizes_target_and_rejects_empty(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    args = parse(tiny_whisper_dir, tiny_llm_dir, tmp_path)
    pre = BLSPTask.build_preprocess_fn(args, train=True)
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    out = pre("utt1", {"response": "the quick fox", "transcript": "THE FOX", "speech": np.zeros(10)})
    assert out["response"].tolist() == tok("the quick fox", add_special_tokens=False).input_ids
    # The transcript as the LLM reads it in the speech slot: sentence case, after a space.
    assert out["transcript"].tolist() == tok(" The fox", add_special_tokens=False).input_ids
    assert "task" not in out  # one task
    with pytest.raises(ValueError, match="utterance utt2: empty response"):
        pre("utt2", {"response": "  ", "speech": np.zeros(10)})
    with pytest.raises(ValueError, match="utterance utt3: no 'response' data"):
        pre("utt3", {"transcript": "the fox", "speech": np.zeros(10)})


def test_preprocess_draws_each_utterance_a_task(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    tasks = "tasks=[{instruction: continuation}, {instruction: transcription, target: transcript, weight: 3}]"
    args = parse(tiny_whisper_dir, tiny_llm_dir, tmp_path, "--model_conf", "instruction=null", "--model_conf", tasks)
    pre = BLSPTask.build_preprocess_fn(args, train=False)
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    seen = set()
    for i in range(40):
        out = pre(f"u{i}", {"response": "a continuation", "transcript": "THE FOX", "speech": np.zeros(10)})
        k = int(out["task"][0])
        target = "a continuation" if k == 0 else "The fox"
        assert out["response"].tolist() == tok(target, add_special_tokens=False).input_ids
        seen.add(k)
    assert seen == {0, 1}
    model = BLSPTask.build_model(args)
    assert [t.target for t in model.tasks] == ["response", "transcript"]


@pytest.mark.parametrize("adapter,conf", [
    ("conv_glu", ["bottleneck_dim=8"]),
    ("stack_swiglu", ["hidden_size=16", "stack_factor=4"]),
    ("qformer", ["num_queries=4", "num_attention_heads=2", "intermediate_size=16"]),
    ("cif", ["hidden_size=16"]),
])
def test_each_adapter_builds_by_name_and_trains(tmp_path, tiny_whisper_dir, tiny_llm_dir, adapter, conf):
    """The registry wires any adapter to a multi-layer encoder and the LLM."""
    args = BLSPTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"),
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}",
        "--encoder_conf", "layers=[0, 0]",
        "--speech_adapter", adapter, *[a for c in conf for a in ("--speech_adapter_conf", c)],
        "--speech_adapter_conf", "output_scale=llm",
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={tiny_llm_dir}", "--llm_conf", "dtype=float32",
    ])
    model = BLSPTask.build_model(args)
    assert model.encoder.num_layers() == 2 and model.adapter.output_size() == model.llm.hidden_size()
    speech = torch.randn(2, 16000) * 0.1
    batch = dict(
        speech=speech, speech_lengths=torch.tensor([16000, 12000]),
        response=torch.tensor([[20, 21], [22, -1]]), response_lengths=torch.tensor([2, 1]),
        transcript=torch.tensor([[30, 31, 32], [33, 34, -1]]), transcript_lengths=torch.tensor([3, 2]),
    )
    model.train()
    loss, stats, _ = model(**batch)
    loss.backward()
    assert all(p.grad is not None for p in model.adapter.parameters() if p.requires_grad)
    assert ("quantity_loss" in stats) == (adapter == "cif")


def test_desta2_is_a_model_choice_with_its_own_prompt(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    """--model desta2 trains on DeSTA2's prompt: speech, then the ASR hypothesis, in an audio turn."""
    args = BLSPTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "exp"), "--model", "desta2",
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}",
        "--encoder_conf", "layers=[0]",
        "--speech_adapter", "qformer", "--speech_adapter_conf", "num_queries=4",
        "--speech_adapter_conf", "intermediate_size=32", "--speech_adapter_conf", "num_attention_heads=2",
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={tiny_llm_dir}", "--llm_conf", "dtype=float32",
    ])
    torch.manual_seed(0)
    model = BLSPTask.build_model(args)
    assert type(model).__name__ == "DeSTA2Model" and model.prompt.slots == ["speech", "asr_hyp"]
    pre = BLSPTask.build_preprocess_fn(args, train=True)
    out = pre("u", {"response": "a woman says hello", "asr_hyp": "hello", "speech": np.zeros(10)})
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    assert out["asr_hyp"].tolist() == tok("hello", add_special_tokens=False).input_ids  # no lead: right after speech
    speech = torch.randn(2, 8000) * 0.1
    batch = {name: torch.tensor([out[name].tolist()] * 2) for name in ("response", "asr_hyp")}
    lengths = {f"{k}_lengths": torch.full((2,), v.size(1)) for k, v in batch.items()}
    loss, stats, _ = model(speech, torch.tensor([8000, 8000]), **batch, **lengths)
    loss.backward()
    assert loss.item() > 0 and model.adapter.layer_weights.grad is not None
    assert all(p.grad is None for p in model.llm.parameters())
