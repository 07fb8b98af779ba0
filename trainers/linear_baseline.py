"""A value baseline that sees only the non-spatial observation.

"Player features logistic regression": a logistic regression of the game
outcome on the player vector (``log(x + 1)``, as the networks see it; without
its ``player_id`` slot), the score vector when the model reads it
(``sign(x) log(|x| + 1)``) and the game time (``game_loop /
GAME_TIME_SCALE``), fitted on the train split, with its L2 strength chosen on
the validation split's log loss.  It says how much of the outcome is
predictable from what a player's own economy, supply and score show at a
given time, with no spatial input and almost no capacity to memorize
replays, so a network's value head can be judged against it.

Fitting is Newton's method (iteratively reweighted least squares) on
standardized features: 11 (31 with the score) features, so each step is a
small dense solve.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from schemas import layers
from trainers.input import GAME_TIME_SCALE

# The player vector's columns the baseline reads: all but ``player_id``, an
# identifier of the slot, not a state of the game (with few train replays a
# slot's win rate is noise the regression would otherwise fit).
STATE_COLUMNS: tuple[int, ...] = tuple(
    i for i, name in enumerate(layers.PLAYER_FEATURES) if name != "player_id")


def feature_names(with_score: bool) -> tuple[str, ...]:
    """The names of :func:`player_features`' columns."""
    score = tuple(f"score_{n}" for n in layers.SCORE_FEATURES) if with_score else ()
    return tuple(layers.PLAYER_FEATURES[i] for i in STATE_COLUMNS) + score + ("game_time",)


DEFAULT_L2: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def log_player(player: np.ndarray) -> np.ndarray:
    """Raw player vectors -> ``log(x + 1)``, the networks' transform."""
    return np.log1p(np.maximum(np.asarray(player, np.float64), 0.0))


def player_features(logged_player: np.ndarray, game_loop: np.ndarray,
                    logged_score: np.ndarray | None = None) -> np.ndarray:
    """[N, 11] log-transformed player vectors, [N] game loops and, optionally,
    [N, 20] transformed score vectors (the networks' inputs) -> [N, F]
    features (:func:`feature_names`)."""
    time = np.asarray(game_loop, np.float64)[:, None] / GAME_TIME_SCALE
    parts = [np.asarray(logged_player, np.float64)[:, list(STATE_COLUMNS)]]
    if logged_score is not None:
        parts.append(np.asarray(logged_score, np.float64))
    return np.concatenate(parts + [time], axis=1)


@dataclasses.dataclass(frozen=True)
class LogisticModel:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray   # [features + 1], bias last
    l2: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return z @ self.weights[:-1] + self.weights[-1]

    def prob(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(x)))


def log_loss(prob: np.ndarray, label: np.ndarray) -> float:
    p = np.clip(prob, 1e-7, 1 - 1e-7)
    label = np.asarray(label, np.float64)
    return float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50,
                 tol: float = 1e-8) -> LogisticModel:
    """L2-regularized logistic regression (bias unpenalized); ``l2`` scales the
    penalty ``l2/2 * |w|^2`` against the mean log loss."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape[0] == 0:
        raise ValueError("no samples to fit")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.concatenate([(x - mean) / scale, np.ones((x.shape[0], 1))], axis=1)
    n, d = z.shape
    penalty = np.full(d, l2)
    penalty[-1] = 0.0
    w = np.zeros(d)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) / n + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z / n + np.diag(penalty) + 1e-10 * np.eye(d)
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.max(np.abs(delta)) < tol:
            break
    return LogisticModel(mean, scale, w, float(l2))


def select_logistic(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                    val_y: np.ndarray, l2_grid: Sequence[float] = DEFAULT_L2
                    ) -> tuple[LogisticModel, list[dict]]:
    """Fits one model per L2 strength on train; returns the one with the
    lowest validation log loss and the table of every candidate."""
    table, best, best_loss = [], None, np.inf
    for l2 in l2_grid:
        model = fit_logistic(train_x, train_y, l2)
        prob = model.prob(val_x)
        loss = log_loss(prob, val_y)
        table.append({"l2": float(l2), "validation_log_loss": loss,
                      "validation_accuracy": float(np.mean((prob > 0.5) == (val_y > 0.5)))})
        if loss < best_loss:
            best, best_loss = model, loss
    return best, table
