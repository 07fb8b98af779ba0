"""The pipeline on hostile replays mixed with good ones (issue "Hostile
replays: no single file stops a run, and every stage is bounded in memory
and time").

``../shared/hostile-replays`` holds seven edited copies of a real game
(a 16 GiB metadata bomb, 200 million game events, JSON nested 100,000 deep,
``PlayerID: 1e999``, ``MMR: 1e300``, names with escape sequences, a mathtext
map title).  One run gets all of them, two good games, a copy of a hostile
file under a name that is not UTF-8 and a sampled game under a name holding
an escape sequence and a newline.  It must finish with rc 0, record every
hostile file with its category, sample the good games exactly as a run
without the hostile files does, keep every process under the memory limit,
and print no raw control character.  The run without hostile files is
conftest's ``pipeline_run`` (the same settings; it samples these two games
among others).
"""
from __future__ import annotations

import logging
import os
import shutil
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import PIPELINE_REPLAYS, REPLAYS, SHARED, pipeline_argv, require_shared

HOSTILE = SHARED / "hostile-replays"
GOOD = ("dream_spirit", "maru_byun")
#: stage and category of each hostile file; None: sampled (safely).
EXPECTED = {
    "A8_meta_bz2_16g": ("scan", "corrupt"),          # inflates past its declared size
    "C4_game_events_200M": ("scan", "too_large"),    # 587 MB declared > 16 MiB
    "D1_meta_nested_100k": ("scan", "corrupt"),
    "D3_meta_playerid_1e999": ("scan", "corrupt"),
    "D4_meta_mmr_1e300": ("scan", "corrupt"),
    "E2_evil_names_and_race": ("scan", "corrupt"),   # a 10,007-character name
    "E4_mathtext_title": None,
}
MEMORY_LIMIT_MB = 1024
#: The launcher never holds a replay's content: its peak may grow by Beam's
#: and the run's own bookkeeping only (measured: well under this).
LAUNCHER_GROWTH_MB = 400
EVIL_NAME = "evil \x1b[2K\rname\n2026-01-01 progress [pid 1] forged.SC2Replay"


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def _samples(output: Path) -> pa.Table:
    tables = [pq.read_table(p) for p in sorted((output / "parquet").rglob("*.parquet"))]
    return pa.concat_tables(tables)


def _rows_of(table: pa.Table, replay_ids: set[str]) -> pa.Table:
    keep = pa.array([r in replay_ids for r in table.column("replay_id").to_pylist()])
    table = table.filter(keep)
    order = sorted(range(table.num_rows), key=lambda i: (
        table["replay_id"][i].as_py(), table["player_id"][i].as_py(),
        table["game_loop"][i].as_py()))
    return table.take(pa.array(order, pa.int64()))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, pipeline_run):
    """The hostile run; ``pipeline_run`` (conftest's, shared with the Beam
    tests) is the run without hostile files that the good games must match."""
    require_shared()
    if not HOSTILE.is_dir():
        pytest.skip(f"hostile replays not found at {HOSTILE}")
    import beam_runner
    from pipeline.replay.bounded_process import children_peak_bytes
    from pipeline.replay.limits import DEFAULT_MAX_BYTES
    from support.bad_replays import hostile_files
    root = tmp_path_factory.mktemp("hostile")
    good = [str(REPLAYS / PIPELINE_REPLAYS[name][0]) for name in GOOD]
    extra = root / "named"
    extra.mkdir()
    evil_named = extra / EVIL_NAME
    maru = Path(good[1]).read_bytes()
    escapes = next(b for n, _, b, _ in hostile_files(maru) if n.startswith("names-") and
                   n.endswith("-escapes"))
    evil_named.write_bytes(escapes)                         # a game that samples
    not_utf8 = os.path.join(os.fsencode(extra), b"not utf-8 \xff.SC2Replay")
    shutil.copyfile(HOSTILE / "D4_meta_mmr_1e300.SC2Replay", not_utf8)
    limits = ["--max_bytes", str(DEFAULT_MAX_BYTES), "--memory_limit_mb",
              str(MEMORY_LIMIT_MB), "--direct_num_workers=1",
              "--direct_running_mode=in_memory"]
    lines = _Lines()
    progress = logging.getLogger("sc2.progress")
    progress.addHandler(lines)
    level = progress.level
    progress.setLevel(logging.INFO)
    with open("/proc/self/clear_refs", "w") as f:       # VmHWM := the current size
        f.write("5")
    launcher_before = _status("VmRSS")
    out = root / "out"
    try:
        rc = beam_runner.main(pipeline_argv([str(HOSTILE), str(extra)] + good, out,
                                            limits + ["--progress_every_s", "0"]))
    finally:
        progress.removeHandler(lines)
        progress.setLevel(level)
    return {"rc": rc, "out": out, "clean": pipeline_run.output, "good": good,
            "lines": lines.lines,
            "evil_named": str(evil_named), "not_utf8": os.fsdecode(not_utf8),
            "launcher_growth": _status("VmHWM") - launcher_before,
            "launcher_peak": _status("VmHWM"),
            "children_peak": children_peak_bytes()}


