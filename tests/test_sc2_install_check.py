"""``--engine sc2`` checks that a game build can run before it reads a replay.

Without one, every replay used to fail one by one (``version_not_installed``)
and the run exited 0.  The check only looks at files
(``$SC2PATH/Versions/Base<build>/SC2_x64``); nothing here starts a game.
"""
from __future__ import annotations

import stat

import pyarrow.parquet as pq
import pytest

from conftest import PIPELINE_REPLAYS, REPLAYS, pipeline_argv, require_shared
from pipeline.sources.sc2 import versions
from support.fake_sc2 import harness

IN_PROCESS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _binary(sc2path, build: int, executable: bool = True) -> None:
    """A file where the game's binary goes (never run by these tests)."""
    exe = sc2path / "Versions" / ("Base%05d" % build) / versions.LINUX_BINARY
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 1\n")
    if executable:
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_nothing_installed_is_one_line_naming_where_and_what_is_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("SC2PATH", str(tmp_path / "StarCraftII"))
    with pytest.raises(versions.GameNotInstalledError) as caught:
        versions.check_game_installed()
    line = str(caught.value)
    assert "\n" not in line
    assert f"SC2PATH={tmp_path / 'StarCraftII'}" in line
    assert "installed: none" in line and "does not exist" in line
    assert "3.16.1 to 4.10" in line and "Base55958 to Base75689" in line
    assert "docs/headless_sc2.md" in line


def test_without_sc2path_it_names_pysc2s_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SC2PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(versions.GameNotInstalledError,
                       match=r"StarCraftII \(pysc2's default; SC2PATH is not set\)"):
        versions.check_game_installed()


def test_an_empty_install_folder_says_what_is_missing(tmp_path):
    (tmp_path / "Maps").mkdir()
    with pytest.raises(versions.GameNotInstalledError,
                       match=r"installed: none \(no .*Versions/Base\*/SC2_x64\)"):
        versions.check_game_installed(str(tmp_path))


def test_builds_that_cannot_run_are_each_named(tmp_path):
    _binary(tmp_path, 52910)                       # 3.13: before the API
    _binary(tmp_path, 59587, executable=False)     # 4.0.2, not executable
    (tmp_path / "Versions" / "Base60321").mkdir(parents=True)   # no binary
    with pytest.raises(versions.GameNotInstalledError) as caught:
        versions.check_game_installed(str(tmp_path))
    line = str(caught.value)
    assert ("installed: Base52910 (3.13.0), older than the API, "
            "Base59587 (4.0.2) whose SC2_x64 is not executable, "
            "Base60321 (4.1.2) without SC2_x64; needed:") in line


def test_an_installed_build_passes_and_is_listed(tmp_path):
    _binary(tmp_path, 75689)
    _binary(tmp_path, 59587)
    _binary(tmp_path, 52910)                       # ignored: before the API
    assert versions.check_game_installed(str(tmp_path)) == [59587, 75689]


def test_the_stand_in_game_of_the_source_tests_passes(tmp_path):
    harness.install(tmp_path, [59587])
    assert versions.check_game_installed(str(tmp_path)) == [59587]


def test_linux_packages_come_from_the_version_table():
    packages = versions.linux_packages()
    assert packages[0] == ("3.16.1", versions.min_api_base_build())
    assert packages[-1] == ("4.10", 75689)
    assert versions.build_label(67926) == "Base67926 (4.6/4.6.1)"


def test_beam_runner_stops_before_reading_a_replay(tmp_path, monkeypatch, capsys):
    """Through the command line: rc 1, one line, nothing written (not even
    the output's lock), no replay read."""
    require_shared()
    import beam_runner
    from pipeline.replay import storage
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))

    def no_reading(*args, **kwargs):
        raise AssertionError("a replay was read")
    monkeypatch.setattr(storage, "read_bytes", no_reading)
    out = tmp_path / "out"
    replay = str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])
    argv = pipeline_argv([replay], out, IN_PROCESS + ["--decode_timeout_s", "0"])
    argv[argv.index("--engine") + 1] = "sc2"
    assert beam_runner.main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sc2-pipeline: run refused: --engine sc2: no StarCraft II "
                             "build that can run is installed under SC2PATH=")
    assert "installed: none" in err[0] and "3.16.1 to 4.10" in err[0]
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_remote_runners_are_not_checked_on_the_launcher(monkeypatch, tmp_path):
    """Dataflow and Dask workers carry their own game (the container image)."""
    import beam_runner
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    beam_runner.check_engine("sc2", ["--runner", "DataflowRunner"])
    beam_runner.check_engine("events", [])
    with pytest.raises(beam_runner.RunRefused, match="--engine sc2: "):
        beam_runner.check_engine("sc2", ["--direct_num_workers=1"])


def test_a_game_that_plays_none_of_the_replays_fails_the_run_in_its_last_line(
        tmp_path, monkeypatch, capsys):
    """A build is installed (the check passes) but not the replay's: the
    replay becomes a ``version_not_installed`` error without a launch, and
    the run, having sampled nothing, exits 1 naming it."""
    require_shared()
    import beam_runner
    harness.install(tmp_path / "SC2", [59587])               # 4.0.2; the replay is 5.0.8
    monkeypatch.setenv("SC2PATH", str(tmp_path / "SC2"))
    out = tmp_path / "out"
    replay = str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])
    argv = pipeline_argv([replay], out, IN_PROCESS + ["--formats", "parquet"])
    argv[argv.index("--engine") + 1] = "sc2"
    assert beam_runner.main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"sc2-pipeline: run failed: no samples from 1 input files: error "
                    f"sample:source 1 (first: {replay}); output kept for inspection: {out}")
    assert harness.launches(tmp_path / "SC2") == []
    errors = pq.read_table(out / "errors" / "errors.parquet").to_pylist()
    assert [e["message"].split(":")[0] for e in errors] == ["version_not_installed"]
