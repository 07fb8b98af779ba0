"""The trainer commands' flags, parsed without TensorFlow.

``sc2-train``, ``sc2-evaluate``, ``sc2-predict``, ``sc2-export`` and
``sc2-crossval`` build their parsers here, from :mod:`trainers.config` and
:mod:`pipeline.cli_flags` only: the installed commands parse the command line
first (``--help`` and usage errors end there, in a fraction of a second) and
import the modules that load TensorFlow only for a real run
(:mod:`pipeline.commands`).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from pipeline import cli_flags
from pipeline.replay import limits as limits_lib
from trainers.config import (LR_SCHEDULES, MODEL_NAMES, SELECT_METRICS, SPLIT_CHOICES,
                             VALUE_INPUTS, TrainConfig)


def train_parser() -> cli_flags.Parser:
    """``sc2-train``'s flags; their defaults are :class:`TrainConfig`'s."""
    p = cli_flags.Parser(prog="sc2-train", description=cli_flags.module_doc("trainers.train"))
    d = TrainConfig(data="", model="", out="")
    cli_flags.add_data(p)
    p.add_argument("--model", required=True, choices=MODEL_NAMES, help="the architecture")
    p.add_argument("--out", required=True,
                   help="the run directory to write (created; resumed if present)")
    p.add_argument("--steps", type=int, default=d.steps, help="total training steps")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="samples per step")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate,
                   help="Adam's (peak) learning rate")
    p.add_argument("--clip_norm", type=float, default=d.clip_norm,
                   help="global gradient-norm clipping")
    p.add_argument("--weight_decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay (AdamW); 0 = plain Adam")
    p.add_argument("--lr_schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="constant, or cosine: from --learning_rate down to 0 at --steps")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the weights and the data order")
    p.add_argument("--value_weight", type=float, default=d.value_weight,
                   help="weight of the value (win) loss")
    p.add_argument("--function_weight", type=float, default=d.function_weight,
                   help="weight of the action-function loss")
    p.add_argument("--argument_weight", type=float, default=d.argument_weight,
                   help="weight of the action-argument losses")
    p.add_argument("--shuffle_buffer", type=int, default=d.shuffle_buffer,
                   help="samples held by the shuffle buffer")
    p.add_argument("--read_shards", type=int, default=d.read_shards,
                   help="training shards read at once, one record from each in turn: "
                        "more mixes more games into each stretch of batches")
    p.add_argument("--train_every", type=int, default=d.train_every,
                   help="train on every k-th training window (spreads a step budget "
                        "smaller than the data over every training replay)")
    p.add_argument("--log_every", type=int, default=d.log_every,
                   help="steps between progress lines")
    p.add_argument("--checkpoint_every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints")
    p.add_argument("--validation_every", type=int, default=d.validation_every,
                   help="steps between validations and best-checkpoint selection "
                        "(0: never)")
    p.add_argument("--validation_samples", type=int, default=d.validation_samples,
                   help="size of the fixed validation subset (every k-th record)")
    p.add_argument("--select_metric", choices=SELECT_METRICS, default=d.select_metric,
                   help="validation metric that picks the best checkpoint")
    p.add_argument("--early_stop_patience", type=int, default=d.early_stop_patience,
                   help="stop after this many validations without improvement (0: never)")
    p.add_argument("--dropout", type=float, default=d.dropout,
                   help="dropout on the 256-unit layer of the non-spatial heads")
    p.add_argument("--value_input", choices=VALUE_INPUTS, default=d.value_input,
                   help="value head input: the 256-unit layer (paper) or the spatial "
                        "state averaged over the image (FullyConv family)")
    p.add_argument("--no_score", dest="score", action="store_false",
                   help="leave the score vector out of the non-spatial input")
    p.add_argument("--game_time", action="store_true",
                   help="give the model the game time (game loop) as a non-spatial input")
    p.add_argument("--source", choices=("tfrecord", "tfds"), default=d.source,
                   help="read --data's TFRecord shards directly, or through TFDS")
    p.add_argument("--tfds_data_dir", default=None,
                   help="with --source tfds: the TFDS data directory (default: --data's tfds/)")
    p.add_argument("--drop_layers", default=None,
                   help="comma-separated sample fields to leave out (default: the "
                        "manifest's unavailable layers)")
    cli_flags.add_verbose(p)
    return p


def parse_train(argv: Sequence[str] | None) -> TrainConfig:
    """``sc2-train``'s command line as a :class:`TrainConfig`."""
    a = train_parser().parse_args(argv)
    drop = (None if a.drop_layers is None
            else tuple(x.strip() for x in a.drop_layers.split(",") if x.strip()))
    kwargs = {k: v for k, v in vars(a).items() if k not in ("drop_layers", "verbose")}
    config = TrainConfig(**kwargs, drop_layers=drop)
    config.verbose = a.verbose      # not a field: not saved in config.json
    return config


