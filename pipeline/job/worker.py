"""Decodes and samples one replay -- and writes shards -- in a child process.

Untrusted replays can make a decoder spin or blow up; a Beam worker thread
cannot be interrupted (``signal.alarm`` works only in a process's main thread,
and Beam runs DoFns in worker threads).  So the expensive step -- full decode,
observation source, batch file -- runs in a persistent child process
(``multiprocessing`` "spawn" context, one per DoFn instance) that the DoFn
talks to over a pipe.  If a replay exceeds the limit the child is killed and
restarted, and the replay becomes a ``timeout`` error record; a child that
dies (out of memory, a crash in native code) makes a ``crashed`` record.

The child writes the replay's batch file itself and returns only a small
:class:`~pipeline.output.manifest.ReplayResult`, so samples never cross the
pipe.  The shard step hands its shard jobs (:class:`ShardJob`) to the same children
(they return the shard's small info dict): the heavy work of a run is then
all in the children, so the local runner's workers can be threads of one
process (no worker processes to start, no gRPC between them) and still use
every core.  Idle children wait in a per-process pool (:meth:`TimedWorker.take`
/ :meth:`TimedWorker.give_back`), so the shard step reuses the children that
sampled instead of starting new ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import multiprocessing
import multiprocessing.connection
import operator
import os
import socket
import subprocess
import sys
import threading
import traceback
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from pipeline.index import scan
from pipeline.output import writers
from pipeline.output.manifest import ReplayResult
from pipeline.sources.interface import ObservationSource, SourceError
from pipeline.sources.registry import SourceSpec
from pipeline.replay import storage
from pipeline.replay.archive import ReplayArchive, ReplayError
from schemas import layers
from schemas.run_output import RunLayout
from schemas.sample import SampleSchema


@dataclasses.dataclass(frozen=True)
class ReplayJob:
    """One kept replay to sample: what the child process needs, pickled."""
    path: str
    replay_row: Mapping[str, Any]            # the index's replay row
    player_rows: Sequence[Mapping[str, Any]]  # the index's player rows
    split: str
    output_dir: str
    spec: SourceSpec
    resolution: int
    max_bytes: int | None


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """One planned shard to write, in every format, and verify."""
    task: writers.ShardTask
    resolution: int
    output_dir: str
    formats: tuple[str, ...]
    gzip_level: int


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A job that failed: a replay in the sampling step, or a shard (which
    stops the run); ``category`` is one of
    :data:`pipeline.replay.archive.ERROR_CATEGORIES`."""
    category: str
    message: str


@dataclasses.dataclass(frozen=True)
class JobAborted:
    """The output could not be written while sampling a replay: not the
    replay's failure but the machine's, which stops the run.  What crosses
    the pipe of an :class:`EnvironmentFailure` (its line and errno kind)."""
    line: str
    kind: str

    def failure(self) -> "EnvironmentFailure":
        return EnvironmentFailure(self.line, self.kind)


class JobFailed(Exception):
    """A replay failed in the sampling step; ``category`` names why."""

    def __init__(self, category: str, message: str):
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


class EnvironmentFailure(Exception):
    """The machine, not a replay, failed: writing the output raised
    ``OSError`` (no space left, an I/O error, no permission, a read-only
    disk).  It stops the run -- it is never a replay's error record -- with
    one line naming the path and the cause.

    The line starts with :data:`MARKER` so that the launcher finds it again
    in whatever Beam wraps it in (a worker process's traceback text)."""

    MARKER = "output failure:"

    def __init__(self, line: str, kind: str = "oserror"):
        super().__init__(line)
        self.line = line
        #: ``errno`` name in lower case (``enospc``, ``eio``, ``eacces``...).
        self.kind = kind

    @classmethod
    def of(cls, exc: OSError, path: str) -> "EnvironmentFailure":
        """From the ``OSError`` raised while writing ``path`` (its own
        ``filename`` wins when it has one)."""
        import errno
        name = errno.errorcode.get(exc.errno, "") if exc.errno is not None else ""
        where = exc.filename or path
        cause = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"{cls.MARKER} {where}: {cause}" + (f" ({name})" if name else ""),
                   (name or "oserror").lower())

    @classmethod
    def find(cls, text: str) -> "EnvironmentFailure | None":
        """The failure whose line is in ``text`` (an exception's message or
        traceback as Beam re-raises it), or None."""
        at = text.find(cls.MARKER)
        if at < 0:
            return None
        import re
        line = text[at:].splitlines()[0]
        line = re.sub(r"\s*\[while running .*$", "", line).strip().rstrip("'\"")
        kind = re.search(r"\((E[A-Z0-9]+)\)$", line)
        return cls(line, kind.group(1).lower() if kind else "oserror")


_BUILT: dict[tuple, ObservationSource] = {}


