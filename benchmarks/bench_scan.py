"""Metadata-scan throughput on one core, and how its cost grows with input size.

Run: ``python benchmarks/bench_scan.py [--replays ../shared/replays]``.

Files are read into memory first, so the figures measure decoding (header,
details, init data, gamemetadata.json) plus hashing and filtering, not the
disk.  The corpus list is scanned 1x, 2x and 4x in one run (fresh
``ReplayArchive`` each time, nothing cached between files) and the time per
replay is printed for each size: linear cost means a flat per-replay time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.index import filters  # noqa: E402

from pipeline.index import scan

from pipeline.replay import storage


def main(argv=None) -> int:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", default=str(repo.parent / "shared" / "replays"))
    parser.add_argument("--repeats", default="1,2,4",
                        help="multiples of the file list to scan (default: %(default)s)")
    args = parser.parse_args(argv)
    paths = storage.expand_inputs([args.replays])
    blobs = [(p, storage.read_bytes(p)) for p in paths]
    total_mb = sum(len(b) for _, b in blobs) / 1e6
    config = filters.FilterConfig()
    print(f"{len(blobs)} files, {total_mb:.1f} MB, one process (one core)")
    # Warm up imports and protocol module loading (a one-off per process).
    for p, b in blobs:
        scan.scan_bytes(b, p, config)
    base = None
    for k in (int(x) for x in args.repeats.split(",")):
        work = blobs * k
        start = time.perf_counter()
        errors = 0
        for p, b in work:
            errors += scan.scan_bytes(b, p, config).error is not None
        elapsed = time.perf_counter() - start
        per = elapsed / len(work) * 1e3
        base = base or per
        print(f"{k}x: {len(work)} replays in {elapsed:.2f} s = {len(work) / elapsed:.0f} "
              f"replays/s, {per:.2f} ms/replay ({per / base:.2f}x the 1x cost per "
              f"replay), {errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
