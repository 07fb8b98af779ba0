"""The TFDS dataset built offline from the shared pipeline run."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas.sample import SPLITS, SampleSchema

SCHEMA = SampleSchema()


@pytest.fixture(scope="module")
def tfds_dir(pipeline_run, tmp_path_factory):
    from datasets.sc2_replays import build
    data_dir = tmp_path_factory.mktemp("tfds")
    assert build.main(["--pipeline_output", str(pipeline_run.output),
                       "--data_dir", str(data_dir)]) == 0
    return data_dir


def _parquet_rows(output, split, wanted):
    rows = {}
    for path in sorted((output / "parquet" / split).glob("*.parquet")):
        for sample in SCHEMA.from_arrow(pq.read_table(path)):
            key = (sample["replay_id"], sample["player_id"], sample["game_loop"])
            if key in wanted:
                rows[key] = sample
    return rows


def test_tfds_load_every_split_matches_parquet(pipeline_run, tfds_dir, monkeypatch):
    import tensorflow_datasets as tfds
    import datasets.sc2_replays  # noqa: F401  (registers the builder)
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    for split in SPLITS:
        ds = tfds.load("sc2_replays", data_dir=str(tfds_dir), split=split,
                       download=False, try_gcs=False)
        examples = list(tfds.as_numpy(ds))
        assert len(examples) == counts[split]
        # a sample of (replay, player, loop): every 97th example, first and last
        picked = examples[::97] + examples[-1:]
        by_key = {(e["replay_id"].decode(), int(e["player_id"]), int(e["game_loop"])): e
                  for e in picked}
        rows = _parquet_rows(pipeline_run.output, split, set(by_key))
        assert set(rows) == set(by_key)
        for key, example in by_key.items():
            row = rows[key]
            for field in SCHEMA.fields:
                value = example[field.name]
                if field.is_string:
                    assert value.decode() == row[field.name], (key, field.name)
                elif field.is_array:
                    np.testing.assert_array_equal(value, row[field.name], err_msg=field.name)
                    assert value.dtype == field.np_dtype
                else:
                    assert int(value) == row[field.name], (key, field.name)


def test_the_run_prepares_tfds_over_its_own_shards_without_a_copy(pipeline_run):
    """beam_runner.py leaves DIR/tfds: TFDS metadata only, reading DIR's shards."""
    import tensorflow_datasets as tfds
    import datasets.sc2_replays  # noqa: F401
    output = pipeline_run.output
    assert pipeline_run.manifest.tfds["data_dir"] == "tfds"
    tfds_bytes = sum(p.stat().st_size for p in (output / "tfds").rglob("*") if p.is_file())
    shard_bytes = sum(p.stat().st_size for p in (output / "tfrecord").rglob("*.tfrecord.gz"))
    # Metadata only (features.json with every field's doc, dataset_info.json):
    # a fixed ~45 KB, whatever the number of samples (5% of ~0.9 MB of shards).
    assert tfds_bytes < 60_000 and shard_bytes > 500_000, (tfds_bytes, shard_bytes)
    assert not list((output / "tfds").rglob("*.tfrecord*"))
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    ds = tfds.load("sc2_replays", data_dir=str(output / "tfds"), split="train+test",
                   download=False, try_gcs=False)
    assert sum(1 for _ in ds) == counts["train"] + counts["test"]


def test_builder_and_metadata(pipeline_run, tfds_dir):
    import tensorflow_datasets as tfds
    import datasets.sc2_replays  # noqa: F401
    builder = tfds.builder("sc2_replays/events_64", data_dir=str(tfds_dir))
    info = builder.info
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    assert {s: info.splits[s].num_examples for s in SPLITS} == counts
    provenance = info.metadata["provenance"]
    assert provenance["source"]["name"] == "events"
    assert provenance["source"]["fog"] is True
    assert "screen_height_map" in provenance["source"]["unavailable_layers"]
    assert "1708.04782" in info.citation
    ds = builder.as_dataset(split="validation", as_supervised=True)
    observation, (target, value) = next(iter(tfds.as_numpy(ds)))
    assert observation["screen_unit_type"].shape == (64, 64)
    assert observation["available_actions"].shape == (573,)
    assert set(target) >= {"function_id", "arg_screen", "arg_queued"}
    assert int(value) in (0, 1)


def test_no_network_access(pipeline_run, tfds_dir, monkeypatch):
    """Loading must not touch GCS or any URL."""
    import socket
    import tensorflow_datasets as tfds
    import datasets.sc2_replays  # noqa: F401

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    ds = tfds.load("sc2_replays", data_dir=str(tfds_dir), split="test", download=False,
                   try_gcs=False)
    assert next(iter(tfds.as_numpy(ds.take(1))))["split"] == b"test"


def test_preparing_imports_no_tensorflow(pipeline_run, tmp_path):
    """The run's last step writes the TFDS metadata without TensorFlow (~4 s
    of CPU to import): in a fresh interpreter, the same files as the run's."""
    import filecmp
    import shutil
    import subprocess
    import sys
    copy = tmp_path / "out"
    shutil.copytree(pipeline_run.output, copy, ignore=shutil.ignore_patterns("tfds"))
    code = ("import sys; from datasets.sc2_replays import build; "
            f"build.prepare_in_output({str(copy)!r}, recorded_output="
            f"{str(pipeline_run.output)!r}); "
            "sys.exit(3 if 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    ours = sorted(p.relative_to(copy / "tfds") for p in (copy / "tfds").rglob("*")
                  if p.is_file())
    theirs = sorted(p.relative_to(pipeline_run.output / "tfds")
                    for p in (pipeline_run.output / "tfds").rglob("*") if p.is_file())
    assert ours == theirs and len(ours) >= 3
    for rel in ours:
        assert filecmp.cmp(copy / "tfds" / rel, pipeline_run.output / "tfds" / rel,
                           shallow=False), rel
