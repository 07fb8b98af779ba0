"""The TFDS feature of a compact array (``schemas.layer_codec``).

The TFDS dataset reads the pipeline's TFRecord shards where they lie, so its
features must parse the records as the pipeline wrote them: a compact array is
one ``bytes_list`` entry, decoded back to the dense tensor of the field's
shape and dtype.  ``features.json`` names this class
(``schemas.tfds_features.CompactTensor``); TFDS imports it to restore the
features.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds
# Loaded on first use (decoding), not to describe the features.
from tensorflow_datasets.core.utils.lazy_imports_utils import tensorflow as tf

from schemas import layer_codec

feature_lib = tfds.features.feature


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
        shape, dtype = self._shape, self._np_dtype

        def decode(values: np.ndarray) -> np.ndarray:
            return layer_codec.decode_rows(values.reshape(-1), dtype, shape)

        dense = tf.numpy_function(decode, [tf.reshape(data, [-1])],
                                  tf.dtypes.as_dtype(dtype), stateful=False)
        return tf.reshape(dense, tf.concat([tf.shape(data), tf.constant(shape, tf.int32)], 0))

    @classmethod
    def from_json_content(cls, value: dict, doc: Any = None) -> "CompactTensor":
        return cls(shape=tuple(value["shape"]), dtype=np.dtype(value["dtype"]), doc=doc)

    def to_json_content(self) -> dict:
        return {"shape": list(self._shape), "dtype": self._np_dtype.name}
