"""Replays to a sharded, split, documented training set, with Apache Beam.

    python beam_runner.py --replays DIR_OR_GLOB [...] --out DIR \\
        [--engine events|sc2] [--formats parquet,tfrecord] [filter flags] \\
        [--step_mul 8] [--resolution 64] [--no_fog] [--scan_only] \\
        [--splits train=0.9,validation=0.05,test=0.05] [--max_bytes N] \\
        [--max_game_loops N] [--decode_timeout_s S] [--max_samples_per_shard N] \\
        [--max_member_bytes N] [--max_inflated_bytes N] [--memory_limit_mb MB] \\
        [--scan_timeout_s S] [--tfrecord_gzip_level 1-9] [--max_error_fraction F] \\
        [--overwrite] [--verbose] \\
        [any Beam pipeline option, e.g. --runner DataflowRunner --project P ...]

Runs locally on Beam's FnApiRunner over all local cores by default
(``--direct_num_workers=0 --direct_running_mode=multi_threading``: the heavy
work is in one sampling child process per worker thread), or on
Dataflow or Dask.  Output layout, guarantees and Dataflow set-up: docs/pipeline.md.

Exit status: 0 when the run made what it was asked for; 1 with one line on
stderr when it is refused before it starts (bad inputs, no game for
``--engine sc2``, output in use), aborted (the output's disk failed), or
failed: it sampled nothing, or more than ``--max_error_fraction`` of its
input files are errors.  A failed run's output is still published -- the
index, errors, manifest and card say why -- and its manifest's ``outcome``
marks it failed.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import threading
import time
import traceback

from pipeline.index import splits as splits_lib
from pipeline.index.filters import add_filter_arguments, config_from_args
from pipeline.job import transforms
from pipeline.job.run_progress import RUN
from pipeline.job.worker import EnvironmentFailure
from pipeline.replay.bounded_process import close_spares
from pipeline.output import card as card_lib
from pipeline.output import manifest as manifest_lib
from pipeline.output import run_directory, writers
from pipeline.output.run_directory import OutputDirError
from pipeline import cli_flags, filesystem
from pipeline.replay import limits as limits_lib
from pipeline.replay.storage import NoReplaysMatchedError, expand_inputs
from pipeline.sources.registry import DEFAULT_SOURCE, SOURCES, source_spec
from schemas.run_output import Manifest, RunLayout

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
#: Worker threads, not processes: decoding, sampling and shard writing all run
#: in a child process per worker (pipeline/job/worker.py), so threads use every
#: core, and no SDK worker process has to start (~1.2 s) or exchange elements
#: with the launcher over gRPC.
LOCAL_DEFAULTS = ["--direct_num_workers=0", "--direct_running_mode=multi_threading"]
#: Runner names that mean "this machine".  Beam's DirectRunner first tries to
#: download and start its Prism runner (a separate Go binary, which ignores
#: --direct_num_workers) and falls back to the FnApiRunner when it cannot; the
#: local runner is named explicitly so that a run does not depend on network
#: access, and the work is spread as :mod:`pipeline.job.balance` expects.
LOCAL_RUNNER = "FnApiRunner"
LOCAL_NAMES = (None, "DirectRunner", "direct", LOCAL_RUNNER)
DASK_RUNNER = "pipeline.job.dask_runner.DaskRunner"
DASK_NAMES = ("DaskRunner", "dask", DASK_RUNNER)


class RunRefused(Exception):
    """The run cannot start: its inputs name no replay, or ``--engine sc2``
    has no game to start.  One line; nothing is written."""


class RunFailed(Exception):
    """The run finished and its output is published, but it did not make what
    it was asked for (``manifest.outcome``); the message is its one line."""

    def __init__(self, manifest: Manifest):
        super().__init__(manifest.outcome.reason)
        self.manifest = manifest


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


def parser() -> "cli_flags.Parser":
    """The command line's own flags (Beam's options are checked apart)."""
    d = transforms.RunConfig    # the defaults: its fields' (one definition)
    parser = cli_flags.Parser(prog="sc2-pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", nargs="+", required=True,
                        help="replay files, directories (recursive) or globs; local or gs://")
    parser.add_argument("--out", required=True,
                        help="the run directory to write (local or gs://); it holds one run")
    parser.add_argument("--engine", choices=sorted(SOURCES), default=DEFAULT_SOURCE,
                        help="observation source: engine-free (events) or the game (sc2)")
    parser.add_argument("--formats", default=",".join(d.formats),
                        help="comma-separated subset of: " + ",".join(writers.FORMATS))
    parser.add_argument("--step_mul", type=int, default=d.step_mul,
                        help="game loops per sample")
    parser.add_argument("--resolution", type=int, default=d.resolution,
                        help="screen and minimap resolution (pixels per side)")
    parser.add_argument("--no_fog", action="store_true",
                        help="engine-free source: show enemy units outside vision")
    parser.add_argument("--scan_only", action="store_true",
                        help="write only the index, errors, manifest and card (no samples, "
                             "by design: not a failure)")
    parser.add_argument("--splits", default=",".join(f"{s}={f:g}" for s, f in d.fractions),
                        help="split=fraction pairs; each replay goes to one split, chosen "
                             "by a hash of its id")
    parser.add_argument("--max_game_loops", type=int, default=d.max_game_loops,
                        help="longer games become 'too_long' errors (2 h)")
    limits_lib.add_arguments(parser)    # --max_bytes, --decode_timeout_s, memory...
    parser.add_argument("--max_samples_per_shard", type=int, default=d.max_samples_per_shard,
                        help="a shard holding more samples is closed and the next one "
                             "started")
    parser.add_argument("--tfrecord_gzip_level", type=int, choices=writers.TFRECORD_GZIP_LEVELS,
                        default=d.tfrecord_gzip_level,
                        help="gzip level of the TFRecord shards (zlib-ng): 3 is "
                             "fast, 6 makes files ~20%% smaller for ~1.6x the compression CPU")
    parser.add_argument("--max_error_fraction", type=_fraction, default=None,
                        help="fail the run (exit 1, output still written) when more than "
                             "this fraction of the input files are errors; default: fail "
                             "only when nothing was sampled")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier run in a non-empty --out (the new run "
                             "is written beside it and swapped in at the end)")
    parser.add_argument("--progress_every_s", type=float, default=10.0,
                        help="seconds between progress lines when stderr is not a terminal "
                             "(on a terminal the line is updated in place)")
    cli_flags.add_verbose(parser)
    add_filter_arguments(parser)
    return parser


def beam_option_names() -> set[str]:
    """Every flag Beam's pipeline options accept (those of this project's Dask
    runner too, when dask is installed): what the command passes through."""
    from apache_beam.options import pipeline_options as po
    try:
        import pipeline.job.dask_runner  # noqa: F401 -- registers --dask_* options
    except ImportError:
        pass
    names: set[str] = set()
    seen: set[type] = set()
    pending = list(po.PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        collector = po._BeamArgumentParser(add_help=False, conflict_handler="resolve")
        try:
            cls._add_argparse_args(collector)
        except (argparse.ArgumentError, TypeError, ValueError):
            continue
        names.update(s for action in collector._actions for s in action.option_strings)
    return names


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(this command's flags, the Beam options to pass through).  A flag that
    is neither is refused in one line naming the closest valid flag: Beam's
    own parser would drop it silently."""
    p = parser()
    args, beam_args = p.parse_known_args(argv)
    flags = [a for a in beam_args if a.startswith("-")]
    if flags:
        p.refuse_unknown(flags, set(p.option_names()) | beam_option_names())
    return args, beam_args


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
    output = args.out if "://" in args.out else os.path.abspath(args.out)
    try:
        limits = limits_lib.from_args(args)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    return transforms.RunConfig(
        output_dir=output,
        spec=source_spec(args.engine, step_mul=args.step_mul, fog=not args.no_fog),
        source_name=args.engine, resolution=args.resolution, step_mul=args.step_mul,
        fog=not args.no_fog, formats=formats, fractions=tuple(fractions.items()),
        filter_config=config_from_args(args), max_bytes=limits.max_bytes,
        max_member_bytes=limits.max_member_bytes, max_inflated_bytes=limits.max_inflated_bytes,
        memory_limit_mb=limits.memory_limit_mb, scan_timeout_s=limits.scan_timeout_s,
        max_game_loops=args.max_game_loops, decode_timeout_s=limits.decode_timeout_s,
        max_samples_per_shard=args.max_samples_per_shard, scan_only=args.scan_only,
        tfrecord_gzip_level=args.tfrecord_gzip_level)


