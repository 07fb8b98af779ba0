"""What every decoded part of a replay shares: the error it raises and its text.

Its own module so that :mod:`pipeline.replay.archive` (which opens the file)
and :mod:`pipeline.replay.lobby` (which the archive calls to parse the init
data) both use them without importing each other.  Importers elsewhere keep
using the names through ``pipeline.replay.archive``.
"""
from __future__ import annotations

import re
from typing import Any

# Reason categories for error records (stable strings: they end up in data).
ERROR_CATEGORIES = (
    "empty",              # zero-byte file
    "io_error",           # the file cannot be read (missing, permissions, network)
    "not_a_file",         # a FIFO, socket, device or directory: never opened for reading
    "too_large",          # over the configured size limit
    "not_mpq",            # not an MPQ archive at all (no MPQ signature)
    "truncated",          # an MPQ archive that ends before its declared size
    "unreadable_header",  # MPQ but the replay header does not decode
    "encrypted",          # archive files are encrypted / cannot be read
    "missing_part",       # a required file (details, game events) is absent
    "unsupported_build",  # no decoder protocol works for the build
    "corrupt",            # damage: the archive or a part fails its integrity check
                          # (compression, CRC) or the exact protocol does not decode it
    "too_long",           # game longer than the configured limit
    "timeout",            # decoding exceeded the time limit
    "crashed",            # the sampling process died (a native crash)
    "resource",           # a process reading the replay went past its memory limit
    "source",             # the observation source failed (message names its category)
    "internal",           # a bug in this project (reported, never hidden)
)


class ReplayError(Exception):
    """A replay that cannot be used, with a reason category."""

    def __init__(self, category: str, message: str):
        if category not in ERROR_CATEGORIES:
            raise ValueError(f"unknown error category {category!r}")
        super().__init__(f"{category}: {message}")
        self.category = category
        self.message = message


#: what differs between two runs over the same file: object addresses
#: (``<... object at 0x7f...>``) and process ids
_UNSTABLE = re.compile(r" at 0x[0-9a-fA-F]+|\b(pid|process) \d+")


def stable_text(message: str) -> str:
    """``message`` with object addresses and process ids removed: error
    records must be the same on every rerun (byte-identical errors.parquet)."""
    return _UNSTABLE.sub(lambda m: "" if m.group(0).startswith(" at 0x")
                         else f"{m.group(1)} N", message)


def stable_repr(exc: BaseException) -> str:
    """``repr(exc)`` made :func:`stable_text` (s2protocol's CorruptedError
    shows its decoder object's address)."""
    return stable_text(repr(exc))


def as_text(value: Any) -> str:
    """A decoded string field (s2protocol gives bytes) as text; None -> ""."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)
