"""Fog of war for the engine-free source: which units a player can see.

In the game a player sees an enemy unit only while it stands within the sight
range of one of the player's (or an ally's) units; structures, once seen,
stay on the map as snapshots.  The engine-free source has no terrain, so this
model ignores high ground, line of sight blockers, cloaking and detection.
Neutral units (minerals, geysers, rocks, towers) are map features every
player knows, so they are always shown.

``fog=False`` in the source skips this module and shows everything (full
information); the setting is recorded with the dataset.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from pipeline import rasterize


#: Fog grid cell size in world units.
CELL = 2.0


def sight_keys(viewer_xy: np.ndarray, viewer_sight: np.ndarray) -> np.ndarray:
    """Sorted unique (cell, sight) keys of the viewers: all the grid depends on."""
    return unique_keys(unit_sight_keys(viewer_xy, viewer_sight))


def unit_sight_keys(xy: np.ndarray, sight: np.ndarray) -> np.ndarray:
    """Each unit's (cell, sight) key, as a viewer (see :func:`sight_keys`):
    computed once for a set of units, any subset's keys are a gather."""
    return cell_sight_keys(unit_cells(xy), sight_quanta(sight))


def unit_cells(xy: np.ndarray) -> np.ndarray:
    """The fog grid cell ``(x, y)`` under each point (int64, may be off the map)."""
    return np.floor(xy / CELL).astype(np.int64)


def sight_quanta(sight: np.ndarray) -> np.ndarray:
    """Sight ranges as a key's sight part (quarter cells)."""
    return np.round(sight / CELL * 4).astype(np.int64)


def cell_sight_keys(cells: np.ndarray, quanta: np.ndarray) -> np.ndarray:
    """:func:`unit_sight_keys` from :func:`unit_cells` and :func:`sight_quanta`."""
    return (cells[:, 0] * 4096 + cells[:, 1]) * 256 + quanta


def unique_keys(keys: np.ndarray) -> np.ndarray:
    """Sorted unique ``keys`` (np.unique, without its per-call overhead)."""
    keys = np.sort(keys)
    if len(keys) > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys


def sight_grid(map_size: tuple[int, int], keys: np.ndarray) -> np.ndarray:
    """bool[ceil(map_y / CELL), ceil(map_x / CELL)]: cells within some viewer's sight.

    ``keys`` come from :func:`sight_keys` (viewers sharing a cell and a sight
    range are drawn once).  A cell is seen when its centre lies within the
    sight radius of the viewer's cell centre (so within about one cell of the
    true disc).
    """
    res = (int(np.ceil(map_size[0] / CELL)), int(np.ceil(map_size[1] / CELL)))
    return _key_discs(keys, res).covered()


