"""The TFDS dataset over a real pipeline run: standard TFDS entry points in a
fresh process, split slicing, metadata only, refusals in one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas.run_output import RunOutputError, open_run
from schemas.sample import SPLITS, SampleSchema, sample_key

SCHEMA = SampleSchema()


def parquet_rows(output, split: str) -> list[dict]:
    """The split's samples from its Parquet shards, in stored order."""
    return [row for path in open_run(str(output)).shard_paths("parquet", split)
            for row in SCHEMA.from_arrow(pq.read_table(path))]


def first_pct(n: int, pct: int) -> int:
    """Examples in ``split[:pct%]`` of a split of ``n`` (TFDS rounds to the closest)."""
    return int(round(pct * n / 100))


def assert_match_parquet(columns: dict, rows: list[dict]) -> None:
    """``columns`` (a field -> stacked values, as the reader dumped them)
    holds exactly ``rows``, field by field, in any order."""
    n = len(columns["replay_id"])
    keys = [sample_key(str(columns["replay_id"][i]), int(columns["player_id"][i]),
                       int(columns["game_loop"][i])) for i in range(n)]
    by_key = {sample_key(r["replay_id"], r["player_id"], r["game_loop"]): r for r in rows}
    assert len(set(keys)) == n and sorted(keys) == sorted(by_key)
    assert set(columns) == set(SCHEMA.by_name)
    for i, key in enumerate(keys):
        row = by_key[key]
        for field in SCHEMA.fields:
            value = columns[field.name][i]
            if field.is_string:
                assert str(value) == row[field.name], (key, field.name)
            elif field.is_array:
                np.testing.assert_array_equal(value, row[field.name], err_msg=field.name)
                assert value.dtype == field.np_dtype, field.name
            else:
                assert int(value) == row[field.name], (key, field.name)


# What the fresh process runs: TFDS alone, nothing of this project imported by hand.
READER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow_datasets as tfds

    out, builder_dir, data_dir = sys.argv[1:4]

    def dump(name, ds):
        rows = list(tfds.as_numpy(ds))
        columns = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        np.savez(f"{out}/{name}.npz", **{
            k: np.char.decode(v, "utf-8") if v.dtype.kind == "S" else v
            for k, v in columns.items()})

    builder = tfds.builder_from_directory(builder_dir)
    dump("train_first_10pct", builder.as_dataset(split="train[:10%]"))
    report = {
        "builder": type(builder).__name__,
        "splits": {s: i.num_examples for s, i in builder.info.splits.items()},
        "train_after_10pct": sum(1 for _ in builder.as_dataset(split="train[10%:]")),
    }
    dump("test_last_5pct", tfds.load("sc2_replays", data_dir=data_dir, split="test[95%:]"))
    report["train+test"] = sum(1 for _ in tfds.load(
        "sc2_replays/events_64", data_dir=data_dir, split="train+test"))
    report["project_modules"] = sorted(
        m for m in sys.modules
        if m.split(".")[0] in ("datasets", "schemas", "pipeline", "trainers"))
    print(json.dumps(report))
""")


def test_a_fresh_process_reads_a_moved_output_through_standard_tfds(pipeline_run, tmp_path):
    """``tfds.builder_from_directory`` and ``tfds.load`` (the plain name and
    name/config) in a new interpreter outside the repository, no PYTHONPATH,
    on a moved copy of the run: slices hold exactly the Parquet rows."""
    moved = tmp_path / "elsewhere" / "renamed_output"
    shutil.copytree(pipeline_run.output, moved)
    work = tmp_path / "cwd"
    work.mkdir()
    data_dir = moved / "tfds"
    builder_dir = moved / pipeline_run.manifest.tfds["builder_dir"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", READER, str(work), str(builder_dir),
                           str(data_dir)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    assert report["builder"] == "ReadOnlyBuilder"
    assert report["splits"] == {s: counts[s] for s in SPLITS}
    # TFDS imported the features' module itself; the builder package never.
    assert report["project_modules"] == ["schemas", "schemas.layer_codec",
                                         "schemas.tfds_features"]

    train = parquet_rows(moved, "train")
    k = first_pct(len(train), 10)
    assert 0 < k < len(train) == counts["train"]
    assert report["train_after_10pct"] == len(train) - k
    assert_match_parquet(dict(np.load(work / "train_first_10pct.npz")), train[:k])

    test = parquet_rows(moved, "test")
    from_95 = first_pct(len(test), 95)
    last = dict(np.load(work / "test_last_5pct.npz"))
    assert len(last["replay_id"]) == len(test) - from_95 > 0
    assert_match_parquet(last, test[from_95:])
    assert report["train+test"] == counts["train"] + counts["test"]


def test_the_run_prepares_tfds_over_its_own_shards_without_a_copy(pipeline_run):
    """beam_runner.py leaves DIR/tfds: TFDS metadata only, whose split
    templates name DIR's own TFRecord shards."""
    import tensorflow_datasets as tfds
    output = pipeline_run.output
    run = open_run(str(output))
    assert pipeline_run.manifest.tfds["data_dir"] == "tfds"
    tfds_bytes = sum(p.stat().st_size for p in (output / "tfds").rglob("*") if p.is_file())
    shard_bytes = sum(s.bytes for by_split in run.manifest.shards["tfrecord"].values()
                      for s in by_split)
    # Metadata only (features.json with every field's doc, dataset_info.json):
    # a fixed ~45 KB, whatever the number of samples.
    assert tfds_bytes < 0.05 * shard_bytes, (tfds_bytes, shard_bytes)
    builder_dir = pipeline_run.manifest.tfds["builder_dir"]   # tfds/<name>/<config>/<version>
    assert sorted(str(p.relative_to(output)) for p in (output / "tfds").rglob("*")
                  if p.is_file()) == sorted(
        [f"{builder_dir}/{name}" for name in ("dataset_info.json", "features.json",
                                              "metadata.json")]
        + ["tfds/sc2_replays/.config/metadata.json"])
    builder = tfds.builder_from_directory(output / builder_dir)
    for split in run.manifest.split_names():
        resolved = [os.path.normpath(p) for p in builder.info.splits[split].filepaths]
        assert resolved == run.shard_paths("tfrecord", split)
        assert builder.info.splits[split].shard_lengths == [
            s.num_samples for s in run.manifest.shard_files("tfrecord", split)]


