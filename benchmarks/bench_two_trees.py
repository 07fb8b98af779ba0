"""End-to-end cost of two versions of the code on the same replays, in one run.

    python benchmarks/bench_two_trees.py --before /path/to/old/checkout \\
        [--after .] [--rounds 5] [--workers 1] [REPLAY ...]

Why: a change to what a run writes (the manifest, the dataset card, TFDS
metadata) must not make runs slower or outputs bigger, and this machine is
shared and noisy, so the two versions are timed alternately (ABBA order) in
the same process tree and compared as ratios.  Each round runs
``beam_runner.py`` of each checkout as a subprocess with that checkout as its
working directory (so its own modules are imported), on the same inputs, into
a fresh output; it reports wall time, CPU time (children), samples, and the
bytes per sample of each format (shard files only) and of the whole output.
Both outputs are read through :func:`schemas.run_output.open_run`, which
reads format versions 1 and 2.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.run_output import open_run  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULTS = [
    SHARED / "replays/python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - Curious Minds LE.SC2Replay",
    SHARED / "replays/spawningtool/patch_5_0_4_pvt.SC2Replay",
    SHARED / "replays/spawningtool/patch_4_6_0_pvt.SC2Replay",
]


def run_once(tree: pathlib.Path, replays: list[str], out: pathlib.Path,
             workers: int) -> dict:
    """One ``beam_runner.py`` run of ``tree``: wall, CPU, samples and bytes."""
    argv = [sys.executable, "beam_runner.py", "--replays", *replays, "--out", str(out),
            "--min_mmr", "0", f"--direct_num_workers={workers}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=tree, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(tree)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = open_run(str(out))
    samples = run.manifest.counts.samples_total
    shard_bytes = {fmt: sum(e.bytes for by in [run.manifest.shards.get(fmt, {})]
                            for entries in by.values() for e in entries)
                   for fmt in run.manifest.formats}
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime)
            + (after.ru_stime - before.ru_stime), "samples": samples,
            **{f"{fmt}_B": b / samples for fmt, b in shard_bytes.items()},
            "output_B": total / samples}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=pathlib.Path)
    parser.add_argument("--after", default=REPO, type=pathlib.Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("replays", nargs="*", default=[str(p) for p in DEFAULTS])
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="bench_two_trees_") as tmp:
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name in order:
                out = pathlib.Path(tmp) / f"{name}_{r}"
                results[name].append(run_once(trees[name], args.replays, out, args.workers))
                print(f"round {r} {name}: " + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in results[name][-1].items()), flush=True)
    keys = [k for k in results["before"][0] if k != "samples"]
    samples = {name: {x["samples"] for x in rs} for name, rs in results.items()}
    print(f"samples per run: {samples}")
    print(f"{'':10s} {'before':>10s} {'after':>10s} {'after/before':>13s}   (medians of "
          f"{args.rounds})")
    for key in keys:
        b = statistics.median(x[key] for x in results["before"])
        a = statistics.median(x[key] for x in results["after"])
        print(f"{key:10s} {b:>10.3f} {a:>10.3f} {a / b:>13.3f}")
    ratios = [a["wall"] / b["wall"] for a, b in zip(results["after"], results["before"])]
    print(f"wall after/before per round: {', '.join(f'{x:.3f}' for x in ratios)}")


if __name__ == "__main__":
    main()
