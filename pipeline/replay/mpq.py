"""Reads the members of an MPQ archive without trusting its sizes.

A replay is an MPQ archive, and everything in it is the uploader's word: the
hash and block tables' entry counts, each member's declared size, its
compressed stream.  ``mpyq`` believes all of it: it decrypts tables of any
claimed length (3.9 million entries cost 30 s of pure-Python decryption) and
inflates a member with ``bz2.decompress`` / ``zlib.decompress`` whatever it
becomes (a 13 KB bzip2 stream declared as 13,314 bytes inflates to 16 GiB).

:class:`BoundedMPQ` keeps ``mpyq``'s header and table parsing and its hash
function, but before a table is read its size is checked against the file
and :data:`pipeline.replay.limits.MAX_TABLE_ENTRIES`, and every member is
inflated incrementally (``BZ2Decompressor`` / ``decompressobj`` with
``max_length``) so that no member grows past its declared size.  When the
archive opens, no member may declare more than ``max_member_bytes`` and
all of them together no more than ``max_inflated_bytes``; what is inflated
is counted against the same limits again.  A breach raises
:class:`~pipeline.replay.decoded.ReplayError` (``too_large`` for an honest
but oversized member, ``corrupt`` for a lie) before the memory is spent.
Every other failure to read a member is ``corrupt`` too, or ``encrypted``.
"""
from __future__ import annotations

import bz2
import io
import struct
import zlib

import mpyq

from pipeline.replay.decoded import ReplayError
from pipeline.replay.limits import MAX_TABLE_ENTRIES, InflateLimits

_COMPRESSION_NONE = 0
_COMPRESSION_ZLIB = 2
_COMPRESSION_BZIP2 = 16


class BoundedMPQ(mpyq.MPQArchive):
    """One MPQ archive in memory, its members read within :class:`InflateLimits`.

    ``header``, ``hash_table``, ``block_table`` and ``files`` (the names in
    ``(listfile)``, as bytes) are ``mpyq``'s; :meth:`read_file` is bounded.
    Raises :class:`ReplayError` when the archive does not open.
    """

    def __init__(self, data: bytes, limits: InflateLimits | None = None):
        # mpyq.MPQArchive.__init__ is not called: it would read the tables
        # and the listfile unchecked.
        self.file = io.BytesIO(data)
        self._data = data
        self.limits = limits or InflateLimits()
        #: bytes inflated so far, per member name (each counted once)
        self.inflated: dict[str, int] = {}
        try:
            self.header = self.read_header()
        except (ValueError, struct.error) as exc:
            raise ReplayError("corrupt", f"MPQ header: {exc!r}") from exc
        self._check_table("hash")
        self._check_table("block")
        self.hash_table = self.read_table("hash")
        self.block_table = self.read_table("block")
        self._check_declared_sizes()
        listing = self.read_file("(listfile)")
        if listing is None:
            raise ReplayError("corrupt", "MPQ archive has no (listfile)")
        self.files = listing.splitlines()

    @property
    def total_inflated(self) -> int:
        return sum(self.inflated.values())

    def _check_table(self, kind: str) -> None:
        """A table's claimed size against the limit and the file, before
        anything reads or decrypts it."""
        entries = self.header[f"{kind}_table_entries"]
        offset = self.header[f"{kind}_table_offset"]
        if entries > MAX_TABLE_ENTRIES:
            raise ReplayError("corrupt", f"the MPQ {kind} table claims {entries} entries "
                                         f"(more than {MAX_TABLE_ENTRIES})")
        end = self.header["offset"] + offset + 16 * entries
        if end > len(self._data):
            raise ReplayError("corrupt", f"the MPQ {kind} table ({entries} entries at "
                                         f"{offset}) ends at byte {end}, past the file's "
                                         f"{len(self._data)}")

    def _check_declared_sizes(self) -> None:
        """Every member's declared size against the limits, when the archive
        opens: a replay whose members claim more than they may inflate to
        is refused before any part is decoded (and before a model loads,
        or a sampling child is spent on it)."""
        declared = [b.size for b in self.block_table if b.flags & mpyq.MPQ_FILE_EXISTS]
        largest = max(declared, default=0)
        if largest > self.limits.max_member_bytes:
            raise ReplayError("too_large", f"a member declares {largest} bytes > limit "
                                           f"{self.limits.max_member_bytes}")
        if sum(declared) > self.limits.max_inflated_bytes:
            raise ReplayError("too_large", f"the members declare {sum(declared)} bytes in "
                                           f"all > limit {self.limits.max_inflated_bytes}")

    def read_file(self, filename: str, force_decompress: bool = False) -> bytes | None:
        """A member's bytes, None if the archive has no such member."""
        entry = self.get_hash_table_entry(filename)
        if entry is None:
            return None
        if not 0 <= entry.block_table_index < len(self.block_table):
            raise ReplayError("corrupt", f"{filename}: block index "
                                         f"{entry.block_table_index} outside the block table")
        block = self.block_table[entry.block_table_index]
        if not block.flags & mpyq.MPQ_FILE_EXISTS or block.archived_size == 0:
            return None
        if block.flags & mpyq.MPQ_FILE_ENCRYPTED:
            raise ReplayError("encrypted", f"{filename} is encrypted")
        if block.size > self.limits.max_member_bytes:
            raise ReplayError("too_large", f"{filename} declares {block.size} bytes > "
                                           f"limit {self.limits.max_member_bytes}")
        start = self.header["offset"] + block.offset
        if start + block.archived_size > len(self._data):
            raise ReplayError("corrupt", f"{filename}: {block.archived_size} bytes at "
                                         f"{start} end past the file's {len(self._data)}")
        raw = self._data[start:start + block.archived_size]
        compressed = bool(block.flags & mpyq.MPQ_FILE_COMPRESS)
        if not block.flags & mpyq.MPQ_FILE_SINGLE_UNIT:
            data = self._read_sectors(filename, raw, block, compressed, force_decompress)
        elif compressed and (force_decompress or block.size > block.archived_size):
            # compressed only when that saves at least a byte (as mpyq reads it)
            data = _inflate(filename, raw, block.size)
        elif len(raw) > block.size:      # stored as it is, yet longer than declared
            raise ReplayError("corrupt", f"{filename} stores {len(raw)} bytes, more than "
                                         f"its declared size of {block.size}")
        else:
            data = raw
        self._count(filename, len(data))
        return data

    def _read_sectors(self, filename: str, raw: bytes, block, compressed: bool,
                      force: bool) -> bytes:
        """A member stored in sectors (mpyq's layout: a table of sector
        offsets, then each sector compressed on its own)."""
        sector_size = 512 << min(self.header["sector_size_shift"], 16)
        sectors = block.size // sector_size + 1
        crc = bool(block.flags & mpyq.MPQ_FILE_SECTOR_CRC)
        if crc:
            sectors += 1
        try:
            positions = struct.unpack(f"<{sectors + 1}I", raw[:4 * (sectors + 1)])
        except struct.error as exc:
            raise ReplayError("corrupt", f"{filename}: sector table: {exc!r}") from exc
        out = io.BytesIO()
        left = block.size
        for i in range(len(positions) - (2 if crc else 1)):
            sector = raw[positions[i]:positions[i + 1]]
            if compressed and (force or left > len(sector)):
                sector = _inflate(filename, sector, min(sector_size, max(left, 0)))
            left -= len(sector)
            if left < 0:
                raise ReplayError("corrupt", f"{filename}: sectors hold more than the "
                                             f"declared {block.size} bytes")
            out.write(sector)
        return out.getvalue()

    def _count(self, filename: str, size: int) -> None:
        self.inflated[filename] = size
        total = self.total_inflated
        if total > self.limits.max_inflated_bytes:
            raise ReplayError("too_large", f"members inflate to {total} bytes in all "
                                           f"(at {filename}) > limit "
                                           f"{self.limits.max_inflated_bytes}")


