"""Replay reading, the metadata scan and the scan command, on the real corpus."""
from __future__ import annotations

import csv
import os
import random
import struct
from pathlib import Path

import pytest

from pipeline.index import filters

from pipeline.index import scan

from pipeline.replay import storage

from pipeline.index import scan_cli
from pipeline.replay.archive import ERROR_CATEGORIES, ReplayArchive, ReplayError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPLAYS = SHARED / "replays"
pytestmark = pytest.mark.skipif(not REPLAYS.is_dir(), reason="../shared/replays not present")

ASTREA = "python-sc2/20220223 - GAME 1 - Astrea vs SKillous - P vs P - Curious Minds LE.SC2Replay"
ENCRYPTED = {"sc2reader/1.1.3.16939/11.SC2Replay", "sc2reader/1.2.2.17811/4.SC2Replay"}


def _rel(path: str) -> str:
    return Path(path).resolve().relative_to(REPLAYS.resolve()).as_posix()


@pytest.fixture(scope="module")
def corpus():
    """{relative path: ScanResult} of every replay in the corpus (default filters)."""
    paths = storage.expand_inputs([str(REPLAYS)])
    return {_rel(p): scan.scan_path(p) for p in paths}


@pytest.fixture(scope="module")
def astrea_bytes() -> bytes:
    return (REPLAYS / ASTREA).read_bytes()


def test_every_file_is_a_row_or_an_error(corpus):
    with open(REPLAYS / "MANIFEST.csv", newline="") as f:
        manifest = {row["file"] for row in csv.DictReader(f)}
    assert set(corpus) == manifest and len(corpus) == 372
    errors = {p: r.error for p, r in corpus.items() if r.error}
    rows = {p: r.replay for p, r in corpus.items() if r.replay}
    assert len(errors) + len(rows) == 372
    assert set(errors) == ENCRYPTED
    assert all(e["category"] == "encrypted" and e["stage"] == "scan" and e["replay_id"]
               for e in errors.values())
    for row in rows.values():
        assert set(row) == {c for c, _, _ in scan.REPLAY_COLUMNS}
        assert row["game_type"] in scan.GAME_TYPES
        assert row["status"] == "ok" or row["status"] in filters.REASONS


def test_outcomes_agree_with_gamemetadata_and_details(corpus):
    checked_meta = checked_two = 0
    for rel, result in corpus.items():
        if not result.replay or result.replay["num_players"] != 2:
            continue
        archive = ReplayArchive((REPLAYS / rel).read_bytes(), path=rel)
        by_id = {p["player_id"]: p["result"] for p in result.players}
        details = {i + 1: scan.RESULTS[e["m_result"]]
                   for i, e in enumerate(archive.details["m_playerList"]) if i + 1 in by_id}
        if archive.metadata:
            meta = {p["PlayerID"]: p["Result"].lower() for p in archive.metadata["Players"]}
            assert by_id == {k: meta[k] for k in by_id}, rel
            checked_meta += 1
        assert {k: v for k, v in by_id.items() if details[k] != "undecided"} == \
            {k: v for k, v in details.items() if v != "undecided"}, rel
        if result.replay["game_type"] == "1v1" and "undecided" not in by_id.values():
            assert sorted(by_id.values()) in (["loss", "win"], ["tie", "tie"]), rel
        checked_two += 1
    assert (checked_meta, checked_two) == (34, 291)


def test_known_file_exact_values(corpus, astrea_bytes):
    result = corpus[ASTREA]
    row = result.replay
    assert row["base_build"] == 86383 and row["version"] == "5.0.8.86383"
    assert row["game_loops"] == 5210 and row["game_seconds"] == pytest.approx(232.589, abs=1e-3)
    assert (row["map_name"], row["map_width"], row["map_height"]) == ("[ESL] Curious Minds", 152, 152)
    assert row["game_type"] == "1v1" and row["num_players"] == 2 and row["num_observers"] == 8
    assert row["protocol_exact"] and row["init_decoder"] == "s2protocol"
    assert row["has_tracker_events"] and row["has_metadata"] and not row["anonymized"]
    assert row["status"] == "ok" and row["size"] == 64300
    assert row["replay_id"] == "4caac633a5df2dc46da8ebdb56ebbd226d035ddeedc34baeb59927709fbde938"
    assert row["time_utc"].startswith("2022-02-23T")
    players = [(p["player_id"], p["user_id"], p["name"], p["race"], p["control"], p["team"],
                p["result"], p["mmr"], p["apm"]) for p in result.players]
    assert players == [(1, 3, "SKillous", "Protoss", "human", 1, "loss", -1, 237),
                       (2, 5, "Astrea", "Protoss", "human", 0, "win", -1, 261)]


