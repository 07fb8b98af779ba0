"""Deterministic, atomic shard writing: Parquet and GZIP TFRecord.

Why a two-step write.  A Beam worker must never hold a whole split, and a
replay contributes all its samples or none.  So:

1. Per replay, the sampling step writes one *batch*
   (``DIR/_tmp/batches/<replay_id>.arrow``, Arrow IPC): every sample of every player,
   sorted by (player, loop), each layer encoded once (``schemas.layer_codec``;
   ``SampleSchema.encode_columns``), written atomically after the whole replay
   succeeded (a retried bundle rewrites the same bytes under the same name).
2. :func:`plan_shards` orders a split's batches by replay id and cuts the
   split's sample sequence -- ordered by (replay id, player, loop) -- into
   shards of at most ``max_samples_per_shard`` samples; :func:`write_shard`
   reads one shard's row slices of the batches once and writes them to
   ``DIR/parquet/<split>/<split>-NNNNN-of-MMMMM.parquet`` (Arrow slices as
   they are) and ``DIR/tfrecord/<split>/<split>-NNNNN-of-MMMMM.tfrecord.gz``
   (``tf.train.Example`` s made from the same encoded columns: no layer is
   decoded or re-encoded), each under a temporary name, renamed, then read
   back (:func:`verify_shard`).

The plan depends only on the set of batches, so the shards are identical on
every rerun, whatever the runner, worker count or input order.  Replay ids are
SHA-256 hashes, so ordering by replay id is a random, fixed order over games.

All file access goes through :mod:`pipeline.filesystem`, so ``DIR``
may be local or ``gs://``.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import struct
from typing import Any, Iterable, Iterator, Mapping, Sequence

import google_crc32c
from zlib_ng import zlib_ng

from pipeline import filesystem
from schemas.run_output import FORMATS, RunLayout
from schemas.sample import SPLITS, SampleSchema, sample_key

#: rows per Parquet row group: a shard of the default 2,000 samples is one
#: group (read back once; 3.6% smaller and 10% faster to write than groups
#: of 1,024, measured on the 4.6.0 PvT)
PARQUET_ROW_GROUP = 2048
#: rows per record batch of a replay's batch file (what a shard reads of it)
BATCH_ROWS = 1024

#: TFRecord shards are gzip streams (standard ones, as TensorFlow reads them)
#: written by zlib-ng.  Measured on the 4.6.0 PvT's records: level 3 writes
#: 570 B/sample at 17.8 us/sample, level 6 (the default before) 455 B at
#: 28.2, level 1 877 B at 9.3.  Level 3 is the default: writing must cost
#: little beside the source; ``--tfrecord_gzip_level 6`` trades CPU for ~20%
#: smaller files.  (ISA-L's level 1 wrote 583 B at 4.8 us, but its bytes
#: varied between runs for the same input, which byte-identical reruns forbid.)
TFRECORD_GZIP_LEVEL = 3
TFRECORD_GZIP_LEVELS = tuple(range(1, 10))


class ShardVerificationError(RuntimeError):
    """A shard read back does not match what was written."""


# ----------------------------------------------------------------- TFRecord
def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """One TFRecord frame: length, its masked CRC32C, data, data's masked CRC32C."""
    return b"".join(frame_parts(data))


def frame_groups(records: Sequence[bytes], size: int) -> Iterator[bytes]:
    """The records' TFRecord frames, joined ``size`` records at a time."""
    for i in range(0, len(records), size):
        yield b"".join([p for r in records[i:i + size] for p in frame_parts(r)])


def frame_parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """A TFRecord frame as (header, data, footer), to be joined with others
    (one copy of ``data``, into the caller's buffer)."""
    return (_frame_header(len(data)), data, _PACK_I(_masked_crc(data)))


@functools.lru_cache(maxsize=1 << 14)
def _frame_header(length: int) -> bytes:
    """A frame's length and its masked CRC32C (a shard's records take a few
    hundred distinct lengths: each header is made once)."""
    packed = _PACK_Q(length)
    return packed + _PACK_I(_masked_crc(packed))


_PACK_Q = struct.Struct("<Q").pack
_PACK_I = struct.Struct("<I").pack


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
    with filesystem.open_read(path) as raw:
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield from iter_records(stream)


