"""What each player sees at each look, computed after the replay's walk.

The engine-free source looks at the units thousands of times per replay
(every window start of every player).  Working out the fog of war at each
look separately costs a dozen small numpy calls per look, and their fixed
overhead dominated featurizing.  So the walk only *records*: at each look it
takes a :class:`Snapshots` entry (the tracker's alive units in draw order,
one per tracker version, shared by the players), and notes its id per
player.  After the walk, :meth:`Snapshots.visible_sets` gives each player's
visible units at every one of its looks in a few passes over all looks at
once (``pipeline.sources.events.fog.visible_over_time``), concatenated in the layout the
layer painter (``pipeline.sources.events.feature_layers``) draws from.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from pipeline.sources.events import fog as fog_model
from pipeline.sources.events.disc_batch import concat_ranges
from pipeline.sources.events.unit_tracker import NEUTRAL_PLAYER, SNAPSHOT_FIELDS, UnitData, UnitTracker


class Snapshots:
    """The tracker's alive units at each look, in draw order.

    ``draw_order(rows)`` gives the indices that put units of these type rows
    in draw order (``LayerPainter.draw_order``); ``map_size``: the map's
    size in world units (x, y).
    """

    def __init__(self, data: UnitData, draw_order: Callable[[np.ndarray], np.ndarray],
                 map_size: tuple[int, int]):
        self.data = data
        self._res = fog_model.grid_res(map_size)
        self._draw_order = draw_order
        self._taken: list[dict[str, np.ndarray]] = []
        self._version = -1
        self._cat: dict[str, np.ndarray] | None = None
        self._disc_cache: dict[int, np.ndarray] = {}

    def take(self, tracker: UnitTracker) -> int:
        """The id of a snapshot of the tracker now (a new one only when a
        unit changed since the last)."""
        if self._taken and self._version == tracker.version:
            return len(self._taken) - 1
        self._taken.append(tracker.snapshot(self._draw_order))
        self._version = tracker.version
        self._cat = None
        return len(self._taken) - 1

    def _all(self) -> dict[str, np.ndarray]:
        """Every snapshot's fields concatenated, with ``start``/``length``
        per snapshot and the fog facts of each unit (computed once for all
        players)."""
        if self._cat is None:
            taken = self._taken
            cat = {k: np.concatenate([s[k] for s in taken]) for k in SNAPSHOT_FIELDS}
            length = np.array([len(s["slots"]) for s in taken], np.int64)
            cat["length"], cat["start"] = length, np.cumsum(length) - length
            data = self.data
            cells = fog_model.unit_cells(cat["xy"])
            cat["keys"] = fog_model.cell_sight_keys(
                cells, fog_model.sight_quanta(data.sight)[cat["rows"]])
            cat["cell"] = fog_model.grid_cells(cells, self._res)
            cat["structure"] = data.is_structure[cat["rows"]]
            # Each unit's fields in two comparable values (set equality).
            cat["position"] = np.ascontiguousarray(cat["xy"]).view(np.complex128).ravel()
            cat["state"] = (((cat["rows"].astype(np.int64) << 8 | cat["owner"]) << 1
                             | cat["done"]) << 32) + cat["init"]
            self._cat = cat
        return self._cat

    def visible_sets(self, looks: list[int], friendly_lut: np.ndarray, fog: bool
                     ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """One player's visible units at each of its ``looks`` (snapshot ids,
        ascending): the :data:`SNAPSHOT_FIELDS` of the distinct sets concatenated
        (each set in draw order), each set's length, and per look its set
        (a look that sees exactly what the one before saw shares its set:
        the layers drawn from it are the same).

        ``friendly_lut``: owner id -> the player's or an ally's (ids past
        its end: not); ``fog=False`` shows every unit.
        """
        cat = self._all()
        looks_a = np.asarray(looks, np.int64)
        elem, look = concat_ranges(cat["start"][looks_a], cat["length"][looks_a])
        if fog:
            owner = cat["owner"][elem]
            visible = fog_model.visible_over_time(
                look, cat["slots"][elem], cat["keys"][elem], cat["cell"][elem],
                np.take(friendly_lut, owner, mode="clip"), owner == NEUTRAL_PLAYER,
                cat["structure"][elem], len(looks), self._res, self._disc_cache)
            elem, look = elem[visible], look[visible]
        length = np.bincount(look, minlength=len(looks)).astype(np.int64)
        same = _same_as_previous(cat, elem, length)
        if same.any():
            elem = elem[~np.repeat(same, length)]
            length = length[~same]
        units = {k: cat[k][elem] for k in SNAPSHOT_FIELDS}
        return units, length, np.cumsum(~same) - 1


def _same_as_previous(cat: dict[str, np.ndarray], elem: np.ndarray,
                      length: np.ndarray) -> np.ndarray:
    """Per set (consecutive runs of ``elem``, ``length`` each), whether it
    holds exactly the units of the set before it, field for field."""
    same = np.zeros(len(length), bool)
    if len(length) < 2:
        return same
    start = np.cumsum(length) - length
    cand = np.flatnonzero(length[1:] == length[:-1]) + 1
    a, which = concat_ranges(start[cand], length[cand])
    b = a - length[cand][which]  # the set before is right before it
    a, b = elem[a], elem[b]
    equal = cat["slots"][a] == cat["slots"][b]
    for k in ("state", "position"):  # the other fields (see Snapshots._all)
        equal &= cat[k][a] == cat[k][b]
    differ = np.bincount(which[~equal], minlength=len(cand))
    same[cand] = differ == 0
    return same
