"""The one interface both observation sources implement.

The pipeline does not care where observations come from: the engine-free
source (``pipeline.sources.events.source``, tracker events plus the player's own
inputs) and the headless game (``pipeline.sources.sc2.source``, pysc2) both turn one
replay into schema samples for each requested player, through the same
sampling rule (``pipeline.sampling.rule``) and sample assembly
(``pipeline.sampling.assembly.build_samples``).

A source must be all-or-nothing per replay: it either returns every sample
of every requested player or raises (``pipeline.replay.archive.ReplayError``
for bad input, ``SourceError`` for a source failure), so a replay never
contributes half of its samples.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from pipeline.index.player_context import PlayerContext
from pipeline.replay.archive import ReplayArchive


class SourceError(Exception):
    """An observation source failed on a replay (not the replay's fault)."""

    def __init__(self, category: str, message: str):
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


@runtime_checkable
class ObservationSource(Protocol):
    """Produces schema samples for the players of one replay."""

    #: "events" or "sc2" (``schemas.sample.SOURCES``); stored in each sample.
    name: str

    def unavailable_layers(self) -> tuple[str, ...]:
        """Schema field names this source cannot fill (stored as zeros)."""

    def replay_samples(self, archive: ReplayArchive,
                       players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        """All samples of each player in ``players``, keyed by player id.

        ``split`` is left empty; the pipeline assigns it.
        """
