"""The encoder dump's size, known before it is written, and the stop when the disk is short."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from espnet_blsp.bin import dump_encoder
from espnet_blsp.utils import dump_size
from espnet_blsp.utils.audio import load_speech
from espnet_blsp.utils.dump_size import (
    GIB,
    ark_entry_bytes,
    check_space,
    encoder_values_per_frame,
    set_bytes,
    whisper_frames,
)
from espnet_blsp.utils.kaldi_dir import read_kv, write_kv

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2/TEMPLATE/blsp1"


@pytest.mark.parametrize(
    "samples, frames",
    [
        (400, 1),  # one STFT window: 2 mel frames -> 1
        (16000, 50),  # 1 s: 100 mel frames -> 50
        (16159, 50),
        (16160, 51),  # 101 mel frames: the conv's stride 2 rounds up
        (192000, 600),  # 12 s
        (480000, 1500),  # one full 30-s window
        (480399, 1500),  # 399 samples past it: too short to encode, dropped
        (480400, 1501),
        (500000, 1563),  # 1500 + (125 + 1) // 2
    ],
)
def test_whisper_frames_by_hand(samples, frames):
    assert whisper_frames(samples) == frames


def test_whisper_frames_refuses_what_the_encoder_refuses():
    with pytest.raises(ValueError, match="399 samples: too short"):
        whisper_frames(399)


def test_ark_entry_bytes_by_hand(tmp_path):
    # "u1 " + "\0B" + "FM " + "\4" rows + "\4" cols + 3 x 4 float32
    assert ark_entry_bytes("u1", 3, 4, "float32") == 3 + 2 + 3 + 5 + 5 + 48
    # "u1 " + "NPY" + a 1-byte length header + .npy (128-byte header + 3 x 4 float16)
    assert ark_entry_bytes("u1", 3, 4, "float16") == 3 + 3 + 2 + 128 + 24
    with pytest.raises(ValueError, match="float64"):
        ark_entry_bytes("u1", 3, 4, "float64")


def test_width_from_the_config_and_the_model_config(tmp_path, tiny_whisper_dir):
    config = tmp_path / "train.yaml"
    config.write_text("encoder: whisper\nencoder_conf: {layers: [0, 0, 0]}\n")
    assert encoder_values_per_frame(config, str(tiny_whisper_dir)) == (16, 3)
    config.write_text(f"encoder: whisper\nencoder_conf: {{model_name_or_path: {tiny_whisper_dir}}}\n")
    assert encoder_values_per_frame(config) == (16, 1)
    config.write_text("encoder: precomputed\n")
    with pytest.raises(ValueError, match="only whisper"):
        encoder_values_per_frame(config, str(tiny_whisper_dir))


def test_frames_shape_gives_waveforms_the_shapes_of_their_frames(tmp_path, tiny_whisper_dir):
    config = tmp_path / "train.yaml"
    config.write_text("encoder: whisper\nencoder_conf: {layers: [0, 0]}\n")
    (tmp_path / "speech_shape").write_text("u1 16160\nu2 500000\n")  # collect_stats on wav.scp
    dump_size.frames_shape(tmp_path / "speech_shape", tmp_path / "frames", config, str(tiny_whisper_dir))
    assert (tmp_path / "frames").read_text() == "u1 51,32\nu2 1563,32\n"  # as a dump's speech_shape


@pytest.fixture
def wav_set(tmp_path):
    """A set of 4 utterances, one over Whisper's 30-s window, with utt2num_samples."""
    rng = np.random.default_rng(0)
    d = tmp_path / "raw/set1"
    d.mkdir(parents=True)
    lengths = {"spk-a": 8000, "spk-b": 24321, "spk-c": 480400, "spk-d": 16160}
    for utt, n in lengths.items():
        soundfile.write(d / f"{utt}.wav", rng.normal(0, 0.1, n).astype("float32"), 16000)
    write_kv(d / "wav.scp", [(u, str(d / f"{u}.wav")) for u in sorted(lengths)])
    write_kv(d / "utt2num_samples", [(u, str(n)) for u, n in sorted(lengths.items())])
    return d


@pytest.mark.parametrize("feats_dtype", ["float32", "float16"])
def test_estimate_is_the_size_of_a_real_dump(tmp_path, tiny_whisper_dir, wav_set, feats_dtype):
    config = tmp_path / "train.yaml"
    config.write_text("encoder: whisper\nencoder_conf: {layers: [0, 0]}\n")  # two taps: 2 x 16 wide
    out = tmp_path / "dump" / wav_set.name
    dump_encoder.main([
        "--wav_scp", str(wav_set / "wav.scp"), "--out_dir", str(out), "--config", str(config),
        "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}", "--feats_dtype", feats_dtype, "--batch_size", "2",
    ])
    d_model, layers = encoder_values_per_frame(config, str(tiny_whisper_dir))
    assert (d_model, layers) == (16, 2)
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    for utt, n in read_kv(wav_set / "utt2num_samples"):
        assert feats[utt].shape == (whisper_frames(int(n)), 32)
    arks = sum(ark_entry_bytes(u, whisper_frames(int(n)), 32, feats_dtype) for u, n in read_kv(wav_set / "utt2num_samples"))
    assert arks == (out / "feats.ark").stat().st_size  # exact
    # The estimate counts a job's feats.scp and the merged one (blsp.sh's layout), not
    # encoder.yaml and the stamp; here one job wrote one scp.
    estimate = set_bytes(wav_set / "utt2num_samples", 32, feats_dtype, out)
    on_disk = dump_size.bytes_in(out)
    assert abs(estimate - on_disk) <= (out / "feats.scp").stat().st_size + 1000


