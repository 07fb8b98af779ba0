"""Opens one ``.SC2Replay`` file and decodes its parts with the right protocol.

A replay is an MPQ archive.  Its user-data header names the game build; the
build selects an s2protocol decoder module.  s2protocol bundles 93 of them and
lacks many builds (every 3.0 - 3.14 build, for example); for those we fall back
to the nearest bundled build at or below the replay's build (else the nearest
above), try it, and record that we did (``protocol_exact`` is False).

Blizzard's anonymized replay packs keep only ``replay.details.backup`` and
``replay.initData.backup`` (and no tracker events); :class:`ReplayArchive`
reads either name.

Every failure is raised as :class:`ReplayError` with a reason category from
:data:`ERROR_CATEGORIES` (both defined in :mod:`pipeline.replay.decoded`,
which the lobby shares), so callers can write an error record and go on.
Decoding is lazy and cached: the metadata scan reads the header, details and
``replay.gamemetadata.json`` only; events are decoded on first use, game
events with :mod:`pipeline.replay.game_event_decoder`.

The file is hostile until proven otherwise: members are read by
:class:`pipeline.replay.mpq.BoundedMPQ` (tables checked against the file,
nothing inflated past its declared size or the configured limits), header
numbers are range-checked (:func:`header_number`) and the metadata JSON is
parsed strictly (:func:`parse_metadata_json`).  ``MemoryError`` is never
taken for a decoder's failure: it reaches the process boundary, which
makes it a ``resource`` record (:mod:`pipeline.job.worker`).
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import os
import re
import struct
import threading
from typing import Any

from s2protocol import versions as s2_versions

from pipeline.replay import game_event_decoder, s2protocol_speedup
from pipeline.replay import lobby as lobby_lib
from pipeline.replay.limits import InflateLimits, max_events
from pipeline.replay.mpq import BoundedMPQ
# ERROR_CATEGORIES, ReplayError and as_text are this module's public names too.
from pipeline.replay.decoded import (ERROR_CATEGORIES, ReplayError, as_text,  # noqa: F401
                                     stable_repr)

# Bit-identical, ~1.5x faster bit reading for every s2protocol decode (see
# that module); game events go through the compiled decoder instead.
s2protocol_speedup.install()

def replay_id(data: bytes) -> str:
    """The replay id: SHA-256 of the file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def _bundled_builds() -> tuple[int, ...]:
    folder = os.path.dirname(s2_versions.__file__)
    builds = []
    for name in os.listdir(folder):
        m = re.fullmatch(r"protocol(\d+)\.py", name)
        if m:
            builds.append(int(m.group(1)))
    return tuple(sorted(builds))


_PROTOCOLS: dict[int, Any] = {}
_PROTOCOLS_LOCK = threading.Lock()


def protocol_module(build: int):
    """s2protocol's decoder module of a bundled build.

    Loads go through one lock: s2protocol imports its protocol modules with
    ``imp`` and returns ``sys.modules`` entries as they are, so a second
    thread (Beam runs bundles on several threads) could get a module that
    is still executing and fail with "partially initialized module".
    """
    module = _PROTOCOLS.get(build)
    if module is None:
        with _PROTOCOLS_LOCK:
            module = _PROTOCOLS.get(build)
            if module is None:
                module = _PROTOCOLS[build] = s2_versions.build(build)
    return module


def candidate_protocols(base_build: int) -> list[tuple[int, bool]]:
    """(build, exact) decoders to try for ``base_build``, best first."""
    builds = _bundled_builds()
    if base_build in builds:
        return [(base_build, True)]
    i = bisect.bisect_left(builds, base_build)
    below = list(reversed(builds[:i]))[:3]
    above = list(builds[i:])[:2]
    return [(b, False) for b in below + above]


