"""Prepares the ``sc2_replays`` TFDS dataset from a pipeline output, offline.

    python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR \\
        [--config events_64]

The config defaults to the one matching the manifest (source, resolution).
Nothing is downloaded: the builder reads DIR's TFRecord shards (manual dir).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import tensorflow_datasets as tfds

from datasets.sc2_replays import Sc2Replays


def prepare(pipeline_output: str, data_dir: str, config: str | None = None):
    """Builds the dataset; returns the builder."""
    if config is None:
        with open(os.path.join(pipeline_output, "manifest.json")) as f:
            source = json.load(f)["source"]
        config = f"{source['name']}_{source['resolution']}"
    builder = Sc2Replays(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=pipeline_output, try_download_gcs=False))
    return builder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_output", required=True,
                        help="beam_runner.py --output directory")
    parser.add_argument("--data_dir", required=True, help="TFDS data directory")
    parser.add_argument("--config", default=None,
                        help="builder config, e.g. events_64 (default: from the manifest)")
    args = parser.parse_args(argv)
    builder = prepare(os.path.abspath(args.pipeline_output), os.path.abspath(args.data_dir),
                      args.config)
    info = builder.info
    print(f"{info.full_name} prepared in {builder.data_dir}")
    for name, split in sorted(info.splits.items()):
        print(f"  {name}: {split.num_examples} examples, {split.num_shards} shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
