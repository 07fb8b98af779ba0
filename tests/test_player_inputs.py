"""player_inputs and ability_table on a real replay, checked against its raw events."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.actions import ability_table

from pipeline.actions import player_inputs
from pipeline.coords import ViewGeometry
from pipeline.pysc2_compat import apply
from pipeline.replay.archive import ReplayArchive
from schemas import layers

apply()
from pysc2.lib import actions  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPLAY = (SHARED / "replays" / "python-sc2" /
          "20220223 - GAME 1 - Astrea vs SKillous - P vs P - Curious Minds LE.SC2Replay")
F = actions.FUNCTIONS

pytestmark = pytest.mark.skipif(not REPLAY.exists(), reason="shared replays absent")


@pytest.fixture(scope="module")
def archive():
    return ReplayArchive(REPLAY.read_bytes(), path=str(REPLAY))


@pytest.fixture(scope="module")
def streams(archive):
    return player_inputs.player_streams(archive)


def test_ability_table_known_pairs():
    table = ability_table.load()
    resolver = table.resolver("LotV", 86383)
    links = {resolver.name(link): link for link in range(2000) if resolver.name(link)}
    marine = resolver.lookup(links["BarracksTrain"], 0)
    assert (marine.api_id, marine.quick) == (560, int(F.Train_Marine_quick.id))
    # Alias: the orbital command trains SCVs with the command centre's ability.
    r4 = table.resolver("LotV", 65895)  # 4.4: datapack 59587 names it OrbitalCommandTrain
    links4 = {r4.name(link): link for link in range(2000) if r4.name(link)}
    scv = r4.lookup(links4["OrbitalCommandTrain"], 0)
    assert (scv.api_id, scv.quick) == (524, int(F.Train_SCV_quick.id))
    # pysc2 hide_specific_actions: forge weapons level 1 is the general research.
    forge = resolver.lookup(links["ForgeResearch"], 0)
    assert forge.quick == int(F.Research_ProtossGroundWeapons_quick.id)
    assert (table.smart.screen, table.smart.minimap) == (int(F.Smart_screen.id),
                                                         int(F.Smart_minimap.id))
    assert table.datapack_key("LotV", 86383) == "LotV/80949"
    assert table.datapack_key("HotS", 24764) == "HotS/24764"


def test_expansion_and_players(archive, streams):
    assert ability_table.expansion_of(archive.details) == "LotV"
    # Details: player 1 SKillous (working slot 4 -> user 3), player 2 Astrea (slot 6 -> user 5);
    # the four observers' inputs are ignored.
    assert {pid: s.event_id for pid, s in streams.items()} == {1: 3, 2: 5}


def test_first_actions_of_player_1(archive, streams):
    acts = streams[1].actions
    geo = ViewGeometry((152, 152), 64, 64, 24)
    # Loop 3: the game places the camera at m_target (32576, 5506)/256 = (127.25, 21.51).
    assert acts[0].game_loop == 3 and acts[0].automatic
    assert acts[0].function_id == int(F.move_camera.id)
    assert acts[0].arguments == {"minimap": (53, 54)}
    # Loop 5: the player clicks the nexus (tag 43778049) -> select_point at its pixel.
    born = next(e for e in archive.tracker_events if e["_event"].endswith("SUnitBornEvent")
                and player_inputs.unit_tag(e["m_unitTagIndex"], e["m_unitTagRecycle"]) == 43778049)
    nexus_px = tuple(int(v) for v in geo.world_to_screen([born["m_x"], born["m_y"]],
                                                         (127.25, 5506 / 256)))
    assert born["m_unitTypeName"] == b"Nexus"
    assert acts[1].game_loop == 5 and not acts[1].automatic
    assert acts[1].function_id == int(F.select_point.id)
    assert acts[1].arguments == {"select_point_act": 0, "screen": nexus_px}
    # Loop 9: SCmdEvent link 177 index 0 (NexusTrain, probe), cmdFlags 256 (not queued).
    assert (acts[2].game_loop, acts[2].function_id, dict(acts[2].arguments)) == (
        9, int(F.Train_Probe_quick.id), {"queued": 0})
    # Loop 15: two probes replace the selection -> a box.
    assert acts[3].game_loop == 15 and acts[3].function_id == int(F.select_rect.id)
    assert acts[3].arguments["select_add"] == 0
    # Loop 16: right click on a mineral field, snapshot (512000, 75776)/4096 = (125, 18.5),
    # in view of the camera at (127.25, 21.51) -> Smart_screen (26, 40).
    assert (acts[4].game_loop, acts[4].function_id, dict(acts[4].arguments)) == (
        16, int(F.Smart_screen.id), {"queued": 0, "screen": (26, 40)})
    # Loop 43: control group 4 set (m_controlGroupUpdate 0 -> ControlGroupAct.set).
    cg = next(a for a in acts if a.game_loop == 43)
    assert cg.function_id == int(F.select_control_group.id)
    assert cg.arguments == {"control_group_act": int(actions.ControlGroupAct.set),
                            "control_group_id": 4}
    loops = [a.game_loop for a in acts]
    assert loops == sorted(loops)
    assert sum(a.automatic for a in acts) == 1
    # Every action is a valid pysc2 call at these resolutions, but the two
    # commands of an ability pysc2 lacks: their targets are unknown.
    unknown = [a for a in acts if a.function_id == layers.UNKNOWN]
    assert len(unknown) == 2 and all(not a.arguments for a in unknown)
    for a in acts:
        if a.function_id != layers.UNKNOWN:
            F[a.function_id](*[a.arguments[arg.name] for arg in F[a.function_id].args])


def test_camera_and_selection_tracking(streams):
    s = streams[1]
    assert s.camera[0] == (3, 127.25, 5506 / 256)
    assert s.camera_at(48) == (127.25, 5506 / 256)
    assert s.camera_at(49) == (32128 / 256, 5827 / 256)
    assert s.selection_at(5) == (43778049,)
    assert s.selection_at(15) == (46137345, 46661633)
    assert s.selection_at(4) == ()
    cameras = [a for a in s.actions if a.function_id == int(F.move_camera.id)]
    assert len(cameras) == len(s.camera)


def test_mapping_rate(streams):
    # Player 1: 125 commands, 2 of an ability (link 701) the 5.0.8 datapack lacks.
    assert (streams[1].commands, streams[1].commands_mapped) == (125, 123)
    assert streams[1].unmapped["ability:link701/0"] == 2
    assert (streams[2].commands, streams[2].commands_mapped) == (175, 175)
    # The two are actions with an unknown target (908 converted + 2).
    assert len(streams[1].actions) == 910 and len(streams[2].actions) == 1103


def test_remove_masks():
    sel = [10, 20, 30, 40]
    assert player_inputs._remove(sel, {"None": None}) == (sel, 0, -1)
    assert player_inputs._remove(sel, {"Mask": (4, 0b0101)}) == ([20, 40], 2, 0)
    assert player_inputs._remove(sel, {"OneIndices": [3]}) == ([10, 20, 30], 1, 3)
    assert player_inputs._remove(sel, {"ZeroIndices": [0, 2]}) == ([10, 30], 2, 1)
    assert player_inputs._remove(sel, {"ZeroIndices": []}) == ([], 4, 0)


def test_fast_read_bits_matches_s2protocol():
    import random

    from s2protocol import decoders

    from pipeline.replay import s2protocol_speedup
    rng = random.Random(7)
    data = bytes(rng.randrange(256) for _ in range(4000))
    fast = decoders.BitPackedBuffer(data)
    plain = decoders.BitPackedBuffer(data)
    while True:
        n = rng.choice([0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100])
        if rng.random() < 0.05:
            fast.byte_align()
            plain.byte_align()
        try:
            want = s2protocol_speedup._ORIGINAL(plain, n)
        except decoders.TruncatedError:
            with pytest.raises(decoders.TruncatedError):
                s2protocol_speedup.read_bits(fast, n)
            break
        assert s2protocol_speedup.read_bits(fast, n) == want
        assert (fast._used, fast._nextbits) == (plain._used, plain._nextbits)


@pytest.mark.parametrize("name", [
    "python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - Curious Minds LE.SC2Replay",
    "sc2reader/2.1.3.28667/Habitation Station LE (54).SC2Replay",
    "sc2reader/3.16/AbyssalReef.SC2Replay",
])
def test_fast_decoding_equals_s2protocol_on_replays(name):
    from pipeline.replay import s2protocol_speedup
    data = (SHARED / "replays" / name).read_bytes()
    decoded = []
    try:
        for install in (s2protocol_speedup.uninstall, s2protocol_speedup.install):
            install()
            a = ReplayArchive(data)
            decoded.append((a.details, a.game_events, a.tracker_events))
    finally:
        s2protocol_speedup.install()
    assert decoded[0] == decoded[1]
    assert len(decoded[0][1]) > 300 and len(decoded[0][2]) > 100


def test_build_3_4_opening_is_a_build_order():
    """3.4's sparse sc2reader datapack, filled by alignment: probes and pylon first."""
    path = SHARED / "replays" / "sc2reader/3.4.0/issueYY.SC2Replay"
    if not path.exists():
        pytest.skip("3.4 replay absent")
    streams = player_inputs.player_streams(ReplayArchive(path.read_bytes(), path=str(path)))
    names = [actions.FUNCTIONS[a.function_id].name for a in streams[1].actions
             if actions.FUNCTIONS[a.function_id].name.startswith(("Train_", "Build_"))][:4]
    assert names == ["Train_Probe_quick", "Build_Pylon_screen", "Train_Probe_quick",
                     "Build_Gateway_screen"]


