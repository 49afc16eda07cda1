"""The LibriSpeech recipe end to end (data prep -> scoring) on a handful of
synthesized utterances in the real LibriSpeech layout, with tiny random models."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from corpora.test_covost2 import make_covost, make_cv4
from corpora.test_slurp import make_corpus as make_slurp

REPO = Path(__file__).resolve().parents[2]
SYNTH = REPO / "egs2/mini_librispeech_synth/blsp/local/synthesize.py"

COMMON_CONFIG = """\
encoder: whisper
speech_adapter: conv_glu
speech_adapter_conf: {bottleneck_dim: 16}
llm: hf_causal_lm
llm_conf: {dtype: float32}
num_workers: 0
keep_nbest_models: 1
best_model_criterion: [[valid, loss, min]]
num_att_plot: 0
"""
PREALIGN_CONFIG = COMMON_CONFIG + """\
model_conf: {ctc_weight: 1.0, ctc_negatives: 50}
optim: adamw
optim_conf: {lr: 0.01}
max_epoch: 1
batch_type: numel
batch_bins: 4000
"""
TRAIN_CONFIG = COMMON_CONFIG + """\
model_conf:
  ctc_compress: true
optim: adamw
optim_conf: {lr: 0.001}
max_epoch: 2
batch_type: numel
batch_bins: 4000
"""
CONTINUATION = """\
batch_size: 4
dtype: float32
generate: {max_new_tokens: 6, do_sample: false}
"""


def make_corpus(root: Path) -> None:
    """3 train, 2 dev, 2 test utterances as LibriSpeech subsets."""
    synth = root / "synth"
    subprocess.run(
        [sys.executable, str(SYNTH), "--out_root", str(synth), "--max_utts_per_subset", "3", "--nj", "2"],
        check=True, capture_output=True,
    )
    names = {"train-synth": "train-clean-100", "dev-synth": "dev-clean", "test-synth": "test-clean"}
    corpus = root / "LibriSpeech"
    corpus.mkdir()
    for src, dst in names.items():
        shutil.move(str(synth / src), str(corpus / dst))
    shutil.move(str(synth / "SPEAKERS.TXT"), str(corpus / "SPEAKERS.TXT"))


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, tiny_llm_dir, tiny_whisper_dir):
    """The recipe run through all stages: (recipe dir, env, command, its result)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    tmp_path = tmp_path_factory.mktemp("librispeech")
    make_corpus(tmp_path)
    # Two more test sets in their distributions' layouts: CoVoST 2 (48 kHz mp3
    # from Common Voice 4: BLEU) and SLURP (intent accuracy).
    commonvoice4, covost2 = make_cv4(tmp_path), make_covost(tmp_path)
    slurp = make_slurp(tmp_path)
    for part in ("TEMPLATE", "librispeech/blsp"):  # not the demos' data and models
        shutil.copytree(REPO / "egs2" / part, tmp_path / "egs2" / part, symlinks=True,
                        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "*.log"))
    recipe = tmp_path / "egs2/librispeech/blsp"
    (recipe / "conf/train_tiny.yaml").write_text(TRAIN_CONFIG)
    (recipe / "conf/prealign_tiny.yaml").write_text(PREALIGN_CONFIG)
    (recipe / "conf/continuation_tiny.yaml").write_text(CONTINUATION)
    env = dict(
        os.environ,
        LIBRISPEECH=str(tmp_path / "LibriSpeech"),
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
        COVOST2=str(covost2), COMMONVOICE4=str(commonvoice4), SLURP=str(slurp),
    )
    cmd = [
        "./blsp.sh",
        "--local_data_opts",
        "--datasets train-clean-100,dev-clean,test-clean --combine_train train_960 --corpora librispeech,covost2,slurp",
        "--train_set", "train_960", "--valid_set", "dev_clean",
        "--test_sets", "test_clean test_covost2_en_de test_slurp", "--eval_config", "conf/eval_tasks.yaml",
        "--llm", str(tiny_llm_dir), "--whisper", str(tiny_whisper_dir),
        "--continuation_config", "conf/continuation_tiny.yaml",
        "--train_config", "conf/train_tiny.yaml",
        "--prealign_config", "conf/prealign_tiny.yaml",
        "--eval_cascade", "false", "--nj", "2", "--python", sys.executable,
        "--representation_opts", "--max_utts 2 --instructions transcription",
    ]
    run = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    return recipe, env, cmd, run


