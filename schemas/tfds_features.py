"""What TFDS needs, beyond its own code, to read a pipeline output in place.

The TFDS dataset ``sc2_replays`` is metadata only (``DIR/tfds``): its splits'
filename templates name the pipeline's own shards, and reading them goes
through TFDS's standard reader.  Two things about those shards are not
TFDS's own, and this module supplies both:

* **The compact arrays.**  A feature layer or action mask is one
  ``bytes_list`` entry (``schemas.layer_codec``); :class:`CompactTensor`
  decodes it back to the dense tensor of the field's shape and dtype.
  ``features.json`` names ``schemas.tfds_features.CompactTensor``.

* **GZIP shards.**  TFDS reads a ``tfrecord`` dataset through
  ``file_adapters.ADAPTER_FOR_FORMAT[FileFormat.TFRECORD].make_tf_data(path)``,
  which opens every file uncompressed; the shards are
  ``DIR/tfrecord/<split>/<split>-NNNNN-of-MMMMM.tfrecord.gz``.  Importing this
  module replaces that stock entry with :class:`ShardReader`: the same
  reader, which opens a file whose name ends in ``.gz`` as GZIP (every other
  file as before, so TFDS datasets of other projects read as they did).
  TFDS ships no compressed TFRecord reader and has no other hook for one.

Why importing this module is enough, with nothing of the project imported by
hand: TFDS restores a dataset's features from ``features.json`` when it
constructs the builder -- ``tfds.builder_from_directory``,
``tfds.load``/``tfds.builder`` of a name no code registered (both a
``ReadOnlyBuilder``: ``DatasetInfo.read_from_directory``) and the registered
``datasets.sc2_replays.Sc2Replays`` (its ``_info`` builds them) alike -- and
restoring ``CompactTensor`` makes TFDS import this module
(``FeatureConnector.cls_from_name``: ``importlib.import_module``).  The
builder exists, with its features, before its first ``as_dataset``, and the
reader looks the adapter up only when it builds the ``tf.data`` pipeline; so
the GZIP reader is registered before the first read on every path.  The
installed distribution (``pip install``, editable or not) provides the
``schemas`` package, so no ``PYTHONPATH`` is needed.

Object stores: TFDS joins the template to the dataset directory, so the
shard paths hold ``..`` segments (``.../tfds/sc2_replays/events_64/1.3.0/
../../../../tfrecord/...``).  A local filesystem resolves them; an object
store (``gs://``) takes them literally, so :class:`ShardReader` removes them
from paths with a URI scheme before opening the file.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import file_adapters
# Loaded on first use (decoding, reading), not to describe the features.
from tensorflow_datasets.core.utils.lazy_imports_utils import tensorflow as tf

from schemas import layer_codec

feature_lib = tfds.features.feature

#: A path segment other than ``.`` and ``..`` (RE2 has no look-ahead).
_SEGMENT = r"(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)"
#: ``/name/../`` -> ``/``: one parent reference resolved.
_PARENT_REFERENCE = "/" + _SEGMENT + r"/\.\./"
_URI = r"[A-Za-z][A-Za-z0-9+.-]*://.*"


class CompactTensor(tfds.features.FeatureConnector):
    """A fixed-shape integer array stored as a ``layer_codec`` byte string."""

    def __init__(self, *, shape: tuple[int, ...], dtype: Any, doc: Any = None):
        super().__init__(doc=doc)
        self._shape = tuple(int(d) for d in shape)
        # A numpy dtype (the schema's) or a TensorFlow one.
        self._np_dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))

    def get_tensor_info(self) -> feature_lib.TensorInfo:
        return feature_lib.TensorInfo(shape=self._shape, dtype=self._np_dtype)

    def get_serialized_info(self) -> feature_lib.TensorInfo:
        return feature_lib.TensorInfo(shape=(), dtype=np.object_)

    def encode_example(self, example_data: Any) -> bytes:
        array = np.asarray(example_data)
        if array.shape != self._shape or array.dtype != self._np_dtype:
            raise ValueError(f"expected {self._shape} {self._np_dtype}, got "
                             f"{array.shape} {array.dtype}")
        return layer_codec.encode(array)

    def decode_example(self, tfexample_data: tf.Tensor) -> tf.Tensor:
        return self._decode(tfexample_data)

    def decode_batch_example(self, tfexample_data: tf.Tensor) -> tf.Tensor:
        return self._decode(tfexample_data)

    def decode_example_np(self, example_data: bytes) -> np.ndarray:
        return layer_codec.decode(example_data, self._np_dtype, self._shape)

    def _decode(self, data: tf.Tensor) -> tf.Tensor:
        return layer_codec.tf_decode(data, self._np_dtype, self._shape)

    @classmethod
    def from_json_content(cls, value: dict, doc: Any = None) -> "CompactTensor":
        return cls(shape=tuple(value["shape"]), dtype=np.dtype(value["dtype"]), doc=doc)

    def to_json_content(self) -> dict:
        return {"shape": list(self._shape), "dtype": self._np_dtype.name}


def resolve_parent_references(path: tf.Tensor) -> tf.Tensor:
    """``scheme://b/x/y/../z`` -> ``scheme://b/x/z``, as a string tensor op
    (the reader's paths are tensors inside ``Dataset.interleave``).  Paths
    without a URI scheme are returned as they are: the local filesystem
    resolves ``..`` itself (through symbolic links, as the OS does)."""
    path = tf.convert_to_tensor(path, tf.string)
    is_uri = tf.strings.regex_full_match(path, _URI)
    (resolved,) = tf.while_loop(
        lambda p: tf.logical_and(
            is_uri, tf.strings.regex_full_match(p, ".*" + _PARENT_REFERENCE + ".*")),
        lambda p: (tf.strings.regex_replace(p, _PARENT_REFERENCE, "/",
                                            replace_global=False),),
        (path,))
    return resolved


class ShardReader(file_adapters.TfRecordFileAdapter):
    """TFDS's TFRecord file adapter, reading ``*.gz`` files as GZIP.

    Registered for ``FileFormat.TFRECORD`` on import (see the module
    docstring); writing is TFDS's own (uncompressed), unchanged."""

    @classmethod
    def make_tf_data(cls, filename: Any, buffer_size: int | None = None) -> tf.data.Dataset:
        name = resolve_parent_references(
            filename if tf.is_tensor(filename) else os.fspath(filename))
        compression = tf.where(tf.strings.regex_full_match(name, r".*\.gz"), "GZIP", "")
        return tf.data.TFRecordDataset(name, compression_type=compression,
                                       buffer_size=buffer_size or cls.BUFFER_SIZE)


def register_shard_reader() -> bool:
    """Makes :class:`ShardReader` TFDS's TFRecord reader, unless something
    other than TFDS's stock reader holds the entry already (then it warns
    and leaves it: ``.gz`` shards may not read).  True when registered."""
    adapters = file_adapters.ADAPTER_FOR_FORMAT
    current = adapters[file_adapters.FileFormat.TFRECORD]
    if current is file_adapters.TfRecordFileAdapter or (
            current.__module__ == __name__ and current.__name__ == ShardReader.__name__):
        adapters[file_adapters.FileFormat.TFRECORD] = ShardReader
        return True
    logging.getLogger(__name__).warning(
        "TFDS's TFRecord reader is already replaced by %s.%s: GZIP shards "
        "(*.tfrecord.gz) read through TFDS only if it opens them",
        current.__module__, current.__qualname__)
    return False


register_shard_reader()
