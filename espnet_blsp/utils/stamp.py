"""What made an output, so that stale work is never reused.

A stamp is a list of lines, one per setting: its value and, for every file or
directory the value names, a fingerprint of the content. A resumable output
keeps its stamp beside it; a rerun whose stamp differs starts over (and says
what changed) instead of appending to, or skipping on, work made from other
inputs, models or settings.

The recipes check their skip markers from the shell::

    python -m espnet_blsp.utils.stamp check MARKER WORD...   # exit 0: up to date
    python -m espnet_blsp.utils.stamp write MARKER WORD...

This module imports no torch: a check costs a Python start, not a model load.
"""

import difflib
import hashlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from espnet_blsp.utils.kaldi_dir import write_text

# Files above this (model weights) are known by size and modification time:
# hashing gigabytes on every rerun would cost more than the check saves.
HASHED_BYTES = 64 << 20
# A word may name paths inside it: --speech feats.scp,kaldi_ark, key=DIR.
PATH_PARTS = re.compile(r"[,=]")


def fingerprint(path: Path) -> str:
    """The content of a file (md5; big files: size and mtime), or of each file
    under a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return _md5("\n".join(f"{p.relative_to(path)} {fingerprint(p)}" for p in files).encode())
    stat = path.stat()
    if stat.st_size > HASHED_BYTES:
        return f"size={stat.st_size},mtime={stat.st_mtime_ns}"
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def describe(value: Any) -> str:
    """``value`` as a stamp line: its text, then the fingerprint of every
    existing file or directory it names."""
    text = " ".join(str(value).split())
    prints = [
        f"{part}={fingerprint(Path(part))}"
        for part in PATH_PARTS.split(text)
        if part and Path(part).exists()
    ]
    return " ".join([text, *(f"[{p}]" for p in prints)])


def stamp_of(settings: Mapping[str, Any], ignore: Iterable[str] = (), prefix: str = "") -> List[str]:
    """The stamp of named settings (e.g. a CLI's parsed arguments; nested
    mappings flattened to ``a.b``), those in ``ignore`` left out (outputs,
    thread counts: they do not change the result)."""
    skip, lines = set(ignore), []
    for key, value in sorted(settings.items()):
        if key in skip or value is None:
            continue
        if isinstance(value, Mapping):
            lines += stamp_of(value, prefix=f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}: {describe(value)}")
    return lines


def beside(output: Path) -> Path:
    """Where the stamp of the output file ``output`` is kept."""
    return output.parent / f".{output.name}.stamp"


def changes(old: Sequence[str], new: Sequence[str]) -> List[str]:
    """The lines that differ: ``- old`` / ``+ new``."""
    return [line for line in difflib.ndiff(list(old), list(new)) if line[:1] in "-+"]


def why_stale(old: Optional[Sequence[str]], new: Sequence[str]) -> str:
    """Why work recorded with stamp ``old`` is not reused for ``new`` (no
    stamp, or an empty marker from before stamps: no record)."""
    if not old:
        return "no record of what made it"
    return f"made from other inputs or settings: {'; '.join(changes(old, new))}"


def read(stamp_file: Path) -> Optional[List[str]]:
    """The stamp recorded in ``stamp_file``; None if there is none."""
    return stamp_file.read_text(encoding="utf-8").splitlines() if stamp_file.exists() else None


def write(stamp_file: Path, stamp: Sequence[str]) -> None:
    """Records ``stamp`` atomically."""
    write_text(stamp_file, "".join(f"{line}\n" for line in stamp))


def reset_if_stale(stamp_file: Path, stamp: Sequence[str], outputs: Sequence[Path]) -> bool:
    """Makes ``outputs`` safe to resume: if they were made with another stamp
    (or with none recorded), deletes them and says what changed; then records
    ``stamp``.

    Returns:
        True if earlier outputs were deleted.
    """
    old = read(stamp_file)
    existing = [p for p in outputs if p.exists()]
    stale = existing and old != list(stamp)
    if stale:
        logging.warning(f"{', '.join(map(str, existing))}: {why_stale(old, stamp)}; starting over")
        for p in existing:
            p.unlink()
    if old != list(stamp):
        write(stamp_file, stamp)
    return bool(stale)


def main(argv: Optional[List[str]] = None) -> int:
    """``check MARKER WORD...`` (exit 0 if MARKER records these words and the
    content they name; else says what changed, exit 1) or ``write MARKER WORD...``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("check", "write"):
        print(main.__doc__, file=sys.stderr)
        return 2
    command, marker, words = argv[0], Path(argv[1]), argv[2:]
    stamp = [describe(w) for w in words]
    if command == "write":
        write(marker, stamp)
        return 0
    old = read(marker)
    if old == stamp:
        return 0
    if old is not None:  # else never done: nothing to say
        print(f"{marker}: {why_stale(old, stamp)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"))
    sys.exit(main())
