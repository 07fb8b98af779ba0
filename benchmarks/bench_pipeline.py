"""Pipeline throughput with 1 and 2 local worker processes, in one run.

    python benchmarks/bench_pipeline.py [--replays N] [--max_loops L] [--out DIR]
        [--runners direct,dask] [--rounds R]

Picks the N shortest two-player replays with tracker events from
../shared/replays (MANIFEST.csv) under L game loops, runs the whole pipeline
(engine-free source, both formats) on them with the local FnApiRunner: 1
worker in-process (what ``--direct_num_workers=1`` runs), 2 worker threads
(the default for more than one), 1 and 2 worker processes
(``multi_processing``), and 2 threads on the first half (how cost grows with
input size).  Prints replays/s, samples/s and the 2-vs-1 speed-ups, and
checks that every run wrote identical shards.
With ``--runners direct,dask`` it also runs the same input on a local
``dask.distributed`` cluster (``LocalCluster``) of 1 and then 2 worker
processes (one thread each), and checks those shards too.

The machine's speed drifts between minutes, so each ratio is taken within a
round (the configurations run back to back, in alternating order from round
to round), and ``--rounds R`` reports the median of the rounds' ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import hashlib
import pathlib
import statistics
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


@contextlib.contextmanager
def runner_args(runner: str, workers: int, mode: str = "multi_processing"):
    """Beam options for ``workers`` local worker processes of ``runner``; a
    Dask cluster is started before (not timed) and closed after the run."""
    if runner == "direct":
        yield [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"]
        return
    from distributed import LocalCluster
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield ["--runner", "DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]


def run_once(replays: list[str], out: pathlib.Path, workers: int,
             runner: str = "direct", mode: str = "multi_processing") -> dict:
    import beam_runner
    argv = ["--replays", *replays, "--out", str(out), "--min_mmr", "0",
            "--max_samples_per_shard", "1000"]
    with runner_args(runner, workers, mode) as extra:
        t0 = time.time()
        manifest = beam_runner.run(argv + extra)
        wall = time.time() - t0
    sampled = manifest.counts.replays_by_status.get("sampled", 0)
    samples = manifest.counts.samples_total
    return {"runner": runner, "workers": workers, "replays": sampled, "samples": samples, "wall_s": wall,
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
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat all configurations; ratios are medians over rounds")
    parser.add_argument("--runners", default="direct",
                        help="comma-separated: direct, dask (needs the dask extra)")
    args = parser.parse_args(argv)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    replays = pick_replays(args.replays, args.max_loops)
    print(f"{len(replays)} replays")
    root = pathlib.Path(args.out or tempfile.mkdtemp(prefix="bench_pipeline_"))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    # (label, input, workers, running mode); the defaults are in-process for
    # 1 worker and worker threads for more
    direct = [("1 worker, in-process", replays, 1, "in_memory"),
              ("1 worker, process", replays, 1, "multi_processing"),
              ("2 worker threads", replays, 2, "multi_threading"),
              ("2 worker processes", replays, 2, "multi_processing"),
              ("2 worker threads, half input", replays[: len(replays) // 2], 2,
               "multi_threading")]
    dask = [("1 worker", replays, 1, ""), ("2 workers", replays, 2, "")]
    plan = [(f"{runner} {label}", subset, workers, runner, mode)
            for runner in runners
            for label, subset, workers, mode in (direct if runner == "direct" else dask)]
    rounds: list[dict] = []
    for number in range(args.rounds):
        results = {}
        for name, subset, workers, runner, mode in (plan if number % 2 == 0 else plan[::-1]):
            out = root / f"round{number}" / name.replace(" ", "_").replace(",", "")
            r = run_once(subset, out, workers, runner, mode)
            results[name] = r
            print(f"round {number + 1} {name:31s} {r['replays']:3d} replays {r['samples']:7d} "
                  f"samples {r['wall_s']:7.1f} s  {r['replays_per_s']:.3f} replays/s  "
                  f"{r['samples_per_s']:.1f} samples/s  "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
        rounds.append(results)

    def ratio(numerator: str, denominator: str) -> str:
        values = [r[numerator]["wall_s"] / r[denominator]["wall_s"] for r in rounds]
        return (f"{statistics.median(values):.2f}"
                + (f" (rounds: {', '.join(f'{v:.2f}' for v in values)})"
                   if len(values) > 1 else ""))
    if "direct" in runners:
        print(f"direct: speed-up 2 vs 1 workers, the defaults (threads / in-process): "
              f"{ratio('direct 1 worker, in-process', 'direct 2 worker threads')}x "
              f"(target >= 1.7x)")
        print(f"direct: speed-up 2 vs 1 worker processes: "
              f"{ratio('direct 1 worker, process', 'direct 2 worker processes')}x")
        two = rounds[0]["direct 2 worker threads"]
        half = rounds[0]["direct 2 worker threads, half input"]
        print(f"cost growth: full input / half input wall (2 threads) = "
              f"{ratio('direct 2 worker threads', 'direct 2 worker threads, half input')} "
              f"for {two['samples'] / max(half['samples'], 1):.2f}x the samples")
    if "dask" in runners:
        print(f"dask: speed-up 2 vs 1 workers: {ratio('dask 1 worker', 'dask 2 workers')}x")
    if {"direct", "dask"} <= set(runners):
        print(f"dask / direct wall, 1 worker process: "
              f"{ratio('dask 1 worker', 'direct 1 worker, process')}; 2 worker processes: "
              f"{ratio('dask 2 workers', 'direct 2 worker processes')}")
    digests = {f"{name} (round {number + 1})":
               shard_digest(root / f"round{number}" / name.replace(" ", "_").replace(",", ""))
               for number, results in enumerate(rounds) for name in results
               if "half" not in name}
    same = len(set(digests.values())) == 1
    print(f"shards identical across {', '.join(digests)}: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
