"""The two-headed training loss: value cross-entropy plus masked policy NLL.

value: binary cross-entropy of the win logit against the game outcome.
function: softmax cross-entropy over the (masked) function-id logits,
counted only for samples whose target is known (``function_id`` !=
``schemas.layers.UNKNOWN``), summed and divided by the batch size.
arguments: for each argument type, softmax cross-entropy counted only for
samples whose target function takes it and whose value is known (target >= 0:
neither ``schemas.layers.UNUSED`` nor ``UNKNOWN``), summed over the batch and
divided by the batch size, so the policy loss is the mean negative
log-likelihood of whole actions, over what the player is known to have done.
A sample with an unknown target still counts in the value loss.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import tensorflow as tf

from schemas import layers


@dataclasses.dataclass(frozen=True)
class LossWeights:
    value: float = 1.0
    function: float = 1.0
    arguments: float = 1.0


def compute_losses(outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
                   weights: LossWeights = LossWeights()) -> dict[str, tf.Tensor]:
    """Scalar losses: ``total``, ``value``, ``function``, ``arguments`` and
    one ``arg_<name>`` per argument type."""
    batch = tf.cast(tf.shape(targets["function_id"])[0], tf.float32)
    losses = {
        "value": tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(targets["value"], tf.float32), logits=outputs["value"])),
    }
    function = tf.cast(targets["function_id"], tf.int32)
    known = tf.cast(function >= 0, tf.float32)
    losses["function"] = tf.reduce_sum(known * tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(function, 0), logits=outputs["function"])) / batch
    arguments = tf.constant(0.0)
    for arg in layers.ARGUMENT_TYPES:
        key = f"arg_{arg.name}"
        target = tf.cast(targets[key], tf.int32)
        used = tf.cast(target >= 0, tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(target, 0), logits=outputs[key])
        losses[key] = tf.reduce_sum(ce * used) / batch
        arguments = arguments + losses[key]
    losses["arguments"] = arguments
    losses["total"] = (weights.value * losses["value"]
                       + weights.function * losses["function"]
                       + weights.arguments * arguments)
    return losses
