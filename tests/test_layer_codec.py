"""The compact layer encoding (schemas/layer_codec.py): exact round trips,
the smallest form chosen, and clear errors for bytes that do not fit."""
import numpy as np
import pytest

from schemas import layer_codec
from schemas.layer_codec import CodecError


def test_all_zero_layers_cost_nothing():
    assert layer_codec.encode(np.zeros((64, 64), np.uint16)) == b""
    out = layer_codec.decode(b"", np.uint16, (64, 64))
    assert out.dtype == np.uint16 and out.shape == (64, 64) and not out.any()


def test_a_disc_on_an_empty_map_is_run_length_coded_exactly():
    layer = np.zeros((64, 64), np.uint16)
    yy, xx = np.mgrid[:64, :64]
    layer[(yy - 20) ** 2 + (xx - 30) ** 2 <= 9] = 1962        # a unit type id
    layer[5, 60:] = 7                                         # a run to the row's end
    data = layer_codec.encode(layer)
    assert data[0] == layer_codec.RUNS
    runs = int.from_bytes(data[1:5], "little")
    # Each of the disc's 7 rows is a run and so is the gap before it; then the
    # tail row of 7s (and the zeros around it).
    assert len(data) == 5 + runs * 4 and runs == 17
    np.testing.assert_array_equal(layer_codec.decode(data, np.uint16, (64, 64)), layer)


def test_noise_is_stored_raw():
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    data = layer_codec.encode(layer)
    assert data[0] == layer_codec.RAW and len(data) == 1 + 32 * 32
    np.testing.assert_array_equal(layer_codec.decode(data, np.uint8, (32, 32)), layer)


def test_runs_longer_than_uint16_are_split():
    layer = np.full((300, 300), 3, np.int32)                  # 90,000 cells, one value
    data = layer_codec.encode(layer)
    assert data[0] == layer_codec.RUNS and int.from_bytes(data[1:5], "little") == 2
    np.testing.assert_array_equal(layer_codec.decode(data, np.int32, (300, 300)), layer)


def test_encode_rows_equals_encoding_each_row():
    rng = np.random.default_rng(1)
    rows = np.zeros((20, 16, 16), np.uint8)
    for i in range(1, 20, 2):
        rows[i, rng.integers(0, 16), :] = i                   # one stripe per odd row
    rows[4] = rng.integers(0, 4, (16, 16))                    # a noisy one
    encoded = layer_codec.encode_rows(rows)
    assert encoded == [layer_codec.encode(r) for r in rows]
    assert encoded[0] == b"" and encoded[4][0] == layer_codec.RAW
    np.testing.assert_array_equal(layer_codec.decode_rows(encoded, np.uint8, (16, 16)), rows)


@pytest.mark.parametrize("data", [b"\x07", b"\x00\x01\x02", b"\x01\x01\x00\x00\x00\x05\x00\x01",
                                  b"\x01\x01\x00\x00\x00\x05\x00\x01\x00\x02"])
def test_bytes_that_do_not_fit_raise_codec_error(data):
    with pytest.raises(CodecError):
        layer_codec.decode(data, np.uint16, (4, 4))


def test_rows_longer_than_uint16_encode_alike_zero_or_not():
    """Rows past MAX_RUN cells: an all-zero one costs nothing though its
    runs are split, and rows coded together equal rows coded alone."""
    rows = np.zeros((3, 300, 300), np.int32)
    rows[1, 150:] = 9
    rows[2, 0, 0] = -4
    encoded = layer_codec.encode_rows(rows)
    assert encoded[0] == b"" and encoded == [layer_codec.encode(r) for r in rows]
    assert int.from_bytes(encoded[1][1:5], "little") == 3     # 0s | 9s split at 65,535
    np.testing.assert_array_equal(layer_codec.decode_rows(encoded, np.int32, (300, 300)), rows)
