"""Test fixture: small synthetic TFRecord shards in the pipeline's layout.

Used by tests/test_trainer*.py only (the real data comes from beam_runner.py).
Samples are built with ``SampleSchema.to_example``; the winner of each replay
has more minerals and its own units on screen, so the value head has a signal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from schemas import layers
from schemas.run_output import (Counts, Manifest, SchemaInfo, ShardFile, SourceInfo,
                                 shard_relpath)
from schemas.sample import SampleSchema
from trainers.action_space import function_arguments

# Functions the synthetic targets use: no_op, select_point, Attack_screen,
# Move_minimap, select_control_group-like categorical ones.
TARGET_FUNCTIONS = (0, 2, 12, 13, 4)


def synthetic_sample(schema: SampleSchema, rng: np.random.Generator, replay: str,
                     player: int, loop: int, won: bool, split: str,
                     race: str = "Terran", opponent_race: str = "Zerg") -> dict:
    s = {f.name: f.default for f in schema.fields}
    s.update(schema.empty_observation())
    s.update(schema.unused_arguments())
    res = schema.screen_resolution
    s.update(replay_id=replay, player_id=player, game_loop=loop, split=split,
             map_name="Synthetic", map_width=64, map_height=64, base_build=75689,
             game_version="4.10.0.75689", race=race, opponent_race=opponent_race,
             game_loops=20000, source="events", unavailable_layers="",
             has_tracker_events=1, target_was_unavailable=0,
             value=int(won), outcome="win" if won else "loss")
    s["screen_unit_type"][:] = rng.integers(0, 50, (res, res))
    s["screen_player_relative"][:] = 1 if won else 4
    s["screen_unit_hit_points"][:] = rng.integers(0, 200, (res, res))
    s["minimap_height_map"][:] = rng.integers(0, 255, s["minimap_height_map"].shape)
    s["player"][:] = [player, 400 if won else 50, 100, 20, 30, 5, 15, 0, 5, 0, 0]
    # Score: a winner has killed more than it lost (one entry negative, as
    # the game's refunds make some "lost" entries).
    s["score"][:] = rng.integers(0, 3000, len(layers.SCORE_FEATURES))
    s["score"][layers.SCORE_FEATURES.index("killed_minerals_army")] = 2000 if won else 300
    s["score"][layers.SCORE_FEATURES.index("lost_minerals_technology")] = -125
    function = int(rng.choice(TARGET_FUNCTIONS))
    available = s["available_actions"]
    available[rng.integers(0, layers.NUM_FUNCTIONS, 20)] = 1
    available[[0, 1, 2, 4, function]] = 1
    s["function_id"] = function
    takes = function_arguments()[function]
    for i, arg in enumerate(layers.ARGUMENT_TYPES):
        if not takes[i]:
            continue
        if arg.spatial:
            r = schema.minimap_resolution if arg.name == "minimap" else res
            s[f"arg_{arg.name}"] = rng.integers(0, r, 2).astype(np.int32)
        else:
            s[f"arg_{arg.name}"] = int(rng.integers(0, arg.sizes[0]))
    return s


def write_synthetic(out: Path, schema: SampleSchema, replays: dict[str, int] | None = None,
                    loops_per_player: int = 12, seed: int = 0,
                    shards: int = 2) -> dict[str, list[dict]]:
    """Writes DIR/tfrecord/<split>/<split>-NNNNN-of-MMMMM.tfrecord.gz and a
    manifest.json; returns the samples per split."""
    replays = replays or {"train": 6, "validation": 2, "test": 4}
    rng = np.random.default_rng(seed)
    by_split: dict[str, list[dict]] = {}
    for split, n in replays.items():
        samples = []
        for r in range(n):
            replay = f"{split}{r:03d}".ljust(64, "0")
            winner = 1 + (r % 2)
            for player in (1, 2):
                for k in range(loops_per_player):
                    samples.append(synthetic_sample(
                        schema, rng, replay, player, 8 * k * 25, player == winner, split,
                        race="Terran" if player == 1 else "Zerg",
                        opponent_race="Zerg" if player == 1 else "Terran"))
        by_split[split] = samples
        folder = out / "tfrecord" / split
        folder.mkdir(parents=True, exist_ok=True)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        for i in range(shards):
            path = folder / f"{split}-{i:05d}-of-{shards:05d}.tfrecord.gz"
            with tf.io.TFRecordWriter(str(path), options) as w:
                for s in samples[i::shards]:
                    w.write(schema.to_example(s))
    synthetic_manifest(out, schema, by_split, shards).save(str(out))
    return by_split


def synthetic_manifest(out: Path, schema: SampleSchema, by_split: dict[str, list[dict]],
                       shards: int, unavailable_layers: tuple[str, ...] = ()) -> Manifest:
    """The manifest of the synthetic shards, as the pipeline would write it
    (the contract of ``schemas.run_output``)."""
    files = {split: [ShardFile(shard_relpath("tfrecord", split, i, shards),
                               len(samples[i::shards]),
                               (out / shard_relpath("tfrecord", split, i, shards)).stat().st_size)
                     for i in range(shards)] for split, samples in by_split.items()}
    n = {split: len(samples) for split, samples in by_split.items()}
    replays = {split: len({s["replay_id"] for s in samples})
               for split, samples in by_split.items()}
    resolution = schema.screen_resolution
    return Manifest(
        created_unix=0.0, output_dir=str(out),
        config={"formats": ["tfrecord"], "source_name": "events", "resolution": resolution,
                "step_mul": 8, "fog": True},
        packages={}, schema=SchemaInfo(repr(schema), len(schema.fields), schema.names()),
        source=SourceInfo("events", "synthetic", {}, list(unavailable_layers), True, 8,
                          resolution),
        filters={}, splits={s: 1 / len(n) for s in n},
        counts=Counts(input_files=sum(replays.values()),
                      replays_by_status={"sampled": sum(replays.values())},
                      filter_reasons={}, error_reasons={}, replays_by_split=replays,
                      samples_counted_by_split=n,
                      samples_by_split_and_format={s: {"tfrecord": v} for s, v in n.items()},
                      shards_by_split={s: shards for s in n}, samples_total=sum(n.values()),
                      shard_bytes_by_format={}, shard_bytes_per_sample={},
                      degraded_replays={}),
        labels={}, duplicates=[], shards={"tfrecord": files}, degraded=[])
