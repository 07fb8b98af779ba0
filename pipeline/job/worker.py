"""Decodes and samples one replay in a child process, under a time limit.

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
pipe.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import multiprocessing
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
    formats: tuple[str, ...] = writers.FORMATS


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A replay that failed in the sampling step; ``category`` is one of
    :data:`pipeline.replay.archive.ERROR_CATEGORIES`."""
    category: str
    message: str


class JobFailed(Exception):
    """A replay failed in the sampling step; ``category`` names why."""

    def __init__(self, category: str, message: str):
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


_BUILT: dict[tuple, ObservationSource] = {}


def _source(spec: SourceSpec, schema: SampleSchema) -> ObservationSource:
    """The process's source for ``spec`` at ``schema``'s resolutions (built once)."""
    key = (spec, schema.screen_resolution, schema.minimap_resolution)
    if key not in _BUILT:
        _BUILT[key] = spec.build(schema)
    return _BUILT[key]


def sample_replay(job: ReplayJob) -> ReplayResult:
    """Decodes, samples and writes one replay; returns its result record.

    Raises :class:`JobFailed`.
    """
    schema = SampleSchema(job.resolution, job.resolution)
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
    samples = []
    functions: collections.Counter = collections.Counter()
    mask_sum = noop = unavailable = 0
    for pid in wanted:
        for sample in by_player[pid]:
            sample["split"] = job.split
            samples.append(sample)
            functions[int(sample["function_id"])] += 1
            mask_sum += int(np.count_nonzero(sample["available_actions"]))
            noop += int(sample["function_id"]) == layers.NO_OP
            unavailable += int(sample["target_was_unavailable"])
    for sample in samples[:1] + samples[-1:]:
        schema.validate(sample)
        if sample["replay_id"] != archive.replay_id:
            raise JobFailed("internal", "sample replay_id differs from the archive's")
    keys = {(s["player_id"], s["game_loop"]) for s in samples}
    if len(keys) != len(samples):
        raise JobFailed("internal", "the source returned a (player, loop) twice")
    path = writers.batch_path(job.output_dir, archive.replay_id)
    n = writers.write_batch(path, schema, samples, job.formats) if samples else 0
    return ReplayResult(
        replay_id=archive.replay_id, path=job.path, split=job.split,
        batch_path=path, num_samples=n,
        players={str(pid): len(by_player[pid]) for pid in wanted},
        noop=noop, mask_sum=mask_sum, target_unavailable=unavailable,
        functions={str(k): v for k, v in sorted(functions.items())})


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


def run_job(job: ReplayJob) -> ReplayResult | JobFailure:
    """The replay's result, or why it failed; never raises for a replay's
    failure.  Bugs become category ``internal`` with the traceback, so they
    are reported in the errors table, never hidden."""
    try:
        with gc_paused():
            return sample_replay(job)
    except JobFailed as exc:
        return JobFailure(exc.category, exc.message)
    except Exception:  # noqa: BLE001 -- a bug: reported as 'internal' with traceback
        return JobFailure("internal", traceback.format_exc(limit=8))


def _child_loop(conn) -> None:
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(run_job(job))


class TimedWorker:
    """Runs :func:`run_job` in a persistent child process with a time limit."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._proc = None
        self._conn = None
        self.restarts = 0

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_loop, args=(child,), daemon=True,
                                 name="replay-sampler")
        self._proc.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.restarts += 1

    def run(self, job: ReplayJob) -> ReplayResult | JobFailure:
        if self.timeout_s <= 0:
            return run_job(job)
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send(job)
        # The first job of a fresh child also pays its imports; the limit
        # counts from the send, so keep it well above import time.
        if not self._conn.poll(self.timeout_s):
            self._kill()
            return JobFailure("timeout", f"decoding and sampling took over "
                                         f"{self.timeout_s:g} s; child process killed")
        try:
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            code = self._proc.exitcode if self._proc is not None else None
            self._kill()
            return JobFailure("crashed", f"sampling process died (exit code {code}): "
                                         f"{exc!r}")

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc = self._conn = None
