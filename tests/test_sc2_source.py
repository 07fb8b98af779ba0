"""The headless-game source, run for real through pysc2 against the stand-in game.

pysc2 launches ``tests/support/fake_sc2/fake_game.py`` installed as
``$SC2PATH/Versions/Base<build>/SC2_x64`` through its own Linux run config,
connects over its websocket client and decodes the answers with its own
``features`` module; the scenarios are built from a real replay's own input
stream, so every target, mask and label below is known exactly.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from support.fake_sc2 import harness
from pipeline.sources.sc2.game_process import GameProcess
from pipeline.index.player_context import PlayerContext
from pipeline.sources.interface import SourceError
from pipeline.pysc2_compat import pysc2_modules
from pipeline.replay.archive import ReplayArchive
from pipeline.actions.action import Action
from pipeline.sources.sc2.source import SC2ObservationSource
from pipeline.sources.sc2.versions import select_version, version_for_archive
from schemas import layers
from schemas.sample import SampleSchema

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPLAY = SHARED / "replays" / "spawningtool" / "patch_400.SC2Replay"   # 4.0.0.59587, ZvZ
REPLAY_47 = SHARED / "replays" / "sc2reader" / "4.7.0.70154" / "1.SC2Replay"  # vs A.I.
pytestmark = pytest.mark.skipif(not REPLAY.exists(), reason="../shared replays absent")

SCREEN, MINIMAP = 16, 10
MAP_SIZE = (152, 136)
GAME_LOOPS = 200
F = pysc2_modules().actions.FUNCTIONS
TRAIN_DRONE, TRAIN_OVERLORD, BUILD_POOL = 467, 483, 84
ALWAYS = {0, 1, 2, 3, 4}          # no_op, move_camera, select_point/rect/control_group
SELECT_LARVA, SELECT_ARMY = 9, 7
ATTACK_ATTACK_SCREEN, ATTACK_SCREEN = 14, 12
GENERAL = {ATTACK_ATTACK_SCREEN: ATTACK_SCREEN}


def _file_streams(archive, screen=SCREEN, minimap=MINIMAP):
    from pipeline.actions.player_inputs import player_streams
    return player_streams(archive, map_size=MAP_SIZE, screen_resolution=screen,
                          minimap_resolution=minimap)


def _to_proto(action: Action, screen=SCREEN, minimap=MINIMAP) -> dict:
    """The sc_pb.Action the game reports for a pysc2 action (pysc2's own transform)."""
    m = pysc2_modules()
    aif = m.features.AgentInterfaceFormat(
        feature_dimensions=m.features.Dimensions(screen=screen, minimap=minimap),
        camera_width_world_units=24, hide_specific_actions=False)
    feat = m.features.Features(aif, map_size=m.point.Point(*MAP_SIZE))
    func = F[action.function_id]
    args = [list(action.arguments[t.name]) if t.name in ("screen", "minimap", "screen2")
            else [action.arguments[t.name]] for t in func.args]
    return json_format.MessageToDict(feat.transform_action(
        None, m.actions.FunctionCall(action.function_id, args), skip_available=True))


def _game_actions(archive, screen=SCREEN, minimap=MINIMAP) -> dict[int, list[Action]]:
    """What the scripted game reports per player: the replay's own inputs
    below GAME_LOOPS, minus one input of player 2 and plus one of player 1
    that the file does not have (so the cross-check has something to count)."""
    streams = _file_streams(archive, screen, minimap)
    out = {}
    for pid in (1, 2):
        acts = [a for a in streams[pid].actions if a.game_loop < GAME_LOOPS]
        if pid == 1:
            acts.append(Action(27, TRAIN_OVERLORD, {"queued": 0}))
            acts.sort(key=lambda a: a.game_loop)
        else:   # player 2: drop loop 122; add a *specific* attack the game reports at 124
            acts = [a for a in acts if a.game_loop != 122]
            acts.append(Action(124, ATTACK_ATTACK_SCREEN, {"queued": 0, "screen": (5, 6)}))
            acts.sort(key=lambda a: a.game_loop)
        out[pid] = acts
    return out


def _scenario(archive, game_actions, screen=SCREEN, minimap=MINIMAP, **extra) -> dict:
    frames = {}
    for pid, acts in game_actions.items():
        frames[str(pid)] = {
            "player_common": {"minerals": 50, "larva_count": 3},
            "score": {"collection_rate_minerals": 400 + pid, "killed_minerals.army": 150,
                      "lost_vespene.technology": -25, "used_minerals.economy": 1200,
                      "killed_minerals.none": 7, "total_used_minerals.army": 9},
            "player_changes": [{"from": 64, "field": "minerals", "value": 75},
                               {"from": 100, "field": "army_count", "value": 2}],
            "abilities": [{"ability_id": 1342},                        # Train_Drone
                          {"ability_id": 1155, "requires_point": True, "from": 43, "to": 44},
                          {"ability_id": 1155, "requires_point": True, "from": 35, "to": 36},
                          {"ability_id": 99999, "from": 0, "to": 8}],   # unknown to pysc2
            "paint": [
                {"set": "screen", "layer": "unit_type", "rect": [2, 3, 5, 4], "value": 103 + pid},
                {"set": "screen", "layer": "unit_hit_points", "rect": [0, 0, 1, 1], "value": 1500},
                {"set": "screen", "layer": "unit_density", "rect": [15, 15, 16, 16], "value": 20},
                {"set": "minimap", "layer": "creep", "rect": [7, 8, 10, 10], "value": 1,
                 "from": 64},
                {"set": "minimap", "layer": "player_relative", "rect": [0, 0, 2, 1],
                 "value": pid},
            ],
            "actions": [{"loop": a.game_loop, "action": _to_proto(a, screen, minimap)}
                        for a in acts],
        }
    scenario = {
        "game_version": "4.0.0", "base_build": 59587, "map_name": "Odyssey LE",
        "map_size": list(MAP_SIZE), "game_loops": GAME_LOOPS,
        "players": [{"player_id": 1, "race": "Zerg", "result": "Victory"},
                    {"player_id": 2, "race": "Zerg", "result": "Defeat"}],
        "absent_layers": ["buffs"], "frames": frames,
    }
    scenario.update(extra)
    return scenario


PLAYERS = [PlayerContext(1, "win", {"map_name": "Odyssey LE"}),
           PlayerContext(2, "loss", {"map_name": "Odyssey LE"})]


def _source(sc2path, **kwargs) -> SC2ObservationSource:
    kwargs.setdefault("timeout_s", 10)
    return SC2ObservationSource(SampleSchema(SCREEN, MINIMAP), sc2path=str(sc2path), **kwargs)


@pytest.fixture(scope="module")
def archive():
    return ReplayArchive(REPLAY.read_bytes(), path=str(REPLAY))


@pytest.fixture(scope="module")
def game_actions(archive):
    return _game_actions(archive)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, archive, game_actions):
    sc2 = tmp_path_factory.mktemp("sc2")
    harness.install(sc2, [59587])
    harness.write_scenario(sc2, archive.replay_id, _scenario(archive, game_actions))
    with _source(sc2) as source:
        samples = source.replay_samples(archive, PLAYERS)
        return sc2, samples, dict(source.last_stats), source.game.stats


