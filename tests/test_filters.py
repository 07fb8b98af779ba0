"""Filter reasons, flags and their effect on the real corpus."""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import pytest

from pipeline.index import filters

from pipeline.index import scan

from pipeline.replay import storage
from pipeline.index.filters import FilterConfig, filter_reason

REPLAYS = Path(__file__).resolve().parents[1].parent / "shared" / "replays"


def _game(**replay):
    row = {"base_build": 86383, "game_type": "1v1", "game_loops": 5000,
           "has_tracker_events": True}
    row.update(replay)
    return row


def _players(a=None, b=None):
    base = [{"player_id": 1, "race": "Protoss", "control": "human", "team": 0,
             "result": "win", "mmr": 4000, "apm": 200},
            {"player_id": 2, "race": "Terran", "control": "human", "team": 1,
             "result": "loss", "mmr": 3900, "apm": 150}]
    base[0].update(a or {})
    base[1].update(b or {})
    return base


@pytest.mark.parametrize("replay, a, b, config, reason", [
    ({}, None, None, FilterConfig(), None),
    ({"game_type": "team"}, None, None, FilterConfig(), "not_1v1"),
    ({"game_type": "vs_ai"}, None, None, FilterConfig(game_types=("1v1", "team")),
     "game_type_filtered"),
    ({"game_type": "vs_ai"}, None, {"control": "ai", "mmr": -1, "apm": -1},
     FilterConfig(game_types=()), None),
    ({"game_loops": 999}, None, None, FilterConfig(), "too_short"),
    ({"game_loops": 1000}, None, None, FilterConfig(), None),
    ({}, {"result": "undecided"}, {"result": "undecided"}, FilterConfig(), "not_decisive"),
    ({}, {"result": "tie"}, {"result": "tie"}, FilterConfig(), "not_decisive"),
    ({}, {"result": "tie"}, {"result": "tie"}, FilterConfig(decisive_only=False), None),
    ({}, None, {"apm": 9}, FilterConfig(), "low_apm"),
    ({}, None, {"apm": -1}, FilterConfig(), None),            # unknown APM never filters
    ({}, {"mmr": 999}, None, FilterConfig(), "low_mmr"),
    ({}, {"mmr": -1}, None, FilterConfig(), None),            # unknown MMR never filters
    ({}, {"mmr": 999}, None, FilterConfig(min_mmr=0), None),
    ({"base_build": 80000}, None, None, FilterConfig(min_build=86383), "build_out_of_range"),
    ({"base_build": 90000}, None, None, FilterConfig(max_build=86383), "build_out_of_range"),
    ({}, None, None, FilterConfig(races=("Protoss", "Zerg")), "race_filtered"),
    ({}, None, None, FilterConfig(races=("Protoss", "Terran")), None),
    ({}, None, None, FilterConfig(matchups=("tvp",)), None),
    ({}, None, None, FilterConfig(matchups=("PvP", "ZvT")), "matchup_filtered"),
    ({"has_tracker_events": False}, None, None, FilterConfig(), None),
    ({"has_tracker_events": False}, None, None, FilterConfig(require_tracker_events=True),
     "no_tracker_events"),
    # The first failing check wins, in REASONS order.
    ({"game_type": "team", "game_loops": 10}, None, None, FilterConfig(), "not_1v1"),
])
def test_filter_reasons(replay, a, b, config, reason):
    assert filter_reason(_game(**replay), _players(a, b), config) == reason
    assert reason is None or reason in filters.REASONS


def test_matchup_and_config_validation():
    assert filters.matchup(_players()) == "PvT"
    assert filters.matchup(_players(b={"team": 0})) == ""
    with pytest.raises(ValueError):
        FilterConfig(matchups=("TvX",))
    with pytest.raises(ValueError):
        FilterConfig(races=("Elves",))


def test_flags_round_trip():
    parser = argparse.ArgumentParser()
    filters.add_filter_arguments(parser)
    assert filters.config_from_args(parser.parse_args([])) == FilterConfig()
    args = parser.parse_args(["--game_types", "1v1,team", "--min_game_loops", "0",
                              "--no-decisive_only", "--min_mmr", "0", "--min_apm", "50",
                              "--min_build", "80000", "--max_build", "90000",
                              "--races", "Zerg,Terran", "--matchups", "ZvT",
                              "--require_tracker_events"])
    assert filters.config_from_args(args) == FilterConfig(
        game_types=("1v1", "team"), min_game_loops=0, decisive_only=False, min_mmr=0,
        min_apm=50, min_build=80000, max_build=90000, races=("Zerg", "Terran"),
        matchups=("ZvT",), require_tracker_events=True)
    assert filters.config_from_args(parser.parse_args(["--game_types", ""])).game_types == ()


@pytest.mark.skipif(not REPLAYS.is_dir(), reason="../shared/replays not present")
def test_statuses_on_the_corpus():
    """Default recipe, then a stricter one, on the real files: every row keeps a status."""
    paths = storage.expand_inputs([str(REPLAYS)])
    results = [scan.scan_path(p) for p in paths]
    rows = [r for r in results if r.replay]
    assert collections.Counter(r.replay["status"] for r in rows) == {
        "ok": 266, "not_1v1": 103, "too_short": 1}
    strict = FilterConfig(require_tracker_events=True, min_game_loops=2000)
    counts = collections.Counter(
        filter_reason(r.replay, r.players, strict) or "ok" for r in rows)
    assert counts == {"ok": 60, "not_1v1": 103, "no_tracker_events": 206, "too_short": 1}
