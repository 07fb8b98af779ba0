"""How much of a game's outcome the player's own score tells, from raw replays.

A check that needs no pipeline run and no network: for every replay the
pipeline would sample with ``--require_tracker_events`` (its default filters:
decisive 1v1 games), each player-stats event gives one row (the
player's 20 score entries, ``schemas.layers.SCORE_FEATURES``, read through
the engine-free source's own mapping ``pipeline.sources.events.player_features.
SCORE_STATS_KEYS``) labelled with that player's result.  Replays are dealt
into folds as ``trainers.crossval`` deals them; for each held-out fold a
logistic regression on ``sign(x) log(|x|+1)`` of the score (the trainer's
transform) is fitted on the other folds but the next one, its L2 chosen on
that next fold, as the cross-validation's baseline is.  Printed: pooled
held-out accuracy with a 95% bootstrap interval over replays, by quarter of
the game, next to the no-fit rule "killed more than lost".

    python studies/value_signal.py --replays ../shared/replays

It is the measurement behind "Cross-validated value accuracy with the score
input" in docs/results.md; it reads every file once (about a minute for the
shared corpus on one core).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.index.filters import FilterConfig  # noqa: E402
from pipeline.sources.events.player_features import SCORE_STATS_KEYS  # noqa: E402
from pipeline.replay.archive import ReplayArchive, ReplayError  # noqa: E402
from pipeline.index.scan import kept_replays  # noqa: E402
from pipeline.replay.storage import expand_inputs  # noqa: E402
from schemas import layers  # noqa: E402
from trainers import linear_baseline, metrics  # noqa: E402
from trainers.crossval import assign_folds, fold_roles  # noqa: E402
from trainers.input import signed_log1p  # noqa: E402

_STATS_EVENT = "NNet.Replay.Tracker.SPlayerStatsEvent"


def score_rows(paths: list[str]) -> dict[str, np.ndarray]:
    """One row per player-stats event of every replay the pipeline's filters
    keep with tracker events required (first copy of a replay only)."""
    config = FilterConfig(require_tracker_events=True)
    rows: dict[str, list] = {"replay_id": [], "score": [], "value": [], "fraction": []}
    for path, data, scan in kept_replays(paths, config):
        replay = scan.replay
        result = {p["player_id"]: p["result"] for p in scan.players}
        try:
            events = ReplayArchive(data, path=path).tracker_events
        except ReplayError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        for e in events:
            if e["_event"] == _STATS_EVENT and e["m_playerId"] in result:
                rows["replay_id"].append(replay["replay_id"])
                rows["score"].append([e["m_stats"].get(k, 0) for k in SCORE_STATS_KEYS])
                rows["value"].append(int(result[e["m_playerId"]] == "win"))
                rows["fraction"].append(e["_gameloop"] / max(replay["game_loops"], 1))
    return {k: np.asarray(v) for k, v in rows.items()}


def killed_more_than_lost(score: np.ndarray) -> np.ndarray:
    """1 where the killed entries sum above the lost ones, 0 below, 0.5 on a tie."""
    names = np.array(layers.SCORE_FEATURES)
    killed = score[:, np.char.startswith(names, "killed_")].sum(1)
    lost = score[:, np.char.startswith(names, "lost_")].sum(1)
    return np.where(killed == lost, 0.5, (killed > lost).astype(np.float64))


def heldout_logistic(rows: dict[str, np.ndarray], folds: int) -> np.ndarray:
    """Held-out probabilities of the per-fold logistic regression."""
    fold_of = assign_folds(sorted(set(rows["replay_id"])), folds)
    fold = np.array([fold_of[r] for r in rows["replay_id"]])
    x = signed_log1p(rows["score"].astype(np.float64))
    prob = np.zeros(len(x))
    for k in range(folds):
        roles = fold_roles(k, folds)
        train, inner = np.isin(fold, roles["train"]), fold == roles["inner_validation"]
        model, _ = linear_baseline.select_logistic(x[train], rows["value"][train],
                                                   x[inner], rows["value"][inner])
        prob[fold == k] = model.prob(x[fold == k])
    return prob


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replays", nargs="+", required=True, help="files, folders or globs")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--resamples", type=int, default=1000)
    a = p.parse_args(argv)
    start = time.perf_counter()
    rows = score_rows(expand_inputs(a.replays))
    groups = rows["replay_id"]
    print(f"{len(set(groups))} replays, {len(groups)} player-stats rows "
          f"({time.perf_counter() - start:.1f} s)")
    label = rows["value"]
    correct = {
        "logistic regression on the score (held out)":
            ((heldout_logistic(rows, a.folds) > 0.5) == label).astype(np.float64),
        "rule: killed > lost (no fit)":
            1.0 - np.abs(killed_more_than_lost(rows["score"]) - label),
    }
    for name, ok in correct.items():
        ci = metrics.bootstrap_mean(ok, groups, resamples=a.resamples)
        quarter = np.minimum(rows["fraction"] * 4, 3).astype(int)
        quarters = [f"{ok[quarter == q].mean():.3f}" for q in range(4)]
        print(f"{name}: {ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]; "
              f"by quarter of the game {', '.join(quarters)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
