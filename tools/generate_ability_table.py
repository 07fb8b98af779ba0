"""Generates pipeline/actions/data/abilities.json.gz: replay ability links -> pysc2 functions
(and unit links -> unit type names).

A replay's command events name an ability by a build-specific *link* (an index
into that build's ability catalog) plus a *command index*.  Three public
sources together map that to pysc2's action space:

1. sc2reader's per-build datapacks (``sc2reader/data/<expansion>/<build>_abilities.csv``):
   link -> ability catalog name (``BarracksTrain``), and which datapack applies
   to which (expansion, build) range (``sc2reader/resources.py``);
2. Blizzard's ``stableid.json``: (catalog name, command index) -> API ability id
   (``BarracksTrain``, 0 -> 560), with ``remapid`` = the general ability id;
3. pysc2 4.0's ``actions.FUNCTIONS``: API ability id -> quick / screen /
   minimap / autocast functions, with pysc2's ``hide_specific_actions`` rule
   (a specific ability is reported as its general ability).

The same datapacks' unit lists (``<build>_units.csv``) give unit link ->
unit type name: selection events name the selected units' types by link,
which is all a replay without tracker events says about them.

Usage::

    python tools/generate_ability_table.py --stableid ../shared/data/stableid.json \
        --out pipeline/actions/data/abilities.json.gz

Only this script reads sc2reader, stableid.json and pysc2's tables; at run
time ``pipeline/actions/ability_table.py`` reads the generated JSON only.
"""
from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io
import json
import os
import pkgutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.pysc2_compat import apply  # noqa: E402

# Catalog names sc2reader uses that stableid.json does not know, and the
# stableid ability whose commands they issue.  Found by listing every
# sc2reader name without a stableid entry and checking the game's data
# (button names, which unit owns the ability).
ALIASES = {
    # Orbital command / planetary fortress train SCVs with their own ability
    # in the catalog; the API reports it as the command centre's.
    "OrbitalCommandTrain": "CommandCenterTrain",
    "PlanetaryFortressTrain": "CommandCenterTrain",
    # Lair and hive train queens with the hatchery's ability in the API.
    "LairTrain": "TrainQueen",
    "HiveTrain": "TrainQueen",
    "HatcheryTrain": "TrainQueen",
    # Zergling -> baneling morph (sc2reader's name for MorphZerglingToBaneling).
    "ZerglingTrain": "MorphZerglingToBaneling",
    "MorphToBaneling": "MorphZerglingToBaneling",
    # Upgrade research split into per-building abilities in some builds.
    "EvolutionChamberResearch": "evolutionchamberresearch",
    "TemplarArchiveResearch": "TemplarArchivesResearch",
    "GreaterSpireResearch": "SpireResearch",
    "HiveResearch": "HiveResearch",
    "GhostAcademyTrain": "ArmSiloWithNuke",
    "Refund": "SalvageShared",
    "Salvage": "SalvageShared",
    # Creep tumor spreading from a burrowed tumor (API: Build_CreepTumor_Tumor).
    "CreepTumorBurrowedBuild": "CreepTumorBuild",
    "OracleBuild": "OracleStasisTrapBuild",
    # Add-ons built by a flying / landed production building, by build.
    "BarracksBuild": "BarracksAddOns",
    "BarracksFlyingBuild": "BarracksAddOns",
    "FactoryBuild": "FactoryAddOns",
    "FactoryFlyingBuild": "FactoryAddOns",
    "StarportBuild": "StarportAddOns",
    "StarportFlyingBuild": "StarportAddOns",
    # 4.0 nexus chrono boost.
    "EnergyRecharge": "ChronoBoostEnergyCost",
}

