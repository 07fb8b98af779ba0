"""Throughput and peak memory of ``schemas.sample_reader`` on a multi-shard output.

    python benchmarks/bench_reader.py [--data DIR] [--shard_samples 500] [--repeats 3]

Without ``--data`` it runs the pipeline (events source, Parquet only, every
replay in train) on ``../shared/replays/python-sc2`` into a temp folder,
with ``--shard_samples`` samples per shard, so that the output has many
shards.  Each mode runs in a fresh child process that reads every split of
the output once, then ``--repeats`` times timed; it reports samples/s (best
of the repeats) and the child's peak RSS during the first pass above its RSS
before it (imports done), after a quarter of the shards and at the end,
next to the decoded size of one shard and of the whole output: a streaming
reader's peak follows the shard, not the output.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: mode -> (reader call, columns: "all" or "scalars")
MODES = {
    "iter_columns, all columns, a shard at a time": ("iter_columns", "all", None),
    "iter_columns, all columns, 256 rows at a time": ("iter_columns", "all", 256),
    "iter_columns, scalar columns": ("iter_columns", "scalars", None),
    "iter_samples, all columns": ("iter_samples", "all", None),
    "read_split per split (concatenated), all columns": ("read_split", "all", None),
}


def _status_kb(key: str) -> int:
    """A ``/proc/self/status`` memory figure in KB (Linux): ``VmRSS`` now,
    ``VmHWM`` its peak.  (Not ``ru_maxrss``: a child started by
    ``subprocess`` can report the parent's peak there.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def child(data: str, call: str, kind: str, batch_rows: int | None, repeats: int) -> dict:
    """One mode, measured in this (fresh) process: the first pass gives the
    peak memory (after the first quarter of the shards and at the end: a
    streaming read's does not grow), the repeats the throughput."""
    from schemas import sample_reader
    from schemas.run_output import open_run
    run = open_run(data)
    schema = run.manifest.sample_schema()
    columns = None if kind == "all" else [f.name for f in schema.fields if not f.is_array]
    splits = run.manifest.split_names()
    shards = len(list(run.iter_shards("parquet", splits)))
    sample_reader.read_shard(next(run.iter_shards("parquet", splits))[0], ["value"])
    base = _status_kb("VmRSS")                    # imports done, nothing decoded
    early: list[int] = []

    def once() -> tuple[int, int]:
        n = largest = dicts = 0
        if call == "read_split":
            for split in splits:
                cols = sample_reader.read_split(run, split, columns)
                n += len(next(iter(cols.values())))
                largest = max(largest, sum(c.nbytes for c in cols.values()))
            return n, largest
        if call == "iter_samples":
            for _ in sample_reader.iter_samples(run, splits, columns):
                n += 1
            return n, largest
        for cols in sample_reader.iter_columns(run, splits, columns, batch_rows=batch_rows):
            n += len(next(iter(cols.values())))
            largest = max(largest, sum(c.nbytes for c in cols.values()))
            dicts += 1
            if dicts == max(1, shards // 4) and not early:
                early.append(_status_kb("VmHWM"))
        return n, largest

    samples, largest = once()
    peak = _status_kb("VmHWM")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return {"samples": samples, "samples_per_s": samples / best,
            "peak_above_start_mb": (peak - base) / 2**10,
            "peak_after_quarter_mb": (early[0] - base) / 2**10 if early else None,
            "largest_dict_mb": largest / 2**20}


def make_output(out: Path, shard_samples: int) -> None:
    import beam_runner
    replays = REPO.parent / "shared" / "replays" / "python-sc2"
    beam_runner.run(["--replays", str(replays), "--out", str(out), "--engine", "events",
                     "--formats", "parquet", "--min_mmr", "0", "--splits", "train=1.0",
                     "--max_samples_per_shard", str(shard_samples),
                     "--direct_num_workers=1", "--direct_running_mode=in_memory"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a pipeline output DIR (default: made from python-sc2)")
    p.add_argument("--shard_samples", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        data, call, kind, rows = args.child
        print(json.dumps(child(data, call, kind, int(rows) or None, args.repeats)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = str(Path(tmp) / "out")
            make_output(Path(data), args.shard_samples)
        from schemas.run_output import open_run
        from schemas.sample_reader import read_shard
        run = open_run(data)
        paths = [path for path, _ in run.iter_shards("parquet", run.manifest.split_names())]
        total = run.manifest.counts.samples_total
        one = read_shard(paths[0])
        rows = len(one["value"])
        per_sample = sum(c.nbytes for c in one.values()) / rows
        print(f"output: {total} samples in {len(paths)} Parquet shards "
              f"({sum(Path(p).stat().st_size for p in paths) / 2**20:.1f} MB on disk); "
              f"decoded {per_sample / 1024:.0f} KB/sample: one shard of {rows} samples "
              f"{rows * per_sample / 2**20:.0f} MB, the output {total * per_sample / 2**20:.0f} MB")
        for label, (call, kind, batch_rows) in MODES.items():
            result = subprocess.run(
                [sys.executable, __file__, "--repeats", str(args.repeats), "--child", data,
                 call, kind, str(batch_rows or 0)], capture_output=True, text=True, check=True)
            r = json.loads(result.stdout.strip().splitlines()[-1])
            quarter = (f", +{r['peak_after_quarter_mb']:.0f} MB after a quarter of it"
                       if r["peak_after_quarter_mb"] is not None else "")
            print(f"{label}: {r['samples_per_s']:,.0f} samples/s; peak RSS "
                  f"+{r['peak_above_start_mb']:.0f} MB over the output{quarter} "
                  f"(largest dict {r['largest_dict_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
