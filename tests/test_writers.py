"""Shard planning, TFRecord framing and shard round trips (no Beam)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.index import splits as splits_lib
from pipeline.output import writers
from schemas.run_output import RunLayout
from schemas.sample import SampleSchema

SCHEMA = SampleSchema(8, 8)      # small layers: exactness does not depend on 64x64


def _sample(replay_id: str, player: int, loop: int, split: str = "train") -> dict:
    s = {}
    for f in SCHEMA.fields:
        if f.is_string:
            s[f.name] = ""
        elif f.is_array:
            s[f.name] = np.full(f.shape, (loop // 8 + player) % 7, f.np_dtype)
        else:
            s[f.name] = 0
    s.update(replay_id=replay_id, player_id=player, game_loop=loop, split=split,
             outcome="win", value=1, source="events", function_id=loop % 5)
    return s


def test_tfrecord_framing_is_read_by_tensorflow(tmp_path):
    import tensorflow as tf
    path = tmp_path / "x.tfrecord.gz"
    records = [b"", b"a", bytes(range(256)) * 50]
    with gzip.open(path, "wb") as f:
        for r in records:
            f.write(writers.encode_record(r))
    assert [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path), "GZIP")] == records
    assert list(writers.read_tfrecord_file(str(path))) == records
    with tf.io.TFRecordWriter(str(tmp_path / "tf.gz"), "GZIP") as w:
        for r in records:
            w.write(r)
    assert list(writers.read_tfrecord_file(str(tmp_path / "tf.gz"))) == records


def test_corrupt_record_is_detected(tmp_path):
    path = tmp_path / "bad.tfrecord.gz"
    frame = bytearray(writers.encode_record(b"hello world"))
    frame[14] ^= 1
    with gzip.open(path, "wb") as f:
        f.write(bytes(frame))
    with pytest.raises(writers.ShardVerificationError):
        list(writers.read_tfrecord_file(str(path)))


def test_plan_shards_bounds_order_and_determinism():
    batches = [writers.ReplayBatch(replay_id=rid, split="train", batch_path=f"/b/{rid}",
                                   num_samples=n)
               for rid, n in (("c", 7), ("a", 5), ("b", 0), ("d", 4))]
    batches.append(writers.ReplayBatch(replay_id="e", split="test", batch_path="/b/e",
                                       num_samples=3))
    plan = writers.plan_shards(batches, 4)
    assert plan == writers.plan_shards(list(reversed(batches)), 4)
    train = [t for t in plan if t.split == "train"]
    assert [t.num_samples for t in train] == [4, 4, 4, 4]       # 16 samples
    assert all(t.count == 4 for t in train)
    # ordered by replay id, contiguous slices
    flat = [(s.replay_id, i) for t in train for s in t.segments for i in range(s.start, s.stop)]
    assert flat == [("a", i) for i in range(5)] + [("c", i) for i in range(7)] + \
        [("d", i) for i in range(4)]
    test = [t for t in plan if t.split == "test"]
    assert [(t.index, t.count, t.num_samples) for t in test] == [(0, 1, 3)]
    with pytest.raises(ValueError):
        writers.plan_shards(batches, 0)


def test_write_shards_round_trip(tmp_path):
    out = str(tmp_path)
    by_replay = {rid: [_sample(rid, p, loop) for p in (2, 1) for loop in range(0, 80, 8)]
                 for rid in ("r2", "r1")}
    batches = []
    for rid, samples in by_replay.items():
        path = RunLayout(out).batch_path(rid)
        n = writers.write_batch(path, SCHEMA, samples)
        batches.append(writers.ReplayBatch(replay_id=rid, split="train", batch_path=path,
                                           num_samples=n))
    plan = writers.plan_shards(batches, 15)
    infos = [writers.write_shard(t, SCHEMA, out) for t in plan]
    assert [i["num_samples"] for i in infos] == [15, 15, 10]
    rows = []
    for info in infos:
        rows += SCHEMA.from_arrow(pq.read_table(info["files"]["parquet"]))
    records = [SCHEMA.from_example(r) for info in infos
               for r in writers.read_tfrecord_file(info["files"]["tfrecord"])]
    keys = [(r["replay_id"], r["player_id"], r["game_loop"]) for r in rows]
    assert keys == sorted(keys) and len(keys) == 40 == len(set(keys))
    assert keys == [(r["replay_id"], r["player_id"], r["game_loop"]) for r in records]
    for a, b in zip(rows, records):
        for f in SCHEMA.fields:
            if f.is_array:
                np.testing.assert_array_equal(a[f.name], b[f.name])
            else:
                assert a[f.name] == b[f.name]
    assert infos[0]["first_key"] == "r1_1_0" and infos[-1]["last_key"] == "r2_2_72"
    assert sorted(p.name for p in (tmp_path / "parquet" / "train").iterdir()) == [
        f"train-0000{i}-of-00003.parquet" for i in range(3)]
    # no temporary files are left behind
    assert not [p for p in tmp_path.rglob(".*tmp-*")]
    # rewriting (a retried bundle) gives identical bytes
    before = {p: p.read_bytes() for p in (tmp_path / "tfrecord").rglob("*.gz")}
    before.update({p: p.read_bytes() for p in (tmp_path / "parquet").rglob("*.parquet")})
    for t in plan:
        writers.write_shard(t, SCHEMA, out)
    for p, data in before.items():
        assert p.read_bytes() == data


def test_verify_shard_detects_wrong_count(tmp_path):
    out = str(tmp_path)
    path = RunLayout(out).batch_path("r")
    writers.write_batch(path, SCHEMA, [_sample("r", 1, 0), _sample("r", 1, 8)])
    [task] = writers.plan_shards([writers.ReplayBatch(replay_id="r", split="train",
                                                      batch_path=path, num_samples=2)], 10)
    info = writers.write_shard(task, SCHEMA, out)
    for fmt in ("parquet", "tfrecord"):
        with pytest.raises(writers.ShardVerificationError):
            writers.verify_shard(info["files"][fmt], fmt, SCHEMA, 3, info["first_key"],
                                 info["last_key"])
        with pytest.raises(writers.ShardVerificationError):
            writers.verify_shard(info["files"][fmt], fmt, SCHEMA, 2, "r_1_8", "r_1_8")


def test_splits_by_replay_id():
    fractions = splits_lib.parse_splits("train=0.8,validation=0.1,test=0.1")
    ids = [f"{i:064x}" for i in range(3000)]
    assigned = [splits_lib.assign_split(i, fractions) for i in ids]
    assert assigned == [splits_lib.assign_split(i, fractions) for i in ids]
    share = {s: assigned.count(s) / len(ids) for s in ("train", "validation", "test")}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["test"] - 0.1) < 0.03
    assert {splits_lib.assign_split(i, {"train": 1.0}) for i in ids[:50]} == {"train"}
    for bad in ("train=0.5", "train=1.1,test=-0.1", "dev=1.0", "train"):
        with pytest.raises(splits_lib.SplitConfigError):
            splits_lib.parse_splits(bad)


def test_manifest_label_statistics():
    from pipeline.output.manifest import ReplayResult, label_statistics

    def result(rid, noop, mask_sum, target_unavailable, functions):
        return ReplayResult(replay_id=rid, split="train", batch_path=f"/b/{rid}",
                            num_samples=10, path=f"/r/{rid}", players={"1": 10},
                            noop=noop, mask_sum=mask_sum,
                            target_unavailable=target_unavailable, functions=functions)

    stats = label_statistics([result("a", 4, 50, 1, {"0": 4, "1": 6}),
                              result("b", 6, 70, 0, {"0": 6, "2": 4})])
    assert stats["noop_fraction"] == 0.5 and stats["mean_mask_size"] == 6.0
    assert stats["target_unavailable_fraction"] == 0.05
    assert [(t["name"], t["count"]) for t in stats["top_target_functions"]] == [
        ("no_op", 10), ("move_camera", 6), ("select_point", 4)]
    json.dumps(stats)


def test_manifest_counts_unknown_targets_and_arguments_by_replay_kind():
    from pipeline.output.manifest import ReplayResult, label_statistics
    stats = label_statistics([
        ReplayResult(replay_id="a", split="train", batch_path="/b/a", path="/r/a",
                     players={"1": 100}, num_samples=100, noop=40, mask_sum=500,
                     target_unavailable=0, functions={"0": 40, "2": 50, "-2": 10},
                     has_tracker_events=False, target_unknown=10,
                     unknown_argument_windows=30,
                     unknown_arguments={"arg_screen": 30, "arg_screen2": 5}),
        ReplayResult(replay_id="b", split="train", batch_path="/b/b", path="/r/b",
                     players={"1": 300}, num_samples=300, noop=100, mask_sum=900,
                     target_unavailable=3, functions={"0": 100, "2": 197, "-2": 3},
                     has_tracker_events=True, target_unknown=3,
                     unknown_argument_windows=1, unknown_arguments={"arg_screen": 1})])
    unknown = stats["unknown"]
    assert unknown["target_unknown_fraction"] == 13 / 400
    assert unknown["unknown_argument_fraction"] == 31 / 400
    assert unknown["unknown_arguments_by_type"] == {"arg_screen": 31, "arg_screen2": 5}
    without = unknown["by_replay_kind"]["without_tracker_events"]
    assert (without["samples"], without["target_unknown_fraction"],
            without["unknown_argument_fraction"]) == (100, 0.1, 0.3)
    assert unknown["by_replay_kind"]["with_tracker_events"]["target_unknown_fraction"] == 0.01
    assert stats["distinct_target_functions"] == 2
    assert ("target_unknown", 13) in [(t["name"], t["count"])
                                      for t in stats["top_target_functions"]]
    json.dumps(stats)


def _one_shard(tmp_path, n: int, **kwargs) -> tuple[writers.ShardTask, dict]:
    out = str(tmp_path)
    path = RunLayout(out).batch_path("r")
    writers.write_batch(path, SCHEMA, [_sample("r", 1, 8 * i) for i in range(n)])
    [task] = writers.plan_shards([writers.ReplayBatch(replay_id="r", split="train",
                                                      batch_path=path, num_samples=n)], n)
    return task, writers.write_shard(task, SCHEMA, out, **kwargs)


def test_tfrecord_read_back_rejects_cut_and_corrupt_shards(tmp_path, monkeypatch):
    # small steps: the read-back inflates the shard in many, frames cross them
    monkeypatch.setattr(writers, "_SCAN_STEP", 1000)
    task, info = _one_shard(tmp_path, 300)
    path = info["files"]["tfrecord"]
    good = open(path, "rb").read()
    n, ends = writers._scan_frames(good, path)
    assert n == 300 and len(gzip.decompress(good)) > 100 * writers._SCAN_STEP
    assert [SCHEMA.from_example(r)["game_loop"] for r in ends] == [0, 8 * 299]
    whole = gzip.decompress(good)
    for bad, why in ((good[:len(good) // 2], "does not decompress"),
                     (gzip.compress(whole[:-3]), "truncated TFRecord frame"),
                     (good[:100] + bytes([good[100] ^ 0xFF]) + good[101:], "does not decompress")):
        with open(path, "wb") as f:
            f.write(bad)
        with pytest.raises(writers.ShardVerificationError, match=why):
            writers.verify_shard(path, "tfrecord", SCHEMA, 300, info["first_key"],
                                 info["last_key"])


def test_tfrecord_gzip_levels_hold_the_same_records(tmp_path):
    records, sizes = {}, {}
    for level in (1, writers.TFRECORD_GZIP_LEVEL, 6, 9):
        task, info = _one_shard(tmp_path / str(level), 200, gzip_level=level)
        path = info["files"]["tfrecord"]
        records[level] = list(writers.read_tfrecord_file(path))
        sizes[level] = info["bytes"]["tfrecord"]
    assert len(records[1]) == 200
    assert all(r == records[1] for r in records.values())
    assert len(set(sizes.values())) > 1     # the level reaches the compressor
    with pytest.raises(ValueError, match="gzip level 0"):
        _one_shard(tmp_path / "0", 2, gzip_level=0)


def test_shard_bytes_do_not_depend_on_how_rows_arrive(tmp_path, monkeypatch):
    """gzip and Parquet output both depend on how their input is cut into
    calls; the sinks cut it by row count, so a shard is the same bytes
    whether its rows come in one table or in many."""
    out = str(tmp_path)
    samples = [_sample("r", 1, 8 * i) for i in range(300)]
    path = RunLayout(out).batch_path("r")
    writers.write_batch(path, SCHEMA, samples)
    [task] = writers.plan_shards([writers.ReplayBatch(replay_id="r", split="train",
                                                      batch_path=path, num_samples=300)], 300)
    whole = list(writers._task_tables(task))
    digests = set()
    for cuts in ([300], [1, 299], [100, 7, 64, 129], [64] * 4 + [44]):
        tables, start = [], 0
        for n in cuts:
            tables.append(pa.concat_tables(whole).slice(start, n))
            start += n
        monkeypatch.setattr(writers, "_task_tables", lambda t, tables=tables: iter(tables))
        info = writers.write_shard(task, SCHEMA, out)
        digests.add(tuple(open(info["files"][f], "rb").read() for f in writers.FORMATS))
    assert len(digests) == 1
