"""An output directory holds exactly one run; the environment's failures stop
the run (issue 18: stale shards mixing with new ones, a full disk recorded as
a replay's ``internal`` error)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import PIPELINE_REPLAYS, REPLAYS, pipeline_argv, require_shared

IN_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _one_replay() -> list[str]:
    require_shared()
    return [str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])]


def test_rerun_with_changed_flags_leaves_exactly_the_new_run(pipeline_run, tmp_path):
    import beam_runner
    from pipeline.output.run_directory import OutputDirError
    out = tmp_path / "out"
    shutil.copytree(pipeline_run.output, out)
    before = _files(out)
    argv = pipeline_argv(_one_replay(), out, IN_PROCESS + [
        "--formats", "tfrecord", "--splits", "train=1.0", "--max_samples_per_shard", "1000"])
    with pytest.raises(OutputDirError, match="not empty.*--overwrite"):
        beam_runner.run(argv)
    assert _files(out) == before                     # refused: nothing touched
    manifest = beam_runner.run(argv + ["--overwrite"])
    listed = _files(out)
    shards = sorted(s.path for by_split in manifest.shards.values()
                    for entries in by_split.values() for s in entries)
    assert shards == ["tfrecord/train/train-00000-of-00001.tfrecord.gz"]
    # exactly the new run: its shards, index, errors, manifest and TFDS metadata
    assert [f for f in listed if f.startswith(("tfrecord/", "parquet/"))] == shards
    assert {f.split("/")[0] for f in listed} == {"tfrecord", "index", "errors",
                                                 "manifest.json", "tfds"}
    assert manifest.output_dir == str(out)
    replays = pq.read_table(out / "index" / "replays.parquet").to_pylist()
    assert [r["path"] for r in replays] == _one_replay()
    # the trainer's file pattern reads what the manifest counts
    from trainers.input import shard_files
    from pipeline.output.writers import read_tfrecord_file
    records = sum(1 for f in shard_files(out, "train") for _ in read_tfrecord_file(f))
    assert records == manifest.counts.samples_total == 944
    # nothing left beside it but the (released) lock
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]
    # the TFDS metadata names the published directory, and reads its shards
    import tensorflow_datasets as tfds
    builder = tfds.builder("sc2_replays/events_64", data_dir=str(out / "tfds"))
    assert builder.info.metadata["pipeline_output"] == str(out)
    assert [os.path.normpath(p) for p in builder.info.splits["train"].filepaths] == \
        [str(out / shards[0])]


def test_overwrite_refuses_a_directory_that_is_not_a_pipeline_output(tmp_path):
    import beam_runner
    from pipeline.output.run_directory import OutputDirError
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not a pipeline output"):
        beam_runner.run(pipeline_argv(_one_replay(), tmp_path, IN_PROCESS + ["--overwrite"]))
    assert _files(tmp_path) == ["notes.txt"]


def test_a_directory_in_use_is_refused(tmp_path, capsys):
    import beam_runner
    from pipeline.output import run_directory
    out = tmp_path / "out"
    with run_directory.claim(str(out)):
        assert beam_runner.main(pipeline_argv(_one_replay(), out, IN_PROCESS)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another run" in err[0] and str(out) in err[0]
    assert not out.exists()


def test_full_disk_aborts_the_run_and_a_rerun_completes(tmp_path, monkeypatch):
    """ENOSPC while writing a replay's batch (injected in-process) stops the
    run with one line naming the path; it is no replay's error, no manifest
    is written, the output is left as it was, and a rerun completes."""
    import beam_runner
    from pipeline.job.worker import EnvironmentFailure
    from pipeline.output import writers
    out = tmp_path / "out"
    argv = pipeline_argv(_one_replay(), out, IN_PROCESS + ["--formats", "tfrecord"])
    argv[argv.index("--decode_timeout_s") + 1] = "0"       # in-process: the patch applies

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    monkeypatch.setattr(writers, "write_batch", full)
    with pytest.raises(EnvironmentFailure) as caught:
        beam_runner.run(argv)
    line = str(caught.value)
    assert "\n" not in line and "No space left on device (ENOSPC)" in line
    assert "_tmp/batches/" in line and caught.value.kind == "enospc"
    assert not out.exists()                            # no manifest, nothing half-made
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock"]
    monkeypatch.undo()
    manifest = beam_runner.run(argv)
    assert manifest.counts.samples_total == 944
    assert manifest.counts.error_reasons == {}


def _mount_tmpfs(where, size: str) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("workers", [IN_PROCESS, ["--direct_num_workers=2"]],
                         ids=["in-process", "two-worker-threads"])
def test_a_real_full_disk_is_one_line_and_leaves_no_manifest(tmp_path, capsys, workers):
    """The same on a real 256 KB tmpfs (where ``mount`` is permitted), through
    the sampling child process and the command line -- also with worker
    threads, whose failed bundle Beam's harness prints as a traceback."""
    import beam_runner
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("mounting a tmpfs is not permitted here (the ENOSPC injection "
                    "test covers the same path)")
    try:
        out = disk / "out"
        argv = pipeline_argv(_one_replay(), out, workers + ["--formats", "tfrecord"])
        assert beam_runner.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "aborted" in err[0] and "No space left on device (ENOSPC)" in err[0]
        assert str(disk) in err[0]
        assert not out.exists() and os.listdir(disk) == [".out.lock"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert beam_runner.main(argv) == 0
        assert (out / "manifest.json").is_file()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
