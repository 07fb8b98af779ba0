"""Fuzzed replays: every damaged file is accounted for with the category the
pipeline defines (issue 18).

From one short real replay and a fixed seed: bit flips in the replay header,
the MPQ header, the hash and block tables (entries of the members the
pipeline reads) and inside each part; truncations; zeroed blocks; swapped
parts; a valid MPQ that is not a replay; an empty and an oversized file.
Each is scanned and has every part the sampling step reads decoded -- the
same :class:`ReplayArchive` calls as the pipeline, without drawing samples.

And hostile files (``support.bad_replays.hostile_files``, issue "Hostile
replays"): what an attacker builds on purpose -- bombs, size lies, event
floods, metadata overflows, escape sequences -- each run through the
pipeline's own scan and sampling jobs in a child process with a memory
limit, never in the test's process.
"""
from __future__ import annotations

import collections
import io
import random

import mpyq
import pytest

from conftest import PIPELINE_REPLAYS, REPLAYS, require_shared
from pipeline.replay.archive import ERROR_CATEGORIES, ReplayArchive, ReplayError

SEED = 18
MAX_BYTES = 100_000
#: Parts the scan or the sampling step decodes (bz2-compressed in this replay).
PARTS = ("replay.initData", "replay.gamemetadata.json", "replay.game.events",
         "replay.tracker.events", "replay.attributes.events")
#: What each kind of damage may be called; never "internal" or "not_mpq" (the
#: files keep their MPQ signature).  No checksum covers the replay header's
#: content or the MPQ tables: a flip there that leaves every part readable (a
#: signature byte, an unused size bit, a member with a ``.backup`` twin or an
#: optional one) is a readable replay with a new id, "ok".  Every compressed
#: part has its bz2 CRC: damage there is always "corrupt".
ALLOWED = {
    "flip_user_header": {"unreadable_header", "truncated", "corrupt", "ok"},
    "flip_mpq_header": {"truncated", "corrupt", "missing_part", "encrypted"},
    "flip_hash_table": {"corrupt", "missing_part", "encrypted", "ok"},
    # (a flipped high bit of a member's declared size claims more than
    # --max_member_bytes: refused as too_large before anything is inflated)
    "flip_block_table": {"corrupt", "missing_part", "encrypted", "truncated", "too_large",
                         "ok"},
    "flip_part": {"corrupt"},
    "truncate": {"truncated"},
    "zero_block": {"corrupt", "missing_part", "unreadable_header", "truncated"},
    "swap_parts": {"corrupt"},
    "not_a_replay": {"unreadable_header"},
    "empty": {"empty"},
    "oversized": {"too_large"},
}


def _layout(data: bytes):
    archive = mpyq.MPQArchive(io.BytesIO(data), listfile=True)
    h = archive.header
    base = h["offset"]
    parts = {}
    for name in PARTS:
        entry = archive.get_hash_table_entry(name)
        block = archive.block_table[entry.block_table_index]
        parts[name] = (base + block.offset, block.archived_size,
                       archive.hash_table.index(entry), entry.block_table_index)
    return archive, base, parts


