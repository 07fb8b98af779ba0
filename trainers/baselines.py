"""The baselines a model is judged against, fitted once on its training data.

A network's held-out accuracy means little alone: the value head is compared
with the majority outcome, the matchup's win rate and a logistic regression
on the player's own non-spatial observation; the function head with the most
frequent available function.  All four are fitted on the windows the model
trained on (its training selection, every ``train_every``-th window) and
kept beside the model in ``baselines.json``, so that evaluating the model on
*any* pipeline output (games from another source, ``--split all``) compares
it with the same fitted baselines, and a shipped model carries them without
its training data.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from trainers import linear_baseline, metrics
from trainers.input import (FeatureSpec, TrainerInputError, read_columns, read_manifest,
                            signed_log1p)
from trainers.train import TrainConfig, write_json_atomic


def nonspatial_columns(spec: FeatureSpec) -> list[str]:
    """The sample fields the player-features logistic regression reads."""
    return ["player", "game_loop"] + (["score"] if spec.score else [])


def logistic_inputs(p: Mapping[str, np.ndarray]) -> np.ndarray:
    """The logistic regression's features of predicted samples (the model's
    transformed inputs, as ``trainers.evaluate.predict`` keeps them)."""
    return linear_baseline.player_features(p["player_log1p"], p["game_loop"],
                                           p.get("score_log"))


def _columns_features(rows: Mapping[str, np.ndarray], with_score: bool) -> np.ndarray:
    return linear_baseline.player_features(
        linear_baseline.log_player(rows["player"]), rows["game_loop"],
        signed_log1p(np.asarray(rows["score"], np.float64)) if with_score else None)


def player_logistic(train: dict, val: dict | None, with_score: bool) -> dict:
    """The player-features logistic regression from columns (``player`` raw,
    ``game_loop``, ``value``, and with ``with_score`` ``score`` raw): fitted
    on ``train``, L2 chosen on ``val``'s log loss (a fixed L2 of 0.01 when
    ``val`` is None or empty)."""
    train_x = _columns_features(train, with_score)
    if val is None or val["value"].size == 0:
        return {"model": linear_baseline.fit_logistic(train_x, train["value"], 1e-2),
                "table": [], "selected_on": "fixed (no validation split)"}
    model, table = linear_baseline.select_logistic(train_x, train["value"],
                                                   _columns_features(val, with_score),
                                                   val["value"])
    return {"model": model, "table": table, "selected_on": "validation log loss"}


@dataclasses.dataclass
class Baselines:
    majority: int
    train_win_fraction: float
    matchup_rates: dict[str, dict]
    function_counts: np.ndarray            # [NUM_FUNCTIONS] train target counts
    logistic: linear_baseline.LogisticModel
    logistic_table: list[dict]
    logistic_selected_on: str
    with_score: bool
    fitted_on: dict                        # data, selection, every, samples

    # ------------------------------------------------------------ predictions
    def majority_ok(self, label: np.ndarray) -> np.ndarray:
        return np.asarray(label) == self.majority

    def matchup_ok(self, p: Mapping[str, np.ndarray]) -> np.ndarray:
        return metrics.matchup_predictions(self.matchup_rates, p["race"], p["opponent_race"],
                                           self.majority) == p["value"].astype(np.int64)

    def logistic_prob(self, p: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.logistic.prob(logistic_inputs(p))

    def most_frequent_available(self, available: np.ndarray) -> np.ndarray:
        return metrics.most_frequent_available(self.function_counts, available)

    # ------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        lr = self.logistic
        return {"majority_label": self.majority,
                "train_win_fraction": self.train_win_fraction,
                "matchup_win_rates": self.matchup_rates,
                "function_counts": [int(c) for c in self.function_counts],
                "logistic_regression": {
                    "features": list(linear_baseline.feature_names(self.with_score)),
                    "mean": lr.mean.tolist(), "scale": lr.scale.tolist(),
                    "weights": lr.weights.tolist(), "l2": lr.l2,
                    "l2_candidates": self.logistic_table,
                    "selected_on": self.logistic_selected_on},
                "with_score": self.with_score,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, d: Mapping) -> "Baselines":
        lr = d["logistic_regression"]
        model = linear_baseline.LogisticModel(np.asarray(lr["mean"]), np.asarray(lr["scale"]),
                                              np.asarray(lr["weights"]), float(lr["l2"]))
        return cls(int(d["majority_label"]), float(d["train_win_fraction"]),
                   dict(d["matchup_win_rates"]), np.asarray(d["function_counts"], np.int64),
                   model, list(lr["l2_candidates"]), str(lr["selected_on"]),
                   bool(d["with_score"]), dict(d["fitted_on"]))


def fit(config: TrainConfig, log: Callable[[str], None] = print) -> Baselines:
    """Fits every baseline on ``config``'s training windows (L2 of the
    regression chosen on its validation selection, same stride)."""
    spec, every = config.spec, max(1, config.train_every)
    columns = ["value", "function_id", "race", "opponent_race", *nonspatial_columns(spec)]
    log(f"fitting baselines on {config.train_selection.name} of {config.data}"
        f"{f' (1 window in {every})' if every > 1 else ''}")
    train = read_columns(config.data, config.train_selection, columns, spec.schema,
                         every=every)
    try:
        val = read_columns(config.data, config.validation_selection,
                           nonspatial_columns(spec) + ["value"], spec.schema, every=every)
    except TrainerInputError:
        val = None
    majority = metrics.majority_label(train["value"])
    logistic = player_logistic(train, val, spec.score)
    return Baselines(
        majority=majority, train_win_fraction=float(np.mean(train["value"])),
        matchup_rates=metrics.matchup_win_rates(train["race"], train["opponent_race"],
                                                train["value"]),
        function_counts=metrics.function_counts(train["function_id"]),
        logistic=logistic["model"], logistic_table=logistic["table"],
        logistic_selected_on=logistic["selected_on"], with_score=spec.score,
        fitted_on={"data": str(config.data), "train": config.train_selection.name,
                   "validation": config.validation_selection.name, "every": every,
                   "train_samples": int(train["value"].size),
                   "validation_samples": 0 if val is None else int(val["value"].size)})


def load_or_fit(run: str | os.PathLike, config: TrainConfig,
                log: Callable[[str], None] = print) -> Baselines:
    """``RUN/baselines.json`` when present, else fitted from the run's
    training data and saved there (so every later evaluation, on any data,
    uses the same baselines)."""
    path = Path(run) / "baselines.json"
    if path.exists():
        return Baselines.from_json(json.loads(path.read_text()))
    try:
        read_manifest(config.data)
    except TrainerInputError as exc:
        raise TrainerInputError(
            f"{path} not found and the run's training data {config.data} cannot be read "
            f"to fit the baselines on ({exc})") from exc
    fitted = fit(config, log)
    write_json_atomic(path, fitted.to_json())
    return fitted