# sc2reader's datapack selection (sc2reader/resources.py
# register_default_datapacks): (expansion, first build, end build, datapack),
# later rules win.  One deliberate difference, noted at the 48258 rule.
DATAPACK_RULES = [
    ("WoL", 16117, 17326, "WoL/16117"),
    ("WoL", 17326, 18092, "WoL/17326"),
    ("WoL", 18092, 19458, "WoL/18092"),
    ("WoL", 19458, 22612, "WoL/19458"),
    ("WoL", 22612, 24944, "WoL/22612"),
    ("WoL", 24944, None, "WoL/24944"),
    ("HotS", 0, 23925, "HotS/base"),
    ("HotS", 23925, 24247, "HotS/23925"),
    ("HotS", 24247, 24764, "HotS/24247"),
    ("HotS", 24764, 38215, "HotS/24764"),
    ("HotS", 38215, None, "LotV/base"),
    ("LotV", 34784, None, "LotV/base"),
    ("LotV", 44401, 47185, "LotV/44401"),
    ("LotV", 47185, 48258, "LotV/47185"),
    # sc2reader uses 48258 up to 53644; the 3.12 build (51702) matches 53644's
    # links exactly (2 of 954 commands unmapped, against 328 with 48258), and
    # 48258's table is per command (sorted button names), so keep it to 3.8.
    ("LotV", 48258, 49000, "LotV/48258"),
    ("LotV", 49000, 53644, "LotV/53644"),
    ("LotV", 53644, 54724, "LotV/53644"),
    ("LotV", 54724, 59587, "LotV/54724"),
    # Measured on the shared replays (commands unmapped with each datapack):
    # 4.3 (64469), 4.4 (65895) and 4.6 (67926) fit 70154 (0, 0, 5) far better
    # than sc2reader's 59587 (3, 12, 64); 4.9.2 (74741) and 4.10 (75800) fit
    # 76114 (10, 2) better than 70154 (26, 8); 5.0.14 (93333) fits 96883.
    ("LotV", 59587, 64469, "LotV/59587"),
    ("LotV", 64469, 74741, "LotV/70154"),
    ("LotV", 74741, 77379, "LotV/76114"),
    ("LotV", 77379, 80949, "LotV/77379"),
    ("LotV", 80949, 89634, "LotV/80949"),
    ("LotV", 89634, 93333, "LotV/89720"),
    ("LotV", 93333, 97364, "LotV/96883"),
    ("LotV", 97364, None, "LotV/97364"),
]


def _sc2reader_csv(name: str) -> list[list[str]]:
    raw = pkgutil.get_data("sc2reader.data", name)
    if raw is None:
        raise FileNotFoundError(name)
    return [row for row in csv.reader(io.StringIO(raw.decode("utf-8"))) if row]


def _datapack_links(key: str, stable_names: dict, buttons: dict) -> dict[int, str]:
    """link -> catalog name for one datapack.

    Most datapacks list one catalog name per link.  The 3.8 datapack (48258)
    lists one row per *command* instead (button names, sorted), so a link with
    several rows, or whose single row is not a catalog name, is resolved to
    the catalog name whose button names contain all its rows.
    """
    rows = collections.defaultdict(list)
    for link, name in _sc2reader_csv(f"{key}_abilities.csv"):
        rows[int(link)].append(name)
    out = {}
    for link, names in rows.items():
        if len(names) == 1 and (names[0] in stable_names or names[0] in ALIASES):
            out[link] = names[0]
            continue
        wanted = set(names)
        overlap = sorted(((len(wanted & btns), cat) for cat, btns in buttons.items()),
                         reverse=True)
        best = overlap[0] if overlap else (0, "")
        unique = len(overlap) < 2 or overlap[1][0] < best[0]
        if len(names) > 1 and best[0] * 2 >= len(wanted) and unique:
            out[link] = best[1]
        elif len(names) == 1:
            out[link] = names[0]  # unknown to stableid: reported unmapped at run time
        else:
            out[link] = "?" + "|".join(names)
    return out


# sc2reader's 3.4 (44401) and 3.7 (47185) datapacks list only some links (no
# train, build or research abilities: a 3.4 game's first command, link 170,
# is unnamed), and the 3.8 one (48258) leaves links whose button names match
# no stableid ability unresolved.  Each such hole is filled from the next
# builds' datapacks by alignment (see _fill_gaps), in the order given; a
# datapack is filled before it serves as a reference for an earlier one.
GAP_FILL = [
    ("LotV/48258", ["LotV/53644"]),
    ("LotV/47185", ["LotV/48258", "LotV/53644"]),
    ("LotV/44401", ["LotV/47185", "LotV/48258", "LotV/53644"]),
]


