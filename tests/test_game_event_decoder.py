"""The compiled game-event decoder against s2protocol's own, on real replays."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
from s2protocol.decoders import CorruptedError, TruncatedError

from pipeline import game_event_decoder
from pipeline.replay_archive import ReplayArchive, protocol_module

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
