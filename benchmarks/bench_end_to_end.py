"""End-to-end ``beam_runner.py`` throughput against the source alone, per replay.

    python benchmarks/bench_end_to_end.py [--replays FILE ...] [--repeats N] [--copies K]
        [--inside N] [--rounds R] [--verbose] | --growth K [--max_loops L]

For each replay, in one run: the source-only rate (decode + featurize both
players with the engine-free source, best of N, CPU, as
``bench_replay_stages.py`` measures it) and the whole pipeline
(``beam_runner.py`` in a fresh process, 1 worker, both formats: the CPU time
of all its processes, which a shared machine's load does not inflate, and
the wall clock), twice:

* on that replay alone: what a one-replay run costs, start-up included;
* on K copies of it (the file with 1..K zero bytes appended: distinct replay
  ids, the same game; K at least ``--copies``, and enough that the copies add
  ``--inside`` samples, so a short replay is measured on as much work as a
  long one): the difference between the two runs, per copy, is
  what the replay costs end to end inside a run -- decode, featurize, batch,
  shards, Beam's per-element work -- without what every run pays once
  (Python and Beam start-up, the sampling child's imports, the scan's and
  the manifest's fixed work).

Each round measures all of these, minutes apart; the table gives the best of
each over the rounds, and the median over rounds of each round's own ratio
(inside a run, CPU), which a machine whose speed drifts between minutes
moves least.  Each round also runs the source alone over the same K copies,
each once (half before the two runs, half after): the same input over as
long a stretch of the machine's time as the runs' difference, so both sides
of that second ratio are means over the same work, where a best of N short
repeats catches the machine's fastest moment for the source only
(``--verbose`` prints each round).

A run of the pipeline on an input that samples nothing (one replay filtered
out) shows that fixed cost on its own.

``--growth K``: the pipeline (1 worker) on the first 1/4, 1/2 and all of the
K shortest two-player replays with tracker events (``bench_pipeline.py``'s
pick), and the source alone on the same replays: the least-squares line
through (samples, CPU seconds) gives the fixed cost of a run and the
marginal end-to-end rate, compared with the source-only rate on those
replays.
"""
from __future__ import annotations

import argparse
import statistics
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from typing import Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replays"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from schemas.run_output import Manifest  # noqa: E402

DEFAULTS = [
    SHARED / "python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - Curious Minds LE.SC2Replay",
    SHARED / "spawningtool/patch_5_0_4_pvt.SC2Replay",
    SHARED / "spawningtool/patch_4_6_0_pvt.SC2Replay",
]
FILTERED = SHARED / "sc2reader/4.3.0.64469/1.SC2Replay"   # a game against the AI


def _source_cpu(path: str) -> tuple[int, float]:
    """(samples, CPU seconds) of decode + featurize of one replay file, once."""
    from bench_featurize import players_of
    from pipeline.replay.bounded_process import gc_paused
    from pipeline.replay.archive import ReplayArchive
    from pipeline.sources.events.source import EventsObservationSource
    from schemas.sample import SampleSchema
    data = pathlib.Path(path).read_bytes()
    with gc_paused():
        t = time.process_time()
        archive = ReplayArchive(data, path=path)
        by_player = EventsObservationSource(SampleSchema()).replay_samples(
            archive, players_of(archive))
        cpu = time.process_time() - t
    return sum(len(v) for v in by_player.values()), cpu


def source_rate(path: str, repeats: int) -> tuple[int, float]:
    """(samples, samples per CPU second) of decode + featurize, best of ``repeats``."""
    best, n = float("inf"), 0
    for _ in range(repeats):
        n, cpu = _source_cpu(path)
        best = min(best, cpu)
    return n, n / best


def source_cpu_over(paths: Sequence[str]) -> tuple[int, float]:
    """(samples, CPU seconds) of decode + featurize of each file once, in
    order: the source alone on the same input, and over as long a stretch of
    the machine's time, as a pipeline run on those files."""
    total_n = total_cpu = 0
    for path in paths:
        n, cpu = _source_cpu(path)
        total_n, total_cpu = total_n + n, total_cpu + cpu
    return total_n, total_cpu


