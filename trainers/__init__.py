"""Supervised SC2LE baselines: tf.data input, Atari-net/FullyConv/arFullyConv,
training and evaluation (see docs/trainer.md)."""
