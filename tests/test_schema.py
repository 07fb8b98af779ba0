"""The one sample definition and the encodings derived from it (schemas/)."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.actions.action import Action

from pipeline.sampling.rule import sample_windows
from pipeline.sampling.assembly import build_samples
from schemas import layer_codec, layers
from schemas.sample import Group, SampleSchema, SchemaError, sample_key

SCHEMA = SampleSchema(16, 8)  # small resolutions keep the test fast


def random_sample(schema: SampleSchema, rng: np.random.Generator, i: int) -> dict:
    """A sample with every field set to a random, in-range value."""
    sample = {}
    for field in schema.fields:
        if field.is_string:
            sample[field.name] = f"{field.name}-{i}-é"
        elif field.is_array:
            info = np.iinfo(field.np_dtype)
            hi = min(info.max, 70000)
            lo = max(info.min, -5)
            value = rng.integers(lo, hi, field.shape, endpoint=True).astype(field.np_dtype)
            if field.compact and (i + len(sample)) % 3 == 0:      # all zeros: elided
                value[...] = 0
            elif field.compact and (i + len(sample)) % 3 == 1:    # a few runs
                flat = value.reshape(-1)
                flat[:] = 0
                for start in rng.integers(0, flat.size, 4):
                    flat[start:start + int(rng.integers(1, 9))] = rng.integers(1, hi)
            sample[field.name] = value
        else:
            info = np.iinfo(field.np_dtype)
            sample[field.name] = int(rng.integers(max(info.min, -(2**31)), min(info.max, 2**31 - 1)))
    return sample


def assert_samples_equal(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert b[name].dtype == a[name].dtype, name
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert a[name] == b[name], name


def test_layers_match_pysc2():
    from pipeline.pysc2_compat import pysc2_modules
    pysc2 = pysc2_modules()
    features, actions = pysc2.features, pysc2.actions
    for ours, theirs in ((layers.MINIMAP_LAYERS, features.MINIMAP_FEATURES),
                         (layers.SCREEN_LAYERS, features.SCREEN_FEATURES)):
        assert [(l.name, l.scale, l.type.value) for l in ours] == [
            (f.name, f.scale, f.type.name.lower()) for f in theirs]
    assert layers.PLAYER_FEATURES == tuple(p.name for p in features.Player)
    assert layers.NUM_FUNCTIONS == len(actions.FUNCTIONS)
    assert actions.FUNCTIONS[layers.NO_OP].name == "no_op"
    assert [(a.name, a.sizes) for a in layers.ARGUMENT_TYPES] == [
        (t.name, () if t.sizes == (0, 0) else tuple(t.sizes)) for t in actions.TYPES]


def test_field_list_is_complete_and_narrow():
    assert len(SCHEMA.minimap_fields) == 11 and len(SCHEMA.screen_fields) == 27
    assert SCHEMA.by_name["screen_unit_type"].dtype == "uint16"   # 1962 values
    assert SCHEMA.by_name["screen_player_relative"].dtype == "uint8"
    assert SCHEMA.by_name["screen_unit_hit_points"].dtype == "uint16"
    assert SCHEMA.by_name["screen_unit_type"].shape == (16, 16)
    assert SCHEMA.by_name["minimap_camera"].shape == (8, 8)
    assert SCHEMA.by_name["available_actions"].shape == (573,)
    assert [f.name for f in SCHEMA.fields if f.group == Group.TARGET][:2] == [
        "function_id", "arg_screen"]
    assert all(f.doc for f in SCHEMA.fields)
    assert len(SampleSchema().fields) == len(SCHEMA.fields)


def test_parquet_and_tfrecord_round_trip_equal(tmp_path):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    samples = [random_sample(SCHEMA, rng, i) for i in range(5)]
    for s in samples:
        SCHEMA.validate(s)

    # Parquet, through a real file.
    pq.write_table(SCHEMA.to_arrow(samples), tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.schema.equals(SCHEMA.arrow_schema, check_metadata=False)
    from_parquet = SCHEMA.from_arrow(table)

    # TFRecord (GZIP), through a real file and tf.data parsing.
    path = str(tmp_path / "s.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for s in samples:
            writer.write(SCHEMA.to_example(s))
    ds = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(2)
    ds = ds.map(lambda x: SCHEMA.tf_decode(tf.io.parse_example(x, SCHEMA.tf_feature_spec())))
    from_tf = []
    for batch in ds.as_numpy_iterator():
        for i in range(len(batch["replay_id"])):
            row = {}
            for field in SCHEMA.fields:
                value = batch[field.name][i]
                row[field.name] = (value.decode() if field.is_string else
                                   value if field.is_array else int(value))
            from_tf.append(row)
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    from_example = [SCHEMA.from_example(r) for r in records]

    assert len(from_parquet) == len(from_tf) == len(from_example) == len(samples)
    for original, a, b, c in zip(samples, from_parquet, from_tf, from_example):
        assert_samples_equal(original, a)
        assert_samples_equal(original, b)
        assert_samples_equal(original, c)


def test_tfds_features_round_trip():
    rng = np.random.default_rng(1)
    sample = random_sample(SCHEMA, rng, 0)
    features = SCHEMA.tfds_features()
    assert set(features.keys()) == set(SCHEMA.by_name)
    decoded = features.deserialize_example(features.serialize_example(sample))
    for field in SCHEMA.fields:
        value = decoded[field.name].numpy()
        if field.is_string:
            assert value.decode() == sample[field.name]
        elif field.is_array:
            np.testing.assert_array_equal(value, sample[field.name])
        else:
            assert int(value) == sample[field.name]


def test_validate_names_what_is_wrong():
    sample = random_sample(SCHEMA, np.random.default_rng(2), 0)
    bad = dict(sample, screen_unit_type=sample["screen_unit_type"].astype(np.int32))
    with pytest.raises(SchemaError, match="screen_unit_type: dtype"):
        SCHEMA.validate(bad)
    bad = dict(sample)
    del bad["value"]
    with pytest.raises(SchemaError, match="missing fields \\['value'\\]"):
        SCHEMA.validate(bad)
    with pytest.raises(SchemaError, match="minimap_camera: expected array"):
        SCHEMA.validate(dict(sample, minimap_camera=np.zeros((16, 16), np.uint8)))


def test_build_samples_joins_windows_observations_and_labels():
    actions = [Action(3, 12, {"queued": 1, "screen": (4, 5)})]
    windows = sample_windows(12, actions, {0: [0, 1], 3: [0, 1, 12], 8: [0, 1]})
    observations = {}
    for loop in (0, 8):
        obs = SCHEMA.empty_observation()
        obs["minimap_camera"][1, 2] = 1
        obs["player"][1] = 50 + loop
        observations[loop] = obs
    samples = build_samples(
        SCHEMA, replay_id="ab" * 32, player_id=2,
        context={"map_name": "Curious Minds", "race": "Zerg", "mmr": 4000, "game_loops": 12},
        windows=windows, observations=observations, source="events",
        unavailable_layers=["screen_height_map", "minimap_creep"], has_tracker_events=True,
        outcome="tie")
    assert len(samples) == 2
    for s in samples:
        SCHEMA.validate(s)
    first, second = samples
    assert (first["function_id"], first["arg_queued"]) == (12, 1)
    assert first["arg_screen"].tolist() == [4, 5]
    assert first["arg_minimap"].tolist() == [-1, -1] and first["arg_control_group_id"] == -1
    assert np.flatnonzero(first["available_actions"]).tolist() == [0, 1, 12]
    assert second["function_id"] == 0 and second["player"][1] == 58
    assert first["value"] == 0 and first["outcome"] == "tie"
    assert first["opponent_mmr"] == -1 and first["mmr"] == 4000
    assert first["unavailable_layers"] == "minimap_creep,screen_height_map"
    assert sample_key(first["replay_id"], first["player_id"], first["game_loop"]) == \
        "ab" * 32 + "_2_0"
    with pytest.raises(SchemaError, match="no observation"):
        build_samples(SCHEMA, replay_id="x", player_id=1, context={}, windows=windows,
                      observations={0: observations[0]}, source="events",
                      unavailable_layers=[], has_tracker_events=False, outcome="win")


def test_example_bytes_parse_to_the_message_protobuf_builds():
    """schemas.example_wire writes Examples without protobuf objects: the
    bytes parse to exactly the message built with the protobuf classes
    (negative and 64-bit integers, UTF-8 strings, every array dtype)."""
    from tensorflow.core.example import example_pb2, feature_pb2
    rng = np.random.default_rng(5)
    samples = []
    for i in range(4):
        sample = random_sample(SCHEMA, rng, i)
        samples.append(sample)
        sample["game_loop"], sample["mmr"] = -(2**31), -1
        sample["function_id"] = 2**31 - 1
        feature = {}
        for field in SCHEMA.fields:
            value = sample[field.name]
            if field.is_string:
                feature[field.name] = feature_pb2.Feature(
                    bytes_list=feature_pb2.BytesList(value=[value.encode("utf-8")]))
            elif field.compact:
                feature[field.name] = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
                    value=[layer_codec.encode(value)]))
            elif field.is_array:
                feature[field.name] = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(
                    value=[value.astype(field.np_dtype.newbyteorder("<")).tobytes()]))
            else:
                feature[field.name] = feature_pb2.Feature(
                    int64_list=feature_pb2.Int64List(value=[int(value)]))
        built = example_pb2.Example(features=feature_pb2.Features(feature=feature))
        assert example_pb2.Example.FromString(SCHEMA.to_example(sample)) == built
    # A shard's rows are encoded field by field: the same bytes as one by one.
    assert SCHEMA.to_examples(samples) == [SCHEMA.to_example(s) for s in samples]
    sample["screen_unit_type"] = np.zeros((3, 3), np.uint16)
    with pytest.raises(ValueError, match="screen_unit_type"):
        SCHEMA.to_example(sample)


def test_to_arrow_constant_columns_equal_row_by_row_arrays():
    """A compact field that is one byte string in every row (empty or not)
    is built from buffers at once; it must equal pyarrow's own row-by-row
    array, and the small vectors' joined values must equal the samples'."""
    import pyarrow as pa
    rng = np.random.default_rng(3)
    samples = [random_sample(SCHEMA, rng, i) for i in range(4)]
    shared = samples[0]["screen_unit_type"].copy()
    shared[3, 5] = 17
    for s in samples:
        s["screen_unit_type"] = shared                       # the same object throughout
        s["minimap_camera"] = np.zeros_like(s["minimap_camera"])
    columns = SCHEMA.encode_columns(samples)
    table = SCHEMA.to_arrow(columns=columns)
    for name in ("screen_unit_type", "minimap_camera"):
        assert table.column(name).combine_chunks().equals(
            pa.array(columns[name], type=pa.binary()))
    for original, back in zip(samples, SCHEMA.from_arrow(table)):
        assert_samples_equal(original, back)
