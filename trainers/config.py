"""What a training run is made of, without TensorFlow.

:class:`TrainConfig` (saved as a run's ``config.json``) and the names the
trainer's command lines choose from live here, apart from the modules that
train and evaluate, so that parsing a command line -- ``sc2-train --help``
included -- never loads TensorFlow (:mod:`trainers.cli`).  The methods that
need the data or the losses import them when called.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainers.input import FeatureSpec, Selection
    from trainers.losses import LossWeights

MODEL_NAMES: tuple[str, ...] = ("atari_net", "fully_conv", "ar_fully_conv")
# What the value head reads: the 256-unit layer (the paper), or the spatial
# state averaged over the image (FullyConv family: 96 numbers that say what is
# on screen and minimap but not where, a smaller value-head capacity).
VALUE_INPUTS: tuple[str, ...] = ("fc", "pooled")
#: The splits an evaluation can score (``all``: every split of the data).
SPLIT_CHOICES: tuple[str, ...] = ("all", "train", "validation", "test")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
# Validation metrics a checkpoint can be selected on; all lower-is-better
# except value_accuracy.
SELECT_METRICS: tuple[str, ...] = ("value", "total", "function", "arguments",
                                   "value_accuracy")


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
    # "constant", or "cosine": the rate falls from learning_rate to 0 over
    # ``steps`` (half a cosine), so a long run ends on small updates.
    lr_schedule: str = "constant"
    seed: int = 0
    value_weight: float = 1.0
    function_weight: float = 1.0
    argument_weight: float = 1.0
    shuffle_buffer: int = 2048
    # Training shards read at once (one record from each in turn): how many
    # games a stretch of batches mixes (trainers.input.make_dataset).
    read_shards: int = 32
    # Train on every k-th training window (in the shuffled, interleaved read
    # order, before parsing): spreads a step budget smaller than the split
    # over every training replay instead of the first shards read.
    train_every: int = 1
    log_every: int = 10
    checkpoint_every: int = 200
    validation_every: int = 0
    validation_batches: int = 4   # unused since validation_samples (old configs)
    validation_samples: int = 2048
    select_metric: str = "value"  # a validation loss name, or "value_accuracy"
    early_stop_patience: int = 0  # validations without improvement; 0 = never stop
    dropout: float = 0.0
    game_time: bool = False
    score: bool = True            # the score vector as a non-spatial input
    value_input: str = "fc"       # trainers.models.VALUE_INPUTS
    source: str = "tfrecord"
    tfds_data_dir: str | None = None
    drop_layers: tuple[str, ...] | None = None  # None: from the manifest
    feature_spec: dict | None = None            # filled in by resolve()
    # Which samples train and validate (``trainers.input.Selection`` JSON:
    # splits + replay ids); None: the "train" / "validation" split.  Set by
    # ``trainers.crossval`` for a fold, so a fold's config.json records
    # exactly which replays it trained and selected its checkpoint on.
    train_data: dict | None = None
    validation_data: dict | None = None
    # How the training samples were made (``trainers.input.data_config``:
    # source, resolution, step_mul, fog): data made otherwise is refused.
    data_config: dict | None = None

    def resolve(self) -> "TrainConfig":
        """Fills the feature spec from the data (resolution, unavailable layers)."""
        from trainers.input import (FeatureSpec, data_config_if_present, data_resolutions,
                                    manifest_unavailable_layers)
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; expected one of {MODEL_NAMES}")
        if self.feature_spec is None:
            drop = (manifest_unavailable_layers(self.data) if self.drop_layers is None
                    else tuple(self.drop_layers))
            self.drop_layers = tuple(drop)
            screen, minimap = data_resolutions(self.data)
            self.feature_spec = FeatureSpec.create(
                screen, minimap, drop + (() if self.score else ("score",)),
                game_time=self.game_time).to_json()
        if self.data_config is None:
            self.data_config = data_config_if_present(self.data) or None
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"unknown select_metric {self.select_metric!r}; expected one "
                             f"of {SELECT_METRICS}")
        return self

    @property
    def train_selection(self) -> "Selection":
        from trainers.input import Selection
        return Selection.of(self.train_data or "train")

    @property
    def validation_selection(self) -> "Selection":
        from trainers.input import Selection
        return Selection.of(self.validation_data or "validation")

    @property
    def spec(self) -> "FeatureSpec":
        from trainers.input import FeatureSpec
        return FeatureSpec.from_json(self.feature_spec)

    @property
    def loss_weights(self) -> "LossWeights":
        from trainers.losses import LossWeights
        return LossWeights(self.value_weight, self.function_weight, self.argument_weight)
