"""An output directory holds exactly one run; the environment's failures stop
the run (issue 18: stale shards mixing with new ones, a full disk recorded as
a replay's ``internal`` error)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
                                                 "manifest.json", "README.md", "tfds"}
    assert manifest.output_dir == str(out)
    replays = pq.read_table(out / "index" / "replays.parquet").to_pylist()
    assert [r["path"] for r in replays] == _one_replay()
    # the trainer's file pattern reads what the manifest counts
    from trainers.input import shard_files
    from pipeline.output.writers import read_tfrecord_file
    records = sum(1 for f in shard_files(out, "train") for _ in read_tfrecord_file(f))
    assert records == manifest.counts.samples_total == 944
    # nothing left beside it, not even the lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
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
        assert run_directory.lock_path(str(out)) == str(tmp_path / ".out.lock")
        assert ".out.lock" in os.listdir(tmp_path)       # the holder's, while it holds it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another run" in err[0] and str(out) in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []   # released: none left


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
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.undo()
    manifest = beam_runner.run(argv)
    assert manifest.counts.samples_total == 944
    assert manifest.counts.error_reasons == {}


@pytest.mark.parametrize("size", ["400k", "600k", "800k"])
def test_a_full_disk_while_writing_both_formats_prints_no_traceback(tmp_path, capsys, size):
    """Sizes at which the shard write (Parquet and TFRecord, in the sampling
    child) runs out of space: stderr holds the progress lines and the one
    line, never a writer's traceback from the garbage collector."""
    import beam_runner
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount_tmpfs(disk, size):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        argv = pipeline_argv(_one_replay(), disk / "out", IN_PROCESS)
        assert beam_runner.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert not [l for l in err if "Traceback" in l or "Exception ignored" in l], err
        assert err[-1].startswith("sc2-pipeline: run aborted, --out unchanged: output "
                                  "failure: ") and err[-1].endswith(
                                      "No space left on device (ENOSPC)")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


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
        # nothing but progress lines before the one line
        err = [l for l in capsys.readouterr().err.strip().splitlines()
               if " progress " not in l]
        assert len(err) == 1, err
        assert "aborted" in err[0] and "No space left on device (ENOSPC)" in err[0]
        assert str(disk) in err[0]
        assert not out.exists() and os.listdir(disk) == []
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert beam_runner.main(argv) == 0
        assert (out / "manifest.json").is_file()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_an_output_through_a_symlink_goes_into_its_target(tmp_path):
    """The link is followed: the run lands in the target, the link stays a link
    to it, and the lock and staging directory live beside the target."""
    import beam_runner
    target = tmp_path / "disk" / "real_out"
    target.parent.mkdir()
    link = tmp_path / "linkout"
    link.symlink_to(target, target_is_directory=True)   # dangling until the run
    manifest = beam_runner.run(pipeline_argv(_one_replay(), link, IN_PROCESS))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target / "manifest.json").is_file()
    assert manifest.counts.samples_total == 944
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "linkout"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["real_out"]
    # a rerun through the link replaces the run in the target, link untouched
    beam_runner.run(pipeline_argv(_one_replay(), link, IN_PROCESS + ["--overwrite"]))
    assert link.is_symlink() and (target / "manifest.json").is_file()


def test_a_kill_between_the_swaps_renames_leaves_the_old_run_restored(tmp_path, monkeypatch):
    """Killed after the old run was renamed away and before the new one was
    renamed in: the next run puts the old run back before it looks at DIR."""
    from pipeline.output import run_directory
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("the old run")
    real_rename = os.rename

    def killed_on_second_rename(source, destination):
        if ".staging-" in str(source):
            raise KeyboardInterrupt                 # the process dies here
        real_rename(source, destination)

    with pytest.raises(KeyboardInterrupt):
        with run_directory.claim(str(out), overwrite=True) as staging:
            (Path(staging) / "manifest.json").write_text("the new run")
            monkeypatch.setattr(os, "rename", killed_on_second_rename)
            run_directory.publish(staging, str(out))
    monkeypatch.undo()
    assert not out.exists() and any(p.name.startswith(".out.old-") for p in tmp_path.iterdir())
    # the next run, even without --overwrite, finds the old run back in place
    with pytest.raises(run_directory.OutputDirError, match="not empty"):
        with run_directory.claim(str(out), overwrite=False):
            pass
    assert (out / "manifest.json").read_text() == "the old run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
