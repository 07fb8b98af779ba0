"""Trains a two-headed SC2LE baseline on the pipeline's shards.

    python -m trainers.train --data DIR --model fully_conv --out RUN_DIR --steps 2000

RUN_DIR receives ``config.json`` (everything needed to rebuild the model and
rerun), ``checkpoints/`` (``tf.train.CheckpointManager``: weights, optimizer
state and the step counter) and ``tensorboard/`` (losses, examples/s).
Running again with the same RUN_DIR resumes from the latest checkpoint and
continues the step count up to ``--steps``; the data order after a resume is
reseeded from ``(seed, step)`` so it is reproducible but does not replay the
batches already seen.  Runs on CPU, and on a GPU when TensorFlow sees one.
"""
from __future__ import annotations

import argparse
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
from trainers.input import (FeatureSpec, InputError, infer_resolutions, make_dataset,
                            manifest_unavailable_layers, shard_files)
from trainers.losses import LossWeights, compute_losses
from trainers.models import MODEL_NAMES, build_model

CONFIG_NAME = "config.json"


@dataclasses.dataclass
class TrainConfig:
    data: str
    model: str
    out: str
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    clip_norm: float = 10.0
    weight_decay: float = 0.0  # > 0: AdamW (decoupled weight decay)
    seed: int = 0
    value_weight: float = 1.0
    function_weight: float = 1.0
    argument_weight: float = 1.0
    shuffle_buffer: int = 2048
    log_every: int = 10
    checkpoint_every: int = 200
    validation_every: int = 0
    validation_batches: int = 4
    source: str = "tfrecord"
    tfds_data_dir: str | None = None
    drop_layers: tuple[str, ...] | None = None  # None: from the manifest
    feature_spec: dict | None = None            # filled in by resolve()

    def resolve(self) -> "TrainConfig":
        """Fills the feature spec from the data (resolution, unavailable layers)."""
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; expected one of {MODEL_NAMES}")
        if self.feature_spec is None:
            drop = (manifest_unavailable_layers(self.data) if self.drop_layers is None
                    else tuple(self.drop_layers))
            self.drop_layers = tuple(drop)
            screen, minimap = infer_resolutions(shard_files(self.data, "train"))
            self.feature_spec = FeatureSpec.create(screen, minimap, drop).to_json()
        return self

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self.feature_spec)

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.value_weight, self.function_weight, self.argument_weight)


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


def teacher_inputs(inputs: dict, targets: dict) -> dict:
    """Model inputs plus the targets an autoregressive model conditions on."""
    extra = {"function_id": targets["function_id"]}
    extra.update({f"arg_{a.name}": targets[f"arg_{a.name}"] for a in layers.ARGUMENT_TYPES})
    return {**inputs, **extra}