def evaluate_parser() -> cli_flags.Parser:
    """``sc2-evaluate``'s flags."""
    p = cli_flags.Parser(prog="sc2-evaluate", description=cli_flags.module_doc("trainers.evaluate"))
    cli_flags.add_data(p)
    p.add_argument("--run", required=True,
                   help="training run directory, or a shipped model (models/<name>)")
    p.add_argument("--split", default="test", choices=SPLIT_CHOICES,
                   help="a split of --data, or 'all' (e.g. games from another source)")
    p.add_argument("--every", type=int, default=1,
                   help="evaluate every k-th window of the split (file order: every replay, "
                        "every game time)")
    p.add_argument("--out", default=None,
                   help="where the report goes (default: the run directory; for a shipped "
                        "model ./eval_<name>)")
    p.add_argument("--batch_size", type=int, default=64, help="samples per forward pass")
    p.add_argument("--within_pixels", type=int, default=3,
                   help="a spatial argument this close to the target counts as right")
    p.add_argument("--bucket_minutes", default="0,2,4,6,8,10,12,14,16,18,20,22,24",
                   help="left edges of the game-time buckets, in minutes")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--checkpoint", default="best",
                   help="'best' (validation-selected, else latest), 'latest', or a path")
    p.add_argument("--min_function_count", type=int, default=20,
                   help="functions with fewer test targets are left out of the breakdown")
    cli_flags.add_verbose(p)
    return p


def predict_parser() -> cli_flags.Parser:
    """``sc2-predict``'s flags (the pipeline's limits among them)."""
    parser = cli_flags.Parser(
        prog="sc2-predict", description=cli_flags.module_doc("trainers.predict").split("\n")[0])
    parser.add_argument("--run", required=True,
                        help="training run directory or shipped model directory")
    parser.add_argument("--replay", required=True, help="one .SC2Replay file")
    parser.add_argument("--out", help="directory to write (default: ./predict_<replay stem>)")
    parser.add_argument("--checkpoint", default="best", help="best, latest or a path")
    parser.add_argument("--moments", type=int, default=4,
                        help="moments at which to show the most likely actions")
    parser.add_argument("--batch_size", type=int, default=256, help="samples per forward pass")
    cli_flags.add_verbose(parser)
    limits_lib.add_arguments(parser)        # the pipeline's limits, the same flags
    return parser


def export_parser() -> cli_flags.Parser:
    """``sc2-export``'s flags."""
    p = cli_flags.Parser(prog="sc2-export", description=cli_flags.module_doc("trainers.export"))
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/NAME")
    p.add_argument("--checkpoint", default="best",
                   help="'best' (validation-selected, else latest), 'latest', or a path")
    cli_flags.add_verbose(p)
    return p


def parse_crossval(argv: Sequence[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    """``sc2-crossval``'s own flags, and the training flags it passes on."""
    p = cli_flags.Parser(prog="sc2-crossval", description=cli_flags.module_doc("trainers.crossval"),
                         epilog="and every flag of sc2-train (sc2-train --help): --data, "
                                "--model, --out, --steps, ...")
    p.add_argument("--folds", type=int, default=5, help="folds, grouped by replay")
    p.add_argument("--eval_batch_size", type=int, default=256,
                   help="samples per forward pass when a fold is scored")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--bootstrap_seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--bucket_minutes", default="0,2,4,6,8,10,12,14,16,18,20,22,24",
                   help="left edges of the game-time buckets, in minutes")
    own, rest = p.parse_known_args(argv)
    return own, parse_train(rest)  # --data, --model, --out and the training flags


#: Installed command -> the function that parses its command line (and exits
#: on --help or a usage error) before its module is imported.
PARSERS = {
    "sc2-train": parse_train,
    "sc2-evaluate": lambda argv: evaluate_parser().parse_args(argv),
    "sc2-predict": lambda argv: predict_parser().parse_args(argv),
    "sc2-export": lambda argv: export_parser().parse_args(argv),
    "sc2-crossval": parse_crossval,
}
