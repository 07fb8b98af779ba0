"""Every model shipped in ``models/`` loads on a fresh clone and predicts on a
real replay from ../shared (issue #20).

The replay is a test-split game of the shipped models' training corpus (the
pipeline's default 0.9/0.05/0.05 split of ../shared/replays and
../shared/public-replays), so none of them trained on it; the test checks
that against each model's own list of training replays.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED, pipeline_argv

from trainers import evaluate as evaluate_lib  # noqa: E402
from trainers import inference  # noqa: E402
from trainers import predict as predict_lib  # noqa: E402

MODELS = sorted(p.parent for p in (REPO / "models").glob(f"*/{inference.WEIGHTS_NAME}"))
# A 3.5-minute 4.6.0 game (4,764 loops, 596 windows per player), held out.
HELD_OUT = SHARED / "public-replays" / "Derekioh__SC2-ML" / "Games_Montreal_441.SC2Replay"
HELD_OUT_ID = "334f2b2cf523fa65"   # prefix of its replay id (SHA-256 of the file)


def test_at_least_the_best_fully_conv_is_shipped():
    assert REPO / "models" / "fully_conv" in MODELS


@pytest.fixture(scope="module")
def replay() -> str:
    if not HELD_OUT.exists():
        pytest.skip(f"{HELD_OUT} not found")
    return str(HELD_OUT)


@pytest.mark.parametrize("model_dir", MODELS, ids=[p.name for p in MODELS])
def test_shipped_model_predicts_a_held_out_replay(model_dir, replay):
    size = sum(p.stat().st_size for p in model_dir.iterdir())
    assert size < 25 * 1024 * 1024
    card = (model_dir / "README.md").read_text()
    assert "## Held-out results" in card and "## Known limits" in card
    first = predict_lib.predict_replay(str(model_dir), replay)
    trained_on = set(gzip.decompress((model_dir / "train_replays.txt.gz").read_bytes())
                     .decode().split())
    assert first["replay"]["replay_id"] not in trained_on
    assert first["replay"]["replay_id"].startswith(HELD_OUT_ID)
    assert first["model"]["checkpoint"]["selected"] == "shipped"
    assert len(first["players"]) == 2
    assert sorted(p["outcome"] for p in first["players"]) == ["loss", "win"]
    for player in first["players"]:
        probs = np.asarray(player["series"]["win_probability"])
        assert probs.size == player["samples"] == 596
        assert np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1))
    if model_dir.name == "fully_conv":     # the best model: identical on a second run
        second = predict_lib.predict_replay(str(model_dir), replay)
        assert json.dumps(second, sort_keys=True) == json.dumps(first, sort_keys=True)


@pytest.fixture(scope="module")
def step16_data(replay, tmp_path_factory) -> Path:
    """The held-out game through the pipeline at step_mul 16: samples made
    another way than any shipped model's."""
    import beam_runner
    out = tmp_path_factory.mktemp("shipped") / "step16"
    beam_runner.run(pipeline_argv([replay], out, [
        "--direct_num_workers=1", "--direct_running_mode=in_memory", "--splits", "test=1.0",
        "--step_mul", "16", "--max_game_loops", "0", "--max_bytes", str(1 << 26)]))
    return out


@pytest.mark.parametrize("model_dir", MODELS, ids=[p.name for p in MODELS])
def test_shipped_model_refuses_data_made_another_way(model_dir, step16_data, tmp_path,
                                                    capsys):
    code = evaluate_lib.main(["--data", str(step16_data), "--run", str(model_dir),
                              "--split", "all", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("sc2-evaluate: error: ") and "step_mul is 16" in err[0]