def test_recipe_runs_all_stages(recipe_run, tiny_whisper_dir):
    recipe, env, cmd, run = recipe_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "the encoder dump will write ~" in run.stderr  # stage 4's estimate, before its jobs

    data = recipe / "data/train_960"
    assert (data / "wav.scp").read_text().count("\n") == 3
    assert (data / "utt2gender").exists()
    cont = (recipe / "dump/raw/train_960/continuation").read_text().splitlines()
    assert len(cont) == 3
    record = yaml.safe_load((recipe / "dump/encoder/train_960/encoder.yaml").read_text())
    assert record["encoder"] == "whisper" and record["encoder_conf"]["model_name_or_path"] == str(tiny_whisper_dir)
    assert "Skipping model building" in (recipe / "exp/blsp_stats/log/stats.log").read_text()
    prealigned = recipe / "exp/blsp_prealign_tiny/valid.loss.best.pth"
    assert "ctc_loss" in (prealigned.parent / "train.log").read_text()
    exp = recipe / "exp/blsp_train_tiny"
    assert (exp / "valid.loss.ave.pth").exists() and (exp / "2epoch.pth").exists()
    assert int((exp / "train_seconds").read_text()) > 0
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["encoder_conf"]["dumped_from"] == {k: record[k] for k in ("encoder", "encoder_conf")}
    assert f"Loading pretrained params from {prealigned.relative_to(recipe)}" in (exp / "train.log").read_text()
    n_test = (recipe / "dump/raw/test_clean/continuation").read_text().count("\n")
    assert (exp / "eval/test_clean/blsp/nll_other").read_text().count("\n") == n_test
    assert (exp / "eval/test_clean/text_llm/slot_length").read_text().count("\n") == n_test
    results = (recipe / "RESULTS.md").read_text()
    assert "loss drop from own input" in results
    for row in ("Text+LLM", "Untrained adapter", "BLSP (trained adapter)"):
        assert row in results
    assert "## Representation analysis (the paper's Appendix D)" in results
    assert (exp / "representation/test_clean/blsp/heatmap.png").exists()
    # The paper's Table 1 shape: one table per metric, systems x (test set, task).
    n_st = (recipe / "dump/raw/test_covost2_en_de/text.de").read_text().count("\n")
    n_slu = (recipe / "dump/raw/test_slurp/utt2intent").read_text().count("\n")
    for table, column in [("WER % ↓", "test_clean (asr,"), ("BLEU ↑", f"test_covost2_en_de (st_de, {n_st})"),
                          ("accuracy % ↑", f"test_slurp (intent, {n_slu})")]:
        assert f"### {table}\n\n| system | " in results and column in results, results
    assert (exp / "eval/test_slurp/blsp/intent_text").read_text().count("\n") == n_slu
    mp3_audio = (recipe / "dump/raw/test_covost2_en_de/wav.scp").read_text()
    assert "dump/raw/test_covost2_en_de/data/" in mp3_audio  # 48 kHz mp3 made 16 kHz flac
    # A rerun of a finished stage does no work and keeps the outputs.
    before = (exp / "eval/test_clean/blsp/continuation").stat().st_mtime
    rerun = subprocess.run(cmd + ["--stage", "7"], cwd=recipe, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (exp / "eval/test_clean/blsp/continuation").stat().st_mtime == before
    # A training prompt that is not the one the targets answer stops the recipe.
    (recipe / "conf/train_other.yaml").write_text(
        TRAIN_CONFIG.replace("model_conf:", "model_conf:\n  instruction: 'Say more. <speech>'"))
    other = [c if c != "conf/train_tiny.yaml" else "conf/train_other.yaml" for c in cmd]
    bad = subprocess.run(other + ["--stage", "6"], cwd=recipe, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "Say more" in bad.stderr and "continuation_tiny.yaml" in bad.stderr
    # Another encoder dtype: stage 4 dumps again (it reused the old frames
    # before), and the trained model, whose frames changed, stops stage 6.
    redo = subprocess.run(cmd + ["--stage", "4", "--stop_stage", "6", "--encoder_dump_dtype", "bfloat16"],
                          cwd=recipe, env=env, capture_output=True, text=True)
    assert redo.returncode != 0
    assert "made from other inputs or settings" in redo.stderr and "float32" in redo.stderr
    assert yaml.safe_load((recipe / "dump/encoder/train_960/encoder.yaml").read_text())["encoder_conf"]["dtype"] == "bfloat16"
    assert "was trained on other data or models" in redo.stdout
    assert "rm -r exp/blsp_prealign_tiny" in redo.stdout


@pytest.mark.slow  # ~3 min more; CI runs it
def test_recipe_encoding_on_the_fly(recipe_run):
    """Encoding on the fly (the LibriSpeech default): no dump, and the waveforms'
    shapes become the frames' the dump had, so batch_bins means the same."""
    recipe, env, cmd, run = recipe_run
    assert run.returncode == 0, run.stderr[-3000:]
    fly_args = ["--stage", "5", "--use_encoder_dump", "false", "--expdir", "exp_fly",
                "--eval_untrained", "false", "--eval_text_llm", "false", "--eval_representation", "false"]
    fly = subprocess.run(cmd + fly_args, cwd=recipe, env=env, capture_output=True, text=True)
    assert fly.returncode == 0, fly.stdout[-3000:] + fly.stderr[-3000:]
    for part in ("train", "valid"):
        frames = (recipe / f"exp_fly/blsp_stats/{part}/speech_shape.frames").read_text()
        assert frames == (recipe / f"exp/blsp_stats/{part}/speech_shape").read_text()
    exp = recipe / "exp_fly/blsp_train_tiny"
    assert yaml.safe_load((exp / "config.yaml").read_text())["encoder"] == "whisper"
    n_test = (recipe / "dump/raw/test_clean/continuation").read_text().count("\n")
    assert (exp / "eval/test_clean/blsp/nll_other").read_text().count("\n") == n_test
