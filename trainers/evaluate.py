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
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from schemas import layers
from trainers import baselines, inference, metrics
from trainers.action_space import function_names
from trainers.eval_plots import write_plots
from trainers.input import (Selection, TrainerInputError, check_data_matches, data_error,
                            data_splits, make_dataset, strided_size)
from schemas.run_output import RunLayout
from pipeline.progress import Progress
from trainers.train import teacher_inputs, write_json_atomic

LOOPS_PER_MINUTE = 22.4 * 60  # "faster" game speed: 22.4 game loops per second
SPATIAL_ARGS = tuple(a for a in layers.ARGUMENT_TYPES if a.spatial)


def predict(trainer, data: str, split: str | Selection, batch_size: int,
            log=print, every: int = 1) -> dict[str, np.ndarray]:
    """Runs the model over every sample (``every=k``: every k-th, in file
    order) of ``split`` (a split name or a :class:`~trainers.input.Selection`)
    once; numpy columns.  ``trainer``: anything with ``config`` and ``model``
    (a ``trainers.train.Trainer``, a ``trainers.inference.LoadedModel``)."""
    config, model = trainer.config, trainer.model
    ds = make_dataset(data, split, config.spec, batch_size=batch_size, shuffle=False,
                      repeat=False, with_meta=True, source=config.source,
                      tfds_data_dir=config.tfds_data_dir, every=every)
    try:
        expected = strided_size(data, split, every)
    except TrainerInputError:
        expected = None

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
    progress = Progress("evaluated", expected, "samples", log)
    for inputs, targets, meta in ds:
        progress.update(int(targets["function_id"].shape[0]))
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
    progress.done()
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


# Fewer evaluated replays than this get a plain warning in the console.
FEW_REPLAYS = 10


def split_selection(data: str | os.PathLike, split: str) -> Selection:
    """``all``: every split directory the data has; otherwise that split."""
    if split != "all":
        return Selection.of(split)
    return Selection(data_splits(data))


