"""Supervised SC2LE baselines: tf.data input, Atari-net/FullyConv/arFullyConv,
training and evaluation (see docs/trainer.md)."""
import sys as _sys

# ``python -m trainers.<command>`` imports this package before the command's
# module, and Python sets ``sys.argv[0]`` to "-m" while it does: the one moment
# early enough to quiet TensorFlow's C++ logs, which are configured when
# TensorFlow is first imported.  Library imports (tests, notebooks) are left
# alone.
if _sys.argv[:1] == ["-m"]:
    from trainers.console import quiet_unless_verbose as _quiet

    _quiet(_sys.argv[1:])
