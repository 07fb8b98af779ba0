"""Which pysc2 functions a player could use, reconstructed without the game.

pysc2 (``features.Features.available_actions``) builds the mask from two
sources: general UI functions gated by the player's state (``no_op``,
``move_camera``, ``select_point``, ``select_rect``, ``select_control_group``
always; ``select_unit`` with a multi-unit selection; ``select_idle_worker``,
``select_army``, ``select_warp_gates``, ``select_larva`` when the matching
player counter is positive; ``unload`` with cargo; ``build_queue`` with a
production queue), and the abilities the game reports for the current
selection, mapped to functions with specific actions hidden.

Here the abilities are those of the selected unit types (own units only),
from the generated ``unit_data.json`` table (tech tree abilities whose
building and upgrade requirements the player meets, by tracker events), and
mapped to function ids with the table precomputed from pysc2 at generation
time.  Approximations (documented in ``docs/engine_free_source.md``): no
energy, cooldown, resource or add-on checks; ``unload`` and ``build_queue``
are never offered (cargo and queues are unknown); ``select_idle_worker``
follows the idle-worker count, which the source cannot derive (0).
"""
from __future__ import annotations

import numpy as np

from pipeline.sources.events.unit_tracker import UnitData
from schemas import layers

#: Functions pysc2 offers unconditionally.
ALWAYS = (0, 1, 2, 3, 4)
SELECT_UNIT, SELECT_IDLE_WORKER, SELECT_ARMY, SELECT_WARP_GATES, SELECT_LARVA = 5, 6, 7, 8, 9

# Morphed forms that satisfy a tech requirement on their base form.
TECH_ALIASES = {
    "SupplyDepotLowered": "SupplyDepot",
    "CommandCenterFlying": "CommandCenter", "OrbitalCommand": "CommandCenter",
    "OrbitalCommandFlying": "CommandCenter", "PlanetaryFortress": "CommandCenter",
    "BarracksFlying": "Barracks", "FactoryFlying": "Factory", "StarportFlying": "Starport",
    "Lair": "Hatchery", "Hive": "Hatchery", "GreaterSpire": "Spire",
    "WarpGate": "Gateway",
}
# Second-level aliases (Hive also satisfies Lair).
TECH_ALIASES_2 = {"Hive": "Lair"}


class ActionAvailability:
    """Computes masks; caches by (selected types, tech, counters)."""

    def __init__(self, data: UnitData):
        self.data = data
        self._alias_ids: dict[int, list[int]] = {}
        for table in (TECH_ALIASES, TECH_ALIASES_2):
            for name, base in table.items():
                if name in data.row and base in data.row:
                    self._alias_ids.setdefault(int(data.id[data.row[name]]), []).append(
                        int(data.id[data.row[base]]))
        self._cache: dict[tuple, np.ndarray] = {}
        self._type_cache: dict[tuple, frozenset[int]] = {}

    def tech(self, completed_type_ids: np.ndarray) -> frozenset[int]:
        """Building type ids the player has (with morph aliases)."""
        ids = set(int(t) for t in np.unique(completed_type_ids))
        for t in list(ids):
            ids.update(self._alias_ids.get(t, ()))
        return frozenset(ids)

    def _ability_functions(self, rows: tuple[int, ...], tech: frozenset[int] | None,
                           upgrades: frozenset[int] | None) -> frozenset[int]:
        """The functions the selected types' abilities map to, given the
        player's tech; per type row (selections mix the same few types)."""
        out: set[int] = set()
        for row in rows:
            key = (row, tech, upgrades)
            funcs = self._type_cache.get(key)
            if funcs is None:
                funcs = self._type_cache[key] = self._row_functions(row, tech, upgrades)
            out.update(funcs)
        return frozenset(out)

    def _row_functions(self, row: int, tech: frozenset[int] | None,
                       upgrades: frozenset[int] | None) -> frozenset[int]:
        out: set[int] = set()
        for ability_id, requires_point, reqs in self.data.abilities[row]:
            if tech is not None and any(
                    (kind == "building" and value not in tech)
                    or (kind == "upgrade" and value not in upgrades)
                    for kind, value in reqs):
                continue
            funcs = self.data.ability_functions.get(int(ability_id))
            if funcs:
                out.update(funcs["point" if requires_point else "quick"])
        return frozenset(out)

    def mask_of_rows(self, rows: tuple[int, ...], n_selected: int, tech: frozenset[int] | None,
                     upgrades: frozenset[int] | None, idle_workers: int, army_count: int,
                     warp_gates: int, larva: int) -> np.ndarray:
        """uint8[NUM_FUNCTIONS] mask (shared read-only array: do not modify)
        for the selected own units' type rows (:func:`type_rows`), how many
        units are selected, the player's tech, upgrades and counters.
        ``tech=None``: the player's structures and upgrades are unknown,
        so abilities are offered whatever they require."""
        flags = (n_selected > 1, idle_workers > 0, army_count > 0, warp_gates > 0, larva > 0)
        key = (rows, tech, upgrades, flags)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        mask = np.zeros(layers.NUM_FUNCTIONS, np.uint8)
        mask[list(ALWAYS)] = 1
        for fid, on in zip((SELECT_UNIT, SELECT_IDLE_WORKER, SELECT_ARMY,
                            SELECT_WARP_GATES, SELECT_LARVA), flags):
            mask[fid] = on
        funcs = self._ability_functions(rows, tech, upgrades)
        if funcs:
            mask[list(funcs)] = 1
        mask.setflags(write=False)
        self._cache[key] = mask
        return mask


def type_rows(selected_rows: np.ndarray) -> tuple[int, ...]:
    """The distinct unit data rows of the selected own units, sorted (the
    selection's part of a mask's key)."""
    return tuple(sorted(set(np.asarray(selected_rows).tolist())))  # = np.unique, cheaper
