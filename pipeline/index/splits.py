"""Assigns each replay to a dataset split by a hash of its replay id.

The split is a function of the replay id alone, so both players and every
game loop of a replay land in the same split (no leakage of one game between
train and test), and reruns -- on any machine, with any input order or
worker count -- agree.  The same file listed twice or under two names has one
replay id (the SHA-256 of its bytes), hence one split.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

from schemas.sample import SPLITS

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.9, "validation": 0.05, "test": 0.05}

# Salt so that the split hash is independent of the replay id's own ordering.
_SALT = b"sc2-replay-split:"


class SplitConfigError(ValueError):
    """The split specification is malformed."""


def parse_splits(text: str) -> dict[str, float]:
    """``"train=0.9,validation=0.05,test=0.05"`` to a fraction per split.

    Every name must be one of :data:`schemas.sample.SPLITS`; fractions must be
    non-negative and sum to 1 (within 1e-6).  Splits not named get 0.
    """
    fractions = {name: 0.0 for name in SPLITS}
    if not text.strip():
        raise SplitConfigError("empty split specification")
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise SplitConfigError(f"bad split entry {part!r}; expected NAME=FRACTION "
                                   f"with NAME in {SPLITS}")
        try:
            fraction = float(value)
        except ValueError as exc:
            raise SplitConfigError(f"bad fraction in {part!r}") from exc
        if fraction < 0:
            raise SplitConfigError(f"negative fraction in {part!r}")
        fractions[name] = fraction
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise SplitConfigError(f"split fractions sum to {total}, not 1")
    return fractions


def split_point(replay_id: str) -> float:
    """A uniform number in [0, 1) derived from the replay id."""
    digest = hashlib.sha256(_SALT + replay_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_split(replay_id: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> str:
    """The split of a replay: cumulative fractions in :data:`SPLITS` order."""
    point = split_point(replay_id)
    cumulative = 0.0
    last = None
    for name in SPLITS:
        fraction = fractions.get(name, 0.0)
        if fraction <= 0:
            continue
        cumulative += fraction
        last = name
        if point < cumulative:
            return name
    if last is None:
        raise SplitConfigError("no split has a positive fraction")
    return last  # rounding: point >= sum of fractions (within 1e-6)