def test_registered_builder_reads_the_same_way(pipeline_run):
    """With the builder package imported, tfds.builder uses the registered
    class, which reads through TFDS's standard reader too."""
    import tensorflow_datasets as tfds
    from datasets.sc2_replays import Sc2Replays
    builder = tfds.builder("sc2_replays/events_64", data_dir=str(pipeline_run.output / "tfds"))
    assert isinstance(builder, Sc2Replays) and str(builder.version) == "1.3.0"
    info = builder.info
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    assert {s: info.splits[s].num_examples for s in SPLITS} == counts
    provenance = info.metadata["provenance"]
    assert provenance["source"]["name"] == "events"
    assert provenance["source"]["fog"] is True
    assert "screen_height_map" in provenance["source"]["unavailable_layers"]
    assert info.metadata["pipeline_output"] == str(pipeline_run.output)
    assert "1708.04782" in info.citation
    n = counts["validation"]
    assert sum(1 for _ in builder.as_dataset(split="validation[10%:20%]")) == \
        first_pct(n, 20) - first_pct(n, 10)
    ds = builder.as_dataset(split="validation", as_supervised=True)
    observation, (target, value) = next(iter(tfds.as_numpy(ds)))
    assert observation["screen_unit_type"].shape == (64, 64)
    assert observation["available_actions"].shape == (573,)
    assert set(target) >= {"function_id", "arg_screen", "arg_queued"}
    assert int(value) in (0, 1)


@pytest.fixture(scope="module")
def tfds_dir(pipeline_run, tmp_path_factory):
    """The offline command, into another data dir (shards verified first)."""
    from datasets.sc2_replays import build
    data_dir = tmp_path_factory.mktemp("tfds")
    assert build.main(["--data", str(pipeline_run.output),
                       "--out", str(data_dir)]) == 0
    return data_dir


def test_another_data_dir_reads_the_runs_shards(pipeline_run, tfds_dir):
    import tensorflow_datasets as tfds
    counts = pipeline_run.manifest.counts.samples_counted_by_split
    assert not list(tfds_dir.rglob("*.tfrecord*")) and not (tfds_dir / "downloads").exists()
    ds = tfds.load("sc2_replays", data_dir=str(tfds_dir), split="validation[:50%]")
    assert sum(1 for _ in ds) == first_pct(counts["validation"], 50)


def test_no_network_access(pipeline_run, tfds_dir, monkeypatch):
    """Loading must not touch GCS or any URL."""
    import socket
    import tensorflow_datasets as tfds

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    ds = tfds.load("sc2_replays", data_dir=str(tfds_dir), split="test")
    assert next(iter(tfds.as_numpy(ds.take(1))))["split"] == b"test"


def test_preparing_imports_no_tensorflow(pipeline_run, tmp_path):
    """The run's last step writes the TFDS metadata without TensorFlow (~4 s
    of CPU to import): in a fresh interpreter, the same files as the run's."""
    import filecmp
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
    assert ours == theirs and len(ours) == 4      # 3 + .config/metadata.json
    for rel in ours:
        assert filecmp.cmp(copy / "tfds" / rel, pipeline_run.output / "tfds" / rel,
                           shallow=False), rel


@pytest.fixture(scope="module")
def empty_run(tmp_path_factory):
    """A real run whose only replay is filtered out: no samples."""
    import beam_runner
    from conftest import FILTERED_REPLAY, REPLAYS, pipeline_argv, require_shared
    require_shared()
    out = tmp_path_factory.mktemp("empty") / "out"
    with pytest.raises(beam_runner.RunFailed) as failed:   # published as evidence
        beam_runner.run(pipeline_argv(
            [str(REPLAYS / FILTERED_REPLAY[0])], out,
            ["--direct_num_workers=1", "--direct_running_mode=in_memory"]))
    manifest = failed.value.manifest
    assert manifest.counts.samples_total == 0 and manifest.tfds is None
    return out


