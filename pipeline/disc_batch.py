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
``[jobs, res_y, res_x]`` block.  :meth:`DiscBatch.add_many` registers many
jobs whose units come concatenated (one call per layer kind and replay).

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


class Jobs:
    """Layers registered together by :meth:`DiscBatch.add_many`: once
    resolved, ``arrays[spec][job]`` is each job's layer for each spec."""

    __slots__ = ("arrays",)

    def __init__(self) -> None:
        self.arrays: list[list[np.ndarray]] = []


class Pending:
    """One layer registered by :meth:`DiscBatch.add`; ``array`` once resolved."""

    __slots__ = ("_jobs", "_spec")

    def __init__(self, jobs: Jobs, spec: int) -> None:
        self._jobs, self._spec = jobs, spec

    @property
    def array(self) -> np.ndarray:
        return self._jobs.arrays[self._spec][0]


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
    """Jobs sharing a resolution and channel kinds (one block per channel):
    the registered calls' units, concatenated at :meth:`DiscBatch.resolve`."""

    def __init__(self, res: tuple[int, int], specs: tuple) -> None:
        self.res = res
        self.specs = specs
        self.centers: list[np.ndarray] = []
        self.q: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.values: list[list[np.ndarray]] = [[] for _ in specs]
        self.handles: list[Jobs] = []


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
        centers = np.asarray(centers, np.int64).reshape(-1, 2)
        jobs = self.add_many(res, centers, radii, specs, values,
                             np.array([len(centers)], np.int64))
        return [Pending(jobs, i) for i in range(len(specs))]

    def add_many(self, res: tuple[int, int], centers: np.ndarray, radii: np.ndarray,
                 specs: tuple, values: Sequence[np.ndarray], counts: np.ndarray) -> Jobs:
        """Registers ``len(counts)`` jobs at once: job ``j`` draws the next
        ``counts[j]`` units of ``centers``, ``radii`` and ``values`` (as
        :meth:`add`).  The returned :class:`Jobs` holds the layers once
        resolved."""
        key = (res, specs)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(res, specs)
        r = np.minimum(np.asarray(radii, np.float64), MAX_RADIUS_PX)
        group.centers.append(np.asarray(centers, np.int64).reshape(-1, 2))
        group.q.append((r * r).astype(np.int64))  # floor: radii are non-negative
        group.counts.append(np.asarray(counts, np.int64))
        vi = 0
        for i, spec in enumerate(specs):
            if spec[0] == "paint":
                group.values[i].append(values[vi])
                vi += 1
        jobs = Jobs()
        group.handles.append(jobs)
        return jobs

    def resolve(self) -> None:
        """Paints every registered job and fills its handles."""
        for group in self._groups.values():
            counts = np.concatenate(group.counts)
            centers = np.concatenate(group.centers).astype(np.int32)
            q = np.concatenate(group.q)
            values = [np.concatenate(v) if v else None for v in group.values]
            pixels = group.res[0] * group.res[1]
            ends = np.cumsum(_stencils()[2][q])
            units = np.concatenate(([0], np.cumsum(counts)))
            # cum[j]: stencil points of the jobs before job j.
            cum = np.concatenate(([0], ends))[units].tolist()
            units = units.tolist()
            n_jobs = len(counts)
            per_chunk = max(CHUNK_POINTS // pixels, 1)
            views: list[list[np.ndarray]] = [[] for _ in group.specs]
            start = 0
            while start < n_jobs:
                end = start + 1
                limit = min(start + per_chunk, n_jobs)
                while end < limit and cum[end + 1] - cum[start] <= CHUNK_POINTS:
                    end += 1
                blocks = self._paint(group, centers[units[start]:units[end]],
                                     q[units[start]:units[end]],
                                     [None if v is None else v[units[start]:units[end]]
                                      for v in values], counts[start:end])
                for i, block in enumerate(blocks):
                    views[i].extend(block)
                start = end
            offset = 0
            for jobs, c in zip(group.handles, group.counts):
                jobs.arrays = [v[offset:offset + len(c)] for v in views]
                offset += len(c)
        self._groups = {}

    @staticmethod
    def _paint(group: _Group, centers: np.ndarray, q: np.ndarray,
               values: list[np.ndarray | None], n_per: np.ndarray) -> list[np.ndarray]:
        """One chunk of jobs: a read-only ``[jobs, h, w]`` block per spec."""
        w, h = group.res
        jobs = len(n_per)
        # int32 throughout: a chunk holds at most CHUNK_POINTS points and pixels.
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
        out = []
        for i, spec in enumerate(group.specs):
            kind, dtype = spec[0], np.dtype(spec[1])
            if kind == "count":
                block = np.minimum(np.bincount(flat, minlength=size), spec[2]).astype(dtype)
            else:
                block = np.zeros(size, dtype)
                if kind == "paint":
                    block[flat] = values[i][unit].astype(dtype, copy=False)
                else:
                    block[flat] = 1
            block = block.reshape(jobs, h, w)
            block.setflags(write=False)
            out.append(block)
        return out
