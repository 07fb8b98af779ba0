"""``python -m pipeline.index.scan_cli``: what does a pile of replays hold?

Scans every replay named by ``--replays`` (files, directories, globs, any
Beam filesystem) reading only metadata, in parallel over local cores -- each
file in a child process under the limits of :mod:`pipeline.replay.limits`
(``--memory_limit_mb``, ``--scan_timeout_s``, ``--max_member_bytes``...), so
that no file stops the scan -- and writes:

* ``OUT/index/replays.parquet`` and ``OUT/index/players.parquet``
  (every readable replay, with the filter verdict in ``status``);
* ``OUT/errors/errors.parquet`` (every file that could not be used, with
  a reason category);

then prints a summary: counts by version, game type, status and error
category, and MMR / APM / length percentiles of the kept replays.
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import sys
import threading
import time
from typing import Any, Iterable, Sequence, TextIO

from pipeline import cli_flags
from pipeline.index import filters, scan
from pipeline.progress import StatusLine, eta_text, share_text
from pipeline.replay import limits as limits_lib
from pipeline.replay.bounded_process import JobFailure, TimedWorker
from pipeline.replay import storage
from pipeline.text import terminal_safe


class _BoundedScanner:
    """Scans files in child processes, one per calling thread, each under
    the scan's time limit and the memory limit; a breach, a crash or a bug
    is that file's error record (stage ``scan``)."""

    def __init__(self, config: filters.FilterConfig, limits: limits_lib.Limits):
        self.config = config
        self.limits = limits
        self._local = threading.local()
        self._workers: list[TimedWorker] = []
        self._lock = threading.Lock()

    def __call__(self, path: str) -> scan.ScanResult:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = TimedWorker(self.limits.scan_timeout_s,
                                                      self.limits.memory_limit_mb)
            with self._lock:
                self._workers.append(worker)
        outcome = worker.run(scan.ScanJob(path, self.config, self.limits.max_bytes,
                                          self.limits.inflate))
        if isinstance(outcome, JobFailure):
            return scan.ScanResult(None, [], scan.error_row(path, "", "scan", outcome.category,
                                                            outcome.message))
        return outcome

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


def scan_corpus(paths: Sequence[str], config: filters.FilterConfig, *,
                max_bytes: int | None = None, workers: int = 1,
                progress: TextIO | None = None, every: int = 50,
                limits: limits_lib.Limits | None = None,
                ) -> tuple[list[dict], list[dict], list[dict]]:
    """(replay rows, player rows, error rows) of ``paths``, in input order.

    Every file ends as a replay row or an error row.  A file whose bytes equal
    an earlier one's (same replay id) gets a replay row with status
    "duplicate" and no player rows, so it is never processed twice.
    ``limits`` (default: the defaults, with ``max_bytes``) bound each file.
    """
    if limits is None:
        limits = limits_lib.Limits(max_bytes=max_bytes)
    jobs = list(paths)
    replays: list[dict] = []
    players: list[dict] = []
    errors: list[dict] = []
    seen: set[str] = set()
    start = time.perf_counter()
    # in place on a terminal, a line every ``every`` files elsewhere
    status = (StatusLine(lambda text: print(text, file=progress, flush=True), stream=progress)
              if progress else None)

    def consume(results: Iterable[scan.ScanResult]) -> None:
        for i, result in enumerate(results, 1):
            if result.error is not None:
                errors.append(result.error)
            elif result.replay["replay_id"] in seen:
                replays.append(dict(result.replay, status=scan.DUPLICATE_STATUS))
            else:
                seen.add(result.replay["replay_id"])
                replays.append(result.replay)
                players.extend(result.players)
            if status and (i % every == 0 or i == len(jobs)):
                elapsed = max(time.perf_counter() - start, 1e-9)
                line = (f"scanned {share_text(i, len(jobs), 'files')}, {i / elapsed:.1f} "
                        f"files/s{eta_text(i, len(jobs), elapsed)}, {len(errors)} errors")
                if i == len(jobs):
                    status.finish(line)
                else:
                    status.update(line, force=True)

    scanner = _BoundedScanner(config, limits)
    try:
        if workers <= 1:
            consume(map(scanner, jobs))
        else:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                consume(pool.map(scanner, jobs))
    finally:
        scanner.close()
    return replays, players, errors


