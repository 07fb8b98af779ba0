"""pipeline.coords against pysc2 4.0's own ``features.Features`` transforms."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import coords
from pipeline.pysc2_compat import apply

apply()
from pysc2.lib import features, point  # noqa: E402


def _pysc2_features(map_size, screen, minimap, camera_width=24):
    aif = features.AgentInterfaceFormat(
        feature_dimensions=features.Dimensions(screen=screen, minimap=minimap),
        raw_resolution=minimap,
        camera_width_world_units=camera_width,
        use_camera_position=True)
    return features.Features(aif, map_size=point.Point(*map_size))


CASES = [
    ((176, 152), 64, 64, 24),
    ((152, 176), 84, 64, 24),
    ((200, 200), 64, 32, 24),
    ((136, 144), 32, 64, 30),
]


@pytest.mark.parametrize("map_size,screen,minimap,camera_width", CASES)
def test_minimap_matches_pysc2(map_size, screen, minimap, camera_width):
    feats = _pysc2_features(map_size, screen, minimap, camera_width)
    geo = coords.ViewGeometry(map_size, screen, minimap, camera_width)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(2000, 2)) * np.array(map_size)
    # Include exact pixel borders, where floor rounding matters most.
    edges = np.stack(np.meshgrid(np.arange(0, map_size[0] + 1, 0.25),
                                 [0.0, 1.0, map_size[1] / 2, float(map_size[1])]), -1).reshape(-1, 2)
    pts = np.concatenate([pts, edges])
    ours = geo.world_to_minimap(pts)
    theirs = np.array([tuple(feats._world_to_minimap_px.fwd_pt(point.Point(*p))) for p in pts])
    np.testing.assert_array_equal(ours, theirs)
    back = geo.minimap_to_world(ours[:50])
    theirs_back = np.array([tuple(feats._world_to_minimap_px.back_pt(point.Point(*p)))
                            for p in ours[:50]])
    np.testing.assert_allclose(back, theirs_back)


@pytest.mark.parametrize("map_size,screen,minimap,camera_width", CASES)
def test_screen_matches_pysc2(map_size, screen, minimap, camera_width):
    feats = _pysc2_features(map_size, screen, minimap, camera_width)
    geo = coords.ViewGeometry(map_size, screen, minimap, camera_width)
    rng = np.random.default_rng(1)
    for center in [(127.25, 21.5), (30.0, 40.0), (map_size[0] / 2, map_size[1] / 2)]:
        feats._update_camera(point.Point(*center))
        offsets = rng.uniform(-camera_width, camera_width, size=(500, 2))
        grid = np.stack(np.meshgrid(np.arange(-13, 13, 0.125), [-2.0, 0.0, 0.375, 5.0]),
                        -1).reshape(-1, 2)
        pts = np.array(center) + np.concatenate([offsets, grid])
        ours = geo.world_to_screen(pts, center)
        theirs = np.array([tuple(feats._world_to_feature_screen_px.fwd_pt(point.Point(*p)))
                           for p in pts])
        np.testing.assert_array_equal(ours, theirs)
        inside = geo.in_screen(pts, center)
        expected = ((theirs >= 0) & (theirs < screen)).all(axis=1)
        np.testing.assert_array_equal(inside, expected)
        back = geo.screen_to_world(ours[:50], center)
        theirs_back = np.array([tuple(feats._world_to_feature_screen_px.back_pt(point.Point(*p)))
                                for p in ours[:50]])
        np.testing.assert_allclose(back, theirs_back)


def test_non_square_screen_uses_square_pixels():
    # pysc2's documentation: screen (64, 48), camera width 24 -> 24 x 18 world units.
    geo = coords.ViewGeometry((100, 100), (64, 48), 64, 24)
    assert geo.camera_height == 18.0
    assert geo.screen_bounds((50, 50)) == (38.0, 41.0, 62.0, 59.0)
    assert tuple(geo.world_to_screen([50, 50], (50, 50))) == (32, 24)
    assert tuple(geo.world_to_screen([38.0, 59.0], (50, 50))) == (0, 0)
    assert geo.in_screen([[38.0, 59.0], [61.99, 41.01], [62.0, 50.0], [50.0, 41.0]],
                         (50, 50)).tolist() == [True, True, False, False]


def test_replay_unit_constants():
    assert 32576 / coords.CAMERA_EVENT_SCALE == 127.25
    assert 5506 / coords.CAMERA_EVENT_SCALE == pytest.approx(21.51, abs=0.01)
    assert 389714 / coords.GAME_EVENT_POINT_SCALE == pytest.approx(95.145, abs=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        coords.ViewGeometry((0, 10))
    with pytest.raises(ValueError):
        coords.ViewGeometry((10, 10), screen_res=(64, 64, 3))
    with pytest.raises(ValueError):
        coords.ViewGeometry((10, 10)).world_to_minimap(np.zeros((3, 3)))