@functools.lru_cache(maxsize=None)
def _schema(resolution: int) -> SampleSchema:
    """The process's schema at ``resolution`` (made once: its Arrow schema
    and Example encoder are built on first use, ~2-3 ms, and reused by every
    replay and shard after)."""
    return SampleSchema(resolution, resolution)


def _source(spec: SourceSpec, schema: SampleSchema) -> ObservationSource:
    """The process's source for ``spec`` at ``schema``'s resolutions (built once)."""
    key = (spec, schema.screen_resolution, schema.minimap_resolution)
    if key not in _BUILT:
        _BUILT[key] = spec.build(schema)
    return _BUILT[key]


def sample_replay(job: ReplayJob) -> ReplayResult:
    """Decodes, samples and writes one replay; returns its result record.

    Raises :class:`JobFailed`, or :class:`EnvironmentFailure` when its batch
    cannot be written.
    """
    schema = _schema(job.resolution)
    try:
        data = storage.read_bytes(job.path, job.max_bytes)
        archive = ReplayArchive(data, path=job.path, max_bytes=job.max_bytes)
        if archive.replay_id != job.replay_row["replay_id"]:
            raise JobFailed("io_error", f"{job.path} changed since it was scanned")
        players = scan.player_contexts(job.replay_row, job.player_rows)
        source = _source(job.spec, schema)
        by_player = source.replay_samples(archive, players)
    except ReplayError as exc:
        raise JobFailed(exc.category, exc.message) from exc
    except SourceError as exc:
        raise JobFailed("source", f"{exc.category}: {exc.message}") from exc
    except OSError as exc:
        raise JobFailed("io_error", repr(exc)) from exc
    wanted = sorted(p.player_id for p in players)
    if sorted(by_player) != wanted:
        raise JobFailed("internal", f"source returned players {sorted(by_player)}, "
                        f"asked for {wanted}")
    samples = [sample for pid in wanted for sample in by_player[pid]]
    for sample in samples:
        sample["split"] = job.split
    stats = _label_counts(samples)
    for sample in samples[:1] + samples[-1:]:
        schema.validate(sample)
        if sample["replay_id"] != archive.replay_id:
            raise JobFailed("internal", "sample replay_id differs from the archive's")
    keys = {(s["player_id"], s["game_loop"]) for s in samples}
    if len(keys) != len(samples):
        raise JobFailed("internal", "the source returned a (player, loop) twice")
    path = RunLayout(job.output_dir).batch_path(archive.replay_id)
    try:
        n = writers.write_batch(path, schema, samples) if samples else 0
    except OSError as exc:          # the output's disk, not the replay
        raise EnvironmentFailure.of(exc, path) from exc
    return ReplayResult(
        replay_id=archive.replay_id, path=job.path, split=job.split,
        batch_path=path, num_samples=n,
        players={str(pid): len(by_player[pid]) for pid in wanted},
        **stats,
        has_tracker_events=bool(samples and samples[0]["has_tracker_events"]),
        # Why a replay whose archive holds tracker events was sampled without
        # them (a documented limitation, never damage); "" when it was not.
        tracker_events_degraded=str(
            getattr(source, "last_stats", {}).get("tracker_error", "")))