def _expected_targets(acts: list[Action]) -> dict[int, Action]:
    """First action per window; specific functions shown as their general one
    (pysc2's hide_specific_actions, as the project's ability table does)."""
    out = {}
    for a in acts:
        if not a.automatic:
            fid = GENERAL.get(a.function_id, a.function_id)
            out.setdefault(a.game_loop - a.game_loop % 8, Action(a.game_loop, fid, a.arguments))
    return out


# ---------------------------------------------------------------- versions
def test_version_selection_uses_replay_metadata_then_the_tables():
    c = select_version("4.0.0.59587", 59587)
    assert (c.base_build, c.data_version, c.reason) == (
        59587, "9B4FD995C61664831192B7DA46F8C1A1", "table_exact")
    assert c.linux_packages == ("4.0.2",)
    c = select_version("4.1.2.60604", 60321)       # patch build on an older base build
    assert (c.base_build, c.data_version) == (60321, "33D9FE28909573253B7FC352CE7AEA40")
    c = select_version("5.0.8.86383", 86383)       # only pysc2 lists it; no Linux package
    assert (c.data_version, c.linux_packages) == ("22EAC562CD0C6A31FB2C2C21E3AA3680", ())
    version = c.pysc2_version()
    assert (version.game_version, version.build_version, version.binary) == (
        "5.0.8", 86383, "SC2_x64")
    with pytest.raises(SourceError) as err:
        select_version("3.16.0.55505", 55505)
    assert err.value.category == "version_unsupported"


