"""Fault matrix: a job killed with SIGKILL mid-stage, then rerun, ends with
the same outputs as a job that never stopped (stages 3, 4 and 7's tools)."""

import logging
import multiprocessing
import os
import runpy
import signal
import sys

import kaldiio
import numpy as np
import pytest
import soundfile
import torch

from espnet_blsp.utils import progress
from espnet_blsp.utils.kaldi_dir import write_kv


def _run_module(module, args, kill_after):
    """In a forked child: ``python -m module args``, SIGKILLed after its
    ``kill_after``-th finished batch (Progress.update follows each batch's
    write in every tool); 0 never kills."""
    logging.root.handlers.clear()
    torch.set_num_threads(1)
    update = progress.Progress.update

    def killing_update(self, n, extra=""):
        update(self, n, extra)
        self.batches = getattr(self, "batches", 0) + 1
        if self.batches == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    progress.Progress.update = killing_update
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def run_tool(module, args, kill_after=0):
    """The exit code of the tool's run in a forked child (imports done: it starts at once)."""
    child = multiprocessing.get_context("fork").Process(
        target=_run_module, args=(module, [str(a) for a in args], kill_after))
    child.start()
    child.join(300)
    return child.exitcode


def killed_then_resumed(module, args_for, read):
    """The outputs of an uninterrupted run, and of a run killed after its
    first batch and then rerun; checks the kill really happened."""
    assert run_tool(module, args_for("full")) == 0
    assert run_tool(module, args_for("killed"), kill_after=1) == -signal.SIGKILL
    assert run_tool(module, args_for("killed")) == 0
    return read("full"), read("killed")


@pytest.fixture
def wav_scp(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i, seconds in enumerate([1.0, 2.5, 0.5, 1.5, 2.0, 3.0]):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, rng.normal(0, 0.1, int(16000 * seconds)).astype("float32"), 16000)
        items.append((f"u{i}", str(path)))
    write_kv(tmp_path / "wav.scp", items)
    return tmp_path / "wav.scp"


def test_stage3_generate_text(tmp_path, tiny_llm_dir):
    (tmp_path / "text").write_text("".join(f"u{i} the quick brown fox {'jumps ' * i}\n" for i in range(7)))
    (tmp_path / "gen.yaml").write_text("batch_size: 2\ndtype: float32\ngenerate: {max_new_tokens: 5}\n")
    full, resumed = killed_then_resumed(
        "espnet_blsp.bin.generate_text",
        lambda name: ["--llm", tiny_llm_dir, "--config", tmp_path / "gen.yaml", "--text", tmp_path / "text",
                      "--output", tmp_path / name],
        lambda name: sorted((tmp_path / name).read_text().splitlines()),
    )
    assert len(full) == 7 and resumed == full


def test_stage4_dump_encoder(tmp_path, tiny_whisper_dir, wav_scp):
    full, resumed = killed_then_resumed(
        "espnet_blsp.bin.dump_encoder",
        lambda name: ["--wav_scp", wav_scp, "--out_dir", tmp_path / name, "--batch_size", "2",
                      "--encoder_conf", f"model_name_or_path={tiny_whisper_dir}"],
        lambda name: dict(kaldiio.load_scp(str(tmp_path / name / "feats.scp"))),
    )
    assert sorted(full) == sorted(resumed) and len(full) == 6
    for key in full:
        np.testing.assert_array_equal(full[key], resumed[key])


def test_stage7_whisper_decode(tmp_path, tiny_whisper_dir, wav_scp):
    full, resumed = killed_then_resumed(
        "espnet_blsp.bin.whisper_decode",
        lambda name: ["--model", tiny_whisper_dir, "--wav_scp", wav_scp, "--output", tmp_path / name,
                      "--batch_size", "2", "--max_new_tokens", "4"],
        lambda name: sorted((tmp_path / name).read_text().splitlines()),
    )
    assert len(full) == 6 and resumed == full
