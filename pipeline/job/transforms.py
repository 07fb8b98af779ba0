"""The pipeline's steps as composite Beam ``PTransform``s.

``replays -> MatchReplays -> ScanReplays -> DedupReplays -> FilterReplays ->
SampleReplays -> WriteShards -> WriteOutputs``: each is a composite with a
unique label, so the job graph (local or Dataflow) reads like the product.

Guarantees built here:

* every input path ends in exactly one place: an index row (sampled, filtered
  with a reason, or a duplicate of another path) and/or an error record;
* a replay id is sampled once, whatever the number of paths holding it
  (deduplication by content hash before sampling);
* a replay contributes all of its samples or none (the sampling step writes
  one batch file per replay only after the whole replay succeeded; see
  :mod:`pipeline.job.worker` and :mod:`pipeline.output.writers`);
* the split is a function of the replay id (:mod:`pipeline.index.splits`);
* no replay stops the run: everything that reads replay content -- the
  scan included -- runs in a child process with a time and a memory limit
  (:mod:`pipeline.replay.bounded_process`), and whatever a replay's content makes it
  raise comes back as that replay's error record (``timeout``, ``resource``,
  ``crashed``, a decoding category, or ``internal`` with the traceback for
  a bug);
* a failure to write the output (``OSError``: no space, I/O, permission) is
  never a replay's error: it raises :class:`~pipeline.job.worker.EnvironmentFailure`
  and stops the run before the manifest is written.

Beam ``Metrics`` counters (namespace ``sc2``): ``replays_<status>``,
``errors_<stage>_<category>`` (one for every failure kind, ``resource`` and
``timeout`` of the scan and the sampling included), ``filtered_<reason>``,
``samples_<split>``, ``shards_<split>``, ``environment_<errno name>`` (e.g.
``environment_enospc``).

Progress lines print file names through :func:`pipeline.text.terminal_safe`:
a name holding an escape sequence or a newline cannot forge a line.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.index import filters, scan
from pipeline.index import splits as splits_lib
from pipeline.output import manifest as manifest_lib
from pipeline.output import writers
from pipeline.replay import limits as limits_lib
from pipeline.replay import storage
from pipeline.job.balance import BalancedShuffle
from pipeline.job.run_progress import RUN
from pipeline.job.worker import EnvironmentFailure, JobAborted, ReplayJob, ShardJob
from pipeline.replay.bounded_process import JobFailure, TimedWorker, prestart
from pipeline.text import storable, terminal_safe
from pipeline.sources.registry import SourceSpec
from schemas.run_output import RunLayout
from schemas.sample import SampleSchema

NAMESPACE = "sc2"
progress_log = logging.getLogger("sc2.progress")     # the same logger as run_progress's


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is
    emitted, not the stream of the moment it was made (a second run in one
    process -- tests, notebooks -- must not write into a closed stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def progress_to_stderr() -> None:
    """Progress lines go straight to the worker's stderr (the local terminal on
    the DirectRunner, the worker log on Dataflow), not through Beam's log
    forwarding, which drops INFO records."""
    if not progress_log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s progress %(message)s"))
        progress_log.addHandler(handler)
        progress_log.setLevel(logging.INFO)
        progress_log.propagate = False


def _count(name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, name).inc(n)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything the steps need; plain data, pickled to the workers.  Its
    defaults are ``beam_runner.py``'s."""
    output_dir: str
    spec: SourceSpec
    source_name: str
    resolution: int = 64
    step_mul: int = 8
    fog: bool = True
    formats: tuple[str, ...] = writers.FORMATS
    fractions: tuple[tuple[str, float], ...] = tuple(splits_lib.DEFAULT_FRACTIONS.items())
    filter_config: Any = None          # pipeline.index.filters.FilterConfig
    # The limits (pipeline.replay.limits, where their defaults are defined):
    max_bytes: int | None = limits_lib.DEFAULT_MAX_BYTES
    max_member_bytes: int = limits_lib.DEFAULT_MAX_MEMBER_BYTES
    max_inflated_bytes: int = limits_lib.DEFAULT_MAX_INFLATED_BYTES
    memory_limit_mb: int = limits_lib.DEFAULT_MEMORY_LIMIT_MB
    scan_timeout_s: float = limits_lib.DEFAULT_SCAN_TIMEOUT_S
    decode_timeout_s: float = limits_lib.DEFAULT_DECODE_TIMEOUT_S
    max_game_loops: int | None = 22 * 60 * 120      # two hours at 'faster'
    max_samples_per_shard: int = 2000
    tfrecord_gzip_level: int = writers.TFRECORD_GZIP_LEVEL
    scan_only: bool = False
    #: workers (threads or processes) of a local runner that deals a step's input
    #: once, in fixed shares (see :mod:`pipeline.job.balance`); 0 = a runner
    #: that balances by itself (Dataflow, Dask): a plain Reshuffle
    local_workers: int = 0

    @property
    def schema(self) -> SampleSchema:
        return SampleSchema(self.resolution, self.resolution)

    @property
    def limits(self) -> limits_lib.Limits:
        return limits_lib.Limits(
            max_bytes=self.max_bytes, max_member_bytes=self.max_member_bytes,
            max_inflated_bytes=self.max_inflated_bytes, memory_limit_mb=self.memory_limit_mb,
            scan_timeout_s=self.scan_timeout_s, decode_timeout_s=self.decode_timeout_s)