def pipeline_cost(path: str | list[str], out: pathlib.Path) -> tuple[int, float, float]:
    """(samples, wall seconds, CPU seconds of every process of the run) of
    ``beam_runner.py`` on one file (or several), 1 worker."""
    paths = [path] if isinstance(path, str) else list(path)
    argv = [sys.executable, str(REPO / "beam_runner.py"), "--replays", *paths, "--out",
            str(out), "--min_mmr", "0", "--direct_num_workers=1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.time()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Manifest.load(str(out)).counts.samples_total, wall, cpu


def growth(k: int, max_loops: int, root: pathlib.Path) -> None:
    """Fixed cost and marginal end-to-end rate from runs on growing inputs."""
    from bench_pipeline import pick_replays
    replays = pick_replays(k, max_loops)
    total_n = total_cpu = 0.0
    for path in replays:
        n, rate = source_rate(path, 1)
        total_n, total_cpu = total_n + n, total_cpu + n / rate
    source = total_n / total_cpu
    points = []
    for part in (len(replays) // 4, len(replays) // 2, len(replays)):
        n, wall, cpu = pipeline_cost(replays[:part], root / f"growth{part}")
        points.append((n, cpu))
        print(f"  {part:3d} replays {n:7d} samples: {cpu:6.1f} s CPU, {wall:6.1f} s wall",
              flush=True)
    mean_n = sum(p[0] for p in points) / len(points)
    mean_c = sum(p[1] for p in points) / len(points)
    slope = (sum((n - mean_n) * (c - mean_c) for n, c in points)
             / sum((n - mean_n) ** 2 for n, _ in points))
    fixed = mean_c - slope * mean_n
    print(f"source alone on these {len(replays)} replays: {source:,.0f} samples/s; "
          f"pipeline: {fixed:.1f} s CPU per run + {1e6 * slope:.0f} us per sample = "
          f"{1 / slope:,.0f} samples/s marginal ({1 / slope / source:.0%} of the source)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", nargs="+", default=[str(p) for p in DEFAULTS])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds of the three measurements; best of each")
    parser.add_argument("--copies", type=int, default=5,
                        help="copies of each replay in the second run (>= 2)")
    parser.add_argument("--inside", type=int, default=0,
                        help="at least this many samples added by the copies: more "
                             "copies of a short replay, so noise weighs the same")
    parser.add_argument("--verbose", action="store_true", help="each round's figures")
    parser.add_argument("--growth", type=int, default=0,
                        help="fit cost against input size on the K shortest replays")
    parser.add_argument("--max_loops", type=int, default=16000,
                        help="--growth: replays up to this many game loops")
    args = parser.parse_args(argv)
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    if args.growth:
        growth(args.growth, args.max_loops, root)
        return 0
    _, fixed_wall, fixed = pipeline_cost(str(FILTERED), root / "fixed")
    print(f"fixed cost (a run that samples nothing): {fixed:.1f} s CPU, {fixed_wall:.1f} s "
          f"wall; load average {os.getloadavg()[0]:.1f}")
    print(f"{'replay':28s} {'samples':>7s} {'source/s':>8s} | {'1 copy: CPU s':>13s} "
          f"{'e2e/s':>6s} {'ratio':>6s} | {'K':>3s} copies: {'CPU s':>6s} {'wall s':>6s} | "
          f"{'per copy/s':>10s} {'ratio':>6s} {'(wall)':>6s} | median of rounds (rounds) | "
          f"against the source over the same copies: median (rounds)")
    for i, path in enumerate(args.replays):
        n, _ = source_rate(path, 1)            # also the warm-up of the source's caches
        k = max(args.copies, 1 + -(-args.inside // n))
        copies = make_copies(path, k, root / f"copies{i}")
        # Rounds interleave the measurements, so a shared machine's slow
        # minutes hit all of them alike; the source alone runs over the same
        # copies as the runs, half before them and half after.
        best = {"rate": 0.0, "cpu1": float("inf"), "wall1": float("inf"),
                "cpuk": float("inf"), "wallk": float("inf")}
        ratios, same_input = [], []
        for r in range(args.rounds):
            n, rate = source_rate(path, args.repeats)
            n_a, cpu_a = source_cpu_over(copies[:k // 2])
            m, wall1, cpu1 = pipeline_cost(path, root / f"run{i}r{r}")
            assert m == n, (m, n)
            mk, wallk, cpuk = pipeline_cost(copies, root / f"run{i}x{k}r{r}")
            assert mk == n * k, (mk, n, k)
            n_b, cpu_b = source_cpu_over(copies[k // 2:])
            inside = n * (k - 1) / max(cpuk - cpu1, 1e-9)
            over_copies = (n_a + n_b) / (cpu_a + cpu_b)
            ratios.append(inside / rate)
            same_input.append(inside / over_copies)
            if args.verbose:
                print(f"  round {r}: source best of {args.repeats} {rate:,.0f}/s, over the "
                      f"{k} copies {over_copies:,.0f}/s; runs {cpu1:.2f} s (1 copy) and "
                      f"{cpuk:.2f} s ({k}); inside {inside:,.0f}/s: {ratios[-1]:.1%} and "
                      f"{same_input[-1]:.1%}", flush=True)
            for key, value in (("cpu1", cpu1), ("wall1", wall1), ("cpuk", cpuk),
                               ("wallk", wallk)):
                best[key] = min(best[key], value)
            best["rate"] = max(best["rate"], rate)
        rate, cpu1, wall1, cpuk, wallk = (best[k] for k in ("rate", "cpu1", "wall1", "cpuk",
                                                            "wallk"))
        per_copy = n * (k - 1) / max(cpuk - cpu1, 1e-9)
        per_copy_wall = n * (k - 1) / max(wallk - wall1, 1e-9)
        print(f"{os.path.basename(path)[:28]:28s} {n:7d} {rate:8.0f} | {cpu1:13.1f} "
              f"{n / cpu1:6.0f} {n / cpu1 / rate:6.1%} | {k:3d}{'':8s}"
              f"{cpuk:6.1f} {wallk:6.1f} | {per_copy:10.0f} {per_copy / rate:6.1%} "
              f"{per_copy_wall / rate:6.1%} | {statistics.median(ratios):6.1%} "
              f"({' '.join(f'{x:.0%}' for x in ratios)}) | {statistics.median(same_input):6.1%} "
              f"({' '.join(f'{x:.0%}' for x in same_input)})", flush=True)
    return 0


def make_copies(path: str, k: int, folder: pathlib.Path) -> list[str]:
    """``k`` copies of a replay that are distinct files (1..k zero bytes
    appended, which the archive reader ignores): distinct replay ids, the
    same game and samples."""
    folder.mkdir(parents=True)
    data = pathlib.Path(path).read_bytes()
    out = []
    for i in range(1, k + 1):
        copy = folder / f"copy{i:03d}.SC2Replay"
        copy.write_bytes(data + b"\0" * i)
        out.append(str(copy))
    return out


if __name__ == "__main__":
    sys.exit(main())
