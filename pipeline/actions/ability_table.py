"""A replay command's (ability link, command index) -> pysc2 action functions.

Replays name abilities by build-specific links; pysc2 names them by API
ability id and function.  ``tools/generate_ability_table.py`` joins sc2reader's
per-build datapacks, Blizzard's stableid.json and pysc2's FUNCTIONS into the
committed ``pipeline/actions/data/abilities.json.gz``; this module only reads that file.

pysc2's ``hide_specific_actions`` rule is already applied in the table: a
specific ability (``Cancel_Nuke``) is given as its general function
(``Cancel_quick``), as pysc2 reports replay actions by default.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

TABLE_PATH = Path(__file__).resolve().parent / "data" / "abilities.json.gz"

# Dependency hashes in details' m_cacheHandles that name the expansion
# (the same test sc2reader makes).
_EXPANSION_MODS = (
    ("LotV", hashlib.sha256(b"Standard Data: Void.SC2Mod").digest()),
    ("HotS", hashlib.sha256(b"Standard Data: Swarm.SC2Mod").digest()),
    ("WoL", hashlib.sha256(b"Standard Data: Liberty.SC2Mod").digest()),
)


@dataclasses.dataclass(frozen=True)
class CommandFunctions:
    """The pysc2 functions one ability command can be issued as (None: no such variant)."""
    ability_name: str
    command_index: int
    api_id: int
    quick: int | None = None
    screen: int | None = None
    minimap: int | None = None
    autocast: int | None = None


def expansion_of(details: Mapping[str, Any]) -> str:
    """'LotV', 'HotS', 'WoL' or '' from details' cache handles (dependency hashes)."""
    hashes = set()
    for handle in details.get("m_cacheHandles") or []:
        if isinstance(handle, (bytes, bytearray)) and len(handle) >= 40:
            hashes.add(bytes(handle[8:40]))
    for name, digest in _EXPANSION_MODS:
        if digest in hashes:
            return name
    return ""


class LinkResolver:
    """Ability lookups for one datapack (one range of builds)."""

    def __init__(self, key: str, links: Mapping[str, str], abilities: Mapping[str, Any],
                 unit_links: Mapping[str, str] | None = None):
        self.key = key
        self._names = {int(link): name for link, name in links.items()}
        self._unit_names = {int(link): name for link, name in (unit_links or {}).items()}
        self._abilities = abilities
        self._cache: dict[tuple[int, int], CommandFunctions | None] = {}

    def name(self, link: int) -> str | None:
        """The ability catalog name of a link, or None when the datapack lacks it."""
        return self._names.get(link)

    def unit_name(self, link: int) -> str | None:
        """The unit type name of a unit link (selection events name the
        selected units' types by it), or None when the datapack lacks it."""
        return self._unit_names.get(link)

    def lookup(self, link: int, command_index: int) -> CommandFunctions | None:
        key = (link, command_index)
        try:
            return self._cache[key]
        except KeyError:
            pass
        result = None
        name = self._names.get(link)
        if name is not None:
            entry = self._abilities.get(name, {}).get(str(command_index))
            if entry is not None:
                result = CommandFunctions(
                    ability_name=name, command_index=command_index,
                    api_id=entry["api_id"], quick=entry.get("quick"),
                    screen=entry.get("screen"), minimap=entry.get("minimap"),
                    autocast=entry.get("autocast"))
        self._cache[key] = result
        return result


class AbilityTable:
    """The generated table; use :func:`load`."""

    def __init__(self, table: Mapping[str, Any]):
        self._rules = [tuple(rule) for rule in table["datapack_rules"]]
        self._datapacks = table["datapacks"]
        self._abilities = table["abilities"]
        self._unit_datapacks = table.get("unit_datapacks", {})
        smart = table["smart"]
        self.smart = CommandFunctions("Smart", 0, smart["api_id"], screen=smart.get("screen"),
                                      minimap=smart.get("minimap"))
        self._resolvers: dict[str, LinkResolver] = {}

    def datapack_key(self, expansion: str, build: int) -> str | None:
        """The datapack for an (expansion, base build); later rules win (as sc2reader)."""
        chosen = None
        for exp, first, end, key in self._rules:
            if exp == expansion and build >= first and (end is None or build < end):
                chosen = key
        if chosen is None and not expansion:
            # No expansion dependency recognised: builds from 3.0 on are LotV data.
            return self.datapack_key("LotV" if build >= 34784 else "WoL", build)
        return chosen

    def resolver(self, expansion: str, build: int) -> LinkResolver | None:
        key = self.datapack_key(expansion, build)
        if key is None:
            return None
        if key not in self._resolvers:
            self._resolvers[key] = LinkResolver(key, self._datapacks[key], self._abilities,
                                                self._unit_datapacks.get(key))
        return self._resolvers[key]


@functools.lru_cache(maxsize=4)
def load(path: str | Path = TABLE_PATH) -> AbilityTable:
    """Reads the generated table once per process."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return AbilityTable(json.load(f))
