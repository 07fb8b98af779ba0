"""Shared test fixtures.

``SHARED`` is the project's shared data folder (``../shared`` from the repo
root); tests that need it skip cleanly when it is absent.

``pipeline_run`` (session scope) runs the real Beam pipeline once, with the
engine-free source, on a handful of short real replays plus a duplicate and
synthetic bad inputs; the Beam, writer and TFDS tests share its output.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REPLAYS = SHARED / "replays"
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:          # the test helpers: support/
    sys.path.insert(0, str(TESTS))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: name -> (path under replays/, game loops, expected split with PIPELINE_SPLITS)
PIPELINE_REPLAYS = {
    "dream_spirit": ("python-sc2/20220224 - GAME 1 - Dream vs Spirit - T vs T - "
                     "Curious Minds LE.SC2Replay", 3775, "train"),
    "serral_dark": ("python-sc2/20220224 - GAME 1 - Serral vs Dark - Z vs Z - "
                    "2000 Atmospheres LE.SC2Replay", 4011, "validation"),
    "maru_byun": ("python-sc2/20220225 - GAME 2 - Maru vs ByuN - T vs T - "
                  "Hardwire LE.SC2Replay", 3941, "test"),
}
FILTERED_REPLAY = ("sc2reader/4.3.0.64469/1.SC2Replay", "not_1v1")     # a game vs the AI
TOO_LONG_REPLAY = ("python-sc2/20220223 - GAME 1 - Astrea vs SKillous - P vs P - "
                   "Curious Minds LE.SC2Replay")                     # 5210 loops > 5000
PIPELINE_SPLITS = "train=0.15,validation=0.15,test=0.7"
MAX_BYTES = 100_000
MAX_SAMPLES_PER_SHARD = 400


def require_shared() -> None:
    if not REPLAYS.is_dir():
        pytest.skip(f"shared replays not found at {REPLAYS}")


def expected_samples(game_loops: int, step_mul: int = 8, players: int = 2) -> int:
    return players * math.ceil(game_loops / step_mul)


@dataclasses.dataclass
class PipelineRun:
    output: Path
    inputs: list[str]                 # every input file path
    bad: dict[str, str]               # bad file path -> expected category
    duplicate: str                    # path of the copy of dream_spirit
    argv: list[str]
    manifest: dict


def pipeline_argv(inputs: list[str], output: Path, extra: list[str]) -> list[str]:
    return (["--replays", *inputs, "--out", str(output), "--engine", "events",
             "--min_mmr", "0", "--max_bytes", str(MAX_BYTES), "--max_game_loops", "5000",
             "--splits", PIPELINE_SPLITS,
             "--max_samples_per_shard", str(MAX_SAMPLES_PER_SHARD),
             "--decode_timeout_s", "120"] + extra)


@pytest.fixture(scope="session")
def pipeline_inputs(tmp_path_factory):
    require_shared()
    from support import bad_replays
    root = tmp_path_factory.mktemp("pipeline_inputs")
    real = [str(REPLAYS / rel) for rel, _, _ in PIPELINE_REPLAYS.values()]
    real += [str(REPLAYS / FILTERED_REPLAY[0]), str(REPLAYS / TOO_LONG_REPLAY)]
    dup_dir = root / "copies"
    dup_dir.mkdir()
    duplicate = str(dup_dir / "same game, other name.SC2Replay")
    shutil.copyfile(real[0], duplicate)
    maru = (REPLAYS / PIPELINE_REPLAYS["maru_byun"][0]).read_bytes()
    bad_dir = root / "bad"
    bad = {str(bad_dir / name): category for name, category in
           bad_replays.write_bad_inputs(str(bad_dir), maru, MAX_BYTES).items()}
    return real, duplicate, bad, str(bad_dir)


@pytest.fixture(scope="session")
def pipeline_run(pipeline_inputs, tmp_path_factory) -> PipelineRun:
    """One in-process pipeline run shared by the Beam, writer and TFDS tests."""
    import beam_runner
    real, duplicate, bad, bad_dir = pipeline_inputs
    output = tmp_path_factory.mktemp("pipeline") / "out"
    # The bad inputs are given as a directory (recursive expansion), the
    # duplicate by name, and one real file twice (the same path twice).
    patterns = real + [real[0], duplicate, bad_dir]
    argv = pipeline_argv(patterns, output,
                         ["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    manifest = beam_runner.run(argv)
    inputs = sorted(set(real + [duplicate] + list(bad)))
    return PipelineRun(output, inputs, bad, duplicate, argv, manifest)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """The trainer tests' tiny synthetic shards (``support.trainer_synthetic``,
    16x16): (data dir, samples by split).  Shared: tests read it, never
    write into it."""
    from schemas.sample import SampleSchema
    from support.trainer_synthetic import write_synthetic
    out = tmp_path_factory.mktemp("synthetic_data")
    return out, write_synthetic(out, SampleSchema(16, 16))
