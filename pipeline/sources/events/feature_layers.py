"""Drawing the engine-free source's unit feature layers (minimap and screen).

Split out of ``pipeline.sources.events.source``, which walks the replay, keeps each
player's knowledge (fog, own units, selection) and assembles samples; this
module only turns what a player sees -- unit slots, type rows, positions, the
camera and the selection -- into pysc2-shaped layers:

* minimap and screen ``player_relative``, ``player_id``, ``unit_type`` and
  ``selected``; screen ``unit_density``, ``build_progress`` and ``power``;
* units are discs of their radius, drawn structures first, then ground
  units, then air units on top;
* two phases: during the replay walk :meth:`LayerPainter.record` only notes,
  per observation, what the layers depend on (the visible-unit set -- the
  same dict object while it is unchanged --, the camera, the selected slots
  -- the same array object while unchanged -- and the loop);
  :meth:`LayerPainter.resolve` then computes the geometry of all windows at
  once in numpy (every distinct visible set's minimap, every distinct
  (visible set, camera) pair's screen culling and pixel centres, selections
  and construction progress by membership over the concatenated units),
  registers the disc jobs in bulk with a ``pipeline.sources.events.disc_batch.DiscBatch``
  and puts the painted (read-only) layers in the observations: windows with
  the same inputs share the same arrays.  Per-window numpy calls (thousands
  of small redraws) would cost many times more than the work.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pipeline.sources.events import rasterize
from pipeline.sources.events.disc_batch import DiscBatch
from pipeline.sources.events.disc_batch import concat_ranges as _ranges
from pipeline.coords import ViewGeometry
from pipeline.sources.events.unit_tracker import UnitData
from schemas import layers
from schemas.sample import SampleSchema

#: Pylon power field radius (world units) for the ``power`` layer.
PYLON_POWER_RADIUS = 6.5


def read_only(a: np.ndarray) -> np.ndarray:
    """``a``, flagged read-only (arrays shared between samples)."""
    a.setflags(write=False)
    return a


def cached(cache: dict, name: str, key: Any, make: Callable[[], Any]) -> Any:
    """``cache[name]``'s value if it was made for ``key``, else ``make()`` (stored)."""
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make()
    cache[name] = (key, value)
    return value