def _key_discs(keys: np.ndarray, res: tuple[int, int]) -> rasterize.Discs:
    """The sight discs of :func:`sight_keys` keys on a grid of ``res`` cells."""
    cells = np.stack([keys // 256 // 4096, keys // 256 % 4096], axis=1)
    return rasterize.Discs(cells, (keys % 256) / 4.0, res)


@functools.lru_cache(maxsize=None)
def _disc_offsets(quanta: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets ``(dx, dy)`` of a key's sight disc (its sight part
    ``quanta``): those with ``dx^2 + dy^2 <= floor(r^2)``, ``r`` the radius in
    cells clipped like ``rasterize.Discs`` does."""
    r = min(quanta / 4.0, rasterize.MAX_RADIUS_PX)
    q = int(r * r)
    reach = math.isqrt(q)
    span = np.arange(-reach, reach + 1, dtype=np.int64)
    dy, dx = np.meshgrid(span, span, indexing="ij")
    inside = dx * dx + dy * dy <= q
    return dx[inside], dy[inside]


class SightGrid:
    """One player's :func:`sight_grid`, updated from the previous one.

    Between two looks usually only a few viewer keys change, so the grid
    keeps, per cell, how many keys' discs cover it, and an update adds the
    discs of new keys and removes those of vanished ones.  ``grid`` is
    exactly ``sight_grid(map_size, keys)``: a cell is covered by the union
    of the discs iff its count is positive.  Each key's disc (its cells on
    the grid) is drawn once and kept: units keep revisiting the same cells.
    """

    def __init__(self, map_size: tuple[int, int]):
        self.res = (int(np.ceil(map_size[0] / CELL)), int(np.ceil(map_size[1] / CELL)))
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros((self.res[1], self.res[0]), np.int32)
        self.grid = np.zeros((self.res[1], self.res[0]), bool)
        #: ``grid`` with a border of unseen cells (off-map lookups land there).
        self._padded = np.zeros((self.res[1] + 2, self.res[0] + 2), bool)
        self._clip_hi = np.array([self.res[0], self.res[1]], np.int64)
        self._cells: dict[int, np.ndarray] = {}

    def _key_cells(self, keys: np.ndarray) -> list[np.ndarray]:
        """Flat grid indices each key's disc covers (drawn once per key)."""
        cells = self._cells
        width, height = self.res
        out = []
        for k in keys.tolist():
            hit = cells.get(k)
            if hit is None:
                # The key's disc (as _key_discs draws it), clipped to the grid.
                dx, dy = _disc_offsets(k % 256)
                x, y = dx + k // 256 // 4096, dy + k // 256 % 4096
                hit = cells[k] = (y * width + x)[(x >= 0) & (x < width) & (y >= 0) & (y < height)]
            out.append(hit)
        return out

    def update(self, keys: np.ndarray) -> np.ndarray:
        """The grid for ``keys`` (sorted unique, from :func:`sight_keys`)."""
        old = self.keys
        if len(keys) == len(old) and (keys == old).all():
            return self.grid
        added = keys[~_sorted_member(keys, old)]
        removed = old[~_sorted_member(old, keys)]
        size = self.res[0] * self.res[1]
        flat_counts = self.counts.reshape(-1)
        for changed, sign in ((added, 1), (removed, -1)):
            if changed.size:
                cells = np.concatenate(self._key_cells(changed))
                delta = np.bincount(cells, minlength=size).astype(np.int32)
                if sign > 0:
                    flat_counts += delta
                else:
                    flat_counts -= delta
        self.keys = keys
        self.grid = self.counts > 0
        self._padded[1:-1, 1:-1] = self.grid
        return self.grid

    def seen(self, xy: np.ndarray) -> np.ndarray:
        """:func:`cells_seen` on this grid (points off the map: no)."""
        return self.seen_cells(self.cells(xy))

    def cells(self, xy: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
        """The lookup index of each point's cell for :meth:`seen_cells` (off
        the map: a border cell, never seen); depends only on the points and
        the map size, so it can be computed once for many lookups.
        ``cells``: the points' :func:`unit_cells`, when the caller has them."""
        cells = unit_cells(xy) if cells is None else cells.copy()
        np.clip(cells, -1, self._clip_hi, out=cells)
        return (cells[:, 1] + 1) * (self.res[0] + 2) + (cells[:, 0] + 1)

    def seen_cells(self, cells: np.ndarray) -> np.ndarray:
        """Whether each :meth:`cells` index is seen now."""
        return self._padded.reshape(-1)[cells]


def _sorted_member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """bool per value: whether it is in ``sorted_set`` (sorted, unique)."""
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def cells_seen(grid: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Whether the grid cell under each point is seen (points off the map: no)."""
    if not len(xy):
        return np.zeros(0, bool)
    cells = np.floor(xy / CELL).astype(np.int64)
    h, w = grid.shape
    # Negative cells read as huge unsigned values: one compare per axis.
    inside = (cells.view(np.uint64) < np.array([w, h], np.uint64)).all(axis=1)
    flat = (cells[:, 1] * w + cells[:, 0]) * inside  # off the map -> cell 0, masked below
    return grid.ravel()[flat] & inside


def visible_mask(friendly: np.ndarray, neutral: np.ndarray, is_structure: np.ndarray,
                 seen_before: np.ndarray, grid: SightGrid, cells: np.ndarray) -> np.ndarray:
    """Which of the given (alive) units a player sees (bool array).

    ``friendly`` marks the player's and allies' units, ``neutral`` neutral
    ones (both always seen); ``grid`` is the :class:`SightGrid` of the
    friendly units and ``cells`` each unit's ``grid.cells`` index.
    An enemy unit is seen when the cell under its centre is (its footprint
    is ignored), or when it is a structure seen earlier: ``seen_before``
    (bool, same length) marks those; the caller keeps it per player and ORs
    in ``visible & is_structure`` after the call.
    """
    enemy = np.flatnonzero(~(friendly | neutral))
    visible = np.ones(len(friendly), bool)
    visible[enemy] = grid.seen_cells(cells[enemy]) | (seen_before[enemy] & is_structure[enemy])
    return visible
