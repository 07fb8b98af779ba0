"""Prepares the ``sc2_replays`` TFDS dataset over a pipeline output, offline.

    python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR \\
        [--config events_64] [--no_verify] [--verbose]

``beam_runner.py`` already does this into ``DIR/tfds`` at the end of a run;
this command makes another data_dir point at the same shards.  The config
defaults to the one matching the manifest (source, resolution).  Nothing is
downloaded and no sample is copied: only TFDS metadata is written, and the
dataset reads DIR's TFRecord shards where they lie.  Unless ``--no_verify``,
every shard the manifest lists is read through first (gzip and record CRCs,
record counts).  Failures -- no manifest, a missing, truncated or corrupt
shard, a config that does not match the output -- end in one line naming the
file (``--verbose``: the traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys

import tensorflow_datasets as tfds

from datasets.sc2_replays import Sc2Replays
from datasets.sc2_replays.sc2_replays import MismatchError


class BuildError(Exception):
    """The pipeline output cannot back the dataset (one line naming the file)."""


def read_manifest(pipeline_output: str) -> dict:
    """``DIR/manifest.json``; :class:`BuildError` when it is missing or unreadable."""
    path = os.path.join(pipeline_output, "manifest.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise BuildError(f"{path}: no manifest (not a finished beam_runner.py output; "
                         "an aborted run writes none)") from exc
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: unreadable manifest ({exc})") from exc


def verify_shards(pipeline_output: str, manifest: dict) -> int:
    """Reads every TFRecord shard the manifest lists (gzip and record CRCs,
    record counts); returns the records read.  :class:`BuildError` names
    the first missing, truncated or corrupt shard."""
    # Here, not at the top: it imports apache_beam (~2 s), which preparing alone
    # (--no_verify, beam_runner's prepare_in_output) never needs.
    from pipeline.output.writers import ShardVerificationError, check_tfrecord_file
    root = manifest.get("output_dir") or pipeline_output
    total = 0
    for entries in manifest.get("shards", {}).get("tfrecord", {}).values():
        for entry in entries:
            path = entry["path"]
            path = os.path.join(pipeline_output, os.path.relpath(path, root)
                                if os.path.isabs(path) else path)
            try:
                total += check_tfrecord_file(path, int(entry["num_samples"]))
            except ShardVerificationError as exc:
                raise BuildError(str(exc)) from exc
    return total


def prepare(pipeline_output: str, data_dir: str, config: str | None = None,
            recorded_output: str | None = None):
    """Builds the dataset; returns the builder.  ``recorded_output``: the
    absolute output path to record, when the run is published elsewhere
    than ``pipeline_output`` (beam_runner.py's staging directory)."""
    if config is None:
        source = read_manifest(pipeline_output)["source"]
        config = f"{source['name']}_{source['resolution']}"
    builder = Sc2Replays(config=config, data_dir=data_dir)
    builder.recorded_output = recorded_output
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=pipeline_output, try_download_gcs=False))
    return builder


def prepare_in_output(pipeline_output: str, recorded_output: str | None = None
                      ) -> dict[str, str]:
    """Prepares the dataset in ``pipeline_output/tfds``; returns where it is,
    relative to the output (for the manifest).  The shards are named relative
    to it, so the output may be renamed afterwards (``recorded_output``: its
    final absolute path)."""
    from etils import epath
    data_dir = os.path.join(pipeline_output, "tfds")
    if epath.Path(data_dir).exists():      # an earlier run's metadata: never reused
        epath.Path(data_dir).rmtree()
    with contextlib.redirect_stdout(io.StringIO()):   # TFDS prints "Downloading and preparing"
        builder = prepare(pipeline_output, data_dir, recorded_output=recorded_output)
    return {"data_dir": "tfds", "name": f"{builder.info.full_name}",
            "load": f"tfds.load('sc2_replays/{builder.builder_config.name}', "
                    f"data_dir='<output>/tfds')"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_output", required=True,
                        help="beam_runner.py --output directory")
    parser.add_argument("--data_dir", required=True, help="TFDS data directory")
    parser.add_argument("--config", default=None,
                        help="builder config, e.g. events_64 (default: from the manifest)")
    parser.add_argument("--no_verify", action="store_true",
                        help="skip reading every shard through (CRCs, record counts)")
    parser.add_argument("--verbose", action="store_true", help="on failure, the traceback")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.pipeline_output)
    try:
        if not args.no_verify:
            verify_shards(output, read_manifest(output))
        builder = prepare(output, os.path.abspath(args.data_dir), args.config)
    except (BuildError, MismatchError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"datasets.sc2_replays.build: error: {exc}", file=sys.stderr)
        return 2
    info = builder.info
    print(f"{info.full_name} prepared in {builder.data_dir}")
    for name, split in sorted(info.splits.items()):
        print(f"  {name}: {split.num_examples} examples, {split.num_shards} shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
