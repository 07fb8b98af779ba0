"""K-fold cross-validation over replays: every replay held out exactly once.

    python -m trainers.crossval --data DIR --folds 5 --model fully_conv --out CV_DIR \\
        [the trainers.train flags]

With a few dozen replays a single held-out split is decided by which replays
landed in it; cross-validation uses every replay as held-out data once and
pools the predictions.  The Beam split of DIR is ignored: samples are read
from every split directory (``tfrecord/<split>/``) and grouped by replay.

Folds.  The replays are ordered by a salted SHA-256 of their replay id and
dealt round-robin into K folds (fold sizes differ by at most one replay; a
plain ``hash mod K`` gave 6 to 21 replays per fold on the 70-replay corpus).
Both players and every sample of a replay are in one fold.  The assignment is
a function of the set of replay ids in DIR; ``crossval.json`` lists it.

Fold k: held out = fold k; checkpoint selection and early stopping on fold
(k+1) mod K (the "inner validation" fold, through ``trainers.train``'s
validator); training on the other K-2 folds.  Each fold is an ordinary
training run in ``CV_DIR/fold_<k>/`` (``config.json`` with the replay ids of
its train and inner-validation data, checkpoints, ``best.json``,
TensorBoard), evaluated with ``trainers.evaluate.predict`` on its held-out
fold at the best inner-validation checkpoint.  Baselines per fold, fitted the
same way: majority outcome (train folds), player-features logistic
regression (fitted on the train folds, L2 chosen on the inner-validation
fold).  A fold's held-out predictions and summary are written to
``fold_<k>/heldout.npz`` and ``fold_<k>/fold_result.json``; a fold with a
result is not retrained on a rerun.

The pooled report ``CV_DIR/crossval.json`` (value accuracy, baselines,
paired differences, each with a 95% bootstrap interval over replays; value
accuracy by game time; per-fold figures) and ``crossval_value_by_time.png``
(SC2LE figure 8) are computed from the pooled held-out predictions: each
sample predicted by the model that never saw its replay.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


from schemas.sample import SampleSchema
from trainers import metrics
from trainers.baselines import logistic_inputs, player_logistic
from trainers.eval_plots import write_crossval_plots
from trainers.evaluate import LOOPS_PER_MINUTE, predict
from trainers.inference import choose_checkpoint
from trainers.input import (TrainerInputError, Selection, data_resolutions, data_splits,
                            read_columns)
from trainers.train import (TrainConfig, Trainer, load_config,
                            train, write_json_atomic)

REPORT_NAME = "crossval.json"
FOLD_RESULT = "fold_result.json"
TRAIN_RESULT = "train_result.json"
PREDICTIONS = "heldout.npz"
_SALT = b"sc2-replay-fold:"
# Columns read once for fold sizes and the baselines.
COLUMNS = ("replay_id", "player_id", "game_loop", "value", "player", "score")
# Held-out prediction columns kept per fold (heldout.npz).
KEPT = ("replay_id", "player_id", "game_loop", "value", "value_prob", "function_id",
        "function_pred", "logistic_prob", "majority")


def fold_key(replay_id: str) -> bytes:
    """The salted hash that orders replays before they are dealt into folds."""
    return hashlib.sha256(_SALT + replay_id.encode("utf-8")).digest()


def assign_folds(replay_ids: Sequence[str], folds: int) -> dict[str, int]:
    """Replay id -> fold in 0..folds-1: replays sorted by :func:`fold_key`,
    dealt round-robin (sizes differ by at most one replay)."""
    if folds < 3:
        raise ValueError(f"--folds {folds}: need at least 3 (train, inner validation, "
                         f"held out)")
    unique = sorted(set(replay_ids), key=fold_key)
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} replays cannot fill {folds} folds")
    return {r: i % folds for i, r in enumerate(unique)}


def fold_roles(k: int, folds: int) -> dict[str, object]:
    """Which folds train, select the checkpoint and are held out in fold k."""
    inner = (k + 1) % folds
    return {"heldout": k, "inner_validation": inner,
            "train": [f for f in range(folds) if f not in (k, inner)]}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["replay_id"] = out["replay_id"].astype(object)
    return out


@dataclasses.dataclass
class Corpus:
    """Every sample's replay, label and player vector, with the folds."""
    splits: tuple[str, ...]
    columns: dict[str, np.ndarray]
    fold_of: dict[str, int]
    folds: int

    @property
    def sample_folds(self) -> np.ndarray:
        return np.array([self.fold_of[r] for r in self.columns["replay_id"]], np.int64)

    def replays(self, fold_set: Sequence[int]) -> frozenset[str]:
        return frozenset(r for r, f in self.fold_of.items() if f in set(fold_set))

    def selection(self, fold_set: Sequence[int]) -> Selection:
        mask = np.isin(self.sample_folds, list(fold_set))
        return Selection(self.splits, self.replays(fold_set), int(mask.sum()))

    def rows(self, fold_set: Sequence[int]) -> dict[str, np.ndarray]:
        mask = np.isin(self.sample_folds, list(fold_set))
        return {k: v[mask] for k, v in self.columns.items()}

    def sizes(self) -> list[dict]:
        sample_folds = self.sample_folds
        values = self.columns["value"]
        return [{"fold": f, "replays": len(self.replays([f])),
                 "samples": int(np.sum(sample_folds == f)),
                 "win_fraction": float(values[sample_folds == f].mean())
                 if np.any(sample_folds == f) else None}
                for f in range(self.folds)]