def _abort(failure: EnvironmentFailure) -> EnvironmentFailure:
    """Counts an environment failure (``environment_<errno name>``); the
    caller raises it: it stops the run."""
    _count(f"environment_{failure.kind}")
    return failure


def _error(path: str, replay_id: str, stage: str, category: str, message: str) -> dict:
    _count(f"errors_{stage}_{category}")
    _count("replays_error")
    return scan.error_row(path, replay_id, stage, category, message)


# --------------------------------------------------------------- matching
def _expand(pattern: str) -> Iterable[str | bytes]:
    """The replay paths of one pattern.  A local file name that is not UTF-8
    (Python holds its bytes as surrogate escapes) cannot travel as text --
    Beam's coders encode strings as UTF-8 and would stop the run -- so it
    travels as its bytes, and the scan makes it an error record."""
    for path in storage.expand_inputs([pattern]):
        yield path if storable(path) == path else os.fsencode(path)


class MatchReplays(beam.PTransform):
    """Patterns (files, directories, globs, gs://...) to distinct replay paths
    (``bytes`` for a file name that is not UTF-8: see :func:`_expand`)."""

    def __init__(self, patterns: Iterable[str]):
        super().__init__()
        self.patterns = sorted(set(patterns))

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(self.patterns)
                | "Expand" >> beam.FlatMap(_expand)
                | "DistinctPaths" >> beam.Distinct())


# --------------------------------------------------------------- scanning
class _ChildDoFn(beam.DoFn):
    """A DoFn whose work runs in a child process (:class:`TimedWorker`),
    borrowed from the process's pool for each bundle and returned after it:
    the shard step reuses the children the sampling step used."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._worker = None

    def start_bundle(self):
        self._worker = TimedWorker.take(self.config.decode_timeout_s,
                                        self.config.memory_limit_mb)

    def finish_bundle(self):
        self._worker, worker = None, self._worker
        worker.give_back()

    def teardown(self):
        if self._worker is not None:
            self._worker.close()


class _ScanFn(_ChildDoFn):
    """Reads and scans each file in the child process, under the scan's time
    limit and the memory limit: the launcher and the Beam worker never hold
    a replay's content."""

    def setup(self):
        progress_to_stderr()
        # The child starts importing now, while the runner is still busy.
        prestart(self.config.scan_timeout_s, self.config.local_workers,
                 self.config.memory_limit_mb)

    def process(self, path: str | bytes):
        yield from self._scan(path)
        RUN.scanned()

    def _scan(self, path: str | bytes):
        _count("inputs")
        if isinstance(path, bytes):          # see _expand
            yield beam.pvalue.TaggedOutput("errors", _error(
                storable(os.fsdecode(path)), "", "read", "io_error",
                "the file name is not UTF-8 (the pipeline carries names as UTF-8 text); "
                "rename the file"))
            return
        cfg = self.config
        job = scan.ScanJob(path, cfg.filter_config, cfg.max_bytes, cfg.limits.inflate,
                           cfg.max_game_loops)
        outcome = self._worker.run(job, timeout_s=cfg.scan_timeout_s)
        if isinstance(outcome, JobFailure):     # timeout, resource, crashed, internal
            yield beam.pvalue.TaggedOutput(
                "errors", _error(path, "", "scan", outcome.category, outcome.message))
            return
        if outcome.error is not None:
            e = outcome.error
            yield beam.pvalue.TaggedOutput(
                "errors", _error(path, e["replay_id"], e["stage"], e["category"],
                                 e["message"]))
            return
        replay_row = dict(outcome.replay, path=path)
        yield replay_row["replay_id"], {"replay": replay_row, "players": list(outcome.players)}


