"""One headless StarCraft II process per worker, kept alive across replays.

Starting the game costs seconds, so a worker keeps one process and its pysc2
``RemoteController`` for many replays.  The game is also the least reliable
part of the pipeline: it crashes, hangs, or answers with an error on some
replays.  :class:`GameProcess` owns that life cycle:

* the process is started through pysc2's own Linux run config
  (``run_configs.platforms.Linux`` -> ``sc_process.StarcraftProcess``), i.e.
  ``$SC2PATH/Versions/Base<build>/SC2_x64 -listen 127.0.0.1 -port ...
  -dataVersion ...``;
* it is restarted when a replay needs another binary or data version, after
  ``max_replays_per_process`` replays, and after any connection error,
  protocol error, websocket timeout or launch failure;
* the game is killed with the worker process that started it (Linux
  ``PR_SET_PDEATHSIG``), so a worker killed on a timeout leaves no orphan;
* a replay whose work fails is retried on a fresh process up to
  ``max_attempts`` times, then ends as ``SourceError`` carrying the game's
  message, and the worker goes on with the next replay.

Which failures are retried is decided here once (:data:`RETRYABLE`);
``SourceError`` raised by the work itself (bad map, unknown player...) is the
replay's fault and is never retried.
"""
from __future__ import annotations

import collections
import copy
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import time
from typing import Callable, TypeVar

from pipeline.sources.interface import SourceError
from pipeline.pysc2_compat import apply as _apply_pysc2_compat
from pipeline.sources.sc2.versions import VersionChoice, default_sc2path, require_installed

_apply_pysc2_compat()

import websocket  # noqa: E402  (websocket-client, pysc2's client library)
from pysc2.lib import protocol, remote_controller, sc_process  # noqa: E402
from pysc2.run_configs import platforms  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Failures after which the process is thrown away and the replay retried.
RETRYABLE: tuple[type[BaseException], ...] = (
    protocol.ConnectionError,
    protocol.ProtocolError,
    remote_controller.ConnectError,
    remote_controller.RequestError,
    sc_process.SC2LaunchError,
    websocket.WebSocketException,
    socket.timeout,
    ConnectionError,
)


def failure_category(exc: BaseException) -> str:
    """The error-record category for a game failure."""
    text = str(exc).lower()
    if isinstance(exc, (sc_process.SC2LaunchError, remote_controller.ConnectError)):
        return "game_launch_failed"
    if "timed out" in text or isinstance(exc, (socket.timeout,
                                               websocket.WebSocketTimeoutException)):
        return "game_timeout"
    if isinstance(exc, (protocol.ProtocolError, remote_controller.RequestError)):
        return "game_protocol_error"
    return "game_crashed"


