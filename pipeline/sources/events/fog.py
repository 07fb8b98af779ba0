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

from pipeline.sources.events import rasterize
from pipeline.sources.events.disc_batch import concat_ranges


#: Fog grid cell size in world units.
CELL = 2.0
#: (look, cell) coverage counts held at once by :func:`visible_over_time`.
COVERAGE_BLOCK = 1 << 22


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
    """Sorted unique ``keys``, as np.unique (numpy 2.4's np.unique hashes:
    ~9x slower than this sort on 255k int64 keys)."""
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
    return _key_discs(keys, grid_res(map_size)).covered()


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


def key_cells(keys: np.ndarray, res: tuple[int, int],
              cache: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Flat indices (``y * width + x``) of the grid cells each
    :func:`sight_keys` key's disc covers (as :func:`_key_discs` draws it,
    clipped to a grid of ``res`` cells); ``cache`` (one per grid size)
    keeps each key's cells: units keep revisiting the same cells."""
    width, height = res
    out = []
    for k in keys.tolist():
        hit = cache.get(k)
        if hit is None:
            dx, dy = _disc_offsets(k % 256)
            x, y = dx + k // 256 // 4096, dy + k // 256 % 4096
            hit = cache[k] = (y * width + x)[(x >= 0) & (x < width) & (y >= 0) & (y < height)]
        out.append(hit)
    return out


def grid_res(map_size: tuple[int, int]) -> tuple[int, int]:
    """The fog grid's size in cells (x, y) for a map of ``map_size`` world units."""
    return int(np.ceil(map_size[0] / CELL)), int(np.ceil(map_size[1] / CELL))


def grid_cells(cells: np.ndarray, res: tuple[int, int]) -> np.ndarray:
    """Flat grid index (``y * width + x``) of :func:`unit_cells` cells on a
    grid of ``res`` cells; -1 off the grid."""
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < res[0]) & (cells[:, 1] >= 0) & (cells[:, 1] < res[1])
    return np.where(inside, cells[:, 1] * res[0] + cells[:, 0], -1)


def visible_over_time(look: np.ndarray, unit: np.ndarray, keys: np.ndarray,
                      cell: np.ndarray, friendly: np.ndarray, neutral: np.ndarray,
                      structure: np.ndarray, n_looks: int, res: tuple[int, int],
                      cache: dict[int, np.ndarray]) -> np.ndarray:
    """Which units one player sees at each of its looks, all looks at once.

    The inputs describe the (alive) units of every look, one element per
    (look, unit), ordered by look: ``look`` (0 .. ``n_looks - 1``, looks in
    time order), ``unit`` (an id never reused for another unit), its sight ``keys``
    (:func:`cell_sight_keys`) and fog ``cell`` (:func:`grid_cells` on the
    map's grid of ``res`` cells, :func:`grid_res`), and whether it is
    ``friendly`` (the player's or an ally's), ``neutral`` or a
    ``structure``.  ``cache``: :func:`key_cells` cache for this grid.

    The rule is the per-look one: friendly and neutral units are seen; an
    enemy unit is seen when the cell under its centre lies in the sight
    grid of the look's friendly units (:func:`sight_grid` of their keys;
    off the map: never), or when it is a structure seen at an earlier look
    (a snapshot).  Computed in bulk: each key's presence is cut into runs
    of consecutive looks, and a cell's coverage at a look is the number of
    runs covering it then (a prefix sum over looks of +1 at a run's start
    and -1 after its end), kept only for cells some enemy unit stands on.
    """
    visible = friendly | neutral
    enemy = np.flatnonzero(~visible & (cell >= 0))
    if len(enemy):
        visible[enemy] = _covered(look[enemy], cell[enemy], look[friendly], keys[friendly],
                                  n_looks, res, cache)
    # Structures, once seen, stay seen (the first look that saw each).
    seen = visible & structure
    if seen.any():
        first = np.full(int(unit.max()) + 1, n_looks, np.int64)
        np.minimum.at(first, unit[seen], look[seen])
        visible |= structure & (first[unit] < look)
    return visible


def _covered(q_look: np.ndarray, q_cell: np.ndarray, f_look: np.ndarray,
             f_keys: np.ndarray, n_looks: int, res: tuple[int, int],
             cache: dict[int, np.ndarray]) -> np.ndarray:
    """Whether grid cell ``q_cell`` (flat) is covered at look ``q_look``
    (ascending) by the sight discs of the friendly keys present at that look."""
    if not len(q_look) or not len(f_keys):
        return np.zeros(len(q_look), bool)
    # (key, look) presences sorted by key then look (repeats kept: a sort
    # is several times cheaper than np.unique), cut into runs of
    # consecutive looks.
    pair = np.sort(f_keys * n_looks + f_look)
    key, at = pair // n_looks, pair % n_looks
    first = np.ones(len(pair), bool)
    first[1:] = (key[1:] != key[:-1]) | (at[1:] > at[:-1] + 1)
    run_first = np.flatnonzero(first)
    run_key, run_start = key[run_first], at[run_first]
    run_end = at[np.append(run_first[1:], len(pair)) - 1] + 1
    # Only the queried cells matter: each gets a column.
    col_of = np.full(res[0] * res[1], -1, np.int64)
    col_of[q_cell] = 0
    columns = np.flatnonzero(col_of == 0)
    col_of[columns] = np.arange(len(columns))
    q_col = col_of[q_cell]
    keys_u, key_of_run = np.unique(run_key, return_inverse=True)
    key_cols = [cols[cols >= 0] for cols in
                (col_of[cells] for cells in key_cells(keys_u, res, cache))]
    key_len = np.array([len(k) for k in key_cols], np.int64)
    key_cat = np.concatenate(key_cols) if key_cols else np.zeros(0, np.int64)
    elem, run = concat_ranges((np.cumsum(key_len) - key_len)[key_of_run], key_len[key_of_run])
    col = key_cat[elem]
    # Coverage counts per (look, column): +1 at a run's start, -1 at its
    # end, summed over looks; in blocks of looks (bounded memory), each
    # starting from the last counts of the one before.
    n_cols = len(columns)
    starts, ends = run_start[run], run_end[run]
    covered = np.zeros(len(q_look), bool)
    counts = np.zeros(n_cols, np.int32)
    block = max(1, COVERAGE_BLOCK // max(n_cols, 1))
    for lo in range(0, n_looks, block):
        hi = min(lo + block, n_looks)
        diff = np.zeros((hi - lo, n_cols), np.int32)
        diff[0] = counts
        flat = diff.reshape(-1)
        for at, sign in ((starts, 1), (ends, -1)):
            inside = (at >= lo) & (at < hi)
            np.add.at(flat, (at[inside] - lo) * n_cols + col[inside], sign)
        np.cumsum(diff, axis=0, out=diff)
        counts = diff[-1]
        q = slice(*np.searchsorted(q_look, (lo, hi)))  # q_look ascends
        covered[q] = diff[q_look[q] - lo, q_col[q]] > 0
    return covered


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
