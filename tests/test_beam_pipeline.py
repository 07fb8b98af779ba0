"""The Beam pipeline end to end (shared run) and its composite transforms."""
from __future__ import annotations

import collections
import os
import pathlib
import time

import pyarrow.parquet as pq
import pytest

from conftest import (FILTERED_REPLAY, PIPELINE_REPLAYS, REPLAYS, TOO_LONG_REPLAY,
                      expected_samples, pipeline_argv, require_shared)
from pipeline.index import splits as splits_lib
from pipeline.output import writers
from pipeline.replay.archive import replay_id
from schemas.sample import SampleSchema, sample_key

SCHEMA = SampleSchema()


def _ids():
    return {name: replay_id((REPLAYS / rel).read_bytes())
            for name, (rel, _, _) in PIPELINE_REPLAYS.items()}


def _parquet_keys(output, split):
    keys = []
    for path in sorted((output / "parquet" / split).glob("*.parquet")):
        t = pq.read_table(path, columns=["replay_id", "player_id", "game_loop", "split"])
        assert set(t.column("split").to_pylist()) == {split}
        keys += list(zip(t.column("replay_id").to_pylist(), t.column("player_id").to_pylist(),
                         t.column("game_loop").to_pylist()))
    return keys


def test_every_input_is_accounted_for(pipeline_run):
    index = pq.read_table(pipeline_run.output / "index" / "replays.parquet").to_pylist()
    errors = pq.read_table(pipeline_run.output / "errors" / "errors.parquet").to_pylist()
    indexed = collections.Counter(r["path"] for r in index)
    errored = collections.Counter(e["path"] for e in errors)
    # every input file is in the index (sampled, filtered, duplicate) or an error
    assert set(indexed) | set(errored) == set(pipeline_run.inputs)
    assert max(indexed.values()) == 1 and max(errored.values()) == 1
    status = {r["path"]: r["status"] for r in index}
    # of the two names of one game, the first path is sampled, the other is a duplicate
    original = str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])
    first, second = sorted([original, pipeline_run.duplicate])
    assert (status[first], status[second]) == ("ok", "duplicate")
    assert status[str(REPLAYS / FILTERED_REPLAY[0])] == FILTERED_REPLAY[1]
    for rel, _, _ in list(PIPELINE_REPLAYS.values())[1:]:
        assert status[str(REPLAYS / rel)] == "ok"
    counts = pipeline_run.manifest.counts
    assert counts.input_files == len(pipeline_run.inputs) == 17
    assert counts.replays_by_status == {"sampled": 3, "filtered": 1, "duplicate": 1,
                                           "error": len(pipeline_run.bad) + 1}
    assert counts.filter_reasons == {"not_1v1": 1}
    assert [(d["path"], d["canonical_path"]) for d in pipeline_run.manifest.duplicates] \
        == [(second, first)]


def test_bad_inputs_become_error_records(pipeline_run):
    errors = {e["path"]: e for e in
              pq.read_table(pipeline_run.output / "errors" / "errors.parquet").to_pylist()}
    for path, category in pipeline_run.bad.items():
        assert errors[path]["category"] == category, (path, errors[path])
        assert errors[path]["message"]
    too_long = errors[str(REPLAYS / TOO_LONG_REPLAY)]
    assert (too_long["stage"], too_long["category"]) == ("scan", "too_long")
    # corrupt event streams pass the metadata scan and fail when sampled
    flipped = os.path.join(os.path.dirname(next(iter(pipeline_run.bad))),
                           "flipped_replay.game.events.SC2Replay")
    assert errors[flipped]["stage"] == "sample"
    # a bit flip in the tracker events is damage (the part fails its bz2
    # check): an error record, never a replay silently sampled without them
    flipped = os.path.join(os.path.dirname(next(iter(pipeline_run.bad))),
                           "flipped_replay.tracker.events.SC2Replay")
    assert (errors[flipped]["stage"], errors[flipped]["category"]) == ("sample", "corrupt")
    assert pipeline_run.manifest.counts.degraded_replays == {}