def load_corpus(data_dir: str, folds: int, schema: SampleSchema) -> Corpus:
    splits = data_splits(data_dir)
    columns = read_columns(data_dir, Selection(splits), COLUMNS, schema)
    fold_of = assign_folds(list(columns["replay_id"]), folds)
    return Corpus(splits, columns, fold_of, folds)


def run_fold(corpus: Corpus, k: int, base: TrainConfig, out: Path, *, batch_size: int,
             log: Callable[[str], None]) -> dict:
    """Trains (or resumes) fold k, predicts its held-out fold; writes and
    returns its result.  A fold with a result is returned as is."""
    fold_dir = out / f"fold_{k}"
    roles = fold_roles(k, corpus.folds)
    heldout_ids = sorted(corpus.replays([k]))
    result_path = fold_dir / FOLD_RESULT
    if result_path.exists() and (fold_dir / PREDICTIONS).exists():
        result = json.loads(result_path.read_text())
        if result["heldout_replays"] != heldout_ids or result["model"] != base.model:
            raise ValueError(f"{fold_dir} holds a fold of another data set, fold count or "
                             f"model; use a new --out")
        log(f"fold {k}: finished earlier, not retrained ({result_path})")
        return result

    config = dataclasses.replace(
        base, out=str(fold_dir),
        train_data=corpus.selection(roles["train"]).to_json(),
        validation_data=corpus.selection([roles["inner_validation"]]).to_json())
    start = time.perf_counter()
    train_path = fold_dir / TRAIN_RESULT
    if train_path.exists():
        trained = json.loads(train_path.read_text())
        log(f"fold {k}: training finished earlier (step {trained['step']})")
    else:
        trained = train(config, log=log)
        write_json_atomic(train_path, trained)
    train_s = time.perf_counter() - start

    saved = load_config(fold_dir)
    saved.out = str(fold_dir)
    trainer = Trainer(saved)
    chosen = choose_checkpoint(fold_dir, "best")
    chosen["step"] = trainer.restore(chosen["path"])
    log(f"fold {k}: predicting {len(heldout_ids)} held-out replays with the "
        f"{chosen['selected']} checkpoint (step {chosen['step']})")
    p = predict(trainer, saved.data, corpus.selection([k]), batch_size, log)

    train_rows, inner_rows = corpus.rows(roles["train"]), corpus.rows([roles["inner_validation"]])
    majority = metrics.majority_label(train_rows["value"])
    logistic = player_logistic(train_rows, inner_rows, saved.spec.score)
    p["logistic_prob"] = logistic["model"].prob(logistic_inputs(p))
    p["majority"] = np.full(p["value"].shape, majority, np.int64)
    p["replay_id"] = p["replay_id"].astype(str)
    _save_npz(fold_dir / PREDICTIONS, {name: p[name] for name in KEPT})

    acc = fold_accuracies(p)
    result = {
        "fold": k, "model": base.model, "roles": roles,
        "heldout_replays": heldout_ids, "samples": int(p["value"].size),
        "train_replays": len(corpus.replays(roles["train"])),
        "train_samples": int(train_rows["value"].size),
        "inner_validation_replays": len(corpus.replays([roles["inner_validation"]])),
        "checkpoint": chosen, "steps_trained": trained["step"],
        "stopped_early": trained.get("stopped_early"),
        "training_losses": {"first_logged": trained.get("first_logged_losses"),
                            "last": trained.get("losses")},
        "majority_label": majority, "train_win_fraction": float(train_rows["value"].mean()),
        "logistic_l2": logistic["model"].l2, "logistic_l2_candidates": logistic["table"],
        **acc, "seconds": round(time.perf_counter() - start, 1),
        "train_seconds": round(train_s, 1),
    }
    write_json_atomic(result_path, result)
    log(f"fold {k}: value accuracy {acc['value_accuracy']:.3f} (majority "
        f"{acc['majority_accuracy']:.3f}, player-features LR {acc['logistic_accuracy']:.3f}) "
        f"on {result['samples']} samples of {len(heldout_ids)} replays, "
        f"{result['seconds']:.0f} s")
    return result


