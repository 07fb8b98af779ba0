"""The predictor's figure: a moving average over the raw points, and each
player named by name, race and result."""
from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")


def test_the_moving_average_is_centred_over_game_time():
    from trainers.predict import smoothed
    minutes = [0.0, 0.25, 0.5, 0.75, 1.0]
    values = [0.0, 1.0, 0.0, 1.0, 0.0]
    # half a minute wide: each point and its neighbours a quarter minute away
    assert smoothed(values, minutes, 0.5) == pytest.approx([0.5, 1 / 3, 2 / 3, 1 / 3, 0.5])
    assert smoothed([0.2, 0.8], [0.0, 1.0], 0.5) == [0.2, 0.8]    # too short: raw


def test_players_are_named_with_race_and_result():
    from trainers.predict import player_label
    assert player_label({"player_id": 2, "name": "uThermaL", "race": "Terran",
                         "outcome": "win"}) == "uThermaL (Terran), won"
    assert player_label({"player_id": 1, "name": "", "race": "Zerg",
                         "outcome": "loss"}) == "player 1 (Zerg), lost"
    # a name from the replay is drawn as text, escaped
    assert "\x1b" not in player_label({"player_id": 1, "name": "a\x1b[2Kb", "race": "Zerg",
                                       "outcome": "loss"})