def pipeline_options(beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
    args = list(beam_args)
    runner = _flag_value(args, "--runner")
    if runner in LOCAL_NAMES:
        args = [a for a in args if a not in ("--runner", runner, f"--runner={runner}")]
        args.append("--runner=" + LOCAL_RUNNER)
        defaults = list(LOCAL_DEFAULTS)
        if _flag_value(args, "--direct_num_workers") == "1":
            # One worker gains nothing from a worker process: the bundles run
            # in this one (the sampling child still runs beside it), which
            # saves the SDK worker's start-up and its gRPC data plane.
            defaults = ["--direct_running_mode=in_memory"]
        for default in defaults:
            flag = default.split("=")[0]
            if _flag_value(args, flag) is None:
                args.append(default)
    if runner in DASK_NAMES:
        # Beam knows its Dask runner only by its full name; importing it also
        # registers the --dask_* options (--dask_client_address, ...).
        try:
            import dask.distributed  # noqa: F401
            import pipeline.job.dask_runner  # noqa: F401
        except ImportError as exc:
            raise SystemExit(f"--runner {runner}: dask is not installed ({exc.name}); "
                             f"pip install '.[dask]'") from exc
        args = [a for a in args if a not in ("--runner", runner, "--runner=" + runner)]
        args.append("--runner=" + DASK_RUNNER)
    if runner in ("DataflowRunner", "dataflow"):
        # Workers install this project from its own packaging (the engine-free
        # source needs nothing else); the headless source uses the Dockerfile's
        # image instead (--sdk_container_image), which already holds it.
        if not any(a.startswith(("--setup_file", "--sdk_container_image")) for a in args):
            args.append("--setup_file=" + os.path.join(REPO_ROOT, "pyproject.toml"))
    options = PipelineOptions(args)
    options.view_as(SetupOptions).save_main_session = False
    return options


def local_workers(options) -> int:
    """How many worker processes (or threads) a local run deals each step's
    input to, in fixed shares; 0 for a runner that balances work itself."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    if options.view_as(StandardOptions).runner != LOCAL_RUNNER:
        return 0
    workers = options.view_as(DirectOptions).direct_num_workers
    return workers if workers and workers > 0 else (os.cpu_count() or 1)


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``--flag=V`` or ``--flag V`` in ``args``; None if absent."""
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag:
            return args[i + 1] if i + 1 < len(args) else ""
    return None


def _resolve_local(patterns: list[str]) -> list[str]:
    return [p if "://" in p else os.path.abspath(p) for p in patterns]


def count_inputs(patterns: list[str]) -> int:
    """How many replay files ``patterns`` name; :class:`RunRefused` when
    one of them names none (a directory is searched recursively)."""
    try:
        return len(expand_inputs(patterns))
    except NoReplaysMatchedError as exc:
        raise RunRefused(f"--replays: {exc} (directories are searched recursively for "
                         "*.SC2Replay)") from exc


def check_engine(engine: str, beam_args: list[str]) -> None:
    """``--engine sc2`` on this machine: :class:`RunRefused` unless a game
    build that can run is installed, before any replay is read.  Remote
    workers (Dataflow, Dask) carry their own game (the container image), so
    the launcher's is not checked for them."""
    if engine != "sc2" or _flag_value(beam_args, "--runner") not in LOCAL_NAMES:
        return
    from pipeline.sources.sc2 import versions   # no pysc2 import: only files are looked at
    try:
        versions.check_game_installed()
    except versions.GameNotInstalledError as exc:
        raise RunRefused(f"--engine sc2: {exc}") from exc


def create_pipeline(argv: list[str] | None = None, output_dir: str | None = None,
                    n_inputs: int | None = None):
    """Parses ``argv`` and builds the job; returns ``(pipeline, config)``.

    ``output_dir`` (the run's staging directory) replaces ``--out`` as the
    place the job writes; ``n_inputs``, when the caller has counted the
    inputs already, saves listing them again.  Nothing runs until
    ``pipeline.run()``.
    """
    import apache_beam as beam
    args, beam_args = parse_args(argv)
    config = make_config(args)
    if output_dir is not None:
        config = dataclasses.replace(config, output_dir=output_dir)
    patterns = _resolve_local(args.replays)
    if n_inputs is None:
        n_inputs = count_inputs(patterns)
    transforms.progress_to_stderr()          # every progress line in one format
    transforms.progress_log.info("%d input files", n_inputs)
    options = pipeline_options(beam_args)
    config = dataclasses.replace(config, local_workers=local_workers(options))
    p = beam.Pipeline(options=options)
    transforms.build_pipeline(p, patterns, config, time.time())
    return p, config


def run(argv: list[str] | None = None) -> Manifest:
    """Runs the pipeline to completion; returns the manifest (with timing).

    The job writes into a staging directory beside ``--out`` and is
    swapped in at the end (:mod:`pipeline.output.run_directory`): ``--out``
    holds exactly one run.  Raises, before anything is written,
    :class:`RunRefused` (no replay among the inputs; ``--engine sc2`` with no
    game installed) and ``run_directory.OutputDirError`` (output in use, not
    empty without ``--overwrite``); :class:`~pipeline.job.worker.EnvironmentFailure`
    when the output cannot be written (``--out`` is then left as it was);
    :class:`RunFailed` after publishing a run that sampled nothing or has
    more errors than ``--max_error_fraction``.
    """
    started = time.time()
    args, beam_args = parse_args(argv)
    final = make_config(args).output_dir          # flags checked before any file is touched
    n_inputs = count_inputs(_resolve_local(args.replays))
    check_engine(args.engine, beam_args)
    with run_directory.claim(final, args.overwrite) as staging:
        p, config = create_pipeline(argv, output_dir=staging, n_inputs=n_inputs)
        RUN.begin(n_inputs, args.progress_every_s)
        try:
            result = p.run()
            result.wait_until_finish()
        except Exception as exc:  # noqa: BLE001 -- Beam wraps (or retypes) a worker's failure
            failure = EnvironmentFailure.find(f"{exc}\n{traceback.format_exc()}")
            if failure is None:
                raise
            raise failure from exc
        finally:
            RUN.finish()
            # children the runner's threads left in this process's pool
            close_spares()
        try:
            manifest = _finish(config, staging, final, result, time.time() - started,
                               list(argv if argv is not None else sys.argv[1:]),
                               args.max_error_fraction)
            # A failed run is published too: its index, errors and card are
            # the evidence its one line points to (docs/pipeline.md).
            run_directory.publish(staging, final)
        except OSError as exc:
            raise EnvironmentFailure.of(exc, staging) from exc
    if manifest.outcome.failed:
        raise RunFailed(manifest)
    return manifest


def _finish(config: transforms.RunConfig, staging: str, final: str, result,
            wall: float, argv: list[str], max_error_fraction: float | None = None
            ) -> Manifest:
    """Timing, counters, provenance, the outcome, TFDS metadata, the dataset
    card and cleanup, in the staging directory; the manifest names
    ``final``, where the run will be."""
    manifest = Manifest.load(staging)
    manifest_lib.relocate(manifest, staging, final)
    manifest_lib.add_timing(manifest, wall)
    manifest.metrics = beam_counters(result)
    manifest.provenance = provenance(argv)
    manifest.outcome = manifest_lib.judge(manifest, max_error_fraction)
    manifest.save(staging)
    if ("tfrecord" in config.formats and not config.scan_only
            and manifest.counts.samples_total):
        # TFDS metadata over the TFRecord shards, in DIR/tfds (no second copy);
        # imported here: it loads TensorFlow, which the launcher needs nowhere else.
        from datasets.sc2_replays import build as tfds_build
        manifest.tfds = tfds_build.prepare_in_output(staging, recorded_output=final)
        manifest.save(staging)
    card_lib.write_card(staging, manifest)
    _cleanup(staging)
    return manifest


def provenance(argv: list[str]) -> dict:
    """How the run was made: the command line and the code's version."""
    import importlib.metadata
    import subprocess
    try:
        version = importlib.metadata.version("sc2-replay-pipeline")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    try:
        commit = subprocess.run(["git", "-C", REPO_ROOT, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"command": ["beam_runner.py", *argv], "package_version": version,
            "git_commit": commit or "unknown"}


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
    tmp = RunLayout(output_dir).tmp_dir
    if filesystem.exists(tmp):
        filesystem.delete([tmp])


def quiet_libraries() -> None:
    """Beam's internal worker warnings ("No semi_persistent_directory found",
    "Discarding unparseable args", relayed from every worker), a failed
    bundle's wall of tracebacks (reported below in one line) and TensorFlow's
    C++ log lines say nothing a user needs: hidden unless --verbose."""
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _WithoutWorkerTracebacks:
    """``sys.stderr`` less the tracebacks Beam's SDK harness prints itself
    (``print(traceback, file=sys.stderr)`` in ``sdk_worker._execute``, besides
    logging them) when a bundle fails: with the workers as this process's
    threads they would land on the terminal ahead of the one-line reason
    that :func:`main` prints.  Everything else passes through."""

    MARK = "Traceback (most recent call last):"

    def __init__(self, stream):
        self._stream = stream
        self._dropped_last = False

    def write(self, text: str) -> int:
        if self.MARK in text and threading.current_thread() is not threading.main_thread():
            self._dropped_last = True
            return len(text)
        if self._dropped_last and text == "\n":   # print()'s line end after it
            self._dropped_last = False
            return len(text)
        self._dropped_last = False
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """The command line: 0, or 1 with one line on stderr when the run is
    refused, aborted or failed (``--verbose``: Beam's logs and, for a refused
    or aborted run, the traceback too).  A failed run prints its summary
    first: the one line is the last."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in argv
    # force: each call writes to the sys.stderr of its time (a second call in
    # one process, as in tests, must not log into the first call's stream)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", force=True)
    logging.getLogger("sc2.progress").setLevel(logging.INFO)
    if not verbose:
        quiet_libraries()
        sys.stderr = _WithoutWorkerTracebacks(sys.stderr)
    try:
        manifest = run(argv)
    except (OutputDirError, RunRefused, EnvironmentFailure) as exc:
        if verbose:
            raise
        what = ("aborted, --out unchanged" if isinstance(exc, EnvironmentFailure)
                else "refused")
        print(f"sc2-pipeline: run {what}: {exc}", file=sys.stderr)
        return 1
    except RunFailed as exc:
        print(manifest_lib.summary(exc.manifest), flush=True)
        print(f"sc2-pipeline: run failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if isinstance(sys.stderr, _WithoutWorkerTracebacks):
            sys.stderr = sys.stderr._stream
    print(manifest_lib.summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