def test_wings_of_liberty_events_go_to_the_right_player():
    """Before build 24247 game events name players by entity number, not
    user id: each player's camera track and commands match sc2reader's
    attribution."""
    import collections

    import sc2reader

    path = SHARED / "replays" / "sc2reader/1.1.0.16561/1v1_Lost Temple_1893.SC2Replay"
    streams = player_inputs.player_streams(ReplayArchive(path.read_bytes(), path=str(path)))
    replay = sc2reader.load_replay(str(path), load_level=4)
    theirs = collections.Counter(
        (e.player.pid, "camera" if type(e).__name__ == "CameraEvent" else "command")
        for e in replay.events if getattr(e, "player", None) is not None
        and (type(e).__name__ == "CameraEvent" or type(e).__name__.endswith("CommandEvent")))
    assert {(pid, len(s.camera), s.commands) for pid, s in streams.items()} == {
        (pid, theirs[(pid, "camera")], theirs[(pid, "command")]) for pid in (1, 2)}
    assert (len(streams[1].camera), streams[1].commands) == (1901, 436)


def test_selection_types_from_unit_links_equal_the_tracker_types(archive, streams):
    """Selection events name the selected units' types by unit link; with
    the replay's datapack the names equal the tracker's unit types (what a
    replay without tracker events can still say about a selection)."""
    tracked = player_inputs.UnitPositions(archive.tracker_events).unit_types
    pairs = [(name, tracked.get(tag)) for s in streams.values()
             for (_, tags), names in zip(s.selection, s.selection_types)
             for tag, name in zip(tags, names)]
    assert len(pairs) == 1796
    assert all(name == (truth.decode() if isinstance(truth, bytes) else truth)
               for name, truth in pairs)
