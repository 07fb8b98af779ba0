"""The lobby: which slot each player sat in, their user ids, ratings, map size.

``replay.details`` lists the players; ``replay.initData`` holds the lobby
they came from: each slot's control (human, computer, open), observer flag,
user id (the key game events use), team, rating, and the game description
(map size, co-op).  The index needs the join for MMR, observers and game
type; the action stream needs it to attribute game events (keyed by user id)
to players.  It lives here, once, for both.

s2protocol decodes the init data of most builds; where it cannot, or
misreads it (protocol 15405 on 1.0.x replays), sc2reader's reader is tried,
and a result with impossible slots is rejected.

The parsed result is cached on the archive (``ReplayArchive.lobby``, which
calls :func:`parse_init_data`); so this module reads the archive through
:class:`ArchiveParts` and does not import it.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping, Protocol

from pipeline.replay.decoded import ReplayError, as_text


@dataclasses.dataclass
class Slot:
    """The fields of a lobby slot the scan needs, from either decoder."""
    control: int
    observe: int
    user_id: int | None
    team: int
    working_set_slot_id: int | None
    commander: str = ""


@dataclasses.dataclass
class InitData:
    decoder: str
    map_width: int
    map_height: int
    coop: bool
    slots: list[Slot]
    scaled_rating: dict[int, int]  # user id -> rating


class ArchiveParts(Protocol):
    """What this module reads of a :class:`pipeline.replay.archive.ReplayArchive`."""
    protocol_exact: bool
    base_build: int
    header: dict[str, Any]
    details: dict[str, Any]
    init_data: dict[str, Any] | None       # s2protocol's decoding, or None
    lobby: InitData | None                 # parse_init_data's result, cached

    def read(self, name: str, *, required: bool = True) -> bytes | None: ...


def _init_from_s2protocol(raw: Mapping[str, Any]) -> InitData:
    lobby = raw["m_syncLobbyState"]
    desc = lobby["m_gameDescription"]
    slots = [Slot(s["m_control"], s.get("m_observe") or 0, s.get("m_userId"),
                   s.get("m_teamId") or 0, s.get("m_workingSetSlotId"),
                   as_text(s.get("m_commander")))
             for s in lobby["m_lobbyState"]["m_slots"]]
    ratings = {i: u["m_scaledRating"] for i, u in enumerate(lobby["m_userInitialData"])
               if isinstance(u.get("m_scaledRating"), int)}
    return InitData("s2protocol", int(desc.get("m_mapSizeX") or 0),
                     int(desc.get("m_mapSizeY") or 0), bool(desc.get("m_isCoopMode")),
                     slots, ratings)


def _init_from_sc2reader(raw: Mapping[str, Any]) -> InitData:
    desc = raw["game_description"]
    slots = [Slot(s["control"], s.get("observe") or 0, s.get("user_id"),
                   s.get("team_id") or 0, s.get("working_set_slot_id"),
                   as_text(s.get("commander")))
             for s in raw["lobby_state"]["slots"]]
    ratings = {i: u["scaled_rating"] for i, u in enumerate(raw["user_initial_data"])
               if isinstance(u.get("scaled_rating"), int)}
    return InitData("sc2reader", int(desc.get("map_size_x") or 0),
                     int(desc.get("map_size_y") or 0), bool(desc.get("is_coop_mode")),
                     slots, ratings)


def read_init_data(archive: ArchiveParts) -> InitData | None:
    """``archive.lobby``: the lobby and game description, parsed once per archive."""
    return archive.lobby


def parse_init_data(archive: ArchiveParts) -> InitData | None:
    """The lobby and game description, from the best decoder that works
    (uncached: read it as ``archive.lobby``)."""
    if archive.protocol_exact:
        try:
            raw = archive.init_data
        except ReplayError:
            raw = None  # fall through to sc2reader (e.g. 1.0.x with protocol 15405)
        if raw is not None:
            try:
                init = _init_from_s2protocol(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplayError("corrupt", f"init data layout: {exc!r}") from exc
            if _plausible(init):
                return init
            # else: decoded without error but misread (protocol 15405 on 1.0.x
            # replays gives control codes like 195): try sc2reader's reader.
    data = archive.read("replay.initData", required=False)
    if data is None:
        return None
    from sc2reader.readers import InitDataReader

    build = int(archive.header["m_version"]["m_build"])
    try:
        raw = InitDataReader()(data, types.SimpleNamespace(base_build=archive.base_build,
                                                             build=build))
        init = _init_from_sc2reader(raw)
    except MemoryError:   # the process's limit, not this decoder's failure
        raise
    except Exception:  # sc2reader's bit reader raises anything on hostile bytes
        return None
    return init if _plausible(init) else None


def _plausible(init: InitData) -> bool:
    """A decoder that misreads the bits yields impossible slots; reject those."""
    occupied = False
    for s in init.slots:
        if not (0 <= s.control <= 3 and 0 <= s.observe <= 2):
            return False
        if s.control == 2 and not isinstance(s.user_id, int):
            return False
        occupied = occupied or s.control in (2, 3)
    return occupied


def join_slots(details_players: list[dict], init: InitData | None) -> list[Slot | None]:
    """The lobby slot of each details entry (None where it cannot be joined)."""
    if init is None:
        return [None] * len(details_players)
    wsids = [p.get("m_workingSetSlotId") for p in details_players]
    if all(w is not None for w in wsids):
        by_wsid = {s.working_set_slot_id: s for s in init.slots
                   if s.working_set_slot_id is not None and s.control in (2, 3)}
        if all(w in by_wsid for w in wsids):
            return [by_wsid[w] for w in wsids]
    # Older builds: details entries follow occupied, non-observer slots in order.
    playing = [s for s in init.slots if s.control == 3 or (s.control == 2 and not s.observe)]
    if len(playing) >= len(details_players):
        return playing[:len(details_players)]
    return [None] * len(details_players)


#: From this base build on, game events name their player by lobby user id;
#: before it (Wings of Liberty, early 2.0) by the player's entity number:
#: 1-based over the occupied human (observers included) and computer slots,
#: in slot order.  sc2reader's context plugin draws the same line.
USER_ID_EVENTS_BUILD = 24247


def event_player_ids(archive: ArchiveParts) -> dict[int, int | None]:
    """player id (1-based index in details' player list) -> the id its game
    events carry (``_userid.m_userId``); observers excluded, None for
    computer players and where the lobby cannot be joined."""
    players = archive.details.get("m_playerList") or []
    init = archive.lobby
    slots = join_slots(players, init)
    occupied = [s for s in init.slots if s.control in (2, 3)] if init else []
    out: dict[int, int | None] = {}
    for i, (player, slot) in enumerate(zip(players, slots)):
        if (slot.observe if slot is not None else player.get("m_observe")):
            continue
        if slot is None or slot.control != 2:
            out[i + 1] = None
        elif archive.base_build >= USER_ID_EVENTS_BUILD:
            out[i + 1] = slot.user_id
        else:
            out[i + 1] = next(n for n, s in enumerate(occupied, 1) if s is slot)
    return out
