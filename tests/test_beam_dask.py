"""The pipeline on a real ``dask.distributed`` cluster (Beam's Dask runner).

A ``LocalCluster`` with two worker processes (daemonic, as Dask starts them)
runs the whole job on the five python-sc2 replays, a duplicate and the bad
inputs; its shards, index and errors must equal the DirectRunner's byte for
byte.  Skipped where the ``dask`` extra is not installed.
"""
from __future__ import annotations

import glob
import json
import multiprocessing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPLAYS, pipeline_argv, require_shared

distributed = pytest.importorskip("distributed", reason="pip install '.[dask]'")

#: every python-sc2 replay is sampled (the shared pipeline run's 5000-loop limit
#: makes one of them 'too_long')
MAX_GAME_LOOPS = ["--max_game_loops", "6000"]
COMPARED = ("parquet", "tfrecord", "index", "errors")


def _files(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes()
            for top in COMPARED for p in sorted((output / top).rglob("*")) if p.is_file()}


def _is_daemon() -> bool:
    return multiprocessing.current_process().daemon


def _timed_out_in_worker() -> tuple[str, str]:
    """A TimedWorker in this (Dask worker) process: its child is started and
    killed at the limit (far shorter than the child's own start-up)."""
    from pipeline.job.worker import ReplayJob
    from pipeline.replay.bounded_process import TimedWorker
    from pipeline.sources.registry import SourceSpec
    worker = TimedWorker(0.01)
    job = ReplayJob(path="never read", replay_row={}, player_rows=(), split="train",
                    output_dir="never written", spec=SourceSpec("events"), resolution=64,
                    max_bytes=None)
    try:
        outcome = worker.run(job)
    finally:
        worker.close()
    return type(outcome).__name__, outcome.category


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


def test_dask_workers_are_daemonic_and_time_limit_holds(cluster):
    with distributed.Client(cluster.scheduler_address) as client:
        assert set(client.run(_is_daemon).values()) == {True}
        assert client.submit(_timed_out_in_worker, pure=False).result() \
            == ("JobFailure", "timeout")


def test_dask_run_equals_direct_run(cluster, pipeline_inputs, tmp_path):
    require_shared()
    import beam_runner
    _, duplicate, bad, bad_dir = pipeline_inputs
    real = sorted(glob.glob(str(REPLAYS / "python-sc2" / "*.SC2Replay")))
    assert len(real) == 5
    patterns = real + [duplicate, bad_dir]
    direct = beam_runner.run(pipeline_argv(
        patterns, tmp_path / "direct", MAX_GAME_LOOPS
        + ["--direct_num_workers=1", "--direct_running_mode=in_memory"]))
    dask = beam_runner.run(pipeline_argv(
        patterns, tmp_path / "dask", MAX_GAME_LOOPS
        + ["--runner", "DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]))

    assert direct.counts.replays_by_status == {
        "sampled": 5, "duplicate": 1, "error": len(bad)}
    direct_files, dask_files = _files(tmp_path / "direct"), _files(tmp_path / "dask")
    assert sorted(dask_files) == sorted(direct_files)
    assert any(name.startswith("tfrecord/") for name in direct_files)
    for name, data in direct_files.items():
        assert dask_files[name] == data, name
    # the manifest is built inside the job: equal but for when and how fast
    for key in ("counts", "labels", "duplicates", "source", "filters", "schema"):
        assert json.dumps(dask.to_json()[key], sort_keys=True) == json.dumps(
            direct.to_json()[key], sort_keys=True), key
    assert dask.metrics == {}               # the Dask runner collects no Beam metrics
    assert direct.metrics["replays_sampled"] == 5
    errors = {e["path"]: e["category"] for e in
              pq.read_table(tmp_path / "dask" / "errors" / "errors.parquet").to_pylist()}
    assert errors == bad
    assert not (tmp_path / "dask" / "_tmp").exists()


def test_dask_runner_without_dask_says_how_to_install(monkeypatch):
    import sys

    import beam_runner
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(SystemExit, match=r"pip install '\.\[dask\]'"):
        beam_runner.pipeline_options(["--runner", "DaskRunner"])
