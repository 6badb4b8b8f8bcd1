"""The vectorised projection reproduces the per-object one it replaced, and its batches are order-free.

`projection_reference.npz` holds what the per-object implementation (commit 693cef9: a numpy fit,
covariance and rasterisation per object, torch grids) produced for the scenes below; regenerate
it with `python test/test_geometry_vectorised.py OUT.npz` run against that checkout (this file
imports modules, not the batched names, so that it loads there). That implementation had no
minimum evidence for sparsely seen cells: it is compared with min_pixels_per_cell = 1 (a gain of 1
everywhere), and the default's gain is checked against it separately.
"""
from __future__ import annotations

import functools
import math
import sys
from dataclasses import replace
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from repo_paths import FIXTURES

# modules, not names: this file must import against the per-object implementation to record the reference
from panoptic_perception.geometry import objects, projection
from panoptic_perception.geometry.analytic_scene import Box, Street, render, to_torch
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import GridExtent, ThingPrior, UncertaintyConfig, load_grid_config
from panoptic_perception.geometry.objects import Footprint
from panoptic_perception.labels import load_label_space

REFERENCE = FIXTURES / "projection_reference.npz"
CAR, PERSON, RIDER, TRUCK, BUS, BICYCLE, BUILDING, POLE = 13, 11, 12, 14, 15, 18, 2, 5
OBJECT_FIELDS = ("segment_id", "category", "score", "x_m", "y_m", "length_m", "width_m", "heading_rad",
                 "range_m", "cov_xx", "cov_xy", "cov_yx", "cov_yy", "contact_columns", "contact_visible",
                 "truncated")


@functools.lru_cache(maxsize=1)  # rendered once; projecting does not modify its inputs
def _scenes() -> Dict[str, Tuple[Camera, Dict[str, torch.Tensor]]]:
    """Analytic street scenes: cars at many headings, people, a rider over its bicycle, long vehicles,
    things cut by the image border or beyond the grid, facades and a pole; one with per-pixel
    confidence, partial scores and invalid slots, one at the network's input size."""
    full = Camera()
    small = Camera(full.intrinsics.scaled(640, 192), full.extrinsics)
    street = tuple(Box(x, y, 4.4, 1.8, 1.5, math.radians(yaw), CAR, score=score) for x, y, yaw, score in (
        (9.0, -1.8, 0.0, 1.0), (15.0, 2.0, 5.0, 0.9), (22.0, -4.0, 30.0, 0.8), (30.0, 1.5, -3.0, 1.0),
        (42.0, -2.0, 0.0, 0.7), (8.0, -6.5, 90.0, 1.0), (55.0, 3.0, 0.0, 1.0), (4.5, 3.2, 12.0, 1.0),
        (70.0, -1.0, 0.0, 1.0))) + (
        Box(18.0, 6.5, 0.6, 0.6, 1.75, 0.0, PERSON), Box(26.0, -6.8, 0.6, 0.6, 1.75, 0.0, PERSON, score=0.6),
        Box(11.0, 4.4, 1.8, 0.6, 1.1, math.radians(-8.0), BICYCLE),
        Box(11.0, 4.4, 0.5, 0.5, 1.75, 0.0, RIDER),
        Box(33.0, -6.0, 7.0, 2.5, 3.0, math.radians(-20.0), TRUCK, score=0.85),
        Box(48.0, -5.0, 12.0, 2.55, 3.2, math.radians(60.0), BUS),
        Box(14.0, -7.0, 0.3, 0.3, 5.0, 0.0, POLE, is_thing=False),
        Box(30.0, 10.0, 40.0, 1.0, 10.0, 0.0, BUILDING, is_thing=False),
        Box(30.0, -10.0, 40.0, 1.0, 10.0, 0.0, BUILDING, is_thing=False))
    plain = to_torch(render(full, Street(boxes=street), num_slots=100))
    noisy = dict(plain)
    generator = torch.Generator().manual_seed(7)
    noisy["pixel_confidence"] = torch.rand(plain["segment_map"].shape, generator=generator)
    valid = plain["segment_valid"].clone()
    valid[[2, 9]] = False  # a car and a person the fusion dropped
    noisy["segment_valid"] = valid
    return {"kitti": (full, plain), "confidence": (full, noisy),
            "small": (small, to_torch(render(small, Street(boxes=street[::2]), num_slots=40)))}


