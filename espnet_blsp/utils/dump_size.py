"""How much disk an encoder dump will take, known before it is written.

``python -m espnet_blsp.utils.dump_size --config conf/train.yaml --model DIR \\
    --feats_dtype float16 --out_root dump/encoder dump/raw/train dump/raw/dev``

logs the size each set's dump will have and their total, and exits 1 (saying
what to do) when the dump dir's filesystem has not that much free, plus a
margin. The size is exact for the frames (``dump_encoder`` writes Whisper's
frames of each utterance's real length, no 30-s padding: ``whisper_frames``)
and close for the scp files beside them. It is computed from each set's
``utt2num_samples``, the training config's encoder section and the Whisper
``config.json`` (``d_model``), without loading weights: this module imports
no torch, so the check costs a Python start.

What the dump stores per value (``--feats_dtype``): ``float32`` (Kaldi ``FM``
matrices, 4 bytes), whatever dtype the encoder computed in (``bfloat16`` is
upcast, as Kaldi has no bf16 matrix), or ``float16`` (kaldiio's ``NPY``
entries, 2 bytes; every reader here casts them back to float32). A bf16
encoder's values convert to float16 exactly except below 2**-14, where float16
keeps fewer bits (absolute error < 3e-8); a float32 encoder's values move
by 2e-4 of their RMS (``bench/dump_vs_on_the_fly.py`` measures both).

For tests, ``BLSP_DUMP_FREE_BYTES`` (or ``--free_bytes``) stands for the free
space of the filesystem.
"""

import argparse
import functools
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from typeguard import typechecked

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper always sees 30 s windows.
MIN_WINDOW_SAMPLES = 400  # one STFT window
HOP_SAMPLES = 160  # 100 mel frames per second; the encoder's conv halves them
FEATS_DTYPES = {"float32": 4, "float16": 2}  # bytes per stored value
GIB = 1 << 30
MARGIN_FRACTION = 0.05  # free space asked beyond the estimate: 5 % of it ...
MARGIN_BYTES = GIB  # ... and 1 GiB (logs, checkpoints, filesystem blocks)


