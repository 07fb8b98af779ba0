"""trainers.metrics on hand-built numbers: replay bootstrap and baselines."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from schemas import layers
from trainers import metrics


def test_bootstrap_two_replays_one_right_one_wrong():
    # Replay A: 10 correct samples, replay B: 10 wrong ones.  Resampling
    # replays gives 0 (B,B) with p=1/4, 0.5 with p=1/2, 1 (A,A) with p=1/4.
    values = np.array([1] * 10 + [0] * 10)
    groups = ["a"] * 10 + ["b"] * 10
    ci = metrics.bootstrap_mean(values, groups, resamples=4000, seed=1)
    assert ci.mean == 0.5 and ci.n == 20 and ci.groups == 2
    assert ci.low == 0.0 and ci.high == 1.0
    stats = metrics.bootstrap_distribution(values, groups, resamples=4000, seed=1)
    freq = {v: np.mean(stats == v) for v in (0.0, 0.5, 1.0)}
    assert abs(freq[0.0] - 0.25) < 0.03 and abs(freq[0.5] - 0.5) < 0.03
    assert sum(freq.values()) == pytest.approx(1.0)


def test_bootstrap_matches_exact_enumeration_with_unequal_replays():
    # Three replays of sizes 1, 2, 3 with accuracies 1, 0.5, 0: the pooled
    # mean of a resample weights each drawn replay by its sample count.
    values = np.array([1, 1, 0, 0, 0, 0])
    groups = np.array(["r1", "r2", "r2", "r3", "r3", "r3"])
    sums, counts = {"r1": 1, "r2": 1, "r3": 0}, {"r1": 1, "r2": 2, "r3": 3}
    exact: dict[float, float] = {}
    for draw in itertools.product(sums, repeat=3):
        v = round(sum(sums[d] for d in draw) / sum(counts[d] for d in draw), 9)
        exact[v] = exact.get(v, 0.0) + 1 / 27
    stats = np.round(metrics.bootstrap_distribution(values, groups, resamples=30000,
                                                    seed=3), 9)
    for v, p in exact.items():
        assert abs(np.mean(stats == v) - p) < 0.01, v
    assert set(np.unique(stats)) <= set(exact)
    assert metrics.bootstrap_mean(values, groups).mean == pytest.approx(2 / 6)


def test_bootstrap_resamples_replays_not_samples():
    # 50 replays, each all-right or all-wrong: a replay-level interval must be
    # much wider than one that treats the 5000 samples as independent.
    rng = np.random.default_rng(0)
    per_replay = rng.integers(0, 2, 50)
    values = np.repeat(per_replay, 100)
    groups = np.repeat(np.arange(50), 100)
    replay_ci = metrics.bootstrap_mean(values, groups, seed=0)
    sample_ci = metrics.bootstrap_mean(values, np.arange(values.size), seed=0)
    assert (replay_ci.high - replay_ci.low) > 5 * (sample_ci.high - sample_ci.low)
    assert replay_ci.groups == 50 and sample_ci.groups == 5000


def test_bootstrap_degenerate_and_empty():
    ci = metrics.bootstrap_mean([1, 0, 1, 1], ["x"] * 4)
    assert (ci.mean, ci.low, ci.high) == (0.75, 0.75, 0.75)
    empty = metrics.bootstrap_mean([], [])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert empty.to_json()["mean"] is None
    with pytest.raises(ValueError):
        metrics.bootstrap_mean([1, 0], ["a"])


def test_chebyshev_within():
    res = 8
    target = np.array([3 * res + 4, 0, 63])          # (x=4, y=3), (0, 0), (7, 7)
    pred = np.array([5 * res + 5, 0, 7 * res + 4])   # (5, 5), (0, 0), (4, 7)
    assert metrics.chebyshev_within(pred, target, res, 0).tolist() == [False, True, False]
    assert metrics.chebyshev_within(pred, target, res, 2).tolist() == [True, True, False]
    assert metrics.chebyshev_within(pred, target, res, 3).tolist() == [True, True, True]


def test_majority_and_matchup_baselines():
    assert metrics.majority_label(np.array([1, 1, 0])) == 1
    assert metrics.majority_label(np.array([1, 0])) == 0
    with pytest.raises(ValueError):
        metrics.majority_label(np.array([]))
    race = ["Terran", "Terran", "Terran", "Zerg", "Zerg", "Zerg", "Protoss", "Protoss"]
    opp = ["Zerg", "Zerg", "Zerg", "Terran", "Terran", "Terran", "Protoss", "Protoss"]
    won = np.array([1, 1, 0, 0, 0, 1, 1, 0])
    rates = metrics.matchup_win_rates(race, opp, won)
    assert rates == {"Protoss vs Protoss": {"rate": 0.5, "samples": 2},
                     "Terran vs Zerg": {"rate": 2 / 3, "samples": 3},
                     "Zerg vs Terran": {"rate": 1 / 3, "samples": 3}}
    preds = metrics.matchup_predictions(
        rates, ["Terran", "Zerg", "Protoss", "Zerg"], ["Zerg", "Terran", "Protoss", "Zerg"],
        fallback=1)
    # TvZ won 2/3 -> win; ZvT -> loss; PvP (0.5) and unseen ZvZ -> fallback.
    assert preds.tolist() == [1, 0, 1, 1]


def test_most_frequent_available_function():
    counts = metrics.function_counts(np.array([5, 5, 5, 7, 7, 0]))
    assert counts.shape == (layers.NUM_FUNCTIONS,)
    assert (counts[0], counts[5], counts[7]) == (1, 3, 2)
    available = np.zeros((4, layers.NUM_FUNCTIONS), np.uint8)
    available[0, [0, 5, 7]] = 1   # 5 is the most frequent target
    available[1, [0, 7, 9]] = 1   # 5 unavailable -> 7
    available[2, [9, 11]] = 1     # never seen in train: tie at 0 -> lowest id
    # row 3: nothing available -> no_op
    assert metrics.most_frequent_available(counts, available).tolist() == [5, 7, 9, 0]


def test_breakdowns_by_bucket_and_class():
    values = np.array([1, 0, 1, 1, 0, 0])
    minutes = np.array([0.5, 1.5, 2.5, 3.0, 9.0, 30.0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    rows = metrics.by_bucket(values, minutes, [0, 2, 4, float("inf")], groups)
    assert [r["interval"].n for r in rows] == [2, 2, 2]
    assert [r["interval"].mean for r in rows] == [0.5, 1.0, 0.0]
    classes = np.array([3, 3, 3, 8, 8, 1])
    per = metrics.by_class(values, classes, groups, min_count=2)
    assert list(per) == [3, 8]
    assert per[3].mean == pytest.approx(2 / 3) and per[8].mean == 0.5
