"""trainers.predict: one real replay through a tiny model trained on another.

The model is trained for a few steps on the real pipeline's output (Beam,
engine-free source, 32x32) of one short replay (conftest's ``dream_spirit``),
then predicts on a replay it never saw (``serral_dark``); the checks compare
against what the source and the trainer's own Example path give for that
replay, and against the replay's real result.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import (FILTERED_REPLAY, PIPELINE_REPLAYS, REPLAYS, expected_samples,
                      pipeline_argv, require_shared)
from pipeline.index import scan
from pipeline.replay import storage
from pipeline.replay.archive import ReplayArchive
from pipeline.sources.registry import source_spec
from schemas.sample import SampleSchema
from trainers import inference
from trainers import predict as predict_lib
from trainers import train as train_lib
from trainers.action_space import function_names
from trainers.input import read_fields, to_model_batch

RES = 32            # the smallest resolution beam_runner's TFDS step accepts
UNSEEN = "serral_dark"


def replay_path(name: str) -> str:
    return str(REPLAYS / PIPELINE_REPLAYS[name][0])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step Atari-net (game time input on) trained on ``dream_spirit`` only."""
    require_shared()
    import beam_runner
    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    beam_runner.run(pipeline_argv(
        [replay_path("dream_spirit")], data,
        ["--resolution", str(RES), "--formats", "tfrecord",
         "--direct_num_workers=1", "--direct_running_mode=in_memory"]))
    run = root / "run"
    train_lib.train(train_lib.TrainConfig(data=str(data), model="atari_net", out=str(run),
                                          steps=2, batch_size=8, log_every=1,
                                          shuffle_buffer=64, game_time=True),
                    log=lambda message: None)
    return run


@pytest.fixture(scope="module")
def unseen_samples():
    """The unseen replay's scan and samples, straight from the events source."""
    path = replay_path(UNSEEN)
    archive = ReplayArchive(storage.read_bytes(path), path=path)
    row, players = scan.scan_replay(archive)
    source = source_spec("events", step_mul=8, fog=True).build(SampleSchema(RES, RES))
    return row, players, source.replay_samples(archive, scan.player_contexts(row, players))


@pytest.fixture(scope="module")
def result(tiny_run):
    return predict_lib.predict_replay(str(tiny_run), replay_path(UNSEEN), checkpoint="latest",
                                      batch_size=64, moments=4)


def test_predicts_both_players_of_an_unseen_replay(tiny_run, unseen_samples, result):
    row, player_rows, by_player = unseen_samples
    assert result["replay"]["replay_id"] == row["replay_id"]
    assert result["replay"]["game_loops"] == PIPELINE_REPLAYS[UNSEEN][1] == 4011
    checkpoint = result["model"]["checkpoint"]
    assert (checkpoint["selected"], checkpoint["step"]) == ("latest", 2)
    assert checkpoint["path"].startswith(str(tiny_run / "checkpoints" / "ckpt-"))
    assert result["model"]["data_settings"] == {"source_name": "events", "step_mul": 8,
                                                "fog": True, "resolution": RES,
                                                "assumed": []}
    # Serral (player 2) beat Dark (player 1): the replay's own result.
    results = {p["player_id"]: p["result"] for p in player_rows}
    assert results == {1: "loss", 2: "win"}
    players = {p["player_id"]: p for p in result["players"]}
    assert sorted(players) == [1, 2]
    assert {pid: p["outcome"] for pid, p in players.items()} == results
    assert players[2]["name"] == "Serral" and players[1]["race"] == "Zerg"
    assert result["final"]["actual_winner"] == 2
    total = 0
    for pid, p in players.items():
        samples = by_player[pid]
        series = p["series"]
        assert p["samples"] == len(samples) == len(series["win_probability"])
        total += len(samples)
        assert series["game_loop"] == [s["game_loop"] for s in samples]
        probs = np.array(series["win_probability"])
        assert np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1))
        available = {s["game_loop"]: s["available_actions"] for s in samples}
        assert [m["fraction"] for m in p["moments"]] == [0.25, 0.5, 0.75, 1.0]
        assert p["moments"][-1]["game_loop"] == samples[-1]["game_loop"]
        for m in p["moments"]:
            acts = m["top_actions"]
            assert 1 <= len(acts) <= predict_lib.TOP_K
            assert sum(a["probability"] for a in acts) <= 1.0 + 1e-6
            for a in acts:
                assert 0.0 < a["probability"] <= 1.0
                assert available[m["game_loop"]][a["function_id"]] == 1
                assert a["function"] == function_names()[a["function_id"]]
        # The end-of-game call, recomputed from the series.
        loops = np.array(series["game_loop"])
        mean = probs[loops >= 0.75 * 4011].mean()
        call = next(c for c in result["final"]["players"] if c["player_id"] == pid)
        assert call["mean_win_probability"] == pytest.approx(mean, abs=1e-6)
        assert call["correct"] == ((mean > 0.5) == (p["outcome"] == "win"))
    assert total == expected_samples(4011)