class Trainer:
    """A model, its optimizer and checkpoint, and a compiled training step."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.model = build_model(config.model, config.spec)
        self.optimizer = (
            keras.optimizers.AdamW(learning_rate=config.learning_rate,
                                   weight_decay=config.weight_decay)
            if config.weight_decay > 0 else
            keras.optimizers.Adam(learning_rate=config.learning_rate))
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(step=self.step, model=self.model,
                                              optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(config.out, "checkpoints"), max_to_keep=3)
        self.weights = config.loss_weights

    def restore(self) -> int:
        """Restores the latest checkpoint if any; returns the step reached."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
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
    dataset = make_dataset(config.data, "train", config.spec, batch_size=config.batch_size,
                           shuffle=True, repeat=True, seed=config.seed + start,
                           shuffle_buffer=config.shuffle_buffer, source=config.source,
                           tfds_data_dir=config.tfds_data_dir)
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type == "GPU"]
    log(f"training {config.model} on {'GPU ' + ','.join(devices) if devices else 'CPU'}: "
        f"steps {start} -> {config.steps}, batch {config.batch_size}, "
        f"{len(config.spec.screen_layers)} screen + {len(config.spec.minimap_layers)} "
        f"minimap layers, {config.spec.screen_resolution}px")
    losses: dict = {}
    interval_start, interval_steps, rate = time.perf_counter(), 0, 0.0
    total_start, step = time.perf_counter(), start
    for inputs, targets in dataset:
        losses = trainer.train_step(inputs, targets)
        step += 1
        interval_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            losses = {k: float(v) for k, v in losses.items()}
            elapsed = time.perf_counter() - interval_start
            rate = interval_steps * config.batch_size / max(elapsed, 1e-9)
            log(f"step {step}/{config.steps} {_format(losses)} examples/s={rate:.1f}")
            log_scalars(writer, step, {**{f"loss/{k}": v for k, v in losses.items()},
                                       "examples_per_second": rate})
            interval_start, interval_steps = time.perf_counter(), 0
        if config.validation_every and step % config.validation_every == 0:
            _validate(trainer, config, writer, step, log)
        if step % config.checkpoint_every == 0 or step >= config.steps:
            trainer.manager.save(checkpoint_number=step)
        if step >= config.steps:
            break
    writer.flush()
    total = time.perf_counter() - total_start
    mean_rate = (step - start) * config.batch_size / max(total, 1e-9)
    log(f"done: step {step}, {mean_rate:.1f} examples/s over the run, "
        f"checkpoint {trainer.manager.latest_checkpoint}")
    return {"step": step, "losses": {k: float(v) for k, v in losses.items()},
            "examples_per_second": mean_rate}


def _validate(trainer: Trainer, config: TrainConfig, writer, step: int, log) -> None:
    try:
        ds = make_dataset(config.data, "validation", config.spec,
                          batch_size=config.batch_size, shuffle=False, repeat=False,
                          source=config.source, tfds_data_dir=config.tfds_data_dir)
    except InputError as e:
        log(f"validation skipped: {e}")
        return
    sums: dict[str, float] = {}
    n = 0
    for inputs, targets in ds.take(config.validation_batches):
        for k, v in trainer.loss_step(inputs, targets).items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    if n:
        means = {k: v / n for k, v in sums.items()}
        log(f"validation step {step} {_format(means)}")
        log_scalars(writer, step, {f"validation/{k}": v for k, v in means.items()})


def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m trainers.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainConfig(data="", model="", out="")
    p.add_argument("--data", required=True, help="pipeline output DIR (tfrecord/<split>/...)")
    p.add_argument("--model", required=True, choices=MODEL_NAMES)
    p.add_argument("--out", required=True, help="run directory (created; resumed if present)")
    p.add_argument("--steps", type=int, default=d.steps, help="total training steps")
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--learning_rate", type=float, default=d.learning_rate)
    p.add_argument("--clip_norm", type=float, default=d.clip_norm)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay (AdamW); 0 = plain Adam")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--value_weight", type=float, default=d.value_weight)
    p.add_argument("--function_weight", type=float, default=d.function_weight)
    p.add_argument("--argument_weight", type=float, default=d.argument_weight)
    p.add_argument("--shuffle_buffer", type=int, default=d.shuffle_buffer)
    p.add_argument("--log_every", type=int, default=d.log_every)
    p.add_argument("--checkpoint_every", type=int, default=d.checkpoint_every)
    p.add_argument("--validation_every", type=int, default=d.validation_every,
                   help="steps between validation-loss reports (0: never)")
    p.add_argument("--validation_batches", type=int, default=d.validation_batches)
    p.add_argument("--source", choices=("tfrecord", "tfds"), default=d.source)
    p.add_argument("--tfds_data_dir", default=None)
    p.add_argument("--drop_layers", default=None,
                   help="comma-separated sample fields to leave out (default: the "
                        "manifest's unavailable layers)")
    a = p.parse_args(argv)
    drop = (None if a.drop_layers is None
            else tuple(x.strip() for x in a.drop_layers.split(",") if x.strip()))
    kwargs = {k: v for k, v in vars(a).items() if k != "drop_layers"}
    return TrainConfig(**kwargs, drop_layers=drop)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        train(config, log=lambda m: print(m, flush=True))
    except (InputError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
