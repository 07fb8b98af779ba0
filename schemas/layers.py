"""The observation layout of the SC2LE feature layers, as facts this project owns.

pysc2 4.0 exposes 11 minimap and 27 screen feature layers, an 11-entry player
vector, 573 action functions and 13 argument types.  The sample schema, both
observation sources and the trainer all need these tables, and the engine-free
source must not import pysc2 at run time just to learn them, so they are kept
here once.  ``tests/test_schema.py`` checks them against pysc2's own
``features`` and ``actions`` modules.

Each layer's ``scale`` is pysc2's: a categorical layer takes values in
``[0, scale)``, a scalar layer is clipped into it where pysc2 clips.  The
storage dtype is the narrowest unsigned integer that holds ``scale - 1``.
"""
from __future__ import annotations

import dataclasses
import enum

import numpy as np


class LayerType(enum.Enum):
    CATEGORICAL = "categorical"
    SCALAR = "scalar"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One feature layer: a (resolution x resolution) integer image."""
    name: str
    scale: int
    type: LayerType

    @property
    def dtype(self) -> np.dtype:
        for candidate in (np.uint8, np.uint16, np.uint32):
            if self.scale - 1 <= np.iinfo(candidate).max:
                return np.dtype(candidate)
        raise ValueError(f"layer {self.name} scale {self.scale} too large")


_C, _S = LayerType.CATEGORICAL, LayerType.SCALAR

# pysc2 4.0.0 features.MINIMAP_FEATURES, in index order.
MINIMAP_LAYERS: tuple[Layer, ...] = (
    Layer("height_map", 256, _S),
    Layer("visibility_map", 4, _C),
    Layer("creep", 2, _C),
    Layer("camera", 2, _C),
    Layer("player_id", 17, _C),
    Layer("player_relative", 5, _C),
    Layer("selected", 2, _C),
    Layer("unit_type", 1962, _C),
    Layer("alerts", 2, _C),
    Layer("pathable", 2, _C),
    Layer("buildable", 2, _C),
)

# pysc2 4.0.0 features.SCREEN_FEATURES, in index order.
SCREEN_LAYERS: tuple[Layer, ...] = (
    Layer("height_map", 256, _S),
    Layer("visibility_map", 4, _C),
    Layer("creep", 2, _C),
    Layer("power", 2, _C),
    Layer("player_id", 17, _C),
    Layer("player_relative", 5, _C),
    Layer("unit_type", 1962, _C),
    Layer("selected", 2, _C),
    Layer("unit_hit_points", 1600, _S),
    Layer("unit_hit_points_ratio", 256, _S),
    Layer("unit_energy", 1000, _S),
    Layer("unit_energy_ratio", 256, _S),
    Layer("unit_shields", 1000, _S),
    Layer("unit_shields_ratio", 256, _S),
    Layer("unit_density", 16, _S),
    Layer("unit_density_aa", 256, _S),
    Layer("effects", 16, _C),
    Layer("hallucinations", 2, _C),
    Layer("cloaked", 2, _C),
    Layer("blip", 2, _C),
    Layer("buffs", 290, _C),
    Layer("buff_duration", 256, _S),
    Layer("active", 2, _C),
    Layer("build_progress", 256, _S),
    Layer("pathable", 2, _C),
    Layer("buildable", 2, _C),
    Layer("placeholder", 2, _C),
)

# pysc2 4.0.0 features.Player, in index order.
PLAYER_FEATURES: tuple[str, ...] = (
    "player_id", "minerals", "vespene", "food_used", "food_cap", "food_army",
    "food_workers", "idle_worker_count", "army_count", "warp_gate_count",
    "larva_count",
)

# The score a player is told (pysc2's ``score_cumulative`` and
# ``score_by_category`` observations), restricted to what a replay's
# player-stats tracker events record too, so both sources fill every entry:
# the two collection rates, then each ScoreByCategory row below for the army,
# economy and technology categories.  Values are in minerals / vespene (rates
# per game minute), as the game reports them; some can be negative (the game
# refunds cancelled structures into "lost").
SCORE_CUMULATIVE: tuple[str, ...] = ("collection_rate_minerals", "collection_rate_vespene")
SCORE_ROWS: tuple[str, ...] = ("used_minerals", "used_vespene", "killed_minerals",
                               "killed_vespene", "lost_minerals", "lost_vespene")
SCORE_CATEGORIES: tuple[str, ...] = ("army", "economy", "technology")
#: The (ScoreByCategory row, category) of each entry after the collection rates.
SCORE_BY_CATEGORY: tuple[tuple[str, str], ...] = tuple(
    (row, category) for row in SCORE_ROWS for category in SCORE_CATEGORIES)
SCORE_FEATURES: tuple[str, ...] = SCORE_CUMULATIVE + tuple(
    f"{row}_{category}" for row, category in SCORE_BY_CATEGORY)

# len(pysc2.lib.actions.FUNCTIONS); function 0 is no_op.
NUM_FUNCTIONS = 573
NO_OP = 0


@dataclasses.dataclass(frozen=True)
class ArgumentType:
    """One pysc2 argument type; ``sizes == ()`` marks a spatial (x, y) one."""
    name: str
    sizes: tuple[int, ...]

    @property
    def spatial(self) -> bool:
        return not self.sizes


# pysc2 4.0.0 actions.TYPES, in index order.  Spatial sizes depend on the
# resolution and are left empty, as in pysc2.
ARGUMENT_TYPES: tuple[ArgumentType, ...] = (
    ArgumentType("screen", ()),
    ArgumentType("minimap", ()),
    ArgumentType("screen2", ()),
    ArgumentType("queued", (2,)),
    ArgumentType("control_group_act", (5,)),
    ArgumentType("control_group_id", (10,)),
    ArgumentType("select_point_act", (4,)),
    ArgumentType("select_add", (2,)),
    ArgumentType("select_unit_act", (4,)),
    ArgumentType("select_unit_id", (500,)),
    ArgumentType("select_worker", (4,)),
    ArgumentType("build_queue_id", (10,)),
    ArgumentType("unload_id", (500,)),
)

ARGUMENT_NAMES: tuple[str, ...] = tuple(a.name for a in ARGUMENT_TYPES)

# Value stored for an argument the target function does not take.
UNUSED = -1
# Value stored for what the player did but the source cannot derive: an
# argument of the target function whose value is not known (the screen point
# of a ``select_point`` whose unit has no known position, in a replay without
# tracker events), and the ``function_id`` of a window whose target is not
# known (the player's first input in the window has no pysc2 function the
# source can name; every argument is then UNKNOWN too).  Distinct from UNUSED
# and from every valid value, so a consumer that ignores it fails loudly
# (negative class ids) instead of learning a label the player did not give;
# the trainer leaves it out of the policy losses and metrics.
UNKNOWN = -2