def test_version_selection_on_real_replays():
    c = version_for_archive(ReplayArchive(REPLAY_47.read_bytes()))
    assert (c.game_version, c.base_build, c.reason, c.data_version) == (
        "4.7.0", 70154, "replay_metadata", "8E216E34BC61ABDE16A59A672ACB0F3B")
    odd = SHARED / "replays" / "sc2reader" / "4.0.0.59587" / "1.SC2Replay"  # 4.0.1.59729
    with pytest.raises(SourceError) as err:
        version_for_archive(ReplayArchive(odd.read_bytes()))
    assert err.value.category == "version_unknown"


# ---------------------------------------------------------- a clean replay
def test_game_is_launched_exactly_as_pysc2_launches_it(clean_run):
    sc2, _, _, stats = clean_run
    (launch,) = harness.launches(sc2)
    argv = launch["argv"]
    assert argv[0] == str(sc2 / "Versions" / "Base59587" / "SC2_x64")
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags["-listen"] == "127.0.0.1"
    assert flags["-dataDir"] == str(sc2) + "/"
    assert flags["-dataVersion"] == "9B4FD995C61664831192B7DA46F8C1A1"
    assert int(flags["-port"]) > 0 and flags["-tempDir"].endswith("/")
    assert launch["ld_library_path"].endswith(str(sc2 / "Libs") + "/")
    assert not harness.pid_alive(launch["pid"])        # quit when the source closed
    starts = [r for r in harness.requests(sc2) if r.get("request") == "start_replay"]
    assert [s["player"] for s in starts] == [1, 2]
    for s in starts:
        assert s["disable_fog"] is False
        fl = s["options"]["featureLayer"]
        assert fl["width"] == 24
        assert fl["resolution"] == {"x": SCREEN, "y": SCREEN}
        assert fl["minimapResolution"] == {"x": MINIMAP, "y": MINIMAP}
    assert (stats.launches, stats.replays_ok) == (1, 1)


def test_targets_are_the_games_actions_at_the_loop_they_were_issued(clean_run, game_actions):
    _, samples, _, _ = clean_run
    for pid in (1, 2):
        rows = samples[pid]
        assert [s["game_loop"] for s in rows] == list(range(0, GAME_LOOPS, 8))
        expected = _expected_targets(game_actions[pid])
        for s in rows:
            want = expected.get(s["game_loop"])
            if want is None:
                assert s["function_id"] == 0, s["game_loop"]
                continue
            assert s["function_id"] == want.function_id, s["game_loop"]
            for name, value in want.arguments.items():
                assert np.array_equal(s[f"arg_{name}"], np.asarray(value)), (s["game_loop"], name)
    # The game-only action issued at loop 27 (reported at 32) is window 24's target.
    w24 = samples[1][3]
    assert (w24["game_loop"], w24["function_id"], w24["arg_queued"]) == (24, TRAIN_OVERLORD, 0)
    # A specific ability reported by the game is its general function.
    w120 = samples[2][15]
    assert (w120["game_loop"], w120["function_id"]) == (120, ATTACK_SCREEN)
    assert w120["arg_screen"].tolist() == [5, 6]
    # The automatic camera placement at loop 8 is never a target.
    assert samples[1][1]["function_id"] != 1 and samples[2][1]["function_id"] != 1


def test_masks_are_the_union_over_observed_loops(clean_run):
    _, samples, _, _ = clean_run
    for pid in (1, 2):
        for s in samples[pid]:
            mask = set(np.flatnonzero(s["available_actions"]).tolist())
            want = ALWAYS | {SELECT_LARVA, TRAIN_DRONE}
            loop = s["game_loop"]
            if loop == 40 and pid == 1:       # pool placeable only at loop 43: player 1 acted there
                want.add(BUILD_POOL)
            if loop >= 104 or (loop == 96 and pid == 1):   # army from loop 100 (p1 acted at 100)
                want.add(SELECT_ARMY)
            if s["target_was_unavailable"]:
                want.add(int(s["function_id"]))
            assert mask == want, (pid, loop, sorted(mask ^ want))
    # Loop 35 (pool placeable) lies in no window start or action loop: not observed.
    assert samples[1][4]["available_actions"][BUILD_POOL] == 0
    # select_unit by player 2 at loop 158 was not offered by the game: added to the mask.
    s = samples[2][19]
    assert (s["function_id"], s["target_was_unavailable"]) == (5, 1)


