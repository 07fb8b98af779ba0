"""Trains a two-headed SC2LE baseline on the pipeline's shards.

    sc2-train --data DIR --model fully_conv --out RUN_DIR --steps 2000

RUN_DIR receives ``config.json`` (everything needed to rebuild the model and
rerun), ``checkpoints/`` (``tf.train.CheckpointManager``: weights, optimizer
state and the step counter) and ``tensorboard/`` (losses, examples/s).

With ``--validation_every N`` the model is scored every N steps (and at the
last step) on a fixed subset of the validation split (``--validation_samples``
samples, every k-th record so that all validation replays and game times are
represented, held in memory); the checkpoint with the best
``--select_metric`` (default: validation value loss) is kept in
``checkpoints/best/`` and described in ``best.json``, which
``trainers.evaluate`` evaluates by default.  ``--early_stop_patience P``
stops after P validations without improvement.
Running again with the same RUN_DIR resumes from the latest checkpoint and
continues the step count up to ``--steps``; the data order after a resume is
reseeded from ``(seed, step)`` so it is reproducible but does not replay the
batches already seen.  Runs on CPU, and on a GPU when TensorFlow sees one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

from schemas import layers
from trainers.input import TrainerInputError, data_error, make_dataset, selection_size
from trainers.losses import compute_losses
from trainers.config import LR_SCHEDULES, TrainConfig
from trainers.models import build_model
from trainers.cli import parse_train as parse_args
from pipeline.progress import eta_text

CONFIG_NAME = "config.json"
BEST_NAME = "best.json"
def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a training run directory?")
    d = json.loads(path.read_text())
    d["drop_layers"] = tuple(d["drop_layers"]) if d.get("drop_layers") is not None else None
    return TrainConfig(**d)


def learning_rate(config: TrainConfig):
    """The optimizer's learning rate for ``config``: a float, or a schedule of
    the optimizer's step count (saved in the checkpoint, so a resumed run
    continues the schedule where it stopped)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate,
                                                      decay_steps=max(config.steps, 1))
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected one of "
                     f"{LR_SCHEDULES}")


def teacher_inputs(inputs: dict, targets: dict) -> dict:
    """Model inputs plus the targets an autoregressive model conditions on."""
    extra = {"function_id": targets["function_id"]}
    extra.update({f"arg_{a.name}": targets[f"arg_{a.name}"] for a in layers.ARGUMENT_TYPES})
    return {**inputs, **extra}


