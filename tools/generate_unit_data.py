"""Generates ``pipeline/sources/events/data/unit_data.json``: the static unit facts the
engine-free observation source needs at run time.

Why a generated table: tracker events name unit types (``m_unitTypeName``),
while the feature layers carry API unit type ids; fog of war needs sight
ranges, rasterization needs radii, position estimates need speeds, build
progress needs build times, and the available-action mask needs each unit
type's abilities mapped to pysc2 function ids.  Library code must not read
``../shared`` or import pysc2 at run time, so this script distils those facts
once into a committed JSON file.

Inputs (public facts):
* ``stableid.json`` (Blizzard): unit type name -> API unit type id, for every
  unit type including neutral ones (minerals, rocks) the tech tree lacks.
* ``sc2-techtree-data.json`` (BurnySc2/sc2-techtree): per unit type sight,
  radius, speed, build time (game loops), structure/worker/flying flags and
  the API abilities with their tech requirements; per ability its target kind.
* pysc2 4.0's ``actions.FUNCTIONS``: API ability id -> function ids, applying
  pysc2's ``Features.available_actions`` rule with ``hide_specific_actions``
  (a specific ability exposes its general function, of the same type).

Usage:
  python tools/generate_unit_data.py --shared ../shared/data \
      --out pipeline/sources/events/data/unit_data.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Sequence

# Radii of neutral unit types the tech tree does not list (world units).
# Mineral fields are 2x1 footprints and geysers 3x3; these radii are the
# values the game API reports for them.  Anything else unknown gets
# DEFAULT_RADIUS.
NEUTRAL_RADII = (
    ("MineralField", 1.125),
    ("Geyser", 1.8125),
    ("XelNagaTower", 1.0),
    ("Rocks", 2.0),
    ("Debris", 2.0),
)
DEFAULT_RADIUS = 0.5

# Techtree ability target kinds that need a point (pysc2: requires_point).
POINT_TARGETS = {"Point", "Unit", "PointOrUnit", "Build", "BuildOnUnit",
                 "TrainPlace", "MorphPlace"}


def _requires_point(target: Any) -> bool:
    if isinstance(target, str):
        return target in POINT_TARGETS
    if isinstance(target, dict) and len(target) == 1:
        return next(iter(target)) in POINT_TARGETS
    raise ValueError(f"unknown ability target {target!r}")


def ability_function_table() -> dict[int, dict[str, list[int]]]:
    """API ability id -> {"quick": [function ids], "point": [function ids]}.

    The function ids pysc2 offers when the game reports the ability available
    without / with a point requirement, hiding specific actions (pysc2's
    default), exactly as ``features.Features.available_actions`` does.
    """
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from pipeline.pysc2_compat import apply
    apply()
    from pysc2.lib import actions

    table: dict[int, dict[str, list[int]]] = {}
    for ability_id, funcs in actions.ABILITY_IDS.items():
        entry = {}
        for key, requires_point in (("quick", False), ("point", True)):
            ids = set()
            for func in funcs:
                if func.function_type not in actions.POINT_REQUIRED_FUNCS[requires_point]:
                    continue
                if func.general_id == 0:
                    ids.add(int(func.id))
                else:
                    for general in actions.ABILITY_IDS[func.general_id]:
                        if general.function_type is func.function_type:
                            ids.add(int(general.id))
                            break
            entry[key] = sorted(ids)
        table[int(ability_id)] = entry
    return table


def build_table(stableid: dict, techtree: dict) -> dict[str, Any]:
    tech_by_id = {u["id"]: u for u in techtree["Unit"]}
    ability_target = {a["id"]: a["target"] for a in techtree["Ability"]}
    upgrades = {u["name"]: u["id"] for u in techtree["Upgrade"]}
    units: dict[str, dict[str, Any]] = {}
    for entry in stableid["Units"]:
        name, type_id = entry["name"], int(entry["id"])
        tech = tech_by_id.get(type_id)
        if tech is None:
            radius = next((r for key, r in NEUTRAL_RADII if key in name), DEFAULT_RADIUS)
            units[name] = {"id": type_id, "race": "", "sight": 0.0, "radius": radius,
                           "speed": 0.0, "build_time": 0.0, "food": 0.0, "is_structure": True,
                           "is_worker": False, "is_townhall": False, "is_flying": False,
                           "in_techtree": False, "abilities": []}
            continue
        abilities = []
        for ab in tech["abilities"]:
            aid = int(ab["ability"])
            target = ability_target.get(aid, "None")
            reqs = []
            for req in ab.get("requirements", []):
                for kind, value in req.items():
                    if kind in ("building", "upgrade"):
                        reqs.append([kind, int(value)])
                # "addon" / "addon_to" need per-building add-on links the
                # tracker does not give; treated as satisfied (documented).
            abilities.append([aid, int(_requires_point(target)), reqs])
        units[name] = {
            "id": type_id, "race": tech["race"], "sight": float(tech.get("sight", 0.0)),
            "radius": float(tech.get("radius", DEFAULT_RADIUS)), "speed": float(tech.get("speed", 0.0)),
            "build_time": float(tech.get("time", 0.0)),
            "food": float(tech.get("supply", 0.0)),
            "is_structure": bool(tech["is_structure"]), "is_worker": bool(tech["is_worker"]),
            "is_townhall": bool(tech["is_townhall"]), "is_flying": bool(tech["is_flying"]),
            "in_techtree": True, "abilities": abilities,
        }
    return {
        "doc": "Generated by tools/generate_unit_data.py from stableid.json, "
               "sc2-techtree-data.json and pysc2 4.0 actions; do not edit.",
        "units": units,
        "upgrades": upgrades,
        "ability_functions": {str(k): v for k, v in sorted(ability_function_table().items())},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data",
                        help="folder with stableid.json and sc2-techtree-data.json")
    parser.add_argument("--out", default="pipeline/sources/events/data/unit_data.json")
    args = parser.parse_args(argv)
    with open(os.path.join(args.shared, "stableid.json")) as f:
        stableid = json.load(f)
    with open(os.path.join(args.shared, "sc2-techtree-data.json")) as f:
        techtree = json.load(f)
    table = build_table(stableid, techtree)
    folder = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, sort_keys=True, separators=(",", ":"))
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(table['units'])} unit types, "
          f"{len(table['ability_functions'])} abilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