def _projector(camera: Camera, grow_cut_toward_camera: bool = True, **overrides) -> projection.GroundProjector:
    """A projector; without grow_cut_toward_camera it grows every footprint away from the camera, as
    the per-object implementation did (footprints cut by the image border are tested against the
    scene's truth instead, in test_geometry_projection.py)."""
    config = replace(load_grid_config(), surface_height_m={"sidewalk": 0.14}, **overrides)
    projector = projection.GroundProjector(camera, config, load_label_space("cityscapes"))
    if not grow_cut_toward_camera and hasattr(projector, "_grow_cut_footprints"):
        projector._grow_cut_footprints = lambda footprints, *args: footprints
    return projector


def _project(camera: Camera, outputs: Dict[str, torch.Tensor], **overrides):
    return _projector(camera, **overrides).project(outputs)


def _object_rows(found) -> np.ndarray:
    rows = [(o.segment_id, o.category, o.score, o.footprint.x_m, o.footprint.y_m, o.footprint.length_m,
             o.footprint.width_m, o.footprint.heading_rad, o.range_m, *o.covariance_xy, o.contact_columns,
             o.contact_visible, o.truncated) for o in found]
    return np.array(rows, dtype=np.float64).reshape(-1, len(OBJECT_FIELDS))


def record_reference(path: str) -> None:
    """Write the reference file from whatever implementation is importable."""
    arrays = {}
    for name, (camera, outputs) in _scenes().items():
        result = _project(camera, outputs, min_pixels_per_cell=1)
        arrays.update({f"{name}/occupancy": result.occupancy.numpy(), f"{name}/class_grid": result.class_grid.numpy(),
                       f"{name}/log_odds": result.log_odds.numpy(), f"{name}/objects": _object_rows(result.objects)})
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kitti", "confidence", "small"])
def test_projection_reproduces_the_per_object_implementation(name, reference):
    camera, outputs = _scenes()[name]
    result = _project(camera, outputs, min_pixels_per_cell=1, grow_cut_toward_camera=False)
    np.testing.assert_array_equal(result.occupancy.numpy(), reference[f"{name}/occupancy"])
    np.testing.assert_array_equal(result.class_grid.numpy(), reference[f"{name}/class_grid"])
    # free evidence is now summed per class and scaled once: float32 rounding, nothing more
    np.testing.assert_allclose(result.log_odds.numpy(), reference[f"{name}/log_odds"], rtol=0, atol=1e-5)
    got, want = _object_rows(result.objects), reference[f"{name}/objects"]
    assert len(got) == len(want) >= 3
    exact = [OBJECT_FIELDS.index(f) for f in ("segment_id", "category", "contact_columns", "contact_visible",
                                               "truncated", "heading_rad", "length_m", "width_m")]
    np.testing.assert_array_equal(got[:, exact], want[:, exact])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["kitti", "confidence", "small"])
def test_sparse_cell_gain_only_decides_cells_the_reference_left_unknown(name, reference):
    """The default min_pixels_per_cell scales the evidence of sparsely seen cells and nothing else:
    objects, densely seen cells and every cell the reference decided stay as they were."""
    camera, outputs = _scenes()[name]
    projector = _projector(camera, grow_cut_toward_camera=False)
    assert projector.config.min_pixels_per_cell > 1
    result = projector.project(outputs)
    height_px, width_px = outputs["segment_map"].shape
    sparse = projector.lookup(int(width_px), int(height_px)).cell_gain.numpy().reshape(result.occupancy.shape) > 1
    log_odds, want = result.log_odds.numpy(), reference[f"{name}/log_odds"]
    np.testing.assert_allclose(log_odds[~sparse], want[~sparse], rtol=0, atol=1e-5)
    changed = np.abs(log_odds - want) > 1e-5
    assert changed.sum() > 1000  # far cells of every scene are sparse and carry evidence
    occupancy, want_occupancy = result.occupancy.numpy(), reference[f"{name}/occupancy"]
    decided = want_occupancy != -1
    np.testing.assert_array_equal(occupancy[decided], want_occupancy[decided])
    np.testing.assert_array_equal(result.class_grid.numpy()[decided], reference[f"{name}/class_grid"][decided])
    np.testing.assert_allclose(_object_rows(result.objects), reference[f"{name}/objects"], rtol=1e-9, atol=1e-12)
    if name == "confidence":  # per-pixel confidences below 1: sparse cells the reference left unknown are free now
        assert ((want_occupancy == -1) & (occupancy == 0)).sum() > 1000


