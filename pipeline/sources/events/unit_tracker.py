"""Replays a replay's tracker events into the state of every unit at any loop.

Tracker events (builds 2.0.8 on) say when each unit is born, starts and
finishes construction, dies, changes owner or type, and every player's
economy every 160 loops.  Positions are exact only at birth, at death and in
the periodic ``SUnitPositionsEvent`` (units that recently dealt or took
damage).  :class:`UnitTracker` walks the events forward once
(:meth:`UnitTracker.advance`) and keeps the state in flat numpy arrays indexed
by a dense unit slot, so the rasterizer and the fog model read whole arrays.

Positions between reports are estimated (see ``docs/engine_free_source.md``):

* ``"hold"``: a unit stays where it was last reported;
* ``"command"``: when the owning player orders the selected units to a point
  (move, attack, smart), each moves in a straight line toward it at its
  type's speed (``speed / 16`` world units per game loop) and stops there.

:attr:`UnitTracker.errors` records, at every position report of a unit whose
earlier position was known, the distance from the hold estimate and from the
command estimate to the reported position, so the two can be compared.

Unit type facts come from ``pipeline/sources/events/data/unit_data.json``
(``tools/generate_unit_data.py``), loaded once by :func:`unit_data`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from pipeline.coords import UNIT_POSITIONS_SCALE, ViewGeometry

DATA_PATH = os.path.join(os.path.dirname(__file__), "data", "unit_data.json")
#: Game loops per game second (normal speed); techtree speeds are per second.
LOOPS_PER_SECOND = 16.0
#: pysc2's player id for neutral units (tracker events use 0).
NEUTRAL_PLAYER = 16
POSITION_ESTIMATES = ("hold", "command")
#: Unit type name prefixes that are never drawn (UI beacons).
HIDDEN_PREFIXES = ("Beacon",)
#: :attr:`UnitTracker.changed` entry for a change that may concern any unit.
CHANGED_ALL = -1
#: The per-unit fields of :meth:`UnitTracker.snapshot`.
SNAPSHOT_FIELDS = ("slots", "rows", "xy", "owner", "done", "init")
#: Player stats reported by this loop describe the game's starting state.
INITIAL_STATS_LOOPS = 16

_EV = "NNet.Replay.Tracker."


def unit_tag(index: int, recycle: int) -> int:
    """The unit tag the game and game events use: ``(index << 18) + recycle``."""
    return (int(index) << 18) + int(recycle)


class UnitData:
    """Static unit type facts as aligned arrays, looked up by type name."""

    COLUMNS = ("id", "sight", "radius", "speed", "build_time", "food",
               "is_structure", "is_worker", "is_townhall", "is_flying")

    def __init__(self, table: Mapping[str, Any]):
        self.table = table
        units = table["units"]
        self.names: list[str] = sorted(units)
        self.row: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        for col in self.COLUMNS:
            dtype = np.int32 if col == "id" else (bool if col.startswith("is_") else np.float64)
            setattr(self, col, np.array([units[n][col] for n in self.names], dtype=dtype))
        self.abilities: list[list] = [units[n]["abilities"] for n in self.names]
        # UI beacons (BeaconArmy, BeaconRally...) are tracker units the game
        # never draws on feature layers.
        self.hidden = np.array([n.startswith(HIDDEN_PREFIXES) for n in self.names], bool)
        self.row_by_type_id: dict[int, int] = {}
        for i, n in enumerate(self.names):
            self.row_by_type_id.setdefault(int(units[n]["id"]), i)
        self.upgrade_ids: dict[str, int] = {k.lower(): v for k, v in table["upgrades"].items()}
        self.ability_functions: dict[int, dict[str, list[int]]] = {
            int(k): v for k, v in table["ability_functions"].items()}
        self._unknown: dict[str, int] = {}

    def row_of(self, name: str) -> int:
        """Row for a type name; unknown names get a generic row (id 0)."""
        row = self.row.get(name)
        if row is not None:
            return row
        if name not in self._unknown:
            self._unknown[name] = self._add_unknown(name)
        return self._unknown[name]

    def _add_unknown(self, name: str) -> int:
        defaults = {"id": 0, "sight": 0.0, "radius": 0.5, "speed": 0.0, "build_time": 0.0,
                    "food": 0.0, "is_structure": False, "is_worker": False,
                    "is_townhall": False, "is_flying": False}
        for col in self.COLUMNS:
            setattr(self, col, np.append(getattr(self, col), defaults[col]).astype(
                getattr(self, col).dtype))
        self.names.append(name)
        self.abilities.append([])
        self.hidden = np.append(self.hidden, name.startswith(HIDDEN_PREFIXES))
        return len(self.names) - 1

    @property
    def unknown_names(self) -> list[str]:
        return sorted(self._unknown)


@functools.lru_cache(maxsize=1)
def _load_table(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def unit_data(path: str = DATA_PATH) -> UnitData:
    """A fresh :class:`UnitData` (the JSON is parsed once per process)."""
    return UnitData(_load_table(path))


@dataclasses.dataclass
class EstimateErrors:
    """Distances (world units) from each estimate to reported positions."""
    hold: list[float] = dataclasses.field(default_factory=list)
    command: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"reports": len(self.hold)}
        for name in ("hold", "command"):
            values = np.asarray(getattr(self, name))
            out[f"{name}_mean"] = float(values.mean()) if values.size else float("nan")
            out[f"{name}_median"] = float(np.median(values)) if values.size else float("nan")
        return out


@dataclasses.dataclass(frozen=True)
class MoveOrder:
    """Player ``player_id`` ordered units ``tags`` to world point ``target``."""
    game_loop: int
    player_id: int
    tags: tuple[int, ...]
    target: tuple[float, float]


#: pysc2 function ids whose point argument sends the selection somewhere.
MOVE_FUNCTIONS = {  # Attack, Move, Smart, Patrol, HoldPosition-free point orders
    12: "screen", 13: "minimap", 331: "screen", 332: "minimap",
    451: "screen", 452: "minimap", 333: "screen", 334: "minimap",
}


def move_orders(streams: Mapping[int, Any], geo: ViewGeometry) -> list[MoveOrder]:
    """Point orders (move/attack/smart) of each player's input stream
    (``pipeline.actions.player_inputs.PlayerStream`` by player id), in world units,
    for the "command" position estimate."""
    orders = []
    for pid, stream in streams.items():
        cam, sel = stream.camera, stream.selection
        ci = si = -1
        for action in stream.actions:
            kind = MOVE_FUNCTIONS.get(action.function_id)
            if kind is None or kind not in action.arguments:
                continue
            while ci + 1 < len(cam) and cam[ci + 1][0] <= action.game_loop:
                ci += 1
            while si + 1 < len(sel) and sel[si + 1][0] <= action.game_loop:
                si += 1
            if si < 0:
                continue
            if kind == "screen":
                if ci < 0:
                    continue
                world = geo.screen_to_world(action.arguments["screen"], cam[ci][1:3])
            else:
                world = geo.minimap_to_world(action.arguments["minimap"])
            orders.append(MoveOrder(action.game_loop, pid, tuple(sel[si][1]),
                                    (float(world[0]), float(world[1]))))
    return orders


class UnitTracker:
    """Forward-only replay of tracker events (see module docstring)."""

    def __init__(self, tracker_events: Sequence[Mapping[str, Any]], data: UnitData,
                 *, position_estimate: str = "hold",
                 move_orders: Iterable[MoveOrder] = ()):
        if position_estimate not in POSITION_ESTIMATES:
            raise ValueError(f"position_estimate must be one of {POSITION_ESTIMATES}")
        self.data = data
        self.position_estimate = position_estimate
        self.events = sorted((e for e in tracker_events if "_gameloop" in e),
                             key=lambda e: e["_gameloop"])
        self.orders = (sorted(move_orders, key=lambda o: o.game_loop)
                       if position_estimate == "command" else [])
        self.slot_of_tag: dict[int, int] = {}
        for e in self.events:
            name = e["_event"]
            if name in (_EV + "SUnitBornEvent", _EV + "SUnitInitEvent"):
                tag = unit_tag(e["m_unitTagIndex"], e["m_unitTagRecycle"])
                self.slot_of_tag.setdefault(tag, len(self.slot_of_tag))
        n = len(self.slot_of_tag)
        self.alive = np.zeros(n, bool)
        self.xy = np.zeros((n, 2), np.float64)          # current (estimated) position
        self.reported = np.zeros((n, 2), np.float64)    # last reported position
        self.anchor = np.zeros((n, 2), np.float64)      # estimate's start point
        self.anchor_loop = np.zeros(n, np.int64)
        self.target = np.full((n, 2), np.nan)           # command estimate: destination
        self.type_row = np.zeros(n, np.int64)
        self.owner = np.zeros(n, np.int64)              # pysc2 player id (16 = neutral)
        self.init_loop = np.full(n, -1, np.int64)       # construction start, -1 if born
        self.done = np.zeros(n, bool)
        self.tag = np.zeros(n, np.int64)
        for tag, slot in self.slot_of_tag.items():
            self.tag[slot] = tag
        self._tag_order = np.argsort(self.tag, kind="stable")
        self._sorted_tags = self.tag[self._tag_order]
        self._slot_of_index: dict[int, int] = {}
        # The game writes each player's starting economy at loop 1; it holds
        # from loop 0, so the first report (if within INITIAL_STATS_LOOPS) is
        # the state at loop 0 too.
        self.stats: dict[int, dict[str, int]] = {}
        for e in self.events:
            if e["_gameloop"] > INITIAL_STATS_LOOPS:
                break
            if e["_event"] == _EV + "SPlayerStatsEvent":
                self.stats.setdefault(e["m_playerId"], e["m_stats"])
        self.upgrades: dict[int, set[int]] = {}
        self.errors = EstimateErrors()
        self.version = 0          # bumps on any unit change
        #: Slots of the units whose kind changed, in order: born,
        #: construction started or done, died, type or owner changed (not
        #: position reports nor estimated moves), so readers of unit counts
        #: and types can ignore movement (``CHANGED_ALL``: may concern any).
        self.changed: list[int] = []
        self.stats_version = 0    # bumps on player stats / upgrades
        #: owner -> int64[2, unit data rows]: alive units per type, finished ones.
        self._counts: dict[int, np.ndarray] = {}
        self.loop = -1
        self._next_event = 0
        self._next_order = 0
        self._moving = np.zeros(n, bool)

    # ------------------------------------------------------------ stepping
    def advance(self, loop: int) -> None:
        """Applies every event and order at or before ``loop``."""
        if loop < self.loop:
            raise ValueError(f"cannot go back from loop {self.loop} to {loop}")
        events = self.events
        if (not self.orders and (self._next_event >= len(events)
                                 or events[self._next_event]["_gameloop"] > loop)):
            self.loop = loop  # nothing due (the usual case between events)
            return
        while self._next_event < len(events) or self._next_order < len(self.orders):
            e_loop = (events[self._next_event]["_gameloop"]
                      if self._next_event < len(events) else None)
            o_loop = (self.orders[self._next_order].game_loop
                      if self._next_order < len(self.orders) else None)
            if o_loop is not None and o_loop <= loop and (e_loop is None or o_loop < e_loop):
                self._apply_order(self.orders[self._next_order])
                self._next_order += 1
            elif e_loop is not None and e_loop <= loop:
                e = events[self._next_event]
                self._apply(e)
                self._next_event += 1
                if e["_event"] in (_EV + "SPlayerStatsEvent", _EV + "SUpgradeEvent"):
                    self.stats_version += 1
                else:
                    self.version += 1
            else:
                break
        self.loop = loop
        if self.position_estimate == "command" and self._moving.any():
            self._move_to(loop)
            self.version += 1

    def _estimate(self, slots: np.ndarray, loop: int) -> np.ndarray:
        """Command-estimate positions of ``slots`` at ``loop``."""
        anchor = self.anchor[slots]
        target = self.target[slots]
        moving = ~np.isnan(target[:, 0])
        out = anchor.copy()
        if moving.any():
            delta = target[moving] - anchor[moving]
            dist = np.hypot(delta[:, 0], delta[:, 1])
            speed = self.data.speed[self.type_row[slots[moving]]] / LOOPS_PER_SECOND
            travelled = np.minimum(dist, speed * (loop - self.anchor_loop[slots[moving]]))
            frac = np.divide(travelled, dist, out=np.zeros_like(dist), where=dist > 0)
            out[moving] = anchor[moving] + delta * frac[:, None]
        return out

    def _move_to(self, loop: int) -> None:
        slots = np.flatnonzero(self._moving)
        self.xy[slots] = self._estimate(slots, loop)
        arrived = np.all(np.isclose(self.xy[slots], self.target[slots]), axis=1)
        self._moving[slots[arrived]] = False

    def _apply_order(self, order: MoveOrder) -> None:
        slots = [self.slot_of_tag[t] for t in order.tags if t in self.slot_of_tag]
        if not slots:
            return
        slots = np.asarray(slots)
        slots = slots[self.alive[slots] & (self.owner[slots] == order.player_id)
                      & (self.data.speed[self.type_row[slots]] > 0)]
        if not slots.size:
            return
        current = self._estimate(slots, order.game_loop)
        self.anchor[slots] = current
        self.anchor_loop[slots] = order.game_loop
        self.target[slots] = order.target
        self._moving[slots] = True

    def _report(self, slot: int, x: float, y: float, loop: int, measure: bool) -> None:
        if measure and self.alive[slot]:
            rx, ry = self.reported[slot].tolist()
            if math.isnan(self.target[slot, 0]):  # not ordered anywhere: the anchor
                ex, ey = self.anchor[slot].tolist()
            else:
                ex, ey = self._estimate(np.array([slot]), loop)[0].tolist()
            self.errors.hold.append(float(np.hypot(rx - x, ry - y)))
            self.errors.command.append(float(np.hypot(ex - x, ey - y)))
        self.xy[slot] = self.anchor[slot] = self.reported[slot] = (x, y)
        self.anchor_loop[slot] = loop
        self.target[slot] = np.nan
        self._moving[slot] = False

    def _apply(self, e: Mapping[str, Any]) -> None:
        slot = self._unit_event_slot(e)
        if slot is None:
            self._apply_event(e)
            return
        # Unit counts per owner and type: take the unit out, apply, put it back.
        self._count(slot, -1)
        self._apply_event(e)
        self._count(slot, 1)

    def _unit_event_slot(self, e: Mapping[str, Any]) -> int | None:
        """The slot an event changes the kind of (not positions or stats)."""
        name = e["_event"][len(_EV):]
        if name in ("SUnitBornEvent", "SUnitInitEvent"):
            return self.slot_of_tag.get(unit_tag(e["m_unitTagIndex"], e["m_unitTagRecycle"]))
        if name in ("SUnitDoneEvent", "SUnitDiedEvent", "SUnitOwnerChangeEvent",
                    "SUnitTypeChangeEvent"):
            return self._slot(e)
        return None

    def _player_counts(self, owner: int) -> np.ndarray:
        n = len(self.data.names)
        c = self._counts.get(owner)
        if c is None or c.shape[1] < n:  # new player, or unknown types added rows
            grown = np.zeros((2, n), np.int64)
            if c is not None:
                grown[:, :c.shape[1]] = c
            c = self._counts[owner] = grown
        return c

    def _count(self, slot: int, sign: int) -> None:
        if self.alive[slot]:
            c = self._counts.get(int(self.owner[slot]))
            if c is None or c.shape[1] < len(self.data.names):
                c = self._player_counts(int(self.owner[slot]))
            row = int(self.type_row[slot])
            c[0, row] += sign
            if self.done[slot]:
                c[1, row] += sign

    def unit_counts(self, owner: int) -> tuple[np.ndarray, np.ndarray]:
        """(alive, finished) unit counts of ``owner`` per unit data row
        (kept up to date by the events; views, do not modify)."""
        c = self._player_counts(owner)
        return c[0], c[1]

    def _apply_event(self, e: Mapping[str, Any]) -> None:
        name = e["_event"][len(_EV):]
        loop = e["_gameloop"]
        if name in ("SUnitBornEvent", "SUnitInitEvent"):
            slot = self.slot_of_tag[unit_tag(e["m_unitTagIndex"], e["m_unitTagRecycle"])]
            self.changed.append(slot)
            self._slot_of_index[e["m_unitTagIndex"]] = slot
            self.type_row[slot] = self.data.row_of(_text(e["m_unitTypeName"]))
            owner = e["m_controlPlayerId"]
            self.owner[slot] = owner if owner else NEUTRAL_PLAYER
            self.alive[slot] = not self.data.hidden[self.type_row[slot]]
            self._report(slot, float(e["m_x"]), float(e["m_y"]), loop, measure=False)
            if name == "SUnitInitEvent":
                self.init_loop[slot] = loop
                self.done[slot] = False
            else:
                self.done[slot] = True
        elif name == "SUnitDoneEvent":
            slot = self._slot(e)
            if slot is not None:
                self.changed.append(slot)
                self.done[slot] = True
        elif name == "SUnitDiedEvent":
            slot = self._slot(e)
            if slot is not None:
                self.changed.append(slot)
                if e.get("m_x") is not None:
                    self._report(slot, float(e["m_x"]), float(e["m_y"]), loop, measure=False)
                self.alive[slot] = False
                self._moving[slot] = False
        elif name == "SUnitOwnerChangeEvent":
            slot = self._slot(e)
            if slot is not None:
                self.changed.append(CHANGED_ALL)
                owner = e["m_controlPlayerId"]
                self.owner[slot] = owner if owner else NEUTRAL_PLAYER
        elif name == "SUnitTypeChangeEvent":
            slot = self._slot(e)
            if slot is not None:
                self.changed.append(slot)
                self.type_row[slot] = self.data.row_of(_text(e["m_unitTypeName"]))
        elif name == "SUnitPositionsEvent":
            index = e["m_firstUnitIndex"]
            items = e["m_items"]
            for i in range(0, len(items) - 2, 3):
                index += items[i]
                slot = self._slot_of_index.get(index)
                if slot is not None:
                    self._report(slot, items[i + 1] * UNIT_POSITIONS_SCALE,
                                 items[i + 2] * UNIT_POSITIONS_SCALE, loop, measure=True)
        elif name == "SPlayerStatsEvent":
            self.stats[e["m_playerId"]] = e["m_stats"]
        elif name == "SUpgradeEvent":
            upgrade = self.data.upgrade_ids.get(_text(e["m_upgradeTypeName"]).lower())
            if upgrade is not None:
                self.upgrades.setdefault(e["m_playerId"], set()).add(upgrade)

    def _slot(self, e: Mapping[str, Any]) -> int | None:
        return self.slot_of_tag.get(unit_tag(e["m_unitTagIndex"], e["m_unitTagRecycle"]))

    # ------------------------------------------------------------- queries
    def slots_of_tags(self, tags: Sequence[int]) -> np.ndarray:
        """Slots of the tags the tracker knows, in the given order (others dropped)."""
        if not len(tags) or not len(self._sorted_tags):
            return np.zeros(0, np.int64)
        try:
            query = np.array(tags, np.int64)
        except OverflowError:  # not a game tag: keep the ones that are
            return np.array([s for s in (self.slot_of_tag.get(t) for t in tags)
                             if s is not None], np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_tags, query), len(self._sorted_tags) - 1)
        return self._tag_order[pos[self._sorted_tags[pos] == query]]

    def slots_of_tag_lists(self, tag_lists: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """:meth:`slots_of_tags` of each list, looked up in one pass."""
        lengths = [len(tags) for tags in tag_lists]
        try:
            query = np.array([t for tags in tag_lists for t in tags], np.int64)
        except OverflowError:  # not game tags: one list at a time
            return [self.slots_of_tags(tags) for tags in tag_lists]
        if not len(query) or not len(self._sorted_tags):
            return [np.zeros(0, np.int64) for _ in tag_lists]
        pos = np.minimum(np.searchsorted(self._sorted_tags, query), len(self._sorted_tags) - 1)
        found = self._sorted_tags[pos] == query
        slots = self._tag_order[pos]
        out, start = [], 0
        for n in lengths:
            out.append(slots[start:start + n][found[start:start + n]])
            start += n
        return out

    def snapshot(self, draw_order: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
        """The alive units now, :data:`SNAPSHOT_FIELDS`: ``slots``, ``rows``
        (unit data rows), ``xy``, ``owner``, ``done`` (finished), ``init``
        (construction start loop, -1 if born); in slot order, or in the
        order ``draw_order(rows)`` gives (indices into the slot order)."""
        slots = np.flatnonzero(self.alive)
        if draw_order is not None:
            slots = slots[draw_order(self.type_row[slots])]
        return {"slots": slots, "rows": self.type_row[slots], "xy": self.xy[slots],
                "owner": self.owner[slots], "done": self.done[slots],
                "init": self.init_loop[slots]}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
