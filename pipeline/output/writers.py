"""Deterministic, atomic shard writing: Parquet and GZIP TFRecord.

Why a two-step write.  Samples are big (~180 KB uncompressed each, ~4,000 per
replay and player) and a Beam worker must never hold a whole split.  So:

1. Per replay, the sampling step writes one *batch* per output format
   (``DIR/_tmp/batches/<replay_id>.tfrecord.gz`` and ``.parquet``): every
   sample of every player, sorted by (player, loop), encoded once, written
   atomically after the whole replay succeeded (all or nothing; a retried
   bundle rewrites the same bytes under the same name).
2. :func:`plan_shards` orders a split's batches by replay id and cuts the
   split's sample sequence -- ordered by (replay id, player, loop) -- into
   shards of at most ``max_samples_per_shard`` samples; :func:`write_shard`
   copies one shard's slices of batch files (records, Arrow row slices) into
   ``DIR/parquet/<split>/<split>-NNNNN-of-MMMMM.parquet`` and
   ``DIR/tfrecord/<split>/<split>-NNNNN-of-MMMMM.tfrecord.gz``, each written
   under a temporary name, renamed, then read back (count, first and last
   record decoded and compared).

The plan depends only on the set of batches, so the shards are identical on
every rerun, whatever the runner, worker count or input order.  Replay ids are
SHA-256 hashes, so ordering by replay id is a random, fixed order over games.

All file access goes through ``apache_beam.io.filesystems.FileSystems``, so
``DIR`` may be local or ``gs://``.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import struct
import uuid
from typing import Any, Iterable, Iterator, Sequence

import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.sample import SPLITS, SampleSchema, sample_key

FORMATS: tuple[str, ...] = ("parquet", "tfrecord")
EXTENSIONS = {"parquet": ".parquet", "tfrecord": ".tfrecord.gz"}
PARQUET_ROW_GROUP = 256


class ShardVerificationError(RuntimeError):
    """A shard read back does not match what was written."""


# ----------------------------------------------------------------- TFRecord
def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """One TFRecord frame: length, its masked CRC32C, data, data's masked CRC32C."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length)) + data
            + struct.pack("<I", _masked_crc(data)))


def iter_records(stream: io.RawIOBase | io.BufferedIOBase) -> Iterator[bytes]:
    """Records of a TFRecord stream (already decompressed), CRCs checked."""
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) != 12:
            raise ShardVerificationError("truncated TFRecord header")
        length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
        if _masked_crc(length_bytes) != length_crc:
            raise ShardVerificationError("TFRecord length CRC mismatch")
        (length,) = struct.unpack("<Q", length_bytes)
        data = stream.read(length)
        footer = stream.read(4)
        if len(data) != length or len(footer) != 4:
            raise ShardVerificationError("truncated TFRecord data")
        if _masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise ShardVerificationError("TFRecord data CRC mismatch")
        yield data


