"""A persistent child process that runs one job at a time, within a time and
a memory limit: where everything that reads a replay's content runs.

Untrusted replays can make a decoder spin or grow without end (a 112 KB
file of 200 million valid game events took a process to 7.7 GB in 28 s).  A
Beam worker thread can be neither interrupted (``signal.alarm`` works only
in a process's main thread, and Beam runs DoFns in threads) nor capped in
memory, so every job that touches replay content -- the metadata scan
(:class:`pipeline.index.scan.ScanJob`), decoding and sampling, and shard
writing (:mod:`pipeline.job.worker`) -- runs in a child process
(:class:`TimedWorker`) that its caller talks to over a socket.  A job is a
picklable object with a ``run()`` method and a ``DOING`` phrase; the child
runs it through :func:`run_job`, which turns ``MemoryError`` into a
``resource`` failure and any other exception into ``internal`` (a bug, with
its traceback), and sends back the result.  While a job runs, the parent
watches the child:

* past its time limit the child is killed and the job is a ``timeout``;
* past its memory limit -- its resident set size, read from
  ``/proc/PID/statm`` every :data:`WATCH_INTERVAL_S` -- the child is killed
  and the job is a ``resource`` failure.  (``RLIMIT_AS`` would count the
  address space that the libraries reserve and never touch: the child
  maps 1.6 - 2.7 GB of virtual memory for 0.13 - 1.4 GB resident, and the
  reservations grow with the machine's core count.)  After a
  ``MemoryError`` inside the child, the child is replaced too;
* a child that dies otherwise (a native crash) gives ``crashed``.

The child is restarted for the next job.  The limits come with the caller's
configuration (:class:`pipeline.job.transforms.RunConfig` carries them to
Dask and Dataflow workers), and this module is in the ``replay`` stage so
that every stage that reads replays -- ``pipeline.index.scan_cli`` included
-- can use it.  Idle children wait in a per-process pool
(:meth:`TimedWorker.take` / :meth:`TimedWorker.give_back`), so the scan,
sampling and shard steps reuse the same children.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Iterator

from pipeline.replay.limits import DEFAULT_MEMORY_LIMIT_MB

#: How often the parent reads a running child's resident size.
WATCH_INTERVAL_S = 0.02
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A job that failed: a replay (scan or sampling), or a shard (which
    stops the run); ``category`` is one of
    :data:`pipeline.replay.archive.ERROR_CATEGORIES`."""
    category: str
    message: str


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one job's work.

    Decoding and featurizing a replay create hundreds of thousands of
    container objects (events, observations, samples) that live until its
    batch is written; meanwhile every full collection walks all of them and
    everything else alive in the process (Beam's and pyarrow's modules), to
    find almost nothing: reference counting frees the replay's objects.  The
    few cycles left wait for the first collection after the replay.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_job(job: Any) -> Any:
    """``job.run()``: the boundary of the process that reads replay content,
    which never raises for a replay.  A job returns its result or its own
    failure (:class:`JobFailure`, or what its module defines); here
    ``MemoryError`` (an allocation the machine refused) becomes a
    ``resource`` failure, and anything else unexpected is a bug, category
    ``internal`` with the traceback, so it is reported (a replay's in the
    errors table; a shard's stops the run), never hidden."""
    try:
        with gc_paused():
            return job.run()
    except MemoryError:
        return JobFailure("resource", f"{job.DOING}: out of memory (MemoryError)")
    except Exception:  # noqa: BLE001 -- a bug: reported as 'internal' with traceback
        return JobFailure("internal", traceback.format_exc(limit=8))


def child_main(fd: int) -> None:
    """The child process (:class:`TimedWorker` starts it): jobs from the
    socket ``fd`` until it closes.  Unpickling a job imports its module."""
    conn = multiprocessing.connection.Connection(fd)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(run_job(job))


def resident_bytes(pid: int) -> int:
    """A process's resident set size now; 0 if it cannot be read (gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def peak_resident_bytes(pid: int) -> int:
    """A process's peak resident set size so far (``VmHWM``); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


_PEAK = {"bytes": 0}
_PEAK_LOCK = threading.Lock()


def _record_peak(size: int) -> None:
    with _PEAK_LOCK:
        _PEAK["bytes"] = max(_PEAK["bytes"], size)


def children_peak_bytes() -> int:
    """The highest resident size any child of this process reached (kernel
    ``VmHWM`` after each job; the last sample of a child killed at its limit)."""
    return _PEAK["bytes"]


#: The child runs with the parent's ``sys.path`` (as ``multiprocessing``'s
#: "spawn" does), so it imports this package from where the parent did --
#: an uninstalled checkout included -- and nothing is reordered.
_PATH_VARIABLE = "SC2_SAMPLER_SYS_PATH"
_CHILD_MAIN = ("import json, os, sys; sys.path[:] = json.loads(os.environ['"
               + _PATH_VARIABLE + "']); from pipeline.replay.bounded_process import "
               "child_main; child_main(int(sys.argv[1]))")


#: glibc ``malloc`` settings of the child (environment variables read when
#: it starts).  By default glibc serves every block over its (dynamic) mmap
#: threshold with a fresh ``mmap`` and gives the top of the heap back to the
#: system as soon as 128 KB are free there; a replay's work allocates and
#: frees arrays of a few hundred KB to a few MB over and over (layer stacks,
#: codec chunks, Arrow and gzip buffers), so most of them came back as fresh
#: pages, each touched page a fault: 4.0 minor faults per sample of a
#: 5.0.8 TvT inside a run, at ~2.6 us each on this project's (virtual)
#: machines.  Served from a heap that keeps up to 64 MiB free at its top,
#: the same run takes 0.3-0.6 faults per sample (docs/pipeline.md, "Writing at
#: the speed of the source").  Memory the child frees still returns to the
#: system past those 64 MiB, and blocks over 32 MiB still get their own
#: mapping.  A variable already set in the environment is kept.
CHILD_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    "MALLOC_TOP_PAD_": str(16 << 20),
}

