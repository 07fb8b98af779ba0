"""Which StarCraft II binary and data version replays a given replay.

The game only replays a file with the binary of the replay's *base build*
(``$SC2PATH/Versions/Base<base build>/SC2_x64``) started with the replay's
*data version* (``-dataVersion``).  pysc2 knows these pairs for the versions
it lists (``pysc2.run_configs.lib.VERSIONS``), Blizzard's s2client-proto
``versions.json`` for others; the project merges both into
``pipeline/sources/sc2/data/sc2_versions.json`` (``tools/generate_sc2_versions.py``).
Replays of 4.1 and later also carry their data version in
``replay.gamemetadata.json``, which wins when present, as in pysc2's
``replay.get_replay_version``.

This module only chooses; it never starts the game.  It also answers, before
a run reads any replay, whether any build it could start is installed at all
(:func:`check_game_installed`): without one every replay would fail one by one.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from typing import Any

from pipeline.pysc2_compat import apply as apply_pysc2_compat
from pipeline.sources.interface import SourceError

_TABLE = os.path.join(os.path.dirname(__file__), "data", "sc2_versions.json")
# The executable pysc2's Linux run config starts.  A pysc2 ``Version`` with
# every field set is used as given instead of being looked up in pysc2's own
# list, which is what lets builds pysc2 does not list run at all.
LINUX_BINARY = "SC2_x64"


@dataclasses.dataclass(frozen=True)
class VersionChoice:
    """The game version chosen for one replay, and why."""
    game_version: str          # "4.7.0"
    build: int                 # the replay's full build (last part of the version)
    base_build: int            # selects Versions/Base<base_build>
    data_version: str | None   # -dataVersion; None lets the game pick
    reason: str                # replay_metadata, table_exact, table_build, table_base
    linux_packages: tuple[str, ...]

    def pysc2_version(self):
        """This choice as ``pysc2.run_configs.lib.Version``."""
        apply_pysc2_compat()
        from pysc2.run_configs import lib as rc_lib
        return rc_lib.Version(self.game_version, self.base_build, self.data_version,
                              LINUX_BINARY if self.data_version else None)

    @property
    def binary_dir(self) -> str:
        return "Base%05d" % self.base_build


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    with open(_TABLE, encoding="utf-8") as f:
        return json.load(f)


def versions() -> list[dict[str, Any]]:
    """Rows of the committed version table (see the generator)."""
    return list(_table()["versions"])


def min_api_base_build() -> int:
    """Oldest base build whose binary speaks the API (3.16.1)."""
    return int(_table()["min_api_base_build"])


def _packages(base_build: int) -> tuple[str, ...]:
    names = set()
    for row in _table()["versions"]:
        if row["base_build"] == base_build:
            names.update(row["linux_packages"])
    return tuple(sorted(names))


def _three_part(version: str) -> str:
    parts = version.split(".")
    return ".".join((parts + ["0", "0", "0"])[:3])


def select_version(version: str, base_build: int,
                   metadata_data_version: str | None = None) -> VersionChoice:
    """Chooses binary and data version for a replay.

    Args:
      version: the replay's version string, ``major.minor.revision.build``.
      base_build: the replay header's base build.
      metadata_data_version: ``DataVersion`` from ``replay.gamemetadata.json``.

    Raises:
      SourceError: ``version_unknown`` when no source names a data version and
        the table has no row for the build; ``version_unsupported`` for base
        builds older than 3.16.1 (no API in those binaries).
    """
    if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", version or ""):
        raise SourceError("version_unknown", f"malformed replay version {version!r}")
    game_version = _three_part(version)
    build = int(version.rsplit(".", 1)[1])
    base_build = int(base_build)
    if base_build < min_api_base_build():
        raise SourceError(
            "version_unsupported",
            f"replay {version} (base build {base_build}) predates the API: the oldest "
            f"game binary with the API is 3.16.1 (base build {min_api_base_build()})")
    packages = _packages(base_build)

    def choice(data_version, reason):
        return VersionChoice(game_version, build, base_build,
                             data_version.upper() if data_version else None,
                             reason, packages)

    if metadata_data_version:
        return choice(metadata_data_version, "replay_metadata")
    rows = [r for r in _table()["versions"] if r["base_build"] == base_build]
    exact = [r for r in rows if r["build"] == build and r["game_version"] == game_version]
    if len(exact) == 1:
        return choice(exact[0]["data_version"], "table_exact")
    same_build = {r["data_version"] for r in rows if r["build"] == build}
    if len(same_build) == 1:
        return choice(same_build.pop(), "table_build")
    same_version = {r["data_version"] for r in rows if r["game_version"] == game_version}
    if len(same_version) == 1:
        return choice(same_version.pop(), "table_base")
    raise SourceError(
        "version_unknown",
        f"no data version known for replay {version} (base build {base_build}); "
        f"candidates: {sorted(filter(None, same_build | same_version)) or 'none'}")


def version_for_archive(archive) -> VersionChoice:
    """:func:`select_version` for a ``ReplayArchive``."""
    metadata = archive.metadata or {}
    return select_version(archive.version, archive.base_build,
                          metadata.get("DataVersion") or None)


def installed_base_builds(sc2path: str) -> set[int]:
    """Base builds installed under ``sc2path`` (``Versions/Base<build>``)."""
    folder = os.path.join(sc2path, "Versions")
    if not os.path.isdir(folder):
        return set()
    out = set()
    for name in os.listdir(folder):
        m = re.fullmatch(r"Base(\d+)", name)
        if m and os.path.isfile(os.path.join(folder, name, LINUX_BINARY)):
            out.add(int(m.group(1)))
    return out


def require_installed(choice: VersionChoice, sc2path: str) -> None:
    """Raises ``SourceError("version_not_installed")`` unless the binary exists."""
    installed = installed_base_builds(sc2path)
    if choice.base_build not in installed:
        hint = (f"install the Linux package {' or '.join(choice.linux_packages)}"
                if choice.linux_packages else
                "no Linux package carries this base build (Windows/macOS only)")
        raise SourceError(
            "version_not_installed",
            f"replay needs game {choice.game_version} (Versions/{choice.binary_dir}) "
            f"under {sc2path}; installed: "
            f"{sorted('Base%05d' % b for b in installed) or 'none'}; {hint}")


# ------------------------------------------------------------ install check
class GameNotInstalledError(RuntimeError):
    """No game build that can replay anything is installed: one line saying
    where it looked, what it found and what is needed."""


def default_sc2path() -> str:
    """``$SC2PATH``, else pysc2's Linux default ``~/StarCraftII``."""
    return os.path.expanduser(os.environ.get("SC2PATH", "~/StarCraftII"))


