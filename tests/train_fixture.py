"""Training runs for tests: a tiny data dir, ``blsp_train`` arguments on tiny
models, and ``blsp_train`` in forked children (the imports are done, so they
start at once: a fresh interpreter takes ~17 s of CPU to import ESPnet)."""

import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import soundfile as sf
import torch

from espnet_blsp.bin import blsp_train


def write_set(d: Path, responses, seed: int) -> Path:
    """A data dir: ``wav.scp`` of random waveforms (u0 the shortest) and ``response``."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with open(d / "wav.scp", "w") as scp, open(d / "response", "w") as resp:
        for i, text in enumerate(responses):
            wav = d / f"u{i}.wav"
            sf.write(wav, rng.normal(0, 0.1, 4000 + 1500 * i).astype("float32"), 16000)
            scp.write(f"u{i} {wav}\n")
            resp.write(f"u{i} {text}\n")
    return d


def train_args(out: Path, data: Path, whisper: Path, llm: Path, *extra: str, epochs: int):
    """Train the conv_glu adapter (SGD) on ``data``/{train,valid} in batches of 4
    (unsorted: cut in the files' order); ``extra`` arguments come last, so they
    override these."""
    args = [
        "--output_dir", str(out), "--ngpu", "0",
        "--encoder", "whisper", "--encoder_conf", f"model_name_or_path={whisper}",
        "--speech_adapter", "conv_glu", "--speech_adapter_conf", "bottleneck_dim=8",
        "--llm", "hf_causal_lm", "--llm_conf", f"model_name_or_path={llm}", "--llm_conf", "dtype=float32",
        "--batch_type", "unsorted", "--batch_size", "4", "--max_epoch", str(epochs), "--seed", "0",
        # SGD shows a gradient's scale (Adam hides it); weight decay would move
        # the unused CTC head if DDP gave it a zero gradient instead of none.
        "--optim", "sgd", "--optim_conf", "lr=0.1", "--optim_conf", "weight_decay=0.1",
        "--num_workers", "0", "--num_att_plot", "0", "--use_tensorboard", "false", "--use_matplotlib", "false",
    ]
    for mode in ("train", "valid"):
        args += [
            f"--{mode}_data_path_and_name_and_type", f"{data / mode}/response,response,text",
            f"--{mode}_data_path_and_name_and_type", f"{data / mode}/wav.scp,speech,sound",
            f"--{mode}_shape_file", str(data / mode / "response"),  # keys only: unsorted batches
        ]
    return args + list(extra)


def run_train(args, log: Path, before: Optional[Callable[[], None]] = None) -> None:
    """``blsp_train`` (in a forked child), its output to ``log``; ``before``
    runs first (e.g. to patch something in this child only)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout, sys.stderr = os.fdopen(1, "w", buffering=1), os.fdopen(2, "w", buffering=1)
    logging.root.handlers.clear()  # pytest's: ESPnet configures its own
    torch.set_num_threads(1)  # processes on few cores, no OpenMP pool from before the fork
    if before is not None:
        before()
    blsp_train.main(args)


def fork_train(
    runs: Sequence[List[str]], logs: Sequence[Path], before: Optional[Callable[[], None]] = None, timeout=300
) -> List[Optional[int]]:
    """``run_train`` of each argument list in its own forked child, all at once;
    their exit codes (negative: killed by that signal; None: still running at
    ``timeout`` s without news, then killed)."""
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=run_train, args=(a, log, before)) for a, log in zip(runs, logs)]
    for p in procs:
        p.start()
    try:
        # Until all are done or one fails (a DDP peer would wait on it for good).
        while any(p.exitcode is None for p in procs) and all(p.exitcode in (None, 0) for p in procs):
            if not multiprocessing.connection.wait([p.sentinel for p in procs if p.exitcode is None], timeout):
                break
    finally:
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.exitcode is None:
                p.kill()
            p.join()
    return codes
