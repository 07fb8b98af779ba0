"""The single definition of a training sample, and every encoding derived from it.

A sample is one (replay, player, game loop): the observation the player had at
the start of an 8-loop window, the first action the player issued in that
window (the policy target), the actions available during the window (the mask)
and the game's outcome for that player (the value label).

Everything that stores or reads samples derives its layout from
:class:`SampleSchema` here: the Parquet (pyarrow) schema, the
``tf.train.Example`` encoding and parse spec, the TensorFlow Datasets
``FeaturesDict`` and the trainer's decoding.  No other module lists fields.

In memory a sample is a ``dict`` from field name to a Python scalar (ints,
strings) or a numpy array of the field's dtype and shape.

Encodings.  The large arrays -- every feature layer and the action mask,
``Field.compact`` -- are stored in every format as the same compact byte
string (``schemas.layer_codec``: empty when all zeros, else run-length coded
or raw, whichever is smaller), encoded once per sample:
* Parquet: scalars as their Arrow type; compact arrays as ``binary``; the
  small vectors (player, score, spatial arguments) as ``fixed_size_list``;
  shape, dtype and encoding in each field's metadata.
* TFRecord (``tf.train.Example``): integer scalars as ``int64_list``, strings
  and compact arrays as one ``bytes_list`` entry, small vectors as their raw
  little-endian bytes.
* TFDS: scalars as ``Scalar``/``Text``, compact arrays as
  ``schemas.tfds_features.CompactTensor``, small vectors as ``Tensor``; the
  TFDS dataset reads the pipeline's TFRecord shards in place.
Readers get the dense arrays back: :meth:`SampleSchema.from_arrow`,
:meth:`SampleSchema.from_example`, :meth:`SampleSchema.tf_decode`, the TFDS
features, and ``schemas.sample_reader`` (numpy columns of a shard, a split or
a whole run output, streamed shard by shard) built on
:meth:`SampleSchema.arrow_columns`.  docs/dataset_format.md specifies the
columns and the layer bytes for readers in other languages.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from schemas import layer_codec, layers
from schemas.example_wire import ExampleEncoder, WireError, decode_features

SPLITS: tuple[str, ...] = ("train", "validation", "test")
OUTCOMES: tuple[str, ...] = ("win", "loss", "tie", "undecided")
SOURCES: tuple[str, ...] = ("events", "sc2")

#: Parquet metadata keys: the file's sample schema (its ``repr``); a compact
#: column's encoding and its format version (``layer_codec.FORMAT_VERSION``)
SCHEMA_KEY = b"sc2_sample_schema"
ENCODING_KEY = b"encoding"
ENCODING_VERSION_KEY = b"encoding_version"
LAYER_ENCODING = b"schemas.layer_codec"
#: the layer format of files written before ``encoding_version`` was recorded
UNVERSIONED_LAYER_FORMAT = b"1"


class Group(enum.Enum):
    IDENTITY = "identity"
    CONTEXT = "context"
    OBSERVATION = "observation"
    TARGET = "target"
    LABEL = "label"


@dataclasses.dataclass(frozen=True)
class Field:
    """One column of a sample.

    ``shape == ()`` is a scalar; ``dtype`` is a numpy dtype name, or ``"str"``.
    ``default`` is the value that means unknown / unused.
    """
    name: str
    dtype: str
    shape: tuple[int, ...]
    group: Group
    doc: str
    default: Any = None
    #: stored as a ``schemas.layer_codec`` byte string (the large arrays)
    compact: bool = False

    @property
    def is_array(self) -> bool:
        return bool(self.shape)

    @property
    def is_string(self) -> bool:
        return self.dtype == "str"

    @property
    def np_dtype(self) -> np.dtype:
        if self.is_string:
            raise TypeError(f"{self.name} is a string field")
        return np.dtype(self.dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


class SchemaError(ValueError):
    """A sample does not match the schema."""


def _fields(screen: int, minimap: int) -> tuple[Field, ...]:
    I, C, O, T, L = (Group.IDENTITY, Group.CONTEXT, Group.OBSERVATION,
                     Group.TARGET, Group.LABEL)
    f = [
        Field("replay_id", "str", (), I, "SHA-256 of the replay file's bytes (hex)."),
        Field("player_id", "int32", (), I, "Observed player, 1-based as in the replay."),
        Field("game_loop", "int32", (), I, "First game loop of the sample's window."),
        Field("split", "str", (), I, "train, validation or test (by replay id hash)."),
        Field("map_name", "str", (), C, "Map name from the replay details.", ""),
        Field("map_width", "int32", (), C, "Map width in world units (cells).", 0),
        Field("map_height", "int32", (), C, "Map height in world units (cells).", 0),
        Field("base_build", "int32", (), C, "Game base build of the replay.", 0),
        Field("game_version", "str", (), C, "Game version string, e.g. 4.10.0.75689.", ""),
        Field("race", "str", (), C, "This player's race (Terran, Zerg, Protoss).", ""),
        Field("opponent_race", "str", (), C, "Opponent's race.", ""),
        Field("mmr", "int32", (), C, "This player's MMR; -1 when unknown.", -1),
        Field("opponent_mmr", "int32", (), C, "Opponent's MMR; -1 when unknown.", -1),
        Field("apm", "int32", (), C, "This player's APM; -1 when unknown.", -1),
        Field("opponent_apm", "int32", (), C, "Opponent's APM; -1 when unknown.", -1),
        Field("game_loops", "int32", (), C, "Length of the game in game loops.", 0),
    ]
    for layer in layers.MINIMAP_LAYERS:
        f.append(Field(f"minimap_{layer.name}", layer.dtype.name, (minimap, minimap), O,
                       f"Minimap feature layer '{layer.name}' ({layer.type.value}, "
                       f"values in [0, {layer.scale})), indexed [y, x].", compact=True))
    for layer in layers.SCREEN_LAYERS:
        f.append(Field(f"screen_{layer.name}", layer.dtype.name, (screen, screen), O,
                       f"Screen feature layer '{layer.name}' ({layer.type.value}, "
                       f"values in [0, {layer.scale})), indexed [y, x].", compact=True))
    f += [
        Field("player", "int32", (len(layers.PLAYER_FEATURES),), O,
              "Player vector: " + ", ".join(layers.PLAYER_FEATURES) + "."),
        Field("score", "int32", (len(layers.SCORE_FEATURES),), O,
              "Score vector (pysc2 score_cumulative / score_by_category entries): "
              + ", ".join(layers.SCORE_FEATURES) + "."),
        Field("available_actions", "uint8", (layers.NUM_FUNCTIONS,), O,
              "1 where the pysc2 function was available at some loop of the window.",
              compact=True),
        Field("source", "str", (), O, "Observation source: " + " or ".join(SOURCES) + "."),
        Field("unavailable_layers", "str", (), O,
              "Comma-separated layers the source could not fill (stored as zeros), "
              "e.g. 'screen_height_map,minimap_creep'.", ""),
        Field("has_tracker_events", "int8", (), O,
              "1 if the replay carries tracker events (unit layers are filled).", 0),
        Field("function_id", "int32", (), T,
              "pysc2 function id of the player's first input in the window; 0 (no_op) "
              f"if none; {layers.UNKNOWN} when that input has no pysc2 function the "
              "source can name (target unknown: left out of the policy losses and "
              "metrics, every argument unknown too)."),
    ]
    for arg in layers.ARGUMENT_TYPES:
        if arg.spatial:
            f.append(Field(f"arg_{arg.name}", "int32", (2,), T,
                           f"Argument '{arg.name}' as (x, y); ({layers.UNUSED}, "
                           f"{layers.UNUSED}) when unused, ({layers.UNKNOWN}, "
                           f"{layers.UNKNOWN}) when used but unknown.",
                           layers.UNUSED))
        else:
            f.append(Field(f"arg_{arg.name}", "int32", (), T,
                           f"Argument '{arg.name}' in [0, {arg.sizes[0]}); {layers.UNUSED} "
                           f"when unused, {layers.UNKNOWN} when used but unknown.",
                           layers.UNUSED))
    f += [
        Field("target_was_unavailable", "int8", (), T,
              "1 if the source reported the target unavailable and it was added to "
              "the mask.", 0),
        Field("value", "int8", (), L, "1 if this player won the game, else 0 (as in SC2LE)."),
        Field("outcome", "str", (), L, "This player's result: " + ", ".join(OUTCOMES) + "."),
    ]
    return tuple(f)


class SampleSchema:
    """The sample layout for one (screen, minimap) resolution."""

    def __init__(self, screen_resolution: int = 64, minimap_resolution: int = 64):
        if screen_resolution < 1 or minimap_resolution < 1:
            raise ValueError("resolutions must be positive")
        self.screen_resolution = screen_resolution
        self.minimap_resolution = minimap_resolution
        self.fields: tuple[Field, ...] = _fields(screen_resolution, minimap_resolution)
        self.by_name: dict[str, Field] = {f.name: f for f in self.fields}
        if len(self.by_name) != len(self.fields):
            raise AssertionError("duplicate field names")
        self._example_encoder: ExampleEncoder | None = None

    def __repr__(self) -> str:
        return (f"SampleSchema(screen_resolution={self.screen_resolution}, "
                f"minimap_resolution={self.minimap_resolution})")

    def names(self, group: Group | None = None) -> list[str]:
        return [f.name for f in self.fields if group is None or f.group == group]

    @property
    def minimap_fields(self) -> list[Field]:
        return [f for f in self.fields if f.name.startswith("minimap_")]

    @property
    def screen_fields(self) -> list[Field]:
        return [f for f in self.fields if f.name.startswith("screen_")]

    # ------------------------------------------------------------------ in memory
    def empty_observation(self) -> dict[str, np.ndarray]:
        """Zeroed spatial layers, player vector and mask, ready to fill."""
        return {f.name: np.zeros(f.shape, f.np_dtype) for f in self.fields
                if f.group == Group.OBSERVATION and f.is_array}

    def unused_arguments(self, value: int = layers.UNUSED) -> dict[str, Any]:
        """Every argument field set to ``value``: 'unused' by default,
        ``layers.UNKNOWN`` for a window whose target is unknown."""
        out: dict[str, Any] = {}
        for arg in layers.ARGUMENT_TYPES:
            field = self.by_name[f"arg_{arg.name}"]
            out[field.name] = (np.full(field.shape, value, field.np_dtype)
                               if field.is_array else value)
        return out

    def validate(self, sample: Mapping[str, Any]) -> None:
        """Raises :class:`SchemaError` unless ``sample`` has exactly the fields."""
        missing = [n for n in self.by_name if n not in sample]
        extra = [n for n in sample if n not in self.by_name]
        if missing or extra:
            raise SchemaError(f"missing fields {missing}, unexpected fields {extra}")
        for field in self.fields:
            value = sample[field.name]
            if field.is_array:
                if not isinstance(value, np.ndarray) or value.shape != field.shape:
                    raise SchemaError(f"{field.name}: expected array {field.shape}, "
                                      f"got {getattr(value, 'shape', type(value))}")
                if value.dtype != field.np_dtype:
                    raise SchemaError(f"{field.name}: dtype {value.dtype}, "
                                      f"expected {field.np_dtype}")
            elif field.is_string:
                if not isinstance(value, str):
                    raise SchemaError(f"{field.name}: expected str, got {type(value)}")
            elif not isinstance(value, (int, np.integer)):
                raise SchemaError(f"{field.name}: expected int, got {type(value)}")

    # ---------------------------------------------------------------- encoding
    def encode_columns(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, list]:
        """Each field's values over ``samples``, compact arrays as their byte
        strings (``layer_codec.encode_rows``, one vectorized pass per field):
        the one encoding step both Parquet and TFRecord are written from."""
        columns: dict[str, list] = {}
        # Every field of a sample read while its dict is in cache, then
        # transposed: a pass over all samples per field missed the cache on
        # every dict (2-3x the time on a replay's thousands of samples).
        names = [field.name for field in self.fields]
        rows = list(map(operator.itemgetter(*names), samples))
        for field, values in zip(self.fields, zip(*rows) if rows else [()] * len(names)):
            values = list(values)
            if field.compact:
                try:
                    columns[field.name] = layer_codec.encode_arrays(values, field.np_dtype,
                                                                    field.shape)
                except layer_codec.CodecError as exc:
                    raise SchemaError(f"{field.name}: {exc}") from exc
            else:
                columns[field.name] = values
        return columns

    # ---------------------------------------------------------------- Parquet
    @functools.cached_property
    def arrow_schema(self):
        import pyarrow as pa
        cols = []
        for field in self.fields:
            meta = {b"doc": field.doc.encode(), b"group": field.group.value.encode()}
            if field.is_string:
                typ = pa.string()
            elif field.compact:
                typ = pa.binary()
                meta[b"shape"] = ",".join(map(str, field.shape)).encode()
                meta[b"dtype"] = field.dtype.encode()
                meta[ENCODING_KEY] = LAYER_ENCODING
                meta[ENCODING_VERSION_KEY] = str(layer_codec.FORMAT_VERSION).encode()
            elif field.is_array:
                typ = pa.list_(pa.from_numpy_dtype(field.np_dtype), field.size)
                meta[b"shape"] = ",".join(map(str, field.shape)).encode()
            else:
                typ = pa.from_numpy_dtype(field.np_dtype)
            cols.append(pa.field(field.name, typ, nullable=False, metadata=meta))
        return pa.schema(cols, metadata={SCHEMA_KEY: repr(self).encode()})

    def to_arrow(self, samples: Sequence[Mapping[str, Any]] | None = None, *,
                 columns: Mapping[str, list] | None = None):
        """Samples (dicts), or their :meth:`encode_columns`, to a pyarrow Table
        with :attr:`arrow_schema`."""
        import pyarrow as pa
        if columns is None:
            columns = self.encode_columns(samples or [])
        arrays = []
        for field, arrow_field in zip(self.fields, self.arrow_schema):
            values = columns[field.name]
            if field.is_array and not field.compact:
                # (each array flattened and joined: half of np.stack's cost)
                flat = (np.concatenate(values, axis=None) if len(values)
                        else np.zeros(0, field.np_dtype))
                if flat.size != len(values) * field.size:
                    raise SchemaError(f"{field.name}: {flat.size} values for "
                                      f"{len(values)} rows of {field.size}")
                arrays.append(pa.FixedSizeListArray.from_arrays(
                    pa.array(flat.astype(field.np_dtype, copy=False)), field.size))
            elif field.compact and len(values) > 1 and values.count(values[0]) == len(values):
                # one byte string throughout (a layer the source cannot fill):
                # its buffers at once, not a Python object per row
                one, n = values[0], len(values)
                offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(one))
                arrays.append(pa.Array.from_buffers(arrow_field.type, n, [
                    None, pa.py_buffer(offsets), pa.py_buffer(one * n)]))
            else:
                arrays.append(pa.array(values, type=arrow_field.type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    def from_arrow(self, table) -> list[dict[str, Any]]:
        """A pyarrow Table (or RecordBatch) back to sample dicts, dense arrays."""
        return list(self.rows(self.arrow_columns(table)))

    def rows(self, columns: Mapping[str, np.ndarray]) -> Iterator[dict[str, Any]]:
        """Sample dicts, one per row of :meth:`arrow_columns`' ``columns``:
        arrays as their rows (views), scalars as Python ``int`` / ``str`` (a
        sample in memory, as the module doc says)."""
        if not columns:
            return
        per_row = {name: (col if self.by_name[name].is_array else col.tolist())
                   for name, col in columns.items()}
        n = len(next(iter(columns.values())))
        for i in range(n):
            yield {name: col[i] for name, col in per_row.items()}

    def arrow_columns(self, table, names: Iterable[str] | None = None
                      ) -> dict[str, np.ndarray]:
        """Columns of a pyarrow Table (or RecordBatch) as writable numpy
        arrays, a row per sample: compact arrays decoded dense ``(rows,
        *shape)`` and small vectors ``(rows, k)``, of the field's dtype;
        integer scalars ``(rows,)`` of theirs; strings ``(rows,)`` of dtype
        ``object`` holding ``str`` (variable length, as pandas holds them; a
        fixed-width unicode array costs 4 bytes a character at the longest
        value's width).  The one conversion from stored columns (the reader,
        :meth:`from_arrow`).  :class:`SchemaError` for an unknown field or a
        layer column of another encoding or format version."""
        n = table.num_rows
        wanted = list(names) if names is not None else self.names()
        unknown = [name for name in wanted if name not in self.by_name]
        if unknown:
            raise SchemaError(f"unknown fields {unknown} (not in {self!r})")
        columns: dict[str, np.ndarray] = {}
        for name in wanted:
            field = self.by_name[name]
            col = table.column(field.name)
            if hasattr(col, "combine_chunks"):
                col = col.combine_chunks()
            if field.compact:
                check_layer_encoding(table.schema.field(field.name))
                columns[name] = layer_codec.decode_rows(col.to_pylist(), field.np_dtype,
                                                        field.shape)
            elif field.is_array:
                flat = col.flatten().to_numpy(zero_copy_only=False)
                columns[name] = flat.astype(field.np_dtype).reshape((n,) + field.shape)
            elif field.is_string:
                columns[name] = np.asarray(col.to_numpy(zero_copy_only=False), object)
            else:   # (a copy: Arrow's buffers are read-only)
                columns[name] = col.to_numpy(zero_copy_only=False).astype(field.np_dtype)
        return columns

    # ------------------------------------------------------------- TFRecord
    @property
    def _encoder(self) -> ExampleEncoder:
        if self._example_encoder is None:
            self._example_encoder = ExampleEncoder([
                (f.name,
                 "bytes" if f.compact else "string" if f.is_string
                 else "array" if f.is_array else "int",
                 f.np_dtype if f.is_array and not f.compact else None,
                 f.size if f.is_array and not f.compact else 0)
                for f in self.fields])
        return self._example_encoder

    def to_examples(self, samples: Sequence[Mapping[str, Any]] | None = None, *,
                    columns: Mapping[str, list] | None = None,
                    table=None) -> list[bytes]:
        """Samples (or their :meth:`encode_columns`, or those as the pyarrow
        Table of :meth:`to_arrow`, which is what the shard writer holds) as
        serialized ``tf.train.Example`` s: strings as UTF-8 bytes, compact
        arrays as their byte strings, small arrays as raw little-endian
        bytes, integer scalars as int64 (``schemas.example_wire``: the bytes
        protobuf would write)."""
        if table is None:
            table = self.to_arrow(samples, columns=columns)
        return self._encoder.encode_table(table)

    def to_example(self, sample: Mapping[str, Any]) -> bytes:
        """One sample as a serialized ``tf.train.Example`` (see :meth:`to_examples`)."""
        return self.to_examples([sample])[0]

    def from_example(self, serialized: bytes) -> dict[str, Any]:
        """A serialized ``tf.train.Example`` back to a sample dict (dense numpy).

        Reads the wire format directly (``example_wire.decode_features``):
        no TensorFlow import.  :class:`SchemaError` names a missing field.
        """
        try:
            feats = decode_features(serialized)
        except WireError as exc:
            raise SchemaError(f"not a sample Example: {exc}") from exc
        out: dict[str, Any] = {}
        for field in self.fields:
            if field.name not in feats:
                raise SchemaError(f"the Example has no field {field.name!r}")
            value = feats[field.name]
            if field.is_string or field.is_array:
                if not isinstance(value, bytes):
                    raise SchemaError(f"{field.name}: expected bytes")
                if field.compact:
                    out[field.name] = layer_codec.decode(value, field.np_dtype, field.shape)
                elif field.is_string:
                    out[field.name] = value.decode("utf-8")
                else:
                    out[field.name] = np.frombuffer(
                        value, field.np_dtype.newbyteorder("<")
                    ).astype(field.np_dtype).reshape(field.shape)
            else:
                if not isinstance(value, list) or not value:
                    raise SchemaError(f"{field.name}: expected an integer")
                out[field.name] = int(value[0])
        return out

    def tf_feature_spec(self, names: Iterable[str] | None = None) -> dict:
        """``tf.io.parse_example`` spec for the chosen fields (default all)."""
        import tensorflow as tf
        wanted = set(names) if names is not None else None
        spec = {}
        for field in self.fields:
            if wanted is not None and field.name not in wanted:
                continue
            if field.is_string or field.is_array:
                spec[field.name] = tf.io.FixedLenFeature([], tf.string)
            else:
                spec[field.name] = tf.io.FixedLenFeature([], tf.int64)
        return spec

    def tf_decode(self, parsed: Mapping[str, Any]) -> dict:
        """Turns parsed (possibly batched) features into typed dense tensors.

        Compact arrays are decoded by ``layer_codec`` (``tf.numpy_function``),
        small arrays from raw bytes; both are reshaped with any leading batch
        dimension kept; integer scalars are cast to the field dtype.
        """
        import tensorflow as tf
        out = {}
        for name, tensor in parsed.items():
            field = self.by_name[name]
            if field.compact:
                out[name] = layer_codec.tf_decode(tensor, field.np_dtype, field.shape)
            elif field.is_array:
                decoded = tf.io.decode_raw(tensor, tf.dtypes.as_dtype(field.np_dtype),
                                           little_endian=True)
                batch = tf.shape(tensor)
                out[name] = tf.reshape(decoded, tf.concat(
                    [batch, tf.constant(field.shape, tf.int32)], axis=0))
            elif field.is_string:
                out[name] = tensor
            else:
                out[name] = tf.cast(tensor, tf.dtypes.as_dtype(field.np_dtype))
        return out

    # ----------------------------------------------------------------- TFDS
    def tfds_features(self):
        """The TensorFlow Datasets ``FeaturesDict`` for a sample."""
        import tensorflow_datasets as tfds
        # Here, not at the top: it imports TensorFlow, which the pipeline never needs.
        from schemas.tfds_features import CompactTensor
        feats = {}
        for field in self.fields:
            doc = tfds.features.Documentation(desc=field.doc)
            if field.is_string:
                feats[field.name] = tfds.features.Text(doc=doc)
            elif field.compact:
                feats[field.name] = CompactTensor(shape=field.shape, dtype=field.np_dtype,
                                                  doc=doc)
            elif field.is_array:
                feats[field.name] = tfds.features.Tensor(
                    shape=field.shape, dtype=field.np_dtype,
                    encoding=tfds.features.Encoding.BYTES, doc=doc)
            else:
                feats[field.name] = tfds.features.Scalar(dtype=field.np_dtype, doc=doc)
        return tfds.features.FeaturesDict(feats)


def check_layer_encoding(arrow_field) -> None:
    """:class:`SchemaError` unless a compact column's Arrow field is of this
    code's layer encoding and format version (``layer_codec.FORMAT_VERSION``;
    a field without the version key is version 1, written before it
    existed; a field without metadata, as a user's own table has, passes)."""
    meta = arrow_field.metadata or {}
    encoding = meta.get(ENCODING_KEY, LAYER_ENCODING)
    if encoding != LAYER_ENCODING:
        raise SchemaError(f"{arrow_field.name}: layer encoding {encoding.decode()!r}; "
                          f"this code reads {LAYER_ENCODING.decode()!r}")
    version = meta.get(ENCODING_VERSION_KEY, UNVERSIONED_LAYER_FORMAT).decode()
    if version != str(layer_codec.FORMAT_VERSION):
        raise SchemaError(f"{arrow_field.name}: layer format version {version}; this code "
                          f"reads {layer_codec.FORMAT_VERSION} (use the "
                          "sc2-replay-pipeline version that wrote it)")


