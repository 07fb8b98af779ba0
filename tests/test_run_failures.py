"""Failures are visible where the user looks: the exit status and the last line.

A run that samples nothing, or has more errors than ``--max_error_fraction``
of its inputs, exits 1 with one last line naming the top error and filter
categories (count, first file); its output is still published as the
evidence, marked failed in the manifest and the card.  A split left empty
says why.  Inputs that name no replay are refused in one line before
anything is written.  (The ``--engine sc2`` start check:
``tests/test_sc2_install_check.py``.)
"""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from conftest import (FILTERED_REPLAY, PIPELINE_REPLAYS, REPLAYS, pipeline_argv,
                      require_shared)
from pipeline.index import splits as splits_lib
from pipeline.output import manifest as manifest_lib
from schemas.run_output import Manifest

IN_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    """Two files that are not replays and a real game against the AI (filtered)."""
    require_shared()
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "a.SC2Replay").write_bytes(b"not a replay")
    (root / "b.SC2Replay").write_bytes(b"nope")
    shutil.copyfile(REPLAYS / FILTERED_REPLAY[0], root / "vs_ai.SC2Replay")
    return root


def _main(argv, capsys) -> tuple[int, list[str], list[str]]:
    import beam_runner
    rc = beam_runner.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out.splitlines(), captured.err.strip().splitlines()


def test_a_run_that_samples_nothing_fails_and_its_last_line_says_why(bad_dir, tmp_path,
                                                                       capsys):
    out = tmp_path / "out"
    rc, stdout, stderr = _main(pipeline_argv([str(bad_dir)], out, IN_PROCESS), capsys)
    assert rc == 1
    first_error, first_filtered = bad_dir / "a.SC2Replay", bad_dir / "vs_ai.SC2Replay"
    assert stderr[-1] == (
        f"sc2-pipeline: run failed: no samples from 3 input files: error scan:not_mpq 2 "
        f"(first: {first_error}); filtered not_1v1 1 (first: {first_filtered}); "
        f"output kept for inspection: {out}")
    # the console summary: errors and filter reasons by category, first file each
    assert f"  scan:not_mpq: 2 (first: {first_error})" in stdout
    assert f"  not_1v1: 1 (first: {first_filtered})" in stdout
    assert "  all empty (no replay passed the scan and the filters)" in stdout
    assert "samples: 0; no-op fraction 0.000; mean mask size 0.0" in stdout
    # the output is published: the evidence, marked failed
    manifest = Manifest.load(str(out))
    assert manifest.outcome.failed
    assert stderr[-1].endswith(manifest.outcome.reason)
    assert manifest.outcome.max_error_fraction is None
    assert [r["path"] for r in pq.read_table(out / "index" / "replays.parquet").to_pylist()] \
        == [str(first_filtered)]
    assert len(pq.read_table(out / "errors" / "errors.parquet")) == 2
    card = (out / "README.md").read_text()
    assert f"> **This run failed:** {manifest.outcome.reason}." in card
    assert not (out / "parquet").exists() and not (out / "tfds").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]     # no lock, no staging left


def test_the_last_line_stays_one_line_whatever_the_file_names_hold(tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "two\nlines \x1b[31mred.SC2Replay").write_bytes(b"not a replay")
    rc, _, stderr = _main(pipeline_argv([str(folder)], tmp_path / "out", IN_PROCESS), capsys)
    assert rc == 1
    assert stderr[-1].startswith("sc2-pipeline: run failed: no samples from 1 input files: "
                                 f"error scan:not_mpq 1 (first: {folder}/two\\nlines \\x1b[31mred")
    assert Manifest.load(str(tmp_path / "out")).outcome.reason in stderr[-1]


def test_max_error_fraction_fails_a_run_with_more_errors(bad_dir, tmp_path, capsys):
    """1 replay sampled, 1 filtered, 2 errors of 4 inputs: over 0.4, not over 0.5."""
    good = str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])
    out = tmp_path / "strict"
    argv = pipeline_argv([good, str(bad_dir)], out, IN_PROCESS + ["--formats", "parquet"])
    rc, stdout, stderr = _main(argv + ["--max_error_fraction", "0.4"], capsys)
    assert rc == 1
    assert stderr[-1] == (
        "sc2-pipeline: run failed: 2 of 4 input files are errors (50.0%), over "
        f"--max_error_fraction 0.4: error scan:not_mpq 2 (first: {bad_dir / 'a.SC2Replay'}); "
        f"output kept for inspection: {out}")
    manifest = Manifest.load(str(out))
    assert manifest.counts.samples_total == 944          # sampled, but failed
    assert manifest.outcome.failed and manifest.outcome.max_error_fraction == 0.4
    assert any(line.startswith("samples: 944;") for line in stdout)
    rc, stdout, stderr = _main(argv + ["--max_error_fraction", "0.5", "--overwrite"], capsys)
    assert rc == 0, stderr
    manifest = Manifest.load(str(out))
    assert not manifest.outcome.failed and manifest.outcome.reason == ""
    assert not any("run failed" in line for line in stderr)