def test_player_and_user_ids_match_tracker_setup_events(corpus):
    """player_id / user_id as tracker SPlayerSetupEvent numbers them."""
    for rel in [r for r in corpus if r.startswith("python-sc2/")]:
        archive = ReplayArchive((REPLAYS / rel).read_bytes(), path=rel)
        setups = {e["m_playerId"]: e["m_userId"] for e in archive.tracker_events
                  if e["_event"].endswith("SPlayerSetupEvent") and e["m_type"] == 1}
        assert {p["player_id"]: p["user_id"] for p in corpus[rel].players} == setups, rel


def test_old_build_joins_players_to_lobby_slots(corpus):
    # WoL 1.0.3: s2protocol's 15405 decoder misreads the init data, the details
    # mark the second player as an observer; the lobby slots (sc2reader's reader)
    # say: player (user 0), observer (user 1), player (user 2).
    r = corpus["sc2reader/1.0.3.16291/1v1_Scrap Station_1903.SC2Replay"]
    assert r.replay["init_decoder"] == "sc2reader"
    assert (r.replay["game_type"], r.replay["num_observers"]) == ("1v1", 1)
    assert [(p["player_id"], p["user_id"], p["name"], p["result"]) for p in r.players] == \
        [(1, 0, "AkariTakai", "win"), (2, 2, "Morriguan", "loss")]
    # A 3.0 build s2protocol lacks: nearest protocol for details, sc2reader for init data.
    r = corpus["sc2reader/3.0.0.38215/first.SC2Replay"]
    assert not r.replay["protocol_exact"] and r.replay["init_decoder"] == "sc2reader"
    assert (r.replay["map_width"], r.replay["map_height"]) == (168, 168)
    assert [p["user_id"] for p in r.players] == [0, 1]


def test_game_types(corpus):
    types = {}
    for r in corpus.values():
        if r.replay:
            types[r.replay["game_type"]] = types.get(r.replay["game_type"], 0) + 1
    assert types == {"1v1": 267, "team": 65, "vs_ai": 29, "custom": 4, "coop": 3, "ffa": 2}
    assert corpus["sc2reader/coop/CoA.SC2Replay"].replay["game_type"] == "coop"
    assert corpus["sc2reader/2.0.3.24764/Akilon Wastes (10).SC2Replay"].replay["game_type"] == "vs_ai"


def test_player_contexts(corpus):
    r = corpus[ASTREA]
    contexts = scan.player_contexts(r.replay, r.players)
    assert [(c.player_id, c.outcome) for c in contexts] == [(1, "loss"), (2, "win")]
    assert contexts[0].context == {
        "map_name": "[ESL] Curious Minds", "map_width": 152, "map_height": 152,
        "base_build": 86383, "game_version": "5.0.8.86383", "race": "Protoss",
        "opponent_race": "Protoss", "mmr": -1, "opponent_mmr": -1, "apm": 237,
        "opponent_apm": 261, "game_loops": 5210}
    from schemas.sample import Group, SampleSchema
    assert set(contexts[0].context) == set(SampleSchema().names(Group.CONTEXT))
    vs_ai = corpus["sc2reader/3.1.0/1.SC2Replay"]
    assert [c.player_id for c in scan.player_contexts(vs_ai.replay, vs_ai.players)] == [1]
    team = corpus["sc2reader/1.1.0.16561/2v2_Discord IV_18612.SC2Replay"]
    with pytest.raises(ValueError):
        scan.player_contexts(team.replay, team.players)


