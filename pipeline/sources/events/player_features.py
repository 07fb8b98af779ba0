"""The engine-free source's player vector and the counters masks need.

pysc2's ``player`` features (``schemas.layers.PLAYER_FEATURES``) come from
two places in a replay: each player's ``SPlayerStatsEvent`` (minerals, gas,
food used and made, active workers; every 10 s) and the units the tracker
knows the player has (army count and food, warp gates, larvae).  The same
per-type unit counts also give the finished structures that unlock
abilities, which the action mask reads; both are computed here, once per
change of the player's own units, and cached in the caller's per-player
cache dict.  ``idle_worker_count`` is not derivable from tracker events and
stays 0 (listed in docs/engine_free_source.md).

The score vector (``schemas.layers.SCORE_FEATURES``) is the same player-stats
event read as pysc2's score: the event's ``m_scoreValue{Minerals,Vespene}
{UsedCurrent,Killed,Lost}{Army,Economy,Technology}`` and collection rates are
the entries of the API's ``ScoreDetails`` that pysc2 reports as
``score_by_category`` and ``score_cumulative`` (:data:`SCORE_STATS_KEYS`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.sources.events.available_actions import ActionAvailability
from pipeline.sources.events.feature_layers import read_only
from pipeline.sources.events.unit_tracker import UnitData, UnitTracker
from schemas import layers

#: Tracker food values are in 1/4096 units.
FOOD_SCALE = 4096

#: The player-stats event's names for the score's rows (the pysc2 rows are
#: ``<kind>_<resource>``; the event's "UsedCurrent" is the API's "used").
_STATS_KIND = {"used": "UsedCurrent", "killed": "Killed", "lost": "Lost"}
#: ``SCORE_FEATURES`` in order -> the player-stats event key that holds it.
SCORE_STATS_KEYS: tuple[str, ...] = tuple(
    f"m_scoreValue{name.rsplit('_', 1)[1].capitalize()}CollectionRate"
    for name in layers.SCORE_CUMULATIVE) + tuple(
    f"m_scoreValue{row.split('_')[1].capitalize()}{_STATS_KIND[row.split('_')[0]]}"
    f"{category.capitalize()}" for row, category in layers.SCORE_BY_CATEGORY)


class PlayerFeatures:
    """Player vectors and own-unit counters of one source (no per-player
    state: callers pass each player's cache dict)."""

    def __init__(self, data: UnitData, availability: ActionAvailability):
        self.data = data
        self.availability = availability
        self._rows_of: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def own_units(self, player_id: int, cache: dict[str, Any], version: int,
                  tracker: UnitTracker) -> dict[str, Any]:
        """Counters (0, army count, warp gates, larvae), army food and tech
        (``ActionAvailability.tech`` of the finished structure types) of the
        player's alive units; cached while ``version`` (bumped when one of
        the player's units changes kind) is the same."""
        hit = cache.get("own_units")
        if hit is not None and hit[0] == version:
            return hit[1]
        data = self.data
        all_counts, done_counts = tracker.unit_counts(player_id)
        army_rows, army_food_per_unit, structure_rows = self._rows()
        done_army = done_counts[army_rows]
        army = int(done_army.sum())
        # Food values are multiples of 0.5: the sum is exact in any order.
        army_food = int(round(float(done_army @ army_food_per_unit)))
        warp_gates = int(done_counts[data.row["WarpGate"]])
        larva = int(all_counts[data.row["Larva"]])
        # Tech: the finished structure types (rows; ids looked up on change).
        has = structure_rows[done_counts[structure_rows] > 0]
        tech_key = has.tobytes()
        tech_hit = cache.get("tech")
        if tech_hit is None or tech_hit[0] != tech_key:
            tech_hit = (tech_key, self.availability.tech(np.unique(data.id[has])))
            cache["tech"] = tech_hit
        units = {"counts": (0, army, warp_gates, larva), "army_food": army_food,
                 "tech": tech_hit[1]}
        cache["own_units"] = (version, units)
        return units

    def vector(self, player_id: int, cache: dict[str, Any], own_version: int,
               tracker: UnitTracker) -> np.ndarray:
        """The player vector, read-only; cached until the player's units or
        the player stats change."""
        key = (own_version, tracker.stats_version)
        hit = cache.get("player")
        if hit is not None and hit[0] == key:
            return hit[1]
        units = self.own_units(player_id, cache, own_version, tracker)
        stats = tracker.stats.get(player_id, {})
        player = read_only(np.array([
            player_id,
            stats.get("m_scoreValueMineralsCurrent", 0),
            stats.get("m_scoreValueVespeneCurrent", 0),
            stats.get("m_scoreValueFoodUsed", 0) // FOOD_SCALE,
            stats.get("m_scoreValueFoodMade", 0) // FOOD_SCALE,
            units["army_food"],
            stats.get("m_scoreValueWorkersActiveCount", 0),
            0,  # idle_worker_count: not derivable from tracker events
            *units["counts"][1:],
        ], np.int32))
        cache["player"] = (key, player)
        return player

    @staticmethod
    def score(player_id: int, cache: dict[str, Any], tracker: UnitTracker) -> np.ndarray:
        """The score vector from the player's last stats event, read-only;
        cached until the player stats change (0 before the first event)."""
        hit = cache.get("score")
        if hit is not None and hit[0] == tracker.stats_version:
            return hit[1]
        stats = tracker.stats.get(player_id, {})
        score = read_only(np.array([stats.get(k, 0) for k in SCORE_STATS_KEYS], np.int32))
        cache["score"] = (tracker.stats_version, score)
        return score

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The unit data rows of army units (not structures nor workers,
        costing food), their food, and the rows of structures; rebuilt when
        unknown unit types add rows."""
        data = self.data
        if self._rows_of is None or self._rows_of[0] != len(data.names):
            army = np.flatnonzero(~data.is_structure & ~data.is_worker & (data.food > 0))
            self._rows_of = (len(data.names), (army, data.food[army].astype(np.float64),
                                                np.flatnonzero(data.is_structure)))
        return self._rows_of[1]