def test_float16_dump_reads_back_as_the_float32_one_within_its_precision(tmp_path, tiny_whisper_dir, wav_set):
    frames = {}
    for dtype in ("float32", "float16"):
        out = tmp_path / dtype
        dump_encoder.main([
            "--wav_scp", str(wav_set / "wav.scp"), "--out_dir", str(out), "--feats_dtype", dtype,
            "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}",
        ])
        frames[dtype] = {k: load_speech(v, "kaldi_ark") for k, v in read_kv(out / "feats.scp")}
    for utt, x in frames["float32"].items():
        y = frames["float16"][utt]
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y, x, rtol=2**-11, atol=2**-24)
        assert not np.array_equal(y, x)  # stored in float16 indeed


def test_float16_refuses_values_it_cannot_hold():
    import torch

    ok = dump_encoder.stored(torch.tensor([[1.5, -65504.0]]), "float16", "u1")
    assert ok.dtype == np.float16
    with pytest.raises(ValueError, match="utterance u1: a frame value of 70000 does not fit float16"):
        dump_encoder.stored(torch.tensor([[1.0, 7e4]]), "float16", "u1")


def test_check_space_says_what_is_needed_and_what_to_do(tmp_path):
    where = tmp_path / "dump/encoder"
    # 1 GB asks 1 GB + 5 % + 1 GiB = 2,123,741,824 bytes.
    assert check_space(10**9, 2_123_741_824, where) is None
    assert check_space(10**9, 2_123_741_823, where) is not None
    problem = check_space(3 * 10**9, 2 * GIB, where)
    assert str(where) in problem and "3000000000 bytes" in problem and f"{2 * GIB} bytes" in problem
    assert "float16" in problem and "--use_encoder_dump false" in problem and "--dumpdir" in problem
    assert "float16" not in check_space(3 * 10**9, 2 * GIB, where, "float16")


def test_cli_logs_the_estimate_and_stops_when_the_disk_is_short(tmp_path, tiny_whisper_dir, wav_set, caplog,
                                                                 monkeypatch):
    config = tmp_path / "train.yaml"
    config.write_text("encoder: whisper\n")
    root = tmp_path / "dump/encoder"
    args = ["--config", str(config), "--model", str(tiny_whisper_dir), "--out_root", str(root), str(wav_set)]
    need = set_bytes(wav_set / "utt2num_samples", 16, "float32", root / wav_set.name)
    with caplog.at_level(logging.INFO):
        assert dump_size.main(args) == 0  # this disk has room for ~100 kB
    assert f"will write ~{dump_size.human(need)} to {root}" in caplog.text
    monkeypatch.setenv("BLSP_DUMP_FREE_BYTES", str(GIB + need))  # less than the margin asks
    caplog.clear()
    assert dump_size.main(args) == 1
    assert "free" in caplog.text and str(root) in caplog.text and f"{need} bytes" in caplog.text
    # What a set's dump dir already holds (kept, or replaced) counts as room.
    (root / wav_set.name).mkdir(parents=True)
    (root / wav_set.name / "feats.ark").write_bytes(b"\0" * need)
    assert dump_size.main(args) == 0
    assert dump_size.main(args + ["--free_bytes", "0"]) == 1


def test_blsp_sh_stage_4_stops_before_any_job_when_the_disk_is_short(tmp_path, tiny_whisper_dir, wav_set):
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "blsp.sh").symlink_to(TEMPLATE / "blsp.sh")
    (recipe / "utils").symlink_to(TEMPLATE / "utils")
    (recipe / "path.sh").write_text("export PATH=${PWD}/utils:${PATH}\n")
    (recipe / "cmd.sh").write_text("export train_cmd=run.pl cuda_cmd=run.pl decode_cmd=run.pl\n")
    (recipe / "conf/train.yaml").write_text("encoder: whisper\n")
    raw = recipe / "dump/raw/set1"
    raw.mkdir(parents=True)
    for name in ("wav.scp", "utt2num_samples"):
        shutil.copy(wav_set / name, raw / name)
    cmd = [
        "./blsp.sh", "--stage", "4", "--stop_stage", "4", "--nj", "1", "--python", sys.executable,
        "--train_set", "set1", "--valid_set", "set1", "--test_sets", "set1", "--check_instruction", "false",
        "--llm", "unused", "--whisper", str(tiny_whisper_dir), "--train_config", "conf/train.yaml",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO), BLSP_DUMP_FREE_BYTES=str(GIB))
    short = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=120)
    assert short.returncode == 1, short.stdout + short.stderr
    assert "dump/encoder: the encoder dump needs" in short.stderr and "--use_encoder_dump false" in short.stderr
    assert "Stage 4 stopped before writing anything" in short.stdout
    assert not (recipe / "dump/encoder/set1").exists()

    env["BLSP_DUMP_FREE_BYTES"] = str(100 * GIB)
    ok = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "the encoder dump will write" in ok.stderr
    assert (recipe / "dump/encoder/set1/feats.scp").read_text().count("\n") == 4
    estimate = set_bytes(raw / "utt2num_samples", 16, "float32", recipe / "dump/encoder/set1")
    on_disk = dump_size.bytes_in(recipe / "dump/encoder/set1")
    assert on_disk - 4000 <= estimate <= on_disk  # the rest: a job's log, keys, stamps, encoder.yaml
    again = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "set1/feats.scp done, skipping" in again.stdout
    assert "the encoder dump will write" not in again.stderr  # nothing left to estimate
