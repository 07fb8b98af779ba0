"""tf.data input for the trainer: shards -> batched model inputs and targets.

Reads the pipeline's GZIP TFRecord shards (``DIR/tfrecord/<split>/*.tfrecord.gz``)
or the TFDS dataset ``sc2_replays``, and turns samples into what the models
eat.  Field names, dtypes and shapes all come from
``schemas.sample.SampleSchema`` (``tf_feature_spec`` + ``tf_decode``); this
module only chooses which fields to read and how to stack them.

The pipeline: parallel interleave over shard files -> record shuffle ->
batch -> one batched ``parse_example`` + ``decode_raw`` per field -> stack ->
prefetch.  To keep the input small, the spatial layers stay integers
(``uint16``, every layer scale fits): the models embed categorical layers
(one-hot + 1x1 convolution, i.e. an embedding lookup) and log-transform the
scalar ones.  The player vector is log-transformed here (``log(x + 1)``).
Spatial argument targets become a flat pixel index ``y * resolution + x``;
``-1`` keeps meaning "the target function does not take this argument".
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow as tf

from schemas import layers
from schemas.run_output import Manifest, RunLayout, RunOutput, RunOutputError, open_run
from schemas.sample import SampleSchema

# Fields carried next to each batch for evaluation and baselines.
META_FIELDS: tuple[str, ...] = ("replay_id", "player_id", "game_loop", "race",
                                "opponent_race")
# Game time input scale: game loops per 10 minutes at "faster" speed (22.4/s),
# so the ``game_time`` input is about 0..3 over ordinary games.
GAME_TIME_SCALE = 22.4 * 600


class TrainerInputError(ValueError):
    """What the trainer was pointed at cannot be used: no shards or records in
    the data directory, a malformed layer, no checkpoint in a run, an unknown
    input source."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which layers a model reads, at which resolution.

    Stored in a run's config.json so evaluation rebuilds the same model.
    """
    screen_resolution: int = 64
    minimap_resolution: int = 64
    screen_layers: tuple[str, ...] = tuple(l.name for l in layers.SCREEN_LAYERS)
    minimap_layers: tuple[str, ...] = tuple(l.name for l in layers.MINIMAP_LAYERS)
    # Game time (the sample's game loop, pysc2's ``game_loop`` observation) as
    # a non-spatial input ``game_time`` = game_loop / GAME_TIME_SCALE.
    game_time: bool = False
    # The score vector (``layers.SCORE_FEATURES``, pysc2's score observation)
    # as a non-spatial input ``score``.
    score: bool = True

    @classmethod
    def create(cls, screen_resolution: int = 64, minimap_resolution: int = 64,
               drop: Iterable[str] = (), game_time: bool = False) -> "FeatureSpec":
        """All layers and the score except ``drop`` (sample field names, e.g.
        ``screen_creep``, ``score``)."""
        drop = set(drop)
        return cls(screen_resolution, minimap_resolution,
                   tuple(l.name for l in layers.SCREEN_LAYERS
                         if f"screen_{l.name}" not in drop),
                   tuple(l.name for l in layers.MINIMAP_LAYERS
                         if f"minimap_{l.name}" not in drop),
                   bool(game_time), "score" not in drop)

    @property
    def schema(self) -> SampleSchema:
        return SampleSchema(self.screen_resolution, self.minimap_resolution)

    @property
    def screen(self) -> list[layers.Layer]:
        by_name = {l.name: l for l in layers.SCREEN_LAYERS}
        return [by_name[n] for n in self.screen_layers]

    @property
    def minimap(self) -> list[layers.Layer]:
        by_name = {l.name: l for l in layers.MINIMAP_LAYERS}
        return [by_name[n] for n in self.minimap_layers]

    def arg_resolution(self, arg: layers.ArgumentType) -> int:
        return self.minimap_resolution if arg.name == "minimap" else self.screen_resolution

    def arg_classes(self, arg: layers.ArgumentType) -> int:
        """Number of values of an argument head (pixels for a spatial one)."""
        return self.arg_resolution(arg) ** 2 if arg.spatial else arg.sizes[0]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        return cls(int(d["screen_resolution"]), int(d["minimap_resolution"]),
                   tuple(d["screen_layers"]), tuple(d["minimap_layers"]),
                   bool(d.get("game_time", False)),  # runs before the option: off
                   bool(d.get("score", False)))       # runs before the score: off


# ----------------------------------------------------------------- data files
@dataclasses.dataclass(frozen=True)
class Selection:
    """Which samples to read: the shards of ``splits``, keeping only the
    samples of ``replay_ids`` (``None``: every sample of those splits).

    A plain split name means ``Selection((split,))``.  Cross-validation
    (``trainers.crossval``) reads every split directory and selects replays by
    fold.  ``samples``, when given, is the number of selected samples (known
    to the caller; saves a counting pass over the shards).
    """
    splits: tuple[str, ...]
    replay_ids: frozenset[str] | None = None
    samples: int | None = None

    @classmethod
    def of(cls, split: "str | Selection | Mapping[str, Any]") -> "Selection":
        """A split name, a Selection, or its JSON form -> Selection."""
        if isinstance(split, Selection):
            return split
        if isinstance(split, str):
            return cls((split,))
        ids = split.get("replay_ids")
        return cls(tuple(split["splits"]), None if ids is None else frozenset(ids),
                   split.get("samples"))

    def to_json(self) -> dict:
        return {"splits": list(self.splits),
                "replay_ids": None if self.replay_ids is None else sorted(self.replay_ids),
                "samples": self.samples}

    @property
    def name(self) -> str:
        """For messages: ``train``, or ``train+test (12 replays)``."""
        text = "+".join(self.splits)
        return text if self.replay_ids is None else f"{text} ({len(self.replay_ids)} replays)"

    def files(self, data_dir: str | os.PathLike) -> list[str]:
        """The TFRecord shards of the selected splits, checked against the
        manifest (a missing, resized or extra shard is a :class:`TrainerInputError`)."""
        run = open_data(data_dir)
        try:
            run.check_shards("tfrecord", self.splits)
            return [path for path, _ in run.iter_shards("tfrecord", self.splits)]
        except RunOutputError as exc:
            raise TrainerInputError(str(exc)) from exc


def open_data(data_dir: str | os.PathLike) -> RunOutput:
    """The pipeline output at ``data_dir`` (``schemas.run_output``);
    :class:`TrainerInputError` naming the manifest when it is not one, or is
    the output of a run that failed (published as evidence, not as data)."""
    try:
        run = open_run(os.fspath(data_dir))
    except RunOutputError as exc:
        raise TrainerInputError(str(exc)) from exc
    if run.manifest.outcome.failed:
        raise TrainerInputError(f"{run.layout.manifest}: this run failed "
                                f"({run.manifest.outcome.reason}); not reading it")
    return run


def shard_files(data_dir: str | os.PathLike, split: str) -> list[str]:
    """The TFRecord shards of one split, in order; :class:`TrainerInputError`
    if it has none or one is missing or damaged in size."""
    return Selection((split,)).files(data_dir)


def read_manifest(data_dir: str | os.PathLike) -> Manifest:
    """The output's :class:`~schemas.run_output.Manifest`;
    :class:`TrainerInputError` when there is none or it is unreadable."""
    return open_data(data_dir).manifest


def data_config(data_dir: str | os.PathLike) -> dict:
    """What a model needs to know about how ``data_dir``'s samples were made:
    the manifest's source, resolution, step_mul and fog."""
    return read_manifest(data_dir).data_config()