def replay_lengths(data: str | os.PathLike, p: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per evaluated replay: its length in game loops and its version, from
    ``DIR/index/replays.parquet`` (length: the last sample's loop where the
    index lacks it)."""
    out: dict[str, dict] = {}
    path = RunLayout(os.fspath(data)).replays_index
    if os.path.exists(path):
        table = pq.read_table(path, columns=["replay_id", "game_loops", "version"])
        for rid, loops, version in zip(*(table.column(c).to_pylist()
                                         for c in ("replay_id", "game_loops", "version"))):
            out[rid] = {"game_loops": loops, "version": version}
    for rid in set(p["replay_id"]):
        entry = out.setdefault(rid, {})
        if not entry.get("game_loops"):
            entry["game_loops"] = int(p["game_loop"][p["replay_id"] == rid].max())
        entry.setdefault("version", None)
    return out


def version_key(text: str) -> tuple:
    """Sorts ``"3.2"`` before ``"3.15"`` (and any other text by its parts)."""
    return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in str(text).split("."))


def minor_version(version: str | None) -> str:
    """``"4.10.1.75800"`` -> ``"4.10"``; unknown -> ``"unknown"``."""
    parts = (version or "").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else "unknown"


def evaluate(data: str, run: str, split: str = "test", *, batch_size: int = 64,
             within_pixels: int = 3, bucket_minutes: Sequence[float] = tuple(range(0, 26, 2)),
             resamples: int = 1000, seed: int = 0, min_function_count: int = 20,
             plots: bool = True, checkpoint: str = "best", every: int = 1,
             out: str | os.PathLike | None = None, log=print) -> dict:
    """Computes the report, writes ``eval_<split>.json`` (+ PNGs) into ``out``
    (default: the run directory); returns it.

    ``run``: a training run or a shipped model directory.  ``split``: a split
    name or ``all``.  ``checkpoint``: ``"best"`` (the validation-selected
    checkpoint, else the latest), ``"latest"``, or a checkpoint path (training
    runs only).  ``every=k`` evaluates every k-th window of the split (in file
    order: every replay, every game time)."""
    loaded = inference.load(run, checkpoint)
    config = loaded.config
    what = f"the model {run}"
    check_data_matches(data, config.spec, what)
    inference.check_data_compatible(data, loaded.data_config, config.spec, what)
    selection = split_selection(data, split)
    chosen = loaded.checkpoint
    log(f"evaluating {run} ({config.model}, {chosen['selected']} checkpoint, step "
        f"{chosen['step']}) on {selection.name} of {data}"
        f"{f', 1 window in {every}' if every > 1 else ''}")
    p = predict(loaded, data, selection, batch_size, log, every=every)
    fitted = baselines.load_or_fit(run, config, log)
    boot = {"resamples": resamples, "seed": seed}
    groups = p["replay_id"]

    def ci(values, sel=None) -> metrics.Interval:
        if sel is None:
            return metrics.bootstrap_mean(values, groups, **boot)
        return metrics.bootstrap_mean(np.asarray(values)[sel], groups[sel], **boot)

    label = p["value"].astype(np.int64)
    value_ok = (p["value_prob"] > 0.5).astype(np.int64) == label
    majority_ok = fitted.majority_ok(label)
    matchup_ok = fitted.matchup_ok(p)
    function_ok = p["function_pred"] == p["function_id"]
    # Windows whose target is unknown are left out of every policy metric.
    known = p["function_id"] >= 0
    mfa_ok = fitted.most_frequent_available(p["available_actions"]) == p["function_id"]
    logistic_ok = (fitted.logistic_prob(p) > 0.5).astype(np.int64) == label
    prob = np.clip(p["value_prob"], 1e-7, 1 - 1e-7)
    log_loss = -(label * np.log(prob) + (1 - label) * np.log(1 - prob))
    replays = replay_lengths(data, p)
    length = np.array([replays[r]["game_loops"] for r in groups], np.float64)
    last_quarter = p["game_loop"] >= 0.75 * length

    report_metrics = {
        "value_accuracy": ci(value_ok),
        "value_log_loss": ci(log_loss),
        "value_accuracy_last_quarter": ci(value_ok, last_quarter),
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

    def breakdown(keys: np.ndarray) -> list[dict]:
        rows = []
        for key in sorted(set(keys), key=version_key):
            sel = keys == key
            rows.append({"key": key, "samples": int(sel.sum()),
                         "replays": int(len(set(groups[sel]))),
                         "model": ci(value_ok, sel).to_json(),
                         "player_features_logistic_regression": ci(logistic_ok, sel).to_json(),
                         "model_minus_logistic_regression":
                             ci(value_ok.astype(float) - logistic_ok, sel).to_json()})
        return rows

    matchup = np.array(["v".join(sorted((r[:1], o[:1]))) for r, o in
                        zip(p["race"], p["opponent_race"])], dtype=object)
    version = np.array([minor_version(replays[r]["version"]) for r in groups], dtype=object)

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

    lr = fitted.to_json()["logistic_regression"]
    report = {
        "split": split, "selection": selection.name, "every": every,
        "run": str(run), "data": str(data), "model": config.model,
        "step": chosen["step"], "checkpoint": chosen,
        "samples": int(label.size), "replays": int(len(set(groups))),
        "target_unknown_samples": int((~known).sum()),
        "bootstrap": {"unit": "replay", "resamples": resamples, "confidence": 0.95,
                      "seed": seed},
        "metrics": {k: v.to_json() for k, v in report_metrics.items()},
        "baselines": {
            "fitted_on": fitted.fitted_on,
            "majority_outcome": {"label": fitted.majority,
                                 "train_win_fraction": fitted.train_win_fraction,
                                 "value_accuracy": ci(majority_ok).to_json()},
            "matchup_prior": {"train_win_rates": fitted.matchup_rates,
                              "value_accuracy": ci(matchup_ok).to_json()},
            "most_frequent_available_function": {
                "function_accuracy": ci(mfa_ok, known).to_json()},
            "player_features_logistic_regression": {
                "features": lr["features"],
                "transform": "log(x + 1) for player features, sign(x) log(|x| + 1) "
                             "for score features, game_loop / 13440",
                "l2": lr["l2"], "selected_on": lr["selected_on"],
                "l2_candidates": lr["l2_candidates"],
                "value_accuracy": ci(logistic_ok).to_json(),
                "value_accuracy_last_quarter": ci(logistic_ok, last_quarter).to_json()},
        },
        "model_minus_baseline": {
            "value_accuracy_vs_majority": ci(value_ok.astype(float) - majority_ok).to_json(),
            "value_accuracy_vs_matchup": ci(value_ok.astype(float) - matchup_ok).to_json(),
            "value_accuracy_vs_player_features_logistic_regression":
                ci(value_ok.astype(float) - logistic_ok).to_json(),
            "value_accuracy_last_quarter_vs_player_features_logistic_regression":
                ci(value_ok.astype(float) - logistic_ok, last_quarter).to_json(),
            "function_accuracy_vs_most_frequent_available":
                ci(function_ok.astype(float) - mfa_ok, known).to_json(),
        },
        "value_accuracy_by_game_time": time_rows,
        "value_accuracy_by_matchup": breakdown(matchup),
        "value_accuracy_by_version": breakdown(version),
        "function_accuracy_by_function": per_function,
        "within_pixels": within_pixels,
    }
    out = Path(out) if out is not None else Path(run)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"eval_{split}.json", report)
    if plots:
        write_plots(report, out, split)
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from trainers.cli import evaluate_parser
    return evaluate_parser().parse_args(argv)


def default_out(run: str) -> str:
    """The run directory; for a shipped model (kept in the repository),
    ``./eval_<name>``."""
    return (f"eval_{Path(run).resolve().name}" if inference.is_shipped(run) else run)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    out = a.out or default_out(a.run)
    try:
        report = evaluate(a.data, a.run, a.split, every=a.every, out=out,
                          batch_size=a.batch_size,
                          within_pixels=a.within_pixels,
                          bucket_minutes=[float(x) for x in a.bucket_minutes.split(",")],
                          resamples=a.resamples, seed=a.seed,
                          min_function_count=a.min_function_count,
                          checkpoint=a.checkpoint, log=lambda m: print(m, flush=True))
    except (TrainerInputError, ValueError, FileNotFoundError, tf.errors.OpError) as e:
        if a.verbose:
            raise
        line = (data_error(a.data, split_selection(a.data, a.split), e)
                if isinstance(e, tf.errors.OpError) else str(e))
        print(f"sc2-evaluate: error: {line}", file=sys.stderr)
        return 2
    m, b = report["metrics"], report["baselines"]

    def fmt(i: dict) -> str:
        if i["mean"] is None:
            return "n/a"
        return f"{i['mean']:.3f} [{i['ci_low']:.3f}, {i['ci_high']:.3f}]"

    print(f"{report['selection']}: {report['samples']} samples from {report['replays']} "
          f"replays (model {report['model']}, step {report['step']}; 95% CI over replays)")
    if report["replays"] < FEW_REPLAYS:
        print(f"  note: only {report['replays']} replay(s) evaluated: each interval is over "
              f"{report['replays']} game(s) and says little about the model")
    d = report["model_minus_baseline"]
    print(f"  value accuracy     {fmt(m['value_accuracy'])}  minus majority "
          f"{fmt(d['value_accuracy_vs_majority'])}  minus player-features LR "
          f"{fmt(d['value_accuracy_vs_player_features_logistic_regression'])}")
    print(f"  last quarter       {fmt(m['value_accuracy_last_quarter'])}  player-features LR "
          f"{fmt(b['player_features_logistic_regression']['value_accuracy_last_quarter'])}")
    print(f"  value baselines    "
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
    print(f"wrote {os.path.join(out, f'eval_{a.split}.json')} and PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
