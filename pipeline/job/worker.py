"""Decoding and sampling one replay, and writing a shard: the jobs of the
sampling and shard steps, as a bounded child process runs them.

Like the metadata scan (:class:`pipeline.index.scan.ScanJob`), these jobs run
in a persistent child process with a time and a memory limit
(:class:`pipeline.replay.bounded_process.TimedWorker`),
never in the launcher or a Beam worker thread: a hostile replay can make a
decoder spin or grow without end, and only a process can be killed.  Each
job's ``run()`` returns its result, a :class:`JobFailure` with a category,
or a :class:`JobAborted` when the output cannot be written; the child's
boundary (:func:`run_job`) adds ``resource`` for a ``MemoryError`` and
``internal`` for a bug.

The child writes the replay's batch file itself and returns only a small
:class:`~pipeline.output.manifest.ReplayResult`, so samples never cross the
pipe.  The shard step hands its shard jobs to the same children (they
return the shard's small info dict): the heavy work of a run is then all in
the children, so the local runner's workers can be threads of one process
(no worker processes to start, no gRPC between them) and still use every
core.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pipeline.index import scan
from pipeline.output import writers
from pipeline.output.manifest import ReplayResult
from pipeline.replay import storage
from pipeline.replay.archive import ReplayArchive, ReplayError
# The bounded child process these jobs run in (its one home: import it from there)
from pipeline.replay.bounded_process import JobFailure
from pipeline.replay.limits import InflateLimits
from pipeline.sources.interface import ObservationSource, SourceError
from pipeline.sources.registry import SourceSpec
from schemas import layers
from schemas.run_output import RunLayout
from schemas.sample import SampleSchema


@dataclasses.dataclass(frozen=True)
class ReplayJob:
    """One kept replay to sample: what the child process needs, pickled."""
    DOING: ClassVar[str] = "decoding and sampling"
    path: str
    replay_row: Mapping[str, Any]            # the index's replay row
    player_rows: Sequence[Mapping[str, Any]]  # the index's player rows
    split: str
    output_dir: str
    spec: SourceSpec
    resolution: int
    max_bytes: int | None
    inflate: InflateLimits = InflateLimits()

    def run(self) -> "ReplayResult | JobFailure | JobAborted":
        """The replay's result, why it failed, or :class:`JobAborted`."""
        try:
            return sample_replay(self)
        except JobFailed as exc:
            return JobFailure(exc.category, exc.message)
        except EnvironmentFailure as exc:
            return JobAborted(exc.line, exc.kind)


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """One planned shard to write, in every format, and verify."""
    DOING: ClassVar[str] = "writing the shard"
    task: writers.ShardTask
    resolution: int
    output_dir: str
    formats: tuple[str, ...]
    gzip_level: int

    def run(self) -> "dict[str, Any] | JobAborted":
        """The shard's info dict, or :class:`JobAborted`."""
        try:
            return write_shard_job(self)
        except EnvironmentFailure as exc:
            return JobAborted(exc.line, exc.kind)


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
        archive = ReplayArchive(data, path=job.path, max_bytes=job.max_bytes,
                                inflate=job.inflate)
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
