"""Recipe stage: check a data dir, measure each utterance, filter by length.

``python -m espnet_blsp.bin.format_data --src data/train --dst dump/raw/train``

Copies ``wav.scp``, ``text``, ``utt2spk`` and any ``utt2*`` side files,
keeping only utterances whose audio lasts between ``--min_sec`` and
``--max_sec``, and adds ``utt2num_samples``. Every problem is reported with
the file, line and utterance.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, Tuple

import soundfile
from typeguard import typechecked

from espnet_blsp.utils.cli import setup
from espnet_blsp.utils.kaldi_dir import DataDirError, check_same_keys, read_kv, write_kv

SAMPLE_RATE = 16000


@typechecked
def measure(wav_scp: Path) -> Dict[str, int]:
    """Samples per utterance, checking that each file opens and is 16 kHz mono."""
    lengths: Dict[str, int] = {}
    start = time.time()
    for lineno, (utt, path) in enumerate(read_kv(wav_scp), 1):
        if path.endswith("|"):
            raise DataDirError(
                f"{wav_scp}:{lineno}: utterance {utt}: piped audio is not supported, "
                "list audio files (wav, flac, ...) instead"
            )
        try:
            info = soundfile.info(path)
        except Exception as e:  # soundfile raises several types
            raise DataDirError(f"{wav_scp}:{lineno}: utterance {utt}: cannot read {path}: {e}")
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise DataDirError(
                f"{wav_scp}:{lineno}: utterance {utt}: {path} is {info.samplerate} Hz, "
                f"{info.channels} channel(s); 16 kHz mono expected"
            )
        lengths[utt] = info.frames
        if lineno % 1000 == 0:
            logging.info(f"checked {lineno} files ({lineno / (time.time() - start):.0f}/s)")
    return lengths


@typechecked
def format_dir(src: Path, dst: Path, min_sec: float, max_sec: float) -> Tuple[int, int]:
    """Validates ``src`` and writes the filtered copy to ``dst``.

    Returns:
        Utterances kept and dropped.
    """
    for name in ("wav.scp", "text", "utt2spk"):
        if not (src / name).is_file():
            raise DataDirError(f"{src}: missing {name}")
    side = sorted(p.name for p in src.glob("utt2*") if p.name != "utt2spk")
    for name in ["text", "utt2spk"] + side:
        check_same_keys(src / "wav.scp", src / name)
    lengths = measure(src / "wav.scp")
    keep = {u for u, n in lengths.items() if min_sec * SAMPLE_RATE <= n <= max_sec * SAMPLE_RATE}
    for name in ["wav.scp", "text", "utt2spk"] + side:
        write_kv(dst / name, [(k, v) for k, v in read_kv(src / name) if k in keep])
    write_kv(dst / "utt2num_samples", [(k, str(n)) for k, n in lengths.items() if k in keep])
    spk2utt: Dict[str, List[str]] = {}
    for utt, spk in read_kv(dst / "utt2spk"):
        spk2utt.setdefault(spk, []).append(utt)
    write_kv(dst / "spk2utt", sorted((s, " ".join(u)) for s, u in spk2utt.items()))
    return len(keep), len(lengths) - len(keep)


def main(cmd=None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="Kaldi data dir")
    parser.add_argument("--dst", type=Path, required=True, help="output dir")
    parser.add_argument("--min_sec", type=float, default=0.3)
    parser.add_argument("--max_sec", type=float, default=60.0)
    args = parser.parse_args(cmd)
    setup(args)
    kept, dropped = format_dir(args.src, args.dst, args.min_sec, args.max_sec)
    logging.info(f"{args.dst}: kept {kept} utterances, dropped {dropped} outside "
                 f"[{args.min_sec}, {args.max_sec}] s")


if __name__ == "__main__":
    main()