class Trainer:
    """A model, its optimizer and checkpoint, and a compiled training step."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.model = build_model(config.model, config.spec, dropout=config.dropout,
                                 value_input=config.value_input)
        rate = learning_rate(config)
        self.optimizer = (
            keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.weight_decay)
            if config.weight_decay > 0 else keras.optimizers.Adam(learning_rate=rate))
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=self.model,
                                              optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(config.out, "checkpoints"), max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(config.out, "checkpoints", "best"), max_to_keep=1)
        self.weights = config.loss_weights

    def restore(self, path: str | None = None) -> int:
        """Restores ``path`` (default: the latest checkpoint) if any; returns
        the step reached."""
        path = path or self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.step.numpy())

    def _model_inputs(self, inputs, targets):
        return teacher_inputs(inputs, targets) if self.model.autoregressive else inputs

    @tf.function
    def train_step(self, inputs, targets):
        with tf.GradientTape() as tape:
            outputs = self.model(self._model_inputs(inputs, targets), training=True)
            losses = compute_losses(outputs, targets, self.weights)
        variables = self.model.trainable_variables
        grads = tape.gradient(losses["total"], variables)
        grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        return losses

    @tf.function
    def loss_step(self, inputs, targets):
        outputs = self.model(self._model_inputs(inputs, targets), training=False)
        return compute_losses(outputs, targets, self.weights)

    @tf.function
    def validation_step(self, inputs, targets):
        """Losses plus the number of correct value predictions in the batch."""
        outputs = self.model(self._model_inputs(inputs, targets), training=False)
        losses = compute_losses(outputs, targets, self.weights)
        correct = tf.cast(outputs["value"] > 0.0, tf.float32) == targets["value"]
        losses["value_correct"] = tf.reduce_sum(tf.cast(correct, tf.float32))
        return losses


def _scalar_metadata() -> bytes:
    from tensorflow.core.framework import summary_pb2
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="scalars")).SerializeToString()


def log_scalars(writer, step: int, scalars: dict[str, float]) -> None:
    """TensorBoard scalars, written with ``tf.summary.write`` and the scalars
    plugin's metadata (what ``tf.summary.scalar`` does, without requiring the
    tensorboard package at training time)."""
    metadata = _scalar_metadata()
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=metadata)


def _format(losses: dict) -> str:
    keys = ("total", "value", "function", "arguments")
    return " ".join(f"{k}={float(losses[k]):.4f}" for k in keys)


def train(config: TrainConfig, log=print) -> dict:
    """Trains up to ``config.steps`` total steps; returns the last losses and
    throughput.  Resumes from ``config.out``'s checkpoints if present."""
    out = Path(config.out)
    config_path = out / CONFIG_NAME
    if config_path.exists():
        previous = load_config(out)
        config.resolve()
        for key, old, new in (("model", previous.model, config.model),
                              ("feature spec", previous.spec, config.spec)):
            if old != new:
                raise ValueError(f"{out} holds a run with a different {key} ({old} != "
                                 f"{new}); use a new --out or the same settings")
    config.resolve()
    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(config)
    start = trainer.restore()
    write_json_atomic(config_path, dataclasses.asdict(config))
    if start:
        log(f"resuming {out} at step {start}")
    if start >= config.steps:
        log(f"already at step {start} >= --steps {config.steps}; nothing to do")
        return {"step": start, "losses": {}, "examples_per_second": 0.0}

    # Reseed by step so a resumed run is reproducible without replaying batches.
    dataset = make_dataset(config.data, config.train_selection, config.spec,
                           batch_size=config.batch_size,
                           shuffle=True, repeat=True, seed=config.seed + start,
                           shuffle_buffer=config.shuffle_buffer, read_shards=config.read_shards,
                           source=config.source,
                           tfds_data_dir=config.tfds_data_dir, every=config.train_every)
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    validator = Validator(trainer, config, writer, log) if config.validation_every else None
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type == "GPU"]
    log(f"training {config.model} on {'GPU ' + ','.join(devices) if devices else 'CPU'}: "
        f"steps {start} -> {config.steps}, batch {config.batch_size}, "
        f"{len(config.spec.screen_layers)} screen + {len(config.spec.minimap_layers)} "
        f"minimap layers, {config.spec.screen_resolution}px"
        f"{', game time input' if config.spec.game_time else ''}"
        f"{', score input' if config.spec.score else ''}")
    losses: dict = {}
    first_losses: dict | None = None
    interval_start, interval_steps, rate = time.perf_counter(), 0, 0.0
    total_start, step, stopped_early = time.perf_counter(), start, False
    for inputs, targets in dataset:
        losses = trainer.train_step(inputs, targets)
        step += 1
        interval_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            losses = {k: float(v) for k, v in losses.items()}
            first_losses = first_losses or {"step": step, **losses}
            elapsed = time.perf_counter() - interval_start
            rate = interval_steps * config.batch_size / max(elapsed, 1e-9)
            eta = eta_text(step - start, config.steps - start,
                           time.perf_counter() - total_start)
            log(f"step {step}/{config.steps} {_format(losses)} examples/s={rate:.1f}{eta}")
            log_scalars(writer, step, {**{f"loss/{k}": v for k, v in losses.items()},
                                       "examples_per_second": rate})
            interval_start, interval_steps = time.perf_counter(), 0
        if validator and (step % config.validation_every == 0 or step >= config.steps):
            stopped_early = validator.validate(step)
        if step % config.checkpoint_every == 0 or step >= config.steps or stopped_early:
            trainer.manager.save(checkpoint_number=step)
        if step >= config.steps or stopped_early:
            break
    writer.flush()
    total = time.perf_counter() - total_start
    mean_rate = (step - start) * config.batch_size / max(total, 1e-9)
    log(f"done: step {step}{' (early stop)' if stopped_early else ''}, "
        f"{mean_rate:.1f} examples/s over the run, "
        f"checkpoint {trainer.manager.latest_checkpoint}")
    result = {"step": step, "losses": {k: float(v) for k, v in losses.items()},
              "first_logged_losses": first_losses,
              "examples_per_second": mean_rate, "stopped_early": stopped_early}
    if validator and validator.best:
        log(f"best validation {config.select_metric}={validator.best['value']:.4f} at step "
            f"{validator.best['step']}: {validator.best['checkpoint']}")
        result["best"] = validator.best
    return result


