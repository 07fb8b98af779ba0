"""Synthetic bad inputs for the pipeline tests, made from a real replay.

Each function returns file bytes; :func:`write_bad_inputs` writes the set
into a directory and returns ``{file name: what it is}``.
"""
from __future__ import annotations

import bz2
import functools
import io
import os
import random
import re
import struct
import zlib

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


# ---------------------------------------------------------------------------
# Hostile files: what an uploader builds on purpose (issue "Hostile replays").
# Each generator edits a real replay the way an attacker would: a member's
# stored bytes replaced (appended after the archive, its block entry pointed
# there), its declared size changed, the MPQ header's table sizes changed, or
# the bytes of a header field, a metadata value or a name rewritten.

_HEADER_FIELDS = {"archive_size": 8, "hash_table_offset": 16, "block_table_offset": 20,
                  "hash_table_entries": 24, "block_table_entries": 28}
ZLIB, BZIP2 = 2, 16


def _encrypt(data: bytes, key: int) -> bytes:
    """MPQ table encryption (mpyq's ``_decrypt`` run backwards)."""
    table = mpyq.MPQArchive.encryption_table
    seed1, seed2 = key, 0xEEEEEEEE
    out = bytearray()
    for (value,) in struct.iter_unpack("<I", data):
        seed2 = (seed2 + table[0x400 + (seed1 & 0xFF)]) & 0xFFFFFFFF
        out += struct.pack("<I", (value ^ (seed1 + seed2)) & 0xFFFFFFFF)
        seed1 = (((~seed1 << 0x15) + 0x11111111) | (seed1 >> 0x0B)) & 0xFFFFFFFF
        seed2 = (value + seed2 + (seed2 << 5) + 3) & 0xFFFFFFFF
    return bytes(out)


def set_header_field(data: bytes, field: str, value: int) -> bytes:
    """The archive with one MPQ header field (:data:`_HEADER_FIELDS`) set."""
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
    at = archive.header["offset"] + _HEADER_FIELDS[field]
    return data[:at] + struct.pack("<I", value & 0xFFFFFFFF) + data[at + 4:]


def member(data: bytes, name: str) -> bytes:
    """A member's content (read with mpyq: only for well-formed archives)."""
    return mpyq.MPQArchive(io.BytesIO(data), listfile=False).read_file(name)


def replace_member(data: bytes, name: str, stored: bytes, declared: int) -> bytes:
    """The archive with ``name``'s stored bytes (compression byte first)
    appended after the archive, and its block entry claiming ``declared``
    bytes inflated; the MPQ header's archive size grows to cover them."""
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
    h = archive.header
    base = h["offset"]
    index = archive.get_hash_table_entry(name).block_table_index
    blocks = [list(b) for b in archive.block_table]
    blocks[index][:3] = [len(data) - base, len(stored), declared]
    plain = b"".join(struct.pack("<4I", *b) for b in blocks)
    key = archive._hash("(block table)", "TABLE")
    at = base + h["block_table_offset"]
    out = data[:at] + _encrypt(plain, key) + data[at + len(plain):] + stored
    return set_header_field(out, "archive_size", len(out) - base)


def compressed(content: bytes, kind: int = BZIP2) -> bytes:
    """A member's stored bytes: the compression byte, then the stream."""
    stream = bz2.compress(content, 9) if kind == BZIP2 else zlib.compress(content, 9)
    return bytes([kind]) + stream


def with_member(data: bytes, name: str, content: bytes, kind: int = BZIP2) -> bytes:
    """The archive with member ``name`` holding ``content``, honestly declared
    (stored as it is where compression gains nothing, as MPQ writers do)."""
    stored = compressed(content, kind)
    return replace_member(data, name, stored if len(stored) < len(content) else content,
                          len(content))


@functools.lru_cache(maxsize=4)
def zeros_stream(size: int, kind: int) -> bytes:
    """``size`` zero bytes compressed (a bomb's stored bytes; cached: the
    same few are used many times)."""
    return compressed(bytes(size), kind)


def _vint(value: int) -> bytes:
    """s2protocol's versioned-format integer (sign bit, 6 then 7-bit groups)."""
    sign, value = (1, -value) if value < 0 else (0, value)
    out = [((value & 0x3F) << 1) | sign]
    value >>= 6
    while value:
        out[-1] |= 0x80
        out.append(value & 0x7F)
        value >>= 7
    return bytes(out)


def set_header_number(data: bytes, old: int, new: int) -> bytes:
    """The replay header (user-data content) with the versioned integer
    ``old`` (every occurrence) written as ``new``; the user-data header's
    size is updated (the reserved space holds a few more bytes)."""
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
    user = archive.header["user_data_header"]
    content = user["content"]
    edited = content.replace(b"\x09" + _vint(old), b"\x09" + _vint(new))
    padded = edited + bytes(max(0, len(content) - len(edited)))    # zeros, as around it
    assert edited != content and 16 + len(padded) <= user["mpq_header_offset"]
    return data[:12] + struct.pack("<I", len(edited)) + padded + data[16 + len(padded):]


