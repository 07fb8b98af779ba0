"""The run-output contract (schemas/run_output.py): the manifest's JSON in and
out, old formats, one-line refusals, and the layout the pipeline writes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from schemas.run_output import (FORMAT_VERSION, Manifest, RunLayout, RunOutputError,
                                open_run)

V1 = Path(__file__).parent / "data" / "manifest_v1.json"


def test_a_run_writes_what_the_layout_names(pipeline_run):
    run = open_run(str(pipeline_run.output))
    manifest = run.manifest
    assert manifest.format_version == FORMAT_VERSION
    layout = RunLayout(str(pipeline_run.output))
    for path in (layout.manifest, layout.replays_index, layout.players_index,
                 layout.errors_file):
        assert os.path.isfile(path), path
    assert not os.path.exists(layout.tmp_dir)
    # every shard listed, relative to the output, exists with its recorded size;
    # and nothing else lies in the shard folders
    listed = set()
    for fmt in manifest.formats:
        for split in manifest.split_names():
            for path, entry in run.iter_shards(fmt, (split,)):
                assert not os.path.isabs(entry.path)
                assert os.path.getsize(path) == entry.bytes > 0
                listed.add(path)
        run.check_shards(fmt, manifest.split_names())
    on_disk = {str(p) for fmt in manifest.formats
               for p in (pipeline_run.output / fmt).rglob("*") if p.is_file()}
    assert on_disk == listed
    assert sum(e.num_samples for e in manifest.shard_files("parquet", "test")) == \
        manifest.split_samples("test") == manifest.counts.samples_counted_by_split["test"]


def test_json_round_trip_and_a_moved_output(pipeline_run, tmp_path):
    manifest = Manifest.load(str(pipeline_run.output))
    again = Manifest.loads(manifest.dumps())
    assert again == manifest
    moved = tmp_path / "moved"
    shutil.copytree(pipeline_run.output, moved)
    run = open_run(str(moved))                 # relative shard paths: still whole
    run.check_shards("tfrecord", run.manifest.split_names())
    assert all(p.startswith(str(moved)) for p, _ in run.iter_shards("tfrecord", ["train"]))


def test_version_1_manifests_load_with_relative_paths(tmp_path):
    shutil.copy(V1, tmp_path / "manifest.json")
    manifest = Manifest.load(str(tmp_path))
    raw = json.loads(V1.read_text())
    assert raw["format_version"] == 1
    assert raw["shards"]["parquet"]["train"][0]["path"].startswith(raw["output_dir"] + "/")
    [entry] = manifest.shard_files("parquet", "train")
    assert entry.path == "parquet/train/train-00000-of-00001.parquet"
    assert entry.num_samples == manifest.counts.samples_total == 944
    assert manifest.source.name == "events" and manifest.source.resolution == 64
    assert manifest.examples == {} and manifest.provenance == {}
    assert manifest.sample_schema().screen_resolution == 64


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(format_version=99), "manifest format_version 99; this code reads 1, 2"),
    (lambda m: m.pop("format_version"), "manifest format_version None"),
    (lambda m: m.pop("counts"), "expected an object for Counts, got NoneType"),
    (lambda m: m.pop("labels"), "Manifest lacks labels"),
    (lambda m: m["source"].pop("resolution"), "SourceInfo lacks resolution"),
    (lambda m: m.update(schema={"repr": "x", "num_fields": 1, "fields": []}),
     "not a sample schema: 'x'"),
    (lambda m: m["schema"].update(layer_encoding_version=2),
     "layers encoded with schemas.layer_codec version 2; this code reads 1"),
    (lambda m: m.update(shards={"parquet": {"train": [7]}}),
     "expected an object for ShardFile"),
])
def test_unusable_manifests_are_one_line_naming_the_file(tmp_path, edit, message):
    data = json.loads(V1.read_text())
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(RunOutputError) as caught:
        open_run(str(tmp_path))
    line = str(caught.value)
    assert "\n" not in line and line.startswith(str(tmp_path / "manifest.json"))
    assert message in line


def test_missing_and_malformed_manifests(tmp_path):
    with pytest.raises(RunOutputError, match="manifest.json: no manifest"):
        open_run(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"format_version": 2,')
    with pytest.raises(RunOutputError, match="manifest.json: unreadable manifest"):
        open_run(str(tmp_path))
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(RunOutputError, match="not a manifest"):
        open_run(str(tmp_path))


def test_an_empty_split_says_why(tmp_path):
    data = json.loads(V1.read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    run = open_run(str(tmp_path))
    with pytest.raises(RunOutputError) as caught:
        run.shard_paths("parquet", "validation")
    assert ("split 'validation' holds no samples: 1 replays sampled at fraction 0.05 "
            "(this manifest predates recorded causes)") in str(caught.value)
    assert "splits with samples: train" in str(caught.value)
    with pytest.raises(RunOutputError, match="the run wrote no avro shards"):
        run.shard_paths("avro", "train")
