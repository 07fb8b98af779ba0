"""The metadata scan: one index row per replay, one per player, or an error record.

Before any game-engine time is spent, a user needs to know what a pile of
replays holds.  The scan reads only the cheap parts of a replay (header,
details, init data, ``replay.gamemetadata.json``), never game or tracker
events, and produces:

* a replay row (:data:`REPLAY_COLUMNS`): build, map, length, game type,
  observers, whether tracker events / metadata exist, and ``status``
  ("ok" or the filter reason from :mod:`pipeline.index.filters`);
* player rows (:data:`PLAYER_COLUMNS`): ids, race, control, team, result,
  MMR, APM;
* or an error record (:data:`ERROR_COLUMNS`, :func:`error_row`) with a reason
  category from ``pipeline.replay.archive.ERROR_CATEGORIES``.

Player numbering
----------------
``player_id`` is the 1-based index in details' ``m_playerList``: the number
pysc2 and tracker events use (``SPlayerSetupEvent.m_playerId``).  ``user_id``
is the lobby slot's ``m_userId``: the id game events carry in
``_userid.m_userId``, which the action stream needs to tell whose input an
event is.  Details entries are joined to lobby slots (init data
``m_lobbyState.m_slots``) by ``m_workingSetSlotId`` where both carry it
(builds 2.0.3+); older builds list details entries in lobby-slot order,
skipping observer and empty slots.  AI players have ``user_id`` -1.  In
Wings of Liberty replays the details' control/team/observe fields are not
reliable, so control, team and observer flags come from the lobby slot
whenever the join succeeds.

Init data decoding: s2protocol lacks many builds (all of 3.0 - 3.14, for
example); a neighbouring build's decoder fails or silently misreads the init
data.  Where the replay's exact protocol is not bundled, or it fails, the
scan uses sc2reader's build-conditional init data reader instead
(``init_decoder`` records which one was used, "none" if neither works, in
which case map size is 0 and user ids are -1).  The readers and the join
live in :mod:`pipeline.replay.lobby`, shared with the action stream.

Results come from details ``m_result`` (1 win, 2 loss, 3 tie, else
undecided), cross-checked with gamemetadata ``Players[].Result``: metadata
fills an undecided details result; a contradiction makes the replay a
"corrupt" error (its value labels could not be trusted).  On the shared
corpus no replay contradicts.

Game types (``game_type``), over non-observer players:
* ``coop``: Allied Commanders: the game description's co-op flag, or a lobby
  slot with a commander;
* ``vs_ai``: at least one human and at least one AI player;
* ``1v1``: exactly two human players on two different teams;
* ``team``: only humans, two or more teams, some team with several players;
* ``ffa``: only humans, three or more players, each on their own team;
* ``custom``: anything else (a single player, everyone on one team, only AIs).
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import os
import re
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

from pipeline.index import apm, filters, values
from pipeline.index.player_context import PlayerContext
from pipeline import filesystem
from pipeline.text import storable
from pipeline.replay import storage
from pipeline.replay.archive import ERROR_CATEGORIES, ReplayArchive, ReplayError, replay_id
from pipeline.replay.decoded import stable_text
from pipeline.replay.limits import InflateLimits
from pipeline.replay.lobby import join_slots

#: Game loops per second at the "faster" game speed (all ladder games).
LOOPS_PER_SECOND = 22.4

GAME_TYPES = ("1v1", "team", "ffa", "vs_ai", "coop", "custom")
CONTROLS = ("human", "ai")
RESULTS = {0: "undecided", 1: "win", 2: "loss", 3: "tie"}          # details m_result
METADATA_RESULTS = {"win": "win", "loss": "loss", "tie": "tie", "undecided": "undecided"}
_RACES = {"prot": "Protoss", "terr": "Terran", "zerg": "Zerg", "rand": "Random"}
# Race names as localized clients write them into the details (lower case).
_LOCALIZED_RACES = {
    "терран": "Terran", "테란": "Terran", "人类": "Terran", "人類": "Terran",
    "terraner": "Terran", "terranie": "Terran", "terrestri": "Terran",
    "протосс": "Protoss", "프로토스": "Protoss", "星灵": "Protoss", "神族": "Protoss",
    "protosi": "Protoss",
    "зерг": "Zerg", "저그": "Zerg", "异虫": "Zerg", "蟲族": "Zerg", "zergi": "Zerg",
    "случайная": "Random", "무작위": "Random", "随机": "Random", "隨機": "Random",
    "zufällig": "Random", "aléatoire": "Random", "aleatorio": "Random",
    "aleatória": "Random", "losowa": "Random", "casuale": "Random",
}

# Columns of the index tables: (name, arrow type name, doc).  The one place
# they are listed; the Parquet schemas and row validation derive from these.
REPLAY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("replay_id", "string", "SHA-256 of the file's bytes (hex)."),
    ("path", "string", "Where the file was read from."),
    ("size", "int64", "File size in bytes."),
    ("base_build", "int32", "Game base build from the header."),
    ("version", "string", "Game version, e.g. 5.0.8.86383."),
    ("protocol_build", "int32", "s2protocol decoder build used for details."),
    ("protocol_exact", "bool", "False when a neighbouring build's decoder was used."),
    ("init_decoder", "string", "Init data decoder: s2protocol, sc2reader or none."),
    ("map_name", "string", "Map title from the details."),
    ("map_width", "int32", "Map width (init data m_mapSizeX); 0 when unknown."),
    ("map_height", "int32", "Map height (init data m_mapSizeY); 0 when unknown."),
    ("game_loops", "int32", "Elapsed game loops from the header."),
    ("game_seconds", "float64", "game_loops / 22.4 (game time at 'faster' speed)."),
    ("game_type", "string", "One of " + ", ".join(GAME_TYPES) + " (see module doc)."),
    ("num_players", "int32", "Players, humans and AIs, observers excluded."),
    ("num_observers", "int32", "Human observers and referees."),
    ("has_tracker_events", "bool", "The archive holds tracker events (not decoded by the "
     "scan); set False for a sampled replay whose tracker events no bundled protocol "
     "decodes (the manifest's 'degraded' entry gives the reason)."),
    ("has_metadata", "bool", "The archive holds replay.gamemetadata.json."),
    ("anonymized", "bool", "Details only as replay.details.backup (Blizzard packs)."),
    ("status", "string", "'ok', the filter reason (pipeline.index.filters), or 'duplicate'."),
    ("time_utc", "string", "Game end time, ISO 8601 UTC; '' when unknown."),
)
PLAYER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("replay_id", "string", "SHA-256 of the replay file (joins replays.parquet)."),
    ("player_id", "int32", "1-based index in details' player list (tracker/pysc2 id)."),
    ("user_id", "int32", "Lobby m_userId (game events carry it from build 24247 on; "
                         "pipeline.replay.lobby.event_player_ids); -1 for AI / unknown."),
    ("name", "string", "Player name."),
    ("race", "string", "Protoss, Terran, Zerg (as played), or the raw string."),
    ("control", "string", "human or ai."),
    ("team", "int32", "0-based team id from the lobby slot (details if unjoined)."),
    ("result", "string", "win, loss, tie or undecided."),
    ("mmr", "int32", "Metadata MMR, else init data scaled rating, else -1."),
    ("apm", "int32", "Metadata APM (rounded), else computed (apm_from_events), else -1."),
    ("apm_source", "string", "metadata, events (pipeline.index.apm) or none."),
)
ERROR_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("replay_id", "string", "SHA-256 of the file when it could be read, else ''."),
    ("path", "string", "The file."),
    ("stage", "string", "Pipeline stage that failed (read, scan, featurize...)."),
    ("category", "string", "Reason category (replay_archive.ERROR_CATEGORIES)."),
    ("message", "string", "Human-readable detail."),
)


_ARROW_TYPES = {"bool": "bool_"}

#: ``status`` of a file whose bytes equal an earlier file's (same replay id):
#: it keeps its replay row (nothing is lost) but is not processed twice, and
#: its players are listed once, under the first file.
DUPLICATE_STATUS = "duplicate"


def arrow_schema(columns: Sequence[tuple[str, str, str]]):
    """The pyarrow schema of one of the index tables."""
    import pyarrow as pa

    return pa.schema([pa.field(name, getattr(pa, _ARROW_TYPES.get(typ, typ))(), nullable=False,
                               metadata={b"doc": doc.encode()})
                      for name, typ, doc in columns])


def error_row(path: str, replay_id: str, stage: str, category: str,
              message: str) -> dict[str, str]:
    """An error record: the layout every stage of the pipeline writes."""
    if category not in ERROR_CATEGORIES:
        raise ValueError(f"unknown error category {category!r}")
    return {"replay_id": replay_id or "", "path": path, "stage": stage,
            "category": category, "message": stable_text(message)}


# --------------------------------------------------------------- decoding
def _filetime_to_iso(value: Any) -> str:
    """Windows FILETIME (100 ns ticks since 1601) to ISO 8601 UTC."""
    if not isinstance(value, int) or value <= 0:
        return ""
    try:
        t = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc) + \
            datetime.timedelta(microseconds=value // 10)
    except OverflowError:
        return ""
    return t.isoformat().replace("+00:00", "Z")


def _player_name(raw: Any, what: str = "player name") -> str:
    """The name without a clan tag ('[TAG]<sp/>Name' or '[TAG]Name' in old builds).

    Battle.net names cannot contain brackets, so a leading '[...]' is a tag.
    """
    text = values.text(raw, what).split("<sp/>")[-1]
    return re.sub(r"^\[[^\]]*\]", "", text) or text


def _race(details_race: Any, meta_player: Mapping[str, Any] | None,
          what: str = "race") -> str:
    if meta_player:
        assigned = _RACES.get(str(meta_player.get("AssignedRace", "")).lower()[:4])
        if assigned:
            return assigned
    text = values.text(details_race, what)
    return _LOCALIZED_RACES.get(text.lower()) or _RACES.get(text.lower()[:4], text)


def _game_type(players: list[dict], coop: bool) -> str:
    humans = [p for p in players if p["control"] == "human"]
    ais = [p for p in players if p["control"] == "ai"]
    if coop:
        return "coop"
    if humans and ais:
        return "vs_ai"
    if not humans:
        return "custom"
    teams: dict[int, int] = {}
    for p in humans:
        teams[p["team"]] = teams.get(p["team"], 0) + 1
    if len(humans) == 2 and len(teams) == 2:
        return "1v1"
    if len(teams) >= 2 and max(teams.values()) > 1:
        return "team"
    if len(humans) >= 3 and len(teams) == len(humans):
        return "ffa"
    return "custom"


def scan_replay(archive: ReplayArchive, config=None) -> tuple[dict, list[dict]]:
    """The replay row and player rows of one opened replay.

    ``config`` is a :class:`pipeline.index.filters.FilterConfig` (default: the
    published recipe); its verdict goes into the replay row's ``status``.
    Raises :class:`ReplayError` for replays whose parts do not decode, and
    ``corrupt`` for a value out of range (:mod:`pipeline.index.values`).
    """
    details = archive.details
    metadata = archive.metadata
    init = archive.lobby
    try:
        details_players = list(details["m_playerList"])
        slots = join_slots(details_players, init)
        meta_players = values.metadata_players(metadata)
        players, num_observers = [], 0
        for index, (entry, slot) in enumerate(zip(details_players, slots)):
            player_id = index + 1
            control_code = slot.control if slot else entry.get("m_control")
            observe = slot.observe if slot else entry.get("m_observe") or 0
            if observe:
                num_observers += 1
                continue
            meta = meta_players.get(player_id)
            result = RESULTS.get(entry.get("m_result"), "undecided")
            if meta and "Result" in meta:
                meta_result = METADATA_RESULTS.get(str(meta["Result"]).lower())
                if meta_result and result == "undecided":
                    result = meta_result
                elif meta_result and meta_result != result:
                    raise ReplayError("corrupt", f"player {player_id}: details result "
                                      f"{result!r} but gamemetadata {meta_result!r}")
            control = "ai" if control_code == 3 else "human"
            user_id = slot.user_id if slot and control == "human" else None
            mmr = -1
            if meta and isinstance(meta.get("MMR"), (int, float)) and meta["MMR"] > 0:
                mmr = int(meta["MMR"])
            elif init and user_id is not None and user_id in init.scaled_rating:
                mmr = int(init.scaled_rating[user_id])
            apm = int(round(meta["APM"])) if meta and isinstance(
                meta.get("APM"), (int, float)) else -1
            players.append({
                "replay_id": archive.replay_id,
                "player_id": player_id,
                "user_id": -1 if user_id is None else int(user_id),
                "name": _player_name(entry.get("m_name"), f"player {player_id} name"),
                "race": _race(entry.get("m_race"), meta, f"player {player_id} race"),
                "control": control,
                "team": int(slot.team if slot else entry.get("m_teamId") or 0),
                "result": result,
                "mmr": mmr,
                "apm": apm,
                "apm_source": "metadata" if apm >= 0 else "none",
            })
        if init is not None:
            num_observers = max(num_observers, sum(
                1 for s in init.slots if s.control == 2 and s.observe))
        row = {
            "replay_id": archive.replay_id,
            "path": archive.path,
            "size": archive.size,
            "base_build": archive.base_build,
            "version": archive.version,
            "protocol_build": archive.protocol_build,
            "protocol_exact": archive.protocol_exact,
            "init_decoder": init.decoder if init else "none",
            "map_name": values.text(details.get("m_title"), "map title"),
            "map_width": init.map_width if init else 0,
            "map_height": init.map_height if init else 0,
            "game_loops": archive.game_loops,
            "game_seconds": round(archive.game_loops / LOOPS_PER_SECOND, 3),
            "game_type": _game_type(players, bool(init and (init.coop or any(
                s.commander for s in init.slots)))),
            "num_players": len(players),
            "num_observers": num_observers,
            "has_tracker_events": archive.has_tracker_events,
            "has_metadata": metadata is not None,
            "anonymized": ("replay.details" not in archive.files
                           and "replay.details.backup" in archive.files),
            "status": "ok",
            "time_utc": _filetime_to_iso(details.get("m_timeUTC")),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # The decoders accepted the bytes but the structure is not a replay's.
        raise ReplayError("corrupt", f"details/metadata layout: {exc!r}") from exc
    cfg = config if config is not None else filters.FilterConfig()
    if cfg.apm_from_events:
        _fill_apm_from_events(archive, players)
    row["status"] = filters.filter_reason(row, players, cfg) or "ok"
    values.check_columns(row, REPLAY_COLUMNS, "replay row")
    for player in players:
        values.check_columns(player, PLAYER_COLUMNS, f"player {player['player_id']} row")
    return row, players


def _fill_apm_from_events(archive: ReplayArchive, players: list[dict]) -> None:
    """APM from game events for human players the metadata gave none
    (left at -1 if the game events do not decode: the sampling stage
    reports that replay's error)."""
    missing = [p for p in players if p["apm"] < 0 and p["control"] == "human"]
    if not missing:
        return
    try:
        by_player = apm.apm_by_player(archive)
    except ReplayError:
        return
    for p in missing:
        if p["player_id"] in by_player:
            p["apm"] = int(round(by_player[p["player_id"]]))
            p["apm_source"] = "events"


@dataclasses.dataclass
class ScanResult:
    """What scanning one file gives: rows, or one error record."""
    replay: dict | None
    players: list[dict]
    error: dict | None


def scan_bytes(data: bytes, path: str, config=None, max_bytes: int | None = None, *,
               inflate: InflateLimits | None = None,
               max_game_loops: int | None = None) -> ScanResult:
    """Scans one replay's bytes; bad input becomes an error record, never an
    exception (``MemoryError`` aside: the process boundary of
    :mod:`pipeline.job.worker` makes it a ``resource`` record).  Games longer
    than ``max_game_loops`` are ``too_long``."""
    rid = ""
    try:
        archive = ReplayArchive(data, path=path, max_bytes=max_bytes, inflate=inflate)
        rid = archive.replay_id
        if max_game_loops and archive.game_loops > max_game_loops:
            raise ReplayError("too_long", f"{archive.game_loops} game loops > limit "
                                          f"{max_game_loops}")
        row, players = scan_replay(archive, config)
        return ScanResult(row, players, None)
    except ReplayError as exc:
        if not rid and data:
            rid = replay_id(data)
        return ScanResult(None, [], error_row(path, rid, "scan", exc.category, exc.message))
    except RecursionError as exc:  # deeply nested garbage in a decoder
        return ScanResult(None, [], error_row(path, rid, "scan", "corrupt", repr(exc)))


def scan_path(path: str, config=None, max_bytes: int | None = None, *,
              inflate: InflateLimits | None = None,
              max_game_loops: int | None = None) -> ScanResult:
    """Reads (``pipeline.replay.storage.read_bytes``) and scans one file."""
    try:
        data = storage.read_bytes(path, max_bytes)
    except ReplayError as exc:
        return ScanResult(None, [], error_row(path, "", "read", exc.category, exc.message))
    except OSError as exc:
        return ScanResult(None, [], error_row(path, "", "read", "io_error", repr(exc)))
    return scan_bytes(data, path, config, max_bytes, inflate=inflate,
                      max_game_loops=max_game_loops)


@dataclasses.dataclass(frozen=True)
class ScanJob:
    """One file to read and scan in a bounded child process
    (:class:`pipeline.replay.bounded_process.TimedWorker`): the launcher and
    the Beam workers never hold a replay's content."""
    DOING: ClassVar[str] = "scanning the replay"
    path: str
    filter_config: Any               # pipeline.index.filters.FilterConfig or None
    max_bytes: int | None
    inflate: InflateLimits = InflateLimits()
    max_game_loops: int | None = None

    def run(self) -> ScanResult:
        return scan_path(self.path, self.filter_config, self.max_bytes,
                         inflate=self.inflate, max_game_loops=self.max_game_loops)


def kept_replays(paths: Iterable[str], config=None
                 ) -> Iterator[tuple[str, bytes, ScanResult]]:
    """(path, bytes, scan) of each file a run would sample: scanned ``ok``,
    kept by ``filters.filter_reason`` under ``config``, and the first copy of
    its replay id.  For studies and checks that read replays the pipeline's
    way without running it."""
    seen: set[str] = set()
    for path in paths:
        data = storage.read_bytes(path)
        scanned = scan_bytes(data, path)
        replay = scanned.replay
        if (replay is None or replay["status"] != "ok" or replay["replay_id"] in seen
                or filters.filter_reason(replay, scanned.players, config) is not None):
            continue
        seen.add(replay["replay_id"])
        yield path, data, scanned


# ------------------------------------------------------------ for sources
def player_contexts(replay_row: Mapping[str, Any],
                    player_rows: Sequence[Mapping[str, Any]]) -> list[PlayerContext]:
    """Schema context (``schemas.sample.Group.CONTEXT``) for each human of a 2-player game.

    Raises ``ValueError`` for games without exactly two players.
    """
    players = [p for p in player_rows if p["replay_id"] == replay_row["replay_id"]]
    if len(players) != 2:
        raise ValueError(f"replay {replay_row['replay_id']}: player contexts need a "
                         f"two-player game, got {len(players)} players")
    out = []
    for me, other in ((players[0], players[1]), (players[1], players[0])):
        if me["control"] != "human":
            continue
        context = {
            "map_name": replay_row["map_name"],
            "map_width": int(replay_row["map_width"]),
            "map_height": int(replay_row["map_height"]),
            "base_build": int(replay_row["base_build"]),
            "game_version": replay_row["version"],
            "race": me["race"],
            "opponent_race": other["race"],
            "mmr": int(me["mmr"]),
            "opponent_mmr": int(other["mmr"]),
            "apm": int(me["apm"]),
            "opponent_apm": int(other["apm"]),
            "game_loops": int(replay_row["game_loops"]),
        }
        out.append(PlayerContext(int(me["player_id"]), me["result"], context))
    return sorted(out, key=lambda c: c.player_id)


# ---------------------------------------------------------------- writing
def _write_table(rows: Iterable[Mapping[str, Any]], columns, path: str) -> None:
    """One Parquet file, atomically (temp name, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = arrow_schema(columns)
    rows = list(rows)
    # Paths are file names, which need not be UTF-8 (surrogate escapes).
    table = pa.Table.from_pydict(
        {name: [storable(r[name]) for r in rows] if typ == "string" else
         [r[name] for r in rows] for name, typ, _ in columns}, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    tmp = f"{path}.tmp-{os.getpid()}"
    with filesystem.create(tmp) as f:
        f.write(buf.getvalue())
    filesystem.rename(tmp, path)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def write_index(replay_rows: Iterable[Mapping[str, Any]],
                player_rows: Iterable[Mapping[str, Any]], out_dir: str) -> list[str]:
    """Writes ``replays.parquet`` and ``players.parquet`` into ``out_dir``."""
    paths = [_join(out_dir, "replays.parquet"), _join(out_dir, "players.parquet")]
    _write_table(sorted(replay_rows, key=lambda r: (r["path"], r["replay_id"])),
                 REPLAY_COLUMNS, paths[0])
    _write_table(sorted(player_rows, key=lambda r: (r["replay_id"], r["player_id"])),
                 PLAYER_COLUMNS, paths[1])
    return paths


def write_errors(error_rows: Iterable[Mapping[str, Any]], out_dir: str) -> str:
    """Writes ``errors.parquet`` (:data:`ERROR_COLUMNS`) into ``out_dir``."""
    path = _join(out_dir, "errors.parquet")
    _write_table(sorted(error_rows, key=lambda r: (r["path"], r["stage"])), ERROR_COLUMNS, path)
    return path


def read_table(path: str) -> list[dict]:
    """Rows of an index / error Parquet file, as dicts."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