class ScanReplays(beam.PTransform):
    """Paths to ``(replay_id, scan record)``, plus an ``errors`` output."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, paths):
        return (paths
                | "Reshuffle" >> beam.Reshuffle()
                | "ReadAndScan" >> beam.ParDo(
_ScanFn(self.config)).with_outputs("errors", main="scanned"))


# ------------------------------------------------------------ dedup + filter
def _dedup(item):
    replay_id, records = item
    records = sorted(records, key=lambda r: r["replay"]["path"])
    canonical = records[0]
    for dup in records[1:]:
        _count("replays_duplicate")
        row = dict(canonical["replay"], path=dup["replay"]["path"], status="duplicate")
        yield beam.pvalue.TaggedOutput("duplicates", {
            "replay": row, "canonical_path": canonical["replay"]["path"]})
    yield canonical


class DedupReplays(beam.PTransform):
    """One record per replay id (the lexicographically first path); the other
    paths come out as ``duplicates`` index rows."""

    def expand(self, scanned):
        return (scanned
                | "GroupById" >> beam.GroupByKey()
                | "KeepFirstPath" >> beam.FlatMap(_dedup).with_outputs(
                    "duplicates", main="unique"))


class _FilterFn(beam.DoFn):
    def __init__(self, config: RunConfig):
        self.config = config

    def process(self, record):
        reason = filters.filter_reason(record["replay"], record["players"],
                                       self.config.filter_config)
        split = splits_lib.assign_split(record["replay"]["replay_id"],
                                        dict(self.config.fractions))
        row = dict(record["replay"], status=reason or "ok")
        out = {"replay": row, "players": record["players"], "split": split}
        if reason:
            _count(f"filtered_{reason}")
            _count("replays_filtered")
            yield beam.pvalue.TaggedOutput("filtered", out)
        else:
            _count("replays_kept")
            RUN.kept(expected_samples(record, self.config.step_mul))
            yield out


class FilterReplays(beam.PTransform):
    """Applies the filters and assigns the split; main output = kept replays,
    ``filtered`` = rejected ones (their index rows carry the reason)."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, unique):
        return unique | "ApplyFilters" >> beam.ParDo(_FilterFn(self.config)).with_outputs(
            "filtered", main="kept")


# --------------------------------------------------------------- sampling
def expected_samples(record, step_mul: int) -> int:
    """About how many samples a kept replay makes: one per ``step_mul`` game
    loops per player (the progress line's total, marked as an estimate)."""
    return record["replay"]["game_loops"] // max(1, step_mul) * max(1, len(record["players"]))


def _replay_cost(record) -> float:
    """A kept replay's estimated sampling cost: samples to make, about
    game loops x sampled players (decode and featurize grow with both)."""
    return record["replay"]["game_loops"] * max(1, len(record["players"]))


def _replay_key(record) -> str:
    return record["replay"]["replay_id"]


class _SampleFn(_ChildDoFn):
    def setup(self):
        progress_to_stderr()

    def process(self, record):
        cfg = self.config
        row = record["replay"]
        job = ReplayJob(path=row["path"], replay_row=row, player_rows=record["players"],
                        split=record["split"], output_dir=cfg.output_dir, spec=cfg.spec,
                        resolution=cfg.resolution, max_bytes=cfg.max_bytes,
                        inflate=cfg.limits.inflate)
        outcome = self._worker.run(job)
        if isinstance(outcome, JobAborted):     # the output's disk failed: stop the run
            raise _abort(outcome.failure())
        if isinstance(outcome, JobFailure):
            yield beam.pvalue.TaggedOutput(
                "errors", _error(row["path"], row["replay_id"], "sample", outcome.category,
                                 outcome.message))
            RUN.sampled(0, terminal_safe(os.path.basename(row["path"])), failed=True)
            return
        _count("replays_sampled")
        _count(f"samples_{outcome.split}", outcome.num_samples)
        RUN.sampled(outcome.num_samples, terminal_safe(os.path.basename(row["path"])))
        yield outcome