def check_tfrecord_file(path: str, expected: int | None = None) -> int:
    """Reads a GZIP TFRecord shard through (gzip and record CRCs); returns
    its record count.  Every failure -- missing, truncated, corrupt, or not
    ``expected`` records -- is a :class:`ShardVerificationError` whose one
    line names the file."""
    import zlib
    try:
        n = sum(1 for _ in read_tfrecord_file(path))
    except ShardVerificationError as exc:
        raise ShardVerificationError(f"{path}: corrupt shard ({exc})") from exc
    except EOFError as exc:          # gzip: the stream ends before its end marker
        raise ShardVerificationError(f"{path}: truncated shard ({exc})") from exc
    except (OSError, zlib.error) as exc:   # missing file, BadGzipFile, bad deflate data
        raise ShardVerificationError(f"{path}: unreadable shard ({exc})") from exc
    if expected is not None and n != expected:
        raise ShardVerificationError(f"{path}: {n} records, the manifest says {expected}")
    return n


# ------------------------------------------------------------ batch files
def sort_samples(samples: Iterable[dict]) -> list[dict]:
    """The dataset order: (replay id, player, game loop)."""
    return sorted(samples, key=lambda s: (s["replay_id"], int(s["player_id"]),
                                          int(s["game_loop"])))


#: Shards are zstd Parquet (what users keep: ~170 B/sample).  Batches live
#: until the shards are written and are read once: Arrow IPC files with lz4
#: buffers.  Measured on the 4.6.0 PvT: 4.7 us/sample to write and 2.2 to
#: read (lz4 Parquet: 5.4 and 3.7; zstd Parquet 8.7 and 8.4) at 403 B/sample,
#: and ~1.2 ms per file against Parquet's ~6 (77 columns' pages and footer).
SHARD_COMPRESSION = "zstd"
BATCH_COMPRESSION = "lz4"


def _parquet_writer(sink, schema: SampleSchema, compression: str = SHARD_COMPRESSION):
    import pyarrow.parquet as pq
    # No dictionary encoding: the layer columns are distinct byte strings, and
    # zstd over a page of consecutive samples finds what they share.  Column
    # statistics of binary and list columns are of no use to readers.
    return pq.ParquetWriter(sink, schema.arrow_schema, compression=compression,
                            use_dictionary=False, write_statistics=False)


def write_batch(path: str, schema: SampleSchema, samples: Sequence[dict]) -> int:
    """Writes one replay's samples, sorted and encoded once, as an Arrow IPC
    batch at ``path``, atomically; returns the count.

    Encoding happens here, once per sample, in the worker that holds the
    samples; the shard step copies the encoded columns into every format.
    """
    ordered = sort_samples(samples)
    table = schema.to_arrow(columns=schema.encode_columns(ordered))
    temp = filesystem.temp_name(path)
    with filesystem.create(temp) as raw:
        write_batch_table(raw, table)
    filesystem.rename(temp, path)
    return len(ordered)


def write_batch_table(sink, table) -> None:
    """An Arrow table as a batch file's bytes (IPC, lz4 buffers, record
    batches of ``BATCH_ROWS``) into the open binary ``sink``."""
    import pyarrow as pa
    options = pa.ipc.IpcWriteOptions(compression=BATCH_COMPRESSION)
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)


# -------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class ReplayBatch:
    """One sampled replay's batch file, as shard planning sees it."""
    replay_id: str
    split: str
    batch_path: str     # the Arrow IPC batch (ends in .arrow)
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


def _open_batch(path: str):
    import pyarrow as pa
    return pa.ipc.open_file(pa.BufferReader(filesystem.read(path)))


def read_batch(path: str):
    """A replay's batch file as a pyarrow Table (its layers still encoded)."""
    return _open_batch(path).read_all()


def _task_tables(task: ShardTask) -> Iterator[Any]:
    """Arrow slices of the task's rows, from the batches' record batches."""
    import pyarrow as pa
    for seg in task.segments:
        reader = _open_batch(seg.path)
        offset = 0
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            rows = batch.num_rows
            lo, hi = max(seg.start, offset), min(seg.stop, offset + rows)
            if lo < hi:
                yield pa.Table.from_batches([batch.slice(lo - offset, hi - lo)])
            offset += rows


