"""Progress with a total, a rate and an ETA, for every long loop.

A pipeline run, a scan, training, evaluation and prediction run for minutes
to hours; a user watching the console wants to know how far along it is and
when it will end, without a line per item.  :class:`Progress` prints one
line at most every ``interval_s`` seconds (and a last one at the end), as
``evaluated 12,288/49,000 samples (25.1%), 312.4 samples/s, ETA 1m58s``;
:class:`StatusLine` shows such a line in place on a terminal, and one line
every ``interval_s`` seconds elsewhere (CI logs, Dataflow's worker logs).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO


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


def share_text(done: float, total: float | None, unit: str, estimate: bool = False) -> str:
    """``"12,794/48,000 samples (26.7%)"``; ``"12,794 samples"`` without a
    total; ``estimate``: the total is marked ``~``."""
    if not total:
        return f"{done:,.0f} {unit}"
    mark = "~" if estimate else ""
    return f"{done:,.0f}/{mark}{total:,.0f} {unit} ({100.0 * min(done, total) / total:.1f}%)"


class StatusLine:
    """A status line that is updated often and shown sparingly: on a
    terminal rewritten in place (at most ``tty_interval_s`` apart), elsewhere
    one line every ``interval_s`` seconds through ``log`` (the first update
    and :meth:`finish` always show).  Thread-safe."""

    def __init__(self, log: Callable[[str], None], interval_s: float = 10.0,
                 stream: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, tty_interval_s: float = 0.2):
        self.log, self.clock = log, clock
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = tty_interval_s if self.tty else interval_s
        self._last: float | None = None
        self._shown = ""
        self._lock = threading.Lock()

    def update(self, text: str, force: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if not force and self._last is not None and now - self._last < self.interval_s:
                return
            self._last = now
            if self.tty:
                pad = max(0, len(self._shown) - len(text))
                self.stream.write("\r" + text + " " * pad)
                self.stream.flush()
                self._shown = text
            else:
                self.log(text)

    def finish(self, text: str) -> None:
        """Shows ``text`` as the last state and ends the line."""
        self.update(text, force=True)
        with self._lock:
            if self.tty and self._shown:
                self.stream.write("\n")
                self.stream.flush()
                self._shown = ""
