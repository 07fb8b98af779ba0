"""Progress with totals, rate and ETA: the pipeline's run line in
non-terminal mode (one line every N seconds) and on a terminal (in place)."""
from __future__ import annotations

import io

from pipeline.job.run_progress import RunProgress
from pipeline.progress import StatusLine


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run(tty: bool) -> tuple[list[str], io.StringIO]:
    clock = _Clock()
    lines: list[str] = []
    stream = io.StringIO()
    run = RunProgress(clock=clock)
    run.reset(4, StatusLine(lines.append, interval_s=10.0, stream=stream, tty=tty, clock=clock))
    for _ in range(4):                      # 1 file/s
        clock.now += 1.0
        run.scanned()
    run.kept(1000)
    run.kept(3000)
    run.kept(500)
    clock.now += 1.0
    run.sampled(1000, "a.SC2Replay")        # first sample: sampling starts here
    clock.now += 20.0
    run.sampled(2000, "b.SC2Replay")
    clock.now += 5.0
    run.sampled(0, "c.SC2Replay", failed=True)
    clock.now += 1.0
    run.finish()
    return lines, stream


def test_non_terminal_progress_is_one_line_per_interval_with_totals_rate_and_eta():
    lines, stream = _run(tty=False)
    assert stream.getvalue() == ""
    assert lines == [
        # the first update always shows; the next ones within 10 s do not
        "scanned 1/4 files (25.0%), 1.0 files/s, ETA 3s",
        "sampled 2/3 replays, 3,000/~4,500 samples (66.7%), 142.9 samples/s, ETA 10s; "
        "last: b.SC2Replay",
        "sampled 3/3 replays (1 failed), 3,000/~4,500 samples (66.7%), 111.1 samples/s, "
        "ETA 14s; last: c.SC2Replay (failed) in 31s",
    ]


def test_terminal_progress_is_rewritten_in_place():
    lines, stream = _run(tty=True)
    assert lines == []
    shown = stream.getvalue()
    assert shown.startswith("\rscanned 1/4 files (25.0%)") and shown.endswith("in 31s\n")
    assert shown.count("\n") == 1 and shown.count("\r") == 8


def test_a_real_run_shows_files_and_samples_out_of_the_total(tmp_path, capsys):
    """Non-terminal mode (pytest's stderr is not a terminal), every update a
    line: the scan and the sampling show their totals; the summary is a table."""
    import beam_runner
    from conftest import PIPELINE_REPLAYS, REPLAYS, pipeline_argv, require_shared
    require_shared()
    replay = REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0]
    argv = pipeline_argv([str(replay)], tmp_path / "out", [
        "--direct_num_workers=1", "--direct_running_mode=in_memory", "--formats", "parquet",
        "--splits", "train=1.0", "--progress_every_s", "0"])
    assert beam_runner.main(argv) == 0
    printed = capsys.readouterr()
    progress = [line.split(" progress ", 1)[1] for line in printed.err.splitlines()
                if " progress " in line]
    assert progress[0] == "1 input files"
    assert progress[1].startswith("scanned 1/1 files (100.0%), ") and "files/s" in progress[1]
    assert progress[-1].startswith("sampled 1/1 replays, 944/~944 samples (100.0%), ")
    assert "samples/s" in progress[-1] and progress[-1].endswith(f"last: {replay.name} in "
                                                                 + progress[-1].rsplit(" ", 1)[1])
    table = printed.out.splitlines()
    header = table.index("splits:") + 1
    assert table[header].split() == ["split", "replays", "samples", "shards", "parquet"]
    assert table[header + 1].split() == ["train", "1", "944", "3", "944"]   # 400 a shard