# ---------------------------------------------------------- shard writing
def write_shard(task: ShardTask, schema: SampleSchema, output_dir: str,
                formats: Sequence[str] = FORMATS,
                gzip_level: int = TFRECORD_GZIP_LEVEL) -> dict[str, Any]:
    """Writes one shard in every format, atomically, and verifies it.

    The batches' row slices are read once; Parquet gets them as they are,
    TFRecord gets Examples made from the same encoded columns.  Returns
    ``{"split", "index", "count", "num_samples", "files": {fmt: path},
    "first_key", "last_key", "bytes": {fmt: size}}``.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}")
    finals = {fmt: RunLayout(output_dir).shard_path(fmt, task.split, task.index, task.count)
              for fmt in formats}
    temps = {fmt: filesystem.temp_name(path) for fmt, path in finals.items()}
    sinks: dict[str, Any] = {}
    n = 0
    first = last = None
    try:
        if "tfrecord" in formats:
            sinks["tfrecord"] = _TFRecordSink(temps["tfrecord"], gzip_level)
        if "parquet" in formats:
            sinks["parquet"] = _ParquetSink(temps["parquet"], schema)
        pending, pending_rows = [], 0
        for table in _task_tables(task):
            if first is None:
                first = _row_key(table, 0)
            last_table = table
            n += table.num_rows
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= PARQUET_ROW_GROUP:
                _write_to_sinks(pending, sinks, schema)
                pending, pending_rows = [], 0
        _write_to_sinks(pending, sinks, schema)
        if n:
            last = _row_key(last_table, last_table.num_rows - 1)
    finally:
        written = _close_all(sinks)
    if n != task.num_samples:
        raise ShardVerificationError(f"{task.split} shard {task.index}: read {n} samples, "
                                     f"planned {task.num_samples}")
    sizes = {}
    for fmt in formats:
        filesystem.rename(temps[fmt], finals[fmt])
        verify_shard(finals[fmt], fmt, schema, task.num_samples, first, last, task.split,
                     written=written[fmt] if fmt == "tfrecord" else None)
        sizes[fmt] = filesystem.size(finals[fmt])
    return {"split": task.split, "index": task.index, "count": task.count,
            "num_samples": task.num_samples, "files": finals, "first_key": first,
            "last_key": last, "bytes": sizes}


def _close_all(sinks: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Closes every sink even when one fails (a full disk fails them all): a
    sink left open would be closed again by the garbage collector, whose
    failure prints a traceback.  Raises the first failure after closing all."""
    written, failure = {}, None
    for fmt, sink in sinks.items():
        try:
            written[fmt] = sink.close()
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return written


def _write_to_sinks(tables: list, sinks: Mapping[str, Any], schema: SampleSchema) -> None:
    """The rows of ``tables`` (slices of batches, in order) into every sink,
    as one table with one chunk per column: Parquet pages and row groups then
    depend only on the rows, never on the slices they came in, and each
    sink's per-column work is paid once per :data:`PARQUET_ROW_GROUP` rows."""
    import pyarrow as pa
    if tables:
        table = pa.concat_tables(tables).combine_chunks()
        for sink in sinks.values():
            sink.write(table, schema)


#: records framed and compressed per call of a TFRecord shard's gzip stream
FRAMES_PER_WRITE = 64


class _TFRecordSink:
    """A GZIP TFRecord file written from Arrow slices of encoded samples;
    remembers the size and CRC32C of the bytes it wrote."""

    def __init__(self, path: str, level: int = TFRECORD_GZIP_LEVEL):
        if level not in TFRECORD_GZIP_LEVELS:
            raise ValueError(f"TFRecord gzip level {level} not in {TFRECORD_GZIP_LEVELS}")
        self._raw = filesystem.create(path)
        self._compress = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
        self._records: list[bytes] = []    # serialized, not yet compressed
        self._size = 0
        self._crc = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._raw.write(data)
            self._size += len(data)
            self._crc = google_crc32c.extend(self._crc, data)

    def write(self, table, schema: SampleSchema) -> None:
        self._records += schema.to_examples(table=table)
        full = len(self._records) - len(self._records) % FRAMES_PER_WRITE
        self._compress_records(full)

    def _compress_records(self, count: int) -> None:
        # Framed and compressed FRAMES_PER_WRITE records at a time, counted
        # from the shard's first record: a gzip stream depends on how its
        # input is cut into calls, and this way the cuts never depend on how
        # the rows arrived (a batch's record batches, a shard's segments),
        # so the bytes are the same on every run.  A few hundred KB per call
        # is also one buffer the allocator reuses, where a table's worth
        # (~8 MB) would be fresh pages every time (4.8 us of page faults per
        # record, measured).
        for frames in frame_groups(self._records[:count], FRAMES_PER_WRITE):
            self._emit(self._compress.compress(frames))
        del self._records[:count]

    def close(self) -> tuple[int, int]:
        if self._compress is not None:
            self._compress_records(len(self._records))
            self._emit(self._compress.flush())
            self._compress = None
            self._raw.close()
        return self._size, self._crc


