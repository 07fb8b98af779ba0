"""Spreads a step's work evenly over a local runner's workers.

Beam's local runner (the FnApiRunner behind ``--direct_num_workers=N``, in
worker threads or processes) gives each of its N workers a fixed
share of a step's input: the keys of the grouping before the step, dealt out
round-robin.  It never moves work between workers.  After a ``Reshuffle``
(random keys) each worker gets the same *number* of replays, but replays
differ tenfold in length, so one worker can still be sampling its last long
games while the other has finished and waits: on 48 short replays the two
workers finished 1.5-1.8 s apart, in a 15 s step.

:class:`BalancedShuffle` deals instead by estimated cost: the elements are
collected, placed longest first into whichever of N bins holds the least
estimated cost so far (the classic longest-processing-time rule: within 4/3
of the best split), and grouped by bin.  With exactly N keys the runner gives
each worker one bin.  ``workers=0`` (Dataflow, Dask: runners that split work
dynamically) keeps the plain ``Reshuffle``.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Sequence

import apache_beam as beam


def balanced_bins(costs: Sequence[float], bins: int) -> list[int]:
    """The bin (0..bins-1) of each cost, longest first into the least-loaded
    bin; ties go to the lower index, so the result depends only on ``costs``."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    order = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    heap = [(0.0, b) for b in range(bins)]
    out = [0] * len(costs)
    for i in order:
        load, b = heapq.heappop(heap)
        out[i] = b
        heapq.heappush(heap, (load + costs[i], b))
    return out


def _deal(items: list, cost: Callable[[Any], float], sort_key: Callable[[Any], Any],
          bins: int):
    items = sorted(items, key=sort_key)          # the input order must not matter
    costs = [float(cost(item)) for item in items]
    for position, (item, b) in enumerate(zip(items, balanced_bins(costs, bins))):
        yield b, (-costs[position], position, item)


def _undeal(grouped):
    _, entries = grouped
    for _, _, item in sorted(entries, key=lambda e: (e[0], e[1])):
        yield item


class BalancedShuffle(beam.PTransform):
    """``Reshuffle`` for ``workers=0``; otherwise ``workers`` groups of equal
    estimated ``cost``, each processed longest first.

    ``sort_key`` orders the elements before dealing (a stable identity such
    as the replay id), so the bins do not depend on the order elements
    arrive in.
    """

    def __init__(self, workers: int, cost: Callable[[Any], float],
                 sort_key: Callable[[Any], Any]):
        super().__init__()
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.workers = workers
        self.cost = cost
        self.sort_key = sort_key

    def expand(self, pcoll):
        if self.workers == 0:
            return pcoll | "Reshuffle" >> beam.Reshuffle()
        return (pcoll
                | "CollectAll" >> beam.combiners.ToList()
                | "DealByCost" >> beam.FlatMap(_deal, self.cost, self.sort_key, self.workers)
                | "GroupByWorker" >> beam.GroupByKey()
                | "LongestFirst" >> beam.FlatMap(_undeal))