def valid_frames(num_samples: int) -> int:
    """Encoder frames that carry audio for one window of ``num_samples`` samples."""
    mel_frames = num_samples // HOP_SAMPLES  # HF drops the STFT's last frame.
    return max(1, (mel_frames + 1) // 2)


@typechecked
def whisper_frames(num_samples: int) -> int:
    """Frames ``WhisperSpeechEncoder`` gives (and the dump stores) for an
    utterance: its 30-s windows' own lengths, a last window shorter than one
    STFT window dropped (about 50 per second; 600 for 12 s).

    Args:
        num_samples: The utterance's length at 16 kHz.

    Raises:
        ValueError: For fewer than ``MIN_WINDOW_SAMPLES`` (the encoder refuses it).
    """
    if num_samples < MIN_WINDOW_SAMPLES:
        raise ValueError(f"{num_samples} samples: too short to encode")
    return sum(
        valid_frames(min(WINDOW_SAMPLES, num_samples - start))
        for start in range(0, num_samples, WINDOW_SAMPLES)
        if num_samples - start >= MIN_WINDOW_SAMPLES
    )


@functools.lru_cache(maxsize=None)
def _npy_header_bytes(rows: int, cols: int) -> int:
    import numpy as np  # not torch: cheap

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": (rows, cols)})
    return buf.tell()


@typechecked
def ark_entry_bytes(key: str, rows: int, cols: int, feats_dtype: str = "float32") -> int:
    """Bytes of one utterance's entry in a kaldiio ark, as ``dump_encoder`` writes it.

    Args:
        key: The utterance id.
        rows: Frames.
        cols: Values per frame (width x layers).
        feats_dtype: ``float32`` (a Kaldi ``FM`` matrix) or ``float16`` (an ``NPY`` entry).
    """
    head = len(key.encode()) + 1  # "key "
    if feats_dtype == "float32":
        return head + len(b"\0BFM ") + 2 * 5 + rows * cols * 4  # "\4" + int32, for rows and cols
    if feats_dtype == "float16":
        npy = _npy_header_bytes(rows, cols) + rows * cols * 2
        return head + len(b"NPY") + 1 + (npy.bit_length() + 7) // 8 + npy
    raise ValueError(f"feats_dtype {feats_dtype!r}: one of {', '.join(FEATS_DTYPES)}")


@typechecked
def encoder_values_per_frame(config: Optional[Path] = None, model: Optional[str] = None) -> Tuple[int, int]:
    """``(d_model, layers)`` of the encoder a training config names: a frame
    holds ``d_model * layers`` values (the chosen layers concatenated).

    Args:
        config: A training config (its ``encoder`` and ``encoder_conf``).
        model: The Whisper checkpoint (dir or hub name), over the config's
            ``encoder_conf.model_name_or_path``. Only its ``config.json`` is read.

    Raises:
        ValueError: For an encoder other than Whisper, or none named.
    """
    loaded = (yaml.safe_load(config.read_text()) or {}) if config else {}
    encoder = loaded.get("encoder") or "whisper"
    conf = loaded.get("encoder_conf") or {}
    if encoder != "whisper":
        raise ValueError(f"{config}: cannot tell the size of encoder {encoder!r}'s frames (only whisper's)")
    model = model or conf.get("model_name_or_path")
    if not model:
        raise ValueError(f"{config}: no Whisper model named (encoder_conf.model_name_or_path or --model)")
    layers = conf.get("layers")
    return _d_model(model), len(layers) if layers else 1


def _d_model(model: str) -> int:
    path = Path(model) / "config.json"
    if not path.is_file():  # a hub name: its config.json, as from_pretrained would fetch it
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(model, "config.json"))
    return int(json.loads(path.read_text())["d_model"])


@typechecked
def set_bytes(utt2num_samples: Path, values_per_frame: int, feats_dtype: str, out_dir: Path) -> int:
    """Bytes the dump of one set will take in ``out_dir``: its arks and scp files.

    Args:
        utt2num_samples: The set's ``<utt> <samples>`` lines (stage 2 writes them).
        values_per_frame: Width x layers.
        feats_dtype: The stored dtype (``float32`` or ``float16``).
        out_dir: The set's dump dir (the scp lines name arks under it).
    """
    ark = len(str(out_dir.resolve() / "split_dump/out.1/feats.ark"))
    total = 0
    with open(utt2num_samples, encoding="utf-8") as f:
        for line in f:
            key, samples = line.split()
            total += ark_entry_bytes(key, whisper_frames(int(samples)), values_per_frame, feats_dtype)
            # A job's feats.scp and the merged one: "key ark:offset\n", offsets of up to 12 digits.
            total += 2 * (len(key.encode()) + ark + 15)
    return total


@typechecked
def frames_shape(samples_shape: Path, out: Path, config: Optional[Path] = None, model: Optional[str] = None) -> None:
    """Rewrites ESPnet's shapes of waveforms (``utt <samples>``) as those of
    the encoder frames they become (``utt <frames>,<values per frame>``), the
    shapes cached frames have: a config's ``batch_bins`` then means the same
    whether the encoder runs once (stage 4) or on the fly.

    Args:
        samples_shape: ``speech_shape`` written by ``collect_stats`` on ``wav.scp``.
        out: Where the frames' shapes go.
        config: The training config (its encoder layers).
        model: The Whisper checkpoint, over the config's.
    """
    d_model, layers = encoder_values_per_frame(config, model)
    lines = []
    with open(samples_shape, encoding="utf-8") as f:
        for line in f:
            key, shape = line.split()
            lines.append(f"{key} {whisper_frames(int(shape.split(',')[0]))},{d_model * layers}\n")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(out)