def replace_blob(data: bytes, name: str, old: bytes, new: bytes) -> bytes:
    """Member ``name`` (versioned format) with the blob ``old`` written as ``new``."""
    content = member(data, name)
    edited = content.replace(b"\x02" + _vint(len(old)) + old, b"\x02" + _vint(len(new)) + new)
    assert edited != content
    return with_member(data, name, edited)


def tiny_event(data: bytes, name: str) -> bytes:
    """The bytes of the smallest event of stream ``name`` that does not move
    the game loop (copies of it are a flood of valid events)."""
    from pipeline.replay.archive import ReplayArchive
    archive = ReplayArchive(data)
    raw = member(data, name)
    decode = (archive.protocol.decode_replay_game_events if name == "replay.game.events"
              else archive.protocol.decode_replay_tracker_events)
    offset, loop, best = 0, 0, None
    for event in decode(raw):
        size = event["_bits"] // 8
        if event["_gameloop"] == loop and offset and (best is None or size < best[1]):
            best = (offset, size)
        offset, loop = offset + size, event["_gameloop"]
    return raw[best[0]:best[0] + best[1]]


#: Members whose bombs and size lies the generators plant ((listfile) is
#: read when the archive opens; attributes are never read by the pipeline).
BOMBED = ("replay.details", "replay.initData", "replay.gamemetadata.json",
          "replay.game.events", "replay.tracker.events", "(listfile)")
MIB = 2 ** 20
#: The escape sequences a name, race or map title carries (terminal attacks).
ESCAPES = ("\x1b]0;pwned\x07", "\x1b[2K", "\x1b[1A", "\r\n", "\x00", "\x1b[31m", "\u202e",
           "\x9b", "\n[progress] forged line")


def _evil(rng: random.Random, text: str) -> str:
    picks = rng.sample(ESCAPES, 4)
    return picks[0] + text + "".join(picks[1:])


def _metadata(data: bytes, edit) -> bytes:
    """The archive with gamemetadata.json rewritten by ``edit(text) -> text``."""
    text = member(data, "replay.gamemetadata.json").decode()
    return with_member(data, "replay.gamemetadata.json", edit(text).encode())


def _player_field(text: str, player: int, field: str, literal: str) -> str:
    """Metadata text with ``"field": literal`` set on player ``player``'s entry."""
    anchor = f'"PlayerID": {player},'
    assert anchor in text
    return text.replace(anchor, f'{anchor} "{field}": {literal},', 1)