def test_reference_scenes_exercise_every_branch(reference):
    """The reference is only worth its name if the scenes reach riders, hidden contacts and borders."""
    rows = np.concatenate([reference[f"{n}/objects"] for n in ("kitti", "confidence", "small")])
    column = {f: rows[:, i] for i, f in enumerate(OBJECT_FIELDS)}
    assert RIDER in column["category"] and BICYCLE in column["category"]
    assert (column["truncated"] == 1).any() and (column["contact_visible"] == 0).any()
    assert len(np.unique(np.round(column["heading_rad"], 3))) >= 5


# -- batched object geometry -------------------------------------------------------------------


def _contact_groups(seed: int, n_groups: int) -> Tuple[List[np.ndarray], List[ThingPrior]]:
    """L-shaped point sets along rectangles' near faces (noisy, some on a 0.1 m lattice) of many sizes."""
    rng = np.random.default_rng(seed)
    groups, priors = [], []
    for k in range(n_groups):
        n = int(rng.choice([1, 2, 3, 5, 8, 33, 64, 65, 120, 283]))
        truth = Footprint(rng.uniform(2, 60), rng.uniform(-15, 15), rng.uniform(0.5, 12), rng.uniform(0.5, 3),
                          rng.uniform(-1.5, 1.5))
        c = truth.corners()
        t, face = rng.uniform(0, 1, n), rng.integers(0, 2, n)
        pts = np.where(face[:, None] == 0, c[0] + (c[1] - c[0]) * t[:, None], c[1] + (c[2] - c[1]) * t[:, None])
        pts = pts + rng.normal(0, 0.02, pts.shape)
        groups.append(np.round(pts, 1) if k % 4 == 0 else pts)
        priors.append(ThingPrior(rng.uniform(0.5, 8), rng.uniform(0.5, 3), 0.3))
    return groups, priors


def _reference_fit_axes(pts: np.ndarray) -> float:
    """The per-object closeness search the batched one replaced."""
    if len(pts) > 64:
        pts = pts[np.unique(np.linspace(0, len(pts) - 1, 64).round().astype(np.int64))]
    if len(pts) < 3:
        if len(pts) == 2 and np.linalg.norm(pts[1] - pts[0]) > 1e-6:
            d = pts[1] - pts[0]
            return float(math.atan2(d[1], d[0]) % (math.pi / 2))
        return 0.0
    angles = np.deg2rad(np.arange(0.0, 90.0, 1.0))
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    p1 = c * pts[None, :, 0] + s * pts[None, :, 1]
    p2 = -s * pts[None, :, 0] + c * pts[None, :, 1]
    d1 = np.minimum(p1.max(1, keepdims=True) - p1, p1 - p1.min(1, keepdims=True))
    d2 = np.minimum(p2.max(1, keepdims=True) - p2, p2 - p2.min(1, keepdims=True))
    return float(angles[int(np.argmax((1.0 / np.maximum(np.minimum(d1, d2), 0.05)).sum(1)))])


def test_batched_axes_fit_picks_the_per_object_orientation():
    groups, _ = _contact_groups(seed=1, n_groups=300)
    batched = objects.fit_axes_batch(np.concatenate(groups), np.array([len(g) for g in groups]))
    np.testing.assert_array_equal(batched, [_reference_fit_axes(g) for g in groups])


def test_a_batch_fits_each_object_as_if_it_were_alone():
    groups, priors = _contact_groups(seed=2, n_groups=120)
    camera_xy = (0.3, -0.1)
    batched = objects.fit_footprints(np.concatenate(groups), np.array([len(g) for g in groups]), camera_xy, priors)
    assert batched == [objects.fit_footprint(g, camera_xy, p) for g, p in zip(groups, priors)]
    assert [objects.fit_axes(g) for g in groups] == objects.fit_axes_batch(np.concatenate(groups),
                                                                   np.array([len(g) for g in groups])).tolist()


