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
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import kaldiio
import soundfile
import torch
import yaml
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_blsp.encoders.abs_encoder import AbsSpeechEncoder
from espnet_blsp.tasks.registry import absolute_model_path, build_encoder
from espnet_blsp.utils.audio import length_sorted_batches, load_speech, pad_batch
from espnet_blsp.utils.cli import add_num_threads, setup
from espnet_blsp.utils.kaldi_dir import read_kv, write_kv, write_text
from espnet_blsp.utils.progress import Progress
from espnet_blsp.utils.stamp import reset_if_stale, stamp_of


def dump(encoder: AbsSpeechEncoder, wav_scp: Path, out_dir: Path, batch_size: int) -> int:
    """Encodes every utterance of ``wav_scp`` into ``out_dir/feats.{ark,scp}``."""
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
    with torch.no_grad(), kaldiio.WriteHelper(f"ark,scp:{ark},{unsorted_scp}") as writer:
        for batch in length_sorted_batches(keys, sizes, batch_size):
            speech, lengths = pad_batch([load_speech(items[i][1], "sound") for i in batch])
            try:
                frames, flen = encoder(speech, lengths)
            except ValueError as e:  # e.g. a clip too short to encode: name the utterances
                raise ValueError(f"{wav_scp}: the batch of {', '.join(keys[i] for i in batch)}: {e}") from e
            for i, x, n in zip(batch, frames, flen.tolist()):
                writer(keys[i], x[:n].numpy())
            progress.update(len(batch))
    # Written in length order; Kaldi tools want it sorted by utterance.
    index = dict(line.split(" ", 1) for line in unsorted_scp.read_text().splitlines())
    write_kv(out_dir / "feats.scp", sorted(index.items()))
    unsorted_scp.unlink()
    return len(items)


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
    add_num_threads(parser)
    args = parser.parse_args(cmd)
    setup(args)
    spec = encoder_spec(args.config, args.encoder, args.encoder_conf)
    outputs = [args.out_dir / name for name in ("feats.ark", "feats.scp", ".feats.unsorted.scp", "encoder.yaml")]
    stamp = stamp_of({"wav_scp": args.wav_scp, "batch_size": args.batch_size, **spec})
    reset_if_stale(args.out_dir / ".dump_encoder.stamp", stamp, outputs)
    if (args.out_dir / "feats.scp").exists() and (args.out_dir / "encoder.yaml").exists():
        logging.info(f"{args.out_dir}: done, nothing to do")
        return
    encoder = build_encoder(spec)
    n = dump(encoder, args.wav_scp, args.out_dir, args.batch_size)
    record = {**spec, "output_size": encoder.output_size(), "num_layers": encoder.num_layers()}
    write_text(args.out_dir / "encoder.yaml", yaml.safe_dump(record, sort_keys=False))
    logging.info(f"{args.out_dir}: encoded {n} utterances (width {encoder.output_size()})")


if __name__ == "__main__":
    main()
