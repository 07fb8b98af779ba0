"""Work dealt to a local runner's workers by estimated cost (pipeline.job.balance)."""
from __future__ import annotations

import os

import pytest

from pipeline.job.balance import balanced_bins


def test_balanced_bins_longest_first_into_the_least_loaded_bin():
    # 10 -> bin 0, 9 -> 1, 7 -> 1 (9 < 10), 6 -> 0 (10 < 16), 5 -> 0 (a tie at 16)
    assert balanced_bins([5, 10, 7, 9, 6], 2) == [0, 0, 1, 1, 0]
    assert balanced_bins([3, 3, 3], 1) == [0, 0, 0]
    assert balanced_bins([], 4) == []
    # more bins than items: each item alone, longest in bin 0
    assert balanced_bins([1, 2], 3) == [1, 0]
    with pytest.raises(ValueError):
        balanced_bins([1.0], 0)


def test_balanced_bins_depend_only_on_the_costs():
    costs = [37, 5, 5, 12, 40, 1, 22, 22, 9]
    bins = balanced_bins(costs, 2)
    loads = [sum(c for c, b in zip(costs, bins) if b == k) for k in (0, 1)]
    assert sorted(loads) == [76, 77]          # the best split of 153
    assert balanced_bins(list(costs), 2) == bins


def test_each_local_worker_gets_one_bin():
    """On the FnApiRunner with 2 worker processes the bins go one to each
    worker, whatever order the elements arrive in."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.job.balance import BalancedShuffle
    costs = [37, 5, 5, 12, 40, 1, 22, 22, 9]
    bins = balanced_bins(sorted(costs), 2)
    expected = [sorted(c for c, b in zip(sorted(costs), bins) if b == k) for k in (0, 1)]
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_num_workers=2",
                               "--direct_running_mode=multi_processing"])
    with beam.Pipeline(options=options) as p:
        per_worker = (p
                      | beam.Create(costs)
                      | BalancedShuffle(2, cost=float, sort_key=int)
                      | beam.Map(lambda value: (os.getpid(), value))  # a lambda travels by value
                      | beam.GroupByKey()
                      | beam.MapTuple(lambda pid, values: sorted(values)))
        assert_that(per_worker, equal_to(expected))