def data_config_if_present(data_dir: str | os.PathLike) -> dict:
    """:func:`data_config`, or {} when ``data_dir`` is gone or not a pipeline
    output (a shipped model's training data, say: nothing to check against)."""
    try:
        return data_config(data_dir)
    except TrainerInputError:
        return {}


def manifest_unavailable_layers(data_dir: str | os.PathLike) -> tuple[str, ...]:
    """Sample fields the output's source could not fill (stored as zeros),
    from the manifest (``source.unavailable_layers``)."""
    manifest = read_manifest(data_dir)
    names = set(manifest.sample_schema().names())
    return tuple(sorted(n for n in manifest.source.unavailable_layers if n in names))


def data_splits(data_dir: str | os.PathLike) -> tuple[str, ...]:
    """The splits of the output that hold samples (train, validation, test
    order); :class:`TrainerInputError` when none does."""
    manifest = read_manifest(data_dir)
    found = tuple(manifest.split_names())
    if not found:
        raise TrainerInputError(
            f"{RunLayout(os.fspath(data_dir)).manifest}: the run sampled nothing "
            f"(replays by status: {manifest.counts.replays_by_status}); see its "
            "errors/errors.parquet and README.md")
    return found


def data_resolutions(data_dir: str | os.PathLike) -> tuple[int, int]:
    """(screen, minimap) resolution of the output's samples."""
    schema = read_manifest(data_dir).sample_schema()
    return schema.screen_resolution, schema.minimap_resolution