class LayerPainter:
    """Draws one source's unit layers: frames recorded during a replay's
    walk (:meth:`record`), drawn and put in place by :meth:`resolve`."""

    def __init__(self, schema: SampleSchema, data: UnitData, zeros: dict[str, np.ndarray]):
        self.schema = schema
        self.data = data
        #: Shared read-only zero layers by field name.
        self.zeros = zeros
        self.dtype = {name: a.dtype for name, a in zeros.items()}
        self._density_clip = layers.SCREEN_LAYERS[14].scale - 1
        self._rank = np.zeros(0, np.int8)
        self.batch = DiscBatch()
        self._specs: dict[str, tuple[list[str], tuple]] = {}
        self._frames: dict[int, list[tuple]] = {}
        self._luts: dict[int, np.ndarray] = {}

    def begin(self) -> None:
        """Forgets frames recorded and not resolved (a failed replay's)."""
        self.batch = DiscBatch()
        self._frames, self._luts = {}, {}

    def record(self, obs: dict, look: int, camera: tuple[float, float],
               selected: np.ndarray, loop: int, player_id: int,
               relative_lut: np.ndarray) -> None:
        """Notes that ``obs`` (one player's observation at ``loop``) gets
        the unit layers; :meth:`resolve` fills them.

        ``look``: which of the player's looks (given to :meth:`resolve`)
        the observation shows;
        ``selected``: alive selected unit slots, the same array object
        while the selection is unchanged, never mutated;
        ``relative_lut``: owner id -> player_relative value for this player.
        """
        self._frames.setdefault(player_id, []).append((obs, look, camera, selected, loop))
        self._luts[player_id] = relative_lut

    def resolve(self, geo: ViewGeometry, unit_sets: dict[int, tuple[
            dict[str, np.ndarray], np.ndarray, np.ndarray]]) -> None:
        """Draws the unit layers of every recorded observation and puts
        them in the observation dicts.

        ``unit_sets[player_id]``: the distinct sets of units the player
        sees (``pipeline.sources.events.visible_units.Snapshots.visible_sets``): ``slots``,
        ``rows``, ``xy``, ``owner``, ``done`` (finished) and ``init``
        (construction start loop) of all sets concatenated, each set in
        draw order (:meth:`draw_order`); each set's length; per look, its
        set (windows share layers by it).
        """
        fills = [self._player_jobs(geo, pid, frames, *unit_sets[pid])
                 for pid, frames in self._frames.items()]
        self.batch.resolve()
        for fill in fills:
            fill()
        self._frames, self._luts = {}, {}

    def camera_layer(self, geo: ViewGeometry, camera: tuple[float, float]) -> np.ndarray:
        """Minimap ``camera``: the rectangle the screen shows."""
        x0, y0, x1, y1 = geo.screen_bounds(camera)
        left, top = geo.world_to_minimap_xy(x0, y1)
        right, bottom = geo.world_to_minimap_xy(x1, y0)
        return read_only(rasterize.fill_rect(geo.minimap_res, left, top, right, bottom,
                                             self.dtype["minimap_camera"]))

    # ------------------------------------------------------------ phase 2
    def _player_jobs(self, geo: ViewGeometry, player_id: int, frames: list[tuple],
                     cat: dict[str, np.ndarray], vis_len: np.ndarray,
                     set_of_look: np.ndarray) -> Callable[[], None]:
        """Registers the disc jobs of one player's frames; returns what
        puts the painted layers in place once the batch is resolved."""
        data = self.data
        lut = self._luts[player_id]
        # Distinct (visible set, camera) pairs, in order.
        pair_index: dict[tuple, int] = {}
        pairs: list[tuple] = []
        frame_vis, frame_pair = [], []
        set_of_look = set_of_look.tolist()
        for _, look, camera, _, _ in frames:
            vi = set_of_look[look]
            frame_vis.append(vi)
            frame_pair.append(_intern(pair_index, pairs, (vi, camera), (vi, camera)))
        vis_start = np.cumsum(vis_len) - vis_len
        radius = data.radius[cat["rows"]]
        ids = data.id[cat["rows"]]
        relative = np.take(lut, cat["owner"], mode="clip")

        # Minimap: one job per visible set.
        names_mm, specs_mm = self._base_specs("minimap")
        mm_centers = geo.world_to_minimap(cat["xy"])
        mm_radii = geo.world_to_minimap_distance(radius)
        mm = self.batch.add_many(geo.minimap_res, mm_centers, mm_radii, specs_mm,
                                 (relative, cat["owner"], ids), vis_len)
        # Distinct selections (array identity), -1 for none.
        sel_index: dict[int, int] = {}
        sels: list[np.ndarray] = []
        frame_sel = np.array([_intern(sel_index, sels, id(f[3]), f[3]) if len(f[3]) else -1
                              for f in frames], np.int64)
        mm_sel = self._selected_jobs(geo.minimap_res, "minimap", frame_sel, sels,
                                     np.array(frame_vis, np.int64), vis_start, vis_len,
                                     cat["slots"], mm_centers, mm_radii)

        # Screen: the units of each (visible set, camera) pair near the view.
        pair_vis = np.array([p[0] for p in pairs], np.int64)
        cams = np.array([p[1] for p in pairs], np.float64).reshape(-1, 2)
        unit, pair_of = _ranges(vis_start[pair_vis], vis_len[pair_vis])
        x, y, r = cat["xy"][unit, 0], cat["xy"][unit, 1], radius[unit]
        cx, cy = cams[pair_of, 0], cams[pair_of, 1]
        # geo.screen_bounds, per element (same operations).
        half_w, half_h = geo.camera_width / 2.0, geo.camera_height / 2.0
        near = ((x + r >= cx - half_w) & (x - r < cx + half_w)
                & (y + r > cy - half_h) & (y - r <= cy + half_h))
        unit, pair_of = unit[near], pair_of[near]
        centers = geo.world_to_screen_per_point(x[near], y[near], cx[near], cy[near])
        radii = geo.world_to_screen_distance(r[near])
        pair_len = np.bincount(pair_of, minlength=len(pairs))
        pair_start = np.cumsum(pair_len) - pair_len
        owner, rows = cat["owner"][unit], cat["rows"][unit]
        building = ~cat["done"][unit]
        names_sc, specs_sc = self._base_specs("screen")
        sc = self.batch.add_many(geo.screen_res, centers, radii, specs_sc,
                                 (relative[unit], owner, ids[unit]), pair_len)
        frame_pair_arr = np.array(frame_pair, np.int64)
        sc_sel = self._selected_jobs(geo.screen_res, "screen", frame_sel, sels, frame_pair_arr,
                                     pair_start, pair_len, cat["slots"][unit], centers, radii)
        # Power: the player's finished pylons in view.
        pylons = (rows == data.row["Pylon"]) & (owner == player_id) & ~building
        n_pylons = np.bincount(pair_of[pylons], minlength=len(pairs))
        has_power = n_pylons > 0
        power = self.batch.add_many(
            geo.screen_res, centers[pylons],
            geo.world_to_screen_distance(np.full(int(pylons.sum()), PYLON_POWER_RADIUS)),
            (("cover", self.dtype["screen_power"]),), (), n_pylons[has_power])
        power_job = np.cumsum(has_power) - 1
        # Build progress: frames whose view holds a structure under construction.
        builds = np.bincount(pair_of[building], minlength=len(pairs)) > 0
        prog_frames = np.flatnonzero(builds[frame_pair_arr])
        fp = frame_pair_arr[prog_frames]
        # Finished units paint 0, the background: only those whose disc may
        # share a pixel with a structure under construction (per-axis reach
        # bound) can change the layer, by covering it; the others are left out.
        kept = self._progress_units(building, centers, radii, pair_of, pair_start, pair_len)
        kept_len = np.bincount(pair_of[kept], minlength=len(pairs))
        elem, frame_of = _ranges((np.cumsum(kept_len) - kept_len)[fp], kept_len[fp])
        elem = kept[elem]
        b = building[elem]
        s_rows = rows[elem][b]
        total = data.build_time[s_rows]
        loops = np.array([frames[i][4] for i in prog_frames.tolist()], np.int64)
        elapsed = (loops[frame_of[b]] - cat["init"][unit[elem][b]]).astype(np.float64)
        frac = np.divide(elapsed, total, out=np.full(len(total), 0.5), where=total > 0)
        progress = np.zeros(len(elem), np.int64)
        progress[b] = np.round(np.clip(frac, 0.0, 0.99) * 100)
        prog = self.batch.add_many(
            geo.screen_res, centers[elem], radii[elem],
            (("paint", self.dtype["screen_build_progress"]),), (progress,),
            kept_len[fp])
        prog_job = dict(zip(prog_frames.tolist(), range(len(prog_frames))))

        zeros = self.zeros
        def fill() -> None:
            mm_arrays, sc_arrays = mm.arrays, sc.arrays
            power_arrays = power.arrays[0]
            prog_arrays = prog.arrays[0]
            power_of = [power_arrays[j] if h else zeros["screen_power"]
                        for j, h in zip(power_job.tolist(), has_power.tolist())]
            for i, (obs, vi, pi) in enumerate(zip((f[0] for f in frames), frame_vis,
                                                  frame_pair)):
                for name, arrays in zip(names_mm, mm_arrays):
                    obs[name] = arrays[vi]
                for name, arrays in zip(names_sc, sc_arrays):
                    obs[name] = arrays[pi]
                obs["screen_power"] = power_of[pi]
                j = prog_job.get(i)
                obs["screen_build_progress"] = (zeros["screen_build_progress"] if j is None
                                                else prog_arrays[j])
                obs["minimap_selected"] = mm_sel(i)
                obs["screen_selected"] = sc_sel(i)
        return fill

    @staticmethod
    def _progress_units(building: np.ndarray, centers: np.ndarray, radii: np.ndarray,
                        pair_of: np.ndarray, pair_start: np.ndarray,
                        pair_len: np.ndarray) -> np.ndarray:
        """Indices (ascending, so in draw order per pair) of the screen units
        a build_progress layer must paint: those under construction and
        those whose disc may overlap one of them in the same view (centres
        within the sum of the radii, rounded up, on both axes: a disc's
        pixels lie within its radius of its centre on each axis)."""
        reach = np.ceil(radii)
        build = np.flatnonzero(building)
        cand, which = _ranges(pair_start[pair_of[build]], pair_len[pair_of[build]])
        other = build[which]
        bound = reach[cand] + reach[other]
        near = ((np.abs(centers[cand, 0] - centers[other, 0]) <= bound)
                & (np.abs(centers[cand, 1] - centers[other, 1]) <= bound))
        keep = building.copy()
        keep[cand[near]] = True
        return np.flatnonzero(keep)

    def _selected_jobs(self, res: tuple[int, int], kind: str, frame_sel: np.ndarray,
                       sels: list[np.ndarray], frame_set: np.ndarray, set_start: np.ndarray,
                       set_len: np.ndarray, slots: np.ndarray, centers: np.ndarray,
                       radii: np.ndarray) -> Callable[[int], np.ndarray]:
        """``selected`` layers: discs of the selected units among each
        frame's unit set (set ``frame_set[i]``: units ``set_start`` ..
        ``+ set_len`` of ``slots``, ``centers``, ``radii``; selection
        ``sels[frame_sel[i]]``, none if -1), drawn alone (a disc depends
        only on its unit, so the union is the same as drawing them over the
        others).  Returns frame index -> layer (once resolved)."""
        zero = self.zeros[f"{kind}_selected"]
        selecting = frame_sel >= 0
        if not selecting.any():
            return lambda i: zero
        # Distinct (unit set, selection) combinations.
        combos, inverse = np.unique(frame_set[selecting] * len(sels) + frame_sel[selecting],
                                    return_inverse=True)
        combo_set, combo_sel = combos // len(sels), combos % len(sels)
        frame_combo_a = np.full(len(frame_sel), -1, np.int64)
        frame_combo_a[selecting] = inverse
        frame_combo = frame_combo_a.tolist()
        # Each combo's selected slots, found among its set's units by
        # (set, slot) keys: sorted set keys (each set's slots come in a few
        # ascending runs, which the stable sort merges cheaply).
        sel_len = np.array([len(s) for s in sels], np.int64)
        sel_cat = np.concatenate(sels).astype(np.int64)
        span = int(max(slots.max(initial=0), sel_cat.max())) + 1
        set_of = np.repeat(np.arange(len(set_len), dtype=np.int64), set_len)
        set_keys = set_of * span + slots
        order = np.argsort(set_keys, kind="stable")
        set_keys = set_keys[order]
        pick, combo_of = _ranges((np.cumsum(sel_len) - sel_len)[combo_sel], sel_len[combo_sel])
        keys = combo_set[combo_of] * span + sel_cat[pick]
        pos = np.minimum(np.searchsorted(set_keys, keys), max(len(set_keys) - 1, 0))
        hit = set_keys[pos] == keys if len(set_keys) else np.zeros(len(keys), bool)
        elem, combo_of = order[pos[hit]], combo_of[hit]
        n = np.bincount(combo_of, minlength=len(combo_set))
        drawn = n > 0
        jobs = self.batch.add_many(res, centers[elem], radii[elem],
                                   (("cover", self.dtype[f"{kind}_selected"]),), (),
                                   n[drawn])
        job_of = (np.cumsum(drawn) - 1).tolist()
        drawn_l = drawn.tolist()

        def layer(i: int) -> np.ndarray:
            c = frame_combo[i]
            if c < 0 or not drawn_l[c]:
                return zero
            return jobs.arrays[0][job_of[c]]
        return layer

    def _base_specs(self, kind: str) -> tuple[list[str], tuple]:
        """The base layers' names and :class:`DiscBatch` specs (built once)."""
        hit = self._specs.get(kind)
        if hit is None:
            names = [f"{kind}_player_relative", f"{kind}_player_id", f"{kind}_unit_type"]
            specs = tuple(("paint", self.dtype[n]) for n in names)
            if kind == "screen":
                names.append("screen_unit_density")
                specs += (("count", self.dtype["screen_unit_density"], self._density_clip),)
            hit = self._specs[kind] = (names, specs)
        return hit

    def draw_order(self, rows: np.ndarray) -> np.ndarray:
        """Indices that put units of these type rows in draw order:
        structures, then ground units, then air units on top (stable, so
        ties keep their order)."""
        return np.argsort(self._draw_rank()[rows], kind="stable")

    def _draw_rank(self) -> np.ndarray:
        """Per unit data row: 0 structures, 1 ground units, 2-3 air (draw order).

        Rebuilt when unknown unit types add rows to the table.
        """
        data = self.data
        if len(self._rank) != len(data.names):
            self._rank = (2 * data.is_flying.astype(np.int8)
                          + ~data.is_structure).astype(np.int8)
        return self._rank


def _intern(index: dict, items: list, key: Any, item: Any) -> int:
    """The position of ``key``'s item in ``items``, appending ``item`` the
    first time ``key`` is seen (distinct visible sets, views, selections)."""
    i = index.get(key)
    if i is None:
        i = index[key] = len(items)
        items.append(item)
    return i
