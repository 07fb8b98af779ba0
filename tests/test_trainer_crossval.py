"""Cross-validation over replays (trainers.crossval): folds, pooling, resume.

Runs on the tiny synthetic shards of tests/support/trainer_synthetic.py (16x16, 12
replays spread over the three Beam splits) with 3 folds and 2 training steps
per fold; the real-data numbers are in docs/results.md.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainers import crossval as cv  # noqa: E402
from trainers.train import TrainConfig  # noqa: E402

RES = 16
FOLDS = 3
SAMPLES_PER_REPLAY = 2 * 12  # two players, 12 loops each


@pytest.fixture(scope="module")
def data(synthetic_data):  # conftest: shared synthetic shards, RES x RES
    return synthetic_data


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    data_dir, samples = data
    out = tmp_path_factory.mktemp("crossval_run")
    base = TrainConfig(data=str(data_dir), model="fully_conv", out=str(out), steps=2,
                       batch_size=4, log_every=1, validation_every=1, validation_samples=8,
                       value_input="pooled", value_weight=0.1)
    lines: list[str] = []
    report = cv.crossval(str(data_dir), str(out), FOLDS, base, batch_size=32,
                         resamples=200, log=lines.append)
    return out, report, lines, base


def all_replays(samples) -> list[str]:
    return sorted({s["replay_id"] for split in samples.values() for s in split})


def test_fold_assignment_is_deterministic_balanced_and_replay_grouped(data):
    _, samples = data
    replays = all_replays(samples)
    folds = cv.assign_folds(replays, FOLDS)
    shuffled = replays[::-1] * 2  # order and repeats (one id per sample) do not matter
    random.Random(1).shuffle(shuffled)
    assert cv.assign_folds(shuffled, FOLDS) == folds
    assert sorted(folds) == replays                      # every replay exactly once
    sizes = np.bincount(list(folds.values()), minlength=FOLDS)
    assert sizes.tolist() == [4, 4, 4]
    # The order is the salted hash: the first FOLDS replays by key fill folds 0..K-1.
    ordered = sorted(replays, key=cv.fold_key)
    assert [folds[r] for r in ordered] == [i % FOLDS for i in range(len(replays))]
    assert cv.fold_roles(2, 3) == {"heldout": 2, "inner_validation": 0, "train": [1]}
    with pytest.raises(ValueError, match="at least 3"):
        cv.assign_folds(replays, 2)
    with pytest.raises(ValueError, match="cannot fill"):
        cv.assign_folds(replays[:3], 4)


def test_every_replay_is_held_out_once_by_a_model_that_never_saw_it(data, run):
    _, samples = data
    out, report, lines, _ = run
    replays = all_replays(samples)
    assert report["splits_read"] == ["train", "validation", "test"]
    assert report["fold_of_replay"] == cv.assign_folds(replays, FOLDS)
    assert [s["replays"] for s in report["fold_sizes"]] == [4, 4, 4]
    assert [s["samples"] for s in report["fold_sizes"]] == [4 * SAMPLES_PER_REPLAY] * 3
    assert all(s["win_fraction"] == 0.5 for s in report["fold_sizes"])
    seen: list[str] = []
    for k in range(FOLDS):
        fold_dir = out / f"fold_{k}"
        held = set(np.load(fold_dir / cv.PREDICTIONS)["replay_id"].tolist())
        assert held == {r for r, f in report["fold_of_replay"].items() if f == k}
        seen += sorted(held)
        config = json.loads((fold_dir / "config.json").read_text())
        trained_on = set(config["train_data"]["replay_ids"])
        selected_on = set(config["validation_data"]["replay_ids"])
        inner = (k + 1) % FOLDS
        assert selected_on == {r for r, f in report["fold_of_replay"].items() if f == inner}
        assert trained_on == set(replays) - held - selected_on
        assert config["train_data"]["samples"] == len(trained_on) * SAMPLES_PER_REPLAY
        assert (fold_dir / "best.json").exists() and list((fold_dir / "tensorboard").iterdir())
        assert any(l.startswith(f"[fold {k}] validation subset: 8 of 96 samples") for l in lines)
    assert sorted(seen) == replays                       # each replay held out exactly once
    assert report["pooled"]["samples"] == len(replays) * SAMPLES_PER_REPLAY
    assert report["pooled"]["replays"] == len(replays)
    for name in ("crossval_value_by_time.png", "crossval_folds.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / cv.REPORT_NAME).read_text())["pooled"] == report["pooled"]


def test_pooled_metrics_equal_the_folds_recombined(run):
    out, report, _, _ = run
    pooled, folds = report["pooled"], report["per_fold"]
    n = np.array([f["samples"] for f in folds], float)
    for pooled_value, key in ((pooled["value_accuracy"], "value_accuracy"),
                              (pooled["baselines"]["majority_outcome"], "majority_accuracy"),
                              (pooled["baselines"]["player_features_logistic_regression"],
                               "logistic_accuracy"),
                              (pooled["function_accuracy"], "function_accuracy")):
        recombined = float(np.sum(n * [f[key] for f in folds]) / n.sum())
        assert pooled_value["mean"] == pytest.approx(recombined, abs=1e-6)
        assert pooled_value["n"] == n.sum() and pooled_value["replays"] == 12
    # Each replay has one winner and one loser: majority is exactly 0.5, every resample.
    majority = pooled["baselines"]["majority_outcome"]
    assert (majority["mean"], majority["ci_low"], majority["ci_high"]) == (0.5, 0.5, 0.5)
    diff = pooled["model_minus_baseline"]["value_accuracy_vs_majority"]
    assert diff["mean"] == pytest.approx(pooled["value_accuracy"]["mean"] - 0.5, abs=1e-6)
    # Synthetic winners hold 400 minerals and losers 50: the per-fold logistic
    # regression (fitted on the train folds) separates every held-out sample.
    assert all(f["logistic_accuracy"] == 1.0 for f in folds)
    by_time = pooled["value_accuracy_by_game_time"]
    assert sum(r["model"]["n"] for r in by_time) == pooled["samples"]


def test_rerun_skips_finished_folds(data, run, monkeypatch):
    data_dir, _ = data
    out, report, _, base = run

    def fail(*args, **kwargs):
        raise AssertionError("a finished fold was retrained or re-predicted")

    monkeypatch.setattr(cv, "train", fail)
    monkeypatch.setattr(cv, "predict", fail)
    lines: list[str] = []
    again = cv.crossval(str(data_dir), str(out), FOLDS, base, batch_size=32,
                        resamples=200, log=lines.append)
    assert again["pooled"] == report["pooled"]
    assert sum("finished earlier, not retrained" in l for l in lines) == FOLDS
    # A fold whose training finished but whose prediction did not is predicted
    # again without retraining.
    monkeypatch.undo()
    monkeypatch.setattr(cv, "train", fail)
    (out / "fold_1" / cv.FOLD_RESULT).unlink()
    lines.clear()
    third = cv.crossval(str(data_dir), str(out), FOLDS, base, batch_size=32,
                        resamples=200, log=lines.append)
    assert third["pooled"] == report["pooled"]
    assert any("[fold 1] fold 1: training finished earlier" in l for l in lines)
    # Another fold count in the same directory is refused, not mixed.
    with pytest.raises(ValueError, match="another data set, fold count or model"):
        cv.crossval(str(data_dir), str(out), 4, base, batch_size=32, resamples=50,
                    log=lambda m: None)
