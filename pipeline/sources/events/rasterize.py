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
import math

import numpy as np

#: Largest radius drawn, in pixels (bigger discs are clipped to this).
MAX_RADIUS_PX = 24
#: Stencil positions 0..n (the longest stencil of MAX_RADIUS_PX is shorter).
_ARANGE = np.arange(4 * (MAX_RADIUS_PX + 1) ** 2)


@functools.lru_cache(maxsize=256)
def _stencil_table(width: int, max_r2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disc stencils for every squared radius ``0..max_r2`` on a canvas of
    row stride ``width``: (flat offsets of all stencils concatenated, start
    of each, length of each).  A disc of radius r covers the offsets with
    ``dx^2 + dy^2 <= floor(r^2)`` (offsets are integers, so only the floor
    of the squared radius matters)."""
    reach = int(np.floor(np.sqrt(max_r2)))
    span = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(span, span, indexing="ij")
    d2 = (ox * ox + oy * oy).ravel()
    flat = (oy * width + ox).ravel().astype(np.int64)
    order = np.argsort(d2, kind="stable")
    d2, flat = d2[order], flat[order]
    # Stencil for r2 = the offsets with d2 <= r2: a prefix of the sorted list.
    lengths = np.searchsorted(d2, np.arange(max_r2 + 1), side="right").astype(np.int64)
    return flat, np.zeros(max_r2 + 1, np.int64), lengths


@functools.lru_cache(maxsize=256)
def _layout(res: tuple[int, int], max_q: int) -> tuple[int, int, int, int, np.ndarray, np.ndarray]:
    """Padded canvas of a layer for discs up to squared radius ``max_q``:
    (reach, pad, width, height, stencil offsets, stencil lengths)."""
    reach = math.isqrt(max_q)
    pad = 2 * reach + 1
    width = res[0] + 2 * pad
    table, _, lengths = _stencil_table(width, max_q)
    return reach, pad, width, res[1] + 2 * pad, table, lengths


class Discs:
    """The pixels each unit's disc covers on one layer.

    Works on a canvas padded by twice the largest reach (plus one) on every
    side, so no per-pixel bounds test is needed; layers are cropped at the
    end.  ``flat`` (padded-canvas indices) and ``unit`` are in unit order, so
    painting in that order lets later units overwrite earlier ones.
    """

    def __init__(self, centers: np.ndarray, radii: np.ndarray, res: tuple[int, int]):
        self.res = res = (int(res[0]), int(res[1]))
        n = len(centers)
        r = np.minimum(np.asarray(radii, np.float64), MAX_RADIUS_PX)
        q = (r * r).astype(np.int64)  # floor: radii are non-negative
        raw_max_q = int(q.max()) if n else 0
        # Round the table size up so few distinct tables get built.
        max_q = 1 << max(raw_max_q, 1).bit_length()
        reach, pad, width, self.height, table, lengths = _layout(res, max_q)
        self.pad, self.width = pad, width
        if not n:
            self.flat = self.unit = np.zeros(0, np.int64)
            return
        # A disc centred more than ``reach`` off the layer cannot reach it;
        # such centres are parked just there, inside the padding.
        lo = -reach - 1
        centers = np.asarray(centers, np.int64)
        if centers.min() < lo or centers.max() > min(res) + reach:
            centers = np.stack([np.clip(centers[:, 0], lo, res[0] + reach),
                                np.clip(centers[:, 1], lo, res[1] + reach)], axis=1)
        base = centers[:, 1] * width + centers[:, 0] + pad * (width + 1)
        if raw_max_q == 0:  # every disc is its centre pixel
            self.unit = np.arange(n)
            self.flat = base
            return
        # Unit i covers the first lengths[q[i]] stencil offsets: a
        # (units x longest stencil) grid, row-major, keeps unit order.
        counts = lengths[q]
        longest = int(lengths[raw_max_q])
        within = _ARANGE[:longest] < counts[:, None] if longest <= len(_ARANGE) \
            else np.arange(longest) < counts[:, None]
        self.flat = (base[:, None] + table[:longest])[within]
        self.unit = np.repeat(np.arange(n), counts)

    def _crop(self, canvas: np.ndarray) -> np.ndarray:
        p = self.pad
        return np.ascontiguousarray(
            canvas.reshape(self.height, self.width)[p:p + self.res[1], p:p + self.res[0]])

    def paint(self, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``[res_y, res_x]`` layer with ``values[unit]`` on each disc (last wins)."""
        canvas = np.zeros(self.width * self.height, dtype)
        if self.flat.size:
            canvas[self.flat] = np.asarray(values)[self.unit].astype(dtype, copy=False)
        return self._crop(canvas)

    def count(self, clip: int, dtype: np.dtype) -> np.ndarray:
        """Number of discs covering each pixel, clipped to ``clip``."""
        counts = np.bincount(self.flat, minlength=self.width * self.height)
        p = self.pad
        counts = counts.reshape(self.height, self.width)[p:p + self.res[1], p:p + self.res[0]]
        return np.minimum(counts, clip).astype(dtype)

    def covered(self, units: np.ndarray | None = None) -> np.ndarray:
        """bool ``[res_y, res_x]``: pixels some disc covers (only the discs
        with ``units[i]`` true when ``units``, bool per unit, is given)."""
        canvas = np.zeros(self.width * self.height, bool)
        canvas[self.flat if units is None else self.flat[units[self.unit]]] = True
        return self._crop(canvas)


def fill_rect(res: tuple[int, int], x0: int, y0: int, x1: int, y1: int,
              dtype: np.dtype) -> np.ndarray:
    """A layer with 1 on pixels ``x0 <= x <= x1``, ``y0 <= y <= y1`` (clipped)."""
    layer = np.zeros((res[1], res[0]), dtype)
    xa, xb = max(x0, 0), min(x1, res[0] - 1)
    ya, yb = max(y0, 0), min(y1, res[1] - 1)
    if xa <= xb and ya <= yb:
        layer[ya:yb + 1, xa:xb + 1] = 1
    return layer
