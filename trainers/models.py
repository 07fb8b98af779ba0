"""The SC2LE baseline networks (Vinyals et al. 2017, section 4.3), two-headed.

Atari-net, FullyConv and arFullyConv as Keras 3 models (TensorFlow backend).
Every model maps the inputs of :func:`trainers.input.to_model_batch` to a dict
of logits:

* ``value``: [B], the win logit (sigmoid -> win probability);
* ``function``: [B, 573], function-id logits with unavailable functions set to
  :data:`MASKED_LOGIT` (their softmax probability is exactly 0);
* ``arg_<name>``: one head per ``schemas.layers.ARGUMENT_TYPES`` entry,
  [B, size] for categorical arguments and [B, resolution**2] for spatial ones
  (flat index ``y * resolution + x``).

Preprocessing, as in the paper: each categorical layer is embedded (one-hot +
1x1 convolution == an embedding lookup, ``ceil(log2(scale))`` channels, at
most 8), each scalar layer is log-transformed (``log(x + 1)``).

Where this deviates from the paper (documented in docs/trainer.md): Atari-net
convolutions use ``same`` padding so small test resolutions work; FullyConv's
non-spatial trunk first reduces the 64x64 state with a 4x4 stride-4
convolution before its 256-unit layer (the paper flattens the full-resolution
state, a 100M-parameter layer that CPU training cannot afford); the
non-spatial vector is projected to 32 tanh channels before being broadcast.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from schemas import layers
from trainers.action_space import function_arguments
from trainers.input import FeatureSpec

from trainers.config import MODEL_NAMES, VALUE_INPUTS  # noqa: E402,F401 -- one definition
MASKED_LOGIT = -1e9


def embedding_dim(scale: int) -> int:
    """Channels a categorical layer with ``scale`` values is embedded into."""
    return max(1, min(8, math.ceil(math.log2(scale))))


def mask_unavailable(logits: tf.Tensor, available: tf.Tensor) -> tf.Tensor:
    """Sets logits of unavailable functions (``available == 0``) to MASKED_LOGIT."""
    return tf.where(available > 0, logits, tf.cast(MASKED_LOGIT, logits.dtype))


class SpatialEncoder(keras.layers.Layer):
    """[B,H,W,L] integer layers -> [B,H,W,C] floats (embeddings and log1p)."""

    def __init__(self, feature_layers: list[layers.Layer], **kwargs):
        super().__init__(**kwargs)
        self.feature_layers = list(feature_layers)
        categorical = [l for l in self.feature_layers
                       if l.type == layers.LayerType.CATEGORICAL]
        self.embeddings = [
            keras.layers.Embedding(l.scale, embedding_dim(l.scale), name=f"embed_{l.name}")
            for l in categorical]
        self._embedding_of = {l.name: i for i, l in enumerate(categorical)}

    def call(self, x):
        x = tf.cast(x, tf.int32)
        parts = []
        for i, layer in enumerate(self.feature_layers):
            channel = x[..., i]
            if layer.name in self._embedding_of:
                emb = self.embeddings[self._embedding_of[layer.name]]
                parts.append(emb(tf.clip_by_value(channel, 0, layer.scale - 1)))
            else:
                parts.append(tf.math.log1p(tf.cast(channel, tf.float32))[..., None])
        if not parts:
            return tf.zeros(tf.concat([tf.shape(x)[:3], [1]], 0), tf.float32)
        return tf.concat(parts, axis=-1)


class _Base(keras.Model):
    """Shared pieces: encoders, non-spatial input, value and function heads."""

    autoregressive = False

    def __init__(self, spec: FeatureSpec, dropout: float = 0.0, value_input: str = "fc",
                 **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.value_input = value_input
        # Dropout on the 256-unit layer the value and function heads read
        # (training only); 0 = none, as in the paper.
        self.fc_dropout = keras.layers.Dropout(dropout, name="fc_dropout")
        self.screen_encoder = SpatialEncoder(spec.screen, name="screen_encoder")
        self.minimap_encoder = SpatialEncoder(spec.minimap, name="minimap_encoder")
        self.value_head = keras.layers.Dense(1, name="value")
        self.function_head = keras.layers.Dense(layers.NUM_FUNCTIONS, name="function")

    def non_spatial(self, inputs) -> tf.Tensor:
        parts = [inputs["player"], inputs["available_actions"]]
        if self.spec.game_time:
            parts.append(inputs["game_time"])
        if self.spec.score:
            parts.append(inputs["score"])
        return tf.concat(parts, axis=-1)

    def common_heads(self, fc: tf.Tensor, inputs, spatial: tf.Tensor | None = None,
                     training=False) -> dict:
        if self.value_input == "pooled":
            value_in = self.fc_dropout(tf.reduce_mean(spatial, axis=[1, 2]), training=training)
        else:
            value_in = fc
        return {"value": tf.squeeze(self.value_head(value_in), -1),
                "function": mask_unavailable(self.function_head(fc),
                                             inputs["available_actions"])}


class AtariNet(_Base):
    """Atari-net: strided convs per spatial input, flattened with the tanh
    non-spatial vector into one 256-unit ReLU layer; spatial arguments as
    independent x and y softmaxes."""

    def __init__(self, spec: FeatureSpec, **kwargs):
        super().__init__(spec, **kwargs)
        if self.value_input != "fc":
            raise ValueError("Atari-net's value head reads its 256-unit layer only "
                             f"(value_input 'fc'), got {self.value_input!r}")

        def tower(name):
            return keras.Sequential([
                keras.layers.Conv2D(16, 8, strides=4, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
                keras.layers.Flatten()], name=name)

        self.screen_tower = tower("screen_tower")
        self.minimap_tower = tower("minimap_tower")
        self.ns_layer = keras.layers.Dense(64, activation="tanh", name="non_spatial")
        self.fc = keras.layers.Dense(256, activation="relu", name="fc")
        # Spatial arguments get an x head and a y head (independent softmaxes).
        self.arg_heads = [
            keras.layers.Dense(2 * spec.arg_resolution(a) if a.spatial else a.sizes[0],
                               name=f"arg_{a.name}")
            for a in layers.ARGUMENT_TYPES]

    def call(self, inputs, training=False):
        fc = self.fc(tf.concat([
            self.screen_tower(self.screen_encoder(inputs["screen"])),
            self.minimap_tower(self.minimap_encoder(inputs["minimap"])),
            self.ns_layer(self.non_spatial(inputs))], axis=-1))
        fc = self.fc_dropout(fc, training=training)
        out = self.common_heads(fc, inputs)
        for arg, head in zip(layers.ARGUMENT_TYPES, self.arg_heads):
            if arg.spatial:
                res = self.spec.arg_resolution(arg)
                x_logits, y_logits = tf.split(head(fc), 2, axis=-1)
                log_x = tf.nn.log_softmax(x_logits)  # [B, res]
                log_y = tf.nn.log_softmax(y_logits)
                # joint log-probability of (x, y), flattened as y * res + x
                out[f"arg_{arg.name}"] = tf.reshape(
                    log_y[:, :, None] + log_x[:, None, :], [-1, res * res])
            else:
                out[f"arg_{arg.name}"] = head(fc)
        return out


class FullyConv(_Base):
    """FullyConv: resolution-preserving convs, broadcast non-spatial channels,
    1x1-conv spatial policies and a 256-unit layer for non-spatial heads."""

    def __init__(self, spec: FeatureSpec, **kwargs):
        super().__init__(spec, **kwargs)
        if spec.screen_resolution != spec.minimap_resolution:
            raise ValueError("FullyConv concatenates screen and minimap states: "
                             f"resolutions must match, got {spec.screen_resolution} "
                             f"and {spec.minimap_resolution}")

        def tower(name):
            return keras.Sequential([
                keras.layers.Conv2D(16, 5, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu")], name=name)

        self.screen_tower = tower("screen_tower")
        self.minimap_tower = tower("minimap_tower")
        self.ns_layer = keras.layers.Dense(32, activation="tanh", name="non_spatial")
        self.reduce = keras.layers.Conv2D(32, 4, strides=4, activation="relu", name="reduce")
        self.fc = keras.layers.Dense(256, activation="relu", name="fc")
        self.state_channels = 32 + 32 + 32
        self.arg_heads = [
            keras.layers.Conv2D(1, 1, name=f"arg_{a.name}") if a.spatial
            else keras.layers.Dense(a.sizes[0], name=f"arg_{a.name}")
            for a in layers.ARGUMENT_TYPES]

    def state(self, inputs, training=False) -> tuple[tf.Tensor, tf.Tensor]:
        screen = self.screen_tower(self.screen_encoder(inputs["screen"]))
        minimap = self.minimap_tower(self.minimap_encoder(inputs["minimap"]))
        ns = self.ns_layer(self.non_spatial(inputs))
        res = self.spec.screen_resolution
        ns = tf.tile(ns[:, None, None, :], [1, res, res, 1])
        spatial = tf.concat([screen, minimap, ns], axis=-1)
        fc = self.fc(keras.ops.reshape(self.reduce(spatial), [tf.shape(spatial)[0], -1]))
        return spatial, self.fc_dropout(fc, training=training)

    def call(self, inputs, training=False):
        spatial, fc = self.state(inputs, training)
        out = self.common_heads(fc, inputs, spatial, training)
        for arg, head in zip(layers.ARGUMENT_TYPES, self.arg_heads):
            logits = head(spatial if arg.spatial else fc)
            out[f"arg_{arg.name}"] = (tf.reshape(logits, [tf.shape(logits)[0], -1])
                                      if arg.spatial else logits)
        return out


class ArFullyConv(FullyConv):
    """FullyConv whose argument heads are conditioned on the function id and on
    the arguments before them (in ARGUMENT_TYPES order).

    If ``inputs`` holds ``function_id`` and the ``arg_<name>`` targets, they
    are used (teacher forcing, for training and for "given the function"
    evaluation); otherwise the model's own argmax choices are.
    """

    autoregressive = True
    cond_dim = 32

    def __init__(self, spec: FeatureSpec, **kwargs):
        super().__init__(spec, **kwargs)
        self.function_embedding = keras.layers.Embedding(
            layers.NUM_FUNCTIONS, self.cond_dim, name="function_embedding")
        self.arg_embeddings = [
            keras.layers.Embedding(spec.arg_classes(a), self.cond_dim, name=f"embed_arg_{a.name}")
            for a in layers.ARGUMENT_TYPES[:-1]]  # the last one conditions nothing
        self.cond_projections = [
            keras.layers.Dense(self.state_channels if a.spatial else 256,
                               name=f"cond_arg_{a.name}")
            for a in layers.ARGUMENT_TYPES]
        self.takes = tf.constant(function_arguments())

    def call(self, inputs, training=False):
        spatial, fc = self.state(inputs, training)
        out = self.common_heads(fc, inputs, spatial, training)
        teacher = "function_id" in inputs
        # An unknown target (-2) conditions like no_op; the losses ignore it.
        function = (tf.maximum(tf.cast(inputs["function_id"], tf.int32), 0) if teacher
                    else tf.argmax(out["function"], axis=-1, output_type=tf.int32))
        takes = tf.gather(self.takes, function)  # [B, num_args]
        cond = self.function_embedding(function)
        for i, arg in enumerate(layers.ARGUMENT_TYPES):
            projection = self.cond_projections[i](cond)
            if arg.spatial:
                logits = self.arg_heads[i](tf.maximum(spatial + projection[:, None, None, :], 0.0))
                logits = tf.reshape(logits, [tf.shape(logits)[0], -1])
            else:
                logits = self.arg_heads[i](tf.maximum(fc + projection, 0.0))
            out[f"arg_{arg.name}"] = logits
            if i == len(self.arg_embeddings):
                break
            if teacher:
                value = tf.cast(inputs[f"arg_{arg.name}"], tf.int32)
                used = value >= 0
            else:
                value = tf.argmax(logits, axis=-1, output_type=tf.int32)
                used = takes[:, i] > 0
            embedded = self.arg_embeddings[i](tf.maximum(value, 0))
            cond = cond + tf.where(used[:, None], embedded, tf.zeros_like(embedded))
        return out


def build_model(name: str, spec: FeatureSpec, dropout: float = 0.0,
                value_input: str = "fc") -> keras.Model:
    """One of :data:`MODEL_NAMES`, built (weights created) for ``spec``;
    ``dropout`` on the 256-unit layer of the non-spatial heads (and on the
    pooled value input); ``value_input`` one of :data:`VALUE_INPUTS`."""
    if value_input not in VALUE_INPUTS:
        raise ValueError(f"unknown value_input {value_input!r}; expected one of "
                         f"{VALUE_INPUTS}")
    classes = {"atari_net": AtariNet, "fully_conv": FullyConv, "ar_fully_conv": ArFullyConv}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    model = classes[name](spec, dropout=dropout, value_input=value_input, name=name)
    model(dummy_inputs(spec, batch_size=1), training=False)
    return model


def dummy_inputs(spec: FeatureSpec, batch_size: int = 1) -> dict:
    """Zero inputs of the right shapes (no_op available), to build a model."""
    available = np.zeros((batch_size, layers.NUM_FUNCTIONS), np.float32)
    available[:, layers.NO_OP] = 1.0
    extra = ({"game_time": tf.zeros([batch_size, 1], tf.float32)} if spec.game_time else {})
    if spec.score:
        extra["score"] = tf.zeros([batch_size, len(layers.SCORE_FEATURES)], tf.float32)
    return {**extra,
        "screen": tf.zeros([batch_size, spec.screen_resolution, spec.screen_resolution,
                            len(spec.screen_layers)], tf.uint16),
        "minimap": tf.zeros([batch_size, spec.minimap_resolution, spec.minimap_resolution,
                             len(spec.minimap_layers)], tf.uint16),
        "player": tf.zeros([batch_size, len(layers.PLAYER_FEATURES)], tf.float32),
        "available_actions": tf.constant(available),
    }
