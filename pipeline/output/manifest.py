"""The dataset's manifest: what was run, on what, and what came out.

``DIR/manifest.json`` records the configuration, package versions, the sample
schema, the observation source (and the layers it cannot fill), fog, step_mul,
resolution, filters and splits; counts of inputs, replays by status, errors by
stage and category, filtered replays by reason, samples and shards per split
and format; label statistics (no-op fraction, most frequent target functions
with their pysc2 names, mean mask size, rate of targets the source reported
unavailable; the fractions of windows whose target is unknown and of windows
with an unknown argument, with unknown arguments counted per argument type,
overall and by replay kind, tracker events or not: the engine-free source
knows less without them); the replays sampled degraded (``degraded``: without tracker events that no
bundled protocol decodes, with the reason; counted in
``counts["degraded_replays"]``); sampled replays per split by matchup and
game version; each split asked for that holds no samples, with its cause
(:func:`empty_splits`); and, added by the launcher once the job has finished,
wall time and throughput and the run's outcome (:func:`judge`: a run that
sampled nothing, or has more errors than ``--max_error_fraction`` of its
inputs, failed; :func:`top_causes` names why in one line).  The TFDS builder
reads its provenance from here; the dataset card (``pipeline.output.card``)
is rendered from it.

``DIR/errors/errors.parquet`` holds one record per failed replay (the layout
of :func:`pipeline.index.scan.error_row`).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.metadata
import time
from typing import Any, Iterable, Mapping

from pipeline.index import filters, scan
from pipeline.output import writers
from pipeline.text import terminal_safe
from pipeline.pysc2_compat import pysc2_modules
from pipeline.sources.registry import UnknownSourceError
from schemas import layers
from schemas.run_output import (Counts, Manifest, Outcome, RunLayout, SchemaInfo,
                                 ShardFile, SourceInfo, shard_relpath)
from schemas.sample import SPLITS

TOP_FUNCTIONS = 20
PACKAGES = ("sc2-replay-pipeline", "apache-beam", "tensorflow-cpu", "tensorflow-datasets",
            "pyarrow", "numpy", "protobuf", "s2protocol", "mpyq", "pysc2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplayResult(writers.ReplayBatch):
    """What sampling one replay produced: its batch, and the counts the
    manifest's label statistics sum over replays."""
    path: str
    players: Mapping[str, int]      # player id -> samples
    noop: int                       # samples whose target is no_op
    mask_sum: int                   # available actions, summed over samples
    target_unavailable: int         # samples with target_was_unavailable
    functions: Mapping[str, int]    # target function id -> samples
    # windows whose target is unknown (function_id == schemas.layers.UNKNOWN)
    target_unknown: int = 0
    unknown_argument_windows: int = 0   # windows with at least one unknown argument
    unknown_arguments: Mapping[str, int] = dataclasses.field(
        default_factory=dict)           # argument field -> windows where it is unknown
    has_tracker_events: bool = False    # the samples were made with tracker events
    # Why a replay whose archive holds tracker events was sampled without
    # them (a documented limitation, never damage); "" when it was not.
    tracker_events_degraded: str = ""


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@functools.lru_cache(maxsize=1)
def _function_names() -> dict[int, str]:
    return {int(f.id): f.name for f in pysc2_modules().actions.FUNCTIONS}


def function_name(function_id: int) -> str:
    if function_id == layers.UNKNOWN:
        return "target_unknown"
    return _function_names().get(int(function_id), f"unknown_{function_id}")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def unknown_statistics(results: Iterable[ReplayResult]) -> dict[str, Any]:
    """Windows whose target is unknown (``function_id`` is
    ``schemas.layers.UNKNOWN``) and windows with an unknown argument, as
    fractions of the samples, with the unknown arguments per argument type."""
    n = target_unknown = argument_windows = 0
    per_type: collections.Counter = collections.Counter()
    for r in results:
        n += r.num_samples
        target_unknown += r.target_unknown
        argument_windows += r.unknown_argument_windows
        per_type.update(r.unknown_arguments)
    return {
        "samples": n,
        "target_unknown_fraction": target_unknown / n if n else 0.0,
        "unknown_argument_fraction": argument_windows / n if n else 0.0,
        "unknown_arguments_by_type": dict(sorted(per_type.items())),
    }