def read_tfrecord_file(path: str) -> Iterator[bytes]:
    """Records of a GZIP TFRecord file on any Beam filesystem."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield from iter_records(stream)


# ------------------------------------------------------------ atomic files
def temp_name(path: str) -> str:
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}.tmp-{uuid.uuid4().hex[:12]}"


def commit(temp: str, final: str) -> None:
    """Renames ``temp`` to ``final`` (replacing an earlier attempt's file)."""
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([temp], [final])


def write_bytes_atomic(path: str, data: bytes) -> None:
    temp = temp_name(path)
    with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    commit(temp, path)


# ------------------------------------------------------------ batch files
def batch_path(output_dir: str, replay_id: str) -> str:
    """The batch's TFRecord file; its Parquet twin is :func:`batch_parquet_path`."""
    return FileSystems.join(output_dir, "_tmp", "batches", f"{replay_id}.tfrecord.gz")


def batch_parquet_path(path: str) -> str:
    return path[: -len(EXTENSIONS["tfrecord"])] + EXTENSIONS["parquet"]


def sort_samples(samples: Iterable[dict]) -> list[dict]:
    """The dataset order: (replay id, player, game loop)."""
    return sorted(samples, key=lambda s: (s["replay_id"], int(s["player_id"]),
                                          int(s["game_loop"])))


def _parquet_writer(sink, schema: SampleSchema):
    import pyarrow.parquet as pq
    # No dictionary encoding: 3x faster to write and read for these columns
    # (fixed-size lists of small integers), at ~6x the size of dictionary pages.
    # Column statistics of list columns are of no use to readers.
    return pq.ParquetWriter(sink, schema.arrow_schema, compression="zstd",
                            use_dictionary=False, write_statistics=False)


def write_batch(path: str, schema: SampleSchema, samples: Sequence[dict],
                formats: Sequence[str] = FORMATS) -> int:
    """Writes one replay's samples, sorted, in each format the shards need
    (TFRecord at ``path``, Parquet at its twin), atomically; returns the count.

    Encoding happens here, once per sample, in the worker that holds the
    samples; the shard step only copies records and Arrow slices.
    """
    ordered = sort_samples(samples)
    commits = []
    if "tfrecord" in formats:
        temp = temp_name(path)
        with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=1,
                               mtime=0) as out:
                for sample in ordered:
                    out.write(encode_record(schema.to_example(sample)))
        commits.append((temp, path))
    if "parquet" in formats:
        final = batch_parquet_path(path)
        temp = temp_name(final)
        with FileSystems.create(temp, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            writer = _parquet_writer(raw, schema)
            try:
                for i in range(0, len(ordered), PARQUET_ROW_GROUP):
                    writer.write_table(schema.to_arrow(ordered[i:i + PARQUET_ROW_GROUP]))
            finally:
                writer.close()
        commits.append((temp, final))
    for temp, final in commits:
        commit(temp, final)
    return len(ordered)


# -------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class ReplayBatch:
    """One sampled replay's batch file, as shard planning sees it."""
    replay_id: str
    split: str
    batch_path: str     # the TFRecord batch; its Parquet twin is batch_parquet_path()
    num_samples: int


@dataclasses.dataclass(frozen=True)
class Segment:
    """Records ``[start, stop)`` of one batch file."""
    path: str
    replay_id: str
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int          # shards in the split
    segments: tuple[Segment, ...]

    @property
    def num_samples(self) -> int:
        return sum(s.stop - s.start for s in self.segments)


def shard_name(split: str, index: int, count: int, fmt: str) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{EXTENSIONS[fmt]}"


def shard_path(output_dir: str, fmt: str, split: str, index: int, count: int) -> str:
    return FileSystems.join(output_dir, fmt, split, shard_name(split, index, count, fmt))


def plan_shards(batches: Iterable[ReplayBatch],
                max_samples_per_shard: int) -> list[ShardTask]:
    """Cuts each split into shards of at most ``max_samples_per_shard`` samples.

    ``batches``: one per sampled replay.  Deterministic in the set of
    batches.  A split without samples gets no shard.
    """
    if max_samples_per_shard < 1:
        raise ValueError("max_samples_per_shard must be >= 1")
    by_split: dict[str, list[ReplayBatch]] = {}
    for b in batches:
        if b.num_samples > 0:
            by_split.setdefault(b.split, []).append(b)
    tasks = []
    for split in sorted(by_split, key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s)):
        items = sorted(by_split[split], key=lambda b: b.replay_id)
        total = sum(b.num_samples for b in items)
        count = -(-total // max_samples_per_shard)
        shards: list[list[Segment]] = [[] for _ in range(count)]
        position = 0
        for b in items:
            start = 0
            while start < b.num_samples:
                shard = position // max_samples_per_shard
                room = (shard + 1) * max_samples_per_shard - position
                stop = min(b.num_samples, start + room)
                shards[shard].append(Segment(b.batch_path, b.replay_id, start, stop))
                position += stop - start
                start = stop
        tasks += [ShardTask(split, i, count, tuple(segs)) for i, segs in enumerate(shards)]
    return tasks


def _task_records(task: ShardTask) -> Iterator[bytes]:
    for seg in task.segments:
        for i, record in enumerate(read_tfrecord_file(seg.path)):
            if i >= seg.stop:
                break
            if i >= seg.start:
                yield record


def _task_tables(task: ShardTask) -> Iterator[Any]:
    """Arrow slices of the task's rows, from the batches' Parquet twins."""
    import pyarrow.parquet as pq
    for seg in task.segments:
        with FileSystems.open(batch_parquet_path(seg.path),
                              compression_type=CompressionTypes.UNCOMPRESSED) as f:
            pf = pq.ParquetFile(io.BytesIO(f.read()))
        offset = 0
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            lo, hi = max(seg.start, offset), min(seg.stop, offset + rows)
            if lo < hi:
                yield pf.read_row_group(g).slice(lo - offset, hi - lo)
            offset += rows


# ---------------------------------------------------------- shard writing
def write_shard(task: ShardTask, schema: SampleSchema, output_dir: str,
                formats: Sequence[str] = FORMATS) -> dict[str, Any]:
    """Writes one shard in every format, atomically, and verifies it.

    TFRecord records and Parquet rows are copied from the batch files as they
    are (the batch already holds the split).  Returns ``{"split", "index",
    "count", "num_samples", "files": {fmt: path}, "first_key", "last_key"}``.
    """
    import pyarrow as pa
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}")
    finals = {fmt: shard_path(output_dir, fmt, task.split, task.index, task.count)
              for fmt in formats}
    temps = {fmt: temp_name(path) for fmt, path in finals.items()}
    counts = {}
    keys = {}
    if "tfrecord" in formats:
        n = 0
        first = last = None
        with FileSystems.create(temps["tfrecord"],
                                compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6,
                               mtime=0) as out:
                for record in _task_records(task):
                    first = record if first is None else first
                    last = record
                    out.write(encode_record(record))
                    n += 1
        counts["tfrecord"] = n
        keys["tfrecord"] = [_key(schema.from_example(r)) for r in (first, last) if r]
    if "parquet" in formats:
        n = 0
        pending: list = []
        with FileSystems.create(temps["parquet"],
                                compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            writer = _parquet_writer(raw, schema)
            try:
                for table in _task_tables(task):
                    if n == 0:
                        head = schema.from_arrow(table.slice(0, 1))[0]
                    tail = table
                    n += table.num_rows
                    pending.append(table)
                    if sum(t.num_rows for t in pending) >= PARQUET_ROW_GROUP:
                        writer.write_table(pa.concat_tables(pending),
                                           row_group_size=PARQUET_ROW_GROUP)
                        pending = []
                if pending:
                    writer.write_table(pa.concat_tables(pending),
                                       row_group_size=PARQUET_ROW_GROUP)
            finally:
                writer.close()
        counts["parquet"] = n
        keys["parquet"] = ([_key(head), _key(schema.from_arrow(
            tail.slice(tail.num_rows - 1, 1))[0])] if n else [])
    for fmt in formats:
        if counts[fmt] != task.num_samples:
            raise ShardVerificationError(f"{task.split} shard {task.index} ({fmt}): read "
                                         f"{counts[fmt]} samples, planned {task.num_samples}")
    first_last = next(iter(keys.values()))
    if any(k != first_last for k in keys.values()):
        raise ShardVerificationError(f"formats disagree on first/last keys: {keys}")
    first, last = (first_last + [None, None])[:2] if first_last else (None, None)
    for fmt in formats:
        commit(temps[fmt], finals[fmt])
        verify_shard(finals[fmt], fmt, schema, task.num_samples, first, last, task.split)
    return {"split": task.split, "index": task.index, "count": task.count,
            "num_samples": task.num_samples, "files": finals, "first_key": first,
            "last_key": last}


def _key(sample: dict) -> str:
    return sample_key(sample["replay_id"], sample["player_id"], sample["game_loop"])


def verify_shard(path: str, fmt: str, schema: SampleSchema, expected: int,
                 first_key: str | None, last_key: str | None,
                 split: str | None = None) -> None:
    """Reads a written shard back: record count; the first and last records
    decode, validate against the schema, have the expected keys and split."""
    if fmt == "tfrecord":
        first = last = None
        n = 0
        for record in read_tfrecord_file(path):
            if first is None:
                first = record
            last = record
            n += 1
        decoded = [schema.from_example(r) for r in (first, last) if r is not None]
    else:
        import pyarrow.parquet as pq
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            pf = pq.ParquetFile(io.BytesIO(f.read()))
            n = pf.metadata.num_rows
            decoded = []
            if n:
                tail = pf.read_row_group(pf.num_row_groups - 1)
                decoded = [schema.from_arrow(pf.read_row_group(0).slice(0, 1))[0],
                           schema.from_arrow(tail.slice(tail.num_rows - 1, 1))[0]]
    if n != expected:
        raise ShardVerificationError(f"{path}: {n} records, expected {expected}")
    if n:
        for sample in decoded:
            schema.validate(sample)
            if split is not None and sample["split"] != split:
                raise ShardVerificationError(f"{path}: sample of split "
                                             f"{sample['split']!r} in a {split!r} shard")
        if (_key(decoded[0]), _key(decoded[-1])) != (first_key, last_key):
            raise ShardVerificationError(
                f"{path}: first/last keys {_key(decoded[0])}/{_key(decoded[-1])} != "
                f"{first_key}/{last_key}")