def neighbour_protocols(build: int, count: int = 2) -> list[int]:
    """Up to ``count`` bundled builds on each side of ``build`` (not itself),
    nearest first: s2protocol's table for a build is sometimes wrong for
    some of the replays that carry it (base build 24944 covers 2.0.4 to
    2.0.8, whose game events changed in between)."""
    builds = [b for b in _bundled_builds() if b != build]
    i = bisect.bisect_left(builds, build)
    near = builds[max(0, i - count):i] + builds[i:i + count]
    return sorted(near, key=lambda b: abs(b - build))


def check_declared_size(data: bytes) -> None:
    """``ReplayError("truncated")`` if ``data`` (starting with an MPQ
    signature) ends before the archive its headers declare: the user-data
    header (``MPQ\\x1b``) names the offset of the MPQ header (``MPQ\\x1a``),
    whose ``archive_size`` counts the bytes from there."""
    offset = 0
    if data.startswith(b"MPQ\x1b"):
        if len(data) < 16:
            raise ReplayError("truncated", f"{len(data)} bytes: the MPQ user-data "
                                           "header is cut short")
        (offset,) = struct.unpack_from("<I", data, 8)
    needed = offset + 32                         # the MPQ header's fixed part
    if len(data) < needed:
        raise ReplayError("truncated", f"{len(data)} bytes: the MPQ header at offset "
                                       f"{offset} needs {needed}")
    if data[offset:offset + 4] != b"MPQ\x1a":
        return                                   # not ours to judge: the reader decides
    (archive_size,) = struct.unpack_from("<I", data, offset + 8)
    if len(data) < offset + archive_size:
        raise ReplayError("truncated", f"{len(data)} bytes; the MPQ archive declares "
                                       f"{offset + archive_size}")


#: Header numbers land in the index's int32 columns: larger ones are damage.
INT32_MAX = 2 ** 31 - 1


