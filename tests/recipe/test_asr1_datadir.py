"""The template's stages on data dirs an existing ESPnet asr1 recipe made
(README, "Into an existing ESPnet recipe"): ``--stage 2 --datadir ../asr1/data``,
with the ASR-pretraining baseline as a variant (a row of the tables and of the
representation analysis), then the trained model packed into one archive that
loads elsewhere."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe.test_librispeech_recipe import COMMON_CONFIG, CONTINUATION

from espnet_blsp.bin.blsp_inference import Speech2Response

REPO = Path(__file__).resolve().parents[2]
SENTENCES = ["THE CAT SAT ON THE MAT", "A BIRD FLEW OVER THE HOUSE", "SHE READ THE LETTER TWICE",
             "WE WALKED HOME IN THE RAIN", "HE OPENED THE OLD DOOR", "THEY SANG A SONG TOGETHER"]
TRAIN_CONFIG = COMMON_CONFIG + """\
optim: adamw
optim_conf: {lr: 0.001}
max_epoch: 1
batch_type: numel
batch_bins: 4000
"""


def write_asr1_data(root: Path) -> Path:
    """``data/{train,dev,test}`` as asr1 recipes write them: uppercase text,
    ``sox ... |`` pipes of 8 kHz FLAC recordings (LibriSpeech's asr1 pipes
    ``flac -c -d -s``), and for the test set, segments of one long recording
    (as TED-LIUM's)."""
    rng = np.random.default_rng(0)
    audio = root / "downloads"
    audio.mkdir(parents=True)
    for name, utts in [("train", SENTENCES[:3]), ("dev", SENTENCES[3:5])]:
        d = root / "data" / name
        d.mkdir(parents=True)
        lines = {"wav.scp": [], "text": [], "utt2spk": []}
        for i, text in enumerate(utts):
            utt, flac = f"spk1-{name}-{i:04d}", audio / f"{name}{i}.flac"
            sf.write(flac, rng.normal(0, 0.1, 8000 + 2000 * i).astype("float32"), 8000)
            lines["wav.scp"].append(f"{utt} sox {flac} -t wav - |")
            lines["text"].append(f"{utt} {text}")
            lines["utt2spk"].append(f"{utt} spk1")
        for f, rows in lines.items():
            (d / f).write_text("\n".join(rows) + "\n")
        (d / "spk2utt").write_text("spk1 " + " ".join(r.split()[0] for r in lines["utt2spk"]) + "\n")
    d = root / "data/test"
    d.mkdir()
    sf.write(audio / "talk.wav", rng.normal(0, 0.1, 16000 * 3).astype("float32"), 16000)
    (d / "wav.scp").write_text(f"talk {audio / 'talk.wav'}\n")
    (d / "segments").write_text("talk-0000 talk 0.00 1.20\ntalk-0001 talk 1.40 2.90\n")
    (d / "text").write_text(f"talk-0000 {SENTENCES[5]}\ntalk-0001 {SENTENCES[0]}\n")
    (d / "utt2spk").write_text("talk-0000 talk\ntalk-0001 talk\n")
    (d / "spk2utt").write_text("talk talk-0000 talk-0001\n")
    return root / "data"


@pytest.mark.slow  # ~3 min; CI runs it (.ci/run), make test leaves it out
@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")
def test_stages_on_asr1_data_dirs_then_pack(tmp_path, tiny_llm_dir, tiny_whisper_dir):
    write_asr1_data(tmp_path / "egs2/librispeech/asr1")
    for part in ("TEMPLATE", "librispeech/blsp"):
        shutil.copytree(REPO / "egs2" / part, tmp_path / "egs2" / part, symlinks=True,
                        ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "*.log"))
    recipe = tmp_path / "egs2/librispeech/blsp"
    (recipe / "conf/train_tiny.yaml").write_text(TRAIN_CONFIG)
    (recipe / "conf/continuation_tiny.yaml").write_text(CONTINUATION)
    (recipe / "conf/train_asr_pretrain.yaml").write_text(
        TRAIN_CONFIG + "model_conf:\n  tasks: [{instruction: transcription, target: transcript}]\n")
    (recipe / "conf/train_blsp_kd.yaml").write_text(  # CIF adapter, KL to the LLM reading the transcript
        TRAIN_CONFIG.replace("speech_adapter: conv_glu", "speech_adapter: cif")
        .replace("speech_adapter_conf: {bottleneck_dim: 16}", "speech_adapter_conf: {hidden_size: 16}")
        + "model_conf: {kd_weight: 0.5, adapter_loss_weight: 1.0}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["./blsp.sh", "--stage", "2", "--datadir", "../asr1/data",
           "--train_set", "train", "--valid_set", "dev", "--test_sets", "test",
           "--llm", str(tiny_llm_dir), "--whisper", str(tiny_whisper_dir),
           "--continuation_config", "conf/continuation_tiny.yaml", "--train_config", "conf/train_tiny.yaml",
           "--eval_cascade", "false", "--eval_untrained", "false", "--nj", "2", "--python", sys.executable,
           "--variant_configs", "conf/train_asr_pretrain.yaml conf/train_blsp_kd.yaml", "--skip_packing", "false",
           "--representation_opts", "--max_utts 2 --instructions continuation transcription"]
    run = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    assert not (recipe / "data").exists()  # stage 1 did not run: the asr1 dirs are read as they are
    for dset, n in [("train", 3), ("dev", 2), ("test", 2)]:
        raw = recipe / "dump/raw" / dset
        scp = (raw / "wav.scp").read_text().splitlines()
        assert len(scp) == n and all(f"dump/raw/{dset}/data/" in line for line in scp)
        assert sf.info(recipe / scp[0].split()[1]).samplerate == 16000
        assert (raw / "text").read_text() == (tmp_path / f"egs2/librispeech/asr1/data/{dset}/text").read_text()
        assert len((raw / "continuation").read_text().splitlines()) == n
    # The segments' lengths: 1.2 s and 1.5 s of the talk.
    lengths = (recipe / "dump/raw/test/utt2num_samples").read_text().split()
    assert lengths == ["talk-0000", "19200", "talk-0001", "24000"]
    exp = recipe / "exp/blsp_train_tiny"
    assert (exp / "eval/test/blsp/asr_text").read_text().count("\n") == 2
    results = (recipe / "RESULTS.md").read_text()
    variant = recipe / "exp/blsp_train_asr_pretrain"
    assert "transcript" in (variant / "config.yaml").read_text() and (variant / "valid.loss.ave.pth").exists()
    assert (variant / "eval/test/blsp/continuation").read_text().count("\n") == 2
    assert "kd_loss" in (recipe / "exp/blsp_train_blsp_kd/train.log").read_text()
    for row in ("| BLSP (trained adapter) |", "| ASR pretraining (adapter trained to transcribe) |",
                "| BLSP-KD (CIF adapter, KL distillation) |"):
        assert results.count(row) == 2, results  # the continuation table and the analysis
    assert "## Representation analysis (the paper's Appendix D)" in results
    for name in ("blsp", "train_asr_pretrain", "train_blsp_kd"):
        png = exp / "representation/test" / name / "heatmap.png"
        assert png.read_bytes().startswith(b"\x89PNG") and f"({png.relative_to(recipe)})" in results

    # Stage 9: one archive with the model dirs, loading from any directory.
    archive = exp / "blsp_train_tiny_valid.loss.ave.zip"
    s2r = Speech2Response.from_pretrained(archive, cache_dir=tmp_path / "cache")
    here = Speech2Response.from_pretrained(exp)
    wav = np.random.default_rng(1).normal(0, 0.1, 16000).astype("float32")
    assert s2r(wav, "transcription") == here(wav, "transcription")
    assert str(tmp_path / "cache") in s2r.train_args.llm_conf["model_name_or_path"]
