"""Test doubles for the Beam pipeline tests (never used by library code).

``ZeroObservationSource`` is an observation source that needs no decoding
beyond the header: every window of every player, zero observations, no-op
targets, mask {no_op}.  It lets the pipeline's plumbing (dedup, all-or-nothing,
splits, shards, manifests) be tested fast and independently of the real
sources.  ``FailingSource`` fails on the N-th call to test all-or-nothing.
"""
from __future__ import annotations

from pipeline.sampling.rule import sample_windows, window_starts
from pipeline.sampling.assembly import build_samples


class ZeroObservationSource:
    name = "events"

    def __init__(self, schema, step_mul: int = 8, **_ignored):
        self.schema = schema
        self.step_mul = step_mul

    def unavailable_layers(self):
        return tuple(f.name for f in self.schema.fields
                     if f.name.startswith(("minimap_", "screen_")))

    def replay_samples(self, archive, players):
        out = {}
        loops = archive.game_loops
        obs = {}
        empty = self.schema.empty_observation()
        for loop in window_starts(loops, self.step_mul):
            obs[loop] = empty
        for p in players:
            windows = sample_windows(loops, [], {loop: [0] for loop in obs}, self.step_mul)
            out[p.player_id] = build_samples(
                self.schema, replay_id=archive.replay_id, player_id=p.player_id,
                context=p.context, windows=windows, observations=obs, source=self.name,
                unavailable_layers=self.unavailable_layers(),
                has_tracker_events=archive.has_tracker_events, outcome=p.outcome)
        return out


class HalfwayFailingSource(ZeroObservationSource):
    """Builds the first player's samples, then fails: nothing may be written."""

    def replay_samples(self, archive, players):
        from pipeline.sources.interface import SourceError
        super().replay_samples(archive, players[:1])
        raise SourceError("test_failure", "failed after the first player")
