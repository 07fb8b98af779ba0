"""``tf.train.Example`` bytes for samples, written without protobuf objects.

Building an Example through the protobuf classes costs ~400 us per sample
(one message object per field, ~50 fields), several times the cost of
featurizing the sample; the pipeline writes hundreds of thousands.  The
Example wire format is small and fixed, so :class:`ExampleEncoder` writes it
directly, a field at a time over all of a shard's rows: every field's
map-entry prefix is computed once, an entry once per distinct value where
values repeat, and a sample is one join of its entries.  The bytes parse
to exactly the message the protobuf classes build (map entries sorted by
key), which a test checks; readers (``tf.io.parse_example``,
``SampleSchema.from_example``) need nothing new.  :func:`decode_features`
reads such bytes back without TensorFlow or protobuf (importing TensorFlow
costs a Beam worker ~5 s, to check the first and last record of a shard).

Wire layout (proto3): ``Example{features=1}``, ``Features{map<string,
Feature> feature=1}`` (each entry ``{key=1, value=2}``), ``Feature{oneof
bytes_list=1, int64_list=3}``, ``BytesList{repeated bytes value=1}``,
``Int64List{repeated int64 value=1 [packed]}``.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, Mapping, Sequence

import numpy as np

_LEN = 2  # wire type: length-delimited


def _tag(number: int) -> bytes:
    return bytes([number << 3 | _LEN])


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values as 10-byte two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(number: int, payload: bytes) -> bytes:
    return _tag(number) + varint(len(payload)) + payload


class ExampleEncoder:
    """Encodes samples of a fixed field list as serialized Examples.

    ``fields``: (name, kind, dtype) with kind ``"string"`` (str, UTF-8),
    ``"bytes"`` (a ``bytes`` value, stored as it is), ``"array"`` (numpy array of a fixed ``size``, raw little-endian bytes of
    ``dtype``) or ``"int"`` (an integer scalar); ``size`` is the array's
    element count (0 for the other kinds).  Map entries are written in
    field-name order.
    """

    def __init__(self, fields: Sequence[tuple[str, str, np.dtype | None, int]]):
        self._plan: list[tuple[str, str, Any]] = []
        for name, kind, dtype, size in sorted(fields, key=lambda f: f[0]):
            key = _delimited(1, name.encode("utf-8"))  # entry.key
            if kind == "array":
                little = np.dtype(dtype).newbyteorder("<")
                n = size * little.itemsize
                # Everything before the raw bytes depends only on their length.
                feature_len = _nested_len(_nested_len(n))
                entry_len = len(key) + _nested_len(feature_len)
                prefix = (b"\x0a" + varint(entry_len) + key + b"\x12" + varint(feature_len)
                          + b"\x0a" + varint(_nested_len(n)) + b"\x0a" + varint(n))
                self._plan.append((name, kind, (prefix, little, n)))
            elif kind in ("string", "bytes", "int"):
                self._plan.append((name, kind, key))
            else:
                raise ValueError(f"unknown field kind {kind!r}")

    def encode(self, sample: Mapping[str, Any]) -> bytes:
        return self.encode_columns({name: [sample[name]] for name, _, _ in self._plan})[0]

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> list[bytes]:
        """One Example per row of ``columns`` (name -> one value per sample;
        a list, or for arrays and integers a numpy array), field by field:
        each field's map entries for all rows first (computed once per
        distinct value where values repeat: context, labels, unused
        arguments, empty layers), then one join per row.  A field with the
        same entry in every row (most of them, in a replay's rows) is one
        piece, joined with its constant neighbours once, not once per row."""
        if not self._plan:
            return []
        rows = len(columns[self._plan[0][0]])
        if not rows:
            return []
        pieces: list[list[bytes] | bytes] = []   # a list: one entry per row; bytes: every row's
        constant: list[bytes] = []               # consecutive same-in-every-row entries
        sizes, fixed = np.zeros(rows, np.int64), 0
        for name, kind, plan in self._plan:
            column = entries_of(kind, plan, name, columns[name])
            if isinstance(column, bytes):
                constant.append(column)
                fixed += len(column)
                continue
            if constant:
                pieces.append(b"".join(constant))
                constant = []
            sizes += np.fromiter(map(len, column), np.int64, rows)
            pieces.append(column)
        if constant:
            pieces.append(b"".join(constant))
        heads = [b"\x0a" + _varint(n) for n in (sizes + fixed).tolist()]   # Example.features
        return [b"".join(row) for row in zip(
            heads, *(p if isinstance(p, list) else itertools.repeat(p) for p in pieces))]


def entries_of(kind: str, plan: Any, name: str, values: Sequence[Any]) -> list[bytes] | bytes:
    """``Features.feature`` map entries (tag, length, key, value) of one
    field: one per value, or one ``bytes`` when every value is the same."""
    if kind == "array":
        prefix, dtype, n = plan
        data = np.ascontiguousarray(values, dtype)
        rows = len(data)
        if data.size * dtype.itemsize != rows * n:
            raise ValueError(f"{name}: {data.size * dtype.itemsize} bytes for {rows} rows, "
                             f"expected {n} each")
        if rows and (data == data[:1]).all():
            return prefix + data[0].tobytes()
        raw = data.tobytes()
        return [prefix + raw[i:i + n] for i in range(0, rows * n, n)]
    if kind == "int":                        # Feature.int64_list.value, packed
        ints = np.asarray(values, np.int64).reshape(-1)
        distinct, inverse = np.unique(ints, return_inverse=True)
        table = np.empty(len(distinct), object)
        for i, value in enumerate(distinct.tolist()):
            payload = _varint(value)
            packed = b"\x0a" + _varint(len(payload)) + payload
            feature = b"\x1a" + _varint(len(packed)) + packed
            entry = plan + b"\x12" + _varint(len(feature)) + feature     # key, value
            table[i] = b"\x0a" + _varint(len(entry)) + entry             # Features.feature
        return table[0] if len(table) == 1 else table[inverse].tolist()
    # Feature.bytes_list.value: everything before the value depends only on
    # its length, so it is made once per distinct length (and kept).
    values = list(values)
    if values and values.count(values[0]) == len(values):   # (before any encoding)
        value = values[0].encode("utf-8") if kind == "string" else values[0]
        return _bytes_entry_head(plan, len(value)) + value
    data = [v.encode("utf-8") for v in values] if kind == "string" else values
    lengths = list(map(len, data))
    heads = {n: _bytes_entry_head(plan, n) for n in set(lengths)}
    # (bytes + b"" is the head itself: an empty layer costs no copy)
    return [heads[n] + value for n, value in zip(lengths, data)]


@functools.lru_cache(maxsize=1 << 16)
def _bytes_entry_head(key: bytes, n: int) -> bytes:
    """A ``bytes_list`` entry up to its value of ``n`` bytes (a field's
    values take a few hundred distinct lengths: each head is made once)."""
    inner = 1 + _vlen(n) + n                 # BytesList.value
    feature = 1 + _vlen(inner) + inner       # Feature.bytes_list
    entry = len(key) + 1 + _vlen(feature) + feature
    return b"".join((b"\x0a", _varint(entry), key, b"\x12", _varint(feature),
                     b"\x0a", _varint(inner), b"\x0a", _varint(n)))


#: varints of the lengths and small values a sample's fields hold
_SMALL = [varint(i) for i in range(1 << 14)]


def _varint(value: int) -> bytes:
    return _SMALL[value] if 0 <= value < 16384 else varint(value)


def _vlen(n: int) -> int:
    """Bytes of the varint of a non-negative ``n``."""
    return 1 if n < 0x80 else 2 if n < 0x4000 else len(varint(n))


def _nested_len(n: int) -> int:
    """Length of a length-delimited field (1-byte tag) holding ``n`` bytes."""
    return 1 + len(varint(n)) + n


class WireError(ValueError):
    """Bytes that are not a serialized ``tf.train.Example`` of this layout."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def _fields_of(data: bytes):
    """(field number, payload) of each length-delimited or varint field."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _LEN:
            n, pos = _read_varint(data, pos)
            if pos + n > end:
                raise WireError("truncated field")
            yield number, data[pos:pos + n]
            pos += n
        elif wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        else:
            raise WireError(f"unexpected wire type {wire}")


def decode_features(serialized: bytes) -> dict[str, bytes | list[int]]:
    """A serialized Example's features: name -> the first ``bytes_list``
    value, or the ``int64_list`` values (signed)."""
    out: dict[str, bytes | list[int]] = {}
    for number, features in _fields_of(serialized):
        if number != 1 or isinstance(features, int):
            raise WireError("not an Example")
        for number, entry in _fields_of(features):
            if number != 1 or isinstance(entry, int):
                raise WireError("not a Features map entry")
            name, value = None, b""
            for number, part in _fields_of(entry):
                if number == 1:
                    name = part.decode("utf-8")
                elif number == 2:
                    value = part
            if name is None:
                raise WireError("a feature without a name")
            out[name] = _feature_value(value)
    return out


def _feature_value(feature: bytes) -> bytes | list[int]:
    for number, payload in _fields_of(feature):
        if number == 1:                                  # bytes_list
            for inner, value in _fields_of(payload):
                if inner == 1 and isinstance(value, bytes):
                    return value
            return b""
        if number == 3:                                  # int64_list (packed or not)
            values = []
            for inner, value in _fields_of(payload):
                if isinstance(value, int):
                    values.append(value)
                else:
                    pos = 0
                    while pos < len(value):
                        v, pos = _read_varint(value, pos)
                        values.append(v)
            return [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    raise WireError("a feature with neither bytes_list nor int64_list")
