"""The bounds on what one replay may cost: bytes, inflated bytes, memory, time.

Replays are untrusted input: a 72 KB file can hold a bzip2 stream that
inflates to 16 GiB, a valid game-event stream of 200 million events, or MPQ
tables that claim millions of entries.  Every process that reads replay
content works under these limits, and a replay that breaches one becomes an
error record (``too_large``, ``corrupt``, ``resource`` or ``timeout``), never
a stopped run.  They are defined here once, with their defaults, and shared
by the pipeline (``beam_runner.py`` through
:class:`pipeline.job.transforms.RunConfig`, which carries them to every
worker, local, Dask or Dataflow), ``pipeline.index.scan_cli`` and
``trainers.predict``; docs/pipeline.md ("Limits") gives the corpus
measurements behind each default.
"""
from __future__ import annotations

import argparse
import dataclasses

#: Larger files are ``too_large``, unread (the size is checked before reading).
DEFAULT_MAX_BYTES = 64 * 2 ** 20
#: No archive member is inflated past this (``too_large``).  The largest
#: member of the 2,009 shared replays is 1.37 MB (game events of a 32-minute
#: game); the densest streams hold ~41 bytes a game loop, 6.6 MB over the
#: default two-hour ``--max_game_loops``: 16 MiB is 12x the largest real
#: member and 2.4x that two-hour extrapolation.
DEFAULT_MAX_MEMBER_BYTES = 16 * 2 ** 20
#: No archive is inflated past this in total, every member counted
#: (``too_large``): the largest real total is 2.16 MB.
DEFAULT_MAX_INFLATED_BYTES = 32 * 2 ** 20
#: A process reading replay content is killed past this resident size
#: (``resource``).  The sampling child peaks at 1.41 GB on the longest and
#: largest games of the shared corpus (about 0.15 GB plus up to 75 KB a
#: sample held, at 64 px); a two-hour game, the default length limit, would
#: need ~3.2 GB.
DEFAULT_MEMORY_LIMIT_MB = 4096
#: The metadata scan of one file, in its child process (``timeout``): a
#: real replay scans in well under a second.
DEFAULT_SCAN_TIMEOUT_S = 60.0
#: Decoding and sampling one replay (``timeout``); 0 runs it in-process,
#: without a time or memory limit.
DEFAULT_DECODE_TIMEOUT_S = 600.0
#: MPQ hash and block tables larger than this are ``corrupt`` (before they
#: are read or decrypted): real replays have 32 and 18 entries at most.
MAX_TABLE_ENTRIES = 4096


#: An event stream may hold at most this many events a game loop, plus
#: :data:`EVENTS_MARGIN` (``corrupt`` past it, counted while decoding): the
#: 150 shared replays with the most event bytes a loop hold at most 4.6
#: game events and 0.8 tracker events a loop.  A flood of tiny valid events stops here long before
#: it reaches the memory limit.
MAX_EVENTS_PER_LOOP = 64
EVENTS_MARGIN = 100_000


def max_events(game_loops: int) -> int:
    """The most events one stream of a game of ``game_loops`` loops may hold."""
    return MAX_EVENTS_PER_LOOP * max(0, game_loops) + EVENTS_MARGIN


@dataclasses.dataclass(frozen=True)
class InflateLimits:
    """How far the members of one archive may be inflated."""
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES


@dataclasses.dataclass(frozen=True)
class Limits:
    """Every bound on one replay's cost; plain data, pickled to workers and
    their child processes."""
    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB
    scan_timeout_s: float = DEFAULT_SCAN_TIMEOUT_S
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S

    @property
    def inflate(self) -> InflateLimits:
        return InflateLimits(self.max_member_bytes, self.max_inflated_bytes)

    @property
    def memory_bytes(self) -> int:
        """The resident-size limit in bytes; 0 means none."""
        return max(0, int(self.memory_limit_mb)) * 2 ** 20

    def check(self) -> None:
        """``ValueError`` naming the flag of a limit that cannot work."""
        for flag, value in (("--max_member_bytes", self.max_member_bytes),
                            ("--max_inflated_bytes", self.max_inflated_bytes)):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1")
        for flag, value in (("--memory_limit_mb", self.memory_limit_mb),
                            ("--scan_timeout_s", self.scan_timeout_s),
                            ("--decode_timeout_s", self.decode_timeout_s)):
            if value < 0:
                raise ValueError(f"{flag} must be >= 0 (0: no limit)")


def add_arguments(parser: argparse.ArgumentParser, defaults: Limits = Limits(), *,
                  decode: bool = True) -> None:
    """The limit flags, shared by every command that reads replays
    (``decode``: with ``--decode_timeout_s``, for commands that sample)."""
    parser.add_argument("--max_bytes", type=int, default=defaults.max_bytes,
                        help="larger replay files become 'too_large' errors, unread "
                             "(default %(default)s)")
    parser.add_argument("--max_member_bytes", type=int, default=defaults.max_member_bytes,
                        help="no archive member is inflated past this: 'too_large' "
                             "(default %(default)s)")
    parser.add_argument("--max_inflated_bytes", type=int,
                        default=defaults.max_inflated_bytes,
                        help="no archive is inflated past this in total: 'too_large' "
                             "(default %(default)s)")
    parser.add_argument("--memory_limit_mb", type=int, default=defaults.memory_limit_mb,
                        help="resident memory of a process reading replay content; over "
                             "it the process is killed and the replay is a 'resource' "
                             "error (default %(default)s; 0 = no limit)")
    parser.add_argument("--scan_timeout_s", type=float, default=defaults.scan_timeout_s,
                        help="per-file limit of the metadata scan, in a child process: "
                             "'timeout' (default %(default)s; 0 = no limit, in-process)")
    if not decode:
        return
    parser.add_argument("--decode_timeout_s", type=float, default=defaults.decode_timeout_s,
                        help="per-replay limit for decoding and sampling, enforced by "
                             "killing the sampling child process: 'timeout' (default "
                             "%(default)s; 0 = no limit, in-process)")


def from_args(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` of parsed :func:`add_arguments` flags (checked)."""
    limits = Limits(max_bytes=args.max_bytes, max_member_bytes=args.max_member_bytes,
                    max_inflated_bytes=args.max_inflated_bytes,
                    memory_limit_mb=args.memory_limit_mb,
                    scan_timeout_s=args.scan_timeout_s,
                    decode_timeout_s=getattr(args, "decode_timeout_s",
                                             DEFAULT_DECODE_TIMEOUT_S))
    limits.check()
    return limits
