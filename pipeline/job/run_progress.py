"""How far a pipeline run is: files and samples done out of the total, rate, ETA.

The steps run on a runner's workers; on the local runner (worker threads of
the launcher's process) they all report to :data:`RUN`, one object per
process, so the user sees one line for the whole run, not a line per replay
per worker:

    scanned 9/11 files (81.8%), 4.1 files/s, ETA 0s
    sampled 3/8 replays, 12,794/~31,000 samples (41.3%), 2,903.2 samples/s, ETA 6s; last: a.SC2Replay

The file total is the input count the launcher found (:meth:`RunProgress.begin`);
the replay and sample totals grow as replays pass the filters (each kept
replay adds its game loops / ``step_mul`` per sampled player, an estimate
marked ``~``), and are final before sampling starts on the local runner (its
balancing step collects every kept replay first).  On a terminal the line is
rewritten in place; elsewhere (CI, Dataflow worker logs, tests) one line
every ``interval_s`` seconds goes to the ``sc2.progress`` logger.  Where the
workers are other processes (Dataflow, Dask) each reports its own share,
without totals.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pipeline.progress import StatusLine, eta_text, format_duration, share_text

progress_log = logging.getLogger("sc2.progress")


class RunProgress:
    """Counts a run's scanned files, kept replays, sampled replays and
    samples; shows them through a :class:`StatusLine`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self.reset(0)

    def reset(self, files_total: int, status: StatusLine | None = None) -> None:
        with self._lock:
            self.files_total = files_total
            self.files_scanned = 0
            self.replays_total = 0
            self.samples_expected = 0
            self.replays_done = 0
            self.replays_failed = 0
            self.samples_done = 0
            self.last = ""
            self.started = self.clock()
            self.kept_since: float | None = None
            self.sampling_started: float | None = None
            self.status = status

    def begin(self, files_total: int, interval_s: float = 10.0, tty: bool | None = None
              ) -> None:
        """A new run over ``files_total`` input files (called by the launcher)."""
        self.reset(files_total, StatusLine(progress_log.info, interval_s, tty=tty,
                                           clock=self.clock))

    def _show(self, force: bool = False) -> None:
        status = self.status
        if status is None:              # a worker process: no total, a plain line
            status = self.status = StatusLine(progress_log.info, clock=self.clock)
        status.update(self.line(), force=force)

    def scanned(self) -> None:
        with self._lock:
            self.files_scanned += 1
        self._show()

    def kept(self, expected_samples: int) -> None:
        with self._lock:
            if self.kept_since is None:       # sampling follows the filters: its clock
                self.kept_since = self.clock()
            self.replays_total += 1
            self.samples_expected += max(0, expected_samples)

    def sampled(self, samples: int, name: str, failed: bool = False) -> None:
        with self._lock:
            if self.sampling_started is None:
                self.sampling_started = self.kept_since or self.clock()
            self.replays_done += 1
            self.replays_failed += int(failed)
            self.samples_done += samples
            self.last = name + (" (failed)" if failed else "")
        self._show()

    def finish(self) -> None:
        """The last line (ends the in-place line on a terminal)."""
        if self.status is not None and (self.files_scanned or self.replays_done):
            self.status.finish(f"{self.line()} in {format_duration(self.clock() - self.started)}")

    def line(self) -> str:
        with self._lock:
            now = self.clock()
            if self.sampling_started is None:
                elapsed = max(now - self.started, 1e-9)
                return (f"scanned {share_text(self.files_scanned, self.files_total, 'files')}, "
                        f"{self.files_scanned / elapsed:.1f} files/s"
                        f"{eta_text(self.files_scanned, self.files_total, elapsed)}")
            elapsed = max(now - self.sampling_started, 1e-9)
            replays = (f"{self.replays_done:,}/{self.replays_total:,}" if self.replays_total
                       else f"{self.replays_done:,}")
            expected = max(self.samples_expected, self.samples_done)
            failed = f" ({self.replays_failed} failed)" if self.replays_failed else ""
            # the ETA follows the samples: replays differ tenfold in length
            return (f"sampled {replays} replays{failed}, "
                    f"{share_text(self.samples_done, expected, 'samples', estimate=True)}, "
                    f"{self.samples_done / elapsed:,.1f} samples/s"
                    f"{eta_text(self.samples_done, expected, elapsed)}; last: {self.last}")


#: This process's run (the local runner's workers are its threads).
RUN = RunProgress()
