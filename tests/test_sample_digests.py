"""Samples are bit-identical to the committed reference digests.

Every field of every sample the engine-free source makes for a few reference
replays (tracker events or not, builds 1.x to 5.0) is hashed in schema order,
and the hash per replay is compared with ``tests/data/sample_digests.json``.
A refactoring (the package layout, a faster writer, a new contract type) must
leave these digests unchanged; a change that is meant to change samples
regenerates the file and says why in its commit:

    python tests/test_sample_digests.py --write
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.index import scan  # noqa: E402

from pipeline.replay import storage
from pipeline.sources.events.source import EventsObservationSource  # noqa: E402
from pipeline.replay.archive import ReplayArchive  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402

REPLAYS = REPO.parent / "shared" / "replays"
DIGESTS = Path(__file__).resolve().parent / "data" / "sample_digests.json"

#: name -> path under ../shared/replays
REFERENCE_REPLAYS = {
    "pvp_5_0_8": "python-sc2/20220223 - GAME 1 - Astrea vs SKillous - P vs P - "
                 "Curious Minds LE.SC2Replay",
    "tvt_5_0_8": "python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - "
                 "Curious Minds LE.SC2Replay",
    "pvt_5_0_4": "spawningtool/patch_5_0_4_pvt.SC2Replay",
    "no_tracker_4_1_2": "sc2reader/4.1.2.60604/1.SC2Replay",
    "wol_1_4_3": "sc2reader/1.4.3.21029/ggtracker_398754.SC2Replay",
}


def sample_digest(samples: list[dict], schema: SampleSchema) -> str:
    """SHA-256 over every field of every sample, in the given order."""
    h = hashlib.sha256()
    for sample in samples:
        for field in schema.fields:
            value = sample[field.name]
            h.update(field.name.encode())
            if field.is_array:
                array = np.ascontiguousarray(value)
                h.update(f"{array.dtype.str}{array.shape}".encode())
                h.update(array.tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def replay_digest(path: Path) -> dict:
    """The reference replay's samples through scan contexts and the events source."""
    schema = SampleSchema()
    data = storage.read_bytes(str(path))
    scanned = scan.scan_bytes(data, str(path))
    assert scanned.error is None, scanned.error
    players = scan.player_contexts(scanned.replay, scanned.players)
    archive = ReplayArchive(data, path=str(path))
    by_player = EventsObservationSource(schema).replay_samples(archive, players)
    samples = [s for pid in sorted(by_player) for s in by_player[pid]]
    return {"samples": len(samples), "sha256": sample_digest(samples, schema)}


@pytest.mark.skipif(not REPLAYS.is_dir(), reason="shared replays absent")
@pytest.mark.parametrize("name", sorted(REFERENCE_REPLAYS))
def test_samples_equal_reference_digest(name):
    expected = json.loads(DIGESTS.read_text())[name]
    assert replay_digest(REPLAYS / REFERENCE_REPLAYS[name]) == expected


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    digests = {name: replay_digest(REPLAYS / rel) for name, rel in sorted(REFERENCE_REPLAYS.items())}
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(json.dumps(digests, indent=1))