def test_inputs_are_the_trainers_example_path(tiny_run, unseen_samples, result):
    """The predictor's decoded batch equals what training parses from the
    samples' tf.train.Example encoding, and gives the same win probability."""
    loaded = inference.load(str(tiny_run), "latest")
    spec = loaded.spec
    samples = unseen_samples[2][1][200:210]
    schema = spec.schema
    names = read_fields(spec)
    parsed = schema.tf_decode(tf.io.parse_example(tf.constant(schema.to_examples(samples)),
                                                  schema.tf_feature_spec(names)))
    direct = predict_lib.decoded_batch(samples, spec)
    assert sorted(direct) == sorted(parsed)
    for name in names:
        assert direct[name].dtype == parsed[name].dtype, name
        np.testing.assert_array_equal(direct[name].numpy(), parsed[name].numpy(), name)
    inputs, _, _ = to_model_batch(parsed, spec)
    assert "game_time" in inputs
    expected = tf.sigmoid(loaded.model(inputs, training=False)["value"]).numpy()
    got = result["players"][0]["series"]["win_probability"][200:210]
    np.testing.assert_allclose(got, expected, atol=2e-6)


def assert_same_prediction(got: dict, want: dict, same_checkpoint_info: bool = True) -> None:
    """Equal, except win probabilities and top-action probabilities, which
    must agree to 1e-5 (two loads of one model, multithreaded kernels)."""
    if same_checkpoint_info:
        assert got["model"] == want["model"] and got["replay"] == want["replay"]
    for mine, theirs in zip(got["players"], want["players"]):
        assert mine["series"]["game_loop"] == theirs["series"]["game_loop"]
        np.testing.assert_allclose(mine["series"]["win_probability"],
                                   theirs["series"]["win_probability"], atol=1e-5)
        for a, b in zip(mine["moments"], theirs["moments"]):
            assert [x["function"] for x in a["top_actions"]] == \
                [x["function"] for x in b["top_actions"]]
            np.testing.assert_allclose([x["probability"] for x in a["top_actions"]],
                                       [x["probability"] for x in b["top_actions"]],
                                       atol=1e-5)