def label_statistics(results: Iterable[ReplayResult]) -> dict[str, Any]:
    """No-op fraction, top target functions, mean mask size over sampled
    replays; unknown targets and arguments overall and by replay kind."""
    results = list(results)
    functions: collections.Counter = collections.Counter()
    n = noop = mask = unavailable = 0
    for r in results:
        n += r.num_samples
        noop += r.noop
        mask += r.mask_sum
        unavailable += r.target_unavailable
        functions.update({int(k): v for k, v in r.functions.items()})
    top = sorted(functions.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FUNCTIONS]
    return {
        "samples": n,
        "noop_fraction": noop / n if n else 0.0,
        "mean_mask_size": mask / n if n else 0.0,
        "target_unavailable_fraction": unavailable / n if n else 0.0,
        "distinct_target_functions": len([f for f in functions if f >= 0]),
        "unknown": {
            **unknown_statistics(results),
            "by_replay_kind": {
                kind: unknown_statistics(r for r in results
                                         if r.has_tracker_events == tracker)
                for kind, tracker in (("with_tracker_events", True),
                                      ("without_tracker_events", False))},
        },
        "top_target_functions": [
            {"function_id": fid, "name": function_name(fid), "count": c,
             "fraction": c / n} for fid, c in top],
    }


def build_manifest(config, *, index_records, errors, duplicates,
                   results: Iterable[ReplayResult], shards, started: float) -> Manifest:
    """The run's :class:`~schemas.run_output.Manifest` (without the
    launcher's timing, counters and provenance)."""
    schema = config.schema
    factory, source_unavailable = _source_facts(config)
    status = collections.Counter()
    filter_reasons = collections.Counter()
    examples: dict[str, dict[str, str]] = {"errors": {}, "filtered": {}}
    for rec in sorted(index_records, key=lambda r: r["replay"]["path"]):
        reason = rec["replay"]["status"]
        if reason != "ok":
            filter_reasons[reason] += 1
            status["filtered"] += 1
            examples["filtered"].setdefault(reason, rec["replay"]["path"])
    sampled_ids = {r.replay_id for r in results}
    status["sampled"] = len(sampled_ids)
    status["error"] = len(errors)
    status["duplicate"] = len(duplicates)
    error_reasons = collections.Counter(f"{e['stage']}:{e['category']}" for e in errors)
    for e in sorted(errors, key=lambda e: e["path"]):
        examples["errors"].setdefault(f"{e['stage']}:{e['category']}", e["path"])
    samples_by_split: dict[str, dict[str, int]] = {}
    shard_files: dict[str, dict[str, list[ShardFile]]] = {}
    bytes_by_format: collections.Counter = collections.Counter()
    for info in sorted(shards, key=lambda s: (s["split"], s["index"])):
        per = samples_by_split.setdefault(info["split"], {f: 0 for f in config.formats})
        for fmt in info["files"]:
            per[fmt] += info["num_samples"]
            size = int(info.get("bytes", {}).get(fmt, 0))
            shard_files.setdefault(fmt, {}).setdefault(info["split"], []).append(ShardFile(
                shard_relpath(fmt, info["split"], info["index"], info["count"]),
                info["num_samples"], size))
            bytes_by_format[fmt] += size
    counted = collections.Counter()
    replays_by_split = collections.Counter()
    for r in results:
        counted[r.split] += r.num_samples
        replays_by_split[r.split] += 1
    total = sum(counted.values())
    degraded = sorted(({"replay_id": r.replay_id, "path": r.path,
                        "kind": "no_tracker_events",
                        "reason": r.tracker_events_degraded}
                       for r in results if r.tracker_events_degraded),
                      key=lambda d: d["replay_id"])
    inputs = (sum(1 for _ in index_records) + len(duplicates)
              + len([e for e in errors if e["stage"] in ("scan", "read")]))
    matchups, builds = _sampled_by_split(index_records, results)
    return Manifest(
        created_unix=started,
        output_dir=config.output_dir,
        config=_jsonable({k: v for k, v in vars(config).items()
                          if k not in ("filter_config", "spec")}),
        packages=package_versions(),
        schema=SchemaInfo(repr(schema), len(schema.fields), [f.name for f in schema.fields]),
        source=SourceInfo(name=config.source_name, factory=factory,
                          options=_jsonable(dict(config.spec.options)),
                          unavailable_layers=source_unavailable, fog=config.fog,
                          step_mul=config.step_mul, resolution=config.resolution),
        filters=_jsonable(config.filter_config),
        splits=dict(config.fractions),
        counts=Counts(
            input_files=inputs,
            replays_by_status=dict(sorted(status.items())),
            filter_reasons=dict(sorted(filter_reasons.items())),
            error_reasons=dict(sorted(error_reasons.items())),
            replays_by_split=dict(sorted(replays_by_split.items())),
            samples_counted_by_split=dict(sorted(counted.items())),
            samples_by_split_and_format=samples_by_split,
            shards_by_split={s: len(v) for s, v in
                             next(iter(shard_files.values()), {}).items()},
            samples_total=total,
            shard_bytes_by_format=dict(sorted(bytes_by_format.items())),
            shard_bytes_per_sample={fmt: round(b / total, 1) if total else 0.0
                                    for fmt, b in sorted(bytes_by_format.items())},
            degraded_replays=dict(sorted(collections.Counter(
                d["kind"] for d in degraded).items())),
            matchups_by_split=matchups, builds_by_split=builds),
        labels=label_statistics(results),
        duplicates=sorted(({"path": d["replay"]["path"],
                            "replay_id": d["replay"]["replay_id"],
                            "canonical_path": d["canonical_path"]}
                           for d in duplicates), key=lambda d: d["path"]),
        shards=shard_files,
        # Replays sampled with less than their archive holds, and why (only a
        # documented limitation degrades; damage is an error record).
        degraded=degraded,
        examples=examples,
        empty_splits={} if config.scan_only else empty_splits(
            dict(config.fractions), index_records, errors, counted),
    )