def check_data_matches(data_dir: str | os.PathLike, spec: "FeatureSpec",
                       what: str = "the model") -> None:
    """:class:`TrainerInputError` unless the output's samples have
    ``spec``'s resolutions (one line naming the manifest)."""
    have = data_resolutions(data_dir)
    want = (spec.screen_resolution, spec.minimap_resolution)
    if have != want:
        raise TrainerInputError(
            f"{RunLayout(os.fspath(data_dir)).manifest}: samples are {have[0]}x{have[0]} "
            f"screen / {have[1]}x{have[1]} minimap; {what} reads {want[0]}x{want[0]} / "
            f"{want[1]}x{want[1]}")


def damaged_shard(files: Iterable[str]) -> str | None:
    """The first of ``files`` that does not read through (gzip and record
    CRCs), as one line ``PATH: what is wrong``; None when all read.  Used
    after TensorFlow reports a ``DataLossError``, which names no file."""
    # Here, not at the top: it imports apache_beam (~2 s), needed only after a failure.
    from pipeline.output.writers import ShardVerificationError, check_tfrecord_file
    for path in files:
        try:
            check_tfrecord_file(path)
        except ShardVerificationError as exc:
            return str(exc)
    return None


def data_error(data_dir: str | os.PathLike, selection: "str | Selection",
               exc: Exception) -> str:
    """One line for a TensorFlow read failure of ``selection``'s shards: the
    damaged file when one is found, else TensorFlow's first line."""
    first = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
    try:
        found = damaged_shard(Selection.of(selection).files(data_dir))
    except TrainerInputError:
        found = None
    return found or f"{data_dir}: reading the shards failed ({first})"


def selection_size(data_dir: str | os.PathLike, selection: "str | Selection") -> int:
    """Samples a selection holds: its ``samples`` when known, the manifest's
    count of whole splits, else counted (reads the replay ids of every record)."""
    selection = Selection.of(selection)
    if selection.samples is not None:
        return int(selection.samples)
    if selection.replay_ids is None:
        return sum(split_size(data_dir, split) for split in selection.splits)
    return int(read_columns(data_dir, selection, ["replay_id"])["replay_id"].size)


