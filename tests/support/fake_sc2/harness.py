"""Installs the stand-in game where pysc2 looks for StarCraft II, and writes scenarios.

``install(sc2path, [59587])`` creates ``<sc2path>/Versions/Base59587/SC2_x64``:
``fake_game.py`` with its shebang pointing at this interpreter, executable,
so that pysc2's Linux run config launches it exactly like the real binary.
Scenarios are keyed by the sha256 of the replay bytes the game is sent.
"""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any, Iterable

FAKE_GAME = Path(__file__).with_name("fake_game.py")


def install(sc2path: Path, base_builds: Iterable[int]) -> None:
    source = FAKE_GAME.read_text(encoding="utf-8").split("\n", 1)[1]
    for build in base_builds:
        exe = Path(sc2path) / "Versions" / ("Base%05d" % build) / "SC2_x64"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (Path(sc2path) / "Maps").mkdir(parents=True, exist_ok=True)


def write_scenario(sc2path: Path, replay_sha256: str, scenario: dict[str, Any]) -> Path:
    path = Path(sc2path) / "fake_sc2" / "scenarios" / f"{replay_sha256}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scenario), encoding="utf-8")
    return path


def crash_at_launch(sc2path: Path, times: int) -> None:
    """The next ``times`` launches exit before listening."""
    path = Path(sc2path) / "fake_sc2" / "crash_at_launch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(times))


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def launches(sc2path: Path) -> list[dict]:
    return _jsonl(Path(sc2path) / "fake_sc2" / "launches.jsonl")


def requests(sc2path: Path) -> list[dict]:
    return _jsonl(Path(sc2path) / "fake_sc2" / "requests.jsonl")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