def test_a_run_without_samples_is_refused_in_one_line(empty_run, tmp_path, capsys):
    from datasets.sc2_replays import build
    data_dir = tmp_path / "tfds"
    assert build.main(["--data", str(empty_run), "--out", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(empty_run / "manifest.json") in err[0] and "no samples" in err[0]
    assert "1 filtered" in err[0]
    assert not data_dir.exists()
    with pytest.raises(RunOutputError, match="no samples") as refused:
        build.prepare_in_output(str(empty_run))
    assert "\n" not in str(refused.value)
    assert not (empty_run / "tfds").exists()


def test_shard_reader_reads_gzip_and_plain_records_and_object_store_paths(pipeline_run):
    """The TFRecord adapter TFDS uses once schemas.tfds_features is imported:
    .gz files as GZIP, other files as before, and ``..`` resolved on a
    filesystem that takes it literally (TensorFlow's ram://, like gs://)."""
    import tensorflow as tf
    from tensorflow_datasets.core import file_adapters
    from schemas.tfds_features import ShardReader
    assert file_adapters.ADAPTER_FOR_FORMAT[file_adapters.FileFormat.TFRECORD] is ShardReader
    run = open_run(str(pipeline_run.output))
    (path, entry), *_ = run.iter_shards("tfrecord", ["train"])
    assert sum(1 for _ in ShardReader.make_tf_data(path)) == entry.num_samples

    plain = "ram://plain/records.tfrecord"
    with tf.io.TFRecordWriter(plain) as writer:
        for record in (b"a", b"bb", b"ccc"):
            writer.write(record)
    assert [r.numpy() for r in ShardReader.make_tf_data(plain)] == [b"a", b"bb", b"ccc"]

    rel = run.manifest.shard_files("tfrecord", "train")[0].path
    tf.io.gfile.makedirs("ram://bucket/out/" + rel.rsplit("/", 1)[0])
    tf.io.gfile.copy(path, "ram://bucket/out/" + rel)
    dotted = "ram://bucket/out/tfds/sc2_replays/events_64/1.3.0/../../../../" + rel
    assert not tf.io.gfile.exists(dotted)      # the filesystem does not resolve '..'
    names = tf.data.Dataset.from_tensor_slices([dotted])     # a tensor, as in TFDS
    ds = names.interleave(ShardReader.make_tf_data, cycle_length=1)
    assert sum(1 for _ in ds) == entry.num_samples


def test_batched_decoding_gives_the_per_example_values(pipeline_run):
    """The documented fast path (compact fields skipped by TFDS, decoded per
    batch with CompactTensor.decode_batch_example) yields what TFDS's
    per-example decoding does."""
    import tensorflow_datasets as tfds
    builder = tfds.builder_from_directory(pipeline_run.output / pipeline_run.manifest.tfds[
        "builder_dir"])
    features = builder.info.features
    compact = [n for n, f in features.items() if type(f).__name__ == "CompactTensor"]
    assert sorted(compact) == sorted(f.name for f in SCHEMA.fields if f.compact)
    read = tfds.ReadConfig(interleave_cycle_length=1)       # both in file order
    per_example = builder.as_dataset(split="train[:5%]", read_config=read).batch(16)
    batched = builder.as_dataset(split="train[:5%]", read_config=read, decoders={
        n: tfds.decode.SkipDecoding() for n in compact}).batch(16).map(
        lambda b: {**b, **{n: features[n].decode_batch_example(b[n]) for n in compact}})
    rows = 0
    for a, b in zip(tfds.as_numpy(per_example), tfds.as_numpy(batched)):
        for name in SCHEMA.by_name:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        rows += len(a["game_loop"])
    assert rows == first_pct(pipeline_run.manifest.split_samples("train"), 5)


def test_the_trainers_tfds_source_reads_what_its_tfrecord_source_reads(pipeline_run):
    """``make_dataset(source="tfds")`` goes through the standard TFDS load of
    the output's metadata and gives the same model batches as the shards."""
    from trainers.input import FeatureSpec, make_dataset
    output = pipeline_run.output
    spec = FeatureSpec.create(64, 64, drop=("score",))
    kwargs = dict(batch_size=256, shuffle=False, repeat=False, with_meta=True)
    by_source = {}
    for source in ("tfrecord", "tfds"):
        ds = make_dataset(output, "test", spec, source=source,
                          tfds_data_dir=str(output / "tfds"), **kwargs)
        rows = {}
        for inputs, targets, meta in ds.as_numpy_iterator():
            for i in range(len(targets["value"])):
                key = (meta["replay_id"][i], int(meta["player_id"][i]),
                       int(meta["game_loop"][i]))
                rows[key] = (int(targets["function_id"][i]), float(targets["value"][i]),
                             int(targets["arg_minimap"][i]), inputs["minimap"][i].sum(),
                             inputs["available_actions"][i].sum())
        by_source[source] = rows
    assert len(by_source["tfds"]) == pipeline_run.manifest.split_samples("test") > 0
    assert by_source["tfds"] == by_source["tfrecord"]