_SPARE: list["TimedWorker"] = []
_SPARE_LOCK = threading.Lock()


def prestart(timeout_s: float, most: int = 1,
             memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB) -> None:
    """Starts a child in this process ahead of need, for a later
    :meth:`TimedWorker.take`, unless ``most`` already wait.  A fresh child
    spends about a second importing before it can work; started while the
    worker still matches files, that second overlaps other work instead of
    delaying the first replay.  Each scanning DoFn calls this once, so a
    process whose runner works in N threads gets N children (``most``: the
    local worker count, so that runs one after another in one process do
    not pile them up).  Nothing waits for it; a child nobody takes exits
    with the process (its socket closes) or at :func:`close_spares`."""
    if timeout_s <= 0:
        return
    with _SPARE_LOCK:
        if len(_SPARE) < max(1, most):
            worker = TimedWorker(timeout_s, memory_limit_mb)
            worker._start()
            _SPARE.append(worker)


def close_spares() -> None:
    """Closes the idle children of this process (the end of a run whose
    runner worked in this process's threads)."""
    with _SPARE_LOCK:
        spares = list(_SPARE)
        _SPARE.clear()
    for worker in spares:
        worker.close()


class TimedWorker:
    """Runs :func:`run_job` in a persistent child process with a time limit
    and a memory limit (0: none).

    The child is a plain subprocess, not a ``multiprocessing.Process``, so a
    daemonic worker may start it too (Dask's nanny starts its workers as
    daemons, and ``multiprocessing`` refuses children to a daemon).  It cannot
    outlive its worker for long: it exits when its socket to the worker
    closes (:func:`child_main` returns on ``EOFError``), which happens when
    the worker dies however it dies.
    """

    def __init__(self, timeout_s: float, memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB):
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self._proc: subprocess.Popen | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self.restarts = 0
        #: the highest resident size seen of this worker's children
        self.peak_bytes = 0

    @classmethod
    def take(cls, timeout_s: float,
             memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB) -> "TimedWorker":
        """A worker for a DoFn's bundle: an idle one from this process's pool
        -- one :func:`prestart` started (its child has been importing
        meanwhile) or one an earlier bundle gave back -- else a new one whose
        child starts with its first job."""
        with _SPARE_LOCK:
            spare = _SPARE.pop() if _SPARE else None
        if spare is None or not spare._alive():
            if spare is not None:
                spare.close()
            return cls(timeout_s, memory_limit_mb)
        spare.timeout_s = timeout_s
        spare.memory_limit_mb = memory_limit_mb
        return spare

    @property
    def pid(self) -> int:
        """The child's process id (this process's when it runs jobs itself)."""
        return self._proc.pid if self._proc is not None else os.getpid()

    def give_back(self) -> None:
        """Puts this worker, child still running, in the process's pool for
        the next :meth:`take` (the shard step takes the sampling step's)."""
        if self._alive():
            with _SPARE_LOCK:
                _SPARE.append(self)
        else:
            self.close()

    def _start(self) -> None:
        parent, child = socket.socketpair()
        with child:
            env = dict(CHILD_MALLOC_ENV, **os.environ)   # the caller's own settings win
            env[_PATH_VARIABLE] = json.dumps(sys.path)
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
        self._conn = multiprocessing.connection.Connection(parent.detach())

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _note_peak(self, size: int) -> None:
        self.peak_bytes = max(self.peak_bytes, size)
        _record_peak(size)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1

    def run(self, job: Any, timeout_s: float | None = None) -> Any:
        """The job's outcome (see :func:`run_job`), or a :class:`JobFailure`
        ``timeout``, ``resource`` or ``crashed``.
        ``timeout_s`` (default: the worker's) of 0 runs the job in this
        process, without either limit."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            return run_job(job)
        if not self._alive():
            self._start()
        self._conn.send(job)
        # The first job of a fresh child also pays its imports; the limit
        # counts from the send, so keep it well above import time.
        limit = max(0, int(self.memory_limit_mb)) * 2 ** 20
        deadline = time.monotonic() + timeout
        while not self._conn.poll(min(WATCH_INTERVAL_S, max(0.0, deadline -
                                                            time.monotonic()))):
            resident = resident_bytes(self._proc.pid)
            if limit and resident > limit:
                self._note_peak(resident)
                self._kill()
                return JobFailure("resource", f"{_doing(job)} took the process past its "
                                  f"memory limit of {self.memory_limit_mb} MB (resident "
                                  f"{resident / 2 ** 20:.0f} MB); child process killed")
            if time.monotonic() >= deadline:
                self._kill()
                return JobFailure("timeout", f"{_doing(job)} took over {timeout:g} s; "
                                             "child process killed")
        try:
            outcome = self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.poll() if self._proc is not None else None
            self._kill()
            return JobFailure("crashed", f"{_doing(job)}: the child process died (exit "
                                         f"code {code}): {exc!r}")
        self._note_peak(peak_resident_bytes(self._proc.pid))
        if isinstance(outcome, JobFailure) and outcome.category == "resource":
            self._kill()               # a MemoryError: start the next job afresh
        return outcome

    def close(self) -> None:
        if self._alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


def _doing(job: Any) -> str:
    """What a job was doing, for its failure's message."""
    return job.DOING