def test_observations_and_labels(clean_run):
    _, samples, stats, _ = clean_run
    schema = SampleSchema(SCREEN, MINIMAP)
    for pid in (1, 2):
        for s in samples[pid]:
            schema.validate(s)
            assert s["source"] == "sc2" and s["unavailable_layers"] == "screen_buffs"
            assert s["value"] == (1 if pid == 1 else 0)
            assert s["outcome"] == ("win" if pid == 1 else "loss")
            unit_type = np.zeros((SCREEN, SCREEN), np.uint16)
            unit_type[3:4, 2:5] = 103 + pid
            assert np.array_equal(s["screen_unit_type"], unit_type)
            assert s["screen_unit_hit_points"][0, 0] == 1500
            assert s["screen_unit_density"][15, 15] == 15       # clipped into [0, 16)
            creep = np.zeros((MINIMAP, MINIMAP), np.uint8)
            if s["game_loop"] >= 64:
                creep[8:10, 7:10] = 1
            assert np.array_equal(s["minimap_creep"], creep)    # 1-bit layer, 100 bits
            assert s["minimap_player_relative"][0, :2].tolist() == [pid, pid]
            assert int(s["minimap_player_relative"].sum()) == 2 * pid
            assert s["player"].tolist() == [pid, 75 if s["game_loop"] >= 64 else 50, 0, 0, 0,
                                            0, 0, 0, 2 if s["game_loop"] >= 100 else 0, 0, 3]
            score = dict(zip(layers.SCORE_FEATURES, s["score"].tolist()))
            assert {k: v for k, v in score.items() if v} == {
                "collection_rate_minerals": 400 + pid, "killed_minerals_army": 150,
                "lost_vespene_technology": -25, "used_minerals_economy": 1200}
            assert s["replay_id"] == hashlib.sha256(REPLAY.read_bytes()).hexdigest()
            assert s["map_name"] == "Odyssey LE"
    assert stats["automatic_camera_dropped"] == 2
    assert stats["unknown_available_abilities"] == {99999: 2}   # loop 0, both players
    assert stats["file_actions_missing_in_game"] == 1           # player 2, loop 122
    assert stats["game_actions_missing_in_file"] == 2           # p1 loop 27, p2 loop 124
    assert stats["targets_disagree"] == 2
    assert stats["targets_agree"] == 2 * len(range(0, GAME_LOOPS, 8)) - 2


# ---------------------------------------------------------------- recovery
def _rows(samples):
    return {pid: [(s["game_loop"], s["function_id"], s["available_actions"].tobytes(),
                   s["screen_unit_type"].tobytes()) for s in rows]
            for pid, rows in samples.items()}


@pytest.mark.parametrize("fault,category", [
    ({"request": "observation", "player": 2, "game_loop": 16, "kind": "crash"}, "game_crashed"),
    ({"request": "step", "player": 1, "game_loop": 40, "kind": "hang"}, "game_timeout"),
    ({"request": "game_info", "player": 2, "kind": "error", "message": "scripted boom"},
     "game_protocol_error"),
])
def test_a_failure_restarts_the_game_and_retries(tmp_path, archive, game_actions, clean_run,
                                                 fault, category):
    harness.install(tmp_path, [59587])
    harness.write_scenario(tmp_path, archive.replay_id,
                           _scenario(archive, game_actions, faults=[dict(fault, times=1)]))
    with _source(tmp_path, timeout_s=3) as source:
        samples = source.replay_samples(archive, PLAYERS)
        stats = source.game.stats
    assert _rows(samples) == _rows(clean_run[1])        # same samples as without the fault
    assert stats.launches == 2 and dict(stats.attempts_failed) == {category: 1}
    pids = [launch["pid"] for launch in harness.launches(tmp_path)]
    assert len(set(pids)) == 2 and not any(harness.pid_alive(p) for p in pids)


