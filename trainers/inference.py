"""A trained model ready for inference, from a training run or a shipped model.

Two kinds of directory hold a model the evaluator and the predictor accept as
``--run``:

* a training run (``trainers.train --out RUN``): ``config.json`` plus
  TensorFlow checkpoints (weights, optimizer state, step); the checkpoint is
  the validation-selected one (``checkpoints/best``) unless asked otherwise;
* a shipped model (``models/<name>/``, written by ``trainers.export``):
  ``config.json`` plus inference weights only, in the Keras 3 weights format
  (``model.weights.h5``, HDF5), with ``checkpoint.json`` saying which step of
  which run they are, and ``data.json`` fingerprinting the training data.

Either way the model is rebuilt from the recorded trainer configuration
(model, feature spec, value input), so nothing here depends on pickled code.

A model reads samples made one way (source, resolution, step_mul, fog, the
layers it was trained on).  :func:`check_data_compatible` refuses data made
another way, in one line, before any sample is read.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from schemas.run_output import DATA_CONFIG_KEYS, RunLayout
from trainers.input import (FeatureSpec, TrainerInputError, data_config, data_config_if_present,
                            manifest_unavailable_layers, read_manifest)
from trainers.models import build_model
from trainers.train import BEST_NAME, TrainConfig, Trainer, load_best, load_config

WEIGHTS_NAME = "model.weights.h5"   # Keras 3 weights format (HDF5)
CHECKPOINT_INFO_NAME = "checkpoint.json"
DATA_FINGERPRINT_NAME = "data.json"


def check_data_compatible(data_dir: str | os.PathLike, expected: Mapping[str, Any],
                          spec: FeatureSpec, what: str) -> None:
    """One-line :class:`TrainerInputError` unless ``data_dir``'s samples were
    made as ``expected`` (:func:`data_config` of the training data) and hold
    every layer ``spec`` reads (none of them listed as unavailable)."""
    have = data_config(data_dir)
    manifest = RunLayout(os.fspath(data_dir)).manifest
    for key in DATA_CONFIG_KEYS:
        if key in expected and expected[key] is not None and have.get(key) != expected[key]:
            raise TrainerInputError(
                f"{manifest}: {key} is {have.get(key)!r}, but {what} was trained on "
                f"{key} {expected[key]!r}; evaluate it on data made the same way")
    fields = ([f"screen_{n}" for n in spec.screen_layers]
              + [f"minimap_{n}" for n in spec.minimap_layers])
    missing = sorted(set(fields) & set(manifest_unavailable_layers(data_dir)))
    if missing:
        raise TrainerInputError(
            f"{manifest}: the layers {', '.join(missing)} are unavailable (all zeros) in "
            f"this data, but {what} reads them")


@dataclasses.dataclass
class LoadedModel:
    """A model with its configuration and where its weights came from."""
    run: Path
    config: TrainConfig
    model: Any                      # a built trainers.models model
    checkpoint: dict                # selected, path, step (+ selection details)
    data_config: dict               # how its training samples were made
    shipped: bool

    @property
    def spec(self) -> FeatureSpec:
        return self.config.spec


def is_shipped(run: str | os.PathLike) -> bool:
    return (Path(run) / WEIGHTS_NAME).exists()


def build(config: TrainConfig):
    return build_model(config.model, config.spec, dropout=config.dropout,
                       value_input=config.value_input)


def choose_checkpoint(run: str | os.PathLike, which: str = "best") -> dict:
    """Which checkpoint of a training run: ``best`` (validation-selected; the
    latest when the run has none), ``latest``, or an explicit path."""
    checkpoints = Path(run) / "checkpoints"
    note = None
    if which == "best":
        best = load_best(run)
        path = tf.train.latest_checkpoint(str(checkpoints / "best"))
        if best and path:
            return {"selected": "best_validation", "path": path,
                    "select_metric": best["metric"], "validation_value": best["value"],
                    "validation_samples": best.get("validation_samples")}
        which, note = "latest", "no validation-selected checkpoint in the run; latest used"
    if which == "latest":
        out = {"selected": "latest", "path": tf.train.latest_checkpoint(str(checkpoints))}
    else:
        out = {"selected": "path", "path": which}
    if not out["path"]:
        raise TrainerInputError(f"{run} has no checkpoint to evaluate")
    if note:
        out["note"] = note
    return out


def verify_restored(model, path: str) -> None:
    """:class:`TrainerInputError` unless every weight of ``model`` equals a
    value the checkpoint holds.

    Keras 3 layers kept in lists or ``Sequential`` blocks are not children of
    the model in TensorFlow's checkpoint object graph: their weights are
    saved only through the optimizer's variable list, the others under
    ``model/...``.  A restore that missed a weight would leave it at its
    random initial value and report nothing, so each weight is looked up
    among the checkpoint's tensors of its shape."""
    reader = tf.train.load_checkpoint(path)
    by_shape: dict[tuple, list[str]] = {}
    for name, shape in tf.train.list_variables(path):
        if name.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in name:
            by_shape.setdefault(tuple(shape), []).append(name)
    for var in model.weights:
        value = var.numpy()
        if not any(np.array_equal(reader.get_tensor(name), value)
                   for name in by_shape.get(tuple(value.shape), ())):
            raise TrainerInputError(f"{path}: the checkpoint does not hold the weight "
                                    f"{var.path}; it is not a complete trained model")


def load(run: str | os.PathLike, checkpoint: str = "best") -> LoadedModel:
    """The model of a training run or of a shipped model directory."""
    run = Path(run)
    config = load_config(run)
    config.out = str(run)   # the directory may have moved since training
    if is_shipped(run):
        model = build(config)
        model.load_weights(str(run / WEIGHTS_NAME))
        info = json.loads((run / CHECKPOINT_INFO_NAME).read_text())
        fingerprint = json.loads((run / DATA_FINGERPRINT_NAME).read_text())
        chosen = {**info, "selected": "shipped", "selected_in_run": info.get("selected")}
        return LoadedModel(run, config, model, chosen,
                           fingerprint["data_config"], shipped=True)
    chosen = choose_checkpoint(run, checkpoint)
    # Restored through the training object graph (model, optimizer, step):
    # a checkpoint restored into the model alone reports a match but leaves
    # Keras 3 variables, saved under the optimizer's slots first, untouched.
    trainer = Trainer(config)
    chosen["step"] = trainer.restore(chosen["path"])
    model = trainer.model
    verify_restored(model, chosen["path"])
    if chosen["step"] == 0:
        raise TrainerInputError(f"{run} has no trained checkpoint to evaluate")
    # Runs trained before configs recorded it: the training data's manifest.
    recorded = config.data_config or data_config_if_present(config.data)
    return LoadedModel(run, config, model, chosen, recorded, shipped=False)


__all__ = ["BEST_NAME", "CHECKPOINT_INFO_NAME", "DATA_FINGERPRINT_NAME",
           "WEIGHTS_NAME", "LoadedModel", "check_data_compatible", "choose_checkpoint",
           "data_config", "is_shipped", "load", "read_manifest", "verify_restored"]
