"""Observations from the real game: SC2LE's procedure, through pysc2.

For each replay the headless game is started (``pipeline.sources.sc2.game_process``) with
the binary and data version the replay needs (``pipeline.sources.sc2.versions``); the
replay is replayed once per requested player (``observed_player_id``, fog of
war on, feature layers at the schema's resolutions, camera width 24), and
pysc2's ``features.Features`` turns the game's answers into the agent's view:
``transform_obs`` for the feature layers and player vector at each window
start, ``available_actions`` for the mask, ``reverse_action`` for the targets.

Only the loops the sampling rule needs are observed: every window start and
every loop where the player acted, both known beforehand from the replay's own
input stream (``pipeline.actions.player_inputs``; ``pipeline.sampling.rule.observed_loops``).
The controller steps by the gap between them, so the mask is the exact union
over those loops without rendering all eight loops of a window.

Targets are the game's own report of what the player did.  The game reports
an action in the first observation *after* the loop it was issued at; since
every loop where the player acted is observed, actions reported at observed
loop ``n`` were issued at the previous observed loop ``p`` (``p <= loop < n``,
always inside ``p``'s window, because every window start is observed too), and
are attributed to ``p``.  The game's automatic camera placement at game start
(the replay stream marks it ``automatic``) is dropped.  The replay file's own
stream is cross-checked against the game's, window by window, and the
disagreements are counted in :attr:`SC2ObservationSource.last_stats`, as are
abilities pysc2 does not know (skipped, never fatal).

The value label is the game's own result for the player (``replay_info``).
"""
from __future__ import annotations

import collections
import contextlib
import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline.sources.sc2.game_process import GameProcess
from pipeline.index.player_context import PlayerContext
from pipeline.sources.interface import SourceError
from pipeline.pysc2_compat import pysc2_modules
from pipeline.replay.archive import ReplayArchive
from pipeline.actions.action import Action
from pipeline.actions.player_inputs import player_streams
from pipeline.sampling.rule import SamplingStats, observed_loops, sample_windows, window_starts
from pipeline.sampling.assembly import build_samples
from pipeline.sources.sc2.versions import version_for_archive
from schemas import layers
from schemas.sample import SampleSchema

_pysc2 = pysc2_modules()
features = _pysc2.features
actions = _pysc2.actions
from pysc2.lib import remote_controller  # noqa: E402
from s2clientprotocol import common_pb2, sc2api_pb2 as sc_pb  # noqa: E402

log = logging.getLogger(__name__)

_RESULTS = {sc_pb.Victory: "win", sc_pb.Defeat: "loss", sc_pb.Tie: "tie",
            sc_pb.Undecided: "undecided"}
_SPATIAL = {a.name for a in layers.ARGUMENT_TYPES if a.spatial}
_MOVE_CAMERA = int(actions.FUNCTIONS.move_camera.id)

ActionStreams = Callable[..., Mapping[int, Any]]


def _default_action_streams(archive: ReplayArchive, **kwargs) -> Mapping[int, Any]:
    return player_streams(archive, **kwargs)


def _ability_of(action) -> int:
    """The ability id an ``sc_pb.Action`` refers to, 0 if none."""
    fl = action.action_feature_layer
    if fl.HasField("unit_command"):
        return int(fl.unit_command.ability_id)
    if action.action_ui.HasField("toggle_autocast"):
        return int(action.action_ui.toggle_autocast.ability_id)
    return 0


def _drop_unknown_abilities(observation, counter: collections.Counter) -> None:
    """Removes available abilities pysc2 cannot express (counted by id)."""
    keep = []
    for ab in observation.abilities:
        funcs = actions.ABILITY_IDS.get(ab.ability_id)
        types = actions.POINT_REQUIRED_FUNCS[ab.requires_point]
        if funcs and any(f.function_type in types for f in funcs):
            keep.append(ab)
        else:
            counter[int(ab.ability_id)] += 1
    if len(keep) != len(observation.abilities):
        del observation.abilities[:]
        observation.abilities.extend(keep)


@contextlib.contextmanager
def _rejections(request: str):
    """The game refusing a replay (bad data, bad map...) is the replay's fault:
    an error at once, not a retry.  Its own launch failures are retried."""
    try:
        yield
    except remote_controller.RequestError as exc:
        if "LaunchError" in str(exc):
            raise
        raise SourceError("replay_rejected", f"{request}: {exc}") from exc