def _non_replay_mpq(replay: bytes) -> bytes:
    # A replay is a user-data header followed by a plain MPQ archive; the
    # archive alone is a valid MPQ that is not a replay.
    (offset,) = struct.unpack("<I", replay[8:12])
    return replay[offset:]


def test_bad_inputs_become_error_records(astrea_bytes):
    rng = random.Random(7)
    flipped = bytearray(astrea_bytes)
    for _ in range(300):
        flipped[rng.randrange(1024, len(flipped))] ^= 0xFF
    cases = {
        "empty": (b"", {"empty"}),
        "random": (bytes(rng.randrange(256) for _ in range(4096)), {"not_mpq"}),
        "truncated": (astrea_bytes[: len(astrea_bytes) // 2], {"truncated"}),
        "flipped": (bytes(flipped), {"corrupt", "not_mpq", "unsupported_build"}),
        "mpq_not_replay": (_non_replay_mpq(astrea_bytes), {"unreadable_header"}),
    }
    for name, (data, allowed) in cases.items():
        result = scan.scan_bytes(data, name)
        assert result.replay is None and result.players == [], name
        assert result.error["category"] in allowed, (name, result.error)
        assert result.error["path"] == name and result.error["message"]


def test_read_limits_and_missing_files(tmp_path, astrea_bytes):
    f = tmp_path / "a.SC2Replay"
    f.write_bytes(astrea_bytes)
    with pytest.raises(ReplayError) as exc:
        storage.read_bytes(str(f), max_bytes=1000)
    assert exc.value.category == "too_large"
    assert storage.read_bytes(str(f), max_bytes=len(astrea_bytes)) == astrea_bytes
    assert scan.scan_path(str(f), max_bytes=1000).error["category"] == "too_large"
    missing = scan.scan_path(str(tmp_path / "gone.SC2Replay"))
    assert missing.error["category"] == "io_error" and missing.error["stage"] == "read"


def test_expand_inputs(tmp_path, astrea_bytes):
    (tmp_path / "d" / "deep").mkdir(parents=True)
    for name in ("d/a.SC2Replay", "d/deep/b.sc2replay", "d/deep/c.SC2REPLAY"):
        (tmp_path / name).write_bytes(astrea_bytes)
    (tmp_path / "d" / "notes.txt").write_text("x")
    d = str(tmp_path / "d")
    expected = sorted(str(tmp_path / n) for n in
                      ("d/a.SC2Replay", "d/deep/b.sc2replay", "d/deep/c.SC2REPLAY"))
    assert storage.expand_inputs([d]) == expected
    assert storage.expand_inputs([d, d + "/**/*.sc2replay", d + "/a.SC2Replay"]) == expected
    assert storage.expand_inputs([d + "/*.SC2Replay"]) == [expected[0]]
    assert storage.expand_inputs(["file://" + d + "/a.SC2Replay"]) == [expected[0]]
    with pytest.raises(storage.NoReplaysMatchedError, match="nope"):
        storage.expand_inputs([d, str(tmp_path / "nope")])


def test_write_index_roundtrip(tmp_path, corpus):
    rows = [r.replay for r in corpus.values() if r.replay]
    players = [p for r in corpus.values() for p in r.players]
    errors = [r.error for r in corpus.values() if r.error]
    written = scan.write_index(rows, players, str(tmp_path / "index"))
    scan.write_errors(errors, str(tmp_path / "errors"))
    assert sorted(os.listdir(tmp_path / "index")) == ["players.parquet", "replays.parquet"]
    back = scan.read_table(written[0])
    assert len(back) == len(rows) and {r["replay_id"] for r in back} == {r["replay_id"] for r in rows}
    assert sorted(map(tuple, (sorted(r.items()) for r in back))) == \
        sorted(map(tuple, (sorted(r.items()) for r in rows)))
    assert len(scan.read_table(written[1])) == len(players)
    assert scan.read_table(str(tmp_path / "errors" / "errors.parquet")) == \
        sorted(errors, key=lambda e: (e["path"], e["stage"]))
    with pytest.raises(ValueError):
        scan.error_row("p", "", "scan", "no_such_category", "m")
    assert set(ERROR_CATEGORIES) >= {"io_error", "encrypted", "corrupt"}


def test_scan_command(tmp_path, capsys, astrea_bytes):
    src = tmp_path / "in"
    src.mkdir()
    for p in (REPLAYS / "python-sc2").iterdir():
        (src / p.name).write_bytes(p.read_bytes())
    (src / "copy.SC2Replay").write_bytes(astrea_bytes)    # same bytes: a duplicate
    (src / "junk.SC2Replay").write_bytes(b"not a replay")
    out = tmp_path / "out"
    assert scan_cli.main(["--replays", str(src), "--out", str(out), "--workers", "1",
                          "--progress_every", "2"]) == 0
    captured = capsys.readouterr()
    assert "scanned 7/7 files" in captured.err
    assert "errors: 1" in captured.out and "not_mpq" in captured.out
    replays = scan.read_table(str(out / "index" / "replays.parquet"))
    assert sorted(r["status"] for r in replays) == ["duplicate"] + ["ok"] * 5
    assert len(scan.read_table(str(out / "index" / "players.parquet"))) == 10
    errors = scan.read_table(str(out / "errors" / "errors.parquet"))
    assert [(Path(e["path"]).name, e["category"]) for e in errors] == [("junk.SC2Replay", "not_mpq")]
    # Filter flags reach the scan: only PvP kept.
    assert scan_cli.main(["--replays", str(src), "--out", str(out), "--workers", "2",
                          "--matchups", "PvP"]) == 0
    statuses = sorted(r["status"] for r in
                      scan.read_table(str(out / "index" / "replays.parquet")))
    assert statuses == ["duplicate"] + ["matchup_filtered"] * 4 + ["ok"]


def test_apm_from_events_tracks_blizzards(corpus):
    """pipeline.index.apm against gamemetadata's APM on every player that has it."""
    import numpy as np

    from pipeline.index import apm
    ours, theirs = [], []
    for rel, result in corpus.items():
        if not result.replay or not result.replay["has_metadata"]:
            continue
        known = [p for p in result.players if p["apm_source"] == "metadata"
                 and p["apm"] > 0 and p["user_id"] >= 0]
        if not known:
            continue
        archive = ReplayArchive((REPLAYS / rel).read_bytes(), path=rel)
        try:
            by_player = apm.apm_by_player(archive)
        except ReplayError:
            continue
        for p in known:
            ours.append(by_player[p["player_id"]])
            theirs.append(p["apm"])
    ratio = np.array(ours) / np.array(theirs)
    assert len(ratio) >= 60
    assert 0.88 < ratio.mean() < 1.0 and ratio.std() < 0.15
    assert np.corrcoef(ours, theirs)[0, 1] > 0.99


def test_scan_fills_apm_from_events_only_when_asked():
    import sc2reader

    rel = "sc2reader/1.1.0.16561/1v1_Lost Temple_1893.SC2Replay"  # no gamemetadata
    plain = scan.scan_path(str(REPLAYS / rel))
    assert [(p["apm"], p["apm_source"]) for p in plain.players] == [(-1, "none")] * 2
    config = filters.FilterConfig(apm_from_events=True)
    filled = scan.scan_path(str(REPLAYS / rel), config)
    # WoL game events name players by entity number, not user id: count
    # each player's actions with sc2reader's attribution.
    replay = sc2reader.load_replay(str(REPLAYS / rel), load_level=4)
    minutes = replay.frames / 22.4 / 60
    kinds = ("CommandEvent", "SelectionEvent", "ControlGroupEvent")
    for p in filled.players:
        actions = sum(1 for e in replay.events
                      if getattr(e, "player", None) is not None and e.player.pid == p["player_id"]
                      and any(type(e).__name__.endswith(k) or isinstance(e, getattr(
                          sc2reader.events.game, k)) for k in kinds))
        assert p["apm_source"] == "events"
        assert p["apm"] == round(actions / minutes) > 10
