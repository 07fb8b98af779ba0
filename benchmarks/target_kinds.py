"""Does each window's target have the kind of the player's first input?

A check of the sampling rule against the raw replay, independent of how
``pipeline/`` reads events: for every replay the pipeline samples (its scan
and default filters: decisive two-player games), the player's game events are
decoded here directly (mpyq + s2protocol, else sc2reader: see below), and for
every window ``[t, t + 8)`` the kind of the player's first input (none, camera, selection,
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

Two raw decoders, neither of them ``pipeline/replay``'s:

* s2protocol, wherever it decodes the game events.  Builds it does not bundle
  are decoded with the nearest bundled protocol at or below it (else above);
* sc2reader (its per-build readers and its engine's ``ContextLoader``, which
  names each event's player) where s2protocol cannot: Wings of Liberty
  protocols (s2protocol has no game-event user ids for them) and the builds
  whose nearest protocol fails.  The same rules over sc2reader's event classes
  (``CommandEvent`` but not ``UpdateTarget*CommandEvent``, ``CameraEvent`` with
  a target, ``SelectionEvent`` of group 10, ``ControlGroupEvent`` but not
  ``DeleteControlGroupEvent``, update 3); its camera events are built so that
  a missing target stays missing (sc2reader reports it as (0, 0)).

Cross-check: on replays s2protocol decodes (all of them, or ``--cross_check
N``), sc2reader decodes them too and the per-window first-input kinds of the
two are compared (``cross_check_s2protocol_vs_sc2reader``).

Skipped and counted (``skipped``, ``skipped_files``): replays the pipeline
does not sample (its own decoder fails), replays neither raw decoder reads,
and replays whose sampled players no raw decoder can name.

    python benchmarks/target_kinds.py --replays ../shared/replays --out target_kinds.json

Writes the agreement by replay kind (tracker events or not, game version,
anonymized or not, raw decoder), the cross-check, and every disagreement by
(input kind, target kind, tracker events or not, decoder) with examples to
``--out``; prints a summary.
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
from s2protocol.decoders import CorruptedError, TruncatedError
from sc2reader import exceptions as sc2_exceptions
from sc2reader import resources as sc2_resources
from sc2reader.events import game as sc2_game_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.actions.player_inputs import UnitPositions, player_streams  # noqa: E402
from pipeline.index.filters import FilterConfig  # noqa: E402
from pipeline.index.scan import kept_replays  # noqa: E402
from pipeline.replay.archive import ReplayArchive, ReplayError  # noqa: E402
from pipeline.replay.storage import expand_inputs  # noqa: E402
from pipeline.sampling.rule import sample_windows, window_starts  # noqa: E402
from schemas import layers  # noqa: E402

KINDS = ("none", "camera", "selection", "control_group", "command")
UNKNOWN_KIND = "unknown"
AUTO_CAMERA_MAX_LOOP = 16
ACTIVE_SELECTION = 10
CONTROL_GROUP_CLEAR = 3
#: sc2reader's game event id of a camera update.
SC2READER_CAMERA_EVENT = 49
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
    """What this check reads from a replay: the header, files and details with
    mpyq + s2protocol; each player's inputs with s2protocol or, where
    s2protocol cannot decode the game events, with sc2reader."""

    def __init__(self, data: bytes, player_ids: list[int], decoder: str = "auto"):
        archive = mpyq.MPQArchive(io.BytesIO(data))
        header = s2_versions.latest().decode_replay_header(archive.header["user_data_header"]["content"])
        self.base_build = header["m_version"]["m_baseBuild"]
        v = header["m_version"]
        self.version = f"{v['m_major']}.{v['m_minor']}.{v['m_revision']}"
        self.game_loops = header["m_elapsedGameLoops"]
        files = set(archive.files or ())
        self.anonymized = b"replay.details" not in files and b"replay.details.backup" in files
        self.has_tracker_file = b"replay.tracker.events" in files
        #: why s2protocol was not used (None when it was).
        self.s2protocol_error: str | None = None
        #: player id -> (loop, kind) of each of the player's inputs.
        self.inputs: dict[int, list[tuple[int, str]]] = {}
        if decoder in ("auto", "s2protocol"):
            try:
                self.inputs = s2protocol_inputs(archive, self.base_build, player_ids)
                self.decoder = "s2protocol"
                return
            except S2PROTOCOL_ERRORS as exc:
                if decoder == "s2protocol":
                    raise
                self.s2protocol_error = repr(exc)[:200]
        self.inputs = sc2reader_inputs(data, player_ids)
        self.decoder = "sc2reader"


#: s2protocol errors of game events it cannot decode: its own, and what a
#: neighbouring build's protocol lets through (a missing field or type).
S2PROTOCOL_ERRORS = (CorruptedError, TruncatedError, ValueError, KeyError, IndexError,
                     TypeError, AttributeError)


class MissingPlayers(ValueError):
    """Some sampled player has no events owner the raw decoder can name."""


def s2protocol_inputs(archive: mpyq.MPQArchive, base_build: int,
                      player_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """Player id -> its inputs, from game events decoded with s2protocol.

    Builds s2protocol does not bundle are decoded with the nearest bundled
    protocol at or below it (else above); Wings of Liberty protocols raise
    ``ValueError`` (s2protocol cannot decode their game events)."""
    protocol, _exact = _protocol(base_build)
    details = protocol.decode_replay_details(
        archive.read_file("replay.details") or archive.read_file("replay.details.backup"))
    init = protocol.decode_replay_initdata(
        archive.read_file("replay.initData") or archive.read_file("replay.initData.backup"))
    slots = init["m_syncLobbyState"]["m_lobbyState"]["m_slots"]
    #: player id (1-based in details) -> the user id its game events carry.
    #: Details entries join lobby slots by working-set slot id; without
    #: one, they follow the playing slots in order.
    user_ids: dict[int, int] = {}
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
            user_ids[i + 1] = slot["m_userId"]
    if getattr(protocol, "replay_userid_typeid", None) is None:
        raise ValueError("s2protocol cannot decode this build's game events")
    events = list(protocol.decode_replay_game_events(archive.read_file("replay.game.events")))
    missing = [pid for pid in player_ids if pid not in user_ids]
    if missing:
        raise MissingPlayers(f"no lobby user id for {missing}")
    return {pid: input_kinds(events, user_ids[pid]) for pid in player_ids}


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


# ------------------------------------------------------------ sc2reader
class _TargetCameraEvent(sc2_game_events.CameraEvent):
    """sc2reader's ``CameraEvent`` that keeps whether the update carries a
    target (sc2reader itself turns a missing target into (0, 0))."""

    def __init__(self, frame: int, pid: int, data: dict[str, Any]):
        super().__init__(frame, pid, data)
        self.has_target = data["target"] is not None


class _Sc2readerReplay(sc2_resources.Replay):
    """sc2reader's ``Replay`` whose game-event readers build
    ``_TargetCameraEvent``s (this instance's readers only)."""

    def register_default_readers(self) -> None:
        super().register_default_readers()
        for _accepts, reader in self.registered_readers["replay.game.events"]:
            _cls, parse = reader.EVENT_DISPATCH[SC2READER_CAMERA_EVENT]
            reader.EVENT_DISPATCH[SC2READER_CAMERA_EVENT] = (_TargetCameraEvent, parse)


#: sc2reader errors of an unreadable replay (its own, and the decoding errors
#: its bit reader and per-build tables let through).
SC2READER_ERRORS = (sc2_exceptions.SC2ReaderError, ValueError, KeyError, IndexError,
                    EOFError, TypeError, AttributeError)


def sc2reader_inputs(data: bytes, player_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """Player id -> its inputs, from game events decoded with sc2reader.

    sc2reader's engine (its ``ContextLoader``) names each event's player
    (``event.player``: by player id before 2.0.0.24247, by user id after);
    that player's ``detail_data`` is an entry of details' player list, whose
    1-based index is the pipeline's player id."""
    # Tracker events play no part in the inputs (and sc2reader refuses to
    # run its engine on resumed pre-3.0 games that have them).
    replay = _Sc2readerReplay(io.BytesIO(data), load_level=4, do_tracker_events=False,
                              debug=False, load_map=False)
    details = replay.raw_data.get("replay.details") or replay.raw_data["replay.details.backup"]
    index = {id(entry): i + 1 for i, entry in enumerate(details["players"])}
    owner = {id(p): index[id(p.detail_data)] for p in replay.players
             if id(p.detail_data) in index}
    missing = [pid for pid in player_ids if pid not in owner.values()]
    if missing:
        raise MissingPlayers(f"sc2reader names no player {missing}")
    by_player: dict[int, list[Any]] = {pid: [] for pid in player_ids}
    for ev in replay.game_events:
        pid = owner.get(id(getattr(ev, "player", None)))
        if pid in by_player:
            by_player[pid].append(ev)
    return {pid: sc2reader_input_kinds(evs) for pid, evs in by_player.items()}


def sc2reader_input_kinds(events: list[Any]) -> list[tuple[int, str]]:
    """(loop, kind) of each input in one player's sc2reader events, in order:
    the rules of ``input_kinds`` over sc2reader's event classes.

    ``CommandEvent`` subclasses are s2protocol's ``SCmdEvent`` (basic, target
    point, target unit, data) except ``UpdateTarget*CommandEvent`` (s2protocol's
    ``SCmdUpdateTarget*Event``, not a ``SCmdEvent``); ``SelectionEvent`` is
    ``SSelectionDeltaEvent`` (``control_group`` its ``m_controlGroupId``);
    ``ControlGroupEvent`` is ``SControlGroupUpdateEvent`` (``update_type`` its
    ``m_controlGroupUpdate``: 3 is ``DeleteControlGroupEvent``, the clear)."""
    out: list[tuple[int, str]] = []
    camera = None
    had_input = False
    for ev in events:
        loop = ev.frame
        if isinstance(ev, sc2_game_events.CommandEvent):
            if isinstance(ev, (sc2_game_events.UpdateTargetPointCommandEvent,
                               sc2_game_events.UpdateTargetUnitCommandEvent)):
                continue
            kind = "command"
        elif isinstance(ev, sc2_game_events.CameraEvent):
            if not getattr(ev, "has_target", True):
                continue
            first = camera is None
            moved = ev.location != camera
            camera = ev.location
            if first and not had_input and loop <= AUTO_CAMERA_MAX_LOOP:
                continue  # the game placing the camera
            if not moved:
                continue
            kind = "camera"
        elif isinstance(ev, sc2_game_events.SelectionEvent):
            if ev.control_group != ACTIVE_SELECTION:
                continue
            kind = "selection"
        elif isinstance(ev, sc2_game_events.ControlGroupEvent):
            had_input = True
            if ev.update_type == CONTROL_GROUP_CLEAR:
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


def _cross_check(data: bytes, path: str, player_ids: list[int], raw: RawReplay, step_mul: int,
                 counts: collections.Counter, found: dict[str, list], examples: int) -> int:
    """Compare the per-window first-input kinds of s2protocol (``raw``) with
    sc2reader's on one replay; count into ``counts``.  Returns 1 if compared."""
    try:
        other = sc2reader_inputs(data, player_ids)
    except (MissingPlayers,) + SC2READER_ERRORS as exc:
        counts["sc2reader fails"] += 1
        if len(found["sc2reader fails"]) < examples:
            found["sc2reader fails"].append({"path": path, "reason": repr(exc)[:200]})
        return 0
    counts["replays"] += 1
    for pid in player_ids:
        a = first_input_kinds(raw.inputs[pid], raw.game_loops, step_mul)
        b = first_input_kinds(other[pid], raw.game_loops, step_mul)
        for start, want in a.items():
            counts["windows"] += 1
            got = b.get(start, "none")
            if got == want:
                counts["agree"] += 1
            else:
                counts["disagree"] += 1
                key = f"s2protocol {want} -> sc2reader {got}"
                counts[key] += 1
                if len(found[key]) < examples:
                    found[key].append({"path": path, "player_id": pid, "window": start})
    return 1


def run(paths: list[str], step_mul: int = 8, examples: int = 5,
        cross_check: int | None = None) -> dict[str, Any]:
    """The check over ``paths``; ``cross_check``: how many replays that
    s2protocol decodes are also decoded with sc2reader and compared (None: all)."""
    config = FilterConfig()
    decoders: collections.Counter = collections.Counter()
    sc2reader_files: list[dict] = []
    cross: collections.Counter = collections.Counter()
    cross_examples: dict[str, list] = collections.defaultdict(list)
    cross_checked = 0
    buckets: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    pairs: collections.Counter = collections.Counter()
    pair_examples: dict[str, list] = collections.defaultdict(list)
    unknown_by_input: collections.Counter = collections.Counter()
    skipped: collections.Counter = collections.Counter()
    skipped_files: list[dict] = []
    replays = 0
    for path, data, scan in kept_replays(paths, config):
        player_ids = sorted(p["player_id"] for p in scan.players)
        try:
            targets, tracker = pipeline_targets(data, path, player_ids, step_mul)
        except (ReplayError, KeyError, ValueError) as exc:
            skipped["pipeline does not sample it"] += 1
            skipped_files.append({"path": path, "reason": f"pipeline: {exc!r}"[:200]})
            continue
        try:
            raw = RawReplay(data, player_ids)
        except MissingPlayers as exc:
            skipped["no events owner for a player"] += 1
            skipped_files.append({"path": path, "reason": str(exc)})
            continue
        except S2PROTOCOL_ERRORS + SC2READER_ERRORS as exc:
            skipped["neither s2protocol nor sc2reader decodes its game events"] += 1
            skipped_files.append({"path": path, "reason": f"raw decoders: {exc!r}"[:200]})
            continue
        decoders[f"{raw.decoder}, tracker_events={'yes' if tracker else 'no'}"] += 1
        if raw.s2protocol_error is not None:
            sc2reader_files.append({"path": path, "s2protocol": raw.s2protocol_error})
        if raw.decoder == "s2protocol" and (cross_check is None or cross_checked < cross_check):
            cross_checked += _cross_check(data, path, player_ids, raw, step_mul, cross, cross_examples,
                                          examples)
        replays += 1
        keys = [f"tracker_events={'yes' if tracker else 'no'}",
                f"tracker_events={'yes' if tracker else 'no'}, version {_major_minor(raw.version)}",
                f"anonymized={'yes' if raw.anonymized else 'no'}",
                f"decoder={raw.decoder}, tracker_events={'yes' if tracker else 'no'}", "all"]
        for k in keys:
            buckets[k]["replays"] += 1
        for pid in player_ids:
            kinds = first_input_kinds(raw.inputs[pid], raw.game_loops, step_mul)
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
                    pair = (f"first input {want} -> target {got} "
                            f"({'with' if tracker else 'without'} tracker events, {raw.decoder})")
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
    known = {"replays", "windows", "agree", "disagree", "sc2reader fails"}
    cross_result = {**{k: cross[k] for k in ("replays", "windows", "agree", "disagree",
                                             "sc2reader fails")},
                    "agreement": cross["agree"] / cross["windows"] if cross["windows"] else None,
                    "disagreements": [{"kind": k, "windows": n, "examples": cross_examples[k]}
                                      for k, n in cross.most_common() if k not in known],
                    "sc2reader_failures": cross_examples["sc2reader fails"]}
    return {"replays_checked": replays, "by_decoder": dict(sorted(decoders.items())),
            "cross_check_s2protocol_vs_sc2reader": cross_result,
            "skipped": dict(skipped), "skipped_files": skipped_files,
            "read_with_sc2reader": sc2reader_files,
            "step_mul": step_mul, "agreement_by_replay_kind": by_kind,
            "disagreements": [{"kind": k, "windows": n, "examples": pair_examples[k]}
                              for k, n in pairs.most_common()],
            "target_unknown_by_first_input": dict(unknown_by_input.most_common())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replays", default=str(Path(__file__).resolve().parents[2] / "shared" / "replays"))
    p.add_argument("--out", default="target_kinds.json")
    p.add_argument("--step_mul", type=int, default=8)
    p.add_argument("--cross_check", type=int, default=None,
                   help="compare sc2reader with s2protocol on this many replays s2protocol "
                        "decodes (default: all of them)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    paths = expand_inputs([args.replays])
    result = run(paths, args.step_mul, cross_check=args.cross_check)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['replays_checked']} replays checked {result['by_decoder']}, "
          f"skipped {result['skipped']}, {result['seconds']} s")
    cc = result["cross_check_s2protocol_vs_sc2reader"]
    agree = "n/a" if cc["agreement"] is None else f"{100 * cc['agreement']:.3f}%"
    print(f"  cross-check s2protocol vs sc2reader: {cc['replays']} replays, {cc['windows']} "
          f"windows, first-input kinds agree {agree} (sc2reader fails on {cc['sc2reader fails']})")
    for d in cc["disagreements"]:
        print(f"  {d['windows']:7d}  {d['kind']}")
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