def _layer_array(plane: np.ndarray, layer: layers.Layer) -> np.ndarray:
    return np.clip(plane, 0, layer.scale - 1).astype(layer.dtype)


def score_vector(score_cumulative, score_by_category) -> np.ndarray:
    """pysc2's ``score_cumulative`` and ``score_by_category`` (named arrays)
    -> the sample's score vector (``layers.SCORE_FEATURES`` order)."""
    out = [score_cumulative[name] for name in layers.SCORE_CUMULATIVE]
    out += [score_by_category[row][category] for row, category in layers.SCORE_BY_CATEGORY]
    return np.asarray(out, np.int32)


class SC2ObservationSource:
    """The headless game as an :class:`~pipeline.sources.interface.ObservationSource`.

    Args:
      schema: sample layout; its resolutions are the feature-layer sizes.
      step_mul: window length in game loops.
      camera_width: screen width in world units.
      fog: observe with fog of war (``disable_fog=False``), as a player did.
      sc2path, timeout_s, max_replays_per_process, max_attempts: see
        :class:`pipeline.sources.sc2.game_process.GameProcess` (used when ``game`` is None).
      hide_specific_actions: pysc2's option (its default, True): specific
        abilities (``Attack_Attack_screen``) become their general function
        (``Attack_screen``), in targets and masks, as the project's ability
        table (``pipeline.actions.ability_table``) does for the replay stream.
      game: an existing :class:`GameProcess` to use (the source closes only
        one it created).
      action_streams: ``f(archive, map_size=, screen_resolution=,
        minimap_resolution=, camera_width=) -> {player_id: stream with
        .actions}``; default ``pipeline.actions.player_inputs.player_streams``.
    """

    name = "sc2"

    def __init__(self, schema: SampleSchema | None = None, *, step_mul: int = 8,
                 camera_width: float = 24, fog: bool = True, sc2path: str | None = None,
                 timeout_s: int = 120, max_replays_per_process: int = 100,
                 max_attempts: int = 3, hide_specific_actions: bool = True,
                 game: GameProcess | None = None,
                 action_streams: ActionStreams | None = None):
        self.schema = schema or SampleSchema()
        self.step_mul = int(step_mul)
        self.camera_width = float(camera_width)
        self.fog = bool(fog)
        self.hide_specific_actions = hide_specific_actions
        self._own_game = game is None
        self.game = game or GameProcess(sc2path, timeout_s=timeout_s,
                                        max_replays_per_process=max_replays_per_process,
                                        max_attempts=max_attempts)
        self.action_streams = action_streams or _default_action_streams
        self.stats: collections.Counter = collections.Counter()
        self.last_stats: dict[str, Any] = {}

    # ----------------------------------------------------------- protocol
    def unavailable_layers(self) -> tuple[str, ...]:
        """The game fills every layer (older builds may lack some: those are
        named per replay in each sample's ``unavailable_layers``)."""
        return ()

    def close(self) -> None:
        if self._own_game:
            self.game.close()

    def __enter__(self) -> "SC2ObservationSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def interface_options(self):
        """The ``InterfaceOptions`` sent with ``start_replay``."""
        s, m = self.schema.screen_resolution, self.schema.minimap_resolution
        return sc_pb.InterfaceOptions(
            raw=False, score=False,
            feature_layer=sc_pb.SpatialCameraSetup(
                width=self.camera_width,
                resolution=common_pb2.Size2DI(x=s, y=s),
                minimap_resolution=common_pb2.Size2DI(x=m, y=m)))

    def replay_samples(self, archive: ReplayArchive,
                       players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        """Every sample of every player in ``players`` (all or nothing).

        Raises:
          SourceError: version_unknown / version_unsupported /
            version_not_installed, map_not_found, replay_rejected,
            player_not_in_replay, version_mismatch, game_ended_early,
            bad_observation, or a game_*
            category once the game failed ``max_attempts`` times.
          ReplayError: the replay's own events cannot be decoded.
        """
        choice = version_for_archive(archive)
        data = archive.data
        cache: dict[str, Any] = {}

        def work(controller, run_config):
            return self._replay(controller, run_config, archive, data, choice, players, cache)

        samples, stats = self.game.run(choice, work, label=archive.replay_id[:12])
        self.last_stats = stats
        for key, value in stats.items():
            if isinstance(value, int):
                self.stats[key] += value
        self.stats["replays"] += 1
        return samples

    # -------------------------------------------------------------- replay
    def _replay(self, controller, run_config, archive, data, choice, players, cache):
        stats: collections.Counter = collections.Counter()
        unknown_available: collections.Counter = collections.Counter()
        unknown_targets: collections.Counter = collections.Counter()
        with _rejections("replay_info"):
            info = controller.replay_info(data)
        if info.base_build and info.base_build != choice.base_build:
            raise SourceError("version_mismatch",
                              f"game says base build {info.base_build}, replay needs "
                              f"{choice.base_build}")
        results = {p.player_info.player_id: _RESULTS.get(p.player_result.result, "undecided")
                   for p in info.player_info}
        map_data = None
        if info.local_map_path:
            try:
                map_data = run_config.map_data(info.local_map_path)
            except ValueError as exc:
                raise SourceError("map_not_found", str(exc)) from exc
        game_loops = int(info.game_duration_loops)
        if game_loops != archive.game_loops:
            stats["duration_differs_from_header"] += 1
        out: dict[int, list[dict]] = {}
        for ctx in players:
            if ctx.player_id not in results:
                raise SourceError("player_not_in_replay",
                                  f"player {ctx.player_id} not in {sorted(results)}")
            with _rejections("start_replay"):
                controller.start_replay(sc_pb.RequestStartReplay(
                    replay_data=data, map_data=map_data, options=self.interface_options(),
                    observed_player_id=ctx.player_id, disable_fog=not self.fog))
            game_info = controller.game_info()
            feat = features.features_from_game_info(
                game_info, hide_specific_actions=self.hide_specific_actions)
            if "streams" not in cache:
                size = game_info.start_raw.map_size
                cache["streams"] = self.action_streams(
                    archive, map_size=(int(size.x), int(size.y)),
                    screen_resolution=self.schema.screen_resolution,
                    minimap_resolution=self.schema.minimap_resolution,
                    camera_width=self.camera_width)
            stream = cache["streams"].get(ctx.player_id)
            file_actions = list(getattr(stream, "actions", stream) or [])
            outcome = results[ctx.player_id]
            if ctx.outcome != outcome:
                stats["outcome_differs_from_index"] += 1
            windows, observations, absent = self._player(
                controller, feat, game_loops, file_actions, stats,
                unknown_available, unknown_targets)
            out[ctx.player_id] = build_samples(
                self.schema, replay_id=archive.replay_id, player_id=ctx.player_id,
                context=ctx.context, windows=windows, observations=observations,
                source=self.name, unavailable_layers=absent,
                has_tracker_events=archive.has_tracker_events, outcome=outcome)
        result = dict(stats)
        result["unknown_available_abilities"] = dict(unknown_available)
        result["unknown_target_abilities"] = dict(unknown_targets)
        result["game_version"] = choice.game_version
        result["version_reason"] = choice.reason
        return out, result

    def _player(self, controller, feat, game_loops, file_actions, stats,
                unknown_available, unknown_targets):
        step = self.step_mul
        starts = set(window_starts(game_loops, step))
        mask_loops = set(observed_loops(game_loops, file_actions, step))
        auto_loops = collections.Counter(a.game_loop for a in file_actions
                                          if a.automatic and 0 <= a.game_loop < game_loops)
        needed = sorted(mask_loops | set(auto_loops) | {game_loops})
        available: dict[int, list[int]] = {}
        observations: dict[int, dict[str, np.ndarray]] = {}
        game_actions: list[Action] = []
        absent: set[str] = set()
        current, previous = 0, None
        for loop in needed:
            if loop > current:
                if controller.status_ended:
                    if loop >= game_loops:   # ended at its last loop: nothing left to report
                        break
                    raise SourceError("game_ended_early",
                                      f"game ended at loop {current}, before {game_loops}")
                controller.step(loop - current)
                current = loop
            obs = controller.observe(disable_fog=not self.fog)
            reported = int(obs.observation.game_loop)
            if reported != loop and loop < game_loops:
                stats["observed_loop_mismatch"] += 1
            if previous is not None:
                for action in obs.actions:
                    converted = self._convert(action, feat, previous, stats, unknown_targets)
                    if converted is None:
                        continue
                    if converted.function_id == _MOVE_CAMERA and auto_loops[previous] > 0:
                        auto_loops[previous] -= 1
                        stats["automatic_camera_dropped"] += 1
                        continue
                    game_actions.append(converted)
            if loop < game_loops:
                if obs.player_result:
                    raise SourceError("game_ended_early",
                                      f"game ended at loop {reported}, before {game_loops}")
                _drop_unknown_abilities(obs.observation, unknown_available)
                if loop in starts:
                    observations[loop] = self._observation(feat, obs, absent)
                    available[loop] = list(observations[loop].pop("_available"))
                elif loop in mask_loops:
                    available[loop] = feat.available_actions(obs.observation)
            previous = loop
        sampling = SamplingStats()
        windows = sample_windows(game_loops, game_actions, available, step, sampling)
        for key, value in sampling.as_dict().items():
            stats[key] += value
        self._cross_check(windows, file_actions, game_actions, game_loops, stats)
        return windows, observations, sorted(absent)

    def _convert(self, action, feat, loop, stats, unknown_targets) -> Action | None:
        ability = _ability_of(action)
        if ability and ability not in actions.ABILITY_IDS:
            unknown_targets[ability] += 1
            stats["game_actions_unknown_ability"] += 1
            return None
        try:
            call = feat.reverse_action(action)
        except ValueError:
            stats["game_actions_unconvertible"] += 1
            return None
        fid = int(call.function)
        if fid == layers.NO_OP:
            stats["game_actions_without_function"] += 1
            return None
        func = actions.FUNCTIONS[fid]
        arguments = {}
        for arg_type, value in zip(func.args, call.arguments):
            if arg_type.name in _SPATIAL:
                arguments[arg_type.name] = (int(value[0]), int(value[1]))
            else:
                arguments[arg_type.name] = int(value[0])
        stats["game_actions"] += 1
        return Action(loop, fid, arguments)

    def _observation(self, feat, obs, absent: set[str]) -> dict[str, np.ndarray]:
        agent = feat.transform_obs(obs)
        out: dict[str, np.ndarray] = {}
        planes = obs.observation.feature_layer_data
        for prefix, group, proto, res in (
                ("screen", layers.SCREEN_LAYERS, planes.renders,
                 self.schema.screen_resolution),
                ("minimap", layers.MINIMAP_LAYERS, planes.minimap_renders,
                 self.schema.minimap_resolution)):
            stack = agent[f"feature_{prefix}"]
            if stack.shape[1:] != (res, res):
                raise SourceError("bad_observation",
                                  f"{prefix} layers {stack.shape[1:]}, expected {(res, res)}")
            for layer in group:
                image = getattr(proto, layer.name)
                if image.size.x == 0 and image.size.y == 0:
                    absent.add(f"{prefix}_{layer.name}")
                out[f"{prefix}_{layer.name}"] = _layer_array(stack[layer.name], layer)
        out["player"] = np.asarray(agent["player"], np.int32)
        out["score"] = score_vector(agent["score_cumulative"], agent["score_by_category"])
        out["_available"] = agent["available_actions"]
        return out

    def _cross_check(self, windows, file_actions, game_actions, game_loops, stats) -> None:
        """Window-by-window comparison of the replay file's stream and the game's."""
        def by_window(stream):
            out = collections.defaultdict(list)
            for a in stream:
                if not a.automatic and 0 <= a.game_loop < game_loops:
                    out[a.game_loop - a.game_loop % self.step_mul].append(a)
            return out

        files, games = by_window(file_actions), by_window(game_actions)
        for window in windows:
            f, g = files.get(window.game_loop, []), games.get(window.game_loop, [])
            first_f = (f[0].function_id, dict(f[0].arguments)) if f else None
            first_g = (g[0].function_id, dict(g[0].arguments)) if g else None
            stats["targets_agree" if first_f == first_g else "targets_disagree"] += 1
            fc = collections.Counter(a.function_id for a in f)
            gc = collections.Counter(a.function_id for a in g)
            stats["file_actions_missing_in_game"] += sum((fc - gc).values())
            stats["game_actions_missing_in_file"] += sum((gc - fc).values())
