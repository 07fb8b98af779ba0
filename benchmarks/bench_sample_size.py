"""Bytes per sample in each output format, from a pipeline run's own files.

The schema stores every spatial layer in the narrowest integer dtype that
holds it (``schemas.layers.Layer.dtype``).  This reports, for the output of
``beam_runner.py``:

* the in-memory (uncompressed) size of one sample, field group by group;
* the on-disk bytes per sample of the Parquet shards and of the GZIP TFRecord
  shards, per split, from the file sizes and the manifest's sample counts;
* what the same sample would take with every layer stored as int32 (the
  naive choice), to show what the narrow dtypes save before compression.

  python benchmarks/bench_sample_size.py --output DIR
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from schemas.run_output import open_run  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402


def uncompressed_bytes(schema: SampleSchema) -> dict[str, int]:
    """Bytes of one sample's arrays per group, plus the int32 equivalent."""
    out: dict[str, int] = collections.Counter()
    for field in schema.fields:
        if field.is_array:
            out[field.group.value] += field.size * field.np_dtype.itemsize
            out["all_int32"] += field.size * 4
        elif not field.is_string:
            out[field.group.value] += field.np_dtype.itemsize
            out["all_int32"] += 4
    return dict(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="a beam_runner.py output directory")
    args = parser.parse_args(argv)

    run = open_run(args.output)
    manifest = run.manifest
    resolution = manifest.source.resolution
    schema = SampleSchema(resolution, resolution)
    raw = uncompressed_bytes(schema)
    narrow = sum(v for k, v in raw.items() if k != "all_int32")
    print(f"schema {schema!r}: {len(schema.fields)} fields")
    print(f"  uncompressed arrays+scalars: {narrow:,} bytes/sample "
          f"(int32 everywhere would be {raw['all_int32']:,}: "
          f"{raw['all_int32'] / narrow:.2f}x)")
    for group, size in sorted(raw.items()):
        if group != "all_int32":
            print(f"    {group:12s} {size:>9,}")

    print(f"{'format':9s} {'split':11s} {'samples':>9s} {'MiB':>9s} {'bytes/sample':>13s}"
          f" {'vs raw':>7s}")
    for fmt, by_split in sorted(manifest.shards.items()):
        total_bytes = total_samples = 0
        for split, shards in sorted(by_split.items()):
            size = sum(os.path.getsize(run.layout.path(s.path)) for s in shards)
            samples = sum(s.num_samples for s in shards)
            total_bytes += size
            total_samples += samples
            if samples:
                print(f"{fmt:9s} {split:11s} {samples:>9,} {size / 2**20:>9.1f} "
                      f"{size / samples:>13,.0f} {narrow / (size / samples):>6.0f}x")
        if total_samples:
            print(f"{fmt:9s} {'all':11s} {total_samples:>9,} {total_bytes / 2**20:>9.1f} "
                  f"{total_bytes / total_samples:>13,.0f} "
                  f"{narrow / (total_bytes / total_samples):>6.0f}x")


if __name__ == "__main__":
    main()
