"""The DeSTA2 demo recipe end to end (synthesis -> RESULTS.md) on a handful of
utterances with tiny random models."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TRAIN_CONFIG = """\
model: desta2
encoder: whisper
encoder_conf: {layers: [0]}
speech_adapter: qformer
speech_adapter_conf: {num_queries: 4, intermediate_size: 32, num_attention_heads: 2}
llm: hf_causal_lm
llm_conf: {dtype: float32}
optim: adamw
optim_conf: {lr: 0.001}
max_epoch: 1
batch_type: numel
batch_bins: 4000
num_workers: 0
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_att_plot: 0
"""
# The ablation without Whisper's transcript, a variant trained beside it.
NO_HYP = "model_conf:\n  instruction:\n  - {role: audio, content: <speech>}\n  - {role: user, content: Describe it.}\n"
DESCRIBE = """\
instruction: describe_seed
sentence_case: false
batch_size: 4
dtype: float32
generate: {max_new_tokens: 6, do_sample: false}
"""


@pytest.mark.slow  # ~50 processes (each stage job imports torch): minutes; CI runs it
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_desta2_recipe_runs_all_stages(tmp_path, tiny_llm_dir, tiny_whisper_dir):
    shutil.copytree(REPO / "egs2", tmp_path / "egs2", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "*.log"))
    recipe = tmp_path / "egs2/mini_librispeech_synth/desta2"
    (recipe / "conf/train_tiny.yaml").write_text(TRAIN_CONFIG)
    (recipe / "conf/train_tiny_no_hyp.yaml").write_text(TRAIN_CONFIG + NO_HYP)
    (recipe / "conf/describe_tiny.yaml").write_text(DESCRIBE)
    (recipe / "conf/continue_tiny.yaml").write_text(DESCRIBE.replace("describe_seed", "continuation"))
    env = dict(
        os.environ,
        LIBRISPEECH=str(tmp_path / "synth"),
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
    )
    cmd = [
        "./desta2.sh", "--local_data_opts", "--max_utts_per_subset 3",
        "--train_set", "train_synth_aug", "--valid_set", "dev_synth_aug", "--test_sets", "test_synth_aug",
        "--llm", str(tiny_llm_dir), "--whisper", str(tiny_whisper_dir),
        "--describe_config", "conf/describe_tiny.yaml", "--fix_targets", "true", "--train_config", "conf/train_tiny.yaml",
        "--continuation_config", "conf/continue_tiny.yaml", "--eval_config", "conf/eval_tasks.yaml",
        "--variant_configs", "conf/train_tiny_no_hyp.yaml", "--nj", "1", "--python", sys.executable,
    ]
    run = subprocess.run(cmd + ["--stop_stage", "5"], cwd=recipe, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # The tiny LLM's references name no attribute: give the test set's some for its probes.
    reference = recipe / "dump/raw/test_synth_aug/description"
    utts = [line.split()[0] for line in reference.read_text().splitlines()]
    reference.write_text("".join(f"{u} A woman speaks at a fast pace, with no background noise.\n" for u in utts))
    run = subprocess.run(cmd + ["--stage", "6"], cwd=recipe, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    raw = recipe / "dump/raw/train_synth_aug"
    seeds = (raw / "seed").read_text().splitlines()
    assert len(seeds) == 3 and all("(Gender: " in s and "Noise level: " in s for s in seeds)
    for name in ("description", "description_llm", "asr_hyp"):
        assert (raw / name).read_text().count("\n") == 3
    assert not (recipe / "dump/raw/test_synth_aug/description_llm").exists()  # test references stay the LLM's
    exp = recipe / "exp/desta2_train_tiny"
    assert (exp / "valid.loss.ave.pth").exists()
    assert "DeSTA2Model" in (exp / "train.log").read_text()
    questions = [json.loads(q) for q in (recipe / "dump/qa/test_synth_aug/questions.jsonl").read_text().splitlines()]
    assert {"gender", "volume", "noise", "reverb"} <= {q["task"] for q in questions}
    variant = recipe / "exp/desta2_train_tiny_no_hyp"
    assert (variant / "valid.loss.ave.pth").exists()
    assert "Describe it." in (variant / "config.yaml").read_text()
    for system in ("text_llm", "whisper_cascade", "desta2_untrained", "desta2", "train_tiny_no_hyp"):
        sd = exp / "eval/test_synth_aug" / system
        assert (sd / "qa_option_nll").read_text().count("\n") == len(questions), system
        assert (sd / "qa_scores.json").exists(), system
        assert (sd / "continuation_text").read_text().count("\n") == len(utts), system
        probes = (sd / "probe/qa_option_nll").read_text().splitlines()
        assert len(probes) == 3 * len(utts) and (sd / "probe/qa_scores.json").exists(), system
    results = (recipe / "RESULTS.md").read_text()
    assert "Closed-set questions" in results and "DeSTA2" in results
    assert "Description probes" in results and "| chance | 50.0 | 33.3 | 25.0 |" in results  # gender, speed, noise
    assert "| train_tiny_no_hyp |" in results
    assert "test_synth_aug (continuation, 3)" in results  # each system on BLSP's task
    # A rerun of the finished stages does no work.
    before = (exp / "eval/test_synth_aug/desta2/qa_answer").stat().st_mtime
    rerun = subprocess.run(cmd + ["--stage", "6"], cwd=recipe, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (exp / "eval/test_synth_aug/desta2/qa_answer").stat().st_mtime == before
