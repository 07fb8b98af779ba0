"""Ships a trained run as a model directory a fresh clone can use.

    python -m trainers.export --run RUN --out models/NAME [--checkpoint best]

A training run holds optimizer state, several checkpoints and TensorBoard
logs, and points at training data a user does not have.  A shipped model
holds what inference and honest evaluation need, and nothing else:

* ``model.weights.h5``: the selected checkpoint's weights in the Keras 3
  weights format (HDF5; no optimizer state);
* ``config.json``: the trainer configuration the model rebuilds itself from
  (model, feature spec: layers, resolution, game-time and score inputs;
  value input) and ``data_config`` (source, resolution, step_mul, fog);
* ``checkpoint.json``: which run and step the weights are, how they were
  selected;
* ``data.json``: the training data's fingerprint: the manifest's
  configuration and filters, the sample schema's hash, the SHA-256 of the
  sorted training replay ids (one per line, ``\\n``-joined), their number,
  builds and matchups;
* ``train_replays.txt.gz``: those ids (gzip, no timestamp: byte-identical
  on re-export);
* ``baselines.json``: the baselines fitted on the training windows
  (``trainers.baselines``), so evaluation anywhere compares with them.

``trainers.evaluate`` and ``trainers.predict`` accept the directory as
``--run``.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq


from trainers import baselines, inference
from trainers.evaluate import minor_version, version_key
from schemas.run_output import RunLayout
from trainers.input import TrainerInputError, open_data, read_columns, read_manifest
from trainers.train import TrainConfig, write_json_atomic

MAX_MODEL_BYTES = 25 * 1024 * 1024
REPLAY_IDS_NAME = "train_replays.txt.gz"


def training_replay_ids(config: TrainConfig) -> list[str]:
    """The sorted ids of the replays ``config`` trained on."""
    selection = config.train_selection
    if selection.replay_ids is not None:
        return sorted(selection.replay_ids)
    ids: set[str] = set()
    run = open_data(config.data)
    files = ([path for path, _ in run.iter_shards("parquet", selection.splits)]
             if "parquet" in run.manifest.formats else [])
    if files:   # one column of the Parquet shards: seconds for millions of samples
        for path in files:
            ids.update(pq.read_table(path, columns=["replay_id"]).column(0).unique().to_pylist())
    else:
        ids.update(read_columns(config.data, selection, ["replay_id"])["replay_id"])
    return sorted(ids)


def replay_ids_digest(ids: Sequence[str]) -> str:
    """SHA-256 of the sorted ids joined by newlines (what ``data.json`` records)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def corpus_counts(data: str, ids: Sequence[str]) -> dict:
    """Builds (major.minor) and matchups of ``ids``, from the data's index."""
    wanted = set(ids)
    layout = RunLayout(data)
    builds: collections.Counter = collections.Counter()
    races: dict[str, list[str]] = collections.defaultdict(list)
    if os.path.exists(layout.replays_index):
        table = pq.read_table(layout.replays_index, columns=["replay_id", "version"])
        for rid, version in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if rid in wanted:
                builds[minor_version(version)] += 1
    if os.path.exists(layout.players_index):
        table = pq.read_table(layout.players_index, columns=["replay_id", "race"])
        for rid, race in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if rid in wanted:
                races[rid].append((race or "?")[:1])
    matchups = collections.Counter("v".join(sorted(r)) for r in races.values())
    return {"builds": dict(sorted(builds.items(), key=lambda kv: version_key(kv[0]))),
            "matchups": dict(sorted(matchups.items()))}


def export(run: str | os.PathLike, out: str | os.PathLike, checkpoint: str = "best",
           log=print) -> Path:
    """Writes the model directory ``out`` from ``run``; returns its path."""
    loaded = inference.load(run, checkpoint)
    if loaded.shipped:
        raise TrainerInputError(f"{run} is already a shipped model")
    config = loaded.config
    manifest = read_manifest(config.data)
    out = Path(out)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    loaded.model.save_weights(str(staging / inference.WEIGHTS_NAME))
    write_json_atomic(staging / "config.json", dataclasses.asdict(
        dataclasses.replace(config, data_config=loaded.data_config, out=str(out))))
    write_json_atomic(staging / inference.CHECKPOINT_INFO_NAME,
                      {**{k: v for k, v in loaded.checkpoint.items() if k != "path"},
                       "run": str(run), "checkpoint": os.path.basename(loaded.checkpoint["path"])})

    ids = training_replay_ids(config)
    with open(staging / REPLAY_IDS_NAME, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(("\n".join(ids) + "\n").encode("utf-8"))
    fitted = baselines.load_or_fit(run, config, log)
    write_json_atomic(staging / "baselines.json", fitted.to_json())
    schema_repr = manifest.schema.repr
    write_json_atomic(staging / inference.DATA_FINGERPRINT_NAME, {
        "data_config": loaded.data_config,
        "manifest_config": {k: v for k, v in manifest.config.items()
                            if k != "output_dir"},
        "filters": manifest.filters,
        "schema_sha256": hashlib.sha256(schema_repr.encode("utf-8")).hexdigest(),
        "train": {"selection": config.train_selection.name, "every": config.train_every,
                  "replays": len(ids), "replay_ids_sha256": replay_ids_digest(ids),
                  "replay_ids_file": REPLAY_IDS_NAME,
                  "samples_in_split": sum(manifest.split_samples(s)
                                          for s in config.train_selection.splits)},
        **corpus_counts(config.data, ids),
    })
    size = sum(p.stat().st_size for p in staging.iterdir())
    if size > MAX_MODEL_BYTES:
        shutil.rmtree(staging)
        raise TrainerInputError(f"{run}: the model directory would be {size / 2**20:.1f} MiB, "
                                f"over the {MAX_MODEL_BYTES / 2**20:.0f} MiB limit")
    # Keep a hand-written model card across re-exports.
    if (out / "README.md").exists():
        shutil.copy2(out / "README.md", staging / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    log(f"wrote {out} ({size / 2**20:.2f} MiB): {config.model} step "
        f"{loaded.checkpoint['step']}, trained on {len(ids)} replays")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from trainers.cli import export_parser
    a = export_parser().parse_args(argv)
    try:
        export(a.run, a.out, a.checkpoint, log=lambda m: print(m, flush=True))
    except (TrainerInputError, ValueError, FileNotFoundError, OSError) as e:
        if a.verbose:
            raise
        print(f"sc2-export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
