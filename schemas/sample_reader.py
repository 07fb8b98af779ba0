"""Every field of a run's Parquet samples as numpy arrays, a shard at a time.

Why it exists.  The shards store each feature layer and the action mask as
one compact byte string (``schemas.layer_codec``), which pandas, DuckDB,
polars or Hugging Face ``datasets`` see as opaque ``binary``; and a run
output can be far larger than memory.  This is the one reader that gives a
shard, a split or a whole output back as numpy -- every row of every field
with a leading sample axis -- streamed shard by shard (or ``batch_rows`` rows
at a time) so that memory holds one shard's decoded columns, whatever the
output's size.  Shards are found only through :mod:`schemas.run_output`
(the manifest), and columns are converted only by
:meth:`SampleSchema.arrow_columns`:

======================  ===============================  =====================
field kind              numpy value, ``N`` rows          example
======================  ===============================  =====================
layer (compact)         ``(N, H, W)`` of its dtype       ``screen_unit_type``
action mask (compact)   ``(N, 573)`` uint8               ``available_actions``
small vector            ``(N, k)`` of its dtype          ``player``, ``arg_screen``
integer scalar          ``(N,)`` of its dtype            ``value`` (int8)
string                  ``(N,)`` ``object`` of ``str``   ``replay_id``, ``outcome``
======================  ===============================  =====================

Entry points (docs/dataset_format.md has recipes on top of them):

* :func:`iter_columns` -- per-shard column dicts over splits of an output;
* :func:`read_split` -- one split's columns concatenated (fits in memory?);
* :func:`iter_samples` -- sample dicts, one at a time (PyTorch, JAX);
* :func:`read_shard` / :func:`iter_shard` -- one Parquet file, found by path.

Errors: :class:`~schemas.run_output.RunOutputError` (one line naming the
file) for an output or a shard that cannot be read as the manifest says;
:class:`~schemas.sample.SchemaError` for an unknown field, a file that is
not a sample shard, or a layer column of another format version.
"""
from __future__ import annotations

import io
import os
from typing import Any, Iterator, Sequence, Union

import numpy as np
import pyarrow as pa

from pipeline import filesystem
from schemas import layer_codec
from schemas.run_output import RunOutput, RunOutputError, open_run
from schemas.sample import (SCHEMA_KEY, SampleSchema, SchemaError, check_layer_encoding,
                            schema_from_repr)

#: Rows :func:`iter_samples` decodes at a time: samples come out one by one,
#: so it holds a few hundred decoded rows rather than a whole shard.
SAMPLE_BATCH_ROWS = 256

#: a run output: its directory (local or ``gs://``), or one already opened
Output = Union[str, os.PathLike, RunOutput]
#: what reading a listed shard can raise: it is not the shard the manifest lists
_SHARD_ERRORS = (SchemaError, layer_codec.CodecError, pa.ArrowException, OSError)


def schema_of_file(parquet_file) -> SampleSchema:
    """The sample schema a ``pyarrow.parquet.ParquetFile`` records in its
    metadata (``sc2_sample_schema``), its layer columns' encoding checked.
    :class:`SchemaError` when it records none or a layer format this code
    does not read."""
    arrow = parquet_file.schema_arrow
    text = (arrow.metadata or {}).get(SCHEMA_KEY, b"").decode()
    schema = schema_from_repr(text)
    for field in schema.fields:
        if field.compact and field.name in arrow.names:
            check_layer_encoding(arrow.field(field.name))
    return schema


def _open(path: str):
    """A ``ParquetFile`` over a local path or, read whole, a remote one (a
    shard is a few hundred KB compressed)."""
    import pyarrow.parquet as pq
    source = (io.BytesIO(filesystem.read(path)) if filesystem.is_remote(path)
              else filesystem.local(path))
    try:
        return pq.ParquetFile(source)
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"{path}: not a Parquet file ({exc})") from exc


def _selection(schema: SampleSchema, columns: Sequence[str] | None) -> list[str]:
    """The chosen field names (all, in schema order, by default);
    :class:`SchemaError` naming any the schema does not have."""
    if columns is None:
        return schema.names()
    if isinstance(columns, str):
        raise TypeError("columns is a sequence of field names, not one string")
    names = list(columns)
    if not names:
        raise ValueError("no columns chosen (None reads them all)")
    unknown = [name for name in names if name not in schema.by_name]
    if unknown:
        raise SchemaError(f"unknown fields {unknown} (not in {schema!r})")
    return names


