"""World <-> feature-layer pixel transforms, identical to pysc2 4.0's.

Both observation sources and the action converter place things on the
``screen`` and ``minimap`` feature layers: unit positions from tracker events,
command target points, camera centres.  pysc2 (``features.Features.init_camera``)
defines where a world point lands on those layers; this module is the one
implementation of that geometry in the project, vectorized with numpy.

Coordinate systems and units
----------------------------
* **World units**: the game's map coordinates, x to the right, y *up*, origin
  at the bottom-left corner of the full map.  ``map_size`` is the full map size
  (``game_info.start_raw.map_size`` in pysc2; ``m_mapSizeX``/``m_mapSizeY`` of
  the replay's init data game description), not the playable area.
* The replay file stores positions in fixed point; convert with the constants
  below before calling a transform:

  - game-event target points (``SCmdEvent`` ``m_data.TargetPoint``,
    ``TargetUnit.m_snapshotPoint``) are 1/4096 world units
    (``{'x': 389714, 'y': 173386}`` -> (95.14, 42.33)); their ``z`` too;
  - camera events (``SCameraUpdateEvent.m_target``) are 1/256 world units
    (``{'x': 32576, 'y': 5506}`` -> (127.25, 21.51));
  - tracker ``SUnitBornEvent``/``SUnitInitEvent``/``SUnitDiedEvent`` ``m_x``,
    ``m_y`` are whole world units; so are ``SUnitPositionsEvent`` items
    (checked on builds 2.0.10 - 5.0.8: a Zealot born at (97, 46) is reported
    at (119, 56) 360 loops later on a 152x152 map; scaling by 4 would put
    units off the map).

* **Minimap pixels**: the minimap layer shows the full map, y flipped (row 0
  is the top of the map), scaled by ``minimap_res / max(map_size)`` so the
  map's long side fills the layer; pixel = floor of the scaled point.
* **Screen pixels**: the screen layer shows ``camera_width`` world units
  horizontally around the camera centre; pixels are square, so the visible
  height is ``camera_width * res_y / res_x`` world units (pysc2's documented
  behaviour, and the same as pysc2's code for square screens -- the only kind
  the project uses by default).  The camera centre sits at pixel
  ``(res_x / 2, res_y / 2)``; y is flipped.

Pixels are ``(x, y)`` = (column, row) integer pairs, as pysc2 actions take them.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Divide game-event target point coordinates by this to get world units.
GAME_EVENT_POINT_SCALE = 4096.0
#: Divide camera event (``SCameraUpdateEvent.m_target``) coordinates by this.
CAMERA_EVENT_SCALE = 256.0
#: Multiply ``SUnitPositionsEvent`` item coordinates by this (they are whole
#: world units, like the born/died events' ``m_x``, ``m_y``).
UNIT_POSITIONS_SCALE = 1.0
#: pysc2's default ``camera_width_world_units``.
DEFAULT_CAMERA_WIDTH = 24.0


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or an (x, y) pair")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {pair}")
    return pair  # type: ignore[return-value]


def _points(xy: np.ndarray | Sequence) -> np.ndarray:
    arr = np.asarray(xy, dtype=np.float64)
    if arr.shape[-1:] != (2,):
        raise ValueError(f"points must have a trailing (x, y) axis, got shape {arr.shape}")
    return arr


class ViewGeometry:
    """The screen and minimap geometry of one map at one interface format.

    Args:
      map_size_xy: full map size in world units ``(x, y)``.
      screen_res: screen layer resolution, int or ``(x, y)``.
      minimap_res: minimap layer resolution, int or ``(x, y)``.
      camera_width: world units the screen spans horizontally.
    """

    def __init__(self, map_size_xy: Sequence[float],
                 screen_res: int | Sequence[int] = 64,
                 minimap_res: int | Sequence[int] = 64,
                 camera_width: float = DEFAULT_CAMERA_WIDTH):
        if len(map_size_xy) != 2 or min(map_size_xy) <= 0:
            raise ValueError(f"map_size_xy must be a positive (x, y) pair, got {map_size_xy}")
        if camera_width <= 0:
            raise ValueError("camera_width must be positive")
        self.map_size = np.array([float(map_size_xy[0]), float(map_size_xy[1])])
        self.screen_res = _pair(screen_res, "screen_res")
        self.minimap_res = _pair(minimap_res, "minimap_res")
        self.camera_width = float(camera_width)
        self._minimap_scale = np.array(self.minimap_res, dtype=np.float64) / self.map_size.max()
        # Square pixels: world units per screen pixel is the same on both axes.
        self._screen_scale = self.screen_res[0] / self.camera_width
        self.camera_height = self.camera_width * self.screen_res[1] / self.screen_res[0]
        self._screen_half = np.array(self.screen_res, dtype=np.float64) / 2.0
        self._map_y = float(self.map_size[1])
        self._minimap_scale_x = float(self._minimap_scale[0])
        self._minimap_scale_y = float(self._minimap_scale[1])
        self._half_x = float(self._screen_half[0])
        self._half_y = float(self._screen_half[1])

    # -- minimap --------------------------------------------------------------
    def world_to_minimap(self, xy: np.ndarray | Sequence) -> np.ndarray:
        """World points ``[..., 2]`` -> minimap pixels ``int64[..., 2]`` (x, y)."""
        pts = _points(xy)
        out = np.empty(pts.shape, dtype=np.float64)
        out[..., 0] = pts[..., 0] * self._minimap_scale[0]
        out[..., 1] = (self.map_size[1] - pts[..., 1]) * self._minimap_scale[1]
        return np.floor(out).astype(np.int64)

    def minimap_to_world(self, px: np.ndarray | Sequence) -> np.ndarray:
        """Minimap pixels -> world point at each pixel's centre."""
        p = np.floor(_points(px)) + 0.5
        out = np.empty(p.shape, dtype=np.float64)
        out[..., 0] = p[..., 0] / self._minimap_scale[0]
        out[..., 1] = self.map_size[1] - p[..., 1] / self._minimap_scale[1]
        return out

    # -- screen ---------------------------------------------------------------
    def world_to_screen(self, xy: np.ndarray | Sequence,
                        camera_center: Sequence[float]) -> np.ndarray:
        """World points -> screen pixels ``int64[..., 2]`` for a camera centre.

        Points outside the view give pixels outside ``[0, res)``; check with
        :meth:`in_screen`.
        """
        pts = _points(xy)
        return self.world_to_screen_per_point(pts[..., 0], pts[..., 1],
                                              float(camera_center[0]), float(camera_center[1]))

    def world_to_screen_per_point(self, x: np.ndarray, y: np.ndarray,
                                  cx: np.ndarray | float, cy: np.ndarray | float) -> np.ndarray:
        """:meth:`world_to_screen` with a camera centre per point (arrays
        ``x, y, cx, cy`` of one shape, or scalar centres): many windows'
        views in one call."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        out = np.empty(x.shape + (2,), dtype=np.float64)
        out[..., 0] = (x - cx) * self._screen_scale + self._screen_half[0]
        # Same operation order as pysc2's transform chain (bit-identical floors):
        # world -> top-left (my - y), minus the camera's top-left position.
        my = self.map_size[1]
        out[..., 1] = ((my - y) - (my - cy)) * self._screen_scale + self._screen_half[1]
        return np.floor(out).astype(np.int64)

    def screen_to_world(self, px: np.ndarray | Sequence,
                        camera_center: Sequence[float]) -> np.ndarray:
        """Screen pixels -> world point at each pixel's centre."""
        p = np.floor(_points(px)) + 0.5
        cx, cy = float(camera_center[0]), float(camera_center[1])
        out = np.empty(p.shape, dtype=np.float64)
        out[..., 0] = (p[..., 0] - self._screen_half[0]) / self._screen_scale + cx
        out[..., 1] = cy - (p[..., 1] - self._screen_half[1]) / self._screen_scale
        return out

    def screen_bounds(self, camera_center: Sequence[float]) -> tuple[float, float, float, float]:
        """World rectangle ``(x_min, y_min, x_max, y_max)`` the screen shows.

        A point is on screen iff ``x_min <= x < x_max`` and
        ``y_min < y <= y_max`` (the pixel floor makes the top edge inclusive
        and the bottom edge exclusive because y is flipped).
        """
        cx, cy = float(camera_center[0]), float(camera_center[1])
        half_w = self.camera_width / 2.0
        half_h = self.camera_height / 2.0
        return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)

    def in_screen(self, xy: np.ndarray | Sequence,
                  camera_center: Sequence[float]) -> np.ndarray:
        """Whether world points land on a screen pixel (bool array)."""
        px = self.world_to_screen(xy, camera_center)
        return ((px[..., 0] >= 0) & (px[..., 0] < self.screen_res[0])
                & (px[..., 1] >= 0) & (px[..., 1] < self.screen_res[1]))

    def world_to_screen_distance(self, dist: float | np.ndarray) -> np.ndarray:
        """World distance (e.g. a unit radius) -> screen pixels."""
        return np.asarray(dist, dtype=np.float64) * self._screen_scale

    def world_to_minimap_distance(self, dist: float | np.ndarray) -> np.ndarray:
        """World distance -> minimap pixels (along x)."""
        return np.asarray(dist, dtype=np.float64) * self._minimap_scale[0]

    # -- scalar fast paths (same arithmetic, for per-event use) ----------------
    def world_to_minimap_xy(self, x: float, y: float, clip: bool = False) -> tuple[int, int]:
        """One world point -> minimap pixel; ``clip`` clamps it onto the layer."""
        px = math.floor(x * self._minimap_scale_x)
        py = math.floor((self._map_y - y) * self._minimap_scale_y)
        if clip:
            px = min(max(px, 0), self.minimap_res[0] - 1)
            py = min(max(py, 0), self.minimap_res[1] - 1)
        return px, py

    def world_to_screen_xy(self, x: float, y: float,
                           camera_center: Sequence[float]) -> tuple[int, int]:
        """One world point -> screen pixel (possibly off the layer)."""
        my = self._map_y
        px = math.floor((x - camera_center[0]) * self._screen_scale + self._half_x)
        py = math.floor(((my - y) - (my - camera_center[1])) * self._screen_scale + self._half_y)
        return px, py

    def in_screen_xy(self, x: float, y: float, camera_center: Sequence[float]) -> bool:
        px, py = self.world_to_screen_xy(x, y, camera_center)
        return 0 <= px < self.screen_res[0] and 0 <= py < self.screen_res[1]

    def __repr__(self) -> str:
        return (f"ViewGeometry(map_size_xy={tuple(self.map_size)}, screen_res={self.screen_res}, "
                f"minimap_res={self.minimap_res}, camera_width={self.camera_width})")
