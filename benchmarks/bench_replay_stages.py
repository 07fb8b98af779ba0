"""Where one replay's CPU goes in the pipeline, stage by stage.

    python benchmarks/bench_replay_stages.py [--replay FILE] [--repeats N]

In one process, garbage collector off (as in the sampling worker), best of N
per stage: the source (decode, featurize), then each step of writing both
formats with the pipeline's own pieces -- the layers encoded
(``SampleSchema.encode_columns``), the Arrow table, the batch file (Arrow IPC,
``writers.BATCH_COMPRESSION``) written and read back, the shards' tables of
2,000 rows (one chunk per column, as ``writers.write_shard`` hands them to
both formats), ``tf.train.Example`` s,
TFRecord frames (``writers.frame_parts``), gzip at the TFRecord level, the
TFRecord read-back (``writers._scan_frames``), Parquet shards and their
read-back.  The same data goes through every stage once per
repeat, so caches are warmer than in a run: a run pays ~1.5x these figures
(docs/pipeline.md, "Writing at the speed of the source", which quotes them).
"""
from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_featurize import DEFAULT, players_of  # noqa: E402
from pipeline.output import writers  # noqa: E402
from pipeline.replay.archive import ReplayArchive  # noqa: E402
from pipeline.sources.events.source import EventsObservationSource  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402

SHARD = 2000


def measure(path: str, repeats: int) -> tuple[dict[str, float], int, dict[str, int]]:
    """(best CPU seconds per stage, samples, bytes per format)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from zlib_ng import zlib_ng
    data = open(path, "rb").read()
    schema = SampleSchema()
    best: dict[str, float] = {}

    def timed(name: str, f: Callable[[], Any]) -> Any:
        t = time.process_time()
        out = f()
        best[name] = min(best.get(name, float("inf")), time.process_time() - t)
        return out

    gc.disable()
    try:
        for _ in range(repeats):
            archive = ReplayArchive(data, path=path)
            timed("decode", lambda: (archive.game_events, archive.tracker_events))
            by_player = timed("featurize", lambda: EventsObservationSource(schema).replay_samples(
                archive, players_of(archive)))
            samples = writers.sort_samples(s for v in by_player.values() for s in v)
            for s in samples:
                s["split"] = "train"
            n = len(samples)
            columns = timed("layers encoded (layer_codec)", lambda: schema.encode_columns(samples))
            table = timed("Arrow table", lambda: schema.to_arrow(columns=columns))

            def batch_write() -> bytes:
                buf = io.BytesIO()
                writers.write_batch_table(buf, table)
                return buf.getvalue()

            batch = timed("batch file written (Arrow IPC)", batch_write)

            def batch_read() -> list:
                reader = pa.ipc.open_file(pa.BufferReader(batch))
                return [pa.Table.from_batches([reader.get_batch(i)])
                        for i in range(reader.num_record_batches)]

            tables = timed("batch file read (shard step)", batch_read)
            shards = timed("the shards' tables (one chunk per column)", lambda: [
                pa.concat_tables(tables).slice(i, SHARD).combine_chunks()
                for i in range(0, n, SHARD)])
            records = timed("Examples (example_wire)",
                            lambda: [r for t in shards for r in schema.to_examples(table=t)])
            frames = timed("TFRecord frames", lambda: list(
                writers.frame_groups(records, writers.FRAMES_PER_WRITE)))

            def gzip() -> bytes:
                c = zlib_ng.compressobj(writers.TFRECORD_GZIP_LEVEL, zlib_ng.DEFLATED, 31)
                return b"".join([c.compress(f) for f in frames] + [c.flush()])

            stream = timed(f"gzip (zlib-ng level {writers.TFRECORD_GZIP_LEVEL})", gzip)
            timed("TFRecord read-back", lambda: writers._scan_frames(stream, path))

            def parquet() -> list[bytes]:
                out = []
                for shard in shards:
                    buf = io.BytesIO()
                    w = writers._parquet_writer(buf, schema)
                    w.write_table(shard, row_group_size=writers.PARQUET_ROW_GROUP)
                    w.close()
                    out.append(buf.getvalue())
                return out

            files = timed("Parquet shards (zstd)", parquet)
            timed("Parquet read-back", lambda: [pq.ParquetFile(io.BytesIO(f)).read()
                                                for f in files])
    finally:
        gc.enable()
    return best, n, {"tfrecord": len(stream), "parquet": sum(map(len, files))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    best, n, sizes = measure(args.replay, args.repeats)
    print(f"{os.path.basename(args.replay)}: {n} samples; TFRecord {sizes['tfrecord'] / n:.0f} "
          f"B/sample, Parquet {sizes['parquet'] / n:.0f} B/sample")
    source = best["decode"] + best["featurize"]
    writing = sum(best.values()) - source
    for name, seconds in best.items():
        print(f"  {name:34s} {seconds / n * 1e6:7.1f} us/sample  "
              f"{seconds / (source + writing):6.1%}")
    print(f"  {'source (decode + featurize)':34s} {source / n * 1e6:7.1f} us/sample")
    print(f"  {'writing (everything else)':34s} {writing / n * 1e6:7.1f} us/sample "
          f"({writing / source:.0%} of the source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