def test_a_replay_that_keeps_failing_becomes_an_error_and_the_next_one_runs(
        tmp_path, archive, game_actions):
    harness.install(tmp_path, [59587, 70154])
    harness.write_scenario(tmp_path, archive.replay_id, _scenario(
        archive, game_actions,
        faults=[{"request": "observation", "game_loop": 48, "kind": "crash", "times": 99}]))
    other = ReplayArchive(REPLAY_47.read_bytes())
    harness.write_scenario(tmp_path, other.replay_id, {
        "game_version": "4.7.0", "base_build": 70154, "map_name": "Acid Plant LE",
        "map_size": [176, 172], "game_loops": 24,
        "players": [{"player_id": 1, "race": "Protoss", "result": "Defeat"},
                    {"player_id": 2, "race": "Terran", "result": "Victory"}],
        "frames": {"1": {}, "2": {}}})
    with _source(tmp_path, max_attempts=2) as source:
        with pytest.raises(SourceError) as err:
            source.replay_samples(archive, PLAYERS)
        assert err.value.category == "game_crashed"
        assert "failed 2 times" in err.value.message
        assert "Connection already closed" in err.value.message   # the game's message
        samples = source.replay_samples(other, [PlayerContext(1, "loss", {}),
                                                PlayerContext(2, "win", {})])
        stats = source.game.stats
    assert [len(samples[1]), len(samples[2])] == [3, 3]
    assert [samples[1][0]["value"], samples[2][0]["value"]] == [0, 1]
    assert (stats.launches, stats.replays_failed, stats.replays_ok) == (3, 1, 1)
    assert harness.launches(tmp_path)[-1]["argv"][0].endswith("Base70154/SC2_x64")


def test_launch_failure_is_retried(tmp_path, archive, game_actions):
    harness.install(tmp_path, [59587])
    harness.write_scenario(tmp_path, archive.replay_id, _scenario(archive, game_actions))
    harness.crash_at_launch(tmp_path, 1)
    with _source(tmp_path, timeout_s=4) as source:
        samples = source.replay_samples(archive, PLAYERS[:1])
        assert dict(source.game.stats.attempts_failed) == {"game_launch_failed": 1}
    assert len(samples[1]) == 25 and len(harness.launches(tmp_path)) == 2


def test_a_game_that_ends_before_its_length_is_an_error_without_retries(
        tmp_path, archive, game_actions):
    harness.install(tmp_path, [59587])
    harness.write_scenario(tmp_path, archive.replay_id,
                           _scenario(archive, game_actions, game_loops=64, ends_at=50))
    with _source(tmp_path) as source:
        with pytest.raises(SourceError) as err:
            source.replay_samples(archive, PLAYERS[:1])
        assert err.value.category == "game_ended_early"
        assert "game ended at loop 50, before 64" in err.value.message
        assert source.game.stats.launches == 1


