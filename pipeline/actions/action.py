"""One input in pysc2's action space: the policy target of a window.

Both the player-input conversion (``pipeline.actions.player_inputs``) and the
headless source produce :class:`Action` values; the sampling rule
(``pipeline.sampling.rule``) picks one per window.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from schemas import layers

ArgValue = int | tuple[int, int]
_ARGUMENT_NAMES = frozenset(layers.ARGUMENT_NAMES)


@dataclasses.dataclass(frozen=True)
class Action:
    """One input in pysc2's action space.

    ``arguments`` maps pysc2 argument type names (``screen``, ``queued``...) to
    their values: an ``(x, y)`` pair for spatial types, an int otherwise.
    """
    game_loop: int
    function_id: int
    arguments: Mapping[str, ArgValue] = dataclasses.field(default_factory=dict)
    automatic: bool = False

    def __post_init__(self):
        if self.arguments:
            unknown = set(self.arguments).difference(_ARGUMENT_NAMES)
            if unknown:
                raise ValueError(f"unknown argument types {sorted(unknown)}")


def no_op(game_loop: int) -> Action:
    return Action(game_loop, layers.NO_OP, {})


def target_unknown(game_loop: int) -> Action:
    """An input the player gave that has no pysc2 function the source can
    name (``function_id == schemas.layers.UNKNOWN``): a window whose first
    input it is has an unknown target, never a substitute."""
    return Action(game_loop, layers.UNKNOWN, {})


def is_target_unknown(action: Action) -> bool:
    return action.function_id == layers.UNKNOWN
