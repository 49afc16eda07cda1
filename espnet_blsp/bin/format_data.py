"""Recipe stage: check a data dir, decode each utterance, filter by length.

``python -m espnet_blsp.bin.format_data --src data/train --dst dump/raw/train``

Copies ``wav.scp``, ``text``, ``utt2spk`` and any ``utt2*`` side files,
keeping only utterances whose audio lasts between ``--min_sec`` and
``--max_sec``, and never one shorter than the Whisper encoder takes (25 ms),
whatever ``--min_sec``. Adds ``utt2num_samples``, ``spk2utt`` and ``dropped``
(``utt seconds s why`` for each utterance left out).
Every file is read and every audio file decoded before anything is written, so
a bad input leaves ``dst`` as it was; problems are reported with the file,
line and utterance.
"""

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile
from typeguard import typechecked

from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.dump_size import MIN_WINDOW_SAMPLES as MIN_SAMPLES  # shortest Whisper encodes
from espnet_blsp.utils.dump_size import SAMPLE_RATE
from espnet_blsp.utils.kaldi_dir import DataDirError, check_same_keys, read_kv, write_kv

BLOCK = 30 * SAMPLE_RATE  # decode in blocks: long files need not fit in memory


@typechecked
def num_samples(wav_scp: Path, lineno: int, utt: str, path: str) -> int:
    """Decodes one file to the end; its length in samples.

    Decoding, not the header, finds a truncated or corrupt file (a flac whose
    header promises more than it holds) before later stages trip on it.
    """
    where = f"{wav_scp}:{lineno}: utterance {utt}"
    if path.endswith("|"):
        raise DataDirError(f"{where}: piped audio is not supported, list audio files (wav, flac, ...) instead")
    try:
        with soundfile.SoundFile(path) as f:
            if f.samplerate != SAMPLE_RATE or f.channels != 1:
                raise DataDirError(
                    f"{where}: {path} is {f.samplerate} Hz, {f.channels} channel(s); 16 kHz mono expected"
                )
            n = 0
            for block in f.blocks(BLOCK, dtype="float32"):
                if not np.isfinite(block).all():
                    raise DataDirError(f"{where}: {path} has NaN or infinite samples after {n}")
                n += len(block)
    except DataDirError:
        raise
    except Exception as e:  # soundfile raises several types
        raise DataDirError(f"{where}: cannot decode {path}: {e}")
    return n


@typechecked
def measure(wav_scp: Path, pairs: List[Tuple[str, str]], nj: int = 1) -> Dict[str, int]:
    """Samples per utterance of ``wav_scp``'s ``pairs``, decoded by ``nj`` threads.

    Threads suffice: libsndfile releases the GIL while it decodes.

    Raises:
        DataDirError: For the first bad file in ``wav_scp`` order.
    """
    lengths: Dict[str, int] = {}
    start = time.time()
    pool = ThreadPoolExecutor(nj)
    try:
        jobs = [pool.submit(num_samples, wav_scp, i, utt, path) for i, (utt, path) in enumerate(pairs, 1)]
        for i, ((utt, _), job) in enumerate(zip(pairs, jobs), 1):
            lengths[utt] = job.result()
            if i % 1000 == 0:
                logging.info(f"decoded {i} of {len(pairs)} files ({i / (time.time() - start):.0f}/s)")
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, do not decode the rest
    return lengths


@typechecked
def why_dropped(n: int, min_sec: float, max_sec: float) -> str:
    """Why an utterance of ``n`` samples is dropped; "" if it is kept."""
    if n < MIN_SAMPLES:
        return f"< {MIN_SAMPLES / SAMPLE_RATE} s, too short for the Whisper encoder"
    if n < min_sec * SAMPLE_RATE:
        return f"< min_sec {min_sec}"
    if n > max_sec * SAMPLE_RATE:
        return f"> max_sec {max_sec}"
    return ""


@typechecked
def check_utf8(path: Path) -> None:
    """Raises DataDirError naming the first line that is not UTF-8."""
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            key = line.split()[0].decode("utf-8", "replace") if line.split() else ""
            raise DataDirError(f"{path}:{lineno}: utterance {key}: not UTF-8 (byte {e.start + 1} of the line)")


@typechecked
def format_dir(src: Path, dst: Path, min_sec: float, max_sec: float, nj: int = 1) -> Tuple[int, int]:
    """Validates ``src`` and writes the filtered copy to ``dst``.

    Returns:
        Utterances kept and dropped.

    Raises:
        DataDirError: Before anything is written to ``dst``.
    """
    for name in ("wav.scp", "text", "utt2spk"):
        if not (src / name).is_file():
            raise DataDirError(f"{src}: missing {name}")
    names = ["wav.scp", "text", "utt2spk"] + sorted(
        p.name for p in src.glob("utt2*") if p.name != "utt2spk"
    )
    for name in names:
        check_utf8(src / name)
    for name in names[1:]:
        check_same_keys(src / "wav.scp", src / name)
    files = {name: read_kv(src / name) for name in names}  # no empty values (transcripts ...)
    lengths = measure(src / "wav.scp", files["wav.scp"], nj)
    why = {u: why_dropped(n, min_sec, max_sec) for u, n in lengths.items()}
    keep = {u for u, w in why.items() if not w}
    if not keep:  # later stages would fail on an empty set, and less clearly
        first = next((f", e.g. {u}: {lengths[u] / SAMPLE_RATE:.3f} s {w}" for u, w in why.items()), "")
        raise DataDirError(f"{src}: none of its {len(lengths)} utterances is kept{first}")

    for name, pairs in files.items():
        write_kv(dst / name, [(k, v) for k, v in pairs if k in keep])
    write_kv(dst / "utt2num_samples", [(k, str(n)) for k, n in lengths.items() if k in keep])
    spk2utt: Dict[str, List[str]] = {}
    for utt, spk in files["utt2spk"]:
        if utt in keep:
            spk2utt.setdefault(spk, []).append(utt)
    write_kv(dst / "spk2utt", sorted((s, " ".join(u)) for s, u in spk2utt.items()))
    write_kv(dst / "dropped", [(u, f"{lengths[u] / SAMPLE_RATE:.3f} s {w}") for u, w in why.items() if w])
    return len(keep), len(lengths) - len(keep)


def main(cmd=None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="Kaldi data dir")
    parser.add_argument("--dst", type=Path, required=True, help="output dir")
    parser.add_argument("--min_sec", type=float, default=0.3)
    parser.add_argument("--max_sec", type=float, default=60.0)
    parser.add_argument("--nj", type=int, default=4, help="threads decoding audio")
    args = parser.parse_args(cmd)
    setup(args)
    kept, dropped = format_dir(args.src, args.dst, args.min_sec, args.max_sec, args.nj)
    logging.info(f"{args.dst}: kept {kept} utterances, dropped {dropped} (listed in {args.dst / 'dropped'})")


if __name__ == "__main__":
    main()