def test_the_game_dies_with_the_worker_that_started_it(tmp_path):
    """A worker killed on a timeout (kill -9) must not leave its game running."""
    harness.install(tmp_path, [59587])
    repo = Path(__file__).resolve().parents[1]
    code = (f"import sys, time; sys.path[:0] = [{str(repo)!r}]\n"
            "from pipeline.sources.sc2.game_process import GameProcess\n"
            "from pipeline.sources.sc2.versions import select_version\n"
            f"g = GameProcess({str(tmp_path)!r}, timeout_s=10)\n"
            "g.ensure_running(select_version('4.0.0.59587', 59587))\n"
            "print(g.pid, flush=True)\n"
            "time.sleep(120)\n")
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        game_pid = int(worker.stdout.readline())
        assert harness.pid_alive(game_pid)
    finally:
        worker.kill()
        worker.wait()
    deadline = time.monotonic() + 10
    while harness.pid_alive(game_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not harness.pid_alive(game_pid)


def test_version_not_installed_is_an_error_record_without_a_launch(tmp_path):
    harness.install(tmp_path, [59587])
    with _source(tmp_path) as source:
        with pytest.raises(SourceError) as err:
            source.replay_samples(ReplayArchive(REPLAY_47.read_bytes()), PLAYERS)
    assert err.value.category == "version_not_installed"
    assert "Base70154" in err.value.message and "4.7.1" in err.value.message
    assert harness.launches(tmp_path) == []


def test_process_is_reused_and_recycled(tmp_path, archive, game_actions):
    harness.install(tmp_path, [59587])
    harness.write_scenario(tmp_path, archive.replay_id,
                           _scenario(archive, game_actions, game_loops=16))
    for per_process, launches in ((5, 1), (1, 3)):
        with GameProcess(str(tmp_path), timeout_s=10,
                         max_replays_per_process=per_process) as game:
            source = SC2ObservationSource(SampleSchema(SCREEN, MINIMAP), game=game)
            before = len(harness.launches(tmp_path))
            for _ in range(3):
                assert len(source.replay_samples(archive, PLAYERS[:1])[1]) == 2
            assert len(harness.launches(tmp_path)) - before == launches


def test_local_map_is_sent_and_a_missing_map_is_an_error(tmp_path, archive, game_actions):
    harness.install(tmp_path, [59587])
    map_bytes = b"fake map bytes" * 10
    scenario = _scenario(archive, game_actions, game_loops=8,
                         local_map_path="Ladder/Odyssey LE.SC2Map",
                         map_bytes_sha256=hashlib.sha256(map_bytes).hexdigest())
    harness.write_scenario(tmp_path, archive.replay_id, scenario)
    with _source(tmp_path) as source:
        with pytest.raises(SourceError) as err:
            source.replay_samples(archive, PLAYERS)
        assert err.value.category == "map_not_found"
        (tmp_path / "Maps" / "Ladder").mkdir(parents=True)
        (tmp_path / "Maps" / "Ladder" / "Odyssey LE.SC2Map").write_bytes(map_bytes)
        samples = source.replay_samples(archive, PLAYERS)
        assert [len(samples[1]), len(samples[2])] == [1, 1]
        sent = [r["map_data_bytes"] for r in harness.requests(tmp_path)
                if r.get("request") == "start_replay"]
        assert sent == [len(map_bytes)] * 2
        # The game rejects a wrong map: the replay's fault, an error without retries.
        (tmp_path / "Maps" / "Ladder" / "Odyssey LE.SC2Map").write_bytes(b"other map")
        with pytest.raises(SourceError) as err:
            source.replay_samples(archive, PLAYERS)
        assert err.value.category == "replay_rejected"
        assert "InvalidMapData" in err.value.message
        assert source.game.stats.launches == 1 and not source.game.stats.attempts_failed


# ------------------------------------------------------------ the pipeline
def test_beam_pipeline_with_the_game_engine(tmp_path, monkeypatch, archive):
    """``beam_runner.py --engine sc2``: the game's samples land in the shards,
    and a replay whose game version is not installed ends as an error record."""
    beam_runner = pytest.importorskip("beam_runner")
    import pyarrow.parquet as pq
    res = 16
    sc2 = tmp_path / "SC2"
    harness.install(sc2, [59587])
    acts = _game_actions(archive, res, res)
    harness.write_scenario(sc2, archive.replay_id,
                           _scenario(archive, acts, res, res, game_loops=64))
    monkeypatch.setenv("SC2PATH", str(sc2))
    missing = SHARED / "replays" / "spawningtool" / "patch_4_6_0_pvt.SC2Replay"  # Base67926
    out = tmp_path / "out"
    beam_runner.run(["--replays", str(REPLAY), str(missing), "--out", str(out),
                     "--engine", "sc2", "--resolution", str(res), "--min_mmr", "0",
                     "--max_game_loops", "40000", "--formats", "parquet",
                     "--direct_num_workers=1", "--direct_running_mode=in_memory",
                     "--decode_timeout_s", "120"])
    schema = SampleSchema(res, res)
    rows = []
    for path in sorted(out.glob("parquet/*/*.parquet")):
        rows += schema.from_arrow(pq.read_table(path))
    assert len(rows) == 2 * 8
    for pid in (1, 2):
        expected = _expected_targets([a for a in acts[pid] if a.game_loop < 64])
        got = {r["game_loop"]: r for r in rows if r["player_id"] == pid}
        assert sorted(got) == list(range(0, 64, 8))
        for loop, r in got.items():
            want = expected.get(loop)
            assert r["function_id"] == (want.function_id if want else 0), (pid, loop)
            assert r["source"] == "sc2" and r["value"] == (1 if pid == 1 else 0)
    errors = "\n".join(p.read_text(errors="replace") if p.suffix in (".json", ".jsonl", ".csv")
                       else str(pq.read_table(p).to_pylist())
                       for p in out.glob("errors/**/*") if p.is_file())
    assert "version_not_installed" in errors and "Base67926" in errors