def iter_shard(path: str, columns: Sequence[str] | None = None, *,
               schema: SampleSchema | None = None,
               batch_rows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """One Parquet shard as numpy column dicts: the whole file at once, or
    ``batch_rows`` rows at a time (the last batch shorter).

    ``schema`` defaults to the file's own; given, the file's must equal it
    (:class:`SchemaError` otherwise, and for a file that is not a sample
    shard).  A file with no rows yields nothing."""
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    parquet_file = _open(path)
    try:
        own = schema_of_file(parquet_file)
    except SchemaError as exc:
        raise SchemaError(f"{path}: not a sample shard of this format ({exc})") from exc
    if schema is not None and repr(own) != repr(schema):
        raise SchemaError(f"{path}: holds {own!r}, expected {schema!r}")
    schema = own
    names = _selection(schema, columns)
    if not parquet_file.metadata.num_rows:
        return
    if batch_rows is None:
        yield schema.arrow_columns(parquet_file.read(columns=names), names)
        return
    for batch in parquet_file.iter_batches(batch_size=batch_rows, columns=names):
        yield schema.arrow_columns(batch, names)


def read_shard(path: str, columns: Sequence[str] | None = None, *,
               schema: SampleSchema | None = None) -> dict[str, np.ndarray]:
    """One Parquet shard, by path, as one numpy column dict (see
    :func:`iter_shard`; an empty shard gives empty columns)."""
    for cols in iter_shard(path, columns, schema=schema):
        return cols
    schema = schema or schema_of_file(_open(path))
    return _empty(schema, _selection(schema, columns))


def _empty(schema: SampleSchema, names: list[str]) -> dict[str, np.ndarray]:
    """Columns of no rows, of the kinds :meth:`SampleSchema.arrow_columns` gives."""
    return {name: np.zeros((0,) + schema.by_name[name].shape,
                           object if schema.by_name[name].is_string
                           else schema.by_name[name].np_dtype)
            for name in names}


def _run(output: Output) -> RunOutput:
    return output if isinstance(output, RunOutput) else open_run(os.fspath(output))


def _splits(run: RunOutput, splits: str | Sequence[str] | None) -> list[str]:
    if splits is None:
        return run.manifest.split_names()
    return [splits] if isinstance(splits, str) else list(splits)


def iter_columns(output: Output, splits: str | Sequence[str] | None = None,
                 columns: Sequence[str] | None = None, *, batch_rows: int | None = None,
                 worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Numpy column dicts over the Parquet shards of ``splits`` (default:
    every split with samples, train, validation, test) of the run output
    ``output`` (its directory, or an opened :class:`RunOutput`), in dataset
    order: a dict per shard, or per ``batch_rows`` rows of a shard.

    ``columns``: field names to read (default all); reading only the
    scalars skips every layer's bytes.  ``worker`` / ``num_workers``: this
    reader takes every ``num_workers``-th shard from the ``worker``-th (a
    PyTorch DataLoader worker, a JAX process), so that parallel readers
    share the shards without overlap.  :class:`RunOutputError` naming the
    manifest or a shard for an output that cannot be read as its manifest
    says (no Parquet shards, a split without samples, a missing or foreign
    file)."""
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} is not in [0, num_workers={num_workers})")
    run = _run(output)
    schema = run.manifest.sample_schema()
    names = _selection(schema, columns)
    shards = list(run.iter_shards("parquet", _splits(run, splits)))
    for path, entry in shards[worker::num_workers]:
        batches = iter_shard(path, names, schema=schema, batch_rows=batch_rows)
        rows = 0
        while True:
            try:
                cols = next(batches)
            except StopIteration:
                break
            except _SHARD_ERRORS as exc:
                raise RunOutputError(f"{path}: unreadable shard ({exc})") from exc
            rows += len(cols[names[0]])
            yield cols
        if rows != entry.num_samples:
            raise RunOutputError(f"{path}: {rows} samples, the manifest says "
                                 f"{entry.num_samples}")


def read_split(output: Output, split: str,
               columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """One split's columns, every shard concatenated: the convenience for a
    split that fits in memory (a 64x64 sample is ~180 KB decoded with every
    field; choose ``columns``, or stream with :func:`iter_columns`)."""
    run = _run(output)
    schema = run.manifest.sample_schema()
    names = _selection(schema, columns)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for cols in iter_columns(run, split, names):
        for name in names:
            parts[name].append(cols[name])
    return {name: (np.concatenate(chunks) if chunks else _empty(schema, [name])[name])
            for name, chunks in parts.items()}


def iter_samples(output: Output, splits: str | Sequence[str] | None = None,
                 columns: Sequence[str] | None = None, *, worker: int = 0,
                 num_workers: int = 1,
                 batch_rows: int = SAMPLE_BATCH_ROWS) -> Iterator[dict[str, Any]]:
    """Sample dicts (arrays as numpy, scalars as Python ``int`` / ``str``,
    as :meth:`SampleSchema.from_arrow` gives them) in dataset order, decoded
    ``batch_rows`` at a time: what a PyTorch ``IterableDataset`` or a JAX
    input loop wraps.  Arguments as :func:`iter_columns`."""
    run = _run(output)
    schema = run.manifest.sample_schema()
    for cols in iter_columns(run, splits, columns, batch_rows=batch_rows,
                             worker=worker, num_workers=num_workers):
        yield from schema.rows(cols)
