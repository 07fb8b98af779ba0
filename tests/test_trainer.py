"""Trainer: input pipeline, models, masking, losses, checkpoint resume, evaluation.

Runs on tiny synthetic shards (tests/support/trainer_synthetic.py, 16x16) so the whole
file stays fast; the real-data numbers are in docs/results.md.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from schemas import layers  # noqa: E402
from trainers import evaluate as evaluate_lib  # noqa: E402
from trainers import inference  # noqa: E402
from trainers import train as train_lib  # noqa: E402
from trainers.action_space import function_arguments  # noqa: E402
from schemas.run_output import Manifest
from trainers.input import (FeatureSpec, TrainerInputError, make_dataset,  # noqa: E402
                            manifest_unavailable_layers)
from trainers.losses import compute_losses  # noqa: E402
from trainers.models import MODEL_NAMES, build_model  # noqa: E402

RES = 16


@pytest.fixture(scope="module")
def data(synthetic_data):  # conftest: shared synthetic shards, RES x RES
    return synthetic_data


@pytest.fixture(scope="module")
def spec():
    return FeatureSpec.create(RES, RES)


def first_batch(data_dir, spec, batch_size=8):
    ds = make_dataset(data_dir, "train", spec, batch_size=batch_size, shuffle=False,
                      repeat=False, with_meta=True)
    return next(iter(ds))


def test_function_argument_table_matches_pysc2_facts():
    table = function_arguments()
    assert table.shape == (layers.NUM_FUNCTIONS, len(layers.ARGUMENT_TYPES))
    names = layers.ARGUMENT_NAMES
    assert table[0].sum() == 0                                     # no_op
    assert {names[i] for i in np.flatnonzero(table[12])} == {"queued", "screen"}  # Attack_screen
    assert {names[i] for i in np.flatnonzero(table[2])} == {"select_point_act", "screen"}


def test_input_batches_match_the_written_samples(data, spec):
    data_dir, samples = data
    inputs, targets, meta = first_batch(data_dir, spec, batch_size=6)
    # Unshuffled: interleave over the 2 shards takes blocks of 16, so the
    # first 6 records are shard 0's first 6 = samples 0, 2, 4, ... of the split.
    expected = samples["train"][0::2][:6]
    assert [m.decode() for m in meta["replay_id"].numpy()] == [s["replay_id"] for s in expected]
    assert inputs["screen"].dtype == tf.uint16
    assert inputs["screen"].shape == (6, RES, RES, len(layers.SCREEN_LAYERS))
    assert inputs["minimap"].shape == (6, RES, RES, len(layers.MINIMAP_LAYERS))
    unit_type = [l.name for l in layers.SCREEN_LAYERS].index("unit_type")
    height = [l.name for l in layers.MINIMAP_LAYERS].index("height_map")
    for i, s in enumerate(expected):
        np.testing.assert_array_equal(inputs["screen"][i, ..., unit_type], s["screen_unit_type"])
        np.testing.assert_array_equal(inputs["minimap"][i, ..., height], s["minimap_height_map"])
        np.testing.assert_allclose(inputs["player"][i], np.log1p(s["player"]), rtol=1e-6)
        score = s["score"].astype(np.float64)
        np.testing.assert_allclose(inputs["score"][i],
                                   np.sign(score) * np.log1p(np.abs(score)), rtol=1e-6)
        assert inputs["score"][i][layers.SCORE_FEATURES.index("lost_minerals_technology")] < 0
        np.testing.assert_array_equal(inputs["available_actions"][i], s["available_actions"])
        assert int(targets["function_id"][i]) == s["function_id"]
        assert float(targets["value"][i]) == s["value"]
        x, y = s["arg_screen"]
        assert int(targets["arg_screen"][i]) == (-1 if x < 0 else y * RES + x)
        assert int(targets["arg_queued"][i]) == s["arg_queued"]


def test_manifest_unavailable_layers_are_dropped(tmp_path, data):
    data_dir, _ = data
    manifest = Manifest.load(str(data_dir))
    manifest.source.unavailable_layers = ["minimap_creep", "screen_power"]
    manifest.save(str(tmp_path))
    drop = manifest_unavailable_layers(tmp_path)
    assert drop == ("minimap_creep", "screen_power")
    spec = FeatureSpec.create(RES, RES, drop)
    assert "creep" not in spec.minimap_layers and "power" not in spec.screen_layers
    inputs, _, _ = first_batch(data_dir, spec, batch_size=2)
    assert inputs["screen"].shape[-1] == len(layers.SCREEN_LAYERS) - 1
    assert inputs["minimap"].shape[-1] == len(layers.MINIMAP_LAYERS) - 1


def test_no_score_leaves_the_score_out_and_keeps_the_manifest_drops(tmp_path, data):
    data_dir, _ = data
    args = ["--data", str(data_dir), "--model", "fully_conv", "--out", str(tmp_path)]
    with_score = train_lib.parse_args(args).resolve().spec
    without = train_lib.parse_args(args + ["--no_score"]).resolve().spec
    assert with_score.score and not without.score
    assert (with_score.screen_layers, with_score.minimap_layers) == (
        without.screen_layers, without.minimap_layers)
    inputs, _, _ = first_batch(data_dir, without, batch_size=2)
    assert "score" not in inputs
    model = build_model("fully_conv", without)
    assert model.get_layer("non_spatial").kernel.shape[0] == (
        len(layers.PLAYER_FEATURES) + layers.NUM_FUNCTIONS)
    assert build_model("fully_conv", with_score).get_layer("non_spatial").kernel.shape[0] == (
        len(layers.PLAYER_FEATURES) + len(layers.SCORE_FEATURES) + layers.NUM_FUNCTIONS)


def test_missing_data_is_a_clear_error(tmp_path, spec, capsys):
    with pytest.raises(TrainerInputError, match="manifest.json: no manifest"):
        make_dataset(tmp_path, "train", spec)
    assert train_lib.main(["--data", str(tmp_path), "--model", "fully_conv",
                           "--out", str(tmp_path / "run")]) == 2
    assert "no manifest" in capsys.readouterr().err   # refused before any shard is read
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_learns_a_fixed_batch_and_masks_functions(name, data, spec):
    data_dir, _ = data
    inputs, targets, _ = first_batch(data_dir, spec, batch_size=8)
    config = train_lib.TrainConfig(data=str(data_dir), model=name, out="/nonexistent",
                                   learning_rate=2e-3, feature_spec=spec.to_json())
    trainer = train_lib.Trainer(config)
    first = float(trainer.loss_step(inputs, targets)["total"])
    for _ in range(25):
        trainer.train_step(inputs, targets)
    last = trainer.loss_step(inputs, targets)
    assert float(last["total"]) < 0.6 * first, (first, float(last["total"]))
    assert float(last["value"]) < 0.69
    # Masking: unavailable functions get exactly zero probability.
    outputs = trainer.model(inputs, training=False)
    probs = tf.nn.softmax(outputs["function"]).numpy()
    unavailable = inputs["available_actions"].numpy() == 0
    assert unavailable.any()
    assert np.all(probs[unavailable] == 0.0)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    # Every spatial head is a distribution over resolution x resolution pixels.
    screen = tf.nn.softmax(outputs["arg_screen"]).numpy()
    assert screen.shape == (8, RES * RES) and np.allclose(screen.sum(-1), 1.0, atol=1e-5)


def test_argument_loss_ignored_when_unused(spec):
    model = build_model("fully_conv", spec)
    rng = np.random.default_rng(0)
    batch = 4
    available = np.ones((batch, layers.NUM_FUNCTIONS), np.float32)
    inputs = {"screen": tf.constant(rng.integers(0, 3, (batch, RES, RES, len(spec.screen_layers))),
                                    tf.uint16),
              "minimap": tf.zeros((batch, RES, RES, len(spec.minimap_layers)), tf.uint16),
              "player": tf.zeros((batch, 11)), "available_actions": tf.constant(available),
              "score": tf.zeros((batch, len(layers.SCORE_FEATURES)))}
    outputs = model(inputs)
    unused = {f"arg_{a.name}": tf.fill([batch], -1) for a in layers.ARGUMENT_TYPES}
    targets = {"function_id": tf.zeros([batch], tf.int32), "value": tf.ones([batch]), **unused}
    losses = compute_losses(outputs, targets)
    assert float(losses["arguments"]) == 0.0
    # One sample uses 'queued' (target 1): its loss is that sample's CE / batch,
    # and changing the queued logits of the other samples changes nothing.
    targets["arg_queued"] = tf.constant([1, -1, -1, -1])
    logits = outputs["arg_queued"].numpy()
    expected = -tf.nn.log_softmax(logits[0])[1].numpy() / batch
    got = float(compute_losses(outputs, targets)["arg_queued"])
    assert got == pytest.approx(expected, rel=1e-5)
    logits[1:] += rng.normal(size=logits[1:].shape) * 5
    changed = dict(outputs, arg_queued=tf.constant(logits))
    assert float(compute_losses(changed, targets)["arg_queued"]) == pytest.approx(got, rel=1e-6)
    assert float(compute_losses(changed, targets)["total"]) == pytest.approx(
        float(compute_losses(outputs, targets)["total"]), rel=1e-6)


def test_ar_fully_conv_arguments_depend_on_the_function(data, spec):
    data_dir, _ = data
    inputs, targets, _ = first_batch(data_dir, spec, batch_size=4)
    model = build_model("ar_fully_conv", spec)
    forced = train_lib.teacher_inputs(inputs, targets)
    a = model(forced)["arg_screen"].numpy()
    other = dict(forced, function_id=(targets["function_id"] + 1) % layers.NUM_FUNCTIONS)
    b = model(other)["arg_screen"].numpy()
    assert not np.allclose(a, b)
    # Non-autoregressive FullyConv ignores teacher inputs.
    fc = build_model("fully_conv", spec)
    np.testing.assert_allclose(fc(forced)["arg_screen"], fc(inputs)["arg_screen"])


def test_checkpoint_resume_continues_the_step_count(data, tmp_path, capsys):
    data_dir, _ = data
    run = tmp_path / "run"
    args = ["--data", str(data_dir), "--model", "atari_net", "--out", str(run),
            "--batch_size", "4", "--log_every", "2", "--checkpoint_every", "2"]
    assert train_lib.main(args + ["--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert "step 4/4" in printed and "examples/s=" in printed
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "atari_net" and config["steps"] == 4
    assert config["feature_spec"]["screen_resolution"] == RES
    assert list((run / "tensorboard").iterdir())
    saved = train_lib.Trainer(train_lib.load_config(run))
    assert saved.restore() == 4
    weights = [v.numpy() for v in saved.model.trainable_variables]

    assert train_lib.main(args + ["--steps", "6"]) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "step 6/6" in printed and "step 2/" not in printed
    resumed = train_lib.Trainer(train_lib.load_config(run))
    assert resumed.restore() == 6
    changed = [not np.allclose(a, v.numpy()) for a, v in
               zip(weights, resumed.model.trainable_variables)]
    assert any(changed)
    # A different model in the same run directory is refused.
    assert train_lib.main(["--data", str(data_dir), "--model", "fully_conv", "--out",
                           str(run), "--steps", "8"]) == 2


def test_evaluate_writes_json_and_plots_with_baselines(data, tmp_path):
    data_dir, samples = data
    run = tmp_path / "run"
    train_lib.train(train_lib.TrainConfig(data=str(data_dir), model="fully_conv",
                                          out=str(run), steps=3, batch_size=4, log_every=1),
                    log=lambda m: None)
    report = evaluate_lib.evaluate(str(data_dir), str(run), "test", batch_size=16,
                                   resamples=200, min_function_count=5)
    written = json.loads((run / "eval_test.json").read_text())
    assert written["samples"] == len(samples["test"]) == report["samples"]
    assert written["replays"] == 4 and written["bootstrap"]["unit"] == "replay"
    for name in ("summary", "value_by_time", "functions"):
        png = run / f"eval_test_{name}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    # Baselines against hand counts of the synthetic labels: train wins are
    # exactly half, so the majority label is 0 (loss) and scores 0.5 on test.
    train_values = np.array([s["value"] for s in samples["train"]])
    test_values = np.array([s["value"] for s in samples["test"]])
    majority = written["baselines"]["majority_outcome"]
    assert majority["label"] == 0 and majority["train_win_fraction"] == train_values.mean()
    assert majority["value_accuracy"]["mean"] == pytest.approx(np.mean(test_values == 0))
    rates = written["baselines"]["matchup_prior"]["train_win_rates"]
    assert rates["Terran vs Zerg"]["rate"] == 0.5 and rates["Terran vs Zerg"]["samples"] == 72
    test_functions = np.array([s["function_id"] for s in samples["test"]])
    m = written["metrics"]
    assert 0.0 <= m["value_accuracy"]["ci_low"] <= m["value_accuracy"]["mean"] \
        <= m["value_accuracy"]["ci_high"] <= 1.0
    assert m["screen_exact"]["n"] == int(sum(s["arg_screen"][0] >= 0 for s in samples["test"]))
    per_function = {r["function_id"]: r["count"] for r in written["function_accuracy_by_function"]}
    for f, count in per_function.items():
        assert count == int(np.sum(test_functions == f))
    buckets = written["value_accuracy_by_game_time"]
    assert sum(b["model"]["n"] for b in buckets) == len(samples["test"])


def test_checkpoint_selection_keeps_the_best_validation_step(data, tmp_path):
    """best.json and checkpoints/best hold the step with the lowest validation
    value loss among those scored; evaluate uses it by default."""
    data_dir, samples = data
    run = tmp_path / "run"
    config = train_lib.TrainConfig(data=str(data_dir), model="fully_conv", out=str(run),
                                   steps=6, batch_size=4, log_every=2, validation_every=2,
                                   validation_samples=8, learning_rate=3e-2,
                                   game_time=True, dropout=0.2, value_input="pooled")
    lines: list[str] = []
    result = train_lib.train(config, log=lines.append)
    best = json.loads((run / "best.json").read_text())
    # 48 validation samples: every 6th record (interleaved read order), first 8
    assert best["validation_samples"] == 8
    assert any("validation subset: 8 of 48 samples (every 6th)" in l for l in lines)
    history = best["history"]
    assert [h["step"] for h in history] == [2, 4, 6]
    losses = [h["value"] for h in history]
    assert best["step"] == history[int(np.argmin(losses))]["step"]
    assert best["value"] == min(losses) and result["best"]["step"] == best["step"]
    assert Path(best["checkpoint"]).name == f"ckpt-{best['step']}"
    # The selected checkpoint really is the weights that scored best: rescoring
    # it on the same subset reproduces the recorded validation loss.
    trainer = train_lib.Trainer(train_lib.load_config(run))
    assert trainer.restore(trainer.best_manager.latest_checkpoint) == best["step"]
    assert trainer.model.spec.game_time and trainer.model.value_input == "pooled"
    rescored = train_lib.Validator(trainer, trainer.config, tf.summary.create_noop_writer(),
                                   lambda m: None)
    sums, n = 0.0, 0
    for inputs, targets in rescored.batches:
        k = int(targets["value"].shape[0])
        sums += float(trainer.validation_step(inputs, targets)["value"]) * k
        n += k
    assert sums / n == pytest.approx(best["value"], rel=1e-5)
    report = evaluate_lib.evaluate(str(data_dir), str(run), "test", batch_size=16,
                                   resamples=50, min_function_count=5, plots=False)
    assert report["checkpoint"]["selected"] == "best_validation"
    assert report["step"] == best["step"] and report["checkpoint"]["select_metric"] == "value"
    latest = inference.choose_checkpoint(run, "latest")
    assert latest == {"selected": "latest", "path": str(run / "checkpoints" / "ckpt-6")}
    # The player-features logistic regression: its L2 was picked on validation.
    lr = report["baselines"]["player_features_logistic_regression"]
    assert lr["selected_on"] == "validation log loss"
    table = lr["l2_candidates"]
    assert lr["l2"] == min(table, key=lambda r: r["validation_log_loss"])["l2"]
    # Synthetic winners have 400 minerals, losers 50: a linear model separates them.
    assert lr["value_accuracy"]["mean"] == 1.0


def test_early_stopping_stops_after_patience(data, tmp_path):
    data_dir, _ = data
    run = tmp_path / "run"
    # A learning rate of 0 never improves on the first validation.
    config = train_lib.TrainConfig(data=str(data_dir), model="atari_net", out=str(run),
                                   steps=20, batch_size=4, validation_every=1,
                                   validation_samples=4, learning_rate=0.0,
                                   early_stop_patience=2)
    result = train_lib.train(config, log=lambda m: None)
    assert result["stopped_early"] and result["step"] == 3
    assert result["best"]["step"] == 1
    assert train_lib.Trainer(train_lib.load_config(run)).restore() == 3


def test_logistic_regression_recovers_known_weights():
    from trainers.linear_baseline import fit_logistic, log_loss
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    true = np.array([1.5, -2.0, 0.0])
    y = (rng.random(20000) < 1 / (1 + np.exp(-(x @ true + 0.5)))).astype(float)
    model = fit_logistic(x, y, l2=0.0)
    # standardized weights back to raw units
    np.testing.assert_allclose(model.weights[:-1] / model.scale, true, atol=0.08)
    assert log_loss(model.prob(x), y) < log_loss(np.full(y.shape, y.mean()), y)


def test_value_input_options_are_checked(spec):
    with pytest.raises(ValueError, match="Atari-net's value head"):
        build_model("atari_net", spec, value_input="pooled")
    with pytest.raises(ValueError, match="unknown value_input"):
        build_model("fully_conv", spec, value_input="flat")
    with pytest.raises(ValueError, match="dropout"):
        build_model("fully_conv", spec, dropout=1.0)


def test_cosine_schedule_decays_to_zero_at_the_last_step_and_resumes(data, tmp_path):
    data_dir, _ = data
    run = tmp_path / "run"
    args = ["--data", str(data_dir), "--model", "atari_net", "--out", str(run),
            "--batch_size", "4", "--learning_rate", "0.01", "--lr_schedule", "cosine",
            "--log_every", "2", "--checkpoint_every", "2", "--steps", "4"]
    assert train_lib.main(args[:-1] + ["2"]) == 0   # stop half way ...
    half = train_lib.Trainer(train_lib.load_config(run))
    assert half.restore() == 2
    # ... a resumed optimizer continues the schedule from its saved step count.
    assert int(half.optimizer.iterations.numpy()) == 2
    assert train_lib.main(args) == 0
    config = train_lib.load_config(run)
    assert config.lr_schedule == "cosine"
    trainer = train_lib.Trainer(config)
    assert trainer.restore() == 4
    schedule = trainer.optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(2)) == pytest.approx(0.005, rel=1e-5)
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="lr_schedule"):
        train_lib.learning_rate(dataclasses.replace(config, lr_schedule="step"))


def test_read_shards_sets_how_many_shards_a_batch_mixes(tmp_path, spec):
    from schemas.sample import SampleSchema
    from support.trainer_synthetic import write_synthetic
    # 8 replays x 2 players x 12 loops = 192 samples; sample j lies in shard j % 8.
    write_synthetic(tmp_path, SampleSchema(RES, RES), replays={"train": 8}, shards=8)

    def shards_of_first_batch(read_shards):
        ds = make_dataset(tmp_path, "train", spec, batch_size=8, shuffle=True,
                          repeat=False, shuffle_buffer=1, with_meta=True,
                          read_shards=read_shards)
        _, _, meta = next(iter(ds))
        replay = [int(r.decode()[5:8]) for r in meta["replay_id"].numpy()]
        index = [24 * r + 12 * (p - 1) + loop // 200 for r, p, loop in
                 zip(replay, meta["player_id"].numpy(), meta["game_loop"].numpy())]
        return {j % 8 for j in index}

    assert len(shards_of_first_batch(1)) == 1    # one shard after another
    assert len(shards_of_first_batch(8)) == 8    # one record from each in turn
    assert len(shards_of_first_batch(4)) == 4
    with pytest.raises(TrainerInputError, match="read_shards"):
        make_dataset(tmp_path, "train", spec, read_shards=0)
    config = train_lib.parse_args(["--data", "d", "--model", "fully_conv", "--out", "o",
                                   "--read_shards", "1024"])
    assert config.read_shards == 1024
