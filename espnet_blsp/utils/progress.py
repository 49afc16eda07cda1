"""Periodic progress lines with throughput, for long loops in recipe logs."""

import logging
import time


class Progress:
    """Logs ``done/total`` and items per second at most every ``interval`` s.

    Args:
        total: Items to process.
        what: Name of an item in the log line.
        interval: Seconds between lines.
    """

    def __init__(self, total: int, what: str = "utts", interval: float = 10.0):
        self.total, self.what, self.interval = total, what, interval
        self.done = 0
        self.start = self.last = time.time()

    def update(self, n: int, extra: str = "") -> None:
        self.done += n
        now = time.time()
        if now - self.last >= self.interval or self.done >= self.total:
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            logging.info(
                f"{self.done}/{self.total} {self.what} ({rate:.2f} {self.what}/s, "
                f"eta {eta:.0f} s){' ' + extra if extra else ''}"
            )
            self.last = now
