"""Recipe stage: run the frozen speech encoder once, cache its frames.

``python -m espnet_blsp.bin.dump_encoder --wav_scp dump/raw/train/wav.scp \\
    --config conf/train.yaml --encoder_conf model_name_or_path=exp/whisper \\
    --out_dir dump/encoder/train``

A frozen encoder gives the same frames every epoch, so training reads them
from ``feats.scp`` (kaldiio) instead of recomputing them. The encoder is
built by name from the task's registry (``--encoder``/``--encoder_conf``, or
those of a training config), and ``encoder.yaml`` records it: training with
``--encoder precomputed --encoder_conf dumped_from=<dir>/encoder.yaml``
reads its width and layers there, and inference on waveforms rebuilds it.
``feats.scp`` is written last, atomically: its presence marks a finished job,
one made by this encoder (model, layers, dtype) from this wav.scp (else the
job starts over).

``--feats_dtype`` is what is stored: ``float32`` (Kaldi matrices, 4 bytes a
value, whatever the encoder computed in) or ``float16`` (kaldiio ``NPY``
entries, half the disk; readers cast them back to float32). A bf16 encoder's
frames convert to float16 exactly but for values below 2**-14; a value beyond
float16's range (65504) stops the job. ``espnet_blsp.utils.dump_size``
tells the size before anything is written.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import kaldiio
import numpy as np
import soundfile
import torch
import yaml
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.tasks.registry import absolute_model_path, build_encoder
from espnet_blsp.utils.audio import length_sorted_batches, load_speech, pad_batch
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.dump_size import FEATS_DTYPES
from espnet_blsp.utils.kaldi_dir import read_kv, write_kv, write_text
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.stamp import reset_if_stale, stamp_of


def dump(
    encoder: AbsSpeechEncoder, wav_scp: Path, out_dir: Path, batch_size: int, feats_dtype: str = "float32"
) -> int:
    """Encodes every utterance of ``wav_scp`` into ``out_dir/feats.{ark,scp}``.

    Args:
        encoder: The frozen encoder.
        wav_scp: The utterances.
        out_dir: Where the ark and scp go.
        batch_size: Utterances per encoder call (length-sorted).
        feats_dtype: The stored dtype, ``float32`` or ``float16`` (see the module doc).

    Returns:
        The number of utterances encoded (0 if ``out_dir`` was done).
    """
    if feats_dtype not in FEATS_DTYPES:
        raise ValueError(f"feats_dtype {feats_dtype!r}: one of {', '.join(FEATS_DTYPES)}")
    items = read_kv(wav_scp)
    if (out_dir / "feats.scp").exists():
        logging.info(f"{out_dir}/feats.scp exists: nothing to do")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = [soundfile.info(v).frames for _, v in items]
    keys = [k for k, _ in items]
    ark = (out_dir / "feats.ark").resolve()
    unsorted_scp = out_dir / ".feats.unsorted.scp"
    progress = Progress(len(items))
    # kaldiio writes float32 as Kaldi matrices; float16, which Kaldi lacks, as numpy entries.
    write_function = "numpy" if feats_dtype == "float16" else None
    with torch.no_grad(), kaldiio.WriteHelper(f"ark,scp:{ark},{unsorted_scp}", write_function=write_function) as writer:
        for batch in length_sorted_batches(keys, sizes, batch_size):
            speech, lengths = pad_batch([load_speech(items[i][1], "sound") for i in batch])
            try:
                frames, flen = encoder(speech, lengths)
            except ValueError as e:  # e.g. a clip too short to encode: name the utterances
                raise ValueError(f"{wav_scp}: the batch of {', '.join(keys[i] for i in batch)}: {e}") from e
            for i, x, n in zip(batch, frames, flen.tolist()):
                writer(keys[i], stored(x[:n], feats_dtype, keys[i]))
            progress.update(len(batch))
    # Written in length order; Kaldi tools want it sorted by utterance.
    index = dict(line.split(" ", 1) for line in unsorted_scp.read_text().splitlines())
    write_kv(out_dir / "feats.scp", sorted(index.items()))
    unsorted_scp.unlink()
    return len(items)


def stored(frames: torch.Tensor, feats_dtype: str, key: str) -> np.ndarray:
    """``frames`` as the dump stores them.

    Args:
        frames: (T, D) one utterance's encoder output.
        feats_dtype: ``float32`` or ``float16``.
        key: The utterance (named in the error).

    Raises:
        ValueError: For float16, if a value lies beyond its range (65504).
    """
    x = frames.float().numpy()
    if feats_dtype == "float32":
        return x
    peak = float(np.abs(x).max(initial=0.0))
    if not peak <= float(np.finfo(np.float16).max):
        raise ValueError(
            f"utterance {key}: a frame value of {peak:g} does not fit float16; dump with --feats_dtype float32"
        )
    return x.astype(np.float16)


def encoder_spec(config: Optional[Path], name: Optional[str], conf: dict) -> dict:
    """``{"encoder": ..., "encoder_conf": ...}``: the config's, updated by the
    command line; local paths made absolute."""
    loaded = yaml.safe_load(config.read_text()) if config else {}
    encoder = name or loaded.get("encoder") or "whisper"
    if encoder == "precomputed":
        raise ValueError(f"{config}: encoder 'precomputed' reads dumps; name the encoder that makes them")
    encoder_conf = {**(loaded.get("encoder_conf") or {}), **conf}
    absolute_model_path(encoder_conf, "encoder_conf")
    return {"encoder": encoder, "encoder_conf": encoder_conf}


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wav_scp", type=Path, required=True)
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="a training config: its encoder and encoder_conf")
    parser.add_argument("--encoder", help="encoder name in the task's registry (default: the config's, or whisper)")
    parser.add_argument(
        "--encoder_conf", action=NestedDictAction, default={},
        help="encoder options over the config's, e.g. model_name_or_path=DIR dtype=bfloat16",
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--feats_dtype", choices=sorted(FEATS_DTYPES), default="float32",
        help="stored dtype: float32 (Kaldi matrices) or float16 (half the disk)",
    )
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    spec = encoder_spec(args.config, args.encoder, args.encoder_conf)
    outputs = [args.out_dir / name for name in ("feats.ark", "feats.scp", ".feats.unsorted.scp", "encoder.yaml")]
    # float32 dumps predate the option: their stamps stay valid.
    feats_dtype = None if args.feats_dtype == "float32" else args.feats_dtype
    stamp = stamp_of({"wav_scp": args.wav_scp, "batch_size": args.batch_size, "feats_dtype": feats_dtype, **spec})
    reset_if_stale(args.out_dir / ".dump_encoder.stamp", stamp, outputs)
    if (args.out_dir / "feats.scp").exists() and (args.out_dir / "encoder.yaml").exists():
        logging.info(f"{args.out_dir}: done, nothing to do")
        return
    encoder = build_encoder(spec)
    n = dump(encoder, args.wav_scp, args.out_dir, args.batch_size, args.feats_dtype)
    record = {**spec, "output_size": encoder.output_size(), "num_layers": encoder.num_layers()}
    if args.feats_dtype != "float32":
        record["feats_dtype"] = args.feats_dtype
    write_text(args.out_dir / "encoder.yaml", yaml.safe_dump(record, sort_keys=False))
    logging.info(f"{args.out_dir}: encoded {n} utterances (width {encoder.output_size()})")


if __name__ == "__main__":
    main()
