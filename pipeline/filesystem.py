"""Files on local disk or on any Beam filesystem (``gs://``...), one API.

The pipeline reads replays from, and writes its output to, a local directory
or a bucket.  Apache Beam's ``FileSystems`` handles both, but importing it
imports all of Apache Beam (about 1 s of CPU), and the sampling child
process, which only reads its replay and writes its batch file, would pay
that on every start.  So local paths (``file://`` included) go through
``os`` directly and paths with a URL scheme through ``FileSystems``,
imported on first use.  Every stage's file access goes through here
(globbing remote inputs aside: :mod:`pipeline.replay.storage`).

Local semantics follow Beam's local filesystem: ``create`` makes missing
parent directories, ``delete`` removes files or whole directories.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import uuid
from typing import BinaryIO, Iterable

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_remote(path: str) -> bool:
    """True for paths with a URL scheme (``gs://...``); ``file://`` counts as local."""
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def local(path: str) -> str:
    """A local path without its ``file://`` prefix."""
    return path[len("file://"):] if path.startswith("file://") else path


def _beam():
    from apache_beam.io.filesystems import FileSystems
    return FileSystems


def _raw():
    from apache_beam.io.filesystem import CompressionTypes
    return CompressionTypes.UNCOMPRESSED


def join(base: str, *parts: str) -> str:
    """``base/part/...``; a URL keeps its scheme."""
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts) if parts else base
    return os.path.join(base, *parts)


def create(path: str) -> BinaryIO:
    """A new binary file opened for writing (parent directories made)."""
    if is_remote(path):
        return _beam().create(path, compression_type=_raw())
    path = local(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return open(path, "wb")


def open_read(path: str) -> BinaryIO:
    """A binary file opened for reading, uncompressed as stored."""
    if is_remote(path):
        return _beam().open(path, compression_type=_raw())
    return open(local(path), "rb")


def read(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def exists(path: str) -> bool:
    return _beam().exists(path) if is_remote(path) else os.path.exists(local(path))


def delete(paths: Iterable[str]) -> None:
    """Deletes files or directories (recursively)."""
    paths = list(paths)
    remote = [p for p in paths if is_remote(p)]
    if remote:
        _beam().delete(remote)
    for path in paths:
        if is_remote(path):
            continue
        path = local(path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def rename(source: str, destination: str) -> None:
    """Renames a file; replaces ``destination`` if it exists (local: atomically)."""
    if is_remote(source) or is_remote(destination):
        if _beam().exists(destination):
            _beam().delete([destination])
        _beam().rename([source], [destination])
    else:
        os.replace(local(source), local(destination))


def size(path: str) -> int:
    """The file's size in bytes."""
    if is_remote(path):
        metas = _beam().match([path])[0].metadata_list
        if not metas:
            raise FileNotFoundError(path)
        return int(metas[0].size_in_bytes)
    return os.stat(local(path)).st_size


def listdir(path: str) -> list[str]:
    """Names in a local directory ([] when it does not exist)."""
    try:
        return sorted(os.listdir(local(path)))
    except FileNotFoundError:
        return []


def temp_name(path: str) -> str:
    """A hidden, unique name beside ``path`` to write it under, then
    :func:`rename` to ``path``: a reader never sees a half-written file."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}.tmp-{uuid.uuid4().hex[:12]}"


def write_bytes_atomic(path: str, data: bytes) -> None:
    """``data`` as the whole of ``path``, written under a temporary name and renamed."""
    temp = temp_name(path)
    with create(temp) as f:
        f.write(data)
    rename(temp, path)
