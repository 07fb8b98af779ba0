"""Compact bytes for a sample's large arrays: cost follows content.

A sample holds 38 feature layers (64x64 by default) and a 573-entry action
mask: ~180 KB dense.  On the engine-free source 26 layers are all zeros and
most of the rest are a few unit discs on an empty map, so storing them dense
makes every format pay for zeros (Parquet list levels per element, gzip over
records too long for its window).  Every large array is stored instead as one
byte string, the smallest of:

* ``b""`` -- the array is all zeros (a layer the source cannot fill costs
  nothing);
* ``RUNS`` -- run-length coded: ``[0x01][R: uint32][R run lengths: uint16]
  [R values: the field's dtype]``, all little-endian, over the array
  flattened in C order (runs longer than 65,535 are split);
* ``RAW`` -- ``[0x00]`` followed by the dense little-endian bytes (noisy
  layers such as the headless game's height map).

Measured on 4,028 samples of a 5.0.4 PvT (events source, 64x64): 4.9 KB per
sample before the container compresses it, ~170 B in zstd Parquet and ~180 B
in GZIP TFRecord, against 50.6 KB, ~300 B and ~1.5 KB for dense bytes
(``benchmarks/bench_encoding.py``).

:func:`encode_rows` codes one field of many samples at once (vectorized: one
pass finds every run of every row); :func:`decode` and :func:`decode_rows`
give back exactly the dense arrays.  ``schemas.sample`` decides which fields
are compact; TensorFlow readers call :func:`decode_rows` through
``tf.numpy_function`` (``SampleSchema.tf_decode``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: The version of this byte format (the tags, header and byte order below).
#: Every Parquet layer column records it in its field metadata
#: (``encoding_version``; ``schemas.sample``), and readers refuse any other:
#: a change that an existing decoder would misread must increment it.
#: Files written before the key existed hold version 1.  The bytes are
#: specified for decoders in other languages in docs/dataset_format.md.
FORMAT_VERSION = 1

RAW = 0
RUNS = 1
MAX_RUN = 0xFFFF
_HEADER = 5  # tag byte + uint32 run count


class CodecError(ValueError):
    """Bytes that are not a compact encoding of the expected array."""


#: rows coded per vectorized pass: a few MB, so the passes stay in cache
_CHUNK_BYTES = 1 << 21


def encode_arrays(arrays: Sequence[np.ndarray], dtype: np.dtype,
                  shape: Sequence[int]) -> list[bytes]:
    """One compact byte string per array; each must be of ``shape`` and
    ``dtype`` (:class:`CodecError` otherwise).

    Sources share read-only arrays between samples (the zero layers of what
    they cannot see, a layer that did not change since the last window), so
    each distinct array object is checked and encoded once.
    """
    ids = list(map(id, arrays))                 # map/dict/zip: no Python-level loop
    dtype, shape = np.dtype(dtype), tuple(shape)
    if len(ids) > 1 and ids.count(ids[0]) == len(ids):   # one object throughout (a layer
        return encode_arrays(arrays[:1], dtype, shape) * len(ids)   # the source cannot fill)
    by_id = dict(zip(ids, arrays))              # first occurrence order, one per object
    unique = list(by_id.values())
    for a in unique:
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
            raise CodecError(f"expected an array {shape} {dtype}, got "
                             f"{getattr(a, 'shape', type(a))} {getattr(a, 'dtype', '')}")
    coded = encode_rows_list(unique)
    if len(unique) == len(arrays):
        return coded
    return list(map(dict(zip(by_id, coded)).__getitem__, ids))


def encode_rows_list(arrays: Sequence[np.ndarray]) -> list[bytes]:
    """:func:`encode_rows` over a list of equal arrays, stacked chunk by chunk."""
    if not arrays:
        return []
    first = np.asarray(arrays[0])
    per = max(1, _CHUNK_BYTES // max(1, first.nbytes))
    out: list[bytes] = []
    for i in range(0, len(arrays), per):
        chunk = arrays[i:i + per]
        # (concatenating along the first axis, then reshaping: half np.stack's cost)
        rows = (np.concatenate(chunk).reshape((len(chunk),) + first.shape) if first.ndim
                else np.stack(chunk))
        out += encode_rows(rows)
    return out


def encode_rows(rows: np.ndarray) -> list[bytes]:
    """One compact byte string per row of ``rows`` (shape ``(n, ...)``).

    Every row's first element starts a run, so the runs of all rows are the
    flat positions where an element differs from its predecessor or a row
    begins, and each run ends where the next one starts; a row is all zeros
    exactly when all its runs are of zeros.
    """
    rows = np.ascontiguousarray(rows)
    n = rows.shape[0]
    flat = rows.reshape(-1)
    size = flat.size // n if n else 0
    if not size:
        return [b""] * n
    starts = np.empty(flat.size, bool)
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    starts[::size] = True                         # row starts
    if size > MAX_RUN:
        for offset in range(MAX_RUN, size, MAX_RUN):
            starts[offset::size] = True
    at = np.flatnonzero(starts)                   # run starts, row-major
    lengths = np.diff(at, append=flat.size).astype("<u2").tobytes()
    little = flat.dtype.newbyteorder("<")
    run_values = flat[at]
    values = run_values.astype(little).tobytes()
    bounds = np.searchsorted(at, np.arange(n + 1) * size).tolist()
    nonzero = np.logical_or.reduceat(run_values != 0, bounds[:-1])
    itemsize = little.itemsize
    raw_size = 1 + size * itemsize
    out = [b""] * n
    # One join per row (scattering every row into one buffer with numpy
    # fancy indexing measured 1.7x slower).
    for i in np.flatnonzero(nonzero).tolist():
        lo, hi = bounds[i], bounds[i + 1]
        k = hi - lo
        if _HEADER + k * (2 + itemsize) < raw_size:
            out[i] = b"".join((b"\x01", k.to_bytes(4, "little"), lengths[2 * lo:2 * hi],
                               values[itemsize * lo:itemsize * hi]))
        else:
            out[i] = b"\x00" + rows[i].astype(little).tobytes()
    return out


def encode(array: np.ndarray) -> bytes:
    """The compact byte string of one array."""
    array = np.asarray(array)
    return encode_rows(array.reshape((1,) + array.shape))[0]


def decode(data: bytes, dtype: np.dtype, shape: Sequence[int]) -> np.ndarray:
    """The dense array ``data`` encodes; :class:`CodecError` if it does not fit."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    size = int(np.prod(shape)) if shape else 1
    if not data:
        return np.zeros(shape, dtype)
    little = dtype.newbyteorder("<")
    tag = data[0]
    if tag == RAW:
        if len(data) != 1 + size * little.itemsize:
            raise CodecError(f"raw layer of {len(data) - 1} bytes, expected "
                             f"{size * little.itemsize} for {shape} {dtype}")
        return np.frombuffer(data, little, size, 1).astype(dtype).reshape(shape)
    if tag == RUNS and len(data) >= _HEADER:
        k = int.from_bytes(data[1:_HEADER], "little")
        if len(data) == _HEADER + k * (2 + little.itemsize):
            lengths = np.frombuffer(data, "<u2", k, _HEADER)
            if int(lengths.sum(dtype=np.int64)) == size:
                values = np.frombuffer(data, little, k, _HEADER + 2 * k)
                return np.repeat(values.astype(dtype), lengths).reshape(shape)
        raise CodecError(f"run-length layer of {len(data)} bytes does not hold "
                         f"{shape} {dtype}")
    raise CodecError(f"unknown layer encoding tag {tag}")


def decode_rows(datas: Sequence[bytes], dtype: np.dtype, shape: Sequence[int]) -> np.ndarray:
    """``decode`` of each byte string, stacked: shape ``(len(datas), *shape)``."""
    dtype = np.dtype(dtype)
    out = np.zeros((len(datas),) + tuple(shape), dtype)
    for i, data in enumerate(datas):
        if data:
            out[i] = decode(bytes(data), dtype, shape)
    return out


def tf_decode(tensor, dtype: np.dtype, shape: tuple[int, ...]):
    """Dense TensorFlow tensor ``(*tensor.shape, *shape)`` of encoded byte
    strings (a scalar or a batch): :func:`decode_rows` inside the graph.
    The one TensorFlow decoder of compact arrays (the trainer's parsing and
    the TFDS feature both use it); TensorFlow is imported here only."""
    import tensorflow as tf

    def decode(values: np.ndarray) -> np.ndarray:
        return decode_rows(values.reshape(-1), dtype, shape)

    dense = tf.numpy_function(decode, [tf.reshape(tensor, [-1])],
                              tf.dtypes.as_dtype(dtype), stateful=False)
    return tf.reshape(dense, tf.concat([tf.shape(tensor), tf.constant(shape, tf.int32)], 0))
