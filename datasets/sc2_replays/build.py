"""Prepares the ``sc2_replays`` TFDS dataset over a pipeline output, offline.

    python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR \\
        [--config events_64]

``beam_runner.py`` already does this into ``DIR/tfds`` at the end of a run;
this command makes another data_dir point at the same shards.  The config
defaults to the one matching the manifest (source, resolution).  Nothing is
downloaded and no sample is copied: only TFDS metadata is written, and the
dataset reads DIR's TFRecord shards where they lie.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys


def prepare(pipeline_output: str, data_dir: str, config: str | None = None):
    """Builds the dataset; returns the builder."""
    import tensorflow_datasets as tfds
    from datasets.sc2_replays import Sc2Replays
    if config is None:
        with open(os.path.join(pipeline_output, "manifest.json")) as f:
            source = json.load(f)["source"]
        config = f"{source['name']}_{source['resolution']}"
    builder = Sc2Replays(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=pipeline_output, try_download_gcs=False))
    return builder


def prepare_in_output(pipeline_output: str) -> dict[str, str]:
    """Prepares the dataset in ``pipeline_output/tfds``; returns where it is,
    relative to the output (for the manifest)."""
    import tensorflow as tf
    data_dir = os.path.join(pipeline_output, "tfds")
    if tf.io.gfile.exists(data_dir):       # an earlier run's metadata: never reused
        tf.io.gfile.rmtree(data_dir)
    with contextlib.redirect_stdout(io.StringIO()):   # TFDS prints "Downloading and preparing"
        builder = prepare(pipeline_output, data_dir)
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