def _inflate(filename: str, raw: bytes, declared: int) -> bytes:
    """One compressed unit (a compression byte, then the stream), inflated
    to at most ``declared`` bytes: ``corrupt`` if it holds more, or if the
    stream is damaged or ends early."""
    if not raw:
        raise ReplayError("corrupt", f"{filename}: empty compressed unit")
    kind, payload = raw[0], raw[1:]
    if kind == _COMPRESSION_NONE:
        return raw
    try:
        if kind == _COMPRESSION_ZLIB:
            return _inflate_zlib(filename, payload, declared)
        if kind == _COMPRESSION_BZIP2:
            return _inflate_bz2(filename, payload, declared)
    except (OSError, zlib.error, EOFError, ValueError) as exc:
        raise ReplayError("corrupt", f"{filename}: does not decompress: {exc!r}") from exc
    raise ReplayError("corrupt", f"{filename}: unsupported compression type {kind}")


def _past_declared(filename: str, declared: int) -> ReplayError:
    return ReplayError("corrupt", f"{filename} inflates past its declared size of "
                                  f"{declared} bytes")


def _inflate_zlib(filename: str, payload: bytes, declared: int) -> bytes:
    inflater = zlib.decompressobj(15)
    out = inflater.decompress(payload, declared + 1)
    if len(out) > declared:
        raise _past_declared(filename, declared)
    if not inflater.eof:
        raise ReplayError("corrupt", f"{filename}: zlib stream ends early")
    return out


def _inflate_bz2(filename: str, payload: bytes, declared: int) -> bytes:
    """As ``bz2.decompress`` (concatenated streams; trailing bytes that are
    not a stream ignored), never past ``declared`` bytes."""
    out = bytearray()
    data = payload
    while data:
        inflater = bz2.BZ2Decompressor()
        try:
            out += inflater.decompress(data, declared + 1 - len(out))
        except OSError:
            if out:
                break               # leftover bytes that are no bzip2 stream
            raise
        if len(out) > declared:
            raise _past_declared(filename, declared)
        if not inflater.eof:
            if inflater.needs_input:
                raise ReplayError("corrupt", f"{filename}: bzip2 stream ends early")
            raise _past_declared(filename, declared)
        data = inflater.unused_data
    return bytes(out)