def _flip_bit(data: bytes, position: int, bit: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def fuzzed_files(data: bytes, seed: int = SEED) -> list[tuple[str, str, bytes]]:
    """``(name, kind, bytes)`` of the damaged files, the same for a seed."""
    rng = random.Random(seed)
    archive, base, parts = _layout(data)
    h = archive.header
    files: list[tuple[str, str, bytes]] = []

    def add(kind: str, blob: bytes, detail: str) -> None:
        files.append((f"{kind}-{len(files):02d}-{detail}", kind, blob))

    user_size = h["user_data_header"]["user_data_header_size"]
    for _ in range(4):      # the replay header's content (past the MPQ\x1b magic)
        at = rng.randrange(16, 16 + user_size)
        add("flip_user_header", _flip_bit(data, at, rng.randrange(8)), f"at{at}")
    for field in (8, 16, 20, 24, 28):   # archive size, table offsets, table sizes
        at = base + field + rng.randrange(4)
        add("flip_mpq_header", _flip_bit(data, at, rng.randrange(8)), f"at{at}")
    for name, (_, _, hash_index, block_index) in parts.items():
        at = base + h["hash_table_offset"] + 16 * hash_index + rng.randrange(16)
        add("flip_hash_table", _flip_bit(data, at, rng.randrange(8)), name)
        at = base + h["block_table_offset"] + 16 * block_index + rng.randrange(16)
        add("flip_block_table", _flip_bit(data, at, rng.randrange(8)), name)
    for name, (offset, size, _, _) in parts.items():
        for _ in range(3):  # a single bit anywhere past the compression byte
            at = offset + 1 + rng.randrange(size - 1)
            add("flip_part", _flip_bit(data, at, rng.randrange(8)), name)
    for _ in range(8):
        cut = rng.randrange(4, len(data) - 1)
        add("truncate", data[:cut], f"to{cut}")
    for name, (offset, size, _, _) in parts.items():
        length = min(size - 1, rng.randrange(16, 256))
        at = offset + 1 + rng.randrange(size - length)
        add("zero_block", data[:at] + bytes(length) + data[at + length:], name)
    names = list(parts)
    for a, b in zip(names, names[1:] + names[:1]):   # the start of two parts exchanged
        (oa, sa, _, _), (ob, sb, _, _) = parts[a], parts[b]
        n = min(sa, sb, 64)
        out = bytearray(data)
        out[oa:oa + n], out[ob:ob + n] = data[ob:ob + n], data[oa:oa + n]
        add("swap_parts", bytes(out), f"{a}-{b}")
    add("not_a_replay", data[base:], "mpq")
    add("empty", b"", "file")
    add("oversized", data + b"\0" * (MAX_BYTES + 1 - len(data)), "file")
    return files


def classify(blob: bytes) -> str:
    """The category the pipeline gives the file ("ok" if it reads), scanning
    it and decoding every part the sampling step reads."""
    from pipeline.index.filters import FilterConfig
    from pipeline.index.scan import scan_replay
    try:
        archive = ReplayArchive(blob, max_bytes=MAX_BYTES)
        scan_replay(archive, FilterConfig(min_mmr=0))
        archive.game_events
        archive.tracker_events
        archive.attribute_events
        archive.init_data
    except ReplayError as exc:
        assert exc.category in ERROR_CATEGORIES and exc.message
        return exc.category
    return "ok"


def test_fuzzed_replays_get_the_defined_categories():
    require_shared()
    data = (REPLAYS / PIPELINE_REPLAYS["maru_byun"][0]).read_bytes()
    assert classify(data) == "ok"
    files = fuzzed_files(data)
    assert len(files) >= 50 and len({n for n, _, _ in files}) == len(files)
    assert [n for n, _, _ in fuzzed_files(data)] == [n for n, _, _ in files]  # fixed seed
    found = {name: (kind, classify(blob)) for name, kind, blob in files}
    wrong = {name: got for name, (kind, got) in found.items() if got not in ALLOWED[kind]}
    assert not wrong, wrong
    counts = collections.Counter(got for _, got in found.values())
    print("fuzz categories:", dict(sorted(counts.items())))
    assert counts["truncated"] >= 8 and counts["corrupt"] >= 15


# ------------------------------------------------------------ hostile files
HOSTILE_SEED = 28
#: The child's memory limit here: a few hundred MB over what sampling this
#: replay takes (~160 MB), so that the event flood is stopped in ~1 s.
HOSTILE_MEMORY_MB = 400


def classify_bounded(worker, path: str, out_dir: str) -> str:
    """The category the pipeline gives the file ("ok": sampled), through the
    pipeline's own jobs in ``worker``'s bounded child: the scan, then the
    sampling step (ScanJob, ReplayJob)."""
    from pipeline.index.filters import FilterConfig
    from pipeline.index.scan import ScanJob
    from pipeline.job.worker import ReplayJob
    from pipeline.replay.bounded_process import JobFailure
    from pipeline.replay.limits import InflateLimits
    from pipeline.sources.registry import source_spec
    scanned = worker.run(ScanJob(path, FilterConfig(min_mmr=0), None, InflateLimits()),
                         timeout_s=30)
    if isinstance(scanned, JobFailure):
        return scanned.category
    if scanned.error is not None:
        return scanned.error["category"]
    outcome = worker.run(ReplayJob(path=path, replay_row=scanned.replay,
                                   player_rows=scanned.players, split="train",
                                   output_dir=out_dir, spec=source_spec("events", step_mul=8,
                                                                        fog=True),
                                   resolution=32, max_bytes=None))
    return outcome.category if isinstance(outcome, JobFailure) else "ok"


def test_hostile_files_become_records_within_the_limits(tmp_path):
    """Files built to attack a reader -- inflation bombs in every member (a
    declared size that lies, and honest sizes past the limits), declared-size
    and table-size lies, floods of valid events, metadata overflows and deep
    nesting, header overflows, names with escape sequences -- each end as
    the category it must, through the pipeline's scan and sampling jobs, in a
    child process that stays within its memory limit."""
    from pipeline.replay.bounded_process import TimedWorker
    from support.bad_replays import hostile_files
    require_shared()
    data = (REPLAYS / PIPELINE_REPLAYS["maru_byun"][0]).read_bytes()
    files = hostile_files(data, HOSTILE_SEED)
    assert len(files) >= 40 and len({n for n, _, _, _ in files}) == len(files)
    again = hostile_files(data, HOSTILE_SEED)                          # fixed seed
    assert [(n, b) for n, _, b, _ in again] == [(n, b) for n, _, b, _ in files]
    assert max(len(b) for _, _, b, _ in files) < 200_000              # small on disk
    kinds = collections.Counter(kind for _, kind, _, _ in files)
    assert set(kinds) == {"bomb_lie", "bomb_honest", "bomb_total", "size_lie", "table_lie",
                          "flood", "metadata", "header", "names"}
    worker = TimedWorker(60, HOSTILE_MEMORY_MB)
    found = {}
    try:
        for name, kind, blob, allowed in files:
            path = tmp_path / f"{name}.SC2Replay"
            path.write_bytes(blob)
            found[name] = (classify_bounded(worker, str(path), str(tmp_path / "out")), allowed)
    finally:
        worker.close()
    wrong = {name: got for name, (got, allowed) in found.items() if got not in allowed}
    assert not wrong, wrong
    counts = collections.Counter(got for got, _ in found.values())
    print("hostile categories:", dict(sorted(counts.items())))
    assert counts["resource"] == 1 and counts["too_large"] >= 8 and counts["ok"] >= 5
    # The flood was stopped at the limit: the child's sampled size when it
    # was killed is at most one watch interval's growth past it.
    limit = HOSTILE_MEMORY_MB * 2 ** 20
    assert limit < worker.peak_bytes <= limit + 64 * 2 ** 20, worker.peak_bytes