def _sampled_by_split(index_records, results: Iterable[ReplayResult]
                      ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Sampled replays per split by matchup and by game version."""
    split_of = {r.replay_id: r.split for r in results}
    matchups: dict[str, collections.Counter] = {}
    builds: dict[str, collections.Counter] = {}
    for rec in index_records:
        split = split_of.get(rec["replay"]["replay_id"])
        if split is None:
            continue
        matchups.setdefault(split, collections.Counter())[
            filters.matchup(rec["players"]) or "other"] += 1
        builds.setdefault(split, collections.Counter())[rec["replay"]["version"]] += 1

    def ordered(by_split):
        return {split: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
                for split, c in sorted(by_split.items())}
    return ordered(matchups), ordered(builds)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def empty_splits(fractions: Mapping[str, float], index_records,
                 errors: Iterable[Mapping[str, Any]],
                 samples_by_split: Mapping[str, int]) -> dict[str, str]:
    """Each split asked for (fraction > 0) that holds no samples, with its
    cause in one line: no replay landed there (too few replays for the
    fraction), or the replays that did failed."""
    kept = [rec for rec in index_records if rec["replay"]["status"] == "ok"]
    assigned = collections.Counter(rec["split"] for rec in kept)
    split_of = {rec["replay"]["replay_id"]: rec["split"] for rec in kept}
    failed = collections.Counter(split_of.get(e["replay_id"]) for e in errors
                                 if e["stage"] == "sample")
    out = {}
    for split in SPLITS:
        fraction = float(fractions.get(split, 0.0))
        if fraction <= 0 or samples_by_split.get(split, 0):
            continue
        if not kept:
            out[split] = "no replay passed the scan and the filters"
        elif not assigned[split]:
            out[split] = (f"{len(kept)} replays at {_percent(fraction)} expect "
                          f"{len(kept) * fraction:.2f}; use --splits with larger fractions "
                          "or more replays")
        elif failed[split] == assigned[split]:
            out[split] = (f"its {assigned[split]} replays all failed when sampled "
                          "(see errors/errors.parquet)")
        else:
            out[split] = (f"{assigned[split]} replays assigned: {failed[split]} failed when "
                          f"sampled, {assigned[split] - failed[split]} gave no samples")
    return out


def _source_facts(config) -> tuple[str, list[str]]:
    """The class that made the samples (``module:name``) and the layers it
    cannot fill."""
    try:
        source = config.spec.build(config.schema)
    except (ImportError, UnknownSourceError) as exc:
        return config.spec.name, [f"<source not importable: {exc}>"]
    cls = type(source)
    return f"{cls.__module__}:{cls.__qualname__}", sorted(source.unavailable_layers())


def relocate(manifest: Manifest, old: str, new: str) -> Manifest:
    """Names ``new`` (where the run is published) instead of ``old`` (the
    staging directory the job wrote); shard paths are relative already."""
    def moved(path: str) -> str:
        return new + path[len(old):] if path == old or path.startswith(old + "/") else path
    manifest.output_dir = moved(manifest.output_dir)
    if "output_dir" in manifest.config:
        manifest.config["output_dir"] = moved(manifest.config["output_dir"])
    return manifest


def write_errors(output_dir: str, errors: Iterable[Mapping[str, Any]]) -> None:
    """All error records in ``DIR/errors/errors.parquet`` (the index's layout)."""
    scan.write_errors(list(errors), RunLayout(output_dir).errors_dir)


def add_timing(manifest: Manifest, wall_s: float) -> Manifest:
    counts = manifest.counts
    replays = counts.replays_by_status.get("sampled", 0)
    manifest.timing = {
        "wall_s": round(wall_s, 3),
        "replays_per_s": replays / wall_s if wall_s > 0 else 0.0,
        "input_files_per_s": counts.input_files / wall_s if wall_s > 0 else 0.0,
        "samples_per_s": counts.samples_total / wall_s if wall_s > 0 else 0.0,
        "finished_unix": time.time(),
    }
    return manifest


#: error and filter categories a failed run's one line names
TOP_CAUSES = 3


def top_causes(manifest: Manifest, kinds: tuple[str, ...] = ("errors", "filtered"),
               limit: int = TOP_CAUSES) -> str:
    """``error sample:source 11 (first: a.SC2Replay); filtered not_1v1 2
    (first: b.SC2Replay)``: the most frequent error and filter categories
    with counts and the first file of each, for one line."""
    c = manifest.counts
    found = [(n, kind, reason) for kind, counts in (("errors", c.error_reasons),
                                                     ("filtered", c.filter_reasons))
             if kind in kinds for reason, n in counts.items()]
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    label = {"errors": "error", "filtered": "filtered"}
    parts = [f"{label[kind]} {reason} {n} (first: "
             f"{terminal_safe(manifest.examples.get(kind, {}).get(reason, '?'))})"
             for n, kind, reason in found[:limit]]
    if len(found) > limit:
        parts.append(f"{len(found) - limit} more categories")
    return "; ".join(parts)


def judge(manifest: Manifest, max_error_fraction: float | None = None) -> Outcome:
    """The run's :class:`~schemas.run_output.Outcome`: failed when it sampled
    nothing (unless ``--scan_only``, which samples nothing by design), or
    when more than ``max_error_fraction`` of its input files are errors."""
    c = manifest.counts
    errors = c.replays_by_status.get("error", 0)
    reason = ""
    if not c.samples_total and not manifest.config.get("scan_only"):
        causes = top_causes(manifest) or (
            f"no errors and nothing filtered; replays by status {c.replays_by_status}")
        reason = f"no samples from {c.input_files} input files: {causes}"
    elif (max_error_fraction is not None and c.input_files
          and errors > max_error_fraction * c.input_files):
        reason = (f"{errors} of {c.input_files} input files are errors "
                  f"({errors / c.input_files:.1%}), over --max_error_fraction "
                  f"{max_error_fraction:g}: {top_causes(manifest, ('errors',))}")
    if reason:   # one line whatever the paths hold (a newline, a terminal escape)
        reason += f"; output kept for inspection: {terminal_safe(manifest.output_dir, 0)}"
    return Outcome(failed=bool(reason), reason=reason,
                   max_error_fraction=max_error_fraction)


def _split_table(c) -> list[str]:
    """The samples per split as an aligned table, one column per format
    (the formats hold the same samples: a column that differs shows it)."""
    if not c.samples_by_split_and_format:
        return []
    formats = sorted({f for per in c.samples_by_split_and_format.values() for f in per})
    header = ["split", "replays", "samples", "shards", *formats]
    rows = [[split, f"{c.replays_by_split.get(split, 0):,}",
             f"{c.samples_counted_by_split.get(split, 0):,}",
             f"{c.shards_by_split.get(split, 0):,}",
             *(f"{per.get(f, 0):,}" for f in formats)]
            for split, per in sorted(c.samples_by_split_and_format.items())]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *rows]]