def test_fit_footprints_rejects_groups_that_do_not_add_up():
    with pytest.raises(ValueError, match="groups"):
        objects.fit_footprints(np.zeros((5, 2)), np.array([2, 2]), (0.0, 0.0), [ThingPrior(), ThingPrior()])
    assert objects.fit_footprints(np.zeros((0, 2)), np.array([], dtype=np.int64), (0.0, 0.0), []) == []


def test_footprint_cells_are_the_cell_centres_inside_each_rectangle():
    geometry = GridExtent().geometry()
    x, y = geometry.cell_centers()
    footprints = [Footprint(20.0, 1.0, 4.4, 1.8, math.radians(30.0)), Footprint(5.0, -19.9, 12.0, 2.5, 1.2),
                  Footprint(-10.0, 0.0, 4.4, 1.8, 0.0), Footprint(59.9, 3.0, 0.6, 0.6, -0.7),
                  Footprint(20.5, 1.5, 4.4, 1.8, 0.0)]  # overlaps the first
    cells, owner = objects.footprints_cells(geometry, footprints)
    for k, fp in enumerate(footprints):
        c, s = math.cos(fp.heading_rad), math.sin(fp.heading_rad)
        dx, dy = x - fp.x_m, y - fp.y_m
        inside = (np.abs(c * dx + s * dy) <= fp.length_m / 2) & (np.abs(-s * dx + c * dy) <= fp.width_m / 2)
        np.testing.assert_array_equal(cells[owner == k], np.flatnonzero(inside.ravel()))
        np.testing.assert_array_equal(objects.footprint_cells(geometry, fp), np.flatnonzero(inside.ravel()))
    assert (owner == 2).sum() == 0 and np.all(np.diff(owner) >= 0)


def test_batched_covariances_equal_one_at_a_time():
    unc = UncertaintyConfig(pixel_sigma_px=0.5, pitch_sigma_deg=0.1, height_sigma_m=0.02)
    footprints = [Footprint(r * math.cos(a), r * math.sin(a), 4.4, 1.8, 0.0)
                  for r, a in ((5.0, 0.0), (30.0, 0.4), (60.0, -1.0), (12.0, 2.0))]
    priors = [ThingPrior(4.4, 1.8, 0.4), ThingPrior(0.6, 0.6, 0.2)] * 2
    visible = [True, False, True, False]
    batched = objects.position_covariances(footprints, (0.2, 0.0), 1.65, 721.5, priors, unc, visible)
    for k, (fp, prior) in enumerate(zip(footprints, priors)):
        single = objects.position_covariance(fp, (0.2, 0.0), 1.65, 721.5, prior, unc, visible[k])
        np.testing.assert_array_equal(batched[k], single)
        np.testing.assert_allclose(single, single.T, rtol=0, atol=0)
    assert np.all(np.linalg.eigvalsh(batched) > 0)


# -- host and device paths ---------------------------------------------------------------------


def test_boundary_scan_and_gathers_agree_between_host_and_device_paths():
    """On CPU the boundary scan runs in numpy; the torch path (used on GPUs) must find the same pixels."""
    generator = torch.Generator().manual_seed(3)
    seg = torch.randint(0, 4, (60, 90), generator=generator, dtype=torch.int32)
    seg[20:40, 10:50] = 7  # long runs, as real masks have
    host = projection._rows_differ(seg)
    device = projection._rows_differ(seg, on_host=False)
    np.testing.assert_array_equal(host, device)
    values = seg.numpy()
    np.testing.assert_array_equal(host, np.flatnonzero(values[:-1] != values[1:]))
    index = np.array([0, 5, 89, 90, 5399], dtype=np.int64)
    np.testing.assert_array_equal(projection._take(seg, index), projection._take(seg, index, on_host=False))
    np.testing.assert_array_equal(projection._take(seg, index), values.reshape(-1)[index])


if __name__ == "__main__":
    record_reference(sys.argv[1])
