"""Replays to a sharded, split, documented training set, with Apache Beam.

    python beam_runner.py --replays DIR_OR_GLOB [...] --output DIR \\
        [--engine events|sc2] [--formats parquet,tfrecord] [filter flags] \\
        [--step_mul 8] [--resolution 64] [--no_fog] [--scan_only] \\
        [--splits train=0.9,validation=0.05,test=0.05] [--max_bytes N] \\
        [--max_game_loops N] [--decode_timeout_s S] [--max_samples_per_shard N] \\
        [any Beam pipeline option, e.g. --runner DataflowRunner --project P ...]

Runs locally on the DirectRunner over all local cores by default
(``--direct_num_workers=0 --direct_running_mode=multi_processing``), or on
Dataflow.  Output layout, guarantees and Dataflow set-up: docs/pipeline.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from pipeline.index import splits as splits_lib
from pipeline.index.filters import add_filter_arguments, config_from_args
from pipeline.job import transforms
from pipeline.output import manifest as manifest_lib
from pipeline.output import writers
from pipeline.replay.storage import NoReplaysMatchedError, expand_inputs
from pipeline.sources.registry import DEFAULT_SOURCE, SOURCES, source_spec

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
LOCAL_DEFAULTS = ["--direct_num_workers=0", "--direct_running_mode=multi_processing"]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    d = transforms.RunConfig    # the defaults: its fields' (one definition)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replays", nargs="+", required=True,
                        help="replay files, directories (recursive) or globs; local or gs://")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--engine", choices=sorted(SOURCES), default=DEFAULT_SOURCE,
                        help="observation source: engine-free (events) or the game (sc2)")
    parser.add_argument("--formats", default=",".join(d.formats),
                        help="comma-separated subset of: " + ",".join(writers.FORMATS))
    parser.add_argument("--step_mul", type=int, default=d.step_mul,
                        help="game loops per sample")
    parser.add_argument("--resolution", type=int, default=d.resolution,
                        help="screen and minimap resolution")
    parser.add_argument("--no_fog", action="store_true",
                        help="engine-free source: show enemy units outside vision")
    parser.add_argument("--scan_only", action="store_true",
                        help="write only the index, errors and manifest")
    parser.add_argument("--splits", default=",".join(f"{s}={f:g}" for s, f in d.fractions))
    parser.add_argument("--max_bytes", type=int, default=d.max_bytes,
                        help="larger replay files become 'too_large' errors")
    parser.add_argument("--max_game_loops", type=int, default=d.max_game_loops,
                        help="longer games become 'too_long' errors (default 2 h)")
    parser.add_argument("--decode_timeout_s", type=float, default=d.decode_timeout_s,
                        help="per-replay limit for decoding and sampling, enforced by "
                             "killing the sampling child process; 0 = no limit, in-process")
    parser.add_argument("--max_samples_per_shard", type=int, default=d.max_samples_per_shard)
    add_filter_arguments(parser)
    return parser.parse_known_args(argv)


def make_config(args: argparse.Namespace) -> transforms.RunConfig:
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    unknown = set(formats) - set(writers.FORMATS)
    if unknown or not formats:
        raise SystemExit(f"--formats: unknown or empty {sorted(unknown)}; "
                         f"choose from {writers.FORMATS}")
    for name, value in (("--step_mul", args.step_mul), ("--resolution", args.resolution),
                        ("--max_samples_per_shard", args.max_samples_per_shard)):
        if value < 1:
            raise SystemExit(f"{name} must be >= 1")
    try:
        fractions = splits_lib.parse_splits(args.splits)
    except splits_lib.SplitConfigError as exc:
        raise SystemExit(f"--splits: {exc}") from exc
    output = args.output if "://" in args.output else os.path.abspath(args.output)
    return transforms.RunConfig(
        output_dir=output,
        spec=source_spec(args.engine, step_mul=args.step_mul, fog=not args.no_fog),
        source_name=args.engine, resolution=args.resolution, step_mul=args.step_mul,
        fog=not args.no_fog, formats=formats, fractions=tuple(fractions.items()),
        filter_config=config_from_args(args), max_bytes=args.max_bytes,
        max_game_loops=args.max_game_loops, decode_timeout_s=args.decode_timeout_s,
        max_samples_per_shard=args.max_samples_per_shard, scan_only=args.scan_only)


def pipeline_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
    args = list(beam_args)
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in args:
        runner = args[args.index("--runner") + 1]
    if runner in (None, "DirectRunner", "direct"):
        for default in LOCAL_DEFAULTS:
            flag = default.split("=")[0]
            if not any(a == flag or a.startswith(flag + "=") for a in args):
                args.append(default)
    if runner in ("DataflowRunner", "dataflow"):
        # Workers install this project from its own packaging (the engine-free
        # source needs nothing else); the headless source uses the Dockerfile's
        # image instead (--sdk_container_image), which already holds it.
        if not any(a.startswith(("--setup_file", "--sdk_container_image")) for a in args):
            args.append("--setup_file=" + os.path.join(REPO_ROOT, "pyproject.toml"))
    options = PipelineOptions(args)
    options.view_as(SetupOptions).save_main_session = False
    return options


def _resolve_local(patterns: list[str]) -> list[str]:
    return [p if "://" in p else os.path.abspath(p) for p in patterns]


def create_pipeline(argv: list[str] | None = None):
    """Parses ``argv`` and builds the job; returns ``(pipeline, config)``.

    Nothing runs until ``pipeline.run()``.
    """
    import apache_beam as beam
    args, beam_args = parse_args(argv)
    config = make_config(args)
    patterns = _resolve_local(args.replays)
    try:
        n_inputs = len(expand_inputs(patterns))
    except NoReplaysMatchedError as exc:
        raise SystemExit(f"--replays: {exc}") from exc
    logging.getLogger("sc2.progress").info("%d input files", n_inputs)
    p = beam.Pipeline(options=pipeline_options(beam_args))
    transforms.build_pipeline(p, patterns, config, time.time())
    return p, config


def run(argv: list[str] | None = None) -> dict:
    """Runs the pipeline to completion; returns the manifest (with timing)."""
    started = time.time()
    p, config = create_pipeline(argv)
    result = p.run()
    result.wait_until_finish()
    wall = time.time() - started
    manifest = manifest_lib.read_manifest(config.output_dir)
    manifest_lib.add_timing(manifest, wall)
    manifest["metrics"] = beam_counters(result)
    manifest_lib.write_manifest(config.output_dir, manifest)
    _cleanup(config.output_dir)
    return manifest


def beam_counters(result) -> dict[str, int]:
    """The job's ``sc2`` Beam counters (committed values where supported)."""
    from apache_beam.metrics.metric import MetricsFilter
    try:
        counters = result.metrics().query(
            MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]
    except (NotImplementedError, AttributeError, KeyError):
        return {}
    out: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def _cleanup(output_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems
    tmp = FileSystems.join(output_dir, "_tmp")
    if FileSystems.exists(tmp):
        FileSystems.delete([tmp])


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("sc2.progress").setLevel(logging.INFO)
    manifest = run(sys.argv[1:])
    print(manifest_lib.summary(manifest))


if __name__ == "__main__":
    main()
