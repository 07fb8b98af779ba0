"""One output directory holds exactly one run.

A run never writes into ``DIR`` itself.  :func:`claim` takes a lock next to
it (``.DIR.lock``, ``fcntl.flock``: released by the kernel when the process
ends, so a killed run never blocks the next; the file is removed when the
run ends, finished, failed or refused, so only a killed run leaves one for
the next run to take), refuses a non-empty ``DIR``
unless ``overwrite``, and yields a fresh *staging* directory beside it
(``.DIR.staging-<id>``, same filesystem).  The job writes everything there;
:func:`publish` then swaps it in: ``DIR`` is renamed away, the staging
directory renamed to ``DIR``, the old run deleted.  A reader of ``DIR`` sees
the old run, for an instant nothing, then the new run -- never a mix.  A run
that fails (or is interrupted) deletes its staging directory and leaves
``DIR`` as it was; the staging directory of a killed run is deleted by the
next run that takes the lock, and a run killed between the swap's two
renames (no ``DIR``, the old run as ``.DIR.old-*``) has its old run renamed
back by the next run before anything else.

A ``DIR`` that is a symbolic link to a directory is followed: the run goes
into the link's target, with the lock, staging directory and swap beside the
target, and the link is left as it was (:func:`resolve`).

``overwrite`` replaces only what looks like a pipeline output: a ``DIR``
holding anything else (``notes.txt``, a home directory given by mistake) is
refused, not deleted.

Object stores (``gs://``) have no directory rename and no lock: a non-empty
remote ``DIR`` is refused unless ``overwrite``, which deletes it before the
run (not atomic; documented in docs/pipeline.md).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import IO, Iterator

from pipeline.filesystem import is_remote
from schemas.run_output import TOP_LEVEL


class OutputDirError(Exception):
    """The output directory cannot take this run (one line for the user)."""


def resolve(final: str) -> str:
    """The directory a run really writes: ``final`` itself, or, when it is a
    symbolic link, the directory it points to (the link stays as it is, and
    the lock, staging directory and swap happen beside the target)."""
    final = os.path.abspath(final).rstrip(os.sep)
    return os.path.realpath(final) if os.path.islink(final) else final


def _siblings(final: str) -> tuple[str, str]:
    parent, name = os.path.split(resolve(final))
    return parent, name


def lock_path(final: str) -> str:
    parent, name = _siblings(final)
    return os.path.join(parent, f".{name}.lock")


def _entries(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        raise OutputDirError(f"--out {path}: exists and is not a directory") from exc


def check_replaceable(final: str, overwrite: bool) -> None:
    """Raises :class:`OutputDirError` unless ``final`` is absent or empty,
    or ``overwrite`` and it holds only a pipeline output's entries."""
    entries = _entries(final)
    if not entries:
        return
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    if not overwrite:
        raise OutputDirError(f"--out {final} is not empty ({len(entries)} entries: "
                             f"{shown}); give an empty directory, or --overwrite to "
                             "replace the earlier run")
    foreign = [e for e in entries if e not in TOP_LEVEL]
    if foreign:
        raise OutputDirError(f"--out {final} holds files that are not a pipeline "
                             f"output ({', '.join(foreign[:3])}); refusing to replace it "
                             "even with --overwrite")


def _take_lock(final: str) -> IO[str]:
    """Opens and locks ``.DIR.lock``; :class:`OutputDirError` when another
    run holds it.  A run removes its lock file when it ends, while it still
    holds the lock (:func:`_release_lock`), so a process that opened the file
    just before may lock an unlinked file: after locking, the file on disk
    must still be the one locked, else the lock is taken again."""
    import fcntl
    path = lock_path(final)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutputDirError(f"--out {final} is in use by another run ({holder}; "
                                 f"lock {path})") from exc
        if _same_file(handle, path):
            break
        handle.close()              # the holder removed it meanwhile: lock the new one
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle


def _same_file(handle: IO[str], path: str) -> bool:
    """Whether ``path`` still names the open file ``handle``."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _release_lock(handle: IO[str], final: str) -> None:
    """Removes the lock file, then releases the lock: no ``.DIR.lock`` is
    left beside the output after a run, whatever its end."""
    path = lock_path(final)
    try:
        if _same_file(handle, path):
            os.unlink(path)
    finally:
        handle.close()


def _remove_stale(final: str) -> None:
    """Cleans up after runs that were killed (we hold the lock): a run killed
    inside :func:`publish`, between its two renames, left the old run as
    ``.DIR.old-*`` and no ``DIR``: it is renamed back first.  Then staging
    and old directories are deleted."""
    parent, name = _siblings(final)
    entries = sorted(os.listdir(parent))
    olds = [e for e in entries if e.startswith(f".{name}.old-")]
    if olds and not os.path.lexists(os.path.join(parent, name)):
        os.rename(os.path.join(parent, olds[0]), os.path.join(parent, name))
    for entry in os.listdir(parent):
        if entry.startswith((f".{name}.staging-", f".{name}.old-")):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


@contextlib.contextmanager
def claim(final: str, overwrite: bool = False) -> Iterator[str]:
    """Locks ``final``, checks it, yields the directory the run writes into.

    Local: a fresh staging directory beside ``final``, deleted if the body
    raises (``final`` is untouched); call :func:`publish` inside the body to
    swap it in.  Remote: ``final`` itself (emptied first with ``overwrite``).
    """
    if is_remote(final):
        yield _claim_remote(final, overwrite)
        return
    final = resolve(final)
    parent, name = _siblings(final)
    os.makedirs(parent, exist_ok=True)
    handle = _take_lock(final)
    try:
        _remove_stale(final)           # first: it may restore the old run
        check_replaceable(final, overwrite)
        staging = os.path.join(parent, f".{name}.staging-{uuid.uuid4().hex[:12]}")
        os.mkdir(staging)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)   # gone after publish()
    finally:
        _release_lock(handle, final)


def publish(staging: str, final: str) -> None:
    """Replaces ``final`` by ``staging`` (two renames, then the old run is deleted)."""
    if is_remote(final) or staging == final:
        return
    final = resolve(final)
    parent, name = _siblings(final)
    old = None
    if os.path.lexists(final):
        old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old)


def _claim_remote(final: str, overwrite: bool) -> str:
    from apache_beam.io.filesystems import FileSystems
    matches = FileSystems.match([final.rstrip("/") + "/**"])[0].metadata_list
    if matches and not overwrite:
        raise OutputDirError(f"--out {final} is not empty ({len(matches)} objects); "
                             "give an empty location, or --overwrite to replace it")
    if matches:
        FileSystems.delete([m.path for m in matches])
    return final
