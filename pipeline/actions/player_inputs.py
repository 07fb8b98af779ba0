"""Every player input of a replay as pysc2 actions, plus camera and selection state.

The replay's game events are the players' inputs.  For the engine-free source
they are the policy targets; for the headless game they say at which loops
each player acted.  :func:`player_streams` converts each player's inputs, in
game-loop order, to :class:`pipeline.actions.action.Action` objects in pysc2's
action space and tracks the camera and the active selection the observation
sources need.  Inputs that cannot be expressed are counted by kind in
``PlayerStream.unmapped`` -- never dropped silently, never given a wrong label.

The rule for an input the source cannot fully convert: a window's target is
the player's first input in the window, whatever the source knows about it
(the sampling rule takes the first action; nothing here may shift it to a
later input).  For each kind the question is what pysc2 would report when
observing the real game (``pysc2.lib.features.Features.reverse_action`` of
the game's feature-layer and UI actions):

* it would report the input as a function we can name but an argument we
  cannot derive -> that function, with the argument ``schemas.layers.UNKNOWN``
  (a selection whose units' positions are unknown: ``select_point`` /
  ``select_rect`` with an unknown screen point; a command whose ability has
  only a screen variant, at a point outside our estimate of the camera view:
  its ``*_screen`` function with an unknown point);
* it would report an action we cannot express (an ability pysc2 lacks, which
  ``reverse_action`` turns into ``no_op``; a command variant pysc2 lacks,
  where ``reverse_action`` raises; any input of a build whose datapack we
  lack; a selection delta that changes nothing, which may be a click or drag
  the game reports) -> an action with ``function_id == schemas.layers.UNKNOWN``
  (:func:`target_unknown`): the window's target is unknown, never a
  substitute, and it is counted in ``unmapped``;
* it would report nothing -> no action, counted in ``unmapped``, and the next
  input may be the window's target.  Only ``control_group_clear``: the game's
  API has no clear (``ActionControlGroup`` knows recall, set, append and the
  two steals), so pysc2 never sees one.

Conversion rules (pysc2 4.0 function names):

* ``SCmdEvent`` -> the function from :mod:`pipeline.actions.ability_table` (right
  clicks, ``m_abil`` None, -> ``Smart_*``).  No target -> ``*_quick``.  A point
  or unit target -> ``*_minimap`` when the command was issued on the minimap
  (``m_cmdFlags`` bit 0x10000) or the target lies outside the player's current
  camera view, else ``*_screen``; when the ability lacks that variant the other
  spatial variant is used if the target allows it (a screen variant needs the
  target in view), else the input is counted unmapped
  (``no_variant:<ability>``).  ``queued`` is bit 0x2 of ``m_cmdFlags``; the
  autocast toggle (bit 0x40) -> the ability's ``*_autocast`` function.
* ``SCameraUpdateEvent`` with a target -> ``move_camera`` (minimap pixel of the
  new centre).  The game's own camera placement at game start (a player's
  first camera update, before any other input of that player, at loop <=
  :data:`AUTO_CAMERA_MAX_LOOP`) is ``automatic=True``.
* ``SControlGroupUpdateEvent`` -> ``select_control_group``: update 0 set -> set,
  1 add -> append, 2 recall -> recall, 4 -> set_and_steal, 5 ->
  append_and_steal; 3 (clear) has no pysc2 action (``control_group_clear``).
* ``SSelectionDeltaEvent`` of the active selection (control group 10) ->
  inferred from the change and the units' last known positions (tracker
  events and command snapshot points): a new selection of one unit on screen ->
  ``select_point(select)``, of several on screen -> ``select_rect(select)``
  over their bounding box; additions keeping the old selection ->
  ``select_point(toggle)`` / ``select_rect(add)``; a pure removal ->
  ``select_unit`` (``select`` when one unit is kept, ``deselect`` when one is
  removed, else ``deselect_all_type``); a new selection off screen -> only
  larvae: ``select_larva``, one worker: ``select_idle_worker``, else
  ``select_army`` (``select`` or ``add`` as the old selection was kept).  The
  game's double-click / ctrl-click "all of type" and warp gate selections are
  not distinguishable from these and are labelled as above; a delta that
  changes nothing (re-clicking a selected unit) is counted
  ``selection_no_change``.
  Selection order follows sc2reader's convention (sorted unit tags), which is
  what the removal masks index.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
from typing import Any, Callable, Sequence

from pipeline.actions import ability_table
from pipeline.coords import (CAMERA_EVENT_SCALE, GAME_EVENT_POINT_SCALE,
                             UNIT_POSITIONS_SCALE, ViewGeometry)
from pipeline.replay.lobby import event_player_ids, read_init_data
from pipeline.replay.archive import ReplayArchive, ReplayError
from pipeline.actions.action import Action, target_unknown
from schemas import layers

#: A player's first camera update at or before this loop, before any other
#: input of theirs, is the game placing the camera at the start location.
AUTO_CAMERA_MAX_LOOP = 16
ACTIVE_SELECTION = 10

FLAG_QUEUED = 0x2
FLAG_AUTOCAST = 0x40
FLAG_MINIMAP = 0x10000

# pysc2 function ids of the UI actions (pysc2.lib.actions.FUNCTIONS, 4.0).
F_MOVE_CAMERA = 1
F_SELECT_POINT = 2
F_SELECT_RECT = 3
F_SELECT_CONTROL_GROUP = 4
F_SELECT_UNIT = 5
F_SELECT_IDLE_WORKER = 6
F_SELECT_ARMY = 7
F_SELECT_LARVA = 9

# SControlGroupUpdateEvent.m_controlGroupUpdate -> pysc2 ControlGroupAct.
_CONTROL_GROUP_ACT = {0: 1, 1: 2, 2: 0, 4: 3, 5: 4}

# Tracker unit type names of workers (select_idle_worker heuristic).
_WORKERS = {b"SCV", b"Probe", b"Drone", b"MULE"}

#: The screen point of a selection or command that the source cannot place.
UNKNOWN_POINT = (layers.UNKNOWN, layers.UNKNOWN)

PositionLookup = Callable[[int, int], "tuple[float, float] | None"]


@dataclasses.dataclass
class PlayerStream:
    player_id: int
    #: The id this player's game events carry (``lobby.event_player_ids``).
    event_id: int | None
    actions: list[Action] = dataclasses.field(default_factory=list)
    camera: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)
    selection: list[tuple[int, tuple[int, ...]]] = dataclasses.field(default_factory=list)
    #: Per ``selection`` entry, its units' type names as the selection
    #: events named them (by unit link; "" where none did yet): all a replay
    #: without tracker events says about what is selected.
    selection_types: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    control_groups: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    #: Inputs not converted to a known pysc2 function, by kind: each is an
    #: action with an unknown target in ``actions`` except the kinds the game
    #: does not report (``control_group_clear``; see the module docstring).
    unmapped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    #: Inputs converted with an argument the source cannot derive, by kind.
    unknown_arguments: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    commands: int = 0            # SCmdEvents seen
    commands_mapped: int = 0     # of which mapped to a pysc2 function

    def camera_at(self, game_loop: int) -> tuple[float, float] | None:
        """Camera centre in effect at a loop (after that loop's updates)."""
        i = bisect.bisect_right(self.camera, (game_loop, float("inf"), float("inf"))) - 1
        return None if i < 0 else self.camera[i][1:]

    def selection_at(self, game_loop: int) -> tuple[int, ...]:
        """Selected unit tags in effect at a loop (after that loop's changes)."""
        i = bisect.bisect_right(self.selection, (game_loop, (float("inf"),))) - 1
        return () if i < 0 else self.selection[i][1]


# Abilities of map doodads (bridges a player can extend or retract): the
# player issues them, but pysc2 has no function for them; counted unmapped
# as ``map_doodad:<name>/<index>``.
_DOODAD_PREFIXES = ("ExtendingBridge", "PortCity_Bridge")


def unit_tag(index: int, recycle: int) -> int:
    """The unit tag game and tracker events share."""
    return (index << 18) + recycle


class UnitPositions:
    """Last known world position of each unit tag, from tracker events.

    Born/init events give exact positions, ``SUnitPositionsEvent`` periodic
    updates (whole world units, UNIT_POSITIONS_SCALE), and :meth:`add` lets command snapshot points refine
    them.  Between updates units move, so this is approximate for moving units.
    """

    def __init__(self, tracker_events: Sequence[dict[str, Any]]):
        self._track: dict[int, tuple[list[int], list[tuple[float, float]]]] = {}
        self.unit_types: dict[int, bytes] = {}
        current = {}  # unit index -> tag
        for ev in tracker_events:
            name = ev["_event"]
            if name.endswith("SUnitBornEvent") or name.endswith("SUnitInitEvent"):
                tag = unit_tag(ev["m_unitTagIndex"], ev["m_unitTagRecycle"])
                current[ev["m_unitTagIndex"]] = tag
                self.unit_types[tag] = ev.get("m_unitTypeName", b"")
                self.add(tag, ev["_gameloop"], float(ev["m_x"]), float(ev["m_y"]))
            elif name.endswith("SUnitTypeChangeEvent"):
                tag = unit_tag(ev["m_unitTagIndex"], ev["m_unitTagRecycle"])
                self.unit_types[tag] = ev.get("m_unitTypeName", b"")
            elif name.endswith("SUnitPositionsEvent"):
                index = ev["m_firstUnitIndex"]
                items = ev["m_items"]
                for i in range(0, len(items) - 2, 3):
                    index += items[i]
                    tag = current.get(index)
                    if tag is not None:
                        self.add(tag, ev["_gameloop"], items[i + 1] * UNIT_POSITIONS_SCALE,
                                 items[i + 2] * UNIT_POSITIONS_SCALE)

    def add(self, tag: int, game_loop: int, x: float, y: float) -> None:
        loops, points = self._track.setdefault(tag, ([], []))
        if loops and game_loop < loops[-1]:
            i = bisect.bisect_right(loops, game_loop)
            loops.insert(i, game_loop)
            points.insert(i, (x, y))
        else:
            loops.append(game_loop)
            points.append((x, y))

    def __call__(self, tag: int, game_loop: int) -> tuple[float, float] | None:
        track = self._track.get(tag)
        if track is None:
            return None
        i = bisect.bisect_right(track[0], game_loop) - 1
        return track[1][max(i, 0)]


def replay_map_size(archive: ReplayArchive) -> tuple[int, int]:
    """The full map size in world units (init data game description), as pysc2's map_size."""
    init = read_init_data(archive)
    if init is None:
        raise ReplayError("missing_part", "init data does not decode: no map size")
    size = (init.map_width, init.map_height)
    if min(size) <= 0:
        raise ReplayError("corrupt", f"map size {size}")
    return size




def _target_point(data: dict | None) -> tuple[float, float] | None:
    if not data:
        return None
    if "TargetPoint" in data:
        p = data["TargetPoint"]
    elif "TargetUnit" in data:
        p = data["TargetUnit"]["m_snapshotPoint"]
    else:
        return None
    return p["x"] / GAME_EVENT_POINT_SCALE, p["y"] / GAME_EVENT_POINT_SCALE


def _remove(selection: list[int], mask: dict | None) -> tuple[list[int], int, int]:
    """Apply a remove mask: (kept tags, number removed, first removed index or -1)."""
    if not mask or "None" in mask:
        return selection, 0, -1
    n = len(selection)
    if "Mask" in mask:
        length, value = mask["Mask"]
        value &= (1 << min(length, n)) - 1
        if not value:
            return selection, 0, -1
        first = (value & -value).bit_length() - 1
        kept = [t for i, t in enumerate(selection) if not (value >> i) & 1]
        return kept, n - len(kept), first
    if "OneIndices" in mask:
        gone = {i for i in mask["OneIndices"] if i < n}
        if not gone:
            return selection, 0, -1
        return [t for i, t in enumerate(selection) if i not in gone], len(gone), min(gone)
    if "ZeroIndices" in mask:
        keep = sorted({i for i in mask["ZeroIndices"] if i < n})
        kept = [selection[i] for i in keep]
        first = next((i for i, k in enumerate(keep) if i != k), len(keep))
        return kept, n - len(kept), (first if first < n else -1)
    return selection, 0, -1


class _Converter:
    """Per-player conversion state."""

    def __init__(self, stream: PlayerStream, geometry: ViewGeometry,
                 resolver: ability_table.LinkResolver | None, smart, positions):
        self.s = stream
        self.geo = geometry
        self.resolver = resolver
        self.smart = smart
        self.positions = positions
        self.center: tuple[float, float] | None = None
        self.sel: list[int] = []
        self.groups: dict[int, list[int]] = collections.defaultdict(list)
        self.had_input = False
        self.tag_type: dict[int, str] = {}  # unit tag -> type name (selection events)

    def emit(self, loop: int, fid: int, args: dict, automatic: bool = False) -> None:
        self.s.actions.append(Action(loop, fid, args, automatic))

    def unknown(self, loop: int, kind: str) -> None:
        """The player's input at ``loop`` is one pysc2 would report as an
        action the source cannot express: the target is unknown."""
        self.s.unmapped[kind] += 1
        self.s.actions.append(target_unknown(loop))

    def set_selection(self, loop: int, tags: list[int]) -> None:
        self.sel = tags
        self.s.selection.append((loop, tuple(tags)))
        self.s.selection_types.append(tuple(self.tag_type.get(t, "") for t in tags))

    def learn_types(self, delta: dict) -> None:
        """Unit types of a selection delta's added units: its subgroups
        (unit link, count) in order, one per added tag."""
        if self.resolver is None:
            return
        links = [sub["m_unitLink"] for sub in delta.get("m_addSubgroups") or ()
                 for _ in range(sub["m_count"])]
        for tag, link in zip(delta.get("m_addUnitTags") or (), links):
            name = self.resolver.unit_name(link)
            if name is not None:
                self.tag_type[tag] = name

    # -- camera ---------------------------------------------------------------
    def camera(self, loop: int, ev: dict) -> None:
        target = ev.get("m_target")
        if not target:
            return
        center = (target["x"] / CAMERA_EVENT_SCALE, target["y"] / CAMERA_EVENT_SCALE)
        automatic = not self.s.camera and not self.had_input and loop <= AUTO_CAMERA_MAX_LOOP
        if center == self.center:
            return
        self.center = center
        self.s.camera.append((loop, center[0], center[1]))
        px = self.geo.world_to_minimap_xy(center[0], center[1], clip=True)
        self.emit(loop, F_MOVE_CAMERA, {"minimap": px}, automatic)
        if not automatic:
            self.had_input = True

    # -- commands -------------------------------------------------------------
    def command(self, loop: int, ev: dict) -> None:
        self.had_input = True
        self.s.commands += 1
        abil = ev.get("m_abil")
        if abil is None:
            funcs = self.smart
        elif self.resolver is None:
            self.unknown(loop, "unknown_build_datapack")
            return
        else:
            funcs = self.resolver.lookup(abil["m_abilLink"], abil["m_abilCmdIndex"])
            if funcs is None:
                name = self.resolver.name(abil["m_abilLink"]) or f"link{abil['m_abilLink']}"
                kind = "map_doodad" if name.startswith(_DOODAD_PREFIXES) else "ability"
                # pysc2 lacks the ability: reverse_action reports no_op, which
                # would say the player did nothing.
                self.unknown(loop, f"{kind}:{name}/{abil['m_abilCmdIndex']}")
                return
        flags = ev.get("m_cmdFlags") or 0
        queued = 1 if flags & FLAG_QUEUED else 0
        if flags & FLAG_AUTOCAST:
            if funcs.autocast is None:
                self.unknown(loop, f"no_autocast:{funcs.ability_name}")
                return
            self.emit(loop, funcs.autocast, {})
            self.s.commands_mapped += 1
            return
        point = _target_point(ev.get("m_data"))
        if point is None:
            if funcs.quick is None:
                self.unknown(loop, f"no_variant:{funcs.ability_name}/quick")
                return
            self.emit(loop, funcs.quick, {"queued": queued})
            self.s.commands_mapped += 1
            return
        on_screen = (self.center is not None and not flags & FLAG_MINIMAP
                     and self.geo.in_screen_xy(point[0], point[1], self.center))
        if on_screen and funcs.screen is not None:
            px = self.geo.world_to_screen_xy(point[0], point[1], self.center)
            self.emit(loop, funcs.screen, {"queued": queued, "screen": px})
        elif funcs.minimap is not None:
            px = self.geo.world_to_minimap_xy(point[0], point[1], clip=True)
            self.emit(loop, funcs.minimap, {"queued": queued, "minimap": px})
        elif funcs.quick is not None and funcs.screen is None:
            self.emit(loop, funcs.quick, {"queued": queued})
        elif funcs.screen is not None:
            # Only a screen variant, at a point outside our estimate of the
            # view (or before the first camera update): the player issued
            # this function; where on the screen is unknown.
            self.s.unknown_arguments[f"command_offscreen:{funcs.ability_name}"] += 1
            self.emit(loop, funcs.screen, {"queued": queued, "screen": UNKNOWN_POINT})
        else:
            self.unknown(loop, f"no_variant:{funcs.ability_name}/point")
            return
        self.s.commands_mapped += 1
        if "TargetUnit" in (ev.get("m_data") or {}) and self.positions is not None:
            tu = ev["m_data"]["TargetUnit"]
            self.positions.add(tu["m_tag"], loop, *point)

    # -- control groups -------------------------------------------------------
    def control_group(self, loop: int, ev: dict) -> None:
        self.had_input = True
        group = ev["m_controlGroupIndex"]
        update = ev["m_controlGroupUpdate"]
        if update in (0, 4):
            self.groups[group] = list(self.sel)
        elif update in (1, 5):
            kept = _remove(self.groups[group], ev.get("m_mask"))[0]
            self.groups[group] = sorted(set(kept) | set(self.sel))
        elif update == 2:
            kept = _remove(self.groups[group], ev.get("m_mask"))[0]
            self.groups[group] = kept
            self.set_selection(loop, list(kept))
        elif update == 3:
            self.groups[group] = []
        act = _CONTROL_GROUP_ACT.get(update)
        if update == 3:
            # The game's API cannot express a clear: pysc2 reports nothing,
            # so the next input may be the window's target.
            self.s.unmapped["control_group_clear"] += 1
            return
        if act is None:
            self.unknown(loop, f"control_group_{update}")
            return
        self.emit(loop, F_SELECT_CONTROL_GROUP, {"control_group_act": act,
                                                  "control_group_id": group})

    # -- selection ------------------------------------------------------------
    def selection_delta(self, loop: int, ev: dict) -> None:
        group = ev["m_controlGroupId"]
        delta = ev["m_delta"]
        self.learn_types(delta)
        if group != ACTIVE_SELECTION:
            # Automatic bookkeeping (e.g. units stolen by another group).
            kept = _remove(self.groups[group], delta.get("m_removeMask"))[0]
            self.groups[group] = sorted(set(kept) | set(delta.get("m_addUnitTags") or []))
            return
        self.had_input = True
        before = self.sel
        kept, n_removed, first_removed = _remove(before, delta.get("m_removeMask"))
        kept_set = set(kept)
        added = [t for t in (delta.get("m_addUnitTags") or []) if t not in kept_set]
        after = sorted(kept_set.union(added)) if added else kept
        self.set_selection(loop, after)
        if not added:
            if not n_removed:
                # The player's input changed nothing we can see (a drag over
                # no unit, a removal past the selection's end): the game may
                # report a selection we cannot reconstruct.
                self.unknown(loop, "selection_no_change")
                return
            if len(kept) == 1:
                self.emit(loop, F_SELECT_UNIT, {"select_unit_act": 0,
                                                "select_unit_id": before.index(kept[0])})
            elif n_removed == 1:
                self.emit(loop, F_SELECT_UNIT, {"select_unit_act": 1,
                                                "select_unit_id": first_removed})
            else:
                self.emit(loop, F_SELECT_UNIT, {"select_unit_act": 3,
                                                "select_unit_id": first_removed})
            return
        replace = not kept
        pts = [self.positions(t, loop) if self.positions is not None else None for t in added]
        known = [p for p in pts if p is not None]
        center = self.center
        geo = self.geo
        if center is not None and known and len(known) == len(pts):
            px = [geo.world_to_screen_xy(x, y, center) for x, y in known]
            w, h = geo.screen_res
            if all(0 <= a < w and 0 <= b < h for a, b in px):
                if len(added) == 1:
                    self.emit(loop, F_SELECT_POINT, {"select_point_act": 0 if replace else 1,
                                                     "screen": px[0]})
                else:
                    xs = [a for a, _ in px]
                    ys = [b for _, b in px]
                    self.emit(loop, F_SELECT_RECT, {"select_add": 0 if replace else 1,
                                                    "screen": (min(xs), min(ys)),
                                                    "screen2": (max(xs), max(ys))})
                return
        if not known:
            # No added unit has a known position (replays without tracker
            # events): a click (one unit) or a drag (several) on the screen,
            # the common ways to make this change, at an unknown point.
            self.s.unknown_arguments["selection_unknown_position"] += 1
            if len(added) == 1:
                self.emit(loop, F_SELECT_POINT, {"select_point_act": 0 if replace else 1,
                                                 "screen": UNKNOWN_POINT})
            else:
                self.emit(loop, F_SELECT_RECT, {"select_add": 0 if replace else 1,
                                                "screen": UNKNOWN_POINT,
                                                "screen2": UNKNOWN_POINT})
            return
        types = (self.positions.unit_types if isinstance(self.positions, UnitPositions) else {})
        if types and all(types.get(t) == b"Larva" for t in added):
            self.emit(loop, F_SELECT_LARVA, {})
        elif len(added) == 1 and types.get(added[0]) in _WORKERS:
            self.emit(loop, F_SELECT_IDLE_WORKER, {"select_worker": 0 if replace else 1})
        else:
            self.emit(loop, F_SELECT_ARMY, {"select_add": 0 if replace else 1})


_HANDLERS = {
    "NNet.Game.SCmdEvent": _Converter.command,
    "NNet.Game.SCameraUpdateEvent": _Converter.camera,
    "NNet.Game.SSelectionDeltaEvent": _Converter.selection_delta,
    "NNet.Game.SControlGroupUpdateEvent": _Converter.control_group,
}


def player_streams(archive: ReplayArchive, map_size: tuple[int, int] | None = None,
                   screen_resolution: int | tuple[int, int] = 64,
                   minimap_resolution: int | tuple[int, int] = 64,
                   camera_width: float = 24,
                   unit_positions: PositionLookup | None = None) -> dict[int, PlayerStream]:
    """Each player's inputs as pysc2 actions, keyed by player id (1-based).

    ``map_size`` defaults to the replay's full map size (init data).
    ``unit_positions(tag, loop) -> (x, y) | None`` places selected units for
    the selection actions; by default :class:`UnitPositions` over the
    replay's tracker events.  Raises :class:`ReplayError` for replays whose
    events cannot be decoded.
    """
    geometry = ViewGeometry(map_size or replay_map_size(archive), screen_resolution,
                            minimap_resolution, camera_width)
    table = ability_table.load()
    resolver = table.resolver(ability_table.expansion_of(archive.details), archive.base_build)
    if unit_positions is None:
        unit_positions = UnitPositions(archive.tracker_events)
    event_ids = event_player_ids(archive)
    streams = {pid: PlayerStream(pid, eid) for pid, eid in event_ids.items()}
    converters = {eid: _Converter(streams[pid], geometry, resolver, table.smart, unit_positions)
                  for pid, eid in event_ids.items() if eid is not None}
    for ev in archive.game_events:
        handler = _HANDLERS.get(ev["_event"])
        if handler is None:
            continue
        conv = converters.get(ev["_userid"]["m_userId"])
        if conv is not None:
            handler(conv, ev["_gameloop"], ev)
    for conv in converters.values():
        conv.s.control_groups = {g: tuple(t) for g, t in sorted(conv.groups.items()) if t}
    return streams