def bytes_in(path: Path) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def free_bytes(path: Path) -> int:
    """Free bytes of the filesystem that holds (or will hold) ``path``."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def human(n: float) -> str:
    """``3.1 GB``: bytes in powers of 1000, as disks are sold and ``df -H`` shows them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


@typechecked
def check_space(needed: int, free: int, where: Path, feats_dtype: str = "float32") -> Optional[str]:
    """None if ``free`` holds ``needed`` plus the margin, else why not and what to do.

    Args:
        needed: Bytes still to write.
        free: Free bytes of the filesystem.
        where: The dump dir (named in the message).
        feats_dtype: The stored dtype (float16 is suggested if it is not that).
    """
    asked = needed + int(MARGIN_FRACTION * needed) + MARGIN_BYTES
    if free >= asked:
        return None
    half = "store the frames in half the space (--encoder_dump_feats_dtype float16), "
    return (
        f"{where}: the encoder dump needs ~{human(needed)} ({needed} bytes) more, but its filesystem has "
        f"{human(free)} ({free} bytes) free, and {human(asked)} is asked (the estimate + 5 % + 1 GiB). "
        f"To go on: {half if feats_dtype == 'float32' else ''}encode on the fly instead "
        "(--use_encoder_dump false: no dump), or dump elsewhere (--dumpdir on a larger disk)."
    )


@typechecked
def estimate(
    set_dirs: Sequence[Path], out_root: Path, values_per_frame: int, feats_dtype: str
) -> Tuple[Dict[Path, int], int]:
    """Each set's dump size, and the bytes its dump dir already holds.

    Args:
        set_dirs: Data dirs with ``utt2num_samples``; set ``<dir>`` is dumped
            to ``out_root/<name of dir>``.
        out_root: The dump root (``dump/encoder``).
        values_per_frame: Width x layers.
        feats_dtype: The stored dtype.

    Returns:
        ``({set dir: bytes}, bytes present)``: the files present are kept or
        replaced, so they count as space the dump can use.
    """
    sizes, present = {}, 0
    for d in set_dirs:
        out = out_root / d.name
        sizes[d] = set_bytes(d / "utt2num_samples", values_per_frame, feats_dtype, out)
        present += bytes_in(out)
    return sizes, present


def main(cmd: Optional[List[str]] = None) -> int:
    """CLI entry point: logs the estimate; exit 1 if it does not fit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set_dirs", type=Path, nargs="+", help="data dirs with utt2num_samples")
    parser.add_argument("--out_root", type=Path, required=True, help="the dump root: <out_root>/<set>")
    parser.add_argument("--config", type=Path, help="a training config: its encoder and encoder_conf")
    parser.add_argument("--model", help="the Whisper checkpoint, over the config's model_name_or_path")
    parser.add_argument("--feats_dtype", choices=sorted(FEATS_DTYPES), default="float32")
    parser.add_argument(
        "--free_bytes", type=int, default=os.environ.get("BLSP_DUMP_FREE_BYTES"),
        help="take this as the free space (for tests; default: the filesystem's, or $BLSP_DUMP_FREE_BYTES)",
    )
    args = parser.parse_args(cmd)
    d_model, layers = encoder_values_per_frame(args.config, args.model)
    sizes, present = estimate(args.set_dirs, args.out_root, d_model * layers, args.feats_dtype)
    total = sum(sizes.values())
    free = free_bytes(args.out_root) if args.free_bytes is None else int(args.free_bytes)
    for d, n in sizes.items():
        logging.info(f"{args.out_root / d.name}: ~{human(n)}")
    per_value = f"{d_model} x {layers} values per frame, {args.feats_dtype}"
    logging.info(
        f"the encoder dump will write ~{human(total)} to {args.out_root} ({per_value}; "
        f"{human(present)} there already; free: {human(free)})"
    )
    problem = check_space(max(0, total - present), free, args.out_root, args.feats_dtype)
    if problem:
        logging.error(problem)
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