def test_a_bad_max_error_fraction_is_a_usage_error(tmp_path, capsys):
    import beam_runner
    with pytest.raises(SystemExit) as caught:
        beam_runner.main(["--replays", str(tmp_path), "--out", str(tmp_path / "o"),
                          "--max_error_fraction", "1.5"])
    assert caught.value.code == 2
    assert "expected a fraction in [0, 1], got '1.5'" in capsys.readouterr().err


def test_scan_only_samples_nothing_by_design_and_does_not_fail(bad_dir, tmp_path, capsys):
    out = tmp_path / "scan"
    rc, stdout, stderr = _main(pipeline_argv([str(bad_dir)], out,
                                             IN_PROCESS + ["--scan_only"]), capsys)
    assert rc == 0, stderr
    manifest = Manifest.load(str(out))
    assert not manifest.outcome.failed and manifest.empty_splits == {}
    assert "**Scan only** (`--scan_only`)" in (out / "README.md").read_text()
    # ... unless its errors are over the limit asked for
    rc, _, stderr = _main(pipeline_argv([str(bad_dir)], out, IN_PROCESS + [
        "--scan_only", "--overwrite", "--max_error_fraction", "0.5"]), capsys)
    assert rc == 1 and "2 of 3 input files are errors (66.7%)" in stderr[-1]


def test_a_folder_without_replays_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no replays here")
    out = tmp_path / "out"
    rc, stdout, stderr = _main(["--replays", str(folder), "--out", str(out)], capsys)
    assert rc == 1 and stdout == []
    assert stderr == [f"sc2-pipeline: run refused: --replays: no replay files match: "
                      f"'{folder}' (directories are searched recursively for *.SC2Replay)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]   # not even a lock


# ------------------------------------------------------------- empty splits
def _records(ids: list[str], fractions) -> list[dict]:
    return [{"replay": {"replay_id": rid, "path": f"/r/{rid}", "status": "ok"},
             "players": [], "split": splits_lib.assign_split(rid, fractions)} for rid in ids]


def test_an_empty_split_says_how_many_replays_it_expected():
    fractions = splits_lib.DEFAULT_FRACTIONS
    ids = [rid for rid in (f"replay{i}" for i in range(100))
           if splits_lib.assign_split(rid, fractions) != "validation"][:11]
    records = _records(ids, fractions)
    held = {s: 1 for s in {r["split"] for r in records}}
    empty = manifest_lib.empty_splits(fractions, records, [], held)
    assert empty["validation"] == ("11 replays at 5% expect 0.55; use --splits with larger "
                                   "fractions or more replays")
    assert "train" not in empty


def test_an_empty_split_whose_replays_failed_says_so():
    fractions = {"train": 0.5, "validation": 0.5, "test": 0.0}
    records = _records([f"replay{i}" for i in range(20)], fractions)
    in_validation = [r for r in records if r["split"] == "validation"]
    errors = [{"replay_id": r["replay"]["replay_id"], "stage": "sample"} for r in in_validation]
    empty = manifest_lib.empty_splits(fractions, records, errors, {"train": 10})
    assert empty == {"validation": f"its {len(in_validation)} replays all failed when "
                                   "sampled (see errors/errors.parquet)"}
    empty = manifest_lib.empty_splits(fractions, records, errors[1:], {"train": 10})
    assert empty["validation"] == (f"{len(in_validation)} replays assigned: "
                                   f"{len(in_validation) - 1} failed when sampled, "
                                   "1 gave no samples")


def test_a_manifest_without_the_new_fields_still_loads(pipeline_run):
    data = json.loads((pipeline_run.output / "manifest.json").read_text())
    for key in ("empty_splits", "outcome"):
        del data[key]
    for key in ("matchups_by_split", "builds_by_split"):
        del data["counts"][key]
    old = Manifest.from_json(data)
    assert old.empty_splits == {} and not old.outcome.failed
    assert old.counts.matchups_by_split == {} and old.counts.builds_by_split == {}


def test_the_shared_run_records_matchups_and_builds_per_split(pipeline_run):
    counts = pipeline_run.manifest.counts
    # dream_spirit TvT -> train, serral_dark ZvZ -> validation, maru_byun TvT -> test
    assert counts.matchups_by_split == {"test": {"TvT": 1}, "train": {"TvT": 1},
                                        "validation": {"ZvZ": 1}}
    assert counts.builds_by_split == {s: {"5.0.8.86383": 1}
                                      for s in ("test", "train", "validation")}
    assert pipeline_run.manifest.empty_splits == {}
    assert not pipeline_run.manifest.outcome.failed
