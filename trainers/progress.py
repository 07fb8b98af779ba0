"""Progress lines with a rate and an ETA, for the trainer's long loops.

Training, evaluation and prediction run for minutes to hours on a CPU; a
user watching the console wants to know how far along a loop is and when it
will end, without a line per batch.  :class:`Progress` prints one line at
most every ``interval_s`` seconds (and a last one at the end), as
``evaluated 12,288/49,000 samples (25.1%), 312.4 samples/s, ETA 1m58s``.
"""
from __future__ import annotations

import time
from typing import Callable


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1h02m05s``; ``75`` -> ``1m15s``; ``9.5`` -> ``10s``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta_text(done: float, total: float | None, elapsed_s: float) -> str:
    """``", ETA 1m58s"`` when the total is known and something is done, else ``""``."""
    if not total or done <= 0 or done >= total:
        return ""
    return f", ETA {format_duration(elapsed_s * (total - done) / done)}"


class Progress:
    """Counts units of work; logs a line with rate and ETA now and then."""

    def __init__(self, verb: str, total: int | None, unit: str,
                 log: Callable[[str], None] = print, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.perf_counter):
        self.verb, self.total, self.unit, self.log = verb, total, unit, log
        self.interval_s, self.clock = interval_s, clock
        self.start = self.last = clock()
        self.count = 0

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:,}" if self.total else ""
        share = f" ({100.0 * self.count / self.total:.1f}%)" if self.total else ""
        return (f"{self.verb} {self.count:,}{of} {self.unit}{share}, {rate:.1f} "
                f"{self.unit}/s{eta_text(self.count, self.total, elapsed)}")

    def update(self, n: int) -> None:
        self.count += n
        now = self.clock()
        if now - self.last >= self.interval_s:
            self.last = now
            self.log(self.line())

    def done(self) -> None:
        elapsed = self.clock() - self.start
        self.log(f"{self.line()} in {format_duration(elapsed)}")
