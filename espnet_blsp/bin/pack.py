"""Packs a trained experiment into one archive, in ESPnet's ``pack`` format.

``python -m espnet_blsp.bin.pack --train_config exp/blsp/config.yaml \\
    --model_file exp/blsp/valid.loss.ave.pth --outpath exp/blsp/packed.zip``

The archive holds ``meta.yaml`` (``files``, ``yaml_files``), the training
config, the trained weights (only what trains: a few MB) and, for each model
the config names by a local directory (the LLM, the Whisper encoder), that
directory under ``models/``, so it loads on any machine:
``Speech2Response.from_pretrained("packed.zip")``. Models named by their hub
name stay names (downloaded where the archive is used). ESPnet's own
``espnet2.main_funcs.pack_funcs.unpack`` reads it, and rewrites the config's
paths to where it unpacked them.
"""

import argparse
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import yaml
from espnet2.main_funcs.pack_funcs import Archiver, unpack
from espnet2.utils.types import str2bool
from typeguard import typechecked

from espnet_blsp.utils.cli import setup

MODELS = "models"  # where local model directories go in the archive


def local_models(config: Dict, where: str = "") -> Iterator[Tuple[str, Dict]]:
    """The ``(place, conf)`` of each ``model_name_or_path`` in ``config``
    (nested ones too, e.g. a precomputed encoder's ``dumped_from``) that names
    a local directory."""
    for key, value in config.items():
        place = f"{where}.{key}" if where else key
        if isinstance(value, dict):
            yield from local_models(value, place)
        elif key == "model_name_or_path" and Path(str(value)).is_dir():
            yield place, config


@typechecked
def pack(
    train_config: Union[Path, str],
    model_file: Union[Path, str],
    outpath: Union[Path, str],
    with_models: bool = True,
    option: Sequence[Union[Path, str]] = (),
) -> Path:
    """Writes the archive (atomically) and returns its path.

    Args:
        train_config: The ``config.yaml`` training wrote.
        model_file: Trained weights, e.g. ``valid.loss.ave.pth`` (a symlink is
            stored as the file it points to).
        outpath: ``.zip``, ``.tar``, ``.tgz`` or ``.tar.gz``, ...
        with_models: Store the local model directories the config names;
            False keeps their paths, for use on this machine only.
        option: Further files (e.g. ``RESULTS.md``), stored by their names.
    """
    train_config, model_file, outpath = Path(train_config), Path(model_file), Path(outpath)
    for f in (train_config, model_file, *map(Path, option)):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file to pack")
    exp = train_config.parent.name
    packed_config = yaml.safe_load(train_config.read_text(encoding="utf-8"))  # its model paths change below
    dirs: Dict[str, Path] = {}  # name in the archive -> local directory
    if with_models:
        for place, conf in local_models(packed_config):
            src = Path(conf["model_name_or_path"]).resolve()
            name = f"{MODELS}/{src.name}"
            if dirs.setdefault(name, src) != src:
                raise ValueError(f"{train_config}: two model directories named {src.name} ({dirs[name]}, {src})")
            conf["model_name_or_path"] = name
            logging.info(f"{place}: {src} -> {name}")
    names = {"train_config": f"{exp}/config.yaml", "model_file": f"{exp}/{model_file.name}"}
    meta = {
        "files": {"model_file": names["model_file"]},
        "yaml_files": {"train_config": names["train_config"]},
        "timestamp": os.path.getmtime(model_file),
    }
    outpath.parent.mkdir(parents=True, exist_ok=True)
    # Archiver tells the format by the name's suffixes: build under the final name, then move.
    with tempfile.TemporaryDirectory(dir=outpath.parent, prefix=f".{outpath.name}.") as tmp:
        partial = Path(tmp) / outpath.name
        with Archiver(partial, mode="w") as archive:
            _add_bytes(archive, "meta.yaml", yaml.safe_dump(meta).encode())
            _add_bytes(archive, names["train_config"], yaml.safe_dump(packed_config, sort_keys=False).encode())
            archive.add(model_file.resolve(), names["model_file"])
            for name, src in dirs.items():
                _add_dir(archive, src, name)
            for f in map(Path, option):
                archive.add(f.resolve(), f"{exp}/{f.name}")
        os.replace(partial, outpath)
    return outpath


@typechecked
def locate_pretrained(
    source: Union[Path, str], model_file: Optional[str] = None, cache_dir: Optional[Union[Path, str]] = None
) -> Tuple[Path, Path]:
    """The ``(train_config, model_file)`` of an experiment dir or an archive.

    Args:
        source: An experiment dir (its ``config.yaml``) or an archive written
            by :func:`pack` (or ESPnet's ``pack``), unpacked once under
            ``cache_dir`` (default ``~/.cache/espnet_blsp/unpacked``).
        model_file: In an experiment dir, the weights' file name (default
            ``valid.loss.ave.pth``); an archive holds its own.
    """
    source = Path(source)
    if source.is_dir():
        config, weights = source / "config.yaml", source / (model_file or "valid.loss.ave.pth")
        if not config.is_file():
            raise FileNotFoundError(f"{config}: not found; {source} is not an experiment dir of blsp_train")
        if not weights.is_file():
            found = sorted(p.name for p in source.glob("*.pth")) or ["none"]
            raise FileNotFoundError(f"{weights}: not found (model files there: {', '.join(found)})")
        return config, weights
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such experiment dir or archive")
    # One dir per archive version: a repacked archive unpacks anew.
    stat = source.stat()
    tag = hashlib.sha1(f"{source.resolve()} {stat.st_size} {stat.st_mtime_ns}".encode()).hexdigest()[:10]
    cache = Path(cache_dir or Path.home() / ".cache/espnet_blsp/unpacked")
    out = cache / f"{source.name.split('.')[0]}-{tag}"
    done = out / ".unpacked"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)  # an interrupted unpack
        logging.info(f"unpacking {source} -> {out}")
        try:
            unpack(source, out, use_cache=False)
        except (RuntimeError, ValueError, tarfile.TarError, zipfile.BadZipFile) as e:
            raise ValueError(f"{source}: not an archive of espnet_blsp.bin.pack ({e})") from e
        done.touch()
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    return out / meta["yaml_files"]["train_config"], out / meta["files"]["model_file"]


def _add_bytes(archive: Archiver, name: str, data: bytes) -> None:
    archive.addfile(archive.generate_info(name, len(data)), BytesIO(data))


def _add_dir(archive: Archiver, src: Path, name: str) -> None:
    """``src``'s files (links followed: HF caches link to blobs) under ``name``,
    after an entry for the directory itself: ESPnet's unpack rewrites a config
    path only when it is the name of an entry."""
    info = archive.generate_info(name + ("/" if archive.type == "zip" else ""), 0)
    if archive.type == "tar":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    archive.addfile(info, BytesIO())
    for f in sorted(src.rglob("*")):
        if f.is_file():
            archive.add(f.resolve(), f"{name}/{f.relative_to(src)}")


def main(cmd: Optional[List[str]] = None):
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_config", type=Path, required=True)
    parser.add_argument("--model_file", type=Path, required=True)
    parser.add_argument("--outpath", type=Path, required=True)
    parser.add_argument(
        "--with_models", type=str2bool, default=True,
        help="store the local model directories the config names (default true)",
    )
    parser.add_argument("--option", type=Path, nargs="*", default=[], help="further files, e.g. RESULTS.md")
    args = parser.parse_args(cmd)
    setup(args)
    out = pack(args.train_config, args.model_file, args.outpath, args.with_models, args.option)
    logging.info(f"{out}: {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
