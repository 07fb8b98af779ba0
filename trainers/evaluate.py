"""Evaluates a trained run on one split, next to baselines, with replay-level CIs.

    python -m trainers.evaluate --data DIR --run RUN_DIR --split test

Writes into RUN_DIR:
* ``eval_<split>.json``: value accuracy, function-id top-1 accuracy, whole-
  action accuracy, screen/minimap argument accuracy (exact pixel and within
  ``--within_pixels``), value accuracy per game-time bucket (SC2LE figure 8),
  accuracy per target function; each a mean with a 95% bootstrap interval over
  replays, next to the baselines of ``trainers.metrics`` (fitted on the train
  split) and the model-minus-baseline difference (paired, same resamples unit);
* ``eval_<split>_summary.png``, ``eval_<split>_value_by_time.png`` and
  ``eval_<split>_functions.png``.

By default the checkpoint evaluated is the one ``trainers.train`` selected on
the validation split (``checkpoints/best``, see ``best.json``); runs trained
without validation fall back to the latest checkpoint.  ``--checkpoint
latest`` (or a checkpoint path) overrides; the JSON's ``checkpoint`` entry
says which was used.  Baselines include a logistic regression on the player
vector and game time (``trainers.linear_baseline``: fitted on train, L2
chosen on validation).

Argument accuracies count samples whose target function takes the argument;
arFullyConv's arguments are evaluated given the target function (teacher
forcing), while whole-action accuracy uses each model's own choices.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from schemas import layers
from trainers import linear_baseline, metrics
from trainers.action_space import function_names
from trainers.eval_plots import write_plots
from trainers.input import (FeatureSpec, Selection, TrainerInputError, check_data_matches,
                            data_error, make_dataset, read_columns, signed_log1p)
from trainers.train import (Trainer, load_best, load_config, teacher_inputs,
                            write_json_atomic)

LOOPS_PER_MINUTE = 22.4 * 60  # "faster" game speed: 22.4 game loops per second
SPATIAL_ARGS = tuple(a for a in layers.ARGUMENT_TYPES if a.spatial)


def predict(trainer: Trainer, data: str, split: str | Selection, batch_size: int,
            log=print) -> dict[str, np.ndarray]:
    """Runs the model over every sample of ``split`` (a split name or a
    :class:`~trainers.input.Selection`) once; numpy columns."""
    config, model = trainer.config, trainer.model
    ds = make_dataset(data, split, config.spec, batch_size=batch_size, shuffle=False,
                      repeat=False, with_meta=True, source=config.source,
                      tfds_data_dir=config.tfds_data_dir)

    @tf.function
    def step(inputs, targets):
        free = model(inputs, training=False)
        forced = (model(teacher_inputs(inputs, targets), training=False)
                  if model.autoregressive else free)
        out = {"value_prob": tf.sigmoid(free["value"]),
               "function_pred": tf.argmax(free["function"], -1, output_type=tf.int32)}
        for arg in layers.ARGUMENT_TYPES:
            key = f"arg_{arg.name}"
            out[f"{key}_pred"] = tf.argmax(forced[key], -1, output_type=tf.int32)
            out[f"{key}_free"] = tf.argmax(free[key], -1, output_type=tf.int32)
        return out

    cols: dict[str, list[np.ndarray]] = {}
    start, seen = time.perf_counter(), 0
    for batch_index, (inputs, targets, meta) in enumerate(ds):
        seen += int(targets["function_id"].shape[0])
        if batch_index % 50 == 49:
            log(f"evaluated {seen} samples "
                f"({seen / (time.perf_counter() - start):.1f} samples/s)")
        batch = {k: v.numpy() for k, v in step(inputs, targets).items()}
        batch["available_actions"] = inputs["available_actions"].numpy().astype(np.uint8)
        batch["player_log1p"] = inputs["player"].numpy()
        if "score" in inputs:
            batch["score_log"] = inputs["score"].numpy()
        batch.update({k: v.numpy() for k, v in targets.items()})
        batch.update({k: v.numpy() for k, v in meta.items()})
        for k, v in batch.items():
            cols.setdefault(k, []).append(v)
    if not cols:
        raise TrainerInputError(f"{Selection.of(split).name} of {data} holds no samples")
    out = {k: np.concatenate(v) for k, v in cols.items()}
    for k in ("replay_id", "race", "opponent_race"):
        out[k] = np.array([s.decode("utf-8") for s in out[k]], dtype=object)
    return out


def action_correct(p: dict[str, np.ndarray]) -> np.ndarray:
    """Function and every argument the target function takes, model's own
    choices (meaningful where the target is known: see ``policy_known``)."""
    ok = p["function_pred"] == p["function_id"]
    for arg in layers.ARGUMENT_TYPES:
        target = p[f"arg_{arg.name}"]
        ok &= (target < 0) | (p[f"arg_{arg.name}_free"] == target)
    return ok


def evaluate(data: str, run: str, split: str = "test", *, batch_size: int = 64,
             within_pixels: int = 3, bucket_minutes: Sequence[float] = tuple(range(0, 26, 2)),
             resamples: int = 1000, seed: int = 0, min_function_count: int = 20,
             plots: bool = True, checkpoint: str = "best", log=print) -> dict:
    """Computes the report, writes ``eval_<split>.json`` (+ PNGs); returns it.

    ``checkpoint``: ``"best"`` (the validation-selected checkpoint, else the
    latest), ``"latest"``, or a checkpoint path."""
    config = load_config(run)
    config.out = str(run)  # the run directory may have moved since training
    check_data_matches(data, config.spec, f"the run {run}")
    trainer = Trainer(config)
    chosen = choose_checkpoint(trainer, run, checkpoint)
    step = trainer.restore(chosen["path"])
    if step == 0:
        raise TrainerInputError(f"{run} has no checkpoint to evaluate")
    chosen["step"] = step
    log(f"evaluating {chosen['selected']} checkpoint {chosen['path']} (step {step})")
    p = predict(trainer, data, split, batch_size, log)
    train = read_columns(data, "train", ["value", "function_id", "race", "opponent_race",
                                         *nonspatial_columns(config.spec)],
                         config.spec.schema)
    boot = {"resamples": resamples, "seed": seed}
    groups = p["replay_id"]

    def ci(values, sel=None) -> metrics.Interval:
        if sel is None:
            return metrics.bootstrap_mean(values, groups, **boot)
        return metrics.bootstrap_mean(np.asarray(values)[sel], groups[sel], **boot)

    label = p["value"].astype(np.int64)
    value_ok = (p["value_prob"] > 0.5).astype(np.int64) == label
    majority = metrics.majority_label(train["value"])
    majority_ok = label == majority
    rates = metrics.matchup_win_rates(train["race"], train["opponent_race"], train["value"])
    matchup_ok = metrics.matchup_predictions(rates, p["race"], p["opponent_race"],
                                             majority) == label
    function_ok = p["function_pred"] == p["function_id"]
    # Windows whose target is unknown are left out of every policy metric.
    known = p["function_id"] >= 0
    counts = metrics.function_counts(train["function_id"])
    mfa_ok = metrics.most_frequent_available(counts, p["available_actions"]) == p["function_id"]
    logistic = fit_player_logistic(data, config.spec, train)
    logistic_prob = logistic["model"].prob(logistic_inputs(p))
    logistic_ok = (logistic_prob > 0.5).astype(np.int64) == label
    prob = np.clip(p["value_prob"], 1e-7, 1 - 1e-7)
    log_loss = -(label * np.log(prob) + (1 - label) * np.log(1 - prob))

    report_metrics = {
        "value_accuracy": ci(value_ok),
        "value_log_loss": ci(log_loss),
        "function_accuracy": ci(function_ok, known),
        "action_accuracy": ci(action_correct(p), known),
    }
    for arg in SPATIAL_ARGS:
        target, pred = p[f"arg_{arg.name}"], p[f"arg_{arg.name}_pred"]
        used = target >= 0
        res = config.spec.arg_resolution(arg)
        report_metrics[f"{arg.name}_exact"] = ci(pred == target, used)
        report_metrics[f"{arg.name}_within_{within_pixels}px"] = ci(
            metrics.chebyshev_within(pred, target, res, within_pixels), used)
    for arg in layers.ARGUMENT_TYPES:
        if not arg.spatial:
            target = p[f"arg_{arg.name}"]
            report_metrics[f"{arg.name}_accuracy"] = ci(
                p[f"arg_{arg.name}_pred"] == target, target >= 0)

    minutes = p["game_loop"] / LOOPS_PER_MINUTE
    edges = list(bucket_minutes) + [float("inf")]
    time_rows = []
    for m, b, c, lr in zip(metrics.by_bucket(value_ok, minutes, edges, groups, **boot),
                           metrics.by_bucket(majority_ok, minutes, edges, groups, **boot),
                           metrics.by_bucket(matchup_ok, minutes, edges, groups, **boot),
                           metrics.by_bucket(logistic_ok, minutes, edges, groups, **boot)):
        time_rows.append({"minutes": [m["low"], None if np.isinf(m["high"]) else m["high"]],
                          "model": m["interval"].to_json(),
                          "majority_outcome": b["interval"].to_json(),
                          "matchup_prior": c["interval"].to_json(),
                          "player_features_logistic_regression": lr["interval"].to_json()})

    names = function_names()
    per_function = []
    model_by_f = metrics.by_class(function_ok[known], p["function_id"][known], groups[known],
                                  min_count=min_function_count, **boot)
    base_by_f = metrics.by_class(mfa_ok[known], p["function_id"][known], groups[known],
                                 min_count=min_function_count, **boot)
    for f, interval in model_by_f.items():
        per_function.append({"function_id": f, "name": names[f], "count": interval.n,
                             "model": interval.to_json(),
                             "most_frequent_available": base_by_f[f].to_json()})

    report = {
        "split": split, "run": str(run), "data": str(data), "model": config.model,
        "step": step, "checkpoint": chosen,
        "samples": int(label.size), "replays": int(len(set(groups))),
        "target_unknown_samples": int((~known).sum()),
        "bootstrap": {"unit": "replay", "resamples": resamples, "confidence": 0.95,
                      "seed": seed},
        "metrics": {k: v.to_json() for k, v in report_metrics.items()},
        "baselines": {
            "majority_outcome": {"label": majority,
                                 "train_win_fraction": float(np.mean(train["value"])),
                                 "value_accuracy": ci(majority_ok).to_json()},
            "matchup_prior": {"train_win_rates": rates,
                              "value_accuracy": ci(matchup_ok).to_json()},
            "most_frequent_available_function": {
                "function_accuracy": ci(mfa_ok, known).to_json()},
            "player_features_logistic_regression": {
                "features": list(linear_baseline.feature_names(config.spec.score)),
                "transform": "log(x + 1) for player features, sign(x) log(|x| + 1) "
                             "for score features, game_loop / 13440",
                "l2": logistic["model"].l2, "selected_on": logistic["selected_on"],
                "l2_candidates": logistic["table"],
                "value_accuracy": ci(logistic_ok).to_json()},
        },
        "model_minus_baseline": {
            "value_accuracy_vs_majority": ci(value_ok.astype(float) - majority_ok).to_json(),
            "value_accuracy_vs_matchup": ci(value_ok.astype(float) - matchup_ok).to_json(),
            "value_accuracy_vs_player_features_logistic_regression":
                ci(value_ok.astype(float) - logistic_ok).to_json(),
            "function_accuracy_vs_most_frequent_available":
                ci(function_ok.astype(float) - mfa_ok, known).to_json(),
        },
        "value_accuracy_by_game_time": time_rows,
        "function_accuracy_by_function": per_function,
        "within_pixels": within_pixels,
    }
    out = Path(run)
    write_json_atomic(out / f"eval_{split}.json", report)
    if plots:
        write_plots(report, out, split)
    return report


def choose_checkpoint(trainer: Trainer, run: str | os.PathLike, which: str) -> dict:
    """Which checkpoint to evaluate: ``best`` (validation-selected; the latest
    when the run has none), ``latest``, or an explicit checkpoint path."""
    if which == "best":
        best = load_best(run)
        path = trainer.best_manager.latest_checkpoint
        if best and path:
            return {"selected": "best_validation", "path": path,
                    "select_metric": best["metric"], "validation_value": best["value"],
                    "validation_samples": best.get("validation_samples")}
        which = "latest"
        note = "no validation-selected checkpoint in the run; latest used"
    else:
        note = None
    if which == "latest":
        out = {"selected": "latest", "path": trainer.manager.latest_checkpoint}
    else:
        out = {"selected": "path", "path": which}
    if note:
        out["note"] = note
    return out


def nonspatial_columns(spec: FeatureSpec) -> list[str]:
    """The sample fields the player-features logistic regression reads."""
    return ["player", "game_loop"] + (["score"] if spec.score else [])


def logistic_inputs(p: Mapping[str, np.ndarray]) -> np.ndarray:
    """The logistic regression's features of predicted samples (the model's
    transformed inputs, as :func:`predict` keeps them)."""
    return linear_baseline.player_features(p["player_log1p"], p["game_loop"],
                                           p.get("score_log"))


def fit_player_logistic(data: str, spec: FeatureSpec, train: dict) -> dict:
    """The player-features logistic regression: fitted on train, L2 chosen
    on the validation split (a fixed L2 of 0.01 when there is none)."""
    try:
        val = read_columns(data, "validation", nonspatial_columns(spec) + ["value"],
                           spec.schema)
    except TrainerInputError:
        val = None
    return player_logistic(train, val, spec.score)


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainers.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="pipeline output DIR")
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--within_pixels", type=int, default=3)
    p.add_argument("--bucket_minutes", default="0,2,4,6,8,10,12,14,16,18,20,22,24",
                   help="left edges of the game-time buckets, in minutes")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="best",
                   help="'best' (validation-selected, else latest), 'latest', or a path")
    p.add_argument("--min_function_count", type=int, default=20,
                   help="functions with fewer test targets are left out of the breakdown")
    p.add_argument("--verbose", action="store_true", help="on failure, the traceback")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        report = evaluate(a.data, a.run, a.split, batch_size=a.batch_size,
                          within_pixels=a.within_pixels,
                          bucket_minutes=[float(x) for x in a.bucket_minutes.split(",")],
                          resamples=a.resamples, seed=a.seed,
                          min_function_count=a.min_function_count,
                          checkpoint=a.checkpoint, log=lambda m: print(m, flush=True))
    except (TrainerInputError, ValueError, FileNotFoundError, tf.errors.OpError) as e:
        if a.verbose:
            raise
        line = (data_error(a.data, a.split, e) if isinstance(e, tf.errors.OpError)
                else str(e))
        print(f"trainers.evaluate: error: {line}", file=sys.stderr)
        return 2
    m, b = report["metrics"], report["baselines"]

    def fmt(i: dict) -> str:
        if i["mean"] is None:
            return "n/a"
        return f"{i['mean']:.3f} [{i['ci_low']:.3f}, {i['ci_high']:.3f}]"

    print(f"{report['split']}: {report['samples']} samples from {report['replays']} replays "
          f"(model {report['model']}, step {report['step']}; 95% CI over replays)")
    print(f"  value accuracy     {fmt(m['value_accuracy'])}  "
          f"majority {fmt(b['majority_outcome']['value_accuracy'])}  "
          f"matchup {fmt(b['matchup_prior']['value_accuracy'])}  player-features LR "
          f"{fmt(b['player_features_logistic_regression']['value_accuracy'])}")
    c = report["checkpoint"]
    print(f"  checkpoint         {c['selected']} (step {c['step']}"
          + (f", validation {c['select_metric']}={c['validation_value']:.4f})"
             if c["selected"] == "best_validation" else ")"))
    print(f"  function accuracy  {fmt(m['function_accuracy'])}  most frequent available "
          f"{fmt(b['most_frequent_available_function']['function_accuracy'])}")
    print(f"  action accuracy    {fmt(m['action_accuracy'])}")
    k = report["within_pixels"]
    print(f"  screen exact       {fmt(m['screen_exact'])}  within {k}px "
          f"{fmt(m[f'screen_within_{k}px'])}")
    print(f"  minimap exact      {fmt(m['minimap_exact'])}")
    print(f"wrote {os.path.join(a.run, f'eval_{a.split}.json')} and PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
