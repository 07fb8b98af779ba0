"""Where one replay's time goes in a sampling worker, stage by stage.

    python benchmarks/bench_replay_stages.py [--replay FILE] [--repeats N]

In one process (Beam and pyarrow imported, as in the worker's child), with
the garbage collector paused as the worker runs a replay
(``pipeline.job.worker.gc_paused``): decode the game and tracker events, featurize
both players (engine-free source), and write the replay's batch as the
worker does (``writers.write_batch``: the layers encoded once,
``schemas.layer_codec``, then an Arrow IPC file); ``encode`` is the
encoding step alone, part of ``write``.  Best of N CPU times per stage, in one run (the shares
compare; absolute figures depend on the machine's load), per sample and as
a share of the total.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_featurize import DEFAULT, players_of  # noqa: E402
from pipeline.output import writers  # noqa: E402
from pipeline.sources.events.source import EventsObservationSource  # noqa: E402
from pipeline.replay.archive import ReplayArchive  # noqa: E402
from pipeline.job.worker import gc_paused  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402

STAGES = ("decode", "featurize", "write", "encode")


def measure(path: str, repeats: int) -> tuple[dict[str, float], int]:
    with open(path, "rb") as f:
        data = f.read()
    schema = SampleSchema()
    out_dir = tempfile.mkdtemp(prefix="bench_stages_")
    batch = os.path.join(out_dir, "batch.arrow")
    best = {s: float("inf") for s in STAGES}
    n = 0
    for _ in range(repeats):
        with gc_paused():
            archive = ReplayArchive(data, path=path)
            t = time.process_time()
            archive.game_events
            archive.tracker_events
            best["decode"] = min(best["decode"], time.process_time() - t)
            t = time.process_time()
            by_player = EventsObservationSource(schema).replay_samples(archive, players_of(archive))
            best["featurize"] = min(best["featurize"], time.process_time() - t)
            samples = [s for v in by_player.values() for s in v]
            for s in samples:
                s["split"] = "train"
            n = len(samples)
            t = time.process_time()
            writers.write_batch(batch, schema, samples)
            best["write"] = min(best["write"], time.process_time() - t)
            t = time.process_time()
            schema.encode_columns(samples)
            best["encode"] = min(best["encode"], time.process_time() - t)
    return best, n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    best, n = measure(args.replay, args.repeats)
    total = best["decode"] + best["featurize"] + best["write"]   # encode is inside write
    source = best["decode"] + best["featurize"]
    print(f"{os.path.basename(args.replay)}: {n} samples, best of {args.repeats}, CPU")
    for stage in STAGES:
        print(f"  {stage:10s} {best[stage]:6.2f} s  {1e6 * best[stage] / n:6.0f} us/sample  "
              f"{best[stage] / total:6.1%}")
    print(f"  {'total':10s} {total:6.2f} s  {1e6 * total / n:6.0f} us/sample")
    print(f"  source only (decode + featurize): {n / source:,.0f} samples/s; with the "
          f"batch write: {n / total:,.0f} samples/s ({source / total:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
