"""schemas.sample_reader on the real pipeline output (the shared ``pipeline_run``):
every field as numpy, equal to SampleSchema.from_arrow and to the TFRecord
shards' SampleSchema.from_example; streaming, selection, worker partition;
the layer format version in the files; one-line errors naming the file."""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PIPELINE_REPLAYS, expected_samples
from pipeline.output import writers
from schemas import layer_codec, sample_reader
from schemas.run_output import RunOutputError, open_run
from schemas.sample import (ENCODING_VERSION_KEY, SampleSchema, SchemaError,
                            read_parquet_samples)


def _split_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, loops, split in PIPELINE_REPLAYS.values():
        counts[split] = counts.get(split, 0) + expected_samples(loops)
    return counts


def _assert_columns_equal(schema: SampleSchema, a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        field = schema.by_name[name]
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name
        assert field.is_string or a[name].dtype == field.np_dtype


def test_every_field_as_numpy_equal_to_from_arrow_and_tfrecord(pipeline_run):
    run = open_run(str(pipeline_run.output))
    schema = run.manifest.sample_schema()
    assert run.manifest.counts.samples_counted_by_split == _split_counts()
    for split, count in _split_counts().items():
        cols = sample_reader.read_split(str(pipeline_run.output), split)
        assert list(cols) == schema.names()
        for field in schema.fields:
            value = cols[field.name]
            assert value.shape == (count,) + field.shape, field.name
            assert value.dtype == (np.dtype(object) if field.is_string else field.np_dtype)
            assert value.flags.writeable, field.name
        assert set(cols["split"]) == {split}
        assert isinstance(cols["replay_id"][0], str)
        # every scalar of every row, as pyarrow reads the files itself
        table = pq.ParquetDataset(run.shard_paths("parquet", split)).read()
        assert table.num_rows == count
        for field in schema.fields:
            if not field.is_array:
                assert cols[field.name].tolist() == table.column(field.name).to_pylist()
        # every field of every 25th row (and the last) against
        # SampleSchema.from_arrow and the TFRecord shards' from_example
        records = [record for path in run.shard_paths("tfrecord", split)
                   for record in writers.read_tfrecord_file(path)]
        assert len(records) == count
        rows = list(range(0, count, 25)) + [count - 1]
        from_arrow = schema.from_arrow(table.take(rows))
        for i, arrow_row in zip(rows, from_arrow):
            example_row = schema.from_example(records[i])
            for field in schema.fields:
                got = cols[field.name][i]
                for row in (arrow_row, example_row):
                    if field.is_array:
                        assert np.array_equal(got, row[field.name]), field.name
                    else:
                        assert got == row[field.name], field.name
        # the layers are not all zeros (a reader returning zeros fails here)
        assert cols["screen_unit_type"].any() and cols["minimap_player_relative"].any()


def test_streams_shard_by_shard_and_in_row_batches(pipeline_run):
    run = open_run(str(pipeline_run.output))
    names = ["replay_id", "game_loop", "value", "player", "screen_unit_type"]
    for split in run.manifest.split_names():
        entries = run.manifest.shard_files("parquet", split)
        assert len(entries) > 1              # the fixture cuts every split in shards
        per_shard = list(sample_reader.iter_columns(run, split, names))
        assert [len(c["value"]) for c in per_shard] == [e.num_samples for e in entries]
        batched = list(sample_reader.iter_columns(run, split, names, batch_rows=150))
        assert len(batched) == sum(math.ceil(e.num_samples / 150) for e in entries)
        assert max(len(c["value"]) for c in batched) == 150
        for name in names:
            assert np.array_equal(np.concatenate([c[name] for c in per_shard]),
                                  np.concatenate([c[name] for c in batched]))
        whole = sample_reader.read_split(run, split, names)
        for name in names:
            assert np.array_equal(whole[name], np.concatenate([c[name] for c in per_shard]))
    # one file by path: read_shard and the compatibility name agree
    last = run.shard_paths("parquet", "validation")[-1]
    _assert_columns_equal(run.manifest.sample_schema(), read_parquet_samples(last),
                          sample_reader.read_shard(last))


def test_default_is_every_split_in_order_and_selection_keeps_order(pipeline_run):
    run = open_run(str(pipeline_run.output))
    names = ["value", "split", "function_id"]
    cols = list(sample_reader.iter_columns(run, columns=names))
    assert all(list(c) == names for c in cols)
    splits = [s for c in cols for s in dict.fromkeys(c["split"])]
    assert list(dict.fromkeys(splits)) == ["train", "validation", "test"]
    assert sum(len(c["value"]) for c in cols) == sum(_split_counts().values())
    with pytest.raises(SchemaError, match="unknown fields.*'no_such_field'"):
        list(sample_reader.iter_columns(run, "train", ["value", "no_such_field"]))
    with pytest.raises(ValueError, match="no columns"):
        list(sample_reader.iter_columns(run, "train", []))
    with pytest.raises(TypeError):
        list(sample_reader.iter_columns(run, "train", "value"))


def test_workers_share_the_shards_without_overlap(pipeline_run):
    run = open_run(str(pipeline_run.output))
    keys = ["replay_id", "player_id", "game_loop"]

    def rows(**kwargs) -> list[tuple]:
        return [tuple(r[k] for k in keys)
                for r in sample_reader.iter_samples(run, None, keys, **kwargs)]

    every = rows()
    parts = [rows(worker=w, num_workers=3) for w in range(3)]
    assert all(parts)
    assert sorted(every) == sorted(r for part in parts for r in part)
    assert len(set(every)) == len(every) == sum(_split_counts().values())
    with pytest.raises(ValueError, match="worker 3"):
        rows(worker=3, num_workers=3)


def test_iter_samples_are_from_arrow_samples(pipeline_run):
    run = open_run(str(pipeline_run.output))
    schema = run.manifest.sample_schema()
    path = run.shard_paths("parquet", "validation")[0]
    expected = schema.from_arrow(pq.read_table(path))
    got = list(sample_reader.iter_samples(run, "validation", batch_rows=64))[:len(expected)]
    for a, b in zip(got, expected):
        assert list(a) == list(b)
        for name, value in a.items():
            assert type(value) is type(b[name])
            assert np.array_equal(value, b[name]) if schema.by_name[name].is_array \
                else value == b[name]
    assert type(got[0]["value"]) is int and type(got[0]["outcome"]) is str


def test_layer_columns_carry_the_format_version(pipeline_run):
    run = open_run(str(pipeline_run.output))
    schema = run.manifest.sample_schema()
    arrow = pq.read_schema(run.shard_paths("parquet", "train")[0])
    for field in schema.fields:
        meta = arrow.field(field.name).metadata
        if field.compact:
            assert meta[b"encoding"] == b"schemas.layer_codec"
            assert meta[ENCODING_VERSION_KEY] == str(layer_codec.FORMAT_VERSION).encode()
            assert meta[b"dtype"] == field.dtype.encode()
            assert meta[b"shape"] == ",".join(map(str, field.shape)).encode()
        else:
            assert ENCODING_VERSION_KEY not in meta


def _with_layer_metadata(path, out, change) -> None:
    """``path`` rewritten to ``out`` with each layer field's metadata changed."""
    table = pq.read_table(path)
    fields = []
    for field in table.schema:
        meta = dict(field.metadata or {})
        if meta.get(b"encoding"):
            change(meta)
        fields.append(field.with_metadata(meta))
    pq.write_table(table.cast(pa.schema(fields, metadata=table.schema.metadata)), out)


def test_layer_format_versions(pipeline_run, tmp_path):
    run = open_run(str(pipeline_run.output))
    path = run.shard_paths("parquet", "test")[0]
    expected = sample_reader.read_shard(path, ["screen_unit_type", "value"])
    # files written before the version key existed are version 1
    _with_layer_metadata(path, tmp_path / "v1.parquet",
                         lambda meta: meta.pop(ENCODING_VERSION_KEY))
    _assert_columns_equal(run.manifest.sample_schema(), expected, sample_reader.read_shard(
        str(tmp_path / "v1.parquet"), ["screen_unit_type", "value"]))
    # another version is refused, with the field and both versions named
    _with_layer_metadata(path, tmp_path / "v2.parquet",
                         lambda meta: meta.update({ENCODING_VERSION_KEY: b"2"}))
    with pytest.raises(SchemaError, match="minimap_height_map: layer format version 2; "
                                          "this code reads 1"):
        sample_reader.read_shard(str(tmp_path / "v2.parquet"), ["value"])


def _copy(pipeline_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(pipeline_run.output, out, ignore=shutil.ignore_patterns("tfds"))
    return open_run(str(out))


def test_unreadable_shards_are_one_line_errors_naming_the_file(pipeline_run, tmp_path):
    run = _copy(pipeline_run, tmp_path)
    first, second = run.shard_paths("parquet", "train")[:2]
    Path(first).unlink()
    with pytest.raises(RunOutputError, match=f"^{re.escape(first)}: unreadable shard") as info:
        list(sample_reader.iter_columns(run, "train", ["value"]))
    assert "\n" not in str(info.value)
    Path(second).write_bytes(b"not parquet")
    shutil.copyfile(run.shard_paths("parquet", "test")[-1], first)   # another split's
    with pytest.raises(RunOutputError,
                       match=f"^{re.escape(first)}: 186 samples, the manifest says 400$"):
        list(sample_reader.iter_columns(run, "train", ["value"]))
    with pytest.raises(RunOutputError,
                       match=f"^{re.escape(second)}: unreadable shard .*not a Parquet"):
        list(sample_reader.iter_columns(run, "train", ["value"], worker=1, num_workers=2))
    with pytest.raises(SchemaError, match="not a Parquet file"):
        sample_reader.read_shard(second)


def test_output_errors_come_from_the_run_contract(pipeline_run, tmp_path):
    with pytest.raises(RunOutputError, match="no manifest"):
        next(sample_reader.iter_columns(str(tmp_path), "train"))
    run = open_run(str(pipeline_run.output))
    with pytest.raises(RunOutputError, match="split 'dev' holds no samples"):
        next(sample_reader.iter_columns(run, "dev"))


def test_a_foreign_parquet_file_is_not_a_sample_shard(tmp_path):
    pq.write_table(pa.table({"value": pa.array([1, 2], pa.int8())}), tmp_path / "x.parquet")
    with pytest.raises(SchemaError, match="x.parquet: not a sample shard"):
        sample_reader.read_shard(str(tmp_path / "x.parquet"))