def linux_packages() -> list[tuple[str, int]]:
    """The Linux game packages Blizzard published, ``(label, base build)``,
    oldest first (from the committed table's ``linux_packages``)."""
    return sorted({(label, int(row["base_build"])) for row in versions()
                   for label in row["linux_packages"]},
                  key=lambda p: (p[1], [int(x) for x in p[0].split(".")]))


def build_label(base_build: int) -> str:
    """``Base59587 (4.0.2)``: a base build with the package (else the game
    version) the table knows it by."""
    packages = _packages(base_build)
    if packages:
        known = "/".join(packages)
    else:
        known = next((r["game_version"] for r in versions()
                      if r["base_build"] == base_build), "unknown version")
    return "Base%05d (%s)" % (base_build, known)


def _where(sc2path: str | None) -> str:
    if sc2path is not None:
        return os.path.expanduser(sc2path)
    if "SC2PATH" in os.environ:
        return f"SC2PATH={default_sc2path()}"
    return f"{default_sc2path()} (pysc2's default; SC2PATH is not set)"


def check_game_installed(sc2path: str | None = None) -> list[int]:
    """The installed base builds the pipeline can start, oldest first: an
    executable ``Versions/Base<build>/SC2_x64`` of a build with the API.

    Only looks at files; never starts the game.  ``sc2path`` defaults to
    :func:`default_sc2path`, as the workers' :class:`GameProcess` does.

    Raises:
      GameNotInstalledError: none can run; the message (one line) names the
        folder, what is installed there, and the Linux builds needed.
    """
    root = os.path.expanduser(sc2path) if sc2path is not None else default_sc2path()
    folder = os.path.join(root, "Versions")
    found: list[str] = []
    runnable: list[int] = []
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        m = re.fullmatch(r"Base(\d+)", name)
        if not m:
            continue
        build = int(m.group(1))
        exe = os.path.join(folder, name, LINUX_BINARY)
        if not os.path.isfile(exe):
            found.append(f"{build_label(build)} without {LINUX_BINARY}")
        elif not os.access(exe, os.X_OK):
            found.append(f"{build_label(build)} whose {LINUX_BINARY} is not executable")
        elif build < min_api_base_build():
            found.append(f"{build_label(build)}, older than the API")
        else:
            runnable.append(build)
    if runnable:
        return runnable
    if not os.path.isdir(root):
        installed = f"none ({root} does not exist)"
    elif not names:
        installed = f"none (no {os.path.join(root, 'Versions', 'Base*', LINUX_BINARY)})"
    else:
        installed = ", ".join(found) or f"none (no Base* folder in {folder})"
    packages = linux_packages()
    (first, first_build), (last, last_build) = packages[0], packages[-1]
    raise GameNotInstalledError(
        f"no StarCraft II build that can run is installed under {_where(sc2path)}: "
        f"installed: {installed}; needed: a Linux game package {first} to {last} "
        f"(Versions/Base{first_build:05d} to Base{last_build:05d}) unzipped there; "
        f"see docs/headless_sc2.md")