def read_parquet_samples(path: str, columns: Iterable[str] | None = None,
                         screen_resolution: int | None = None) -> dict[str, np.ndarray]:
    """One Parquet shard as numpy columns (:meth:`SampleSchema.arrow_columns`):
    ``schemas.sample_reader.read_shard``, kept under this name for the
    callers that used it.  The schema is the file's metadata's unless
    ``screen_resolution`` (screen and minimap) is given."""
    from schemas.sample_reader import read_shard   # (it imports this module)
    schema = (SampleSchema(screen_resolution, screen_resolution)
              if screen_resolution is not None else None)
    return read_shard(path, columns, schema=schema)


def schema_from_repr(text: str) -> SampleSchema:
    """The schema a ``repr(SampleSchema(...))`` names (manifests and Parquet
    metadata record it); :class:`SchemaError` for anything else."""
    match = re.fullmatch(r"SampleSchema\(screen_resolution=(\d+), minimap_resolution=(\d+)\)",
                         text.strip())
    if not match:
        raise SchemaError(f"not a sample schema: {text!r}")
    return SampleSchema(int(match.group(1)), int(match.group(2)))


def sample_key(replay_id: str, player_id: int, game_loop: int) -> str:
    """The stable key of a sample, unique across a dataset."""
    return f"{replay_id}_{player_id}_{game_loop}"


def value_label(outcome: str) -> int:
    """SC2LE's value target: 1 for a win, 0 for a loss, tie or undecided game."""
    if outcome not in OUTCOMES:
        raise SchemaError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    return 1 if outcome == "win" else 0