def _fill_gaps(links: dict[int, str], reference: dict[int, str],
               is_catalog) -> int:
    """Names the unnamed links of ``links`` from ``reference``; returns how many.

    Ability catalogs grow by insertions, so between two links both datapacks
    name (anchors, each name unique in both) the catalog order is the same
    whenever the two anchor distances are equal.  Only such equal-distance
    gaps are filled, link for link; a gap whose length changed (an ability
    inserted or removed in between) stays unnamed.  A link counts as unnamed
    when its name is no catalog name (``is_catalog``): missing, unresolved
    ("?..."), or a lone button name of the 3.8 datapack ("Probe", "SCV").
    """
    def known(name: str) -> bool:
        return bool(name) and not name.startswith("?") and is_catalog(name)

    ref_by_name = collections.Counter(n for n in reference.values() if known(n))
    own_by_name = collections.Counter(n for n in links.values() if known(n))
    ref_link = {n: l for l, n in reference.items() if ref_by_name[n] == 1}
    anchors = sorted((l, ref_link[n]) for l, n in links.items()
                     if known(n) and own_by_name[n] == 1 and n in ref_link)
    filled = 0
    for (a1, r1), (a2, r2) in zip(anchors, anchors[1:]):
        if a2 - a1 != r2 - r1 or a2 - a1 < 2:
            continue
        for off in range(1, a2 - a1):
            name = reference.get(r1 + off)
            if not known(links.get(a1 + off, "")) and name and known(name):
                links[a1 + off] = name
                filled += 1
    return filled


def _functions_for(api_id: int, remap: int | None, pysc2_actions) -> dict[str, int] | None:
    """pysc2's reverse_action rule: specific ability -> general -> by command type."""
    ids = pysc2_actions.ABILITY_IDS
    if api_id in ids:
        general = next(iter(ids[api_id])).general_id
        ability = general or api_id
    elif remap and remap in ids:
        ability = remap
    else:
        return None
    out = {}
    for func in ids[ability]:
        out[func.function_type.__name__.replace("cmd_", "")] = int(func.id)
    return out


def build_table(stableid_path: str) -> dict:
    apply()
    from pysc2.lib import actions

    stable = json.load(open(stableid_path))["Abilities"]
    by_name: dict[str, dict[int, dict]] = collections.defaultdict(dict)
    buttons: dict[str, set] = collections.defaultdict(set)
    for entry in stable:
        by_name[entry["name"]][entry["index"]] = entry
        if entry.get("buttonname"):
            buttons[entry["name"]].add(entry["buttonname"])

    datapacks = {}
    for _, _, _, key in DATAPACK_RULES:
        if key not in datapacks:
            datapacks[key] = _datapack_links(key, by_name, buttons)
    for key, references in GAP_FILL:
        for ref in references:
            _fill_gaps(datapacks[key], datapacks[ref],
                       lambda n: n in by_name or n in ALIASES)

    used = {name for links in datapacks.values() for name in links.values()}
    abilities = {}
    for name in sorted(used):
        catalog = ALIASES.get(name, name)
        commands = {}
        for index, entry in sorted(by_name.get(catalog, {}).items()):
            funcs = _functions_for(entry["id"], entry.get("remapid"), actions)
            if funcs:
                commands[str(index)] = {"api_id": entry["id"], **funcs}
        if commands:
            abilities[name] = commands

    smart = _functions_for(1, None, actions)
    # Unit links (selection events name unit types by them): the same
    # datapacks' unit lists, link -> unit type name.
    units = {key: {str(int(link)): name for link, name in _sc2reader_csv(f"{key}_units.csv")}
             for key in datapacks}
    return {
        "doc": "Generated by tools/generate_ability_table.py; do not edit.",
        "datapack_rules": DATAPACK_RULES,
        "datapacks": {k: {str(l): n for l, n in sorted(v.items())} for k, v in datapacks.items()},
        "unit_datapacks": units,
        "abilities": abilities,
        "smart": {"api_id": 1, **smart},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stableid", required=True, help="path to stableid.json")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1]
                                             / "pipeline/actions/data/abilities.json.gz"))
    args = parser.parse_args(argv)
    table = build_table(args.stableid)
    data = gzip.compress(json.dumps(table, sort_keys=True).encode(), mtime=0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".abilities-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    print(f"{out}: {len(table['datapacks'])} datapacks, {len(table['abilities'])} abilities, "
          f"{sum(map(len, table['unit_datapacks'].values()))} unit links, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
