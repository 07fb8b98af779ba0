"""Evaluation statistics: replay-level bootstrap intervals and baselines.

Samples of one replay are strongly correlated (same players, same outcome,
consecutive game loops), so a confidence interval that resamples *samples*
is far too narrow.  :func:`bootstrap_mean` resamples whole groups (replays)
with replacement and recomputes the pooled mean over the samples of the drawn
groups; the interval is the percentile interval of those means.

Baselines, all fitted on the TRAIN split only, give the numbers a floor:
* majority outcome: always predict the more frequent value label;
* matchup prior: predict win when the train win rate of the sample's
  (race, opponent race) exceeds 0.5 (ties and unseen matchups fall back to
  the majority label);
* most frequent available function: the train split's most frequent target
  among the functions available in the sample.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Hashable, Sequence

import numpy as np

from schemas import layers


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap percentile interval."""
    mean: float
    low: float
    high: float
    n: int          # samples
    groups: int     # distinct groups (replays)

    def to_json(self) -> dict:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 6)
        return {"mean": clean(self.mean), "ci_low": clean(self.low),
                "ci_high": clean(self.high), "n": self.n, "replays": self.groups}


def group_codes(groups: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for group ids, and G."""
    _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if codes.size else 0


def bootstrap_distribution(values: np.ndarray, groups: Sequence[Hashable] | np.ndarray, *,
                           resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``resamples`` pooled means, each over the samples of G groups drawn
    with replacement (G = number of distinct groups)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    codes, g = group_codes(groups)
    if values.shape[0] != codes.shape[0]:
        raise ValueError(f"{values.shape[0]} values but {codes.shape[0]} group ids")
    if values.size == 0:
        return np.zeros(0)
    sums = np.bincount(codes, weights=values, minlength=g)
    counts = np.bincount(codes, minlength=g).astype(np.float64)
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, 2_000_000 // g)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        draws = rng.integers(0, g, size=(stop - start, g))
        stats[start:stop] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return stats


def bootstrap_mean(values: np.ndarray, groups: Sequence[Hashable] | np.ndarray, *,
                   resamples: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval over ``groups``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    stats = bootstrap_distribution(values, groups, resamples=resamples, seed=seed)
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(float(values.mean()), float(low), float(high), int(values.size),
                    group_codes(groups)[1])


def chebyshev_within(pred: np.ndarray, target: np.ndarray, resolution: int,
                     pixels: int) -> np.ndarray:
    """Whether flat pixel indices (``y * res + x``) are within ``pixels`` in
    both x and y (``pixels=0``: exact)."""
    pred, target = np.asarray(pred), np.asarray(target)
    dx = np.abs(pred % resolution - target % resolution)
    dy = np.abs(pred // resolution - target // resolution)
    return np.maximum(dx, dy) <= pixels


# ------------------------------------------------------------------ baselines
def majority_label(train_values: np.ndarray) -> int:
    """The more frequent train value label (1 only if wins are a strict majority)."""
    train_values = np.asarray(train_values)
    if train_values.size == 0:
        raise ValueError("the train split has no samples: no majority baseline")
    return int(train_values.mean() > 0.5)


def matchup_win_rates(race: Sequence[str], opponent_race: Sequence[str],
                      values: np.ndarray) -> dict[str, dict]:
    """Train win rate per matchup ``"Race vs Opponent"``: {rate, samples}."""
    out: dict[str, list[float]] = {}
    for r, o, v in zip(race, opponent_race, np.asarray(values)):
        key = f"{r} vs {o}"
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0] += float(v)
        acc[1] += 1.0
    return {k: {"rate": s / n, "samples": int(n)} for k, (s, n) in sorted(out.items())}


def matchup_predictions(rates: dict[str, dict], race: Sequence[str],
                        opponent_race: Sequence[str], fallback: int) -> np.ndarray:
    """1 where the matchup's train win rate is > 0.5, 0 where < 0.5, else ``fallback``."""
    preds = []
    for r, o in zip(race, opponent_race):
        entry = rates.get(f"{r} vs {o}")
        if entry is None or entry["rate"] == 0.5:
            preds.append(fallback)
        else:
            preds.append(int(entry["rate"] > 0.5))
    return np.asarray(preds, dtype=np.int64)


def function_counts(train_function_ids: np.ndarray) -> np.ndarray:
    """How often each function id is the train target; shape [NUM_FUNCTIONS]
    (unknown targets, ``schemas.layers.UNKNOWN``, are not counted)."""
    ids = np.asarray(train_function_ids, dtype=np.int64)
    return np.bincount(ids[ids >= 0],
                       minlength=layers.NUM_FUNCTIONS)[:layers.NUM_FUNCTIONS]


def most_frequent_available(counts: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Per sample, the available function with the highest train count (ties:
    lowest id; nothing available: no_op)."""
    available = np.asarray(available) > 0
    scores = np.where(available, np.asarray(counts, np.float64)[None, :], -1.0)
    preds = scores.argmax(axis=1)
    return np.where(available.any(axis=1), preds, layers.NO_OP)


# ------------------------------------------------------------------ breakdowns
def by_bucket(values: np.ndarray, keys: np.ndarray, edges: Sequence[float],
              groups: np.ndarray, **bootstrap) -> list[dict]:
    """``bootstrap_mean`` of ``values`` within each ``[edges[i], edges[i+1])``
    bucket of ``keys``."""
    values, keys, groups = np.asarray(values), np.asarray(keys), np.asarray(groups)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (keys >= lo) & (keys < hi)
        out.append({"low": float(lo), "high": float(hi),
                    "interval": bootstrap_mean(values[sel], groups[sel], **bootstrap)})
    return out


def by_class(values: np.ndarray, classes: np.ndarray, groups: np.ndarray, *,
             min_count: int = 1, **bootstrap) -> dict[int, Interval]:
    """``bootstrap_mean`` of ``values`` per class with at least ``min_count``
    samples, most frequent class first."""
    values, classes, groups = np.asarray(values), np.asarray(classes), np.asarray(groups)
    ids, counts = np.unique(classes, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {int(ids[i]): bootstrap_mean(values[classes == ids[i]],
                                        groups[classes == ids[i]], **bootstrap)
            for i in order if counts[i] >= min_count}
