"""What the index knows about one player of one replay, handed to a source.

The index (``pipeline.index.scan.player_contexts``) makes these from its rows;
the observation sources read them to fill each sample's context fields and
value label.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class PlayerContext:
    """What the index knows about one player of one replay.

    ``context`` holds the schema's context-group fields (map name, races,
    MMR...); ``outcome`` is one of ``schemas.sample.OUTCOMES``.
    """
    player_id: int
    outcome: str
    context: Mapping[str, Any]
