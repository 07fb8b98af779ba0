"""Range checks for the values a replay hands the index.

Every number and string in an index row comes from the replay, and the
replay is the uploader's word: ``"PlayerID": 1e999``, ``"MMR": 1e300``, a
negative APM or a 10 KB player name all decode without complaint.  Left
alone they either raise far from their cause (``OverflowError`` in the
scan) or pass the scan and overflow an int32 column when the index is
written, after every replay was sampled, so that nothing is written.

So values are checked where they enter the rows (:func:`pipeline.index.scan.scan_replay`):
the metadata's player fields (:func:`metadata_players`), text
(:func:`text`), and finally every column against its Arrow type
(:func:`check_columns`).  A value out of range makes the replay a
``corrupt`` error record whose message names the field; the ranges are
generous multiples of what the 2,009 shared replays hold (docs/pipeline.md,
"Limits").
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from pipeline.replay.decoded import ReplayError, as_text

#: Names, races and map titles longer than this are damage (the shared
#: corpus: names of 18 characters at most, races of 7, map titles of 28).
MAX_TEXT_CHARS = 256
#: ``replay.gamemetadata.json`` player fields: [low, high] (the corpus:
#: PlayerID 1-10, MMR -36,400 to 7,395, APM 0-719).
PLAYER_ID_RANGE = (1, 16)
MMR_RANGE = (-1_000_000, 1_000_000)
APM_RANGE = (0, 100_000)
_INTEGER_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_range(value: Any, what: str, bounds: tuple[int, int]) -> None:
    if not (_is_number(value) and math.isfinite(value) and bounds[0] <= value <= bounds[1]):
        raise ReplayError("corrupt", f"gamemetadata.json: {what} {value!r} outside "
                                     f"[{bounds[0]}, {bounds[1]}]")


def metadata_players(metadata: Any) -> dict[int, Mapping[str, Any]]:
    """The metadata's player entries by ``PlayerID``, each checked: an
    integer PlayerID in :data:`PLAYER_ID_RANGE`, and MMR and APM, where they
    are numbers, inside :data:`MMR_RANGE` and :data:`APM_RANGE` (other
    types are ignored, as the scan always has)."""
    players = metadata.get("Players") if isinstance(metadata, Mapping) else None
    if not isinstance(players, list):
        return {}
    out: dict[int, Mapping[str, Any]] = {}
    for entry in players:
        if not isinstance(entry, Mapping) or "PlayerID" not in entry:
            continue
        player_id = entry["PlayerID"]
        if not isinstance(player_id, int) or isinstance(player_id, bool):
            raise ReplayError("corrupt", f"gamemetadata.json: PlayerID {player_id!r} is "
                                         "not an integer")
        _in_range(player_id, "PlayerID", PLAYER_ID_RANGE)
        for key, bounds in (("MMR", MMR_RANGE), ("APM", APM_RANGE)):
            if _is_number(entry.get(key)):
                _in_range(entry[key], f"player {player_id} {key}", bounds)
        out[player_id] = entry
    return out


def text(raw: Any, what: str) -> str:
    """A decoded text field (bytes or str) as text, at most
    :data:`MAX_TEXT_CHARS` characters; control characters are kept (the
    data holds the original string; terminals get :mod:`pipeline.text`'s
    escaped form)."""
    value = as_text(raw)
    if len(value) > MAX_TEXT_CHARS:
        raise ReplayError("corrupt", f"{what} of {len(value)} characters (more than "
                                     f"{MAX_TEXT_CHARS})")
    return value


def check_columns(row: Mapping[str, Any], columns: Sequence[tuple[str, str, str]],
                  what: str) -> None:
    """``ReplayError("corrupt")`` unless every column of ``row`` holds a value
    of its Arrow type that the type can store (integers in range, finite
    floats, booleans, strings)."""
    for name, typ, _ in columns:
        value = row[name]
        if typ in _INTEGER_RANGES:
            low, high = _INTEGER_RANGES[typ]
            ok = isinstance(value, int) and not isinstance(value, bool) and \
                low <= value <= high
        elif typ == "float64":
            ok = _is_number(value) and math.isfinite(value)
        elif typ == "bool":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:60] + "..."
            raise ReplayError("corrupt", f"{what}: {name} {shown} does not fit {typ}")
