"""The compiled game-event decoder against s2protocol's own, on real replays."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
from s2protocol.decoders import CorruptedError, TruncatedError

from pipeline.replay import game_event_decoder
from pipeline.replay.archive import ReplayArchive, protocol_module

REPLAYS = Path(__file__).resolve().parents[1].parent / "shared" / "replays"
pytestmark = pytest.mark.skipif(not REPLAYS.exists(), reason="shared replays absent")

# Different builds and protocols (exact and borrowed), short to long games.
FILES = [
    "sc2reader/2.0.8.25604/mlg1.SC2Replay",
    "sc2reader/2.1.4/Catallena LE.SC2Replay",
    "sc2reader/3.0.0.38215/first.SC2Replay",
    "sc2reader/3.12/Honorgrounds.SC2Replay",
    "sc2reader/4.10.0.75689/trophy_id_13.SC2Replay",
    "spawningtool/patch_5_0_16b.SC2Replay",
    "python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - Curious Minds LE.SC2Replay",
]


def _events(path: Path):
    archive = ReplayArchive(path.read_bytes(), path=str(path))
    archive.game_events  # chooses the protocol that decodes them
    module = protocol_module(archive.part_protocols["replay.game.events"])
    return module, archive.read("replay.game.events")


def _existing(files):
    found = [REPLAYS / f for f in files if (REPLAYS / f).exists()]
    assert len(found) >= 5, "expected the shared replays of the test list"
    return found


@pytest.mark.parametrize("path", _existing(FILES), ids=lambda p: p.name)
def test_equal_to_s2protocol(path):
    module, raw = _events(path)
    want = list(module.decode_replay_game_events(raw))
    got = game_event_decoder.decode_game_events(module, raw)
    assert len(got) == len(want) > 100
    for g, w in zip(got, want):
        assert g == w
        assert list(g) == list(w)  # same key order too


def _same_outcome(module, data: bytes) -> str:
    """Decodes ``data`` both ways; asserts the same events or both raising."""
    try:
        want = list(module.decode_replay_game_events(data))
    except (TruncatedError, CorruptedError):
        with pytest.raises((TruncatedError, CorruptedError)):
            game_event_decoder.decode_game_events(module, data)
        return "raised"
    assert game_event_decoder.decode_game_events(module, data) == want
    return "decoded"


def test_damaged_data_like_s2protocol():
    module, raw = _events(REPLAYS / FILES[-1])
    outcomes = [_same_outcome(module, raw[:cut])
                for cut in (1, 7, 1000, len(raw) // 3, len(raw) - 1)]
    for at in (50, 5000, len(raw) // 2):  # flipped bytes
        outcomes.append(_same_outcome(module, raw[:at] + bytes([raw[at] ^ 0xA5]) + raw[at + 1:]))
    assert outcomes.count("raised") >= 4


def test_unknown_type_kind_falls_back_to_s2protocol():
    module, raw = _events(REPLAYS / FILES[-1])
    typeinfos = list(module.typeinfos)
    camera_type = next(t for t, name in module.game_event_types.values()
                       if name.endswith("SCameraUpdateEvent"))
    typeinfos[camera_type] = ("_real32", ())  # a kind the compiler does not write
    calls = []

    def fallback(data):
        calls.append(len(data))
        return iter(module.decode_replay_game_events(data))

    double = types.SimpleNamespace(
        __name__="protocol_with_real32", typeinfos=typeinfos,
        game_event_types=module.game_event_types, svaruint32_typeid=module.svaruint32_typeid,
        replay_userid_typeid=module.replay_userid_typeid,
        game_eventid_typeid=module.game_eventid_typeid,
        decode_replay_game_events=fallback)
    got = game_event_decoder.decode_game_events(double, raw)
    assert calls == [len(raw)]
    assert got == list(module.decode_replay_game_events(raw))


WOL_1V1 = "sc2reader/1.1.0.16561/1v1_Lost Temple_1893.SC2Replay"


def test_wings_of_liberty_game_events_equal_sc2readers():
    """s2protocol cannot decode WoL game events; ours must read what sc2reader does."""
    import sc2reader

    path = REPLAYS / WOL_1V1
    archive = ReplayArchive(path.read_bytes(), path=str(path))
    assert protocol_module(archive.protocol_build).replay_userid_typeid is None
    events = archive.game_events
    assert events[-1]["_gameloop"] == archive.game_loops == 14900
    ours = {}
    for e in events:
        ours.setdefault(e["_event"].rsplit(".", 1)[-1], []).append(e)
    replay = sc2reader.load_replay(str(path), load_level=4)
    theirs = {}
    for e in replay.events:
        theirs.setdefault(type(e).__name__, []).append(e)
    assert len(ours["SCameraUpdateEvent"]) == len(theirs["CameraEvent"]) == 4068
    for a, b in zip(ours["SCameraUpdateEvent"], theirs["CameraEvent"]):
        assert (a["_gameloop"], a["_userid"]["m_userId"]) == (b.frame, b.pid)
        assert (a["m_target"]["x"] / 256, a["m_target"]["y"] / 256) == (b.x, b.y)
    commands = [e for name in ("BasicCommandEvent", "TargetPointCommandEvent",
                               "TargetUnitCommandEvent", "DataCommandEvent")
                for e in theirs.get(name, [])]
    commands.sort(key=lambda e: (e.frame, e.pid))
    assert len(ours["SCmdEvent"]) == len(commands) == 842
    for a, b in zip(sorted(ours["SCmdEvent"], key=lambda e: (e["_gameloop"],
                                                             e["_userid"]["m_userId"])),
                    commands):
        abil = a["m_abil"]
        link = (abil["m_abilLink"] << 5 | abil["m_abilCmdIndex"]) if abil else 0
        assert (a["_gameloop"], link) == (b.frame, b.ability_id)
    tags = [e["m_delta"]["m_addUnitTags"] for e in ours["SSelectionDeltaEvent"]]
    assert tags == [e.new_unit_ids for e in theirs["SelectionEvent"]]


def test_exact_protocol_that_fails_gets_a_neighbour():
    """2.0.8 replays carry base build 24944, whose table fails on their game
    events; 26490's decodes both game and tracker events."""
    path = REPLAYS / "sc2reader/2.0.8.25446/ggtracker_3117069.SC2Replay"
    archive = ReplayArchive(path.read_bytes(), path=str(path))
    assert (archive.protocol_build, archive.protocol_exact) == (24944, True)
    assert len(archive.game_events) > 1000
    assert archive.game_events[-1]["_gameloop"] <= archive.game_loops
    assert archive.tracker_events
    assert archive.part_protocols["replay.game.events"] == 26490
    assert archive.part_protocols["replay.tracker.events"] == 26490


def test_protocol_modules_load_safely_from_many_threads():
    """Beam runs bundles on threads; s2protocol's imp-based loading hands a
    second thread a module that is still executing unless loads are locked."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.replay import archive
    builds = list(archive._bundled_builds()[-12:])
    for build in builds:  # forget them, so the threads really load them
        archive._PROTOCOLS.pop(build, None)
        sys.modules.pop(f"protocol{build}", None)
    with ThreadPoolExecutor(8) as pool:
        modules = list(pool.map(archive.protocol_module, builds * 8))
    for build, module in zip(builds * 8, modules):
        assert module is archive.protocol_module(build)
        assert callable(module.decode_replay_details) and module.typeinfos
