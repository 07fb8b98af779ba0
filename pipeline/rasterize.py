"""Vectorized drawing of units as discs on a feature layer.

pysc2's feature layers paint each unit's footprint, a disc of the unit's
radius.  Both engine-free layers (screen and minimap) draw the same way: unit
centres in integer pixels (from ``pipeline.coords``), radii in pixels; a pixel
is covered when its centre lies within the radius of the unit's centre pixel,
and a unit always covers its own centre pixel.  Everything is numpy: one
(units x stencil) boolean array, no per-pixel Python loop.
"""
from __future__ import annotations

import functools

import numpy as np

#: Largest radius drawn, in pixels (bigger discs are clipped to this).
MAX_RADIUS_PX = 24


@functools.lru_cache(maxsize=1024)
def _stencil(r2: int) -> np.ndarray:
    """int[M, 2] offsets with ``dx^2 + dy^2 <= r2``: the disc of any radius
    whose square floors to ``r2`` (offsets are integers, so only the floor
    of the squared radius matters)."""
    reach = int(np.floor(np.sqrt(r2)))
    span = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(span, span, indexing="ij")
    keep = ox * ox + oy * oy <= r2
    return np.stack([ox[keep], oy[keep]], axis=1)


def disc_pixels(centers: np.ndarray, radii: np.ndarray,
                res: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels covered by each disc.

    Args:
      centers: int[N, 2] pixel (x, y) of each unit (may lie off the layer).
      radii: float[N] radius in pixels.
      res: layer resolution (x, y).

    Returns:
      ``(flat, unit)``: flat pixel indices ``y * res_x + x`` inside the layer
      and the index of the unit covering each, sorted by unit (so assigning
      values in that order lets later units overwrite earlier ones).
    """
    n = len(centers)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r = np.minimum(np.asarray(radii, np.float64), MAX_RADIUS_PX)
    q = np.floor(r * r).astype(np.int64)
    if q.max() == 0:  # every disc covers its centre pixel only
        x, y, unit = centers[:, 0], centers[:, 1], np.arange(n)
        inside = (x >= 0) & (x < res[0]) & (y >= 0) & (y < res[1])
        return y[inside] * res[0] + x[inside], unit[inside]
    xs, ys, units = [], [], []
    for value in np.unique(q):
        idx = np.flatnonzero(q == value)
        off = _stencil(int(value))
        xs.append((centers[idx, 0][:, None] + off[None, :, 0]).ravel())
        ys.append((centers[idx, 1][:, None] + off[None, :, 1]).ravel())
        units.append(np.repeat(idx, len(off)))
    x, y, unit = np.concatenate(xs), np.concatenate(ys), np.concatenate(units)
    inside = (x >= 0) & (x < res[0]) & (y >= 0) & (y < res[1])
    x, y, unit = x[inside], y[inside], unit[inside]
    order = np.argsort(unit, kind="stable")
    return (y[order] * res[0] + x[order]), unit[order]


def paint(res: tuple[int, int], flat: np.ndarray, unit: np.ndarray,
          values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A ``[res_y, res_x]`` layer with ``values[unit]`` at ``flat`` (last wins)."""
    layer = np.zeros(res[0] * res[1], dtype)
    if flat.size:
        layer[flat] = values[unit].astype(dtype, copy=False)
    return layer.reshape(res[1], res[0])


def count(res: tuple[int, int], flat: np.ndarray, clip: int, dtype: np.dtype) -> np.ndarray:
    """Number of discs covering each pixel, clipped to ``clip``."""
    counts = np.bincount(flat, minlength=res[0] * res[1])
    return np.minimum(counts, clip).astype(dtype).reshape(res[1], res[0])


def fill_rect(res: tuple[int, int], x0: int, y0: int, x1: int, y1: int,
              dtype: np.dtype) -> np.ndarray:
    """A layer with 1 on pixels ``x0 <= x <= x1``, ``y0 <= y <= y1`` (clipped)."""
    layer = np.zeros((res[1], res[0]), dtype)
    xa, xb = max(x0, 0), min(x1, res[0] - 1)
    ya, yb = max(y0, 0), min(y1, res[1] - 1)
    if xa <= xb and ya <= yb:
        layer[ya:yb + 1, xa:xb + 1] = 1
    return layer