def hostile_files(data: bytes, seed: int = 0) -> list[tuple[str, str, bytes, frozenset]]:
    """``(name, kind, bytes, allowed categories)`` of hostile edits of the
    2-player replay ``data`` ("ok": sampled safely), the same for a seed.
    Categories are what the pipeline gives under the default size limits and
    a memory limit of a few hundred MB; the files are small (the largest
    ~100 KB).  Kinds: inflation bombs in each member (declared sizes that
    lie, and honest ones over the limits), declared-size lies, table-size
    lies, event floods, metadata overflows and deep nesting, header
    overflows, names with escape sequences."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bytes, frozenset]] = []
    from pipeline.replay.limits import (DEFAULT_MAX_INFLATED_BYTES, DEFAULT_MAX_MEMBER_BYTES,
                                        MAX_TABLE_ENTRIES, max_events)

    def add(kind: str, detail: str, blob: bytes, *allowed: str) -> None:
        out.append((f"{kind}-{len(out):02d}-{detail}", kind, blob, frozenset(allowed)))

    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
    sizes = {name: archive.block_table[archive.get_hash_table_entry(name).block_table_index].size
             for name in BOMBED + ("replay.attributes.events",)}
    big = DEFAULT_MAX_INFLATED_BYTES + MIB            # past every limit
    for name in BOMBED + ("replay.attributes.events",):
        for kind in (BZIP2, ZLIB):                    # declared as before: the size lies
            never_read = name == "replay.attributes.events"
            add("bomb_lie", f"{name}-{kind}", replace_member(data, name, zeros_stream(big, kind),
                                                             sizes[name]),
                "ok" if never_read else "corrupt")
        add("bomb_honest", name, replace_member(data, name, zeros_stream(big, BZIP2), big),
            "too_large")
    each = DEFAULT_MAX_MEMBER_BYTES - MIB             # each under its limit, not together
    blob = data
    for name in ("replay.game.events", "replay.tracker.events", "replay.attributes.events"):
        blob = replace_member(blob, name, zeros_stream(each, ZLIB), each)
    add("bomb_total", "three-members", blob, "too_large")
    for name in BOMBED:                               # real content, a smaller size declared
        add("size_lie", name, replace_member(data, name, _stored(data, name), sizes[name] // 2),
            "corrupt")
    for field, value in (("hash_table_entries", 3_906_250), ("block_table_entries", 3_906_250),
                         ("hash_table_entries", MAX_TABLE_ENTRIES + 1),
                         ("hash_table_offset", 0xFFFFFF00), ("block_table_offset", len(data))):
        add("table_lie", f"{field}-{value}", set_header_field(data, field, value), "corrupt")
    loops = _game_loops(data)
    for name in ("replay.game.events", "replay.tracker.events"):   # past the event limit
        extra = max_events(loops) + rng.randrange(1, 1000)
        add("flood", name, with_member(data, name, member(data, name)
                                       + tiny_event(data, name) * extra, ZLIB), "corrupt")
    two_hours = 22 * 60 * 120                        # allowed so many events: memory stops it
    long_game = set_header_number(data, loops, two_hours)
    add("flood", "memory", with_member(long_game, "replay.game.events", member(
        data, "replay.game.events") + tiny_event(data, "replay.game.events")
        * ((DEFAULT_MAX_MEMBER_BYTES - MIB) // 3), ZLIB), "resource")
    for detail, edit in (
            ("nested-arrays", lambda t: "[" * 100_000),
            ("nested-objects", lambda t: '{"a":' * 50_000 + "1" + "}" * 50_000),
            ("nested-valid", lambda t: t.replace('"Duration"', '"Deep": ' + "[" * 5000
                                                 + "]" * 5000 + ', "Duration"')),
            ("playerid-1e999", lambda t: t.replace('"PlayerID": 1', '"PlayerID": 1e999')),
            ("playerid-string", lambda t: t.replace('"PlayerID": 1', '"PlayerID": "1"')),
            ("playerid-2^40", lambda t: t.replace('"PlayerID": 1', f'"PlayerID": {2 ** 40}')),
            ("mmr-1e300", lambda t: _player_field(t, 1, "MMR", "1e300")),
            ("mmr-nan", lambda t: _player_field(t, 2, "MMR", "NaN")),
            ("mmr-infinity", lambda t: _player_field(t, 1, "MMR", "-Infinity")),
            ("mmr-5000-digits", lambda t: _player_field(t, 2, "MMR", "7" * 5000)),
            ("apm-negative", lambda t: t.replace('"APM": ', '"APM": -', 1)),
            ("apm-1e9", lambda t: re.sub(r'"APM": [0-9.]+', '"APM": 1e9', t, count=1)),
            ("duration-40-digits", lambda t: t.replace('"Duration": ', '"Duration": ' + "9" * 40))):
        add("metadata", detail, _metadata(data, edit), "corrupt")
    build = _base_build(data)
    for detail, old, new in (("loops-2^63", loops, 2 ** 63), ("loops-negative", loops, -5),
                             ("build-2^40", build, 2 ** 40)):
        add("header", detail, set_header_number(data, old, new), "corrupt")
    details = _details(data)
    name, title = details["m_playerList"][0]["m_name"], details["m_title"]
    race = details["m_playerList"][1]["m_race"]
    add("names", "escapes", replace_blob(data, "replay.details", name,
                                         _evil(rng, "Name").encode()), "ok")
    add("names", "not-utf8", replace_blob(data, "replay.details", name, b"\xff\xfe\x1b[2J"),
        "ok")
    add("names", "mathtext-title", replace_blob(data, "replay.details", title,
                                                _evil(rng, "Map $\\frac{$ x").encode()), "ok")
    evil_race = replace_blob(data, "replay.details", race, _evil(rng, "Zerg").encode())
    add("names", "race", _metadata(evil_race, lambda t: t.replace('"AssignedRace": "',
                                                                 '"AssignedRace": "\\u001b')),
        "ok")
    add("names", "long-name", replace_blob(data, "replay.details", name, b"N" * 300),
        "corrupt")
    add("names", "long-title", replace_blob(data, "replay.details", title,
                                            _evil(rng, "M" * 5000).encode()), "corrupt")
    return out


def _stored(data: bytes, name: str) -> bytes:
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
    block = archive.block_table[archive.get_hash_table_entry(name).block_table_index]
    start = archive.header["offset"] + block.offset
    return data[start:start + block.archived_size]


def _header(data: bytes) -> dict:
    from pipeline.replay.archive import ReplayArchive
    return ReplayArchive(data).header


def _game_loops(data: bytes) -> int:
    return _header(data)["m_elapsedGameLoops"]


def _base_build(data: bytes) -> int:
    return _header(data)["m_version"]["m_baseBuild"]


def _details(data: bytes) -> dict:
    from pipeline.replay.archive import ReplayArchive
    return ReplayArchive(data).details
