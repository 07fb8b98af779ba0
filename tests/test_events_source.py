"""The engine-free source on real replays: counts, schema, masks, loop-0 facts."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.coords import ViewGeometry
from pipeline.sources.events.source import EventsObservationSource
from pipeline.index.player_context import PlayerContext
from pipeline.actions.player_inputs import replay_map_size
from pipeline.replay.archive import ReplayArchive
from pipeline.sources.events.unit_tracker import INITIAL_STATS_LOOPS, UnitTracker, unit_data
from schemas import layers
from schemas.sample import SampleSchema

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PVP = SHARED / "replays/python-sc2/20220223 - GAME 1 - Astrea vs SKillous - P vs P - Curious Minds LE.SC2Replay"
NO_TRACKER = SHARED / "replays/sc2reader/4.1.2.60604/1.SC2Replay"
PLAYERS = [PlayerContext(1, "loss", {"map_name": "Curious Minds LE"}),
           PlayerContext(2, "win", {"map_name": "Curious Minds LE"})]

pytestmark = pytest.mark.skipif(not PVP.exists(), reason="shared replays absent")


@pytest.fixture(scope="module")
def schema():
    return SampleSchema()


@pytest.fixture(scope="module")
def archive():
    return ReplayArchive(PVP.read_bytes(), path=str(PVP))


@pytest.fixture(scope="module")
def run(schema, archive):
    source = EventsObservationSource(schema)
    samples = source.replay_samples(archive, PLAYERS)
    return source, samples


def test_one_sample_per_window_start_for_both_players(run, archive):
    _, samples = run
    assert archive.game_loops == 5210
    assert sorted(samples) == [1, 2]
    for pid, rows in samples.items():
        assert len(rows) == math.ceil(5210 / 8) == 652
        assert [s["game_loop"] for s in rows] == list(range(0, 5210, 8))
        assert all(s["player_id"] == pid and s["source"] == "events" for s in rows)
        assert all(s["has_tracker_events"] == 1 for s in rows)


def test_samples_validate_and_name_unavailable_layers(run, schema):
    source, samples = run
    for rows in samples.values():
        for s in rows[::50]:
            schema.validate(s)
    unavailable = samples[1][0]["unavailable_layers"].split(",")
    assert "screen_height_map" in unavailable and "minimap_creep" in unavailable
    assert "screen_unit_type" not in unavailable and "minimap_camera" not in unavailable
    assert set(unavailable) == set(source.unavailable_layers())
    # Unavailable layers are zeros.
    for s in samples[2][::100]:
        for name in unavailable:
            assert not s[name].any(), name


def test_target_always_in_mask_and_mask_is_small(run):
    source, samples = run
    sizes = []
    unknown = 0
    for rows in samples.values():
        for s in rows:
            if s["function_id"] == layers.UNKNOWN:  # no function: nothing to be in the mask
                unknown += 1
            else:
                assert s["available_actions"][s["function_id"]] == 1
            sizes.append(int(s["available_actions"].sum()))
    assert np.mean(sizes) < 60, np.mean(sizes)  # far fewer than 573
    assert min(sizes) >= 5  # the always-available UI functions
    stats = source.last_stats
    assert stats["windows"] == 2 * 652
    assert unknown == stats["target_unknown_windows"]
    # The source's masks miss few targets (counted, then added by the rule).
    assert stats["target_added_to_mask"] / stats["windows"] < 0.05


def test_loop_zero_start_positions_and_economy(run, archive, schema):
    _, samples = run
    data = unit_data()
    tracker = UnitTracker(archive.tracker_events, data)
    tracker.advance(0)
    geo = ViewGeometry(replay_map_size(archive), 64, 64)
    nexus, probe = data.id[data.row["Nexus"]], data.id[data.row["Probe"]]
    for pid in (1, 2):
        s0 = samples[pid][0]
        slots = np.flatnonzero(tracker.alive)
        own = slots[tracker.owner[slots] == pid]
        names = sorted(data.names[r] for r in tracker.type_row[own])
        assert names == ["Nexus"] + ["Probe"] * 12
        hall = own[tracker.type_row[own] == data.row["Nexus"]][0]
        px, py = geo.world_to_minimap(tracker.xy[hall])
        assert s0["minimap_unit_type"][py, px] == nexus
        assert s0["minimap_player_relative"][py, px] == 1
        assert s0["minimap_player_id"][py, px] == pid
        mine = np.argwhere(s0["minimap_player_relative"] == 1)
        assert np.abs(mine - [py, px]).max() <= 3  # workers around the town hall
        assert set(np.unique(s0["minimap_unit_type"][s0["minimap_player_relative"] == 1])) == {
            nexus, probe}
        player = dict(zip(layers.PLAYER_FEATURES, s0["player"].tolist()))
        assert player == {"player_id": pid, "minerals": 50, "vespene": 0, "food_used": 12,
                          "food_cap": 15, "food_army": 0, "food_workers": 12,
                          "idle_worker_count": 0, "army_count": 0, "warp_gate_count": 0,
                          "larva_count": 0}
        # Fog of war: the enemy base is not visible at the start.
        assert not (s0["minimap_player_relative"] == 4).any()
        # Neutral minerals / geysers are drawn.
        assert (s0["minimap_player_relative"] == 3).sum() > 50
        assert s0["minimap_camera"].sum() > 0


def test_score_is_the_last_player_stats_event_as_sc2reader_reads_it(run):
    """Every sample's score vector equals the player's latest stats event at
    or before the window start, decoded independently by sc2reader (its
    ``minerals_killed_army``-style names for the API's score entries)."""
    sc2reader = pytest.importorskip("sc2reader")
    _, samples = run
    replay = sc2reader.load_replay(str(PVP), load_level=3)
    def sc2reader_name(feature: str) -> str:
        if feature in layers.SCORE_CUMULATIVE:
            return f"{feature.rsplit('_', 1)[1]}_collection_rate"
        row, resource, category = feature.split("_")
        return f"{resource}_{'used_current' if row == 'used' else row}_{category}"
    events = {1: [], 2: []}
    for e in replay.tracker_events:
        if e.name == "PlayerStatsEvent":
            events[e.pid].append((e.frame, [getattr(e, sc2reader_name(n))
                                            for n in layers.SCORE_FEATURES]))
    late_killed = 0
    for pid, rows in samples.items():
        stats = events[pid]
        assert len(stats) == {1: 35, 2: 34}[pid]   # loop 1, then every 160 loops
        for s in rows:
            # A report by INITIAL_STATS_LOOPS is the starting state (loop 0 too).
            before = [v for loop, v in stats
                      if loop <= max(s["game_loop"], INITIAL_STATS_LOOPS)]
            assert s["score"].tolist() == before[-1]
        last = dict(zip(layers.SCORE_FEATURES, rows[-1]["score"].tolist()))
        assert max(s["score"][0] for s in rows) > 500      # minerals per minute
        late_killed += last["killed_minerals_army"] + last["killed_minerals_economy"]
    assert late_killed > 0


def test_screen_shows_own_base_around_camera(run):
    _, samples = run
    for pid in (1, 2):
        s = samples[pid][1]
        assert (s["screen_player_relative"] == 1).sum() > 100
        assert s["screen_unit_density"].max() >= 2
        assert s["screen_unit_density"].max() <= 15


def test_fog_off_shows_the_enemy(schema, archive):
    source = EventsObservationSource(schema, fog=False)
    samples = source.replay_samples(archive, PLAYERS[:1])
    assert (samples[1][0]["minimap_player_relative"] == 4).sum() > 0
    assert source.last_stats["fog"] is False


def test_position_estimate_errors_are_measured(archive):
    tracker = UnitTracker(archive.tracker_events, unit_data())
    tracker.advance(archive.game_loops)
    summary = tracker.errors.summary()
    assert summary["reports"] == 67
    assert 0 < summary["hold_median"] < 50


@pytest.mark.skipif(not NO_TRACKER.exists(), reason="shared replays absent")
def test_replay_without_tracker_events_still_yields_samples(schema):
    archive = ReplayArchive(NO_TRACKER.read_bytes(), path=str(NO_TRACKER))
    assert not archive.tracker_events
    source = EventsObservationSource(schema)
    samples = source.replay_samples(archive, [PlayerContext(1, "win", {}),
                                              PlayerContext(2, "loss", {})])
    for pid, rows in samples.items():
        assert len(rows) == math.ceil(archive.game_loops / 8)
        assert all(s["has_tracker_events"] == 0 for s in rows)
        unavailable = rows[0]["unavailable_layers"].split(",")
        assert "minimap_unit_type" in unavailable and "player" in unavailable
        assert "score" in unavailable and not any(s["score"].any() for s in rows)
        assert "minimap_camera" not in unavailable
        schema.validate(rows[-1])
        assert sum(s["minimap_camera"].any() for s in rows) > len(rows) // 2
        assert all(s["available_actions"][s["function_id"]] == 1 for s in rows
                   if s["function_id"] != layers.UNKNOWN)
    # Masks from the selected units' types the selection events name (unit
    # links): player 1 selects the command centre and trains an SCV (490,
    # inside the source's mask), then selects SCVs, which can build a
    # barracks (42), gather (264) and move (331): tech is unknown, so
    # requirements are not checked.
    cc, scvs = samples[1][2], samples[1][3]
    assert (cc["game_loop"], cc["function_id"], cc["target_was_unavailable"]) == (16, 490, 0)
    assert scvs["game_loop"] == 24
    assert {42, 264, 331} <= set(np.flatnonzero(scvs["available_actions"]).tolist())
    stats = source.last_stats
    # 3,164 no_op windows before the first-input rule: 373 of them were a
    # selection of units with no known position, now select_point / select_rect.
    assert (stats["windows"], stats["no_op_windows"]) == (6006, 2791)
    # 99 of 3,193 known action targets missed by the mask (101 of 2,842
    # before the first-input rule; with the general actions only, before
    # unit links were read: 40% of the targets); 22 targets unknown.
    assert stats["target_added_to_mask"] == 99
    assert stats["target_unknown_windows"] == 22
    assert 20 < stats["mean_mask_size"] < 25


def test_discs_cover_exact_pixels_and_later_units_win():
    from pipeline.sources.events.rasterize import Discs
    res = (64, 64)
    assert Discs(np.array([[10, 10]]), np.array([0.4]), res).covered().sum() == 1
    assert Discs(np.array([[10, 10]]), np.array([1.0]), res).covered().sum() == 5
    assert Discs(np.array([[10, 10]]), np.array([1.5]), res).covered().sum() == 9
    edge = Discs(np.array([[-1, 5]]), np.array([1.0]), res).covered()
    assert edge.sum() == 1 and edge[5, 0]
    assert not Discs(np.array([[-40, 5]]), np.array([20.0]), res).covered().any()
    two = Discs(np.array([[10, 10], [11, 10]]), np.array([1.0, 1.0]), res)
    painted = two.paint(np.array([3, 7]), np.dtype(np.uint16))
    assert painted[10, 10] == 7 and painted[10, 9] == 3 and painted[10, 12] == 7
    density = two.count(15, np.dtype(np.uint8))
    assert density[10, 10] == 2 and density[10, 11] == 2 and density.sum() == 10


def test_fog_sees_within_sight_only():
    from pipeline.sources.events import fog
    keys = fog.sight_keys(np.array([[50.0, 50.0]]), np.array([8.0]))
    grid = fog.sight_grid((100, 100), keys)
    seen = fog.cells_seen(grid, np.array([[50.0, 56.0], [50.0, 70.0], [-5.0, 3.0]]))
    assert seen.tolist() == [True, False, False]


@pytest.mark.parametrize("block", [None, 997])
def test_bulk_visibility_equals_the_per_look_rule(block, monkeypatch):
    """fog.visible_over_time (all looks at once) against the rule applied
    look by look with the reference sight grid (rasterize.Discs): friendly
    and neutral units seen, enemies under the friendly units' sight grid,
    enemy structures seen once stay seen; viewers come, go and move."""
    from pipeline.sources.events import fog
    if block:  # coverage counted in many blocks of looks
        monkeypatch.setattr(fog, "COVERAGE_BLOCK", block)
    rng = np.random.default_rng(7)
    map_size = (150, 130)
    res = fog.grid_res(map_size)
    # Units: id, owner (1 friendly, 2 enemy, 0 neutral), structure, sight.
    n_units = 120
    owner = rng.choice([0, 1, 2], n_units, p=[0.1, 0.45, 0.45])
    structure = rng.random(n_units) < 0.3
    sight = rng.choice([0.0, 7, 9, 11, 13.75, 30], n_units)
    xy = rng.uniform(-10, 160, (n_units, 2))
    alive = rng.random(n_units) < 0.5
    look, unit, rows_xy = [], [], []
    for t in range(150):
        alive ^= rng.random(n_units) < 0.03  # born / die
        moving = ~structure & (rng.random(n_units) < 0.2)
        xy[moving] += rng.uniform(-6, 6, (int(moving.sum()), 2))
        ids = np.flatnonzero(alive)
        look.append(np.full(len(ids), t)), unit.append(ids), rows_xy.append(xy[ids].copy())
    look, unit, pos = np.concatenate(look), np.concatenate(unit), np.concatenate(rows_xy)
    cells = fog.unit_cells(pos)
    keys = fog.cell_sight_keys(cells, fog.sight_quanta(sight[unit]))
    got = fog.visible_over_time(look, unit, keys, fog.grid_cells(cells, res),
                                owner[unit] == 1, owner[unit] == 0, structure[unit],
                                150, res, {})
    seen_before = np.zeros(n_units, bool)
    expected = np.zeros(len(look), bool)
    for t in range(150):
        at = np.flatnonzero(look == t)
        u = unit[at]
        friendly = owner[u] == 1
        grid = fog.sight_grid(map_size, fog.sight_keys(pos[at][friendly], sight[u][friendly]))
        vis = (friendly | (owner[u] == 0) | fog.cells_seen(grid, pos[at])
               | (seen_before[u] & structure[u]))
        seen_before[u[vis & structure[u]]] = True
        expected[at] = vis
    assert np.array_equal(got, expected)
    assert 0 < (expected & (owner[unit] == 2)).sum() < (owner[unit] == 2).sum()


def test_disc_subset_covers_like_drawing_the_subset_alone():
    from pipeline.sources.events.rasterize import Discs
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        centers = rng.integers(-40, 100, (n, 2))
        radii = rng.choice([0.3, 1.0, 2.7, 7.3, 20.0], n)
        subset = rng.random(n) < 0.4
        alone = Discs(centers[subset], radii[subset], (64, 64)).covered()
        assert np.array_equal(Discs(centers, radii, (64, 64)).covered(subset), alone)


def test_tracker_unit_counts_equal_a_recount_of_alive_units(archive):
    data = unit_data()
    tracker = UnitTracker(archive.tracker_events, data)
    checked = 0
    for loop in range(0, archive.game_loops + 1, 400):
        tracker.advance(loop)
        snap = tracker.snapshot()
        for pid in (1, 2):
            mine = snap["owner"] == pid
            rows, done = snap["rows"][mine], snap["done"][mine]
            alive, finished = tracker.unit_counts(pid)
            n = len(data.names)
            assert np.array_equal(alive, np.bincount(rows, minlength=n))
            assert np.array_equal(finished, np.bincount(rows[done], minlength=n))
            checked += int(alive.sum())
    assert checked == 757  # alive units summed over the checked loops


@pytest.mark.parametrize("hash_collides", [False, True])
def test_batched_discs_equal_drawing_each_job_alone(monkeypatch, hash_collides):
    from pipeline.sources.events import disc_batch
    from pipeline.sources.events.disc_batch import DiscBatch
    from pipeline.sources.events.rasterize import Discs
    if hash_collides:  # every job hashes alike: only the comparison tells them apart
        monkeypatch.setattr(disc_batch, "_MIX", [np.uint64(0)] * 8)
    rng = np.random.default_rng(11)
    batch, jobs, drawn = DiscBatch(), [], []
    specs = (("paint", np.uint16), ("count", np.uint8, 15), ("cover", np.uint8))
    for i in range(80):
        if i >= 60 and i % 2:  # the same job again (painted once, shared)
            centers, radii, values = drawn[int(rng.integers(0, len(drawn)))]
        else:
            n = int(rng.integers(0, 30))
            centers = rng.integers(-40, 100, (n, 2))
            radii = rng.choice([0.3, 1.0, 2.7, 7.3, 20.0, 30.0], n)
            values = rng.integers(1, 2000, n)
            if i >= 60:  # same units, other values
                centers, radii = drawn[-1][0], drawn[-1][1]
                values = rng.integers(1, 2000, len(centers))
        drawn.append((centers, radii, values))
        jobs.append((Discs(centers, radii, (64, 48)), values,
                     batch.add((64, 48), centers, radii, specs, [values])))
    batch.resolve()
    for discs, values, (painted, counted, covered) in jobs:
        assert np.array_equal(painted.array, discs.paint(values, np.dtype(np.uint16)))
        assert np.array_equal(counted.array, discs.count(15, np.dtype(np.uint8)))
        assert np.array_equal(covered.array, discs.covered().astype(np.uint8))
        assert painted.array.shape == (48, 64) and not painted.array.flags.writeable


def test_screen_transform_per_camera_equals_world_to_screen():
    from pipeline.coords import ViewGeometry
    rng = np.random.default_rng(5)
    geo = ViewGeometry((152, 136), 64, 64, 24)
    xy = rng.uniform(0, 152, (400, 2)).round(3)
    cams = rng.integers(0, 152 * 256, (400, 2)) / 256.0
    want = np.concatenate([geo.world_to_screen(xy[i:i + 1], tuple(cams[i]))
                           for i in range(len(xy))])
    got = geo.world_to_screen_per_point(xy[:, 0], xy[:, 1], cams[:, 0], cams[:, 1])
    assert np.array_equal(got, want)


def test_source_pickles_after_a_replay_and_gives_the_same_samples(run, archive):
    import pickle
    source, samples = run
    again = pickle.loads(pickle.dumps(source)).replay_samples(archive, PLAYERS)
    for pid in samples:
        first, second = samples[pid][100], again[pid][100]
        assert list(first) == list(second)
        assert all(np.array_equal(first[k], second[k]) if isinstance(first[k], np.ndarray)
                   else first[k] == second[k] for k in first)


def test_visible_sets_share_equal_looks_and_keep_each_looks_units(archive):
    """Snapshots.visible_sets: each look's set (through its set id) holds
    exactly the units fog.visible_over_time sees at that look, in draw
    order; looks that see the same units as the look before share a set."""
    from pipeline.sources.events import fog
    from pipeline.sources.events.feature_layers import LayerPainter
    from pipeline.sources.events.unit_tracker import SNAPSHOT_FIELDS
    from pipeline.sources.events.visible_units import Snapshots
    data = unit_data()
    schema = SampleSchema()
    painter = LayerPainter(schema, data, {})
    map_size = replay_map_size(archive)
    snapshots = Snapshots(data, painter.draw_order, map_size)
    tracker = UnitTracker(archive.tracker_events, data)
    looks = []
    for loop in range(0, archive.game_loops, 8):
        tracker.advance(loop)
        look = snapshots.take(tracker)
        if not looks or looks[-1] != look:
            looks.append(look)
    friendly = np.zeros(64, bool)
    friendly[1] = True  # player 1, no allies
    units, length, set_of_look = snapshots.visible_sets(looks, friendly, fog=True)
    assert len(set_of_look) == len(looks) and set_of_look[0] == 0
    assert len(length) == set_of_look[-1] + 1 < len(looks)  # some looks share a set
    start = np.cumsum(length) - length
    res = fog.grid_res(map_size)
    for i, look in enumerate(looks):
        snap = snapshots._taken[look]
        cells = fog.unit_cells(snap["xy"])
        # The look alone (no earlier looks: structures seen before are the
        # only difference, and the PvP's first looks have none in the fog).
        s = set_of_look[i]
        got = {k: units[k][start[s]:start[s] + length[s]] for k in SNAPSHOT_FIELDS}
        seen = got["slots"]
        assert set(seen.tolist()) <= set(snap["slots"].tolist())
        # Friendly and neutral units are always in the set, in draw order.
        always = snap["slots"][(snap["owner"] == 1) | (snap["owner"] == 16)]
        assert np.array_equal(seen[np.isin(seen, always)], always)
        if i < 40:
            visible = fog.visible_over_time(
                np.zeros(len(snap["slots"]), np.int64), snap["slots"],
                fog.cell_sight_keys(cells, fog.sight_quanta(data.sight)[snap["rows"]]),
                fog.grid_cells(cells, res), snap["owner"] == 1, snap["owner"] == 16,
                data.is_structure[snap["rows"]], 1, res, {})
            assert np.array_equal(seen, snap["slots"][visible])
            for k in SNAPSHOT_FIELDS:
                assert np.array_equal(got[k], snap[k][visible]), k