def test_main_writes_json_and_png_deterministically(tiny_run, result, tmp_path, capsys):
    argv = ["--run", str(tiny_run), "--replay", replay_path(UNSEEN), "--checkpoint", "latest"]
    assert predict_lib.main(argv + ["--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    assert "end-of-game call" in printed.out and "actual winner: player 2" in printed.out
    assert "player 2 Zerg vs Zerg: won" in printed.out
    assert printed.out.count("[did: ") == 2 * 4
    first = (tmp_path / "a" / "prediction.json").read_bytes()
    # The same call in this process; across separately loaded models the
    # multithreaded kernels may differ in the last float digit.
    assert_same_prediction(json.loads(first), result)
    png = (tmp_path / "a" / "win_probability.png").read_bytes()
    assert len(png) > 10_000 and png[:4] == b"\x89PNG"
    assert predict_lib.main(argv + ["--out", str(tmp_path / "b"), "--moments", "4"]) == 0
    assert (tmp_path / "b" / "prediction.json").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["prediction.json",
                                                                   "win_probability.png"]


def test_bad_inputs_are_one_line_errors(tiny_run, tmp_path, capsys):
    text = tmp_path / "notes.SC2Replay"
    text.write_text("this is not a replay\n" * 20)
    cases = {str(text): "not a usable replay",
             str(tmp_path / "missing.SC2Replay"): "no such file",
             str(REPLAYS / FILTERED_REPLAY[0]): "two human players"}  # a game vs the AI
    for replay, why in cases.items():
        assert predict_lib.main(["--run", str(tiny_run), "--replay", replay,
                                 "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sc2-predict: error: ") and err.count("\n") == 1, err
        assert replay in err and why in err, err
    assert not (tmp_path / "out").exists()
    no_run = str(tmp_path / "no_run")
    assert predict_lib.main(["--run", no_run, "--replay", replay_path(UNSEEN)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sc2-predict: error: ") and err.count("\n") == 1, err
    assert no_run in err, err


def test_final_call_without_samples_in_the_last_quarter_uses_the_last_one():
    players = [{"player_id": 1, "outcome": "win",
                "series": {"game_loop": [0, 8], "win_probability": [0.2, 0.7]}},
               {"player_id": 2, "outcome": "loss",
                "series": {"game_loop": [0, 8], "win_probability": [0.6, 0.4]}}]
    final = predict_lib.final_call(players, game_loops=100)
    assert [c["mean_win_probability"] for c in final["players"]] == [0.7, 0.4]
    assert final["predicted_winner"] == 1 and final["winner_correct"]
    assert math.isclose(final["from_game_loop"], 75)


def test_a_training_checkpoint_restores_every_weight(tiny_run):
    """Two loads under different random seeds give the same weights: none is
    left at its initial value (``inference.verify_restored`` also compares
    each with the checkpoint)."""
    import keras
    loads = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        loads.append(inference.load(tiny_run, "latest").model.get_weights())
    assert len(loads[0]) == len(loads[1]) > 10
    assert all(np.array_equal(a, b) for a, b in zip(*loads))


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' h5
def test_a_shipped_model_directory_predicts_the_same(tiny_run, result, tmp_path):
    """A shipped model (Keras weights file + config, checkpoint and data
    fingerprints, as ``trainers.inference`` reads it) of the same weights
    gives the same series, with every weight restored."""
    loaded = inference.load(str(tiny_run), "latest")
    shipped = tmp_path / "model"
    shipped.mkdir()
    loaded.model.save_weights(str(shipped / inference.WEIGHTS_NAME))
    (shipped / "config.json").write_text((tiny_run / "config.json").read_text())
    (shipped / inference.CHECKPOINT_INFO_NAME).write_text(json.dumps(
        {"run": str(tiny_run), "step": loaded.checkpoint["step"]}))
    (shipped / inference.DATA_FINGERPRINT_NAME).write_text(json.dumps(
        {"data_config": loaded.data_config}))
    other = predict_lib.predict_replay(str(shipped), replay_path(UNSEEN))
    assert other["model"]["checkpoint"] == {"selected": "shipped", "step": 2}
    assert_same_prediction(other, result, same_checkpoint_info=False)


# ------------------------------------------------------------ hostile files
HOSTILE_LIMIT_MB = 1024


def _no_control_characters(text: str) -> bool:
    import unicodedata
    return not any(unicodedata.category(c) == "Cc" for c in text.replace("\n", ""))


def test_hostile_replays_end_in_one_line_within_the_limit(tiny_run, tmp_path, capsys):
    """trainers.predict on each of ../shared/hostile-replays: one line naming
    the pipeline's category, or (the mathtext title) a prediction whose
    plot draws the title as text; the child that reads the file stays under
    the memory limit."""
    from conftest import SHARED
    from pipeline.replay.bounded_process import children_peak_bytes
    from test_hostile_replays import EXPECTED
    hostile = SHARED / "hostile-replays"
    if not hostile.is_dir():
        pytest.skip(f"hostile replays not found at {hostile}")
    for name, expected in sorted(EXPECTED.items()):
        replay = str(hostile / f"{name}.SC2Replay")
        out = tmp_path / name
        rc = predict_lib.main(["--run", str(tiny_run), "--replay", replay, "--out", str(out),
                               "--checkpoint", "latest",
                               "--memory_limit_mb", str(HOSTILE_LIMIT_MB)])
        printed = capsys.readouterr()
        assert _no_control_characters(printed.out + printed.err), name
        if expected is None:
            assert rc == 0 and printed.err == "", (name, printed.err)
            assert "Map $\\\\frac{$ x" in printed.out        # shown escaped
            result = json.loads((out / "prediction.json").read_text())
            assert result["replay"]["map"] == "Map $\\frac{$ x"  # the data keeps it
            assert (out / "win_probability.png").stat().st_size > 10_000
        else:
            assert rc == 2 and printed.out.count("\n") <= 1, (name, printed.out)
            assert printed.err.startswith("sc2-predict: error: ")
            assert printed.err.count("\n") == 1 and f"({expected[1]}: " in printed.err
            assert not out.exists()
    assert 0 < children_peak_bytes() <= HOSTILE_LIMIT_MB * 2 ** 20


def test_replay_strings_are_escaped_on_the_console_and_kept_in_the_data(tiny_run, tmp_path,
                                                                       capsys):
    """A game whose player name, races and map title hold terminal escape
    sequences (OSC title, clear line, cursor up, NUL, CR/LF) and mathtext:
    the console shows them escaped, the plot is drawn, prediction.json keeps
    the original strings."""
    from support import bad_replays
    data = open(replay_path(UNSEEN), "rb").read()
    details = bad_replays._details(data)
    players = details["m_playerList"]
    evil_map = "\x1b]0;pwned\x07Map $\\frac{$ x\x1b[2K\r\n\x00"
    evil_race = "\x1b[31mZerg\x1b[1A\n../\x00"
    edited = bad_replays.replace_blob(data, "replay.details", details["m_title"],
                                      evil_map.encode())
    edited = bad_replays.replace_blob(edited, "replay.details", players[0]["m_race"],
                                      evil_race.encode())
    edited = bad_replays.replace_blob(edited, "replay.details", players[1]["m_name"],
                                      b"\x1b[2J\x1b[HSerral\r\nforged")
    edited = bad_replays._metadata(edited, lambda t: t.replace('"AssignedRace": "',
                                                               '"AssignedRace": "x'))
    replay = tmp_path / "evil.SC2Replay"
    replay.write_bytes(edited)
    out = tmp_path / "out"
    assert predict_lib.main(["--run", str(tiny_run), "--replay", str(replay), "--out", str(out),
                             "--checkpoint", "latest"]) == 0
    printed = capsys.readouterr()
    assert _no_control_characters(printed.out + printed.err)
    assert "\\x1b]0;pwned\\x07Map $\\\\frac{$ x\\x1b[2K\\r\\n\\x00" in printed.out
    assert "\\x1b[31mZerg\\x1b[1A\\n../\\x00" in printed.out
    result = json.loads((out / "prediction.json").read_text())
    assert result["replay"]["map"] == evil_map
    assert {p["race"] for p in result["players"]} == {evil_race}
    assert result["players"][1]["name"] == "\x1b[2J\x1b[HSerral\r\nforged"
    assert (out / "win_probability.png").stat().st_size > 10_000