def test_shards_agree_with_manifest_and_expected_counts(pipeline_run):
    ids = _ids()
    counts = pipeline_run.manifest.counts
    for name, (rel, loops, split) in PIPELINE_REPLAYS.items():
        expected = expected_samples(loops)
        assert splits_lib.assign_split(ids[name], splits_lib.parse_splits(
            "train=0.15,validation=0.15,test=0.7")) == split
        assert counts.samples_counted_by_split[split] == expected
        assert counts.samples_by_split_and_format[split] == {
            "parquet": expected, "tfrecord": expected}
        keys = _parquet_keys(pipeline_run.output, split)
        tf_keys = []
        for path in sorted((pipeline_run.output / "tfrecord" / split).glob("*.tfrecord.gz")):
            for record in writers.read_tfrecord_file(str(path)):
                s = SCHEMA.from_example(record)
                tf_keys.append((s["replay_id"], s["player_id"], s["game_loop"]))
        assert keys == tf_keys
        assert len(keys) == expected == len(set(keys))
        assert {k[0] for k in keys} == {ids[name]}
        assert keys == sorted(keys)                  # (replay, player, loop) order
        shards = sorted(p.name for p in (pipeline_run.output / "parquet" / split).iterdir())
        n = -(-expected // 400)
        assert shards == [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert not (pipeline_run.output / "_tmp").exists()


def test_manifest_provenance_and_labels(pipeline_run):
    m = pipeline_run.manifest
    assert m.source.name == "events"
    assert m.source.fog is True and m.source.step_mul == 8
    assert m.source.resolution == 64
    assert "screen_height_map" in m.source.unavailable_layers
    assert m.filters["min_mmr"] == 0
    assert m.schema.repr == repr(SCHEMA)
    assert m.format_version == 2 and m.provenance["command"][0] == "beam_runner.py"
    assert m.examples["filtered"] == {"not_1v1": str(REPLAYS / FILTERED_REPLAY[0])}
    labels = m.labels
    assert labels["samples"] == m.counts.samples_total == sum(
        expected_samples(loops) for _, loops, _ in PIPELINE_REPLAYS.values())
    assert 0 < labels["noop_fraction"] < 1
    assert 1 < labels["mean_mask_size"] < 573
    top = labels["top_target_functions"]
    assert top[0]["count"] >= top[-1]["count"]
    assert any(t["name"] == "no_op" and t["function_id"] == 0 for t in top)
    assert m.timing["wall_s"] > 0 and m.timing["samples_per_s"] > 0
    # Beam counters agree with the manifest
    metrics = m.metrics
    assert metrics["replays_sampled"] == 3 and metrics["replays_duplicate"] == 1
    assert metrics["filtered_not_1v1"] == 1
    for split, n in m.counts.samples_counted_by_split.items():
        assert metrics[f"samples_{split}"] == n
    assert metrics["replays_error"] == m.counts.replays_by_status["error"]


def test_scan_only_writes_index_and_errors(pipeline_inputs, tmp_path):
    import beam_runner
    real, duplicate, bad, bad_dir = pipeline_inputs
    out = tmp_path / "scan"
    manifest = beam_runner.run(pipeline_argv(
        [real[0], bad_dir], out, ["--scan_only", "--direct_num_workers=1",
                                  "--direct_running_mode=in_memory"]))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "errors", "index",
                                                     "manifest.json"]
    replays = pq.read_table(out / "index" / "replays.parquet").to_pylist()
    errors = pq.read_table(out / "errors" / "errors.parquet").to_pylist()
    # corrupt event streams are not read by the scan: they are index rows here
    assert len(replays) + len(errors) == 1 + len(bad)
    assert manifest.counts.samples_total == 0


def test_rerun_is_byte_identical(pipeline_inputs, tmp_path):
    """Three runs -- 1 in-process worker, 2 worker processes, 2 worker threads
    (the default), inputs in opposite orders -- on one game under two names
    write identical shards."""
    import beam_runner
    real, duplicate, bad, bad_dir = pipeline_inputs
    runs = {"one": ([real[0], duplicate], ["--direct_num_workers=1",
                                           "--direct_running_mode=in_memory"]),
            "processes": ([duplicate, real[0]], ["--direct_num_workers=2",
                                                 "--direct_running_mode=multi_processing"]),
            "threads": ([duplicate, real[0]], ["--direct_num_workers=2"])}
    for name, (inputs, extra) in runs.items():
        manifest = beam_runner.run(pipeline_argv(inputs, tmp_path / name, extra))
        assert manifest.counts.replays_by_status["duplicate"] == 1
    outs = [tmp_path / name for name in runs]
    for fmt in ("parquet", "tfrecord"):
        a = sorted(p.relative_to(outs[0]) for p in (outs[0] / fmt).rglob("*") if p.is_file())
        assert len(a) == 3      # 944 samples, 400 per shard
        for out in outs[1:]:
            assert sorted(p.relative_to(out) for p in (out / fmt).rglob("*")
                          if p.is_file()) == a
            for rel in a:
                assert (outs[0] / rel).read_bytes() == (out / rel).read_bytes(), (out, rel)


# ------------------------------------------------------ composite transforms
def _record(rid, path, status="ok"):
    return (rid, {"replay": {"replay_id": rid, "path": path, "status": status},
                  "players": []})


def test_match_replays_distinct_paths(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from pipeline.job.transforms import MatchReplays
    (tmp_path / "a").mkdir()
    for name in ("a/x.SC2Replay", "a/y.sc2replay", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"MPQ")
    x = str(tmp_path / "a" / "x.SC2Replay")
    with TestPipeline() as p:
        paths = p | MatchReplays([str(tmp_path / "a"), x, x])
        assert_that(paths, equal_to([x, str(tmp_path / "a" / "y.sc2replay")]))


def test_dedup_keeps_first_path_and_reports_duplicates():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from pipeline.job.transforms import DedupReplays
    with TestPipeline() as p:
        out = (p | beam.Create([_record("r1", "/b"), _record("r1", "/a"),
                                _record("r2", "/c"), _record("r1", "/c")])
               | DedupReplays())
        assert_that(out.unique | "UniquePaths" >> beam.Map(lambda r: r["replay"]["path"]),
                    equal_to(["/a", "/c"]), label="unique")
        assert_that(out.duplicates | "DupPaths" >> beam.Map(
            lambda d: (d["replay"]["path"], d["canonical_path"], d["replay"]["status"])),
            equal_to([("/b", "/a", "duplicate"), ("/c", "/a", "duplicate")]),
            label="duplicates")


@pytest.fixture
def doubles(monkeypatch):
    """The test doubles registered as sources ``zero`` and ``halfway`` (in this
    process only: a sampling child process does not see them)."""
    from pipeline.sources import registry
    from support.beam_doubles import HalfwayFailingSource, ZeroObservationSource
    sources = dict(registry.SOURCES,
                   zero=registry.SourceEntry(ZeroObservationSource, ()),
                   halfway=registry.SourceEntry(HalfwayFailingSource, ()))
    monkeypatch.setattr(registry, "SOURCES", sources)


def _sample_config(tmp_path, source, timeout):
    from pipeline.job.transforms import RunConfig
    from pipeline.index.filters import FilterConfig
    from pipeline.sources.registry import SourceSpec
    return RunConfig(output_dir=str(tmp_path), spec=SourceSpec(source),
                     source_name="events", filter_config=FilterConfig(min_mmr=0),
                     decode_timeout_s=timeout)


def _kept_record(name):
    from pipeline.index import scan
    from pipeline.replay import storage
    from pipeline.index.filters import FilterConfig
    from pipeline.replay.archive import ReplayArchive
    path = str(REPLAYS / PIPELINE_REPLAYS[name][0])
    archive = ReplayArchive(storage.read_bytes(path), path=path)
    row, players = scan.scan_replay(archive, FilterConfig(min_mmr=0))
    return {"replay": dict(row, path=path), "players": players, "split": "train"}


@pytest.mark.parametrize("source,timeout,category", [
    ("halfway", 0, "source"),       # in-process; fails after player 1
    ("events", 0.05, "timeout"),    # the child process is killed long before it is done
])
def test_failed_replay_writes_nothing(tmp_path, doubles, source, timeout, category):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from pipeline.job.transforms import SampleReplays
    require_shared()
    config = _sample_config(tmp_path, source, timeout)
    record = _kept_record("dream_spirit")
    with TestPipeline() as p:
        out = p | beam.Create([record]) | SampleReplays(config)
        assert_that(out.results, equal_to([]), label="no_results")
        assert_that(out.errors | beam.Map(lambda e: (e["stage"], e["category"])),
                    equal_to([("sample", category)]), label="errors")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_sample_replays_writes_one_sorted_batch(tmp_path, doubles):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from pipeline.job.transforms import SampleReplays
    require_shared()
    config = _sample_config(tmp_path, "zero", 0)
    record = _kept_record("dream_spirit")
    n = expected_samples(PIPELINE_REPLAYS["dream_spirit"][1])
    with TestPipeline() as p:
        out = p | beam.Create([record]) | SampleReplays(config)
        assert_that(out.results | beam.Map(lambda r: (r.num_samples, r.noop, r.players)),
                    equal_to([(n, n, {"1": n // 2, "2": n // 2})]))
    batches = list(tmp_path.rglob("*.arrow"))
    assert len(batches) == 1 and batches[0].parent.name == "batches"
    keys = [(s["player_id"], s["game_loop"]) for s in
            SCHEMA.from_arrow(writers.read_batch(str(batches[0])))]
    assert keys == sorted(keys) and len(keys) == n
    assert sample_key(record["replay"]["replay_id"], *keys[0]) == \
        f"{record['replay']['replay_id']}_1_0"


def test_undecodable_tracker_events_degrade_and_index_samples_manifest_agree(
        tmp_path, monkeypatch):
    """Only a documented limitation (no bundled protocol decodes the tracker
    events: ``unsupported_build``) degrades to "no tracker events"; then the
    samples, the index and the manifest say so, with the reason."""
    from pipeline.job import transforms, worker
    from pipeline.replay import bounded_process
    from pipeline.output.manifest import ReplayResult
    from pipeline.replay.archive import ReplayArchive, ReplayError
    require_shared()

    def undecodable(self):
        raise ReplayError("unsupported_build", "decoding replay.tracker.events: test")
    monkeypatch.setattr(ReplayArchive, "tracker_events", property(undecodable))
    config = _sample_config(tmp_path, "events", 0)
    record = _kept_record("dream_spirit")
    assert record["replay"]["has_tracker_events"]
    job = worker.ReplayJob(path=record["replay"]["path"], replay_row=record["replay"],
                           player_rows=record["players"], split="train",
                           output_dir=str(tmp_path), spec=config.spec, resolution=64,
                           max_bytes=None)
    result = bounded_process.run_job(job)
    assert isinstance(result, ReplayResult), result
    assert not result.has_tracker_events
    assert "test" in result.tracker_events_degraded
    samples = SCHEMA.from_arrow(writers.read_batch(result.batch_path))
    assert samples and all(s["has_tracker_events"] == 0 for s in samples)
    counts = next(transforms._write_outputs(None, config, [record], [], [], [result], [],
                                            0.0))
    assert counts.degraded_replays == {"no_tracker_events": 1}
    index = pq.read_table(tmp_path / "index" / "replays.parquet").to_pylist()
    assert [r["has_tracker_events"] for r in index] == [False]
    from schemas.run_output import Manifest
    [entry] = Manifest.load(str(tmp_path)).degraded
    assert entry["replay_id"] == record["replay"]["replay_id"] and "test" in entry["reason"]
    # damage is not a limitation: the same part failing its check is an error
    monkeypatch.setattr(ReplayArchive, "tracker_events", property(
        lambda self: (_ for _ in ()).throw(ReplayError("corrupt", "bz2 check"))))
    assert bounded_process.run_job(job) == bounded_process.JobFailure("corrupt", "bz2 check")


def test_gc_paused_restores_the_collector_even_when_a_replay_fails():
    import gc
    from pipeline.replay.bounded_process import gc_paused
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with gc_paused():
            assert not gc.isenabled()
            raise ValueError("a replay failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_sampling_child_gets_the_malloc_settings_unless_the_caller_set_them(monkeypatch):
    """The child starts with glibc's malloc settings of ``CHILD_MALLOC_ENV``
    (they cut its page faults ~10x); a value the caller set is kept."""
    from pipeline.replay.bounded_process import CHILD_MALLOC_ENV, TimedWorker
    monkeypatch.setenv("MALLOC_TOP_PAD_", "4096")
    # (Dask's workers set MALLOC_TRIM_THRESHOLD_ in os.environ, which a
    # Dask test earlier in the same process leaves behind)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    worker = TimedWorker(60)
    worker._start()
    try:
        # Popen returns once the child's exec has begun; on a loaded machine
        # /proc/PID/environ can still read empty until the kernel has laid out
        # the new image's environment, so wait for it.
        deadline = time.monotonic() + 30
        while not (raw := pathlib.Path(f"/proc/{worker.pid}/environ").read_bytes()):
            assert time.monotonic() < deadline, "the child's environment never appeared"
            time.sleep(0.01)
    finally:
        worker.close()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(64 << 20)
    assert env["MALLOC_TOP_PAD_"] == "4096"
    assert set(CHILD_MALLOC_ENV) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                     "MALLOC_TOP_PAD_"}


def test_reruns_write_byte_identical_error_records(pipeline_inputs, tmp_path):
    """Error messages hold no object address or process id: two runs over
    the damaged inputs (a flipped user-data header among them, whose
    s2protocol error names a decoder object) and the hostile replays write
    the same errors.parquet."""
    import beam_runner
    real, duplicate, bad, bad_dir = pipeline_inputs
    hostile = sorted(str(p) for p in (REPLAYS.parent / "hostile-replays").glob("*.SC2Replay"))
    outputs = []
    for name in ("first", "second"):
        out = tmp_path / name
        try:
            beam_runner.run(pipeline_argv([bad_dir, *hostile], out,
                                          ["--direct_num_workers=1"]))
        except beam_runner.RunFailed:      # nothing sampled: published as evidence
            pass
        outputs.append((out / "errors" / "errors.parquet").read_bytes())
    assert outputs[0] == outputs[1]
    messages = [e["message"] for e in
                pq.read_table(tmp_path / "first" / "errors" / "errors.parquet").to_pylist()]
    assert len(messages) >= len(bad) + len(hostile) - 1      # one hostile file samples
    assert not [m for m in messages if " at 0x" in m]
