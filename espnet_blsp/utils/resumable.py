"""Append-only Kaldi-style outputs that survive a crash and resume."""

import os
from pathlib import Path
from typing import Callable, Iterator, List, Sequence, Set, Tuple, TypeVar

T = TypeVar("T")


def done_keys(path: Path) -> Set[str]:
    """The keys a :class:`ResumableWriter` on ``path`` would skip (its complete
    lines'), without opening it for writing; none if it is missing."""
    if not Path(path).exists():
        return set()
    data = Path(path).read_bytes()
    return _keys(data[: data.rfind(b"\n") + 1])


def batches_to_do(
    plan: Sequence[Sequence[T]], done: Callable[[T], bool]
) -> Iterator[Tuple[Sequence[T], List[int]]]:
    """The batches of ``plan`` that still hold items not ``done``, each with
    those items' positions in it.

    The plan covers all items, done or not, and a batch is computed whole: a
    resumed run batches (and so pads and answers) every item as an
    uninterrupted run did, and writes only what was lost.
    """
    for batch in plan:
        missing = [k for k, item in enumerate(batch) if not done(item)]
        if missing:
            yield batch, missing


def _keys(complete: bytes) -> Set[str]:
    return {line.split(" ", 1)[0] for line in complete.decode("utf-8").splitlines()}


class ResumableWriter:
    """Appends ``key value`` lines, fsyncing each batch.

    On open, a torn last line (a crash mid-write) is cut off, and the keys
    already written are remembered so the caller can skip them: a restarted
    job neither loses nor duplicates an utterance.

    Args:
        path: The output file (created if missing).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: Set[str] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                with open(self.path, "r+b") as f:
                    f.truncate(len(complete))
            self.done = _keys(complete)
        self._f = open(self.path, "a", encoding="utf-8")

    def write_batch(self, pairs) -> None:
        """Appends (key, value) pairs and makes them durable."""
        for key, value in pairs:
            self._f.write(f"{key} {' '.join(value.split())}\n")
            self.done.add(key)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "ResumableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
