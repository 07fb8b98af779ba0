"""Engine-free featurizing cost against decoding cost, and corpus coverage.

Default mode, one replay (a ~19-minute 1v1 by default), all in one run:
  1. decode its game and tracker events (fresh archive),
  2. featurize both players at step 8 (``EventsObservationSource.replay_samples``
     on the decoded archive: input streams, unit tracking, fog, layers,
     masks, sample assembly),
both with the garbage collector paused as the pipeline's replay worker runs
them (``pipeline.replay.bounded_process.gc_paused``; the default replay once more with it on),
and prints both times and their ratio (target: featurize <= 3x decode), the
same for shorter replays (how cost grows with game length), the mean mask
size, the rate of targets the source's mask missed, and the position
estimate errors (hold last known vs. command-directed movement).

Last figures (CPU time, best of 5, end of session 3, machine shared with a
training job; docs/engine_free_source.md "Performance"): patch_5_0_16b
2.62-2.90x with the collector paused (as the pipeline's worker runs), 2.50-2.60x
with it on (3.53-3.64x for the session-start tree in the same window); the
python-sc2 PvP 2.26-2.39x; patch_4_6_0_pvt 2.09-2.18x.

``--corpus`` runs every two-player replay with tracker events in the shared
MANIFEST.csv and reports failures, sample counts against ceil(loops / 8),
target-in-mask and mask sizes.

  python benchmarks/bench_featurize.py [--replay FILE] [--repeats N] [--corpus]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import math
import os
import sys
import time
from typing import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from pipeline.sources.events.source import EventsObservationSource  # noqa: E402
from pipeline.index.player_context import PlayerContext  # noqa: E402
from pipeline.sources.interface import SourceError
from pipeline.replay.archive import ReplayArchive, ReplayError  # noqa: E402
from pipeline.replay.bounded_process import gc_paused  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "replays")
DEFAULT = os.path.join(SHARED, "spawningtool", "patch_5_0_16b.SC2Replay")
SCALING = (os.path.join(SHARED, "python-sc2",
                        "20220223 - GAME 1 - Astrea vs SKillous - P vs P - Curious Minds LE.SC2Replay"),
           os.path.join(SHARED, "spawningtool", "patch_4_6_0_pvt.SC2Replay"))


def players_of(archive: ReplayArchive) -> list[PlayerContext]:
    return [PlayerContext(i + 1, "undecided", {})
            for i, p in enumerate(archive.details["m_playerList"]) if not p.get("m_observe")]


def measure(path: str, position_estimate: str = "hold", repeats: int = 1,
            pause_gc: bool = True) -> dict:
    """Decode and featurize times (best of ``repeats``, interleaved, so both
    see the same machine load), wall clock and this process's CPU time (the
    CPU ratio is steadier on a machine shared with other jobs).

    ``pause_gc``: both phases with the cyclic garbage collector paused, as
    the pipeline's replay worker runs them (``pipeline.replay.bounded_process.gc_paused``).
    """
    with open(path, "rb") as f:
        data = f.read()
    gc_mode = gc_paused if pause_gc else contextlib.nullcontext
    decode = featurize = decode_cpu = featurize_cpu = float("inf")
    for _ in range(repeats):
        gc.collect()
        archive = ReplayArchive(data, path=path)
        with gc_mode():
            t0, c0 = time.perf_counter(), time.process_time()
            archive.game_events
            archive.tracker_events
            decode = min(decode, time.perf_counter() - t0)
            decode_cpu = min(decode_cpu, time.process_time() - c0)
            source = EventsObservationSource(SampleSchema(), position_estimate=position_estimate)
            t0, c0 = time.perf_counter(), time.process_time()
            samples = source.replay_samples(archive, players_of(archive))
            featurize = min(featurize, time.perf_counter() - t0)
            featurize_cpu = min(featurize_cpu, time.process_time() - c0)
    n = sum(len(v) for v in samples.values())
    return {"path": path, "loops": archive.game_loops, "decode_s": decode,
            "featurize_s": featurize, "ratio": featurize / decode, "samples": n,
            "cpu_ratio": featurize_cpu / decode_cpu, "stats": source.last_stats}


def corpus(manifest: str) -> None:
    rows = [r for r in csv.DictReader(open(manifest)) if r["has_tracker_events"] == "1"]
    ok = failed = skipped = 0
    windows = {True: 0, False: 0}
    added = {True: 0, False: 0}
    sizes = {True: [], False: []}
    for row in rows:
        path = os.path.join(os.path.dirname(manifest), row["file"])
        try:
            archive = ReplayArchive(open(path, "rb").read(), path=path)
            players = players_of(archive)
            if len(players) != 2:
                skipped += 1
                continue
            source = EventsObservationSource(SampleSchema())
            samples = source.replay_samples(archive, players)
        except (ReplayError, SourceError) as exc:
            failed += 1
            print(f"  error {row['file']}: {str(exc)[:120]}")
            continue
        expected = math.ceil(archive.game_loops / 8)
        complete = all(len(samples[p.player_id]) == expected for p in players)
        in_mask = all(s["available_actions"][s["function_id"]] for v in samples.values()
                      for s in v)
        if not (complete and in_mask):
            print(f"  INCOMPLETE {row['file']}: complete={complete} in_mask={in_mask}")
        ok += 1
        st = source.last_stats
        tracked = bool(st["has_tracker_events"])
        windows[tracked] += st["windows"]
        added[tracked] += st["target_added_to_mask"]
        sizes[tracked].append(st["mean_mask_size"])
    print(f"corpus: {ok} two-player replays featurized, {failed} errors, {skipped} not 1v1")
    for tracked in (True, False):
        print(f"  {'with' if tracked else 'without (undecodable)'} tracker events: "
              f"{len(sizes[tracked])} replays, windows {windows[tracked]}, target missed by "
              f"source mask {added[tracked] / max(windows[tracked], 1):.3%}, mean mask size "
              f"{np.mean(sizes[tracked]) if sizes[tracked] else 0:.1f} of 573")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", default=DEFAULT)
    parser.add_argument("--corpus", action="store_true")
    parser.add_argument("--repeats", type=int, default=3,
                        help="best-of-N timing (interleaved decode / featurize)")
    parser.add_argument("--manifest", default=os.path.join(SHARED, "MANIFEST.csv"))
    args = parser.parse_args(argv)
    if args.corpus:
        corpus(args.manifest)
        return 0
    for path in (args.replay,) + SCALING:
        r = measure(path, repeats=args.repeats)
        st = r["stats"]
        print(f"{os.path.basename(path)}: {r['loops']} loops, {r['samples']} samples; "
              f"decode {r['decode_s']:.2f} s, featurize {r['featurize_s']:.2f} s, "
              f"ratio {r['ratio']:.2f}x (CPU time {r['cpu_ratio']:.2f}x); featurize "
              f"{1e6 * r['featurize_s'] / r['samples']:.0f} us/sample; mean mask {st['mean_mask_size']:.1f}; target missed "
              f"{st['target_added_to_mask'] / st['windows']:.2%}")
    r = measure(args.replay, repeats=args.repeats, pause_gc=False)
    print(f"{os.path.basename(args.replay)} with the garbage collector on in both phases: "
          f"decode {r['decode_s']:.2f} s, featurize {r['featurize_s']:.2f} s, ratio "
          f"{r['ratio']:.2f}x (CPU time {r['cpu_ratio']:.2f}x)")
    r = measure(args.replay, "command")
    e = r["stats"]["position_errors"]
    print(f"position estimate vs next reported position ({e['reports']:.0f} reports, world "
          f"units): hold mean {e['hold_mean']:.2f} median {e['hold_median']:.2f}; command "
          f"mean {e['command_mean']:.2f} median {e['command_median']:.2f}; featurize with "
          f"command estimate {r['featurize_s']:.2f} s ({r['ratio']:.2f}x decode)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