def _percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)

    def q(f: float) -> float:
        return values[min(len(values) - 1, int(round(f * (len(values) - 1))))]

    return (f"n={len(values)} min={values[0]:.0f} p10={q(.1):.0f} p50={q(.5):.0f} "
            f"p90={q(.9):.0f} max={values[-1]:.0f}")


def summary(replays: Sequence[dict], players: Sequence[dict],
            errors: Sequence[dict]) -> str:
    """The human-readable report the command prints."""
    lines = [f"files: {len(replays) + len(errors)}  replays indexed: {len(replays)}  "
             f"errors: {len(errors)}"]

    def counts(title: str, values: Iterable[Any]) -> None:
        c = collections.Counter(values)
        lines.append(f"{title}:")
        for key, n in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            lines.append(f"  {key!s:<28} {n}")

    counts("by status (ok or filter reason)", (r["status"] for r in replays))
    counts("by game type", (r["game_type"] for r in replays))
    counts("by version (major.minor)",
           (".".join(r["version"].split(".")[:2]) for r in replays))
    inexact = sorted({r["base_build"] for r in replays if not r["protocol_exact"]})
    lines.append(f"builds without an exact s2protocol decoder ({len(inexact)}): "
                 + (", ".join(map(str, inexact)) or "none"))
    counts("errors by category", (e["category"] for e in errors))
    kept_rows = [r for r in replays if r["status"] == "ok"]
    kept = {r["replay_id"] for r in kept_rows}
    kept_players = [p for p in players if p["replay_id"] in kept and p["control"] == "human"]
    lines.append(f"kept replays ({len(kept_rows)}):")
    lines.append("  game loops: " + _percentiles([r["game_loops"] for r in kept_rows]))
    lines.append("  MMR (known): " + _percentiles([p["mmr"] for p in kept_players
                                                  if p["mmr"] >= 0]))
    lines.append("  APM (known): " + _percentiles([p["apm"] for p in kept_players
                                                  if p["apm"] >= 0]))
    lines.append("  with tracker events: "
                 f"{sum(1 for r in kept_rows if r['has_tracker_events'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_flags.Parser(
        prog="sc2-scan",
        description="Index a replay corpus (metadata only) and report what it holds.")
    parser.add_argument("--replays", nargs="+", required=True,
                        help="replay files, directories (recursive) or globs; "
                             "gs:// and other Beam filesystems work too")
    parser.add_argument("--out", required=True,
                        help="directory to write (index/ and errors/ are written inside)")
    limits_lib.add_arguments(parser, decode=False)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel processes (default: all cores, here %(default)s)")
    parser.add_argument("--progress_every", type=int, default=100,
                        help="print a progress line every N files (default: %(default)s)")
    filters.add_filter_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = filters.config_from_args(args)
        limits = limits_lib.from_args(args)
        paths = storage.expand_inputs(args.replays)
    except ValueError as exc:  # NoReplaysMatchedError, bad matchup / race, a bad limit
        parser.error(str(exc))
    print(f"scanning {len(paths)} files with {args.workers} worker(s)", file=sys.stderr)
    start = time.perf_counter()
    replays, players, errors = scan_corpus(
        paths, config, workers=args.workers, progress=sys.stderr,
        every=max(1, args.progress_every), limits=limits)
    elapsed = time.perf_counter() - start
    out = args.out.rstrip("/")
    written = scan.write_index(replays, players, out + "/index")
    written.append(scan.write_errors(errors, out + "/errors"))
    print(summary(replays, players, errors))
    print(f"scan time: {elapsed:.1f} s ({len(paths) / max(elapsed, 1e-9):.0f} files/s)")
    for path in written:
        print(f"wrote {terminal_safe(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