def summary(manifest: Manifest) -> str:
    """A human-readable end-of-run summary."""
    c = manifest.counts
    t = manifest.timing
    lab = manifest.labels
    src = manifest.source
    lines = [
        f"output: {terminal_safe(manifest.output_dir)}",
        f"source: {src.name} (fog={src.fog}, step_mul={src.step_mul}, "
        f"resolution={src.resolution})",
        f"input files: {c.input_files:,}; replays: " + (", ".join(
            f"{n:,} {status}" for status, n in sorted(c.replays_by_status.items(),
                                                       key=lambda kv: (-kv[1], kv[0]))
            if n) or "none"),
    ]
    for title, counts, key in (("filtered", c.filter_reasons, "filtered"),
                               ("errors", c.error_reasons, "errors")):
        if counts:
            first = manifest.examples.get(key, {})
            lines.append(f"{title}:")
            lines += [f"  {reason}: {n} (first: {terminal_safe(first.get(reason, '?'))})"
                      for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if c.degraded_replays:
        lines.append(f"degraded (sampled without part of the replay, see 'degraded'): "
                     f"{c.degraded_replays}")
    if c.samples_by_split_and_format or manifest.empty_splits:
        lines.append("splits:")
    lines += _split_table(c)
    causes = set(manifest.empty_splits.values())
    if not c.samples_total and len(causes) == 1:
        lines.append(f"  all empty ({causes.pop()})")
    else:
        lines += [f"  {split}: empty ({cause})"
                  for split, cause in manifest.empty_splits.items()]
    lines.append(f"samples: {c.samples_total:,}; no-op fraction {lab['noop_fraction']:.3f}; "
                 f"mean mask size {lab['mean_mask_size']:.1f}")
    if c.shard_bytes_by_format:
        lines.append("shards: " + ", ".join(
            f"{fmt} {b / 2**20:,.1f} MiB ({c.shard_bytes_per_sample[fmt]:.0f} B/sample)"
            for fmt, b in c.shard_bytes_by_format.items()))
    unknown = lab.get("unknown")
    if unknown and unknown.get("samples"):
        lines.append("target unknown / unknown argument: " + "; ".join(
            f"{kind.replace('_', ' ')} {u['target_unknown_fraction']:.4f} / "
            f"{u['unknown_argument_fraction']:.4f} of {u['samples']}"
            for kind, u in unknown["by_replay_kind"].items() if u["samples"]))
    top = ", ".join(f"{f['name']} {f['fraction']:.3f}"
                    for f in lab["top_target_functions"][:5])
    if top:
        lines.append(f"top targets: {top}")
    if t:
        lines.append(f"wall {t['wall_s']:.1f} s: {t['replays_per_s']:.2f} replays/s, "
                     f"{t['samples_per_s']:.1f} samples/s")
    return "\n".join(lines)
