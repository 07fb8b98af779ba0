"""Finds replay files and reads their bytes, locally or on any Beam filesystem.

Users point the pipeline at directories, globs or single files, on local disk
or on any filesystem Apache Beam supports (``gs://``, ``s3://``...).  This
module turns such patterns into one sorted, de-duplicated list of replay
paths and reads one replay's bytes with a size limit checked *before* the
file is read (a stray 4 GB file must not be pulled into memory).

Local paths use ``os``/``glob`` directly (fast for big local corpora); any
path with a URL scheme goes through ``apache_beam.io.filesystems.FileSystems``
(``match`` here, reads through :mod:`pipeline.filesystem`).  A directory means every ``*.SC2Replay`` below it,
recursively, with the suffix matched case-insensitively.

The replay id is the content hash, computed by
:class:`pipeline.replay.archive.ReplayArchive` (``replay_id``), never the
path: the same game under two names is one replay.
"""
from __future__ import annotations

import glob
import os
import stat
import re
from typing import Iterable

from pipeline.replay.archive import ReplayError
from pipeline import filesystem
from pipeline.filesystem import is_remote, local as _local
# Larger files are ``too_large`` errors, unread: defined with the other limits.
from pipeline.replay.limits import DEFAULT_MAX_BYTES  # noqa: F401

#: Suffix of replay files (compared case-insensitively).
REPLAY_SUFFIX = ".sc2replay"

_GLOB_CHARS = re.compile(r"[*?\[]")


class NoReplaysMatchedError(ValueError):
    """A command-line input pattern that names no replay at all."""


def is_replay_name(path: str) -> bool:
    """True if ``path`` ends in ``.SC2Replay`` (any case)."""
    return path.lower().endswith(REPLAY_SUFFIX)


def _walk(directory: str) -> Iterable[str]:
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            if is_replay_name(name):
                yield os.path.join(root, name)


def _expand_local(pattern: str) -> list[str]:
    pattern = os.path.expanduser(_local(pattern))
    if os.path.isdir(pattern):
        return list(_walk(pattern))
    if os.path.isfile(pattern):
        return [pattern]  # an explicitly named file counts whatever its suffix
    if not _GLOB_CHARS.search(pattern):
        return []
    out: list[str] = []
    for match in glob.glob(pattern, recursive=True):
        if os.path.isdir(match):
            out.extend(_walk(match))
        elif os.path.isfile(match) and is_replay_name(match):
            out.append(match)
    return out


def _expand_remote(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    if _GLOB_CHARS.search(pattern):
        globs = [pattern]
    else:
        # A single object, or a "directory" prefix: try both.
        globs = [pattern, pattern.rstrip("/") + "/**"]
    out: list[str] = []
    for result in FileSystems.match(globs):
        for meta in result.metadata_list:
            if is_replay_name(meta.path) or meta.path == pattern:
                out.append(meta.path)
    return out


def expand_inputs(patterns: Iterable[str]) -> list[str]:
    """Sorted, de-duplicated replay paths named by files, directories and globs.

    Raises :class:`NoReplaysMatchedError` naming every pattern that matched nothing
    (usually a typo), so a run never silently processes less than asked.
    """
    found: set[str] = set()
    empty: list[str] = []
    for pattern in patterns:
        if not pattern:
            continue
        paths = _expand_remote(pattern) if is_remote(pattern) else _expand_local(pattern)
        if not paths:
            empty.append(pattern)
        found.update(p if is_remote(p) else os.path.normpath(p) for p in paths)
    if empty:
        raise NoReplaysMatchedError("no replay files match: "
                                    + ", ".join(repr(p) for p in empty))
    return sorted(found)


def file_size(path: str) -> int:
    """Size in bytes, from the filesystem's metadata (the file is not read)."""
    return filesystem.size(path)


def read_bytes(path: str, max_bytes: int | None = None) -> bytes:
    """The whole file; ``ReplayError("too_large")`` before reading if over ``max_bytes``.

    A local path that is not a regular file -- a named pipe, a socket, a
    device, a directory -- is ``ReplayError("not_a_file")``, found without
    blocking: the file is opened ``O_NONBLOCK`` (a FIFO with no writer would
    otherwise wait forever, before any time limit applies) and checked with
    ``fstat`` on the descriptor it will be read from.  I/O failures
    (missing file, permissions, network) raise ``OSError``.
    """
    if is_remote(path):
        if max_bytes is not None:
            size = file_size(path)
            if size > max_bytes:
                raise ReplayError("too_large", f"{size} bytes > limit {max_bytes}")
        with filesystem.open_read(path) as f:
            return f.read() if max_bytes is None else f.read(max_bytes + 1)
    fd = os.open(_local(path), os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ReplayError("not_a_file", f"a {_kind(mode)}, not a regular file")
        size = os.fstat(fd).st_size
        if max_bytes is not None and size > max_bytes:
            raise ReplayError("too_large", f"{size} bytes > limit {max_bytes}")
        return f.read() if max_bytes is None else f.read(max_bytes + 1)


def _kind(mode: int) -> str:
    """What a ``st_mode`` that is not a regular file's is, for a message."""
    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"
