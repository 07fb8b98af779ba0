"""A trained model evaluated on another pipeline output, exported, and
evaluated again from the exported directory (issues #16 and #20).

Real replays throughout: the session's pipeline run (``conftest.pipeline_run``,
three short 2022 games: one per split) trains a tiny Atari-net; a second
pipeline output is built from one more real replay the model never saw.
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPLAYS, pipeline_argv

from schemas.run_output import Manifest  # noqa: E402
from trainers import evaluate as evaluate_lib  # noqa: E402
from trainers import export as export_lib  # noqa: E402
from trainers import inference  # noqa: E402
from trainers import train as train_lib  # noqa: E402
from trainers.input import TrainerInputError  # noqa: E402

# Not in the session run's inputs: a 2022 ZvZ the tiny model never sees.
OTHER_REPLAY = ("python-sc2/20220227 - GAME 2 - Reynor vs Serral - Z vs Z - "
                "Berlingrad LE.SC2Replay")


def _beam(inputs: list[str], output: Path, extra: list[str] = ()) -> dict:
    import beam_runner
    return beam_runner.run(pipeline_argv(inputs, output, ["--direct_num_workers=1",
                                                          "--direct_running_mode=in_memory",
                                                          "--max_game_loops", "0", *extra]))


@pytest.fixture(scope="module")
def tiny_run(pipeline_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("release") / "run"
    # Atari-net: the cheapest model to run at 64x64, with layers Keras 3 keeps
    # in lists (the bare-restore test needs them).
    train_lib.train(train_lib.TrainConfig(
        data=str(pipeline_run.output), model="atari_net", out=str(run), steps=4,
        batch_size=8, log_every=2, validation_every=2, validation_samples=64,
        game_time=True), log=lambda m: None)
    return run


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    path = REPLAYS / OTHER_REPLAY
    if not path.exists():
        pytest.skip(f"{path} not found")
    out = tmp_path_factory.mktemp("other") / "data"
    _beam([str(path)], out, ["--splits", "test=1.0"])
    return out


def test_evaluate_on_another_pipeline_output_uses_the_runs_baselines(
        pipeline_run, tiny_run, other_data, tmp_path):
    manifest = Manifest.load(str(other_data))
    report = evaluate_lib.evaluate(str(other_data), str(tiny_run), "all", batch_size=128,
                                   resamples=50, plots=False, out=tmp_path / "eval")
    assert report["selection"] == "test"
    assert report["samples"] == manifest.counts.samples_total > 0
    assert report["replays"] == 1
    # The baselines were fitted on the run's training data, not on OTHER_DIR
    # (which has no train split at all), and saved beside the run.
    fitted = report["baselines"]["fitted_on"]
    assert fitted["data"] == str(pipeline_run.output) and fitted["train"] == "train"
    assert (tiny_run / "baselines.json").exists()
    # One decisive game: both players' windows, half of them wins.
    assert report["baselines"]["majority_outcome"]["value_accuracy"]["mean"] == \
        pytest.approx(0.5, abs=0.01)
    # The last quarter is the windows at or after 75% of the game.
    loops = manifest_game_loops(other_data)
    assert report["metrics"]["value_accuracy_last_quarter"]["n"] == \
        2 * sum(1 for loop in range(0, loops, 8) if loop >= 0.75 * loops)
    assert [row["key"] for row in report["value_accuracy_by_matchup"]] == ["ZvZ"]
    assert [row["key"] for row in report["value_accuracy_by_version"]] == ["5.0"]
    # every=k: every k-th window of each shard (every shard, so every replay).
    strided = evaluate_lib.evaluate(str(other_data), str(tiny_run), "all", batch_size=128,
                                    resamples=50, plots=False, every=5,
                                    out=tmp_path / "eval5")
    shards = manifest.shards["tfrecord"]["test"]
    assert len(shards) > 1
    assert strided["samples"] == sum(-(-s.num_samples // 5) for s in shards)


def manifest_game_loops(data: Path) -> int:
    import pyarrow.parquet as pq
    table = pq.read_table(data / "index" / "replays.parquet",
                          columns=["game_loops", "status"]).to_pylist()
    (row,) = [r for r in table if r["status"] == "ok"]
    return int(row["game_loops"])


def test_data_made_another_way_is_refused_in_one_line(tiny_run, other_data, tmp_path,
                                                      capsys):
    # The same replay at step_mul 16: same layers and resolution, other windows.
    other = tmp_path / "step16"
    _beam([str(REPLAYS / OTHER_REPLAY)], other, ["--splits", "test=1.0", "--step_mul", "16"])
    capsys.readouterr()                   # the pipeline's progress lines
    code = evaluate_lib.main(["--data", str(other), "--run", str(tiny_run), "--split", "all",
                              "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("sc2-evaluate: error: ") and "step_mul is 16" in err[0]
    assert not (tmp_path / "eval").exists()


def test_export_ships_weights_config_fingerprint_and_reproduces_evaluation(
        pipeline_run, tiny_run, other_data, tmp_path):
    model_dir = tmp_path / "models" / "tiny"
    export_lib.export(str(tiny_run), str(model_dir), log=lambda m: None)
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["baselines.json", "checkpoint.json", "config.json", "data.json",
                     "model.weights.h5", "train_replays.txt.gz"]
    assert sum(p.stat().st_size for p in model_dir.iterdir()) < export_lib.MAX_MODEL_BYTES
    # The training replays: the session run's train split (one replay).
    ids = gzip.decompress((model_dir / "train_replays.txt.gz").read_bytes()).decode().split()
    data = json.loads((model_dir / "data.json").read_text())
    assert data["train"]["replays"] == len(ids) == 1
    assert data["train"]["replay_ids_sha256"] == export_lib.replay_ids_digest(ids)
    assert data["data_config"] == {"source_name": "events", "resolution": 64,
                                   "step_mul": 8, "fog": True}
    assert data["matchups"] == {"TvT": 1}
    # Re-export gives the same files (the HDF5 file embeds Keras's per-process
    # layer names, so its weights are compared as arrays).
    again = tmp_path / "models" / "tiny2"
    export_lib.export(str(tiny_run), str(again), log=lambda m: None)
    for name in ("baselines.json", "data.json", "train_replays.txt.gz"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name
    first, second = (inference.load(d).model.get_weights() for d in (model_dir, again))
    assert len(first) == len(second) > 10
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # The shipped model predicts exactly what the run's selected checkpoint does.
    from_run = evaluate_lib.evaluate(str(other_data), str(tiny_run), "all", batch_size=128,
                                     resamples=50, plots=False, every=8, out=tmp_path / "a")
    shipped = evaluate_lib.evaluate(str(other_data), str(model_dir), "all", batch_size=128,
                                    resamples=50, plots=False, every=8, out=tmp_path / "b")
    assert shipped["checkpoint"]["selected"] == "shipped"
    assert shipped["step"] == from_run["step"]
    for key in ("metrics", "baselines", "model_minus_baseline",
                "value_accuracy_by_game_time"):
        assert shipped[key] == from_run[key], key
    # Without the training data the shipped model still evaluates (baselines
    # travel with it); a training run without its data cannot fit them.
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    config["data"] = str(tmp_path / "nowhere")
    (moved / "config.json").write_text(json.dumps(config))
    elsewhere = evaluate_lib.evaluate(str(other_data), str(moved), "all", batch_size=128,
                                      resamples=50, plots=False, every=8, out=tmp_path / "c")
    assert elsewhere["metrics"] == from_run["metrics"]


def test_loaded_model_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        inference.load(tmp_path)


def test_eval_report_value_accuracy_matches_a_hand_count(tiny_run, other_data, tmp_path):
    report = evaluate_lib.evaluate(str(other_data), str(tiny_run), "test", batch_size=128,
                                   resamples=50, plots=False, every=4, out=tmp_path)
    loaded = inference.load(tiny_run)
    p = evaluate_lib.predict(loaded, str(other_data), "test", 128, log=lambda m: None,
                             every=4)
    expected = float(np.mean((p["value_prob"] > 0.5) == (p["value"] > 0.5)))
    assert report["metrics"]["value_accuracy"]["mean"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(TrainerInputError):
        evaluate_lib.split_selection(tmp_path, "all")


def test_a_checkpoint_restored_into_the_bare_model_is_caught(tiny_run):
    """Restoring a training checkpoint into the model alone misses the weights
    of layers Keras 3 keeps in lists (saved only under the optimizer's list):
    ``verify_restored`` says so; through the training graph all are found."""
    import tensorflow as tf
    config = train_lib.load_config(tiny_run)
    config.out = str(tiny_run)
    path = inference.choose_checkpoint(tiny_run, "latest")["path"]
    bare = inference.build(config)
    tf.train.Checkpoint(model=bare).restore(path).expect_partial()
    with pytest.raises(TrainerInputError, match="does not hold the weight"):
        inference.verify_restored(bare, path)
    inference.verify_restored(inference.load(tiny_run, "latest").model, path)
