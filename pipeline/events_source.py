"""The engine-free observation source: feature layers from tracker events.

Running StarCraft II costs seconds per replay and needs a version-matched
game; tracker events (units born, finished, dead, moved, players' economy)
plus the player's own inputs (camera, selection) let us draw the same
feature layers for any build, fast.  :class:`EventsObservationSource`
implements ``pipeline.observation_source.ObservationSource``:

* one pass over the replay's loops for all players (:class:`UnitTracker`
  walks the tracker events once), observations at window starts, masks at
  window starts and at every loop the player acted;
* minimap ``player_relative``, ``player_id``, ``unit_type``, ``selected``,
  ``camera``; screen ``player_relative``, ``player_id``, ``unit_type``,
  ``selected``, ``unit_density``, ``build_progress``, ``power``; the player
  vector; everything else is zeros and named by :meth:`unavailable_layers`;
* fog of war (``pipeline.fog``) unless ``fog=False``;
* replays without tracker events still give samples (camera layer, actions,
  labels) with ``has_tracker_events=0`` and the unit layers unavailable.

Arrays that do not change between windows are shared between samples and
are read-only.  What each layer approximates is in
``docs/engine_free_source.md``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline import fog as fog_model
from pipeline import rasterize
from pipeline.available_actions import ActionAvailability
from pipeline.coords import ViewGeometry
from pipeline.observation_source import PlayerContext, SourceError
from pipeline.replay_archive import ReplayArchive, ReplayError
from pipeline.sampling import SamplingStats, observed_loops, sample_windows, window_starts
from pipeline.samples import build_samples
from pipeline.unit_tracker import MoveOrder, NEUTRAL_PLAYER, UnitData, UnitTracker, unit_data
from schemas import layers
from schemas.sample import Group, SampleSchema

#: Layers this source fills when the replay has tracker events.
FILLED_WITH_TRACKER = (
    "minimap_camera", "minimap_player_id", "minimap_player_relative", "minimap_selected",
    "minimap_unit_type", "screen_player_id", "screen_player_relative", "screen_unit_type",
    "screen_selected", "screen_unit_density", "screen_build_progress", "screen_power",
)
#: Layers filled without tracker events (the camera comes from the inputs).
FILLED_WITHOUT_TRACKER = ("minimap_camera",)
#: Pylon power field radius (world units) for the ``power`` layer.
PYLON_POWER_RADIUS = 6.5
#: pysc2 function ids whose point argument sends the selection somewhere.
MOVE_FUNCTIONS = {  # Attack, Move, Smart, Patrol, HoldPosition-free point orders
    12: "screen", 13: "minimap", 331: "screen", 332: "minimap",
    451: "screen", 452: "minimap", 333: "screen", 334: "minimap",
}
FOOD_SCALE = 4096


@dataclasses.dataclass
class _View:
    """Per-player walk state and caches."""
    ctx: PlayerContext
    stream: Any
    allies: frozenset[int]
    loops: set[int]
    starts: set[int]
    seen: np.ndarray
    cam_i: int = -1
    sel_i: int = -1
    cache: dict = dataclasses.field(default_factory=dict)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class EventsObservationSource:
    """Observations from tracker events and the player's own inputs."""

    name = "events"

    def __init__(self, schema: SampleSchema, step_mul: int = 8, camera_width: float = 24,
                 fog: bool = True, position_estimate: str = "hold",
                 data: UnitData | None = None):
        self.schema = schema
        self.step_mul = int(step_mul)
        self.camera_width = float(camera_width)
        self.fog = bool(fog)
        self.position_estimate = position_estimate
        self.data = data if data is not None else unit_data()
        self.availability = ActionAvailability(self.data)
        self._zeros = {f.name: _read_only(np.zeros(f.shape, f.np_dtype))
                       for f in schema.fields
                       if f.group == Group.OBSERVATION and f.is_array}
        #: Counters of the last replay (sampling stats summed over players...).
        self.last_stats: dict[str, Any] = {}

    # ---------------------------------------------------------- protocol
    def _spatial_names(self) -> list[str]:
        return [f.name for f in self.schema.fields
                if f.name.startswith(("minimap_", "screen_"))]

    def unavailable_layers(self, has_tracker_events: bool = True) -> tuple[str, ...]:
        filled = FILLED_WITH_TRACKER if has_tracker_events else FILLED_WITHOUT_TRACKER
        out = [n for n in self._spatial_names() if n not in filled]
        if not has_tracker_events:
            out.append("player")
        return tuple(out)

    def replay_samples(self, archive: ReplayArchive,
                       players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        try:
            return self._replay_samples(archive, players)
        except (ReplayError, SourceError):
            raise
        except (KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise SourceError("events", f"{archive.path or archive.replay_id}: {exc!r}") from exc

    # ------------------------------------------------------------- work
    def _replay_samples(self, archive: ReplayArchive,
                        players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        from pipeline.player_inputs import _map_size, player_streams
        map_size = _map_size(archive)
        geo = ViewGeometry(map_size, self.schema.screen_resolution,
                           self.schema.minimap_resolution, self.camera_width)
        streams = player_streams(archive, map_size, self.schema.screen_resolution,
                                 self.schema.minimap_resolution, self.camera_width)
        game_loops = archive.game_loops
        tracker_events = archive.tracker_events
        has_tracker = bool(archive.has_tracker_events and tracker_events)
        teams = {i + 1: p.get("m_teamId") for i, p in enumerate(archive.details["m_playerList"])}

        views: dict[int, _View] = {}
        for ctx in players:
            if ctx.player_id not in streams:
                raise SourceError("events", f"no input stream for player {ctx.player_id}")
            stream = streams[ctx.player_id]
            team = teams.get(ctx.player_id)
            allies = frozenset(p for p, t in teams.items()
                               if t == team and p != ctx.player_id and team is not None)
            loops = observed_loops(game_loops, stream.actions, self.step_mul)
            views[ctx.player_id] = _View(ctx, stream, allies, set(loops),
                                         set(window_starts(game_loops, self.step_mul)),
                                         np.zeros(0, bool))
        orders = self._move_orders(views, geo) if self.position_estimate == "command" else ()
        tracker = UnitTracker(tracker_events, self.data,
                              position_estimate=self.position_estimate, move_orders=orders)
        for view in views.values():
            view.seen = np.zeros(len(tracker.alive), bool)

        observations: dict[int, dict[int, dict]] = {p: {} for p in views}
        available: dict[int, dict[int, np.ndarray]] = {p: {} for p in views}
        all_loops = sorted(set().union(*(v.loops for v in views.values()))) if views else []
        for loop in all_loops:
            tracker.advance(loop)
            for pid, view in views.items():
                if loop not in view.loops:
                    continue
                self._step_inputs(view, loop)
                state = self._player_state(view, tracker, has_tracker)
                available[pid][loop] = state["mask"]
                if loop in view.starts:
                    observations[pid][loop] = self._observe(view, tracker, geo, state,
                                                            has_tracker)

        unavailable = self.unavailable_layers(has_tracker)
        out: dict[int, list[dict]] = {}
        totals = SamplingStats()
        for pid, view in views.items():
            stats = SamplingStats()
            windows = sample_windows(game_loops, view.stream.actions, available[pid],
                                     self.step_mul, stats)
            out[pid] = build_samples(
                self.schema, replay_id=archive.replay_id, player_id=pid,
                context=view.ctx.context, windows=windows, observations=observations[pid],
                source=self.name, unavailable_layers=unavailable,
                has_tracker_events=has_tracker, outcome=view.ctx.outcome)
            for k, v in stats.as_dict().items():
                setattr(totals, k, getattr(totals, k) + v)
        masks = [s["available_actions"] for samples in out.values() for s in samples]
        self.last_stats = {
            **totals.as_dict(),
            "mean_mask_size": float(np.mean([m.sum() for m in masks])) if masks else 0.0,
            "fog": self.fog, "position_estimate": self.position_estimate,
            "has_tracker_events": has_tracker,
            "unknown_unit_types": self.data.unknown_names,
            "position_errors": tracker.errors.summary(),
        }
        return out

    def _move_orders(self, views: Mapping[int, _View], geo: ViewGeometry) -> list[MoveOrder]:
        """Point orders (move/attack/smart) of each player, in world units."""
        orders = []
        for pid, view in views.items():
            cam, sel = view.stream.camera, view.stream.selection
            ci = si = -1
            for action in view.stream.actions:
                kind = MOVE_FUNCTIONS.get(action.function_id)
                if kind is None or kind not in action.arguments:
                    continue
                while ci + 1 < len(cam) and cam[ci + 1][0] <= action.game_loop:
                    ci += 1
                while si + 1 < len(sel) and sel[si + 1][0] <= action.game_loop:
                    si += 1
                if si < 0:
                    continue
                if kind == "screen":
                    if ci < 0:
                        continue
                    world = geo.screen_to_world(action.arguments["screen"], cam[ci][1:3])
                else:
                    world = geo.minimap_to_world(action.arguments["minimap"])
                orders.append(MoveOrder(action.game_loop, pid, tuple(sel[si][1]),
                                        (float(world[0]), float(world[1]))))
        return orders

    @staticmethod
    def _step_inputs(view: _View, loop: int) -> None:
        cam, sel = view.stream.camera, view.stream.selection
        while view.cam_i + 1 < len(cam) and cam[view.cam_i + 1][0] <= loop:
            view.cam_i += 1
        while view.sel_i + 1 < len(sel) and sel[view.sel_i + 1][0] <= loop:
            view.sel_i += 1

    def _camera(self, view: _View, geo: ViewGeometry) -> tuple[float, float]:
        cam = view.stream.camera
        if not cam:
            return float(geo.map_size[0] / 2), float(geo.map_size[1] / 2)
        entry = cam[max(view.cam_i, 0)]
        return float(entry[1]), float(entry[2])

    def _selected_tags(self, view: _View) -> tuple[int, ...]:
        sel = view.stream.selection
        return tuple(sel[view.sel_i][1]) if view.sel_i >= 0 else ()

    # --------------------------------------------------------- per loop
    def _player_state(self, view: _View, tracker: UnitTracker, has_tracker: bool) -> dict:
        """Visible units, selection, player vector and mask (cached by version)."""
        key = (tracker.version, view.sel_i)
        hit = view.cache.get("state")
        if hit is not None and hit[0] == key:
            return hit[1]
        pid = view.ctx.player_id
        data = self.data
        tags = self._selected_tags(view)
        if not has_tracker:
            player = np.zeros(len(layers.PLAYER_FEATURES), np.int32)
            player[0] = pid
            mask = self.availability.mask(np.zeros(0, np.int64), len(tags), frozenset(),
                                          frozenset(), 0, 0, 0, 0)
            state = {"mask": mask, "player": _read_only(player), "slots": None,
                     "selected": np.zeros(0, np.int64)}
            view.cache["state"] = (key, state)
            return state
        vis_key = tracker.version
        vis = view.cache.get("visible")
        if vis is None or vis[0] != vis_key:
            slots = tracker.alive_slots()
            if self.fog:
                rows = tracker.type_row[slots]
                visible = fog_model.visible_mask(
                    pid, view.allies, tracker.owner[slots], tracker.xy[slots],
                    data.sight[rows], data.radius[rows], data.is_structure[rows],
                    view.seen[slots], NEUTRAL_PLAYER)
                # visible_mask updated a copy; write the structures seen back.
                seen_now = view.seen[slots]
                seen_now |= visible & data.is_structure[rows] & (tracker.owner[slots] != pid)
                view.seen[slots] = seen_now
                slots = slots[visible]
            vis = (vis_key, slots, self._player_vector(view, tracker))
            view.cache["visible"] = vis
        slots, (player, counts, tech, upgrades) = vis[1], vis[2]
        sel_slots = np.array([tracker.slot_of_tag.get(t, -1) for t in tags], np.int64)
        sel_slots = sel_slots[sel_slots >= 0]
        sel_slots = sel_slots[tracker.alive[sel_slots]]
        own = sel_slots[tracker.owner[sel_slots] == pid]
        mask = self.availability.mask(tracker.type_row[own], len(sel_slots), tech, upgrades,
                                      *counts)
        state = {"mask": mask, "player": player, "slots": slots, "selected": sel_slots}
        view.cache["state"] = (key, state)
        return state

    def _player_vector(self, view: _View, tracker: UnitTracker):
        pid = view.ctx.player_id
        data = self.data
        slots = tracker.alive_slots()
        own = slots[tracker.owner[slots] == pid]
        rows = tracker.type_row[own]
        done = tracker.done[own]
        army = done & ~data.is_structure[rows] & ~data.is_worker[rows] & (data.food[rows] > 0)
        warp_gates = int((rows[done] == data.row["WarpGate"]).sum())
        larva = int((rows == data.row["Larva"]).sum())
        stats = tracker.stats.get(pid, {})
        player = np.array([
            pid,
            stats.get("m_scoreValueMineralsCurrent", 0),
            stats.get("m_scoreValueVespeneCurrent", 0),
            stats.get("m_scoreValueFoodUsed", 0) // FOOD_SCALE,
            stats.get("m_scoreValueFoodMade", 0) // FOOD_SCALE,
            int(round(data.food[rows[army]].sum())),
            stats.get("m_scoreValueWorkersActiveCount", 0),
            0,  # idle_worker_count: not derivable from tracker events
            int(army.sum()), warp_gates, larva,
        ], np.int32)
        tech = self.availability.tech(data.id[rows[done & data.is_structure[rows]]])
        upgrades = frozenset(tracker.upgrades.get(pid, ()))
        return _read_only(player), (0, int(army.sum()), warp_gates, larva), tech, upgrades

    def _observe(self, view: _View, tracker: UnitTracker, geo: ViewGeometry, state: dict,
                 has_tracker: bool) -> dict[str, np.ndarray]:
        obs = dict(self._zeros)
        obs["player"] = state["player"]
        camera = self._camera(view, geo)
        obs["minimap_camera"] = self._cached(view, "camera", camera,
                                             lambda: self._camera_layer(geo, camera))
        if not has_tracker:
            return obs
        pid = view.ctx.player_id
        slots, selected = state["slots"], state["selected"]
        mini = self._cached(view, "minimap", (tracker.version, view.sel_i),
                            lambda: self._units_layers(view, tracker, geo, slots, selected,
                                                       None, "minimap"))
        screen = self._cached(view, "screen", (tracker.version, view.sel_i, camera),
                              lambda: self._units_layers(view, tracker, geo, slots, selected,
                                                         camera, "screen"))
        obs.update(mini)
        obs.update(screen)
        del pid
        return obs

    @staticmethod
    def _cached(view: _View, name: str, key: Any, make):
        hit = view.cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = make()
        view.cache[name] = (key, value)
        return value

    def _camera_layer(self, geo: ViewGeometry, camera: tuple[float, float]) -> np.ndarray:
        x0, y0, x1, y1 = geo.screen_bounds(camera)
        top_left, bottom_right = geo.world_to_minimap([[x0, y1], [x1, y0]])
        dtype = self.schema.by_name["minimap_camera"].np_dtype
        return _read_only(rasterize.fill_rect(geo.minimap_res, int(top_left[0]),
                                              int(top_left[1]), int(bottom_right[0]),
                                              int(bottom_right[1]), dtype))

    def _units_layers(self, view: _View, tracker: UnitTracker, geo: ViewGeometry,
                      slots: np.ndarray, selected: np.ndarray, camera, kind: str):
        data = self.data
        pid = view.ctx.player_id
        rows = tracker.type_row[slots]
        xy = tracker.xy[slots]
        if kind == "screen":
            x0, y0, x1, y1 = geo.screen_bounds(camera)
            r = data.radius[rows]
            near = ((xy[:, 0] + r >= x0) & (xy[:, 0] - r < x1)
                    & (xy[:, 1] + r > y0) & (xy[:, 1] - r <= y1))
            slots, rows, xy = slots[near], rows[near], xy[near]
            centers = geo.world_to_screen(xy, camera)
            radii = geo.world_to_screen_distance(data.radius[rows])
            res = geo.screen_res
        else:
            centers = geo.world_to_minimap(xy)
            radii = geo.world_to_minimap_distance(data.radius[rows])
            res = geo.minimap_res
        # Draw order: structures, then ground units, then air units on top.
        order = np.lexsort((~data.is_structure[rows], data.is_flying[rows]))
        slots, rows, centers, radii = slots[order], rows[order], centers[order], radii[order]
        flat, unit = rasterize.disc_pixels(centers, radii, res)
        owner = tracker.owner[slots]
        relative = np.where(owner == pid, 1, np.where(np.isin(owner, list(view.allies)), 2,
                            np.where(owner == NEUTRAL_PLAYER, 3, 4)))
        f = self.schema.by_name
        out = {
            f"{kind}_player_relative": rasterize.paint(res, flat, unit, relative,
                                                       f[f"{kind}_player_relative"].np_dtype),
            f"{kind}_player_id": rasterize.paint(res, flat, unit, owner,
                                                 f[f"{kind}_player_id"].np_dtype),
            f"{kind}_unit_type": rasterize.paint(res, flat, unit, data.id[rows],
                                                 f[f"{kind}_unit_type"].np_dtype),
            f"{kind}_selected": rasterize.paint(res, flat, unit,
                                                np.isin(slots, selected).astype(np.uint8),
                                                f[f"{kind}_selected"].np_dtype),
        }
        if kind == "screen":
            out["screen_unit_density"] = rasterize.count(
                res, flat, layers.SCREEN_LAYERS[14].scale - 1, f["screen_unit_density"].np_dtype)
            progress = np.round(tracker.build_progress(slots) * 100).astype(np.int64)
            out["screen_build_progress"] = rasterize.paint(
                res, flat, unit, progress, f["screen_build_progress"].np_dtype)
            out["screen_power"] = self._power(tracker, geo, camera, pid, res)
        return {k: _read_only(v) for k, v in out.items()}

    def _power(self, tracker: UnitTracker, geo: ViewGeometry, camera, pid: int, res):
        slots = tracker.alive_slots()
        slots = slots[(tracker.owner[slots] == pid) & tracker.done[slots]]
        pylons = slots[tracker.type_row[slots] == self.data.row["Pylon"]]
        dtype = self.schema.by_name["screen_power"].np_dtype
        if not pylons.size:
            return np.zeros((res[1], res[0]), dtype)
        centers = geo.world_to_screen(tracker.xy[pylons], camera)
        radius = geo.world_to_screen_distance(np.full(len(pylons), PYLON_POWER_RADIUS))
        flat, unit = rasterize.disc_pixels(centers, radius, res)
        return rasterize.paint(res, flat, unit, np.ones(len(pylons), np.int64), dtype)
