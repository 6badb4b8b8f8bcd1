from __future__ import annotations

import math

import numpy as np
import pytest

from panoptic_perception.geometry.grid import GridExtent, ThingPrior, UncertaintyConfig
from panoptic_perception.geometry.objects import (
    Footprint,
    fit_axes,
    fit_footprint,
    footprint_cells,
    position_covariance,
)

CAR = ThingPrior(length_m=4.4, width_m=1.8, length_sigma_m=0.4)


def _visible_faces(fp: Footprint, camera_xy, n_per_m: int = 20) -> np.ndarray:
    """Points along the footprint edges the camera sees (outward normal facing it)."""
    corners = fp.corners()
    centre = np.array([fp.x_m, fp.y_m])
    pts = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        mid = (a + b) / 2
        if np.dot(mid - centre, np.asarray(camera_xy) - mid) > 0:
            n = max(int(np.linalg.norm(b - a) * n_per_m), 2)
            pts.append(a + (b - a) * np.linspace(0, 1, n)[:, None])
    return np.concatenate(pts)


@pytest.mark.parametrize("truth", [
    Footprint(15.0, 3.0, 4.4, 1.8, math.radians(25.0)),  # oblique: an L of two faces
    Footprint(20.0, 0.0, 4.4, 1.8, 0.0),  # straight ahead: only the rear face
    Footprint(12.0, -1.0, 4.4, 1.8, math.radians(-88.0)),  # crossing: the long side faces us
    Footprint(25.0, -6.0, 4.4, 1.8, math.radians(-10.0)),
])
def test_footprint_recovered_from_the_faces_the_camera_sees(truth):
    cam = (0.0, 0.0)
    fp = fit_footprint(_visible_faces(truth, cam), cam, CAR)
    assert fp.x_m == pytest.approx(truth.x_m, abs=0.05)
    assert fp.y_m == pytest.approx(truth.y_m, abs=0.05)
    assert (fp.length_m, fp.width_m) == pytest.approx((4.4, 1.8), abs=0.05)
    d_heading = (fp.heading_rad - truth.heading_rad + math.pi / 2) % math.pi - math.pi / 2
    assert abs(d_heading) < math.radians(1.5)
    assert -math.pi / 2 <= fp.heading_rad < math.pi / 2


def test_a_longer_object_than_the_prior_keeps_its_seen_length():
    truth = Footprint(15.0, 6.0, 12.0, 2.5, 0.0)  # a bus beside the road, side face visible
    fp = fit_footprint(_visible_faces(truth, (0.0, 0.0)), (0.0, 0.0), CAR)
    assert fp.length_m == pytest.approx(12.0, abs=0.1)
    assert fp.x_m == pytest.approx(15.0, abs=0.1)


def test_axes_fit_prefers_the_rectangle_orientation():
    truth = Footprint(10.0, 2.0, 4.0, 2.0, math.radians(37.0))
    theta = fit_axes(_visible_faces(truth, (0.0, 0.0)))
    assert theta == pytest.approx(math.radians(37.0), abs=math.radians(1.0))


def test_footprint_cells_cover_the_rectangle_area():
    geo = GridExtent().geometry()
    fp = Footprint(20.0, 1.0, 4.4, 1.8, math.radians(30.0))
    cells = footprint_cells(geo, fp)
    assert len(cells) * 0.2 ** 2 == pytest.approx(4.4 * 1.8, rel=0.1)
    x, y = geo.cell_centers()
    xs, ys = x.ravel()[cells], y.ravel()[cells]
    assert np.hypot(xs - 20.0, ys - 1.0).max() <= math.hypot(2.2, 0.9) + 1e-9
    outside = footprint_cells(geo, Footprint(-10.0, 0.0, 4.4, 1.8, 0.0))
    assert outside.size == 0


def test_position_uncertainty_grows_with_range_and_is_largest_along_the_ray():
    unc = UncertaintyConfig(pixel_sigma_px=0.5, pitch_sigma_deg=0.1, height_sigma_m=0.02)
    sigmas = []
    for r in (5.0, 15.0, 30.0, 60.0):
        cov = position_covariance(Footprint(r, 0.0, 4.4, 1.8, 0.0), (0.0, 0.0), 1.65, 721.5, CAR, unc)
        assert cov[0, 0] > cov[1, 1]  # radial (x here) beats lateral
        sigmas.append(math.sqrt(cov[0, 0]))
    assert sigmas == sorted(sigmas)
    # far away the angle term dominates: sigma ~ r^2 / h * (sigma_px / f + sigma_pitch)
    expected_60 = (60.0 ** 2 + 1.65 ** 2) / 1.65 * (0.5 / 721.5 + math.radians(0.1))
    assert sigmas[-1] == pytest.approx(expected_60, rel=0.05)
    rotated = position_covariance(Footprint(0.0, 30.0, 4.4, 1.8, 0.0), (0.0, 0.0), 1.65, 721.5, CAR, unc)
    assert rotated[1, 1] > rotated[0, 0]  # the ray now runs along y
    hidden = position_covariance(Footprint(30.0, 0.0, 4.4, 1.8, 0.0), (0.0, 0.0), 1.65, 721.5, CAR, unc,
                                 contact_visible=False)
    assert hidden[0, 0] > sigmas[2] ** 2


def test_a_footprint_grows_toward_the_camera_only_where_asked():
    """Contacts along a car's side from 6 to 8 m (its far 2 m seen, the rest cut off): grown away from the
    camera it spans 6-10.4 m, toward it 3.6-8 m; across, the seen side stays where it is unless asked."""
    from panoptic_perception.geometry.objects import fit_footprints

    side = np.stack([np.linspace(6.0, 8.0, 21), np.full(21, -2.0)], 1)
    prior = ThingPrior(4.4, 1.8, 0.4)
    usual, toward_along, toward_both = fit_footprints(
        np.concatenate([side] * 3), np.array([21] * 3), (0.0, 0.0), [prior] * 3,
        np.array([[False, False], [True, False], [True, True]]))
    assert (usual.x_m, toward_along.x_m) == (pytest.approx(8.2), pytest.approx(5.8))
    assert usual.y_m == pytest.approx(-2.9) and toward_along.y_m == pytest.approx(-2.9)  # away across: y < -2
    assert toward_both.y_m == pytest.approx(-1.1)
    with pytest.raises(ValueError, match="extend_toward_camera"):
        fit_footprints(side, np.array([21]), (0.0, 0.0), [prior], np.zeros((2, 2), dtype=bool))


def test_corners_of_many_footprints_are_each_ones_corners():
    from panoptic_perception.geometry.objects import footprints_corners

    footprints = [Footprint(10.0, -2.0, 4.4, 1.8, 0.3), Footprint(0.0, 0.0, 0.6, 0.6, -1.2),
                  Footprint(-5.0, 7.0, 12.0, 2.5, 1.5)]
    corners = footprints_corners(footprints)
    assert corners.shape == (3, 4, 2)
    for got, footprint in zip(corners, footprints):
        np.testing.assert_allclose(got, footprint.corners(), rtol=0, atol=1e-12)
    assert footprints_corners([]).shape == (0, 4, 2)
