"""Pipeline throughput with 1 and 2 local worker processes, in one run.

    python benchmarks/bench_pipeline.py [--replays N] [--max_loops L] [--out DIR]

Picks the N shortest two-player replays with tracker events from
../shared/replays (MANIFEST.csv) under L game loops, runs the whole pipeline
(engine-free source, both formats) on them with the DirectRunner in
multi-processing mode with 1 and then 2 workers, and on the first half with 2
workers (how cost grows with input size).  Prints replays/s, samples/s and
the 2-vs-1 speed-up, and checks that both runs wrote identical shards.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replays"
sys.path.insert(0, str(REPO))


def pick_replays(n: int, max_loops: int) -> list[str]:
    from pipeline.index import scan
    from pipeline.replay import storage
    from pipeline.index.filters import FilterConfig
    from pipeline.replay.archive import ReplayArchive, ReplayError
    rows = list(csv.DictReader(open(SHARED / "MANIFEST.csv")))
    rows.sort(key=lambda r: int(r["game_loops"] or 0))
    picked = []
    for r in rows:
        if r["has_tracker_events"] != "1" or not 2000 < int(r["game_loops"]) <= max_loops:
            continue
        path = str(SHARED / r["file"])
        try:
            archive = ReplayArchive(storage.read_bytes(path), path=path)
            row, _ = scan.scan_replay(archive, FilterConfig(min_mmr=0))
            archive.tracker_events  # noqa: B018  (skip replays whose events do not decode)
        except ReplayError:
            continue
        if row["status"] == "ok":
            picked.append(path)
        if len(picked) == n:
            break
    return picked


def run_once(replays: list[str], out: pathlib.Path, workers: int) -> dict:
    import beam_runner
    argv = ["--replays", *replays, "--output", str(out), "--min_mmr", "0",
            "--max_samples_per_shard", "1000",
            f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    t0 = time.time()
    manifest = beam_runner.run(argv)
    wall = time.time() - t0
    sampled = manifest["counts"]["replays_by_status"].get("sampled", 0)
    samples = manifest["counts"]["samples_total"]
    return {"workers": workers, "replays": sampled, "samples": samples, "wall_s": wall,
            "replays_per_s": sampled / wall, "samples_per_s": samples / wall}


def shard_digest(out: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.parts[-3] in ("parquet", "tfrecord"):
            h.update(str(p.relative_to(out)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", type=int, default=24)
    parser.add_argument("--max_loops", type=int, default=16000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    replays = pick_replays(args.replays, args.max_loops)
    print(f"{len(replays)} replays")
    root = pathlib.Path(args.out or tempfile.mkdtemp(prefix="bench_pipeline_"))
    results = []
    for label, subset, workers in (("1 worker", replays, 1), ("2 workers", replays, 2),
                                   ("2 workers, half input", replays[: len(replays) // 2], 2)):
        r = run_once(subset, root / label.replace(" ", "_").replace(",", ""), workers)
        results.append(r)
        print(f"{label:24s} {r['replays']:3d} replays {r['samples']:7d} samples "
              f"{r['wall_s']:7.1f} s  {r['replays_per_s']:.3f} replays/s  "
              f"{r['samples_per_s']:.1f} samples/s", flush=True)
    one, two, half = results
    print(f"speed-up 2 vs 1 workers: {one['wall_s'] / two['wall_s']:.2f}x "
          f"(target >= 1.6x)")
    print(f"cost growth: full input / half input wall = {two['wall_s'] / half['wall_s']:.2f} "
          f"for {two['samples'] / max(half['samples'], 1):.2f}x the samples")
    same = shard_digest(root / "1_worker") == shard_digest(root / "2_workers")
    print(f"1-worker and 2-worker shards identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
