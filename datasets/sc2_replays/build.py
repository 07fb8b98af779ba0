"""Prepares the ``sc2_replays`` TFDS dataset over a pipeline output, offline.

    sc2-tfds-build --data DIR --out TFDS_DIR [--config events_64] [--no_verify] [--verbose]

(also ``python -m datasets.sc2_replays.build``; the old names ``--pipeline_output``
and ``--data_dir`` still work for one release).

``beam_runner.py`` already does this into ``DIR/tfds`` at the end of a run
(:func:`prepare_in_output`); this command makes another data_dir point at the
same shards (replacing what it held for this config and version).  The
config defaults to the one matching the manifest (source, resolution).
Nothing is downloaded and no sample is copied: only TFDS metadata is
written, and the dataset reads DIR's TFRecord shards where they lie.  Unless
``--no_verify``, every shard the manifest lists is read through first (gzip
and record CRCs, record counts).  Failures -- no manifest, a run with no
samples, a missing, truncated or corrupt shard, a config that does not match
the output -- end in one line naming the file (``--verbose``: the traceback).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import TYPE_CHECKING

from pipeline import cli_flags
from schemas.run_output import RunLayout, RunOutput, RunOutputError

if TYPE_CHECKING:       # imported where used: --help must not load TensorFlow
    from datasets.sc2_replays.sc2_replays import Sc2Replays


def verify_shards(run: RunOutput) -> int:
    """Reads every TFRecord shard the manifest lists (gzip and record CRCs,
    record counts); returns the records read.  :class:`RunOutputError`
    names the first missing, truncated or corrupt shard."""
    # Here, not at the top: it imports apache_beam (~2 s), which preparing alone
    # (--no_verify, beam_runner's prepare_in_output) never needs.
    from pipeline.output.writers import ShardVerificationError, check_tfrecord_file
    total = 0
    for path, entry in run.iter_shards("tfrecord", run.manifest.split_names()):
        try:
            total += check_tfrecord_file(path, entry.num_samples)
        except ShardVerificationError as exc:
            raise RunOutputError(str(exc)) from exc
    return total


def prepare(pipeline_output: str, data_dir: str, config: str | None = None,
            recorded_output: str | None = None, verify: bool = False) -> "Sc2Replays":
    """Writes the dataset's metadata in ``data_dir``; returns the builder.
    :class:`RunOutputError` (one line naming the file, nothing written)
    when the output cannot back it.  ``recorded_output``: the output path
    to record, when the run is published elsewhere than ``pipeline_output``
    (beam_runner.py's staging directory)."""
    import tensorflow_datasets as tfds
    from datasets.sc2_replays.sc2_replays import Sc2Replays, open_for
    run, checked = open_for(pipeline_output, config)
    if verify:
        verify_shards(run)
    builder = Sc2Replays(config=checked.name, data_dir=data_dir)
    builder.recorded_output = recorded_output
    with tempfile.TemporaryDirectory(prefix="sc2_replays_tfds_") as downloads, \
            contextlib.redirect_stdout(io.StringIO()):  # "Downloading and preparing"
        builder.download_and_prepare(
            download_dir=downloads,   # nothing is downloaded: no empty folders left
            download_config=tfds.download.DownloadConfig(
                manual_dir=pipeline_output, try_download_gcs=False,
                # metadata only: a former preparation of this config is replaced
                download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS))
    return builder


def prepare_in_output(pipeline_output: str, recorded_output: str | None = None
                      ) -> dict[str, str]:
    """Prepares the dataset in ``pipeline_output/tfds``; returns where it is,
    relative to the output (for the manifest).  The shards are named relative
    to it, so the output may be renamed afterwards (``recorded_output``: its
    final path)."""
    from etils import epath
    tfds_dir = RunLayout(pipeline_output).tfds_dir
    if epath.Path(tfds_dir).exists():      # an earlier run's metadata: never reused
        epath.Path(tfds_dir).rmtree()
    builder = prepare(pipeline_output, tfds_dir, recorded_output=recorded_output)
    config = builder.builder_config.name
    return {"data_dir": "tfds", "name": builder.info.full_name,
            "builder_dir": f"tfds/{builder.name}/{config}/{builder.version}",
            "load": f"tfds.load('sc2_replays/{config}', data_dir='<output>/tfds')"}


def main(argv: list[str] | None = None) -> int:
    """The command line: 0, or 2 with one line on stderr."""
    verbose = cli_flags.quiet_unless_verbose(argv)
    parser = cli_flags.Parser(prog="sc2-tfds-build", description=__doc__.split("\n\n")[0])
    cli_flags.add_data(parser)
    parser.add_argument("--out", required=True,
                        help="the TFDS data directory to write (tfds.load's data_dir)")
    parser.add_argument("--config", default=None,
                        help="builder config, e.g. events_64 (default: from the manifest)")
    parser.add_argument("--no_verify", action="store_true",
                        help="skip reading every shard through (CRCs, record counts)")
    cli_flags.add_verbose(parser)
    args = parser.parse_args(argv)
    local = "://" not in args.data
    output = os.path.abspath(args.data) if local else args.data
    data_dir = os.path.abspath(args.out) if "://" not in args.out else args.out
    with cli_flags.native_stderr_hidden(not verbose):
        import tensorflow_datasets  # noqa: F401 -- its start-up lines hidden
    try:
        builder = prepare(output, data_dir, args.config, verify=not args.no_verify)
    except RunOutputError as exc:
        if args.verbose:
            raise
        print(f"sc2-tfds-build: error: {exc}", file=sys.stderr)
        return 2
    info = builder.info
    print(f"{info.full_name} prepared in {builder.data_dir}")
    for name, split in sorted(info.splits.items()):
        print(f"  {name}: {split.num_examples} examples, {split.num_shards} shards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
