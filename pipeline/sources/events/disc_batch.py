"""Deferred, batched painting of unit discs on many feature layers at once.

Why this exists: the engine-free source redraws small layers thousands of
times per replay (a 20-minute 1v1 redraws its minimap ~2,000 times and its
screen ~3,000 times, a few dozen to a few hundred units each).  Drawn one at a
time (``pipeline.sources.events.rasterize.Discs``), each redraw costs some twenty numpy calls
whose fixed overhead dwarfs the work.  Nothing reads a layer's pixels before
the replay is walked, so jobs are only *registered* (:meth:`DiscBatch.add_many`:
many jobs whose units come concatenated, one call per layer kind and replay;
:meth:`DiscBatch.add`: one job, returning :class:`Pending` handles) and
:meth:`DiscBatch.resolve` paints all registered jobs of one kind in a few
numpy passes over their concatenated units, each job's layer a
``[res_y, res_x]`` slice of one read-only ``[jobs, res_y, res_x]`` block.
Jobs with equal contents are painted once and share their layer.

Semantics are those of ``pipeline.sources.events.rasterize.Discs`` (and bit-identical to
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

from pipeline.sources.events.rasterize import MAX_RADIUS_PX

#: Stencil points expanded per numpy pass at most (bounds the scratch memory).
CHUNK_POINTS = 1 << 18
#: Look for duplicate jobs when discs average more stencil points than this
#: (finding them costs a few passes over the units; painting, over the points).
DEDUP_POINTS_PER_UNIT = 4
_MIX = [np.uint64(k) for k in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                               0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                               0x94D049BB133111EB, 0xBF58476D1CE4E5B9)]


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
        """Paints every registered job and fills its handles.

        Jobs with equal contents (same units, radii and values in the same
        order: e.g. a selection's discs while only other units moved) are
        painted once and share the array, where discs are big enough for
        that to pay (:func:`_duplicates` finds them exactly).
        """
        for group in self._groups.values():
            counts = np.concatenate(group.counts)
            centers = np.concatenate(group.centers).astype(np.int32)
            q = np.concatenate(group.q)
            values = [np.concatenate(v) if v else None for v in group.values]
            reach = _stencils()[2][q]
            rep = None
            if int(reach.sum()) > DEDUP_POINTS_PER_UNIT * len(q):
                rep = _duplicates(counts, centers, q, values)
                keep = rep == np.arange(len(counts))
                if keep.all():
                    rep = None
                else:
                    unit_keep = np.repeat(keep, counts)
                    counts, centers, q, reach = (counts[keep], centers[unit_keep],
                                                 q[unit_keep], reach[unit_keep])
                    values = [None if v is None else v[unit_keep] for v in values]
            views = self._paint_jobs(group, counts, centers, q, values, reach)
            if rep is not None:
                painted = (np.cumsum(keep) - 1)[rep].tolist()
                views = [[v[i] for i in painted] for v in views]
            offset = 0
            for jobs, c in zip(group.handles, group.counts):
                jobs.arrays = [v[offset:offset + len(c)] for v in views]
                offset += len(c)
        self._groups = {}

    def _paint_jobs(self, group: _Group, counts: np.ndarray, centers: np.ndarray,
                    q: np.ndarray, values: list[np.ndarray | None],
                    reach: np.ndarray) -> list[list[np.ndarray]]:
        """Paints jobs (their units concatenated) in chunks; per spec, each
        job's layer."""
        pixels = group.res[0] * group.res[1]
        ends = np.cumsum(reach)
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
        return views

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


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(starts[i], starts[i] + lengths[i])`` and, per
    element, its ``i``."""
    lengths = np.asarray(lengths, np.int64)
    which = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.repeat(np.asarray(starts, np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(int(lengths.sum())) + offset, which


def _duplicates(counts: np.ndarray, centers: np.ndarray, q: np.ndarray,
                values: list[np.ndarray | None]) -> np.ndarray:
    """Per job, the first job with exactly the same units (centres, squared
    radii, values, in order): a hash per job proposes, an elementwise
    comparison confirms (a job whose proposal differs stays its own)."""
    n_jobs = len(counts)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(q)) - np.repeat(starts, counts)
    h = (centers[:, 0].astype(np.uint64) * _MIX[0] + centers[:, 1].astype(np.uint64) * _MIX[1]
         + q.astype(np.uint64) * _MIX[2] + position.astype(np.uint64) * _MIX[3])
    for i, v in enumerate(values):
        if v is not None:
            h += v.astype(np.uint64) * _MIX[4 + i % 4]
    h ^= h >> np.uint64(29)
    h *= _MIX[6]
    h ^= h >> np.uint64(32)
    job_hash = np.zeros(n_jobs, np.uint64)
    filled = counts > 0
    if filled.any():
        job_hash[filled] = np.add.reduceat(h, starts[filled])
    job_hash ^= counts.astype(np.uint64) * _MIX[7]
    _, first, inverse = np.unique(job_hash, return_index=True, return_inverse=True)
    rep = first[inverse]
    dup = np.flatnonzero(rep != np.arange(n_jobs))
    if not len(dup):
        return rep
    same_count = counts[dup] == counts[rep[dup]]
    rep[dup[~same_count]] = dup[~same_count]
    dup = dup[same_count]
    a, owner = concat_ranges(starts[dup], counts[dup])
    b, _ = concat_ranges(starts[rep[dup]], counts[dup])
    equal = (centers[a] == centers[b]).all(axis=1) & (q[a] == q[b])
    for v in values:
        if v is not None:
            equal &= v[a] == v[b]
    differ = dup[np.unique(owner[~equal])]
    rep[differ] = differ
    return rep
