"""Drawing the engine-free source's unit feature layers (minimap and screen).

Split out of ``pipeline.events_source``, which walks the replay, keeps each
player's knowledge (fog, own units, selection) and assembles samples; this
module only turns what a player sees -- unit slots, type rows, positions, the
camera and the selection -- into pysc2-shaped layers:

* minimap and screen ``player_relative``, ``player_id``, ``unit_type`` and
  ``selected``; screen ``unit_density``, ``build_progress`` and ``power``;
* units are discs of their radius, drawn structures first, then ground
  units, then air units on top; the walk only registers the drawings with a
  ``pipeline.disc_batch.DiscBatch`` and :meth:`LayerPainter.resolve` paints
  them all at the end (placeholders in the observations are replaced then);
* every layer is cached per player (the ``cache`` dict the caller keeps per
  player) on what it depends on, so windows where nothing in view changed
  share the previous (read-only) arrays.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from pipeline import rasterize
from pipeline.disc_batch import DiscBatch, Pending
from pipeline.coords import ViewGeometry
from pipeline.unit_tracker import UnitData, UnitTracker
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
    """Draws one source's unit layers; holds no per-player state (the
    per-player caches are passed in)."""

    def __init__(self, schema: SampleSchema, data: UnitData, zeros: dict[str, np.ndarray]):
        self.schema = schema
        self.data = data
        #: Shared read-only zero layers by field name.
        self.zeros = zeros
        self.dtype = {name: a.dtype for name, a in zeros.items()}
        self._density_clip = layers.SCREEN_LAYERS[14].scale - 1
        self._serial = 0
        self._rank = np.zeros(0, np.int8)
        self.batch = DiscBatch()
        self._specs: dict[str, tuple[list[str], tuple]] = {}

    def begin(self) -> None:
        """Forgets layers registered and not resolved (a failed replay's)."""
        self.batch = DiscBatch()

    def resolve(self, observations: Iterable[dict]) -> None:
        """Draws every layer registered since the last call and puts the
        arrays in place of their placeholders in ``observations`` (an
        iterable of observation dicts)."""
        self.batch.resolve()
        for obs in observations:
            for name, value in obs.items():
                if type(value) is Pending:
                    obs[name] = value.array

    def camera_layer(self, geo: ViewGeometry, camera: tuple[float, float]) -> np.ndarray:
        """Minimap ``camera``: the rectangle the screen shows."""
        x0, y0, x1, y1 = geo.screen_bounds(camera)
        left, top = geo.world_to_minimap_xy(x0, y1)
        right, bottom = geo.world_to_minimap_xy(x1, y0)
        return read_only(rasterize.fill_rect(geo.minimap_res, left, top, right, bottom,
                                             self.dtype["minimap_camera"]))

    def unit_layers(self, cache: dict, tracker: UnitTracker, geo: ViewGeometry, vis: dict,
                    vis_key: Any, camera: tuple[float, float], selected: np.ndarray,
                    sel_key: Any, player_id: int,
                    relative_lut: np.ndarray) -> dict[str, np.ndarray]:
        """Minimap and screen unit layers of one player at one window start.

        ``vis``: the units the player sees (``slots``, ``rows``, ``xy``) in
        draw order (:meth:`draw_order`), unchanged while ``vis_key`` is;
        ``selected``: alive selected unit slots (the same array object while
        they are the same slots), unchanged while ``sel_key`` and the
        tracker's version are;
        ``relative_lut``: owner id -> player_relative value for this player.
        """
        # Same units, camera and selection, and nothing under construction
        # in view (its progress moves with the loop): same layers.
        hit = cache.get("unit_layers")
        if (hit is not None and hit[0] == (vis_key, camera) and hit[1] is selected
                and not hit[2]):
            return hit[3]
        out: dict[str, np.ndarray] = {}
        for kind, cam in (("minimap", None), ("screen", camera)):
            # The units on the layer and where: same units and camera -> same.
            geom = cached(cache, kind + "_geom", (vis_key, cam),
                          lambda: self._geometry(tracker, geo, vis, cam, kind))
            base = cached(cache, kind + "_base", geom["key"],
                          lambda: self._base_layers(cache, geo, geom, kind, player_id,
                                                    relative_lut))
            out.update(base["layers"])
            if kind == "screen":
                out["screen_build_progress"] = self._progress_layer(cache, tracker, geom, base)
            out[f"{kind}_selected"] = cached(
                cache, kind + "_sel", (geom["serial"], sel_key),
                lambda: self._selected_layer(cache, tracker, geom, base, selected, kind))
        building = bool(cache["screen_geom"][1]["building"].any())
        cache["unit_layers"] = ((vis_key, camera), selected, building, out)
        return out

    @staticmethod
    def _selected_mask(cache: dict, tracker: UnitTracker, selected: np.ndarray) -> np.ndarray:
        """bool[unit slots]: selected now (cached per selected-slot array)."""
        hit = cache.get("selected_mask")
        if hit is not None and hit[0] is selected:
            return hit[1]
        mask = np.zeros(len(tracker.alive), bool)
        mask[selected] = True
        cache["selected_mask"] = (selected, mask)
        return mask

    def _geometry(self, tracker: UnitTracker, geo: ViewGeometry, vis: dict,
                  camera, kind: str) -> dict:
        """Units on one layer: slots, type rows, owners, pixel centres, radii."""
        data = self.data
        slots, rows, xy = vis["slots"], vis["rows"], vis["xy"]
        if kind == "screen":
            x0, y0, x1, y1 = geo.screen_bounds(camera)
            r = data.radius[rows]
            x, y = xy[:, 0], xy[:, 1]
            near = (x + r >= x0) & (x - r < x1) & (y + r > y0) & (y - r <= y1)
            slots, rows, xy = slots[near], rows[near], xy[near]
            centers = geo.world_to_screen(xy, camera)
            radii = geo.world_to_screen_distance(r[near])
            building = ~tracker.done[slots]
            extra = building.tobytes()
        else:
            centers = geo.world_to_minimap(xy)
            radii = geo.world_to_minimap_distance(data.radius[rows])
            building = None
            extra = b""
        owner = tracker.owner[slots]
        self._serial += 1
        return {"serial": self._serial, "slots": slots, "rows": rows, "owner": owner,
                "centers": centers, "radii": radii, "building": building,
                "key": (centers.tobytes(), rows.tobytes(), owner.tobytes(), extra)}

    def _selected_layer(self, cache: dict, tracker: UnitTracker, geom: dict, base: dict,
                        selected: np.ndarray, kind: str) -> np.ndarray:
        """Discs of the selected units (drawn alone: no occlusion by others).

        A disc depends only on its unit's centre and radius, so the union
        of the selected ones is the same as drawing them alone; the layer is
        registered with the batch (drawn at :meth:`resolve`).
        """
        if not len(selected):
            return self.zeros[f"{kind}_selected"]
        is_selected = self._selected_mask(cache, tracker, selected)[geom["slots"]]
        if not is_selected.any():
            return self.zeros[f"{kind}_selected"]
        centers, radii = geom["centers"][is_selected], geom["radii"][is_selected]
        key = (centers.tobytes(), radii.tobytes())
        hit = cache.get(kind + "_sel_content")
        if hit is not None and hit[0] == key:
            return hit[1]
        layer = self.batch.add(base["res"], centers, radii,
                               (("cover", self.dtype[f"{kind}_selected"]),))[0]
        cache[kind + "_sel_content"] = (key, layer)
        return layer

    def _progress_layer(self, cache: dict, tracker: UnitTracker, geom: dict,
                        base: dict) -> np.ndarray:
        """Screen build_progress: percent done of structures under construction
        (0 elsewhere): every unit of the base layers painted again in the
        same order with its progress (0 if finished), so each pixel shows its
        top unit's, the same occlusion as the other layers.

        Construction moves every loop, so this layer is keyed on the
        progress values while the other layers stay cached.
        """
        building = geom["building"]
        if not building.any():
            return self.zeros["screen_build_progress"]
        progress = np.zeros(len(building), np.int64)
        progress[building] = np.round(tracker.build_progress(geom["slots"][building]) * 100)
        dtype = self.dtype["screen_build_progress"]
        return cached(
            cache, "screen_progress", (geom["key"], progress.tobytes()),
            lambda: self.batch.add(base["res"], geom["centers"], geom["radii"],
                                   (("paint", dtype),), [progress])[0])

    def _base_layers(self, cache: dict, geo: ViewGeometry, geom: dict, kind: str,
                     player_id: int, relative_lut: np.ndarray) -> dict[str, Any]:
        """player_relative, player_id, unit_type (+ screen density, power)."""
        data = self.data
        rows, owner, centers = geom["rows"], geom["owner"], geom["centers"]
        res = geo.screen_res if kind == "screen" else geo.minimap_res
        # The units come in draw order (later ones on top).
        relative = np.take(relative_lut, owner, mode="clip")
        names, specs = self._base_specs(kind)
        out: dict[str, Any] = dict(zip(names, self.batch.add(
            res, centers, geom["radii"], specs, (relative, owner, data.id[rows]))))
        if kind == "screen":
            pylons = (rows == data.row["Pylon"]) & (owner == player_id) & ~geom["building"]
            if pylons.any():
                power = centers[pylons]
                out["screen_power"] = cached(cache, "screen_power", power.tobytes(),
                                             lambda: self._power(geo, power, res))
            else:
                out["screen_power"] = self.zeros["screen_power"]
        return {"layers": out, "res": res}

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

    def _power(self, geo: ViewGeometry, centers: np.ndarray, res) -> Pending:
        """Pylon power fields of the player's finished pylons in view (some)."""
        radius = geo.world_to_screen_distance(np.full(len(centers), PYLON_POWER_RADIUS))
        return self.batch.add(res, centers, radius, (("cover", self.dtype["screen_power"]),))[0]
