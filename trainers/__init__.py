"""Supervised SC2LE baselines: tf.data input, Atari-net/FullyConv/arFullyConv,
training and evaluation (see docs/trainer.md)."""
import sys as _sys

# ``python -m trainers.<command>`` imports this package before the command's
# module, and Python sets ``sys.argv[0]`` to "-m" while it does: the one moment
# early enough to quiet TensorFlow, whose C++ start-up lines are written when
# it is first imported (the installed commands do the same in
# pipeline/commands.py).  Library imports (tests, notebooks) are left alone.
if _sys.argv[:1] == ["-m"]:
    from pipeline.cli_flags import native_stderr_hidden as _hidden
    from pipeline.cli_flags import quiet_unless_verbose as _quiet

    with _hidden(not _quiet(_sys.argv[1:])):
        import tensorflow  # noqa: F401