def strided_size(data_dir: str | os.PathLike, selection: "str | Selection",
                 every: int) -> int | None:
    """Records an unshuffled read with ``every=k`` yields (every k-th of each
    shard): from the manifest's shard list; None for a replay subset."""
    selection = Selection.of(selection)
    if every <= 1:
        return selection_size(data_dir, selection)
    if selection.replay_ids is not None:
        return None
    manifest = read_manifest(data_dir)
    return sum(-(-s.num_samples // every) for split in selection.splits
               for s in manifest.shard_files("tfrecord", split))


def split_size(data_dir: str | os.PathLike, split: str) -> int:
    """Samples in a split's TFRecord shards, from the manifest."""
    return sum(s.num_samples for s in read_manifest(data_dir).shard_files("tfrecord", split))


# -------------------------------------------------------------- conversion
def read_fields(spec: FeatureSpec) -> list[str]:
    """Sample fields the trainer parses (unused layers are never decoded)."""
    names = [f"screen_{n}" for n in spec.screen_layers]
    names += [f"minimap_{n}" for n in spec.minimap_layers]
    names += ["player", "available_actions", "function_id", "value"]
    if spec.score:
        names.append("score")
    names += [f"arg_{a.name}" for a in layers.ARGUMENT_TYPES]
    return names + list(META_FIELDS)


def to_model_batch(decoded: Mapping[str, tf.Tensor], spec: FeatureSpec
                   ) -> tuple[dict, dict, dict]:
    """Decoded (batched) sample fields -> (inputs, targets, meta) dicts.

    inputs: ``screen`` uint16 [B,S,S,Ls], ``minimap`` uint16 [B,M,M,Lm],
    ``player`` float32 [B,11] (log(x+1)), ``available_actions`` float32 [B,573],
    and with ``spec.game_time`` also ``game_time`` float32 [B,1], with
    ``spec.score`` also ``score`` float32 [B,20] (:func:`signed_log1p`).
    targets: ``function_id`` int32 [B], ``value`` float32 [B], and
    ``arg_<name>`` int32 [B] (flat pixel index for spatial args; -1 unused,
    -2 unknown: ``schemas.layers.UNUSED`` / ``UNKNOWN``, as in the sample;
    ``function_id`` is -2 where the target is unknown).
    """
    def stack(prefix: str, names: tuple[str, ...], res: int) -> tf.Tensor:
        if not names:
            return tf.zeros([tf.shape(decoded["player"])[0], res, res, 0], tf.uint16)
        return tf.stack([tf.cast(decoded[f"{prefix}_{n}"], tf.uint16) for n in names],
                        axis=-1)

    inputs = {
        "screen": stack("screen", spec.screen_layers, spec.screen_resolution),
        "minimap": stack("minimap", spec.minimap_layers, spec.minimap_resolution),
        "player": tf.math.log1p(tf.maximum(tf.cast(decoded["player"], tf.float32), 0.0)),
        "available_actions": tf.cast(decoded["available_actions"], tf.float32),
    }
    if spec.game_time:
        inputs["game_time"] = game_time_input(decoded["game_loop"])
    if spec.score:
        inputs["score"] = signed_log1p(tf.cast(decoded["score"], tf.float32))
    targets = {"function_id": tf.cast(decoded["function_id"], tf.int32),
               "value": tf.cast(decoded["value"], tf.float32)}
    for arg in layers.ARGUMENT_TYPES:
        raw = tf.cast(decoded[f"arg_{arg.name}"], tf.int32)
        if arg.spatial:
            res = spec.arg_resolution(arg)
            x = tf.clip_by_value(raw[..., 0], 0, res - 1)
            y = tf.clip_by_value(raw[..., 1], 0, res - 1)
            used = raw[..., 0] >= 0
            targets[f"arg_{arg.name}"] = tf.where(used, y * res + x,
                                                  tf.maximum(raw[..., 0], layers.UNKNOWN))
        else:
            targets[f"arg_{arg.name}"] = tf.clip_by_value(raw, layers.UNKNOWN,
                                                          arg.sizes[0] - 1)
    meta = {name: decoded[name] for name in META_FIELDS}
    return inputs, targets, meta


def signed_log1p(x):
    """``sign(x) * log(|x| + 1)``: the log transform of a count that can go
    negative (score entries do: cancelled structures are refunded into
    "lost"); works on tensors and numpy arrays."""
    if isinstance(x, np.ndarray):
        return np.sign(x) * np.log1p(np.abs(x))
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def game_time_input(game_loop) -> tf.Tensor:
    """[B] game loops -> [B,1] float32 ``game_loop / GAME_TIME_SCALE``."""
    return (tf.cast(game_loop, tf.float32) / GAME_TIME_SCALE)[:, None]


# --------------------------------------------------------------- datasets
def keep_replays(records: tf.data.Dataset, replay_ids: Iterable[str],
                 schema: SampleSchema) -> tf.data.Dataset:
    """Serialized samples -> those whose ``replay_id`` is in ``replay_ids``
    (only the replay id of each record is parsed)."""
    ids = sorted(set(replay_ids))
    if not ids:
        return records.take(0)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.string),
                                            tf.ones(len(ids), tf.int32)), default_value=0)
    spec = schema.tf_feature_spec(["replay_id"])

    def tag(record):
        replay = tf.io.parse_single_example(record, spec)["replay_id"]
        return record, table.lookup(replay) > 0

    def kept(record, keep):
        return keep

    def untag(record, keep):
        return record

    return (records.map(tag, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .filter(kept).map(untag))


def make_dataset(data_dir: str | os.PathLike, split: "str | Selection", spec: FeatureSpec, *,
                 batch_size: int = 64, shuffle: bool = True, repeat: bool = True,
                 seed: int = 0, shuffle_buffer: int = 2048,
                 drop_remainder: bool | None = None, with_meta: bool = False,
                 source: str = "tfrecord", tfds_data_dir: str | None = None,
                 tfds_name: str = "sc2_replays", every: int = 1,
                 limit: int | None = None, read_shards: int = 32) -> tf.data.Dataset:
    """Batches of ``(inputs, targets)`` (plus ``meta`` when ``with_meta``).

    ``every=k`` keeps every k-th record and ``limit`` caps the number of
    records, before any repeat: a fixed, spread-out subset (e.g. validation
    samples from every replay and every game time).  Unshuffled TFRecord
    input takes every k-th record of each shard (so of each replay);
    shuffled input every k-th of the interleaved stream (as training's
    ``--train_every`` does: ``read_shards`` shards at a time, one record each).

    Shuffled TFRecord input reads ``read_shards`` shards at once, one record
    from each in turn.  Shards hold windows in replay order (a game of the
    shared corpus fills about two), so this sets how many games a stretch of
    batches mixes: with 32, 100 consecutive batches of 64 (``train_every``
    14) span 84 of its 1,665 training games; with 1,024, 455
    (docs/results.md).

    ``split`` is a split name or a :class:`Selection` (several splits, a
    replay-id subset).  ``source="tfrecord"`` reads ``data_dir``'s shards;
    ``source="tfds"`` reads the TFDS dataset ``tfds_name`` from
    ``tfds_data_dir`` (offline).
    Training uses ``shuffle=True, repeat=True``; evaluation ``False, False``
    (every sample once, in file order).
    """
    if drop_remainder is None:
        drop_remainder = repeat
    if read_shards < 1:
        raise TrainerInputError(f"read_shards must be at least 1, got {read_shards}")
    names = read_fields(spec)
    schema = spec.schema
    autotune = tf.data.AUTOTUNE
    selection = Selection.of(split)

    if source == "tfrecord":
        files = selection.files(data_dir)
        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

        cycle = min(len(files), read_shards if shuffle else 8)
        # Read buffers of at most 32 MiB together (1 MiB each up to 32 shards).
        read_buffer = max(1 << 16, min(1 << 20, (32 << 20) // max(cycle, 1)))

        def records(f):
            ds = tf.data.TFRecordDataset(f, compression_type="GZIP", buffer_size=read_buffer)
            # Unshuffled, every k-th record of each shard: striding the
            # interleaved stream instead would skip whole shards whenever k
            # shares a factor with its 8 x 16 period (k=32 read 4 of 8).
            return ds.shard(every, 0) if every > 1 and not shuffle else ds

        ds = ds.interleave(
            records,
            # Shards are sorted by sample key, i.e. runs of one replay: when
            # shuffling, read many shards one record at a time so that a
            # batch mixes many replays (their labels are constant per replay).
            cycle_length=cycle,
            block_length=1 if shuffle else 16,
            num_parallel_calls=autotune, deterministic=True)
        if selection.replay_ids is not None:
            ds = keep_replays(ds, selection.replay_ids, schema)
        feature_spec = schema.tf_feature_spec(names)

        def parse(serialized):
            return schema.tf_decode(tf.io.parse_example(serialized, feature_spec))
    elif source == "tfds":
        import tensorflow_datasets as tfds
        # TFDS opens the output's metadata by itself (schemas.tfds_features);
        # no autocache: the recorded size is the GZIP shards', ~1/400 of the
        # decoded examples it would hold in memory.
        ds = tfds.load(tfds_name, split="+".join(selection.splits), data_dir=tfds_data_dir,
                       download=False, try_gcs=False, shuffle_files=shuffle,
                       read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))
        if selection.replay_ids is not None:
            wanted = tf.constant(sorted(selection.replay_ids), tf.string)
            ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["replay_id"], wanted)))
        ds = ds.map(lambda ex: {n: ex[n] for n in names}, num_parallel_calls=autotune)

        def parse(batch):
            return batch
    else:
        raise TrainerInputError(f"unknown source {source!r}; expected tfrecord or tfds")

    if every > 1 and (shuffle or source != "tfrecord"):
        ds = ds.shard(every, 0)
    if limit is not None:
        ds = ds.take(limit)
    if repeat:
        ds = ds.repeat()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def convert(batch):
        inputs, targets, meta = to_model_batch(parse(batch), spec)
        return (inputs, targets, meta) if with_meta else (inputs, targets)

    ds = ds.map(convert, num_parallel_calls=autotune, deterministic=True)
    return ds.prefetch(autotune)


