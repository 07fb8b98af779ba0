"""Which replays are worth processing: one filter config, stable reasons, shared flags.

The defaults follow the published recipes for supervised replay learning
(pysc2's ``bin/replay_actions.py`` and the MSC dataset): two human players
(game type "1v1"), a decisive result, at least 1000 game loops, APM >= 10 and
MMR >= 1000 for every human player *where the value is known* (old replays
carry neither; unknown never filters a replay out).

:func:`filter_reason` returns None to keep a replay, else one of
:data:`REASONS`; the scan writes it into the index row's ``status`` so a
filtered-out replay stays visible in the index.  ``beam_runner.py`` and
``pipeline.index.scan_cli`` share the command-line flags through
:func:`add_filter_arguments` / :func:`config_from_args`.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Mapping, Sequence

#: Every reason :func:`filter_reason` can give, in the order they are checked.
REASONS = (
    "build_out_of_range",   # base build outside [min_build, max_build]
    "not_1v1",              # not a 1v1 game (with the default game_types)
    "game_type_filtered",   # game type not in a non-default game_types
    "too_short",            # fewer than min_game_loops loops
    "not_decisive",         # no winner and loser (tie, undecided, left early)
    "race_filtered",        # a player's race is not in ``races``
    "matchup_filtered",     # matchup (e.g. "TvZ") not in ``matchups``
    "low_mmr",              # a known human MMR below min_mmr
    "low_apm",              # a known human APM below min_apm
    "no_tracker_events",    # require_tracker_events and the replay has none
)

_RACE_LETTER = {"Terran": "T", "Zerg": "Z", "Protoss": "P", "Random": "R"}


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """What a replay must satisfy to be processed.  Zero / empty means no limit."""
    game_types: tuple[str, ...] = ("1v1",)
    min_game_loops: int = 1000
    decisive_only: bool = True
    min_mmr: int = 1000
    min_apm: int = 10
    min_build: int = 0
    max_build: int = 0
    races: tuple[str, ...] = ()
    matchups: tuple[str, ...] = ()
    require_tracker_events: bool = False
    #: Where the metadata has no APM, compute it from game events
    #: (``pipeline.index.apm``; the scan then decodes those replays' game events).
    apm_from_events: bool = False

    def __post_init__(self):
        for m in self.matchups:
            _normalize_matchup(m)  # raises ValueError on a malformed matchup
        unknown = [r for r in self.races if r not in _RACE_LETTER]
        if unknown:
            raise ValueError(f"unknown races {unknown}; expected {sorted(_RACE_LETTER)}")


def _normalize_matchup(text: str) -> str:
    """'ZvT' and 'tvz' both become 'T v Z' sorted: 'TvZ'."""
    parts = text.upper().split("V")
    if len(parts) != 2 or not all(parts) or any(
            c not in "TZPR" for c in "".join(parts)):
        raise ValueError(f"bad matchup {text!r}; expected e.g. TvZ or PvP")
    return "v".join(sorted(parts))


def matchup(player_rows: Sequence[Mapping[str, Any]]) -> str:
    """The matchup of a two-team game, e.g. 'PvT' (sorted; '' if not two teams)."""
    teams: dict[int, str] = {}
    for p in player_rows:
        teams[p["team"]] = teams.get(p["team"], "") + _RACE_LETTER.get(p["race"], "?")
    if len(teams) != 2:
        return ""
    return "v".join(sorted("".join(sorted(t)) for t in teams.values()))


def filter_reason(replay_row: Mapping[str, Any], player_rows: Sequence[Mapping[str, Any]],
                  config: FilterConfig) -> str | None:
    """None to keep the replay, else the first failing reason from :data:`REASONS`."""
    build = replay_row["base_build"]
    if (config.min_build and build < config.min_build) or (
            config.max_build and build > config.max_build):
        return "build_out_of_range"
    if config.game_types and replay_row["game_type"] not in config.game_types:
        return "not_1v1" if tuple(config.game_types) == ("1v1",) else "game_type_filtered"
    if replay_row["game_loops"] < config.min_game_loops:
        return "too_short"
    if config.decisive_only:
        results = {p["result"] for p in player_rows}
        if not ("win" in results and "loss" in results):
            return "not_decisive"
    if config.races and any(p["race"] not in config.races for p in player_rows):
        return "race_filtered"
    if config.matchups:
        wanted = {_normalize_matchup(m) for m in config.matchups}
        if matchup(player_rows) not in wanted:
            return "matchup_filtered"
    humans = [p for p in player_rows if p["control"] == "human"]
    if config.min_mmr and any(0 <= p["mmr"] < config.min_mmr for p in humans):
        return "low_mmr"
    if config.min_apm and any(0 <= p["apm"] < config.min_apm for p in humans):
        return "low_apm"
    if config.require_tracker_events and not replay_row["has_tracker_events"]:
        return "no_tracker_events"
    return None


# ------------------------------------------------------------ command line
def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the filter flags (one set for beam_runner.py and the scan command)."""
    d = FilterConfig()
    g = parser.add_argument_group("replay filters")
    g.add_argument("--game_types", type=_csv, default=d.game_types,
                   help="comma-separated game types to keep (1v1,team,ffa,vs_ai,coop,"
                        "custom); '' keeps all (default: %(default)s)")
    g.add_argument("--min_game_loops", type=int, default=d.min_game_loops,
                   help="drop games shorter than this (default: %(default)s)")
    g.add_argument("--decisive_only", action=argparse.BooleanOptionalAction,
                   default=d.decisive_only, help="keep only games with a winner and a loser")
    g.add_argument("--min_mmr", type=int, default=d.min_mmr,
                   help="drop games where a known human MMR is lower; 0 = off "
                        "(default: %(default)s)")
    g.add_argument("--min_apm", type=int, default=d.min_apm,
                   help="drop games where a known human APM is lower; 0 = off "
                        "(default: %(default)s)")
    g.add_argument("--apm_from_events", action=argparse.BooleanOptionalAction,
                   default=d.apm_from_events,
                   help="where replay.gamemetadata.json has no APM, compute it from game "
                        "events (about 0.94x Blizzard's figure; slower scan)")
    g.add_argument("--min_build", type=int, default=d.min_build,
                   help="lowest base build to keep; 0 = no limit")
    g.add_argument("--max_build", type=int, default=d.max_build,
                   help="highest base build to keep; 0 = no limit")
    g.add_argument("--races", type=_csv, default=d.races,
                   help="comma-separated races every player must have, e.g. Terran,Zerg")
    g.add_argument("--matchups", type=_csv, default=d.matchups,
                   help="comma-separated matchups to keep, e.g. TvZ,PvP (order-insensitive)")
    g.add_argument("--require_tracker_events", action=argparse.BooleanOptionalAction,
                   default=d.require_tracker_events,
                   help="drop replays without tracker events (needed by the events source)")


def config_from_args(args: argparse.Namespace) -> FilterConfig:
    """The :class:`FilterConfig` from flags added by :func:`add_filter_arguments`."""
    return FilterConfig(
        game_types=tuple(args.game_types), min_game_loops=args.min_game_loops,
        decisive_only=args.decisive_only, min_mmr=args.min_mmr, min_apm=args.min_apm,
        min_build=args.min_build, max_build=args.max_build, races=tuple(args.races),
        matchups=tuple(args.matchups), require_tracker_events=args.require_tracker_events,
        apm_from_events=args.apm_from_events)