class _ParquetSink:
    """A Parquet shard written from Arrow tables (see :func:`_write_to_sinks`),
    in row groups of up to :data:`PARQUET_ROW_GROUP` rows."""

    def __init__(self, path: str, schema: SampleSchema):
        self._raw = filesystem.create(path)
        self._writer = _parquet_writer(self._raw, schema)

    def write(self, table, schema: SampleSchema) -> None:
        self._writer.write_table(table, row_group_size=PARQUET_ROW_GROUP)

    def close(self) -> tuple[int, int]:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            finally:
                # A close that failed (no space left) must not be retried by
                # the writer's __del__, which would print its traceback ahead
                # of the run's one-line message.
                writer.is_open = False
                self._raw.close()
        return 0, 0


def _key(sample: dict) -> str:
    return sample_key(sample["replay_id"], sample["player_id"], sample["game_loop"])


def _row_key(table, row: int) -> str:
    """The key of one row of an Arrow table, read from its key columns alone."""
    return sample_key(*(table.column(name)[row].as_py()
                        for name in ("replay_id", "player_id", "game_loop")))


def verify_shard(path: str, fmt: str, schema: SampleSchema, expected: int,
                 first_key: str | None, last_key: str | None,
                 split: str | None = None, written: tuple[int, int] | None = None) -> None:
    """Reads a written shard back: record count; the first and last records
    decode, validate against the schema, have the expected keys and split.

    TFRecord: the file is read once -- its size and CRC32C must equal the
    bytes written (``written``, when given), it must decompress whole, and
    every record frame is counted (the per-record CRCs were computed from the
    same bytes a moment ago); the first and last records are decoded."""
    if fmt == "tfrecord":
        data = filesystem.read(path)
        if written is not None and (len(data), google_crc32c.value(data)) != written:
            raise ShardVerificationError(f"{path}: {len(data)} bytes on disk differ from "
                                         f"the {written[0]} written")
        n, ends = _scan_frames(data, path)
        decoded = [schema.from_example(r) for r in ends]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(io.BytesIO(filesystem.read(path)))
        n = pf.metadata.num_rows
        decoded = []
        if n:
            # each row group read once (a default shard is one); the first and
            # last rows decoded together
            head = pf.read_row_group(0)
            tail = pf.read_row_group(pf.num_row_groups - 1) if pf.num_row_groups > 1 else head
            decoded = schema.from_arrow(pa.concat_tables(
                [head.slice(0, 1), tail.slice(tail.num_rows - 1, 1)]))
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


#: decompressed bytes per step of the read-back: a buffer the allocator
#: reuses (a whole shard, ~17 MB, is fresh pages: ~5 us/sample of faults here)
_SCAN_STEP = 1 << 18


def _scan_frames(data: bytes, path: str) -> tuple[int, list[bytes]]:
    """Decompresses a GZIP TFRecord stream whole, a step at a time, and walks
    its frames: (record count, [first record, last record]) -- or [] when
    empty.  :class:`ShardVerificationError` if the stream does not decompress
    to the end or a frame is cut short."""
    inflate = zlib_ng.decompressobj(31)
    unpack = struct.unpack_from
    pending, pos, n = b"", 0, 0
    first = last = None
    todo = data
    while True:
        try:
            chunk = inflate.decompress(todo, _SCAN_STEP)
        except zlib_ng.error as exc:
            raise ShardVerificationError(f"{path}: does not decompress ({exc})") from exc
        todo = inflate.unconsumed_tail
        buf = pending[pos:] + chunk if pos < len(pending) else chunk
        pos, end, span = 0, len(buf), None
        while pos + 12 <= end:
            (length,) = unpack("<Q", buf, pos)
            stop = pos + 12 + length + 4
            if stop > end:
                break
            span = (pos + 12, stop - 4)
            if first is None:
                first = buf[span[0]:span[1]]
            n += 1
            pos = stop
        if span is not None:
            last = buf[span[0]:span[1]]
        pending = buf
        if inflate.eof or not (chunk or todo):
            break
    if not inflate.eof:
        raise ShardVerificationError(f"{path}: does not decompress (the stream is cut short)")
    if pos != len(pending):
        raise ShardVerificationError(f"{path}: truncated TFRecord frame")
    return n, ([first, last] if n else [])
