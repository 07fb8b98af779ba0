"""Downstream steps fail in one line naming the file (issue 18): the TFDS
build, the trainer and the evaluation, on a missing manifest, a corrupt or
truncated shard, and data that does not match."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def corrupt_shard(path: Path) -> None:
    """One byte of a record flipped inside an intact gzip stream: the record's
    CRC fails (TensorFlow: ``DataLossError: corrupted record``)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))


def truncate_shard(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def grow_shard(path: Path) -> None:
    path.write_bytes(path.read_bytes() + bytes(100))


def _first_shard(root: Path, split: str = "train") -> Path:
    return sorted((root / "tfrecord" / split).glob("*.tfrecord.gz"))[0]


@pytest.fixture
def output_copy(pipeline_run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(pipeline_run.output, out)
    return out


@pytest.fixture
def synthetic_copy(synthetic_data, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(synthetic_data[0], out)
    return out


# ----------------------------------------------------------------- TFDS build
def test_build_without_manifest_is_one_line(output_copy, tmp_path, capsys):
    from datasets.sc2_replays import build
    (output_copy / "manifest.json").unlink()
    assert build.main(["--data", str(output_copy),
                       "--out", str(tmp_path / "tfds")]) == 2
    line = _one_line(capsys)
    assert str(output_copy / "manifest.json") in line and "no manifest" in line


@pytest.mark.parametrize("damage,what", [(corrupt_shard, "corrupt"),
                                         (truncate_shard, "truncated")])
def test_build_names_a_damaged_shard(output_copy, tmp_path, capsys, damage, what):
    from datasets.sc2_replays import build
    shard = _first_shard(output_copy, "test")
    damage(shard)
    assert build.main(["--data", str(output_copy),
                       "--out", str(tmp_path / "tfds")]) == 2
    line = _one_line(capsys)
    assert str(shard) in line and what in line
    assert not (tmp_path / "tfds").exists()


def test_build_config_mismatch_is_one_line(output_copy, tmp_path, capsys):
    from datasets.sc2_replays import build
    assert build.main(["--data", str(output_copy), "--out",
                       str(tmp_path / "tfds"), "--config", "events_32", "--no_verify"]) == 2
    assert "events_32" in _one_line(capsys)


# -------------------------------------------------------------------- trainer
def _train(data: Path, out: Path, *extra: str) -> int:
    from trainers import train
    return train.main(["--data", str(data), "--model", "atari_net", "--out", str(out),
                       "--steps", "2", "--batch_size", "4", "--log_every", "1",
                       "--shuffle_buffer", "8", *extra])


def test_trainer_refuses_an_output_without_manifest(synthetic_copy, tmp_path, capsys):
    (synthetic_copy / "manifest.json").unlink()
    assert _train(synthetic_copy, tmp_path / "run") == 2
    line = _one_line(capsys)
    assert str(synthetic_copy / "manifest.json") in line and "no manifest" in line
    assert not (tmp_path / "run").exists()          # no half-made run directory


# The manifest records every shard's size: a changed size is found before
# TensorFlow reads a byte (a same-size corruption by the CRCs: evaluation below).
@pytest.mark.parametrize("damage,what", [(grow_shard, "damaged or replaced shard"),
                                         (truncate_shard, "truncated shard"),
                                         (os.remove, "missing shard")])
def test_trainer_names_a_damaged_shard(synthetic_copy, tmp_path, capsys, damage, what):
    shard = _first_shard(synthetic_copy)
    damage(shard)
    assert _train(synthetic_copy, tmp_path / "run", "--shuffle_buffer", "1000") == 2
    line = _one_line(capsys)
    assert str(shard) in line and what in line
    assert not (tmp_path / "run").exists()


def test_trainer_verbose_shows_the_traceback(synthetic_copy, tmp_path):
    from trainers.input import TrainerInputError
    (synthetic_copy / "manifest.json").unlink()
    with pytest.raises(TrainerInputError):
        _train(synthetic_copy, tmp_path / "run", "--verbose")


# ----------------------------------------------------------------- evaluation
def test_evaluate_fails_in_one_line(synthetic_data, synthetic_copy, output_copy, tmp_path,
                                    capsys):
    from trainers import evaluate
    run = tmp_path / "run"
    assert _train(synthetic_data[0], run) == 0
    capsys.readouterr()

    def evaluate_on(data: Path) -> str:
        assert evaluate.main(["--data", str(data), "--run", str(run), "--split", "test",
                              "--resamples", "10"]) == 2
        return _one_line(capsys)

    # the pipeline's 64x64 output, a 16x16 run: the configuration does not match
    line = evaluate_on(output_copy)
    assert str(output_copy / "manifest.json") in line and "16x16" in line
    shard = _first_shard(synthetic_copy, "test")
    extra = shard.with_name("test-00007-of-00009.tfrecord.gz")
    shutil.copy(shard, extra)
    line = evaluate_on(synthetic_copy)
    assert str(extra) in line and "a shard the manifest does not list" in line
    extra.unlink()
    # the same size, one byte of the gzip trailer's CRC flipped: found by reading
    data = bytearray(shard.read_bytes())
    data[-6] ^= 0xFF
    shard.write_bytes(bytes(data))
    line = evaluate_on(synthetic_copy)
    assert str(shard) in line and "unreadable shard" in line
    os.remove(synthetic_copy / "manifest.json")
    assert "no manifest" in evaluate_on(synthetic_copy)


# ------------------------------------------------------- what the run recorded
def test_the_trainer_refuses_a_failed_run(synthetic_copy, tmp_path, capsys):
    from schemas.run_output import Manifest, Outcome
    manifest = Manifest.load(str(synthetic_copy))
    manifest.outcome = Outcome(failed=True, reason="no samples from 3 input files: error "
                                                   "scan:not_mpq 3 (first: a.SC2Replay)")
    manifest.save(str(synthetic_copy))
    assert _train(synthetic_copy, tmp_path / "run") == 2
    line = _one_line(capsys)
    assert line.endswith(f"{synthetic_copy / 'manifest.json'}: this run failed (no samples "
                         "from 3 input files: error scan:not_mpq 3 (first: a.SC2Replay)); "
                         "not reading it")


def test_skipped_validation_names_the_recorded_cause(synthetic_copy, tmp_path, capsys):
    from schemas.run_output import Manifest
    manifest = Manifest.load(str(synthetic_copy))
    del manifest.shards["tfrecord"]["validation"]
    del manifest.counts.samples_counted_by_split["validation"]
    shutil.rmtree(synthetic_copy / "tfrecord" / "validation")
    manifest.empty_splits["validation"] = ("11 replays at 5% expect 0.55; use --splits "
                                           "with larger fractions or more replays")
    manifest.save(str(synthetic_copy))
    assert _train(synthetic_copy, tmp_path / "run", "--validation_every", "1") == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert ("validation skipped: " + str(synthetic_copy / "manifest.json") + ": split "
            "'validation' holds no samples: 11 replays at 5% expect 0.55; use --splits with "
            "larger fractions or more replays; splits with samples: train, test") in out
    assert "run beam_runner.py first" not in out


def test_a_manifest_with_bad_json_is_named(synthetic_copy, tmp_path, capsys):
    manifest = synthetic_copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"samples_total":', '"samples_total"'))
    assert _train(synthetic_copy, tmp_path / "run") == 2
    line = _one_line(capsys)
    assert f"{manifest}: unreadable manifest (Expecting ':' delimiter" in line