def _die_with_parent() -> None:
    """In the game's child process: be killed when the worker that started it
    dies (Linux ``PR_SET_PDEATHSIG``), so a worker killed on a timeout leaves
    no orphaned game behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _StarcraftProcess(sc_process.StarcraftProcess):
    """pysc2's process launcher, with the game tied to its parent's life."""

    def _launch(self, run_config, args, **kwargs):
        del kwargs
        try:
            return subprocess.Popen(args, cwd=run_config.cwd, env=run_config.env,
                                    preexec_fn=_die_with_parent)
        except OSError as exc:
            raise sc_process.SC2LaunchError(f"Failed to launch: {args}: {exc}") from exc


class _LocalStart(platforms.LocalBase):
    """``LocalBase.start`` (same checks, same paths) with :class:`_StarcraftProcess`."""

    def start(self, want_rgb=True, **kwargs):
        del want_rgb
        if not os.path.isdir(self.data_dir):
            raise sc_process.SC2LaunchError(
                f"Expected to find StarCraft II installed at '{self.data_dir}'.")
        exec_path = os.path.join(self.data_dir, "Versions/Base%05d" % self.version.build_version,
                                 self._exec_name)
        if not os.path.exists(exec_path):
            raise sc_process.SC2LaunchError(f"No SC2 binary found at: {exec_path}")
        return _StarcraftProcess(self, exec_path=exec_path, version=self.version, **kwargs)


class _LinuxAt(platforms.Linux, _LocalStart):
    """pysc2's Linux run config for an explicit SC2PATH.

    ``platforms.Linux`` reads ``$SC2PATH`` from the environment when it is
    built; this does the same with a path given as an argument.  Its
    ``start()`` is pysc2's Linux one (GL library choice, extra arguments),
    which hands over to :class:`_LocalStart` (method resolution order:
    ``Linux`` -> ``_LocalStart`` -> ``LocalBase``).
    """

    def __init__(self, sc2path: str, version):  # pylint: disable=super-init-not-called
        base_dir = os.path.expanduser(sc2path)
        env = copy.deepcopy(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [
            os.environ.get("LD_LIBRARY_PATH"), os.path.join(base_dir, "Libs/")]))
        platforms.LocalBase.__init__(self, base_dir, "SC2_x64", version=version, env=env)


@dataclasses.dataclass
class GameStats:
    launches: int = 0
    restarts: int = 0
    replays_ok: int = 0
    replays_failed: int = 0
    attempts_failed: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["attempts_failed"] = dict(self.attempts_failed)
        return out


class GameProcess:
    """A reusable, self-healing game process for one worker.

    Args:
      sc2path: the game's install folder (default ``$SC2PATH`` or
        ``~/StarCraftII``).
      timeout_s: pysc2's timeout for connecting and for each request.
      max_replays_per_process: restart the game after this many replays.
      max_attempts: tries per replay before it becomes an error.
      want_rgb: ask pysc2 for RGB rendering (the pipeline needs none).
    """

    def __init__(self, sc2path: str | None = None, *, timeout_s: int = 120,
                 max_replays_per_process: int = 100, max_attempts: int = 3,
                 want_rgb: bool = False):
        if max_attempts < 1 or max_replays_per_process < 1:
            raise ValueError("max_attempts and max_replays_per_process must be >= 1")
        self.sc2path = os.path.expanduser(sc2path) if sc2path else default_sc2path()
        self.timeout_s = int(max(timeout_s, 1))
        self.max_replays_per_process = max_replays_per_process
        self.max_attempts = max_attempts
        self.want_rgb = want_rgb
        self.stats = GameStats()
        self._proc = None
        self._key: tuple | None = None
        self._run_config = None
        self._replays_on_process = 0

    # ------------------------------------------------------------ life cycle
    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Quits the game (if running) and cleans up its temp folder."""
        proc, self._proc, self._key = self._proc, None, None
        if proc is not None:
            try:
                proc.close()
            except (OSError, *RETRYABLE) as exc:  # already dead: nothing to save
                log.warning("closing the game failed: %s", exc)

    def __enter__(self) -> "GameProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def ensure_running(self, choice: VersionChoice):
        """Starts (or restarts) the game for ``choice``; returns (controller, run_config)."""
        key = (choice.base_build, choice.data_version)
        if self._proc is not None and (
                key != self._key or self._replays_on_process >= self.max_replays_per_process):
            self.close()
            self.stats.restarts += 1
        if self._proc is None:
            require_installed(choice, self.sc2path)
            run_config = _LinuxAt(self.sc2path, choice.pysc2_version())
            self.stats.launches += 1
            start = time.monotonic()
            self._proc = run_config.start(want_rgb=self.want_rgb,
                                          timeout_seconds=self.timeout_s)
            log.info("started SC2 %s (Base%05d) in %.1f s", choice.game_version,
                     choice.base_build, time.monotonic() - start)
            self._run_config = run_config
            self._key = key
            self._replays_on_process = 0
        return self._proc.controller, self._run_config

    # ------------------------------------------------------------------ work
    def run(self, choice: VersionChoice,
            work: Callable[[object, object], T], *, label: str = "") -> T:
        """Runs ``work(controller, run_config)`` for one replay, with recovery.

        Raises:
          SourceError: ``version_not_installed`` at once; a ``game_*`` category
            (see :func:`failure_category`) once ``max_attempts`` tries failed;
            any ``SourceError`` raised by ``work`` as is.
        """
        last: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                controller, run_config = self.ensure_running(choice)
                result = work(controller, run_config)
            except SourceError:
                raise
            except RETRYABLE as exc:
                last = exc
                self.stats.attempts_failed[failure_category(exc)] += 1
                log.warning("replay %s: attempt %d/%d failed (%s): %s", label, attempt,
                            self.max_attempts, failure_category(exc), exc)
                self.close()
                self.stats.restarts += 1
                continue
            self._replays_on_process += 1
            self.stats.replays_ok += 1
            return result
        self.stats.replays_failed += 1
        assert last is not None
        raise SourceError(failure_category(last),
                          f"replay {label} failed {self.max_attempts} times; "
                          f"last: {type(last).__name__}: {last}")
