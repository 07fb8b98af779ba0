"""The SC2LE sampling rule: one player's per-loop stream to training windows.

Section 5 of the SC2LE paper samples replays every 8 game loops.  For a window
``[t, t + step_mul)`` of one player:

* the observation is the one at loop ``t`` (the source's business);
* the policy target is the first action the player issued in the window, or
  ``no_op`` when there is none -- whatever the source knows about it: an
  input the source cannot express is an action with ``function_id ==
  schemas.layers.UNKNOWN`` and makes the window's target unknown (it is never
  replaced by the next input, which would be a label the player did not
  give); an argument the source cannot derive is ``schemas.layers.UNKNOWN``;
* the mask is the union of the actions available at the loops of the window
  the source observed; the target is always inside it -- when a source reports
  the target as unavailable it is added and the window says so (an unknown
  target adds nothing);
* actions the game issued by itself (the automatic camera move at game start)
  are never targets;
* the value label is the player's outcome (see ``schemas.sample.value_label``).

This module knows nothing about replays, pysc2 or files: both observation
sources feed it the same plain data, and it is tested with hand-built streams.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from pipeline.actions.action import Action, no_op
from schemas import layers

class Window(NamedTuple):  # one per window: cheap to make, immutable
    """One training window of one player."""
    game_loop: int            # first loop of the window; the observation's loop
    end_loop: int             # one past the last loop
    target: Action
    available: np.ndarray     # uint8[NUM_FUNCTIONS]
    target_was_unavailable: bool


@dataclasses.dataclass
class SamplingStats:
    windows: int = 0
    no_op_windows: int = 0
    target_added_to_mask: int = 0
    automatic_actions_dropped: int = 0
    actions_not_first_in_window: int = 0
    actions_after_game_end: int = 0
    #: Windows whose first input has no known pysc2 function.
    target_unknown_windows: int = 0
    #: Windows whose target has an argument the source could not derive.
    unknown_argument_windows: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _is_unknown(value: int | tuple[int, int]) -> bool:
    return (value == layers.UNKNOWN if isinstance(value, int)
            else layers.UNKNOWN in value)


def window_starts(game_loops: int, step_mul: int = 8) -> range:
    """Loops at which windows start: 0, step, 2*step ... below ``game_loops``."""
    if step_mul < 1:
        raise ValueError("step_mul must be at least 1")
    return range(0, max(int(game_loops), 0), step_mul)


def observed_loops(game_loops: int, actions: Iterable[Action],
                   step_mul: int = 8) -> list[int]:
    """The loops a source must observe for an exact mask: window starts and
    every loop where the player acted (sorted, unique)."""
    loops = set(window_starts(game_loops, step_mul))
    loops.update(a.game_loop for a in actions
                 if not a.automatic and 0 <= a.game_loop < game_loops)
    return sorted(loops)


def _as_mask(available: np.ndarray | Iterable[int]) -> np.ndarray:
    if isinstance(available, np.ndarray) and available.shape == (layers.NUM_FUNCTIONS,):
        return available.astype(bool)
    mask = np.zeros(layers.NUM_FUNCTIONS, bool)
    ids = np.fromiter(available, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= layers.NUM_FUNCTIONS):
        raise ValueError(f"function ids out of range: {ids[(ids < 0) | (ids >= layers.NUM_FUNCTIONS)]}")
    mask[ids] = True
    return mask


def sample_windows(game_loops: int,
                   actions: Sequence[Action],
                   available_by_loop: Mapping[int, np.ndarray | Iterable[int]],
                   step_mul: int = 8,
                   stats: SamplingStats | None = None) -> list[Window]:
    """Applies the sampling rule to one player's stream.

    Args:
      game_loops: length of the game; windows cover ``[0, game_loops)`` and
        the last one may be shorter than ``step_mul``.
      actions: the player's actions in game-loop order (ties keep their order).
      available_by_loop: for each loop the source observed, the available
        function ids (an iterable of ids or a boolean/uint8 mask of 573).  Every
        window start must be present.
      step_mul: window length in game loops.
      stats: counters to update, if given.

    Returns:
      One :class:`Window` per window start, in order.
    """
    stats = stats if stats is not None else SamplingStats()
    starts = window_starts(game_loops, step_mul)
    by_window: dict[int, list[Action]] = collections.defaultdict(list)
    last_loop = -1
    for action in actions:
        if action.game_loop < last_loop:
            raise ValueError("actions must be in game-loop order")
        last_loop = action.game_loop
        if action.automatic:
            stats.automatic_actions_dropped += 1
            continue
        if action.game_loop >= game_loops or action.game_loop < 0:
            stats.actions_after_game_end += 1
            continue
        by_window[action.game_loop - action.game_loop % step_mul].append(action)

    observed = sorted(available_by_loop)
    # Masks given as arrays of NUM_FUNCTIONS are taken as they are (nonzero:
    # available); others are checked and converted.
    masks = {}
    for loop in observed:
        value = available_by_loop[loop]
        masks[loop] = (value if isinstance(value, np.ndarray)
                       and value.shape == (layers.NUM_FUNCTIONS,) else _as_mask(value))
    missing = sorted(set(starts) - set(masks))
    if missing:
        raise ValueError(f"no observation at window start {missing[0]}")
    # The observed loops inside the game, grouped by window (each window's
    # start is among them): one union per window in a single numpy pass.
    inside = [loop for loop in observed if 0 <= loop < game_loops]
    # Rows of 0/1 bytes padded to whole uint64 words: OR-ing the words is
    # OR-ing the bytes, eight functions at a time.
    width = -(-layers.NUM_FUNCTIONS // 8) * 8
    stacked = np.zeros((len(inside), width), bool)
    if inside:
        stacked[:, :layers.NUM_FUNCTIONS] = [masks[loop] for loop in inside]
    first = np.searchsorted(np.asarray(inside, np.int64), np.asarray(starts, np.int64))
    words = stacked.view(np.uint64)
    union = (np.bitwise_or.reduceat(words, first, axis=0) if len(starts)
             else words[:0]).view(np.uint8)[:, :layers.NUM_FUNCTIONS]
    windows = []
    for i, start in enumerate(starts):
        end = min(start + step_mul, game_loops)
        mask = union[i]
        window_actions = by_window.get(start, [])
        if window_actions:
            target = window_actions[0]
            stats.actions_not_first_in_window += len(window_actions) - 1
        else:
            target = no_op(start)
            stats.no_op_windows += 1
        if target.function_id == layers.UNKNOWN:
            stats.target_unknown_windows += 1
            was_unavailable = False
        else:
            was_unavailable = not mask[target.function_id]
            if any(_is_unknown(v) for v in target.arguments.values()):
                stats.unknown_argument_windows += 1
        if was_unavailable:
            mask[target.function_id] = 1
            stats.target_added_to_mask += 1
        stats.windows += 1
        windows.append(Window(start, end, target, mask, was_unavailable))
    return windows
