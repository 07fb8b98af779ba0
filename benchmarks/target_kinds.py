"""Does each window's target have the kind of the player's first input?

A check of the sampling rule against the raw replay, independent of how
``pipeline/`` reads events: for every replay the pipeline samples (its scan
and default filters: decisive two-player games), the player's game events are
decoded here with mpyq and s2protocol directly, and for every window
``[t, t + 8)`` the kind of the player's first input (none, camera, selection,
control group or command) is compared with the kind of the window's target.

The targets come from the pipeline's own functions, the ones the engine-free
source calls (``player_streams`` then ``sample_windows``); the mask plays no
part in choosing a target, so every window start is given an empty mask and
nothing is featurized.  Windows whose target is unknown
(``schemas.layers.UNKNOWN``) are counted apart: agreement is over windows
with a known target, and the figure with them counted as disagreements is
printed next to it.

What counts as an input here, from the raw events alone:

* ``SCmdEvent``: command;
* ``SCameraUpdateEvent`` with a target that moves the camera (a repeated
  target is no move): camera, except the game's own placement at the start
  (a player's first camera update at loop <= 16 before any other input);
* ``SSelectionDeltaEvent`` of the active selection (control group 10): selection;
* ``SControlGroupUpdateEvent``: control group, except a clear (update 3),
  which the game's API cannot express (``ActionControlGroup`` has recall,
  set, append and the two steals), so pysc2 never reports one.

Replays whose build s2protocol does not bundle are decoded with the nearest
bundled protocol at or below it (else above), as ``pipeline/replay`` does;
replays whose game events s2protocol cannot decode (Wings of Liberty
protocols) are skipped and counted.

    python benchmarks/target_kinds.py --replays ../shared/replays --out target_kinds.json

Writes the agreement by replay kind (tracker events or not, game version,
anonymized or not) and every disagreement by (input kind, target kind) with
examples to ``--out``; prints a summary.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import mpyq
from s2protocol import versions as s2_versions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.actions.player_inputs import UnitPositions, player_streams  # noqa: E402
from pipeline.index.filters import FilterConfig, filter_reason  # noqa: E402
from pipeline.index.scan import scan_bytes  # noqa: E402
from pipeline.replay.archive import ReplayArchive, ReplayError  # noqa: E402
from pipeline.replay.storage import expand_inputs, read_bytes  # noqa: E402
from pipeline.sampling.rule import sample_windows, window_starts  # noqa: E402
from schemas import layers  # noqa: E402

KINDS = ("none", "camera", "selection", "control_group", "command")
UNKNOWN_KIND = "unknown"
AUTO_CAMERA_MAX_LOOP = 16
ACTIVE_SELECTION = 10
CONTROL_GROUP_CLEAR = 3
#: pysc2 function ids of the selection functions (select_point .. select_larva).
_SELECTION_FUNCTIONS = frozenset(range(2, 10)) - {4}


def target_kind(function_id: int) -> str:
    """The kind of a pysc2 function id (``unknown`` for ``layers.UNKNOWN``)."""
    if function_id == layers.UNKNOWN:
        return UNKNOWN_KIND
    if function_id == layers.NO_OP:
        return "none"
    if function_id == 1:
        return "camera"
    if function_id == 4:
        return "control_group"
    if function_id in _SELECTION_FUNCTIONS:
        return "selection"
    return "command"


# ------------------------------------------------------------ raw reading
def _bundled_builds() -> list[int]:
    folder = os.path.dirname(s2_versions.__file__)
    return sorted(int(m.group(1)) for name in os.listdir(folder)
                  if (m := re.fullmatch(r"protocol(\d+)\.py", name)))


def _protocol(base_build: int):
    builds = _bundled_builds()
    if base_build in builds:
        return s2_versions.build(base_build), True
    i = bisect.bisect_right(builds, base_build)
    return s2_versions.build(builds[i - 1] if i else builds[0]), False


class RawReplay:
    """What this check reads from a replay, with s2protocol only."""

    def __init__(self, data: bytes):
        archive = mpyq.MPQArchive(io.BytesIO(data))
        header = s2_versions.latest().decode_replay_header(archive.header["user_data_header"]["content"])
        self.base_build = header["m_version"]["m_baseBuild"]
        v = header["m_version"]
        self.version = f"{v['m_major']}.{v['m_minor']}.{v['m_revision']}"
        self.game_loops = header["m_elapsedGameLoops"]
        files = set(archive.files or ())
        self.anonymized = b"replay.details" not in files and b"replay.details.backup" in files
        self.has_tracker_file = b"replay.tracker.events" in files
        protocol, self.protocol_exact = _protocol(self.base_build)
        details = protocol.decode_replay_details(
            archive.read_file("replay.details") or archive.read_file("replay.details.backup"))
        init = protocol.decode_replay_initdata(
            archive.read_file("replay.initData") or archive.read_file("replay.initData.backup"))
        slots = init["m_syncLobbyState"]["m_lobbyState"]["m_slots"]
        #: player id (1-based in details) -> the user id its game events carry.
        #: Details entries join lobby slots by working-set slot id; without
        #: one, they follow the playing slots in order.
        self.user_ids: dict[int, int] = {}
        players = details["m_playerList"]
        by_wsid = {sl.get("m_workingSetSlotId"): sl for sl in slots
                   if sl.get("m_control") in (2, 3) and sl.get("m_workingSetSlotId") is not None}
        playing = [sl for sl in slots if sl.get("m_control") == 3
                   or (sl.get("m_control") == 2 and not sl.get("m_observe"))]
        for i, player in enumerate(players):
            slot = by_wsid.get(player.get("m_workingSetSlotId"))
            if slot is None and i < len(playing):
                slot = playing[i]
            if slot is not None and slot.get("m_control") == 2 and slot.get("m_userId") is not None:
                self.user_ids[i + 1] = slot["m_userId"]
        if getattr(protocol, "replay_userid_typeid", None) is None:
            raise ValueError("s2protocol cannot decode this build's game events")
        self.events = list(protocol.decode_replay_game_events(archive.read_file("replay.game.events")))


def input_kinds(events: list[dict[str, Any]], user_id: int) -> list[tuple[int, str]]:
    """(loop, kind) of each input of one user, in order (rules in the module docstring)."""
    out: list[tuple[int, str]] = []
    camera = None
    had_input = False
    for ev in events:
        if ev.get("_userid", {}).get("m_userId") != user_id:
            continue
        name, loop = ev["_event"], ev["_gameloop"]
        if name == "NNet.Game.SCmdEvent":
            kind = "command"
        elif name == "NNet.Game.SCameraUpdateEvent":
            target = ev.get("m_target")
            if not target:
                continue
            first = camera is None
            moved = (target["x"], target["y"]) != camera
            camera = (target["x"], target["y"])
            if first and not had_input and loop <= AUTO_CAMERA_MAX_LOOP:
                continue  # the game placing the camera
            if not moved:
                continue
            kind = "camera"
        elif name == "NNet.Game.SSelectionDeltaEvent":
            if ev["m_controlGroupId"] != ACTIVE_SELECTION:
                continue
            kind = "selection"
        elif name == "NNet.Game.SControlGroupUpdateEvent":
            had_input = True
            if ev["m_controlGroupUpdate"] == CONTROL_GROUP_CLEAR:
                continue
            kind = "control_group"
        else:
            continue
        had_input = True
        out.append((loop, kind))
    return out


def first_input_kinds(inputs: list[tuple[int, str]], game_loops: int,
                      step_mul: int) -> dict[int, str]:
    """Window start -> the kind of the first input in the window ('none' if none)."""
    out = {t: "none" for t in window_starts(game_loops, step_mul)}
    for loop, kind in inputs:
        start = loop - loop % step_mul
        if 0 <= loop < game_loops and out.get(start) == "none":
            out[start] = kind
    return out


# ------------------------------------------------------------ the check
def pipeline_targets(data: bytes, path: str, player_ids: list[int],
                     step_mul: int) -> tuple[dict[int, dict[int, int]], bool]:
    """Player id -> window start -> target function id, as the events source
    chooses them; and whether the pipeline sees tracker events."""
    archive = ReplayArchive(data, path=path)
    try:
        tracker = archive.tracker_events
    except ReplayError:
        tracker = []
    streams = player_streams(archive, unit_positions=UnitPositions(tracker))
    empty = [False] * layers.NUM_FUNCTIONS
    out = {}
    for pid in player_ids:
        stream = streams[pid]
        starts = window_starts(archive.game_loops, step_mul)
        windows = sample_windows(archive.game_loops, stream.actions,
                                 {t: empty for t in starts}, step_mul)
        out[pid] = {w.game_loop: w.target.function_id for w in windows}
    return out, bool(archive.has_tracker_events and tracker)


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def run(paths: list[str], step_mul: int = 8, examples: int = 5) -> dict[str, Any]:
    config = FilterConfig()
    buckets: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    pairs: collections.Counter = collections.Counter()
    pair_examples: dict[str, list] = collections.defaultdict(list)
    unknown_by_input: collections.Counter = collections.Counter()
    skipped: collections.Counter = collections.Counter()
    skipped_files: list[dict] = []
    seen: set[str] = set()
    replays = 0
    for path in paths:
        data = read_bytes(path)
        scan = scan_bytes(data, path)
        replay = scan.replay
        if (replay is None or replay["status"] != "ok" or replay["replay_id"] in seen
                or filter_reason(replay, scan.players, config) is not None):
            continue
        seen.add(replay["replay_id"])
        player_ids = sorted(p["player_id"] for p in scan.players)
        try:
            targets, tracker = pipeline_targets(data, path, player_ids, step_mul)
        except (ReplayError, KeyError, ValueError) as exc:
            skipped["pipeline does not sample it"] += 1
            skipped_files.append({"path": path, "reason": f"pipeline: {exc!r}"[:200]})
            continue
        try:
            raw = RawReplay(data)
        except Exception as exc:  # s2protocol raises its own CorruptedError, TruncatedError...
            skipped["s2protocol cannot decode its game events"] += 1
            skipped_files.append({"path": path, "reason": f"s2protocol: {exc!r}"[:200]})
            continue
        missing = [pid for pid in player_ids if pid not in raw.user_ids]
        if missing:
            skipped["no lobby user id for a player"] += 1
            skipped_files.append({"path": path, "reason": f"no user id for {missing}"})
            continue
        replays += 1
        keys = [f"tracker_events={'yes' if tracker else 'no'}",
                f"tracker_events={'yes' if tracker else 'no'}, version {_major_minor(raw.version)}",
                f"anonymized={'yes' if raw.anonymized else 'no'}", "all"]
        for k in keys:
            buckets[k]["replays"] += 1
        for pid in player_ids:
            kinds = first_input_kinds(input_kinds(raw.events, raw.user_ids[pid]),
                                      raw.game_loops, step_mul)
            for start, fid in targets[pid].items():
                got = target_kind(fid)
                want = kinds.get(start, "none")
                for k in keys:
                    c = buckets[k]
                    c["windows"] += 1
                    if got == UNKNOWN_KIND:
                        c["target_unknown"] += 1
                    elif got == want:
                        c["agree"] += 1
                    else:
                        c["disagree"] += 1
                if got == UNKNOWN_KIND:
                    unknown_by_input[f"{want} -> target unknown"] += 1
                elif got != want:
                    pair = f"first input {want} -> target {got} ({'with' if tracker else 'without'} tracker events)"
                    pairs[pair] += 1
                    if len(pair_examples[pair]) < examples:
                        pair_examples[pair].append({"path": path, "player_id": pid,
                                                    "window": start, "function_id": fid})
    by_kind = {}
    for key, c in sorted(buckets.items()):
        known = c["agree"] + c["disagree"]
        by_kind[key] = {**{k: c[k] for k in ("replays", "windows", "agree", "disagree",
                                             "target_unknown")},
                        "agreement": c["agree"] / known if known else None,
                        "agreement_unknown_as_disagreement":
                            c["agree"] / c["windows"] if c["windows"] else None,
                        "target_unknown_fraction":
                            c["target_unknown"] / c["windows"] if c["windows"] else None}
    return {"replays_checked": replays, "skipped": dict(skipped), "skipped_files": skipped_files,
            "step_mul": step_mul, "agreement_by_replay_kind": by_kind,
            "disagreements": [{"kind": k, "windows": n, "examples": pair_examples[k]}
                              for k, n in pairs.most_common()],
            "target_unknown_by_first_input": dict(unknown_by_input.most_common())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replays", default=str(Path(__file__).resolve().parents[2] / "shared" / "replays"))
    p.add_argument("--out", default="target_kinds.json")
    p.add_argument("--step_mul", type=int, default=8)
    args = p.parse_args(argv)
    started = time.perf_counter()
    paths = expand_inputs([args.replays])
    result = run(paths, args.step_mul)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['replays_checked']} replays checked, skipped {result['skipped']}, "
          f"{result['seconds']} s")
    for key, c in result["agreement_by_replay_kind"].items():
        agree = "n/a" if c["agreement"] is None else f"{100 * c['agreement']:.2f}%"
        print(f"  {key}: {c['replays']} replays, {c['windows']} windows, agreement {agree} "
              f"(target unknown {100 * c['target_unknown_fraction']:.2f}%, counted as "
              f"disagreement {100 * c['agreement_unknown_as_disagreement']:.2f}%)")
    for d in result["disagreements"]:
        print(f"  {d['windows']:7d}  {d['kind']}")
    for k, n in result["target_unknown_by_first_input"].items():
        print(f"  {n:7d}  {k}")


if __name__ == "__main__":
    main()
