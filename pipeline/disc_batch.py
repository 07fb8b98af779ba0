"""Deferred, batched painting of unit discs on many feature layers at once.

Why this exists: the engine-free source redraws small layers thousands of
times per replay (a 20-minute 1v1 redraws its minimap ~2,000 times and its
screen ~3,000 times, a few dozen to a few hundred units each).  Drawn one at a
time (``pipeline.rasterize.Discs``), each redraw costs some twenty numpy calls
whose fixed overhead dwarfs the work.  Nothing during the replay walk reads a
layer's pixels, so the walk only *registers* what to draw (:meth:`DiscBatch.add`
returns :class:`Pending` placeholders) and :meth:`DiscBatch.resolve` paints all
registered jobs of one kind in a few numpy passes over their concatenated
units, each job's layer a ``[res_y, res_x]`` slice of one read-only
``[jobs, res_y, res_x]`` block.

Semantics are those of ``pipeline.rasterize.Discs`` (and bit-identical to
it): a disc of radius ``r`` pixels (clipped to ``MAX_RADIUS_PX``) covers the
pixels ``(dx, dy)`` away from its centre pixel with
``dx^2 + dy^2 <= floor(r^2)``; a ``paint`` channel writes each unit's value
on its disc in unit order (later units on top), a ``count`` channel counts
the discs covering each pixel (clipped), a ``cover`` channel is 1 where any
disc is.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from pipeline.rasterize import MAX_RADIUS_PX

#: Stencil points expanded per numpy pass at most (bounds the scratch memory).
CHUNK_POINTS = 1 << 18


class Pending:
    """A layer registered with a :class:`DiscBatch`; ``array`` once resolved."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


@functools.lru_cache(maxsize=1)
def _stencils() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets ``(dx, dy)`` of every disc up to ``MAX_RADIUS_PX``, sorted by
    squared distance, and per squared radius ``q`` the number of offsets with
    ``dx^2 + dy^2 <= q`` (a disc's stencil is that prefix)."""
    reach = MAX_RADIUS_PX
    span = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(span, span, indexing="ij")
    d2 = (ox * ox + oy * oy).ravel()
    order = np.argsort(d2, kind="stable")
    max_q = reach * reach
    lengths = np.searchsorted(d2[order], np.arange(max_q + 1), side="right").astype(np.int64)
    return ox.ravel()[order].astype(np.int32), oy.ravel()[order].astype(np.int32), lengths


class _Group:
    """Jobs sharing a resolution and channel kinds (one block per channel)."""

    def __init__(self, res: tuple[int, int], specs: tuple) -> None:
        self.res = res
        self.specs = specs
        self.centers: list[np.ndarray] = []
        self.q: list[np.ndarray] = []
        self.values: list[list[np.ndarray]] = [[] for _ in specs]
        self.pending: list[list[Pending]] = [[] for _ in specs]


class DiscBatch:
    """Collects disc-painting jobs during a walk; :meth:`resolve` draws them."""

    def __init__(self) -> None:
        self._groups: dict[tuple, _Group] = {}

    def add(self, res: tuple[int, int], centers: np.ndarray, radii: np.ndarray,
            specs: tuple, values: Sequence[np.ndarray] = ()) -> list[Pending]:
        """Registers one job: discs at ``centers`` (int pixels ``[n, 2]``)
        of ``radii`` (pixels) on a layer of ``res`` = (x, y) pixels.

        ``specs``: one entry per output layer, ``("paint", dtype)`` (takes
        the next array of ``values``: one value per unit), ``("count", dtype,
        clip)`` or ``("cover", dtype)``.  Returns one :class:`Pending` per spec.
        """
        key = (res, specs)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(res, specs)
        r = np.minimum(np.asarray(radii, np.float64), MAX_RADIUS_PX)
        group.centers.append(np.asarray(centers, np.int64).reshape(-1, 2))
        group.q.append((r * r).astype(np.int64))  # floor: radii are non-negative
        out = []
        vi = 0
        for i, spec in enumerate(specs):
            if spec[0] == "paint":
                group.values[i].append(values[vi])
                vi += 1
            p = Pending()
            group.pending[i].append(p)
            out.append(p)
        return out

    def resolve(self) -> None:
        """Paints every registered job and fills its placeholders."""
        for group in self._groups.values():
            counts = [len(c) for c in group.centers]
            pixels = group.res[0] * group.res[1]
            ends = np.cumsum(_stencils()[2][np.concatenate(group.q)])
            # cum[j]: stencil points of the jobs before job j.
            cum = np.concatenate(([0], ends))[np.cumsum([0] + counts)].tolist()
            start = 0
            while start < len(counts):
                end = start + 1
                while (end < len(counts) and cum[end + 1] - cum[start] <= CHUNK_POINTS
                       and (end + 1 - start) * pixels <= CHUNK_POINTS):
                    end += 1
                self._paint(group, start, end)
                start = end
        self._groups = {}

    @staticmethod
    def _paint(group: _Group, start: int, end: int) -> None:
        w, h = group.res
        jobs = end - start
        n_per = np.array([len(c) for c in group.centers[start:end]], np.int64)
        # int32 throughout: a chunk holds at most CHUNK_POINTS points and pixels.
        centers = np.concatenate(group.centers[start:end]).astype(np.int32)
        q = np.concatenate(group.q[start:end])
        # Each unit's pixel offset of its job's layer in the chunk's block.
        base = np.repeat(np.arange(0, jobs * h * w, h * w, dtype=np.int32), n_per)
        dx, dy, lengths = _stencils()
        reach = lengths[q]
        if len(q) and int(reach.max()) > 1:
            unit = np.repeat(np.arange(len(q), dtype=np.int32), reach)
            k = np.arange(len(unit), dtype=np.int32) - np.repeat(
                (np.cumsum(reach) - reach).astype(np.int32), reach)
            x = centers[:, 0][unit] + dx[k]
            y = centers[:, 1][unit] + dy[k]
        else:  # every disc is its centre pixel
            unit = np.arange(len(q), dtype=np.int32)
            x, y = centers[:, 0], centers[:, 1]
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        unit = unit[inside]
        flat = base[unit] + y[inside] * w + x[inside]
        size = jobs * h * w
        for i, spec in enumerate(group.specs):
            kind, dtype = spec[0], np.dtype(spec[1])
            if kind == "count":
                block = np.minimum(np.bincount(flat, minlength=size), spec[2]).astype(dtype)
            else:
                block = np.zeros(size, dtype)
                if kind == "paint":
                    vals = np.concatenate(group.values[i][start:end])
                    block[flat] = vals[unit].astype(dtype, copy=False)
                else:
                    block[flat] = 1
            block = block.reshape(jobs, h, w)
            block.setflags(write=False)
            for j, p in enumerate(group.pending[i][start:end]):
                p.array = block[j]