def test_the_run_finishes_and_records_every_hostile_file(hostile_run):
    assert hostile_run["rc"] == 0
    out = hostile_run["out"]
    errors = {Path(e["path"]).stem: e for e in
              pq.read_table(out / "errors" / "errors.parquet").to_pylist()}
    replays = {Path(r["path"]).stem: r for r in
               pq.read_table(out / "index" / "replays.parquet").to_pylist()}
    for name, expected in EXPECTED.items():
        if expected is None:
            assert name not in errors and replays[name]["status"] == "ok", name
        else:
            got = errors[name]
            assert (got["stage"], got["category"]) == expected, (name, got)
            assert got["message"] and "\n" not in got["message"]
    sampled = set(_samples(out).column("replay_id").to_pylist())
    assert replays["E4_mathtext_title"]["replay_id"] in sampled
    assert replays["E4_mathtext_title"]["map_name"] == "Map $\\frac{$ x"
    # A file name that is not UTF-8 cannot travel through Beam: the file is
    # a read error, its name stored with the odd byte escaped.
    odd = errors["not utf-8 \\xff"]
    assert (odd["stage"], odd["category"]) == ("read", "io_error") and "UTF-8" in odd["message"]
    # The name with escape sequences is data: kept exactly, and sampled.
    evil = replays[Path(EVIL_NAME).stem]
    assert evil["path"] == hostile_run["evil_named"] and evil["replay_id"] in sampled
    players = pq.read_table(out / "index" / "players.parquet").to_pylist()
    names = {p["name"] for p in players if p["replay_id"] == evil["replay_id"]}
    assert any("\x1b" in n for n in names), names
    from schemas.run_output import Manifest
    metrics = Manifest.load(str(out)).metrics
    assert metrics["errors_scan_corrupt"] == 5 and metrics["errors_scan_too_large"] == 1
    assert metrics["errors_read_io_error"] == 1
    assert metrics["replays_sampled"] == 4


def test_good_replays_are_sampled_as_in_a_clean_run(hostile_run):
    """Row for row as conftest's run of real games without hostile files
    (the same resolution, step_mul, fog and splits) samples them."""
    index = pq.read_table(hostile_run["out"] / "index" / "replays.parquet").to_pylist()
    good_ids = {r["replay_id"] for r in index if r["path"] in hostile_run["good"]}
    assert len(good_ids) == len(GOOD)
    hostile = _rows_of(_samples(hostile_run["out"]), good_ids)
    expected = _rows_of(_samples(hostile_run["clean"]), good_ids)
    assert hostile.num_rows == expected.num_rows > 0
    assert hostile.equals(expected)


def test_every_process_stays_under_the_memory_bound(hostile_run):
    peak = hostile_run["children_peak"]
    assert 0 < peak <= MEMORY_LIMIT_MB * 2 ** 20, peak
    assert hostile_run["launcher_growth"] < LAUNCHER_GROWTH_MB * 2 ** 20, \
        hostile_run["launcher_growth"]
    print(f"peak child {peak / 2 ** 20:.1f} MB; launcher peak "
          f"{hostile_run['launcher_peak'] / 2 ** 20:.1f} MB, grown by "
          f"{max(0, hostile_run['launcher_growth']) / 2 ** 20:.0f} MB during the run")


def test_progress_lines_escape_file_names(hostile_run):
    lines = hostile_run["lines"]
    assert lines, "no progress lines"
    for line in lines:
        assert not any(unicodedata.category(c) == "Cc" for c in line), ascii(line)
    evil = [line for line in lines if "evil " in line]
    assert len(evil) == 1 and "\\x1b[2K\\rname\\n2026-01-01 progress" in evil[0], evil


def test_a_named_pipe_among_the_inputs_is_a_record_not_a_hang(tmp_path, capsys):
    """A FIFO named like a replay, with no writer: opening it would block
    before any time limit applies.  It is a ``read:not_a_file`` record, found
    without blocking, and the good replay beside it is sampled."""
    import time
    import beam_runner
    require_shared()
    folder = tmp_path / "in"
    folder.mkdir()
    good = REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0]
    shutil.copy(good, folder / good.name)
    os.mkfifo(folder / "pipe.SC2Replay")
    start = time.monotonic()
    manifest = beam_runner.run(pipeline_argv(
        [str(folder)], tmp_path / "out",
        ["--decode_timeout_s", "10", "--direct_num_workers=1",
         "--direct_running_mode=in_memory"]))
    assert time.monotonic() - start < 60
    assert manifest.counts.error_reasons == {"read:not_a_file": 1}
    assert manifest.counts.samples_total == 944
    errors = pq.read_table(tmp_path / "out" / "errors" / "errors.parquet").to_pylist()
    assert [(e["path"], e["category"], e["message"]) for e in errors] == [
        (str(folder / "pipe.SC2Replay"), "not_a_file",
         "a named pipe (FIFO), not a regular file")]
    # the predictor reads through the same code: one line, no hang
    from trainers import predict
    assert predict.main(["--run", str(Path(__file__).parents[1] / "models" / "fully_conv"),
                         "--replay", str(folder / "pipe.SC2Replay"),
                         "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("not a usable replay (not_a_file: a named pipe (FIFO), not a "
                            "regular file)")
