"""The installed commands (``[project.scripts]`` in pyproject.toml).

Each function here is one command's entry point: it reads ``--verbose``,
quiets the libraries' start-up lines unless it was given, and only then
imports the command's module (TensorFlow and Beam are loaded by those), so
that the first line a user sees is the command's own.  ``python -m MODULE``
and ``python beam_runner.py`` run the same ``main`` functions.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from pipeline import cli_flags

#: Installed command name -> the module whose ``main(argv)`` it runs.
COMMANDS: dict[str, str] = {
    "sc2-pipeline": "beam_runner",
    "sc2-beam": "beam_runner",                  # the former name, kept
    "sc2-scan": "pipeline.index.scan_cli",
    "sc2-tfds-build": "datasets.sc2_replays.build",
    "sc2-train": "trainers.train",
    "sc2-evaluate": "trainers.evaluate",
    "sc2-predict": "trainers.predict",
    "sc2-export": "trainers.export",
    "sc2-render": "pipeline.sources.events.render",
    "sc2-crossval": "trainers.crossval",
}


#: The commands whose modules load TensorFlow: their flags are parsed first.
TRAINERS = ("sc2-train", "sc2-evaluate", "sc2-predict", "sc2-export", "sc2-crossval")


def run_command(name: str, argv: Sequence[str] | None = None) -> int:
    """Runs command ``name`` (a key of :data:`COMMANDS`) on ``argv``
    (default: ``sys.argv[1:]``); returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = cli_flags.quiet_unless_verbose(argv)
    if name in TRAINERS:
        # --help and usage errors end here, before TensorFlow is loaded
        from trainers.cli import PARSERS
        PARSERS[name](argv)
    with cli_flags.native_stderr_hidden(not verbose):
        module = importlib.import_module(COMMANDS[name])
    return module.main(argv)


def pipeline() -> int:
    """``sc2-pipeline``: replays to a sharded, split training set (Beam)."""
    return run_command("sc2-pipeline")


def scan() -> int:
    """``sc2-scan``: what a pile of replays holds (metadata only)."""
    return run_command("sc2-scan")


def tfds_build() -> int:
    """``sc2-tfds-build``: the TFDS dataset over a pipeline output."""
    return run_command("sc2-tfds-build")


def train() -> int:
    """``sc2-train``: trains a baseline on a pipeline output."""
    return run_command("sc2-train")


def evaluate() -> int:
    """``sc2-evaluate``: scores a training run on a split."""
    return run_command("sc2-evaluate")


def predict() -> int:
    """``sc2-predict``: a trained model's win probability over one replay."""
    return run_command("sc2-predict")


def export() -> int:
    """``sc2-export``: a training run as a shippable model directory."""
    return run_command("sc2-export")


def render() -> int:
    """``sc2-render``: engine-free samples of a replay as PNG images."""
    return run_command("sc2-render")


def crossval() -> int:
    """``sc2-crossval``: k-fold cross-validation grouped by replay."""
    return run_command("sc2-crossval")