def load_best(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``best.json`` (best validation checkpoint), or None."""
    path = Path(run_dir) / BEST_NAME
    return json.loads(path.read_text()) if path.exists() else None


def improves(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` is strictly better than ``old`` for ``metric``."""
    if old is None:
        return True
    return new > old if metric == "value_accuracy" else new < old


class Validator:
    """Scores the model on a fixed validation subset and keeps the best
    checkpoint (``checkpoints/best/`` + ``best.json``)."""

    def __init__(self, trainer: Trainer, config: TrainConfig, writer, log):
        self.trainer, self.config, self.writer, self.log = trainer, config, writer, log
        self.batches: list = []
        self.samples = 0
        selection = config.validation_selection
        try:
            total = selection_size(config.data, selection)
            every = max(1, total // max(1, config.validation_samples))
            ds = make_dataset(config.data, selection, config.spec,
                              batch_size=config.batch_size, shuffle=False, repeat=False,
                              source=config.source, tfds_data_dir=config.tfds_data_dir,
                              every=every, limit=config.validation_samples)
            self.batches = list(ds)  # held in memory: the same samples every time
        except TrainerInputError as e:
            log(f"validation skipped: {e}")
        self.samples = sum(int(t["value"].shape[0]) for _, t in self.batches)
        if self.batches:
            log(f"validation subset: {self.samples} of {total} samples (every {every}th) "
                f"of {selection.name}")
        previous = load_best(config.out)
        self.best = previous if previous and previous.get("metric") == config.select_metric \
            else None
        self.history: list[dict] = list(previous.get("history", [])) if self.best else []
        self.since_best = 0

    def validate(self, step: int) -> bool:
        """Scores the model at ``step``; returns True when training should stop."""
        if not self.batches:
            return False
        sums: dict[str, float] = {}
        for inputs, targets in self.batches:
            n = float(targets["value"].shape[0])
            for k, v in self.trainer.validation_step(inputs, targets).items():
                sums[k] = sums.get(k, 0.0) + float(v) * (1.0 if k == "value_correct" else n)
        means = {k: v / self.samples for k, v in sums.items() if k != "value_correct"}
        means["value_accuracy"] = sums["value_correct"] / self.samples
        self.log(f"validation step {step} {_format(means)} "
                 f"value_accuracy={means['value_accuracy']:.4f}")
        log_scalars(self.writer, step, {f"validation/{k}": v for k, v in means.items()})
        metric = self.config.select_metric
        value = means[metric]
        self.history.append({"step": step, metric: value})
        if improves(metric, value, self.best["value"] if self.best else None):
            path = self.trainer.best_manager.save(checkpoint_number=step)
            self.best = {"metric": metric, "value": value, "step": step, "checkpoint": path,
                         "validation_samples": self.samples,
                         "validation": {k: float(v) for k, v in means.items()}}
            self.since_best = 0
        else:
            self.since_best += 1
        write_json_atomic(Path(self.config.out) / BEST_NAME,
                          {**self.best, "history": self.history})
        patience = self.config.early_stop_patience
        if patience and self.since_best >= patience:
            self.log(f"early stop: validation {metric} has not improved for "
                     f"{patience} validations (best {self.best['value']:.4f} at step "
                     f"{self.best['step']})")
            return True
        return False


def remove_failed_start(out: Path, existed: bool) -> None:
    """Deletes a run directory this invocation created if it holds no
    checkpoint (a failed start leaves nothing half-made behind)."""
    import shutil
    if not existed and out.is_dir() and not any((out / "checkpoints").glob("ckpt-*")):
        shutil.rmtree(out, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: 0, or one line on stderr naming the file and what is
    wrong, and 2 (``--verbose``: the traceback)."""
    config = parse_args(argv)
    out = Path(config.out)
    existed = out.exists()
    try:
        train(config, log=lambda m: print(m, flush=True))
        return 0
    except (TrainerInputError, ValueError, FileNotFoundError) as e:
        line, error = str(e), e
    except tf.errors.OpError as e:        # DataLossError: a corrupt or truncated shard
        line, error = data_error(config.data, config.train_selection, e), e
    remove_failed_start(out, existed)
    if getattr(config, "verbose", False):
        raise error
    print(f"sc2-train: error: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