def header_number(value: Any, what: str) -> int:
    """A header field as an int in [0, 2^31): ``ReplayError("corrupt")``
    otherwise (a duration of 2^63 loops or a base build of 2^40 would pass
    every check and overflow the index at its final write)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT32_MAX:
        raise ReplayError("corrupt", f"replay header: {what} {value!r} outside "
                                     f"[0, {INT32_MAX}]")
    return value


#: The longest integer literal ``replay.gamemetadata.json`` may hold (real
#: ones are build numbers, MMRs and durations: 6 digits at most).
MAX_JSON_DIGITS = 20


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows")
    return value


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def parse_metadata_json(raw: bytes) -> Any:
    """``replay.gamemetadata.json``, parsed; ``ReplayError("corrupt")`` for
    anything but plain JSON of finite numbers: malformed text, nesting past
    the interpreter's recursion limit, ``NaN``/``Infinity``, numbers that
    overflow a float (``1e999``) or integers longer than
    :data:`MAX_JSON_DIGITS` digits."""
    try:
        return json.loads(raw.decode("utf-8", "replace"), parse_constant=_json_constant,
                          parse_float=_json_float, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError is a ValueError
        message = " ".join(str(exc).split())[:200]
        raise ReplayError("corrupt", f"gamemetadata.json: {type(exc).__name__}: "
                                     f"{message}") from exc


class ReplayArchive:
    """Lazy, cached access to the decoded parts of one replay.

    Members are read through :class:`pipeline.replay.mpq.BoundedMPQ` within
    ``inflate`` (default :class:`pipeline.replay.limits.InflateLimits`)."""

    def __init__(self, data: bytes, *, path: str = "", max_bytes: int | None = None,
                 inflate: InflateLimits | None = None):
        self.path = path
        self.size = len(data)
        if not data:
            raise ReplayError("empty", "file is empty")
        if max_bytes is not None and len(data) > max_bytes:
            raise ReplayError("too_large", f"{len(data)} bytes > limit {max_bytes}")
        self.replay_id = replay_id(data)
        #: The file's bytes (the headless game source sends them to the game).
        self.data = data
        if not data.startswith(b"MPQ"):
            raise ReplayError("not_mpq", "no MPQ signature")
        check_declared_size(data)
        # It has the MPQ signature and its declared size; whatever else is
        # wrong is a ReplayError from the bounded reader (corrupt, too_large).
        self._mpq = BoundedMPQ(data, inflate)
        try:
            content = self._mpq.header["user_data_header"]["content"]
            self.header = protocol_module(_bundled_builds()[-1]).decode_replay_header(content)
            version = self.header["m_version"]
            numbers = {k: version[k] for k in ("m_major", "m_minor", "m_revision", "m_build",
                                               "m_baseBuild")}
            numbers["m_elapsedGameLoops"] = self.header.get("m_elapsedGameLoops", 0)
        except MemoryError:
            raise
        except Exception as exc:  # s2protocol's decoders raise CorruptedError etc.
            raise ReplayError("unreadable_header", f"replay header: {exc!r}") from exc
        numbers = {k: header_number(v, k) for k, v in numbers.items()}   # range-checked
        self.version = "{m_major}.{m_minor}.{m_revision}.{m_build}".format(**numbers)
        self.base_build = numbers["m_baseBuild"]
        self.game_loops = numbers["m_elapsedGameLoops"]
        self.part_protocols: dict[str, int] = {}
        self.protocol_build, self.protocol_exact, self._details = self._choose_protocol()

    # ------------------------------------------------------------ raw files
    @functools.cached_property
    def files(self) -> frozenset[str]:
        names = self._mpq.files or []
        return frozenset(n.decode("utf-8", "replace") if isinstance(n, bytes) else n
                         for n in names)

    def read(self, name: str, *, required: bool = True) -> bytes | None:
        """Contents of an archive file (or its ``.backup`` twin)."""
        for candidate in (name, name + ".backup"):
            data = self._mpq.read_file(candidate)   # bounded; raises ReplayError
            if data is not None:
                return data
        if required:
            raise ReplayError("missing_part", f"archive has no {name}")
        return None

    # --------------------------------------------------------------- decoding
    def _choose_protocol(self):
        raw = self.read("replay.details")
        errors = []
        candidates = candidate_protocols(self.base_build)
        for build, exact in candidates:
            try:
                details = protocol_module(build).decode_replay_details(raw)
                players = details["m_playerList"]
                if players is None or not isinstance(players, list):
                    raise ValueError("no player list")
                return build, exact, details
            except MemoryError:
                raise
            except Exception as exc:  # any decoder failure means: try the next
                errors.append(f"{build}: {stable_repr(exc)}")
        if candidates and candidates[0][1]:
            # The build's own decoder fails: the file is damaged, not unsupported.
            raise ReplayError("corrupt", f"details do not decode with the exact protocol "
                              f"{self.base_build}: {errors[0]}")
        raise ReplayError("unsupported_build",
                          f"build {self.base_build}: no bundled protocol decodes the "
                          f"details ({'; '.join(errors[:3])})")

    @property
    def protocol(self):
        return protocol_module(self.protocol_build)

    @property
    def details(self) -> dict[str, Any]:
        return self._details

    def _decode(self, what: str, fn_name: str, *, required: bool = True):
        """Decodes one part; without an exact protocol, tries each candidate.

        Builds s2protocol lacks may need a different neighbour per part (the
        3.0 - 3.11 details decode with 32283, their game events only with
        51702), so the protocol that worked is recorded per part in
        :attr:`part_protocols`.  Event streams that the exact protocol
        cannot decode are tried with its neighbours too (2.0.8 replays carry
        base build 24944, whose table fails on their game events; 26490's
        works).  With a borrowed protocol, or a Wings of Liberty one, an
        event stream must also look sane (game loops in order, none far past
        the game's end).
        """
        raw = self.read(what, required=required)
        if raw is None:
            return None
        builds = [self.protocol_build]
        if not self.protocol_exact:
            builds += [b for b, _ in candidate_protocols(self.base_build)
                       if b != self.protocol_build]
        elif fn_name.endswith("events"):  # the exact table may be wrong: neighbours
            builds += neighbour_protocols(self.protocol_build)
        errors = []
        wings_of_liberty = False
        for build in builds:
            module = protocol_module(build)
            fn = getattr(module, fn_name, None)
            if fn is None:
                errors.append(f"{build}: no {fn_name}")
                continue
            # s2protocol's Wings of Liberty protocols (1.x, early 2.0) cannot
            # decode game events; our decoder can (see game_event_decoder),
            # checked like a borrowed protocol.
            wol = (fn_name == "decode_replay_game_events"
                   and getattr(module, "replay_userid_typeid", 0) is None)
            wings_of_liberty = wings_of_liberty or wol
            most = max_events(self.game_loops)
            try:
                if fn_name == "decode_replay_game_events":  # same output, ~3x faster
                    result = game_event_decoder.decode_game_events(module, raw, most)
                else:
                    result = fn(raw)
                if fn_name.endswith("events"):
                    result = game_event_decoder.bounded_list(result, most)
                    if wol or build != self.protocol_build or not self.protocol_exact:
                        self._check_event_loops(result)
            except game_event_decoder.TooManyEvents as exc:   # a flood, whatever the protocol
                raise ReplayError("corrupt", f"decoding {what}: {exc} for a game of "
                                             f"{self.game_loops} loops") from exc
            except MemoryError:
                raise
            except Exception as exc:  # s2protocol raises TruncatedError, CorruptedError...
                errors.append(f"{build}: {stable_repr(exc)}")
                continue
            self.part_protocols[what] = build
            return result
        if all(e.endswith(f"no {fn_name}") for e in errors):
            if required:
                raise ReplayError("unsupported_build",
                                  f"s2protocol's protocol {self.protocol_build} has no "
                                  f"working decoder for {what} (build {self.base_build})")
            return None
        category = ("corrupt" if self.protocol_exact and not wings_of_liberty
                    else "unsupported_build")
        raise ReplayError(category, f"decoding {what}: " + "; ".join(errors[:3]))

    def _check_event_loops(self, events: list[dict[str, Any]]) -> None:
        last = 0
        limit = self.game_loops + 10_000
        for event in events:
            loop = event.get("_gameloop", 0)
            if loop < last or loop > limit:
                raise ValueError(f"event at loop {loop} after {last} (game has "
                                 f"{self.game_loops} loops): wrong protocol or damage")
            last = loop

    @functools.cached_property
    def init_data(self) -> dict[str, Any] | None:
        return self._decode("replay.initData", "decode_replay_initdata", required=False)

    @functools.cached_property
    def lobby(self) -> lobby_lib.InitData | None:
        """The lobby and game description (:func:`pipeline.replay.lobby.parse_init_data`),
        decoded once: the index, the action stream and the observation sources
        all ask for it, and it is the slowest part of a metadata scan."""
        return lobby_lib.parse_init_data(self)

    @functools.cached_property
    def metadata(self) -> dict[str, Any] | None:
        """``replay.gamemetadata.json`` (builds from 2.0.4 on), or None."""
        raw = self.read("replay.gamemetadata.json", required=False)
        if raw is None:
            return None
        return parse_metadata_json(raw)

    @property
    def has_tracker_events(self) -> bool:
        return "replay.tracker.events" in self.files and hasattr(
            self.protocol, "decode_replay_tracker_events")

    @functools.cached_property
    def game_events(self) -> list[dict[str, Any]]:
        return self._decode("replay.game.events", "decode_replay_game_events")

    @functools.cached_property
    def tracker_events(self) -> list[dict[str, Any]]:
        """Tracker events, or ``[]`` for replays without them."""
        if not self.has_tracker_events:
            return []
        return self._decode("replay.tracker.events", "decode_replay_tracker_events",
                            required=False) or []

    @functools.cached_property
    def attribute_events(self) -> dict[str, Any] | None:
        """The lobby attributes part, decoded (None when absent); read only by
        tests/test_fuzz_replays.py, which decodes every part of a damaged file."""
        return self._decode("replay.attributes.events", "decode_replay_attributes_events",
                            required=False)
