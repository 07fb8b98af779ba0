"""The pieces that bound a hostile replay, one at a time: the bounded MPQ
reader against mpyq, the terminal and plot escaping, the limit flags, the
child's ``resource`` and ``timeout`` outcomes, and ``scan_cli`` on the
hostile files."""
from __future__ import annotations

import io
import time

import mpyq
import pytest

from conftest import PIPELINE_REPLAYS, REPLAYS, SHARED, require_shared
from pipeline.replay.decoded import ReplayError
from pipeline.replay.limits import InflateLimits, Limits, add_arguments, from_args
from pipeline.replay.mpq import BoundedMPQ
from pipeline.text import plot_text, storable, terminal_safe


def _maru() -> bytes:
    require_shared()
    return (REPLAYS / PIPELINE_REPLAYS["maru_byun"][0]).read_bytes()


def test_bounded_reader_reads_what_mpyq_reads():
    data = _maru()
    ours, theirs = BoundedMPQ(data), mpyq.MPQArchive(io.BytesIO(data), listfile=True)
    assert ours.files == theirs.files and len(ours.files) > 10
    for name in ours.files:
        assert ours.read_file(name.decode()) == theirs.read_file(name.decode()), name
    listfile = len(theirs.read_file("(listfile)"))          # read when the archive opens
    assert ours.total_inflated == listfile + sum(len(theirs.read_file(n.decode()) or b"")
                                                 for n in theirs.files)


def test_bounded_reader_refuses_past_its_limits():
    data = _maru()
    game = BoundedMPQ(data).block_table  # the largest member: game events, 61,679 bytes
    largest = max(b.size for b in game)
    with pytest.raises(ReplayError) as caught:
        BoundedMPQ(data, InflateLimits(max_member_bytes=largest - 1))
    assert caught.value.category == "too_large" and str(largest) in caught.value.message
    with pytest.raises(ReplayError) as caught:
        BoundedMPQ(data, InflateLimits(max_inflated_bytes=largest))
    assert caught.value.category == "too_large"


def test_terminal_safe_escapes_what_a_terminal_would_obey():
    evil = "a\x1b]0;title\x07b\x1b[2K\r\n\x00\u202e\x9b\\é 한"
    shown = terminal_safe(evil)
    assert shown == "a\\x1b]0;title\\x07b\\x1b[2K\\r\\n\\x00\\u202e\\x9b\\\\é 한"
    assert shown.isprintable()
    assert terminal_safe("x" * 250, 200) == "x" * 200 + "...[50 more characters]"
    assert plot_text("Map $\\frac{$ x\n") == "Map $\\frac{$ x\\n"      # backslash as is
    assert storable("name \udcff.SC2Replay") == "name \\xff.SC2Replay"
    assert storable("\ud800") == "\\ud800" and storable("plain") == "plain"


def test_limit_flags_parse_and_refuse_nonsense():
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_args(parser.parse_args([])) == Limits()
    args = parser.parse_args(["--memory_limit_mb", "512", "--max_member_bytes", "1000"])
    limits = from_args(args)
    assert limits.memory_bytes == 512 * 2 ** 20 and limits.inflate.max_member_bytes == 1000
    with pytest.raises(ValueError, match="--max_inflated_bytes"):
        from_args(parser.parse_args(["--max_inflated_bytes", "0"]))
    with pytest.raises(ValueError, match="--memory_limit_mb"):
        from_args(parser.parse_args(["--memory_limit_mb", "-1"]))


def test_a_memory_error_in_the_job_is_a_resource_record(monkeypatch):
    """In-process (the child's code path): MemoryError -> 'resource'."""
    from pipeline.index import scan
    from pipeline.replay import bounded_process

    def exhausted(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(scan, "scan_path", exhausted)
    outcome = bounded_process.run_job(scan.ScanJob("x.SC2Replay", None, None))
    assert outcome == bounded_process.JobFailure("resource", "scanning the replay: out of "
                                                             "memory (MemoryError)")


def test_the_child_is_killed_at_its_time_limit():
    from pipeline.index.scan import ScanJob
    from pipeline.replay.bounded_process import TimedWorker
    worker = TimedWorker(60, 1024)
    try:
        start = time.monotonic()
        outcome = worker.run(ScanJob("never read", None, None), timeout_s=0.05)
        assert time.monotonic() - start < 5
        assert (outcome.category, "took over 0.05 s" in outcome.message) == ("timeout", True)
        assert worker.restarts == 1
    finally:
        worker.close()


def test_scan_cli_records_the_hostile_files(tmp_path, capsys):
    from pipeline.index import scan, scan_cli
    hostile = SHARED / "hostile-replays"
    if not hostile.is_dir():
        pytest.skip(f"hostile replays not found at {hostile}")
    assert scan_cli.main(["--replays", str(hostile), "--out", str(tmp_path),
                          "--workers", "2", "--memory_limit_mb", "512"]) == 0
    assert "replays indexed: 1  errors: 6" in capsys.readouterr().out
    errors = {e["path"].rsplit("/", 1)[-1]: e["category"]
              for e in scan.read_table(str(tmp_path / "errors" / "errors.parquet"))}
    assert errors == {"A8_meta_bz2_16g.SC2Replay": "corrupt",
                      "C4_game_events_200M.SC2Replay": "too_large",
                      "D1_meta_nested_100k.SC2Replay": "corrupt",
                      "D3_meta_playerid_1e999.SC2Replay": "corrupt",
                      "D4_meta_mmr_1e300.SC2Replay": "corrupt",
                      "E2_evil_names_and_race.SC2Replay": "corrupt"}
