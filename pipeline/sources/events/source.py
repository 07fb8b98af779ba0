"""The engine-free observation source: feature layers from tracker events.

Running StarCraft II costs seconds per replay and needs a version-matched
game; tracker events (units born, finished, dead, moved, players' economy)
plus the player's own inputs (camera, selection) let us draw the same
feature layers for any build, fast.  :class:`EventsObservationSource`
implements ``pipeline.sources.interface.ObservationSource``:

* one pass over the replay's loops for all players (:class:`UnitTracker`
  walks the tracker events once), observations at window starts, masks at
  window starts and at every loop the player acted;
* minimap ``player_relative``, ``player_id``, ``unit_type``, ``selected``,
  ``camera``; screen ``player_relative``, ``player_id``, ``unit_type``,
  ``selected``, ``unit_density``, ``build_progress``, ``power``; the player
  vector (the unit layers are drawn by ``pipeline.sources.events.feature_layers``);
  everything else is zeros and named by :meth:`unavailable_layers`;
* fog of war (``pipeline.sources.events.fog``) unless ``fog=False``;
* replays without tracker events still give samples (camera layer, actions,
  labels) with ``has_tracker_events=0`` and the unit layers unavailable; so
  do replays whose tracker events no bundled protocol decodes (a documented
  limitation, reported in ``last_stats["tracker_error"]``); damaged tracker
  events raise ``ReplayError("corrupt")``.

Arrays that do not change between windows are shared between samples and
are read-only.  What each layer approximates is in
``docs/engine_free_source.md``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from pipeline.actions.player_inputs import UnitPositions, player_streams, replay_map_size
from pipeline.sources.events.available_actions import ActionAvailability, type_rows
from pipeline.coords import ViewGeometry
from pipeline.sources.events.feature_layers import LayerPainter, cached, read_only
from pipeline.index.player_context import PlayerContext
from pipeline.sources.interface import SourceError
from pipeline.sources.events.player_features import PlayerFeatures
from pipeline.replay.archive import ReplayArchive, ReplayError
from pipeline.sampling.rule import SamplingStats, observed_loops, sample_windows, window_starts
from pipeline.sampling.assembly import build_samples
from pipeline.sources.events.unit_tracker import (NEUTRAL_PLAYER, CHANGED_ALL, UnitData,
                                   UnitTracker, move_orders, unit_data)
from pipeline.sources.events.visible_units import Snapshots
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
#: Size of the per-player owner-id lookup tables (player ids are 1..16).
OWNER_LUT_SIZE = 64
_NO_SLOTS = np.zeros(0, np.int64)
_NO_SLOTS.setflags(write=False)


@dataclasses.dataclass
class _View:
    """Per-player walk state and caches."""
    ctx: PlayerContext
    stream: Any
    allies: frozenset[int]
    loops: set[int]
    starts: set[int]
    cam_i: int = -1
    sel_i: int = -1
    #: Per selection entry, an id shared by entries with the same tags
    #: (caches key on it: equal tags give equal slots, masks and layers).
    sel_ids: list[int] = dataclasses.field(default_factory=list)
    sel_key: int = -1
    #: Per selection id: its tags (``sel_tags``), their slots (alive or
    #: not; filled once the tracker exists) and, when needed, a set of them.
    sel_tags: list[tuple] = dataclasses.field(default_factory=list)
    sel_slots: list[np.ndarray] = dataclasses.field(default_factory=list)
    sel_sets: dict[int, frozenset] = dataclasses.field(default_factory=dict)
    #: Bump when the player's own units (``own_version``) or the selected
    #: units (``sel_version``) may have changed; see ``_refresh_own``.
    own_version: int = 0
    sel_version: int = 0
    change_i: int = 0
    #: The snapshots (``_Snapshots`` ids) the player looked at, in order.
    looks: list[int] = dataclasses.field(default_factory=list)
    #: owner id -> player_relative value, and -> friendly (self or ally);
    #: owners past the end read the last entry (enemy, not friendly).
    relative_lut: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    friendly_lut: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        pid = self.ctx.player_id
        self.relative_lut = np.full(OWNER_LUT_SIZE, 4, np.int64)
        self.relative_lut[NEUTRAL_PLAYER] = 3
        self.relative_lut[list(self.allies)] = 2
        self.relative_lut[pid] = 1
        self.friendly_lut = self.relative_lut <= 2
    cache: dict = dataclasses.field(default_factory=dict)

    def slots(self) -> np.ndarray:
        """The current selection's slots (alive or not)."""
        return self.sel_slots[self.sel_key] if self.sel_key >= 0 else _NO_SLOTS


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
        self._zeros = {f.name: read_only(np.zeros(f.shape, f.np_dtype))
                       for f in schema.fields
                       if f.group == Group.OBSERVATION and f.is_array}
        self.painter = LayerPainter(schema, self.data, self._zeros)
        self.player_features = PlayerFeatures(self.data, self.availability)
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
            out += ["player", "score"]
        return tuple(out)

    def replay_samples(self, archive: ReplayArchive,
                       players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        try:
            return self._replay_samples(archive, players)
        except (ReplayError, SourceError):
            raise
        except (KeyError, ValueError, IndexError, TypeError, AttributeError, ArithmeticError,
                RecursionError) as exc:     # what a replay's content can make the work raise
            raise SourceError("events", f"{archive.path or archive.replay_id}: {exc!r}") from exc

    # ------------------------------------------------------------- work
    def _replay_samples(self, archive: ReplayArchive,
                        players: Sequence[PlayerContext]) -> dict[int, list[dict]]:
        map_size = replay_map_size(archive)
        geo = ViewGeometry(map_size, self.schema.screen_resolution,
                           self.schema.minimap_resolution, self.camera_width)
        # A documented limitation degrades: tracker events that no bundled
        # protocol decodes (``unsupported_build``: some 2.0.8/2.0.9 builds
        # with a neighbouring protocol) are treated like absent ones, and the
        # replay still gives samples, marked has_tracker_events=0, with the
        # reason in ``last_stats["tracker_error"]`` (the worker puts it in
        # the replay's result, the manifest counts it).  Damage -- a part
        # that fails its compression or CRC check, or that the exact
        # protocol does not decode (``corrupt``) -- is an error: it raises.
        tracker_error = ""
        try:
            tracker_events = archive.tracker_events
        except ReplayError as exc:
            if exc.category != "unsupported_build":
                raise
            tracker_events, tracker_error = [], str(exc)
        has_tracker = bool(archive.has_tracker_events and tracker_events)
        streams = player_streams(archive, map_size, self.schema.screen_resolution,
                                 self.schema.minimap_resolution, self.camera_width,
                                 unit_positions=UnitPositions(tracker_events))
        game_loops = archive.game_loops
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
            ids: dict[tuple, int] = {}
            sel_ids = [ids.setdefault(tuple(tags), len(ids)) for _, tags in stream.selection]
            views[ctx.player_id] = _View(ctx, stream, allies, set(loops),
                                         set(window_starts(game_loops, self.step_mul)),
                                         sel_ids=sel_ids,
                                         sel_tags=list(ids))
        orders = (move_orders({pid: v.stream for pid, v in views.items()}, geo)
                  if self.position_estimate == "command" else ())
        tracker = UnitTracker(tracker_events, self.data,
                              position_estimate=self.position_estimate, move_orders=orders)
        for view in views.values():
            view.sel_slots = tracker.slots_of_tag_lists(view.sel_tags)

        self.painter.begin()
        snapshots = Snapshots(self.data, self.painter.draw_order, geo.map_size)
        observations: dict[int, dict[int, dict]] = {p: {} for p in views}
        available: dict[int, dict[int, np.ndarray]] = {p: {} for p in views}
        all_loops = sorted(set().union(*(v.loops for v in views.values()))) if views else []
        for loop in all_loops:
            tracker.advance(loop)
            for pid, view in views.items():
                if loop not in view.loops:
                    continue
                self._step_inputs(view, loop)
                available[pid][loop] = self._mask(view, tracker, has_tracker)
                if loop in view.starts:
                    observations[pid][loop] = self._observe(view, tracker, geo, has_tracker,
                                                            snapshots)

        # What each player saw at its looks, in bulk (fog of war), drawn.
        self.painter.resolve(geo, {
            pid: snapshots.visible_sets(view.looks, view.friendly_lut, self.fog)
            for pid, view in views.items() if view.looks})
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
            "mean_mask_size": float(np.mean(np.stack(masks).sum(axis=1))) if masks else 0.0,
            "fog": self.fog, "position_estimate": self.position_estimate,
            "has_tracker_events": has_tracker,
            "tracker_error": tracker_error,
            "unknown_unit_types": self.data.unknown_names,
            "position_errors": tracker.errors.summary(),
        }
        return out

    @staticmethod
    def _step_inputs(view: _View, loop: int) -> None:
        cam, sel = view.stream.camera, view.stream.selection
        while view.cam_i + 1 < len(cam) and cam[view.cam_i + 1][0] <= loop:
            view.cam_i += 1
        if view.sel_i + 1 < len(sel) and sel[view.sel_i + 1][0] <= loop:
            while view.sel_i + 1 < len(sel) and sel[view.sel_i + 1][0] <= loop:
                view.sel_i += 1
            view.sel_key = view.sel_ids[view.sel_i]

    def _camera(self, view: _View, geo: ViewGeometry) -> tuple[float, float]:
        cam = view.stream.camera
        if not cam:
            return float(geo.map_size[0] / 2), float(geo.map_size[1] / 2)
        entry = cam[max(view.cam_i, 0)]
        return float(entry[1]), float(entry[2])

    # --------------------------------------------------------- per loop
    def _selection(self, view: _View, tracker: UnitTracker) -> np.ndarray:
        """Alive selected unit slots (cached until units or selection change)."""
        # Aliveness changes only with ``tracker.changed`` events of selected
        # units, counted by ``sel_version`` (see :meth:`_refresh_own`).
        self._refresh_own(view, tracker)
        key = (view.sel_version, view.sel_key)
        hit = view.cache.get("selection")
        if hit is not None and hit[0] == key:
            return hit[1]
        # The tags' slots depend on the selection only; aliveness on the loop.
        sel = view.slots()
        sel = sel[tracker.alive[sel]]
        # Same slots as before: keep the earlier array, so readers can tell
        # "unchanged" by identity.
        if hit is not None and hit[1].tobytes() == sel.tobytes():
            sel = hit[1]
        view.cache["selection"] = (key, sel)
        return sel

    def _mask(self, view: _View, tracker: UnitTracker, has_tracker: bool) -> np.ndarray:
        if not has_tracker:
            return self._mask_without_tracker(view)
        # Everything the mask reads (selected units' aliveness, owners and
        # types: ``sel_version``; own counters and tech: ``own_version``;
        # upgrades) changes only with these.
        if view.change_i != len(tracker.changed):
            self._refresh_own(view, tracker)
        key = (view.own_version, view.sel_version, tracker.stats_version, view.sel_key)
        hit = view.cache.get("mask")
        if hit is not None and hit[0] == key:
            return hit[1]
        # The selected own units' type rows and the selection's size, per
        # selection, until a unit changes what it is (players flip between
        # a few control groups while nothing changes).
        by_selection = view.cache.get("mask_selection")
        if by_selection is None or by_selection[0] != view.change_i:
            by_selection = view.cache["mask_selection"] = (view.change_i, {})
        sel_hit = by_selection[1].get(view.sel_key)
        if sel_hit is None:
            sel = self._selection(view, tracker)
            mine = sel[tracker.owner[sel] == view.ctx.player_id]
            sel_hit = by_selection[1][view.sel_key] = (type_rows(tracker.type_row[mine]),
                                                       len(sel))
        units = self.player_features.own_units(view.ctx.player_id, view.cache,
                                               view.own_version, tracker)
        mask = self.availability.mask_of_rows(sel_hit[0], sel_hit[1], units["tech"],
                                              self._upgrades(view, tracker), *units["counts"])
        view.cache["mask"] = (key, mask)
        return mask

    def _mask_without_tracker(self, view: _View) -> np.ndarray:
        """The mask from what the selection events say: the selected units'
        types (named by unit link) and count.  Owners, structures, upgrades
        and counters are unknown: every ability of the selected types is
        offered, as if the units were the player's and met every
        requirement; select_army / warp_gates / larva are not."""
        hit = view.cache.get("mask_without_tracker")
        if hit is not None and hit[0] == view.sel_i:
            return hit[1]
        types = view.stream.selection_types[view.sel_i] if view.sel_i >= 0 else ()
        rows = type_rows(np.array([self.data.row_of(t) for t in types if t], np.int64))
        mask = self.availability.mask_of_rows(rows, len(types), None, None, 0, 0, 0, 0)
        view.cache["mask_without_tracker"] = (view.sel_i, mask)
        return mask

    @staticmethod
    def _upgrades(view: _View, tracker: UnitTracker) -> frozenset[int]:
        return cached(view.cache, "upgrades", tracker.stats_version,
                      lambda: frozenset(tracker.upgrades.get(view.ctx.player_id, ())))

    def _refresh_own(self, view: _View, tracker: UnitTracker) -> None:
        """The ``own_version`` part of :meth:`_refresh` (all a mask needs),
        and ``sel_version``: bumped when a unit of the current selection
        changed what it is (died, type, owner)."""
        if view.change_i == len(tracker.changed):
            return
        changed = tracker.changed[view.change_i:]
        view.change_i = len(tracker.changed)
        if CHANGED_ALL in changed:
            view.own_version += 1
            view.sel_version += 1
            return
        pid = view.ctx.player_id
        if len(changed) < 8:  # the usual case: scalar reads beat array calls
            owner = tracker.owner
            if any(owner[s] == pid for s in changed):
                view.own_version += 1
        elif (tracker.owner[np.fromiter(set(changed), np.int64)] == pid).any():
            view.own_version += 1
        if not self._selection_set(view).isdisjoint(changed):
            view.sel_version += 1

    @staticmethod
    def _selection_set(view: _View) -> frozenset[int]:
        """The slots of the current selection's tags, as a set."""
        hit = view.sel_sets.get(view.sel_key)
        if hit is None:
            hit = view.sel_sets[view.sel_key] = frozenset(view.slots().tolist())
        return hit

    def _observe(self, view: _View, tracker: UnitTracker, geo: ViewGeometry,
                 has_tracker: bool, snapshots: Snapshots) -> dict[str, np.ndarray]:
        # Every layer starts as its shared zeros (a dict copy: the layers
        # drawn below replace ~15 of ~40 entries).
        obs = self._zeros.copy()
        camera = self._camera(view, geo)
        obs["minimap_camera"] = cached(view.cache, "camera", camera,
                                       lambda: self.painter.camera_layer(geo, camera))
        if not has_tracker:
            player = np.zeros(len(layers.PLAYER_FEATURES), np.int32)
            player[0] = view.ctx.player_id
            obs["player"] = cached(view.cache, "player0", 0, lambda: read_only(player))
            return obs
        self._refresh_own(view, tracker)
        obs["player"] = self.player_features.vector(view.ctx.player_id, view.cache,
                                                    view.own_version, tracker)
        obs["score"] = self.player_features.score(view.ctx.player_id, view.cache, tracker)
        look = snapshots.take(tracker)
        if not view.looks or view.looks[-1] != look:
            view.looks.append(look)
        selected = self._selection(view, tracker)
        self.painter.record(obs, len(view.looks) - 1, camera, selected, tracker.loop,
                            view.ctx.player_id, view.relative_lut)
        return obs
