"""Synthetic bad inputs for the pipeline tests, made from a real replay.

Each function returns file bytes; :func:`write_bad_inputs` writes the set
into a directory and returns ``{file name: what it is}``.
"""
from __future__ import annotations

import io
import os
import random

import mpyq

#: Archive members whose data the pipeline reads (scan or sampling); damage
#: in any of them is an error.  (Only tracker events that no bundled protocol
#: decodes -- a limitation, not damage -- degrade to has_tracker_events=0.)
READ_MEMBERS = ("replay.details", "replay.initData", "replay.gamemetadata.json",
                "replay.game.events", "replay.tracker.events")


def _flip(data: bytes, start: int, length: int, width: int = 32) -> bytes:
    """XORs ``width`` bytes with 0xA5 in the middle of ``[start, start+length)``."""
    mid = start + length // 2 - width // 2
    mid = max(start, mid)
    end = min(start + length, mid + width)
    out = bytearray(data)
    for i in range(mid, end):
        out[i] ^= 0xA5
    return bytes(out)


def mpq_sections(data: bytes) -> dict[str, tuple[int, int]]:
    """``name -> (offset, length)`` of the replay header, MPQ header, hash and
    block tables, and each member read by the pipeline."""
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=True)
    base = archive.header["offset"]
    h = archive.header
    sections = {
        "user_data_header": (16, archive.header["user_data_header"]["user_data_header_size"]),
        "mpq_header": (base, h["header_size"]),
        "hash_table": (base + h["hash_table_offset"], h["hash_table_entries"] * 16),
        "block_table": (base + h["block_table_offset"], h["block_table_entries"] * 16),
    }
    for name in READ_MEMBERS:
        entry = archive.get_hash_table_entry(name)
        block = archive.block_table[entry.block_table_index]
        sections[name] = (base + block.offset, block.archived_size)
    return sections


def flipped_variants(data: bytes) -> dict[str, bytes]:
    """Bytes flipped inside the replay header and each member the pipeline
    reads.  (Flips inside the MPQ header, hash or block table often land in
    entries nothing reads -- unused hash slots, members never decoded -- and
    leave a readable game with a new replay id; they are not "bad input".)"""
    keep = ("user_data_header",) + READ_MEMBERS
    return {f"flipped_{name}": _flip(data, off, length)
            for name, (off, length) in mpq_sections(data).items() if name in keep}


def non_replay_mpq(data: bytes) -> bytes:
    """The replay's MPQ archive without its replay user-data header: a valid
    MPQ archive that is not a replay."""
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=True)
    return data[archive.header["offset"]:]


#: Expected error category of each flipped section (for the Maru vs ByuN replay).
FLIP_CATEGORIES = {
    "user_data_header": "unreadable_header",
    "replay.details": "corrupt",             # the exact protocol does not decode it
    "replay.initData": "corrupt",
    "replay.gamemetadata.json": "corrupt",
    "replay.game.events": "corrupt",
    "replay.tracker.events": "corrupt",      # fails its bz2 check: damage, not "absent"
}


def write_bad_inputs(directory: str, replay: bytes, oversize: int) -> dict[str, str]:
    """Writes the bad inputs; returns ``{file name: expected error category}``."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(7)
    files = {
        "empty.SC2Replay": (b"", "empty"),
        "random.SC2Replay": (bytes(rng.getrandbits(8) for _ in range(5000)), "not_mpq"),
        "truncated.SC2Replay": (replay[: len(replay) // 2], "truncated"),
        "non_replay_mpq.SC2Replay": (non_replay_mpq(replay), "unreadable_header"),
        "oversize.SC2Replay": (replay + b"\0" * (oversize + 1 - len(replay)), "too_large"),
    }
    for name, blob in flipped_variants(replay).items():
        files[f"{name}.SC2Replay"] = (blob, FLIP_CATEGORIES[name[len("flipped_"):]])
    out = {}
    for name, (blob, category) in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(blob)
        out[name] = category
    return out