def read_columns(data_dir: str | os.PathLike, split: "str | Selection", names: Iterable[str],
                 schema: SampleSchema | None = None, batch_size: int = 1024,
                 every: int = 1) -> dict[str, np.ndarray]:
    """Selected scalar/array fields of a whole split (or :class:`Selection`)
    as numpy arrays, in file order; ``every=k`` keeps every k-th record.

    Parses only the named fields (cheap: used for baseline statistics).
    Strings come back as Python ``str`` object arrays.
    """
    schema = schema or SampleSchema()
    names = list(names)
    selection = Selection.of(split)
    feature_spec = schema.tf_feature_spec(names)
    ds = tf.data.TFRecordDataset(selection.files(data_dir), compression_type="GZIP")
    if selection.replay_ids is not None:
        ds = keep_replays(ds, selection.replay_ids, schema)
    if every > 1:
        ds = ds.shard(every, 0)
    ds = ds.batch(batch_size).map(
        lambda s: schema.tf_decode(tf.io.parse_example(s, feature_spec)),
        num_parallel_calls=tf.data.AUTOTUNE)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in ds.as_numpy_iterator():
        for n in names:
            chunks[n].append(batch[n])
    out = {}
    for n in names:
        arr = np.concatenate(chunks[n]) if chunks[n] else np.zeros(0)
        if schema.by_name[n].is_string:
            arr = np.array([v.decode("utf-8") for v in arr], dtype=object)
        out[n] = arr
    return out
