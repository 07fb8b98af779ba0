"""Fog of war for the engine-free source: which units a player can see.

In the game a player sees an enemy unit only while it stands within the sight
range of one of the player's (or an ally's) units; structures, once seen,
stay on the map as snapshots.  The engine-free source has no terrain, so this
model ignores high ground, line of sight blockers, cloaking and detection.
Neutral units (minerals, geysers, rocks, towers) are map features every
player knows, so they are always shown.

``fog=False`` in the source skips this module and shows everything (full
information); the setting is recorded with the dataset.
"""
from __future__ import annotations

import numpy as np

#: Distance test chunk size (friendly units x enemy units per block).
_CHUNK = 256


def in_sight(viewer_xy: np.ndarray, viewer_sight: np.ndarray,
             target_xy: np.ndarray, target_radius: np.ndarray) -> np.ndarray:
    """Whether each target lies within some viewer's sight (bool[targets]).

    A target counts as seen when its footprint (a disc of ``target_radius``)
    touches a viewer's sight disc.
    """
    seen = np.zeros(len(target_xy), bool)
    if not len(viewer_xy) or not len(target_xy):
        return seen
    for start in range(0, len(viewer_xy), _CHUNK):
        v = viewer_xy[start:start + _CHUNK]
        reach = viewer_sight[start:start + _CHUNK][:, None] + target_radius[None, :]
        d2 = ((v[:, None, :] - target_xy[None, :, :]) ** 2).sum(-1)
        seen |= (d2 <= reach * reach).any(axis=0)
    return seen


def visible_mask(player_id: int, allies: frozenset[int], owner: np.ndarray,
                 xy: np.ndarray, sight: np.ndarray, radius: np.ndarray,
                 is_structure: np.ndarray, seen_before: np.ndarray,
                 neutral: int = 16) -> np.ndarray:
    """Which of the given (alive) units ``player_id`` sees (bool array).

    ``seen_before`` (bool, same length) marks structures seen earlier; it is
    updated in place with the structures seen now, so the caller keeps it per
    player across loops.
    """
    friendly = (owner == player_id) | np.isin(owner, list(allies))
    enemy = ~friendly & (owner != neutral)
    visible = ~enemy
    if enemy.any():
        seen = in_sight(xy[friendly], sight[friendly], xy[enemy], radius[enemy])
        enemy_idx = np.flatnonzero(enemy)
        visible[enemy_idx] = seen | (seen_before[enemy_idx] & is_structure[enemy_idx])
        seen_before[enemy_idx] |= seen & is_structure[enemy_idx]
    return visible
