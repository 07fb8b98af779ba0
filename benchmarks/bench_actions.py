"""Action-stream throughput and command mapping rate on the shared replays.

    python benchmarks/bench_actions.py [--replays ../shared/replays] [--coverage]

Timing: the longest two-player replay with tracker events at or below
~26,880 loops (a 20-minute game), both players, one core: game-event
decoding, tracker-event decoding and conversion timed separately, plus the
same for a short game so cost growth with length shows; decoding also with
s2protocol's own ``read_bits`` (pipeline/s2protocol_speedup.py off) for the ratio.

``--coverage``: every two-player replay of build 3.0 (38215) or later: share
of SCmdEvents mapped to a pysc2 function, and the unmapped ones by kind.
"""
from __future__ import annotations

import argparse
import collections
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import player_inputs, s2protocol_speedup  # noqa: E402
from pipeline.replay_archive import ReplayArchive, ReplayError  # noqa: E402

TARGET_LOOPS = 26880


def _manifest(root: Path) -> list[dict]:
    with open(root / "MANIFEST.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["game_loops"].isdigit()]


def _two_players(archive: ReplayArchive) -> bool:
    players = [p for p in archive.details.get("m_playerList") or [] if not p.get("m_observe")]
    return len(players) == 2


def time_one(path: Path) -> dict:
    data = path.read_bytes()
    archive = ReplayArchive(data, path=str(path))
    t0 = time.perf_counter()
    events = archive.game_events
    t1 = time.perf_counter()
    archive.tracker_events
    t2 = time.perf_counter()
    streams = player_inputs.player_streams(archive)
    t3 = time.perf_counter()
    return {"file": path.name, "loops": archive.game_loops, "game_events": len(events),
            "actions": sum(len(s.actions) for s in streams.values()),
            "decode_game_s": t1 - t0, "decode_tracker_s": t2 - t1, "convert_s": t3 - t2}


def timing(root: Path) -> None:
    rows = [r for r in _manifest(root) if r["has_tracker_events"] == "1"
            and int(r["base_build"]) >= 38215]
    candidates = []
    for r in sorted(rows, key=lambda r: -int(r["game_loops"])):
        if int(r["game_loops"]) > TARGET_LOOPS * 1.1:
            continue
        archive = ReplayArchive((root / r["file"]).read_bytes(), path=r["file"])
        try:
            if _two_players(archive) and archive.game_events and archive.has_tracker_events:
                candidates.append(r)
        except ReplayError:
            continue  # not decodable with the bundled protocols: not a timing subject
        if len(candidates) == 1:
            break
    short = min((r for r in rows if r["file"].startswith("python-sc2")),
                key=lambda r: int(r["game_loops"]))
    for r in candidates + [short]:
        s2protocol_speedup.uninstall()
        plain = min((time_one(root / r["file"]) for _ in range(3)),
                    key=lambda x: x["decode_game_s"])
        s2protocol_speedup.install()
        best = min((time_one(root / r["file"]) for _ in range(5)),
                   key=lambda x: x["decode_game_s"] + x["convert_s"])
        total = best["decode_game_s"] + best["decode_tracker_s"] + best["convert_s"]
        print(f"{r['file']}: {best['loops']} loops, {best['game_events']} game events, "
              f"{best['actions']} actions (both players)")
        print(f"  decode game events {best['decode_game_s']:.3f} s, tracker events "
              f"{best['decode_tracker_s']:.3f} s, conversion {best['convert_s']:.3f} s, "
              f"total {total:.3f} s ({total / best['loops'] * 1e6:.1f} us/loop)")
        print(f"  s2protocol's own read_bits: game events {plain['decode_game_s']:.3f} s, "
              f"tracker {plain['decode_tracker_s']:.3f} s (speedup "
              f"{plain['decode_game_s'] / best['decode_game_s']:.2f}x / "
              f"{plain['decode_tracker_s'] / best['decode_tracker_s']:.2f}x)")


# Build ranges of the coverage report: (first build, end build, game version).
BUILD_RANGES = [
    (38215, 44401, "3.0-3.3"), (44401, 47185, "3.4-3.6"), (47185, 48258, "3.7"),
    (48258, 51702, "3.8-3.11"), (51702, 59587, "3.12-3.19"), (59587, 80949, "4.x"),
    (80949, 10 ** 9, "5.x"),
]
_COMMAND_KINDS = ("ability:", "map_doodad:", "no_", "unknown_")


def _build_range(build: int) -> tuple[int, int, str]:
    return next(r for r in BUILD_RANGES if r[0] <= build < r[1])


def coverage(root: Path) -> None:
    total = mapped = replays = 0
    unmapped = collections.Counter()
    by_range = collections.defaultdict(lambda: [0, 0, 0, collections.Counter()])
    errors = collections.Counter()
    for r in _manifest(root):
        if int(r["base_build"]) < 38215:
            continue
        try:
            archive = ReplayArchive((root / r["file"]).read_bytes(), path=r["file"])
            if not _two_players(archive):
                continue
            streams = player_inputs.player_streams(archive)
        except ReplayError as exc:
            errors[exc.category] += 1
            continue
        replays += 1
        row = by_range[_build_range(archive.base_build)]
        row[0] += 1
        for s in streams.values():
            total += s.commands
            mapped += s.commands_mapped
            kinds = {k: v for k, v in s.unmapped.items() if k.startswith(_COMMAND_KINDS)}
            unmapped.update(kinds)
            row[1] += s.commands
            row[2] += s.commands_mapped
            row[3].update(kinds)
    print(f"{replays} two-player replays of build >= 38215 ({dict(errors)} failed to decode)")
    print(f"SCmdEvents: {total}, mapped {mapped} ({100.0 * mapped / max(total, 1):.2f}%)")
    for kind, n in unmapped.most_common(40):
        print(f"  {n:6d} {kind}")
    print("by build range (replays, commands, mapped %, top unmapped):")
    for (first, end, label), (n, cmds, ok, kinds) in sorted(by_range.items()):
        top = ", ".join(f"{k} {v}" for k, v in kinds.most_common(4))
        print(f"  {label:>10} [{first}, {end}): {n:3d} replays, {cmds:6d} commands, "
              f"{100.0 * ok / max(cmds, 1):6.2f}% mapped; {top}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replays", default=str(Path(__file__).resolve().parents[2]
                                                  / "shared" / "replays"))
    parser.add_argument("--coverage", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.replays)
    if args.coverage:
        coverage(root)
    else:
        timing(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