def correctness(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-sample 0/1 correctness of the model and the baselines."""
    label = np.asarray(p["value"]).astype(np.int64)
    return {"model": ((np.asarray(p["value_prob"]) > 0.5).astype(np.int64) == label),
            "majority": np.asarray(p["majority"]).astype(np.int64) == label,
            "logistic": ((np.asarray(p["logistic_prob"]) > 0.5).astype(np.int64) == label),
            "function": np.asarray(p["function_pred"]) == np.asarray(p["function_id"])}


def known_target(p: dict[str, np.ndarray]) -> np.ndarray:
    """Samples whose target is known (``function_id`` is not
    ``schemas.layers.UNKNOWN``): the only ones policy metrics count."""
    return np.asarray(p["function_id"]) >= 0


def fold_accuracies(p: dict[str, np.ndarray]) -> dict[str, float]:
    ok = correctness(p)
    return {"value_accuracy": float(ok["model"].mean()),
            "majority_accuracy": float(ok["majority"].mean()),
            "logistic_accuracy": float(ok["logistic"].mean()),
            "function_accuracy": float(ok["function"][known_target(p)].mean())}


def pooled_report(predictions: list[dict[str, np.ndarray]], *, resamples: int, seed: int,
                  bucket_minutes: Sequence[float]) -> dict:
    """Pooled held-out metrics over all folds, with intervals over replays."""
    p = {k: np.concatenate([f[k] for f in predictions]) for k in KEPT}
    groups = p["replay_id"].astype(str)
    ok = correctness(p)
    boot = {"resamples": resamples, "seed": seed}

    def ci(values) -> dict:
        return metrics.bootstrap_mean(np.asarray(values, np.float64), groups, **boot).to_json()

    minutes = p["game_loop"] / LOOPS_PER_MINUTE
    edges = list(bucket_minutes) + [float("inf")]
    by_time = []
    rows = {name: metrics.by_bucket(ok[name], minutes, edges, groups, **boot)
            for name in ("model", "majority", "logistic")}
    for m, b, lr in zip(rows["model"], rows["majority"], rows["logistic"]):
        by_time.append({"minutes": [m["low"], None if np.isinf(m["high"]) else m["high"]],
                        "model": m["interval"].to_json(),
                        "majority_outcome": b["interval"].to_json(),
                        "player_features_logistic_regression": lr["interval"].to_json()})
    return {
        "samples": int(groups.size), "replays": int(len(set(groups))),
        "value_accuracy": ci(ok["model"]),
        "function_accuracy": metrics.bootstrap_mean(
            np.asarray(ok["function"], np.float64)[known_target(p)],
            groups[known_target(p)], **boot).to_json(),
        "baselines": {"majority_outcome": ci(ok["majority"]),
                      "player_features_logistic_regression": ci(ok["logistic"])},
        "model_minus_baseline": {
            "value_accuracy_vs_majority": ci(ok["model"].astype(float) - ok["majority"]),
            "value_accuracy_vs_player_features_logistic_regression":
                ci(ok["model"].astype(float) - ok["logistic"])},
        "value_accuracy_by_game_time": by_time,
    }


def crossval(data: str, out: str, folds: int, base: TrainConfig, *, batch_size: int = 256,
             resamples: int = 1000, seed: int = 0,
             bucket_minutes: Sequence[float] = tuple(range(0, 26, 2)),
             plots: bool = True, log=print) -> dict:
    """Runs (or resumes) every fold and writes ``OUT/crossval.json``."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(base, data=data, out=str(out_dir))
    splits = data_splits(data)
    screen, minimap = data_resolutions(data)
    log(f"reading replay ids and labels of {'+'.join(splits)} in {data}")
    corpus = load_corpus(data, folds, SampleSchema(screen, minimap))
    sizes = corpus.sizes()
    for s in sizes:
        log(f"fold {s['fold']}: {s['replays']} replays, {s['samples']} samples, "
            f"win fraction {s['win_fraction']:.3f}")
    results, predictions = [], []
    for k in range(folds):
        roles = fold_roles(k, folds)
        log(f"fold {k}/{folds}: held out fold {k}, inner validation fold "
            f"{roles['inner_validation']}, training on folds {roles['train']}")
        prefix = f"[fold {k}] "
        results.append(run_fold(corpus, k, base, out_dir, batch_size=batch_size,
                                log=lambda m, prefix=prefix: log(prefix + m)))
        predictions.append(_load_npz(out_dir / f"fold_{k}" / PREDICTIONS))
    pooled = pooled_report(predictions, resamples=resamples, seed=seed,
                           bucket_minutes=bucket_minutes)
    train_config = dataclasses.asdict(base)
    for key in ("out", "train_data", "validation_data", "feature_spec"):
        train_config.pop(key, None)
    report = {
        "data": data, "out": str(out_dir), "model": base.model, "folds": folds,
        "splits_read": list(splits),
        "beam_split": "ignored: samples are read from every split directory and "
                      "assigned to folds by replay",
        "fold_assignment": "replays sorted by SHA-256('sc2-replay-fold:' + replay_id), "
                           "dealt round-robin into the folds",
        "protocol": "fold k held out; checkpoint selection and early stopping on fold "
                    "(k+1) mod K; training on the other folds; baselines fitted the same "
                    "way (majority: train folds; logistic regression: train folds, L2 on "
                    "the inner-validation fold)",
        "majority_note": "every replay has one winner and one loser with equally many "
                         "samples, so every fold's win fraction is exactly 0.5: the majority "
                         "label (wins a strict majority -> win, else loss) is 'loss' and "
                         "scores exactly 0.5 on every replay (its interval is [0.5, 0.5])",
        "fold_sizes": sizes, "fold_of_replay": dict(sorted(corpus.fold_of.items())),
        "train_config": train_config,
        "bootstrap": {"unit": "replay", "resamples": resamples, "confidence": 0.95,
                      "seed": seed},
        "pooled": pooled,
        "per_fold": [{k: r[k] for k in ("fold", "samples", "train_replays",
                                        "train_samples", "steps_trained", "checkpoint",
                                        "stopped_early", "training_losses",
                                        "value_accuracy", "majority_accuracy",
                                        "logistic_accuracy", "function_accuracy",
                                        "logistic_l2", "seconds")}
                     | {"replays": len(r["heldout_replays"])} for r in results],
    }
    write_json_atomic(out_dir / REPORT_NAME, report)
    if plots:
        write_crossval_plots(report, out_dir)
    return report


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    from trainers.cli import parse_crossval
    return parse_crossval(argv)


def main(argv: Sequence[str] | None = None) -> int:
    own, config = parse_args(argv)
    try:
        report = crossval(config.data, config.out, own.folds, config,
                          batch_size=own.eval_batch_size, resamples=own.resamples,
                          seed=own.bootstrap_seed,
                          bucket_minutes=[float(x) for x in own.bucket_minutes.split(",")],
                          log=lambda m: print(m, flush=True))
    except (TrainerInputError, ValueError, FileNotFoundError) as e:
        print(f"sc2-crossval: error: {e}", file=sys.stderr)
        return 2
    pooled = report["pooled"]

    def fmt(i: dict) -> str:
        return "n/a" if i["mean"] is None else \
            f"{i['mean']:.3f} [{i['ci_low']:.3f}, {i['ci_high']:.3f}]"

    print(f"{report['folds']}-fold cross-validation, {pooled['samples']} held-out samples "
          f"of {pooled['replays']} replays (95% CI over replays)")
    print(f"  value accuracy {fmt(pooled['value_accuracy'])}  majority "
          f"{fmt(pooled['baselines']['majority_outcome'])}  player-features LR "
          f"{fmt(pooled['baselines']['player_features_logistic_regression'])}")
    print(f"  model - majority {fmt(pooled['model_minus_baseline']['value_accuracy_vs_majority'])}")
    for f in report["per_fold"]:
        print(f"  fold {f['fold']}: {f['replays']} replays, value {f['value_accuracy']:.3f}, "
              f"LR {f['logistic_accuracy']:.3f}, step {f['checkpoint']['step']}")
    print(f"wrote {os.path.join(report['out'], REPORT_NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