class SampleReplays(beam.PTransform):
    """Kept replays to per-replay :class:`~pipeline.output.manifest.ReplayResult`\\s
    (batch files written), plus ``errors``."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, kept):
        return (kept
                | "Spread" >> BalancedShuffle(self.config.local_workers, _replay_cost,
                                              _replay_key)
                | "DecodeAndSample" >> beam.ParDo(_SampleFn(self.config)).with_outputs(
                    "errors", main="results"))


# ---------------------------------------------------------------- writing
def _shard_cost(task: writers.ShardTask) -> float:
    """A shard's estimated writing cost, in samples: its samples, plus each
    file's fixed cost in the same unit (measured in bench_replay_stages.py:
    ~10 ms a shard and ~1.2 ms a batch opened, at ~65 us a sample)."""
    return task.num_samples + 150 + 20 * len(task.segments)


def _shard_key(task: writers.ShardTask) -> tuple[str, int]:
    return task.split, task.index


class ShardWriteError(RuntimeError):
    """A shard could not be written or did not verify: never a replay's
    error; it stops the run."""


class _WriteShardFn(_ChildDoFn):
    """Writes each shard in a child process (the sampling step's, taken from
    the process's pool), so that shard writing, like sampling, uses a core
    per worker even when the runner's workers are threads."""

    def process(self, task: writers.ShardTask):
        cfg = self.config
        outcome = self._worker.run(ShardJob(task, cfg.resolution, cfg.output_dir,
                                            tuple(cfg.formats), cfg.tfrecord_gzip_level))
        if isinstance(outcome, JobAborted):     # the output's disk failed: stop the run
            raise _abort(outcome.failure())
        if isinstance(outcome, JobFailure):
            _count("errors_shard_" + outcome.category)
            raise ShardWriteError(f"{task.split} shard {task.index} of {task.count}: "
                                  f"{outcome.category}: {outcome.message}")
        _count(f"shards_{task.split}")
        yield outcome


class WriteShards(beam.PTransform):
    """Per-replay results to verified shards (one info dict per shard)."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config

    def expand(self, results):
        max_per_shard = self.config.max_samples_per_shard
        return (results
                | "CollectBatches" >> beam.combiners.ToList()
                | "PlanShards" >> beam.FlatMap(
                    lambda batches: writers.plan_shards(batches, max_per_shard))
                | "Spread" >> BalancedShuffle(self.config.local_workers, _shard_cost,
                                              _shard_key)
                | "WriteShard" >> beam.ParDo(_WriteShardFn(self.config)))


def _write_outputs(_, config: RunConfig, index_records, errors, duplicates, results,
                   shards, started: float):
    degraded = {r.replay_id for r in results if r.tracker_events_degraded}
    replay_rows = [r["replay"] for r in index_records] + [d["replay"] for d in duplicates]
    # The index agrees with the samples: a replay sampled without its tracker
    # events (no bundled protocol decodes them) is indexed without them.
    replay_rows = [dict(r, has_tracker_events=False) if r["replay_id"] in degraded else r
                   for r in replay_rows]
    player_rows = [p for r in index_records for p in r["players"]]
    manifest = manifest_lib.build_manifest(
        config, index_records=index_records, errors=errors, duplicates=duplicates,
        results=results, shards=shards, started=started)
    try:
        scan.write_index(replay_rows, player_rows, RunLayout(config.output_dir).index_dir)
        manifest_lib.write_errors(config.output_dir, errors)
        manifest.save(config.output_dir)
    except OSError as exc:
        raise _abort(EnvironmentFailure.of(exc, config.output_dir)) from exc
    yield manifest.counts


class WriteOutputs(beam.PTransform):
    """Index, error records and manifest (one final step)."""

    def __init__(self, config: RunConfig, started: float):
        super().__init__()
        self.config = config
        self.started = started

    def expand(self, inputs):
        index_records, errors, duplicates, results, shards = inputs
        side = beam.pvalue.AsList
        return (index_records.pipeline
                | "Once" >> beam.Create([None])
                | "WriteIndexErrorsManifest" >> beam.FlatMap(
                    _write_outputs, self.config, side(index_records), side(errors),
                    side(duplicates), side(results), side(shards), self.started))


def build_pipeline(p: beam.Pipeline, patterns: Iterable[str], config: RunConfig,
                   started: float | None = None):
    """Adds the whole job to ``p``; returns the final step's output."""
    started = time.time() if started is None else started
    paths = p | "MatchReplays" >> MatchReplays(patterns)
    scanned = paths | "ScanReplays" >> ScanReplays(config)
    deduped = scanned.scanned | "DedupReplays" >> DedupReplays()
    filtered = deduped.unique | "FilterReplays" >> FilterReplays(config)
    index_records = ((filtered.kept, filtered.filtered)
                     | "AllIndexRecords" >> beam.Flatten())
    if config.scan_only:
        empty = p | "NoSamples" >> beam.Create([])
        no_shards = p | "NoShards" >> beam.Create([])
        errors = scanned.errors
        results, shards = empty, no_shards
    else:
        sampled = filtered.kept | "SampleReplays" >> SampleReplays(config)
        errors = ((scanned.errors, sampled.errors) | "AllErrors" >> beam.Flatten())
        results = sampled.results
        shards = results | "WriteShards" >> WriteShards(config)
    return ((index_records, errors, deduped.duplicates, results, shards)
            | "WriteOutputs" >> WriteOutputs(config, started))
