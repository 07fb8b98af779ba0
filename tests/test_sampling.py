"""The SC2LE sampling rule on hand-built streams (pipeline/sampling/rule.py)."""
import numpy as np
import pytest

from pipeline.sampling import rule
from pipeline.actions.action import Action
from pipeline.sampling.rule import SamplingStats, sample_windows
from schemas import layers
from schemas.sample import value_label

MOVE_CAMERA, SELECT_POINT, ATTACK_SCREEN, TRAIN_MARINE = 1, 2, 12, 477


def _avail(loops, ids=(0, 1, 2)):
    return {loop: list(ids) for loop in loops}


def _ids(mask):
    return sorted(np.flatnonzero(mask).tolist())


def test_empty_windows_are_no_op():
    windows = sample_windows(24, [], _avail([0, 8, 16]))
    assert [w.game_loop for w in windows] == [0, 8, 16]
    assert [w.end_loop for w in windows] == [8, 16, 24]
    assert all(w.target.function_id == layers.NO_OP for w in windows)
    assert all(w.target.arguments == {} for w in windows)
    assert all(_ids(w.available) == [0, 1, 2] for w in windows)
    assert all(w.available.dtype == np.uint8 and w.available.shape == (573,) for w in windows)


def test_first_of_several_actions_in_a_window_is_the_target():
    actions = [Action(3, SELECT_POINT, {"select_point_act": 0, "screen": (10, 20)}),
               Action(5, MOVE_CAMERA, {"minimap": (30, 31)}),
               Action(5, ATTACK_SCREEN, {"queued": 0, "screen": (1, 2)})]
    stats = SamplingStats()
    windows = sample_windows(16, actions, _avail([0, 3, 5, 8]), stats=stats)
    assert windows[0].target is actions[0]
    assert windows[0].target.arguments["screen"] == (10, 20)
    assert windows[1].target.function_id == layers.NO_OP
    assert stats.actions_not_first_in_window == 2
    assert stats.no_op_windows == 1


def test_action_exactly_on_a_window_boundary_belongs_to_the_next_window():
    actions = [Action(8, MOVE_CAMERA, {"minimap": (1, 1)})]
    windows = sample_windows(24, actions, _avail([0, 8, 16]))
    assert windows[0].target.function_id == layers.NO_OP
    assert windows[1].target is actions[0]
    assert windows[2].target.function_id == layers.NO_OP

    actions = [Action(7, MOVE_CAMERA, {"minimap": (1, 1)})]
    windows = sample_windows(24, actions, _avail([0, 7, 8, 16]))
    assert windows[0].target is actions[0]
    assert windows[1].target.function_id == layers.NO_OP


def test_last_partial_window():
    actions = [Action(19, MOVE_CAMERA, {"minimap": (5, 6)}),
               Action(20, SELECT_POINT, {"select_point_act": 0, "screen": (0, 0)})]
    stats = SamplingStats()
    windows = sample_windows(20, actions, _avail([0, 8, 16, 19]), stats=stats)
    assert [(w.game_loop, w.end_loop) for w in windows] == [(0, 8), (8, 16), (16, 20)]
    assert windows[-1].target is actions[0]
    assert stats.actions_after_game_end == 1


def test_mask_is_the_union_over_the_window_and_stops_at_its_end():
    available = {0: [0, 1], 3: [0, 1, TRAIN_MARINE], 7: [0, 1, ATTACK_SCREEN],
                 8: [0, 1], 12: [0, 1, SELECT_POINT]}
    windows = sample_windows(16, [], available)
    assert _ids(windows[0].available) == [0, 1, ATTACK_SCREEN, TRAIN_MARINE]
    assert _ids(windows[1].available) == [0, 1, SELECT_POINT]


def test_a_target_the_source_called_unavailable_is_added_and_counted():
    actions = [Action(2, TRAIN_MARINE, {"queued": 0})]
    stats = SamplingStats()
    windows = sample_windows(16, actions, _avail([0, 2, 8]), stats=stats)
    assert windows[0].target_was_unavailable
    assert windows[0].available[TRAIN_MARINE] == 1
    assert not windows[1].target_was_unavailable
    assert stats.target_added_to_mask == 1


def test_no_op_outside_the_mask_is_added_too():
    windows = sample_windows(8, [], {0: [1]})
    assert windows[0].target_was_unavailable
    assert _ids(windows[0].available) == [0, 1]


def test_automatic_actions_are_never_targets():
    actions = [Action(0, MOVE_CAMERA, {"minimap": (9, 9)}, automatic=True),
               Action(4, SELECT_POINT, {"select_point_act": 0, "screen": (3, 3)})]
    stats = SamplingStats()
    windows = sample_windows(8, actions, _avail([0, 4]), stats=stats)
    assert windows[0].target is actions[1]
    assert stats.automatic_actions_dropped == 1

    windows = sample_windows(8, actions[:1], _avail([0]))
    assert windows[0].target.function_id == layers.NO_OP


def test_step_mul_is_configurable():
    windows = sample_windows(10, [Action(5, MOVE_CAMERA, {"minimap": (0, 0)})],
                             _avail([0, 4, 5, 8]), step_mul=4)
    assert [w.game_loop for w in windows] == [0, 4, 8]
    assert windows[1].target.function_id == MOVE_CAMERA
    assert windows[2].end_loop == 10


def test_observed_loops_are_window_starts_plus_action_loops():
    actions = [Action(0, MOVE_CAMERA, {}, automatic=True), Action(3, MOVE_CAMERA, {}),
               Action(3, SELECT_POINT, {}), Action(12, MOVE_CAMERA, {}),
               Action(30, MOVE_CAMERA, {})]
    assert rule.observed_loops(20, actions) == [0, 3, 8, 12, 16]


def test_errors_are_specific():
    with pytest.raises(ValueError, match="window start 8"):
        sample_windows(16, [], {0: [0]})
    with pytest.raises(ValueError, match="game-loop order"):
        sample_windows(16, [Action(5, 1, {}), Action(3, 1, {})], _avail([0, 8]))
    with pytest.raises(ValueError, match="unknown argument"):
        Action(0, 1, {"bogus": 1})
    with pytest.raises(ValueError, match="out of range"):
        sample_windows(8, [], {0: [573]})


def test_zero_length_game_has_no_windows():
    assert sample_windows(0, [], {}) == []


@pytest.mark.parametrize("outcome,label", [("win", 1), ("loss", 0), ("tie", 0),
                                           ("undecided", 0)])
def test_value_label_follows_the_paper(outcome, label):
    assert value_label(outcome) == label


def test_unknown_outcome_is_rejected():
    with pytest.raises(ValueError):
        value_label("Victory")