def _label_counts(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A replay's label counts for the manifest, over all its samples at once:
    targets by function, no-ops, mask entries, targets added to the mask,
    unknown targets, and unknown arguments (per argument type, and windows
    with any) among the known targets.

    Every argument's value is unknown in both coordinates or in neither, so a
    spatial argument's first coordinate tells."""
    n = len(samples)

    def column(name: str) -> list:
        return list(map(operator.itemgetter(name), samples))

    fids = np.fromiter(column("function_id"), np.int64, n)
    known = fids != layers.UNKNOWN
    any_unknown = np.zeros(n, bool)
    unknown_arguments = {}
    first = operator.itemgetter(0)
    for arg in layers.ARGUMENT_TYPES:
        name = f"arg_{arg.name}"
        values = column(name)
        if arg.spatial:
            values = map(first, values)
        unknown = (np.fromiter(values, np.int64, n) == layers.UNKNOWN) & known
        any_unknown |= unknown
        if unknown.any():
            unknown_arguments[name] = int(unknown.sum())
    ids, counts = np.unique(fids, return_counts=True)
    masks = column("available_actions")
    return {
        "functions": {str(k): int(v) for k, v in zip(ids.tolist(), counts.tolist())},
        "noop": int(np.count_nonzero(fids == layers.NO_OP)),
        "mask_sum": int(np.count_nonzero(np.concatenate(masks))) if n else 0,
        "target_unavailable": int(np.fromiter(column("target_was_unavailable"), np.int64,
                                              n).sum()),
        "target_unknown": int(np.count_nonzero(~known)),
        "unknown_argument_windows": int(np.count_nonzero(any_unknown)),
        "unknown_arguments": dict(sorted(unknown_arguments.items())),
    }


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one replay's work.

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


def write_shard_job(job: ShardJob) -> dict[str, Any]:
    """Writes and verifies one shard; its info dict (see
    :func:`pipeline.output.writers.write_shard`).  Raises
    :class:`EnvironmentFailure` when it cannot be written."""
    task = job.task
    try:
        return writers.write_shard(task, _schema(job.resolution),
                                   job.output_dir, job.formats, job.gzip_level)
    except OSError as exc:
        raise EnvironmentFailure.of(exc, RunLayout(job.output_dir).shard_path(
            job.formats[0], task.split, task.index, task.count)) from exc


def run_job(job: ReplayJob | ShardJob) -> ReplayResult | dict | JobFailure | JobAborted:
    """The replay's result (a shard job: the shard's info), why it failed, or,
    when the output cannot be written, a :class:`JobAborted` (see
    :class:`EnvironmentFailure`); never raises for a replay's failure.  Bugs
    become category ``internal`` with the traceback, so they are reported
    (a replay's in the errors table; a shard's stops the run), never hidden."""
    try:
        with gc_paused():
            if isinstance(job, ShardJob):
                return write_shard_job(job)
            return sample_replay(job)
    except JobFailed as exc:
        return JobFailure(exc.category, exc.message)
    except EnvironmentFailure as exc:
        return JobAborted(exc.line, exc.kind)
    except Exception:  # noqa: BLE001 -- a bug: reported as 'internal' with traceback
        return JobFailure("internal", traceback.format_exc(limit=8))


#: The child runs with the parent's ``sys.path`` (as ``multiprocessing``'s
#: "spawn" does), so it imports this package from where the parent did --
#: an uninstalled checkout included -- and nothing is reordered.
_PATH_VARIABLE = "SC2_SAMPLER_SYS_PATH"
_CHILD_MAIN = ("import json, os, sys; sys.path[:] = json.loads(os.environ['"
               + _PATH_VARIABLE + "']); from pipeline.job.worker import child_main; "
               "child_main(int(sys.argv[1]))")


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


def child_main(fd: int) -> None:
    """The sampling child: jobs from the socket ``fd`` until it closes."""
    _child_loop(multiprocessing.connection.Connection(fd))


def _child_loop(conn) -> None:
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(run_job(job))


_SPARE: list["TimedWorker"] = []
_SPARE_LOCK = threading.Lock()


def prestart(timeout_s: float, most: int = 1) -> None:
    """Starts a sampling child in this process ahead of need, for a later
    :meth:`TimedWorker.take`, unless ``most`` already wait.  A fresh child
    spends about a second importing before it can sample; started while the
    worker still scans replays, that second overlaps the scan instead of
    delaying the first replay.  Each scanning DoFn calls this once, so a
    process whose runner works in N threads gets N children (``most``: the
    local worker count, so that runs one after another in one process do
    not pile them up).  Nothing waits for it; a child nobody takes exits
    with the process (its socket closes) or at :func:`close_spares`."""
    if timeout_s <= 0:
        return
    with _SPARE_LOCK:
        if len(_SPARE) < max(1, most):
            worker = TimedWorker(timeout_s)
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
    """Runs :func:`run_job` in a persistent child process with a time limit.

    The child is a plain subprocess, not a ``multiprocessing.Process``, so a
    daemonic worker may start it too (Dask's nanny starts its workers as
    daemons, and ``multiprocessing`` refuses children to a daemon).  It cannot
    outlive its worker for long: it exits when its socket to the worker
    closes (:func:`_child_loop` returns on ``EOFError``), which happens when
    the worker dies however it dies.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._proc = None
        self._conn = None
        self.restarts = 0

    @classmethod
    def take(cls, timeout_s: float) -> "TimedWorker":
        """A worker for a DoFn's bundle: an idle one from this process's pool
        -- one :func:`prestart` started (its child has been importing
        meanwhile) or one an earlier bundle gave back -- else a new one whose
        child starts with its first job."""
        with _SPARE_LOCK:
            spare = _SPARE.pop() if _SPARE else None
        if spare is None or not spare._alive():
            if spare is not None:
                spare.close()
            return cls(timeout_s)
        spare.timeout_s = timeout_s
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

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1

    def run(self, job: ReplayJob | ShardJob) -> ReplayResult | dict | JobFailure | JobAborted:
        if self.timeout_s <= 0:
            return run_job(job)
        if not self._alive():
            self._start()
        self._conn.send(job)
        # The first job of a fresh child also pays its imports; the limit
        # counts from the send, so keep it well above import time.
        if not self._conn.poll(self.timeout_s):
            self._kill()
            what = "writing the shard" if isinstance(job, ShardJob) else "decoding and sampling"
            return JobFailure("timeout", f"{what} took over "
                                         f"{self.timeout_s:g} s; child process killed")
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.poll() if self._proc is not None else None
            self._kill()
            return JobFailure("crashed", f"sampling process died (exit code {code}): "
                                         f"{exc!r}")

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
