"""Quiet console output for the trainer's command lines.

TensorFlow prints C++ log lines when it is imported ("This TensorFlow binary
is optimized to use available CPU instructions ...", "All log messages before
absl::InitializeLog() ...") and absl/Python warnings later; none of them says
anything a user of ``trainers.train``, ``trainers.evaluate`` or
``trainers.predict`` needs.  The C++ level is read from the environment when
TensorFlow is imported, so :func:`quiet_unless_verbose` must run before the
first ``import tensorflow``: each entry point calls it first, with its own
argv.  ``--verbose`` brings everything back.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Sequence


def quiet_unless_verbose(argv: Sequence[str] | None = None) -> bool:
    """Silences TensorFlow's and absl's logs unless ``--verbose`` is in
    ``argv`` (default ``sys.argv``); returns whether it is."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in argv
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
    return verbose
