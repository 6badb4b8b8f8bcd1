"""Synthetic street world: exactness of the ground truth against the geometry that drew it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from panoptic_perception.data.synth import (
    StreetWorld,
    SynthConfig,
    WorldSettings,
    small_config,
    stuff_segment_id,
    train_id_of_segment,
)
from panoptic_perception.data.synth import layout as L
from panoptic_perception.data.synth.bev import BevTruth

W, H = 320, 96
SPEED = 8.0


@pytest.fixture(scope="module")
def world() -> StreetWorld:
    # Dense traffic so every exactness test has instances to check.
    cfg = dataclasses.replace(
        small_config(W, H),
        speed_mps=SPEED,
        world=WorldSettings(cars_per_100m=14, parked_cars_per_100m=16, persons_per_100m=20),
    )
    return StreetWorld(cfg, seed=5)


@pytest.fixture(scope="module")
def frames(world):
    return {i: world.render(i) for i in (0, 4)}


TOL_M = 1e-4  # depth is stored as float32: ~1e-7 relative, i.e. < 0.1 mm within 250 m


def _points(frame, world):
    """Vehicle-frame 3D point of every pixel's hit, from its depth and its ray."""
    origin = world.camera.extrinsics.translation()
    return origin + world.pixel_rays.dirs * frame.depth_m.reshape(-1, 1).astype(np.float64)


def test_frame_arrays_are_consistent(frames):
    f = frames[0]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.panoptic.shape == (H, W) and f.semantic.shape == (H, W)
    assert (f.panoptic > 0).all()  # every ray hits something or the sky
    ids = np.vectorize(train_id_of_segment)(f.panoptic)
    assert (ids == f.semantic).all()
    for seg in f.segments:
        mask = f.panoptic == seg.id
        ys, xs = np.nonzero(mask)
        assert seg.area_px == mask.sum() and seg.category_id == train_id_of_segment(seg.id)
        assert seg.bbox_xywh == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert f.rgb.std() > 20  # textured, not blank
    assert {L.ROAD, L.SKY} <= set(np.unique(f.semantic).tolist())


def test_same_seed_same_frame_and_other_seed_differs(world, frames):
    again = StreetWorld(world.config, seed=5).render(0)
    assert np.array_equal(again.rgb, frames[0].rgb) and np.array_equal(again.panoptic, frames[0].panoptic)
    other = StreetWorld(world.config, seed=6).render(0)
    assert not np.array_equal(other.panoptic, frames[0].panoptic)


def test_stuff_pixels_lie_on_their_surfaces(world, frames):
    s = world.section
    f = frames[0]
    pts = _points(f, world)
    sem = f.semantic.ravel()
    y_world = pts[:, 1] + s.ego_y_m
    road = sem == L.ROAD
    assert road.sum() > 100
    np.testing.assert_allclose(pts[road, 2], 0.0, atol=TOL_M)
    assert ((y_world[road] >= -s.road_right_m - TOL_M) & (y_world[road] <= s.road_left_m + TOL_M)).all()
    walk = sem == L.SIDEWALK  # top of the sidewalk or the curb's face
    on_top = np.abs(pts[walk, 2] - s.curb_height_m) < TOL_M
    on_curb = (
        np.abs(np.abs(y_world[walk]) - np.where(y_world[walk] < 0, s.road_right_m, s.road_left_m)) < TOL_M
    )
    assert (on_top | on_curb).all()
    building = sem == L.BUILDING
    facade = np.where(y_world[building] < 0, s.facade_m(-1), s.facade_m(1))
    assert building.sum() > 0
    np.testing.assert_allclose(np.abs(y_world[building]), facade, atol=TOL_M)
    sky = sem == L.SKY
    assert np.isinf(f.depth_m.ravel()[sky]).all()


def test_thing_pixels_lie_on_their_own_3d_box(world, frames):
    f = frames[0]
    pts = _points(f, world)
    pan = f.panoptic.ravel()
    checked = 0
    for obj in f.objects:
        mask = pan == obj.segment_id
        if mask.sum() == 0:
            continue
        c, s_ = np.cos(obj.yaw_rad), np.sin(obj.yaw_rad)
        rel = pts[mask] - np.array(obj.center_m)
        local = np.stack([c * rel[:, 0] + s_ * rel[:, 1], -s_ * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
        assert (np.abs(local) <= np.array(obj.size_m) / 2 + TOL_M).all(), obj
        checked += 1
    assert checked >= 5


def test_ground_footprints_reproject_onto_their_instance(world, frames):
    """Pixels whose ray meets the ground inside a thing's footprint (inner half) show that thing,
    or something nearer to the camera; never the ground beneath it."""
    f = frames[0]
    origin = world.camera.extrinsics.translation()
    dirs = world.pixel_rays.dirs
    pan, depth = f.panoptic.ravel(), f.depth_m.ravel().astype(np.float64)
    checked = 0
    for obj in f.objects:
        if obj.category_id == L.RIDER or obj.visible_px < 30:
            continue
        z_base = obj.center_m[2] - obj.size_m[2] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (z_base - origin[2]) / dirs[:, 2]
        ground = origin + dirs * t[:, None]
        c, s_ = np.cos(obj.yaw_rad), np.sin(obj.yaw_rad)
        rel = ground[:, :2] - np.array(obj.center_m[:2])
        lx, ly = c * rel[:, 0] + s_ * rel[:, 1], -s_ * rel[:, 0] + c * rel[:, 1]
        inside = (t > 0) & (np.abs(lx) <= obj.size_m[0] / 4) & (np.abs(ly) <= obj.size_m[1] / 4)
        if inside.sum() == 0:
            continue
        ok = (pan[inside] == obj.segment_id) | (depth[inside] < t[inside] - TOL_M)
        assert ok.all(), obj
        assert (pan[inside] == obj.segment_id).any()
        # and the footprint's projected corners bound the instance's bottom edge
        uv, z = world.camera.project_vehicle_points(np.c_[obj.footprint(), np.full(4, z_base)])
        if (z > 0).all():
            ys = np.nonzero(f.panoptic == obj.segment_id)[0]
            assert ys.max() <= uv[:, 1].max() + 1.0
        checked += 1
    assert checked >= 3


def test_instance_ids_persist_and_move_consistently(world, frames):
    a, b = frames[0], frames[4]
    dt = world.time_s(4) - world.time_s(0)
    boxes_a = {o.track_id: o for o in a.objects}
    common = [
        o
        for o in b.objects
        if o.track_id in boxes_a and o.visible_px > 0 and boxes_a[o.track_id].visible_px > 0
    ]
    assert len(common) >= 3
    for o in common:
        prev = boxes_a[o.track_id]
        assert (o.segment_id, o.category_id, o.size_m) == (prev.segment_id, prev.category_id, prev.size_m)
        moved = o.center_m[0] - prev.center_m[0]
        assert moved == pytest.approx((o.velocity_mps[0] - SPEED) * dt, abs=1e-6)
        assert o.velocity_mps[0] == pytest.approx(o.speed_mps * np.cos(o.yaw_rad), abs=1e-3)
        assert (b.panoptic == o.segment_id).any()
    seg_ids = [s.id for s in b.segments]
    assert len(seg_ids) == len(set(seg_ids))


def test_bev_truth(world, frames):
    f = frames[0]
    bev = f.bev
    s = world.section
    assert bev.shape == (300, 200) and bev.resolution_m == 0.2
    centres = bev.cell_centres()
    y_world = centres[..., 1] + s.ego_y_m
    assert np.array_equal(bev.drivable, (y_world >= -s.road_right_m) & (y_world <= s.road_left_m))
    assert bev.visible.any() and not bev.visible.all()
    # Cells right in front of the camera and outside its field of view are never visible.
    assert not bev.visible[0, :].any()
    for obj in f.objects:
        cells = bev.footprint_ids == obj.segment_id
        if obj.category_id == L.RIDER or not cells.any():
            continue
        rel = centres - np.array(obj.center_m[:2])
        c, s_ = np.cos(obj.yaw_rad), np.sin(obj.yaw_rad)
        lx, ly = c * rel[..., 0] + s_ * rel[..., 1], -s_ * rel[..., 0] + c * rel[..., 1]
        assert (np.abs(lx[cells]) <= obj.size_m[0] / 2 + 1e-9).all()
        assert (np.abs(ly[cells]) <= obj.size_m[1] / 2 + 1e-9).all()
        # the ground under the solid core of a thing is hidden by the thing
        core = (np.abs(lx) <= obj.size_m[0] / 4) & (np.abs(ly) <= obj.size_m[1] / 4)
        assert not (bev.visible & core).any()


def test_bev_visibility_matches_the_image(world, frames):
    """A visible BEV cell's centre projects onto a pixel showing ground (road, sidewalk, terrain)
    at about the same depth; checked where the ground is large in the image (near cells)."""
    f = frames[0]
    bev = f.bev
    centres = bev.cell_centres()
    z = np.where(bev.drivable, 0.0, world.section.curb_height_m)
    near = bev.visible & (centres[..., 0] < 15.0)
    pts = np.c_[centres[near], z[near]]
    uv, depth = world.camera.project_vehicle_points(pts)
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    sem = f.semantic[v, u]
    share = np.isin(sem, [L.ROAD, L.SIDEWALK, L.TERRAIN]).mean()
    assert share > 0.97


def test_bev_npz_round_trip(tmp_path, frames):
    bev = frames[0].bev
    bev.save_npz(tmp_path / "b.npz")
    back = BevTruth.load_npz(tmp_path / "b.npz")
    for name in ("drivable", "visible", "footprint_ids", "ground_class"):
        assert np.array_equal(getattr(back, name), getattr(bev, name))
    assert (back.resolution_m, back.x_min_m, back.y_min_m) == (0.2, 0.0, -20.0)


def test_empty_street_sees_all_ground_in_view():
    cfg = dataclasses.replace(
        small_config(160, 48),
        world=WorldSettings(
            cars_per_100m=0, parked_cars_per_100m=0, persons_per_100m=0, cyclists_per_100m=0, poles_per_100m=0
        ),
    )
    w = StreetWorld(cfg, seed=1)
    f = w.render(0)
    assert not [s for s in f.segments if s.id >= 100_000]
    road_cells = f.bev.drivable & (f.bev.cell_centres()[..., 0] > 10)
    uv, depth = w.camera.project_vehicle_points(
        np.c_[f.bev.cell_centres()[road_cells], np.zeros(road_cells.sum())]
    )
    in_view = (uv[:, 0] >= 0) & (uv[:, 0] < 159.5) & (uv[:, 1] >= 0) & (uv[:, 1] < 47.5)
    assert f.bev.visible[road_cells][in_view].all()
    assert (f.panoptic == stuff_segment_id(L.ROAD)).any()


def test_pitch_moves_the_horizon_down():
    flat = StreetWorld(small_config(160, 48), seed=2).render(0)
    cfg = small_config(160, 48)
    tilted = StreetWorld(
        dataclasses.replace(cfg, camera=dataclasses.replace(cfg.camera, pitch_deg=-4.0)), seed=2
    ).render(0)
    # looking up (negative pitch) shows more sky
    assert (tilted.semantic == L.SKY).sum() > (flat.semantic == L.SKY).sum()
    assert tilted.camera.extrinsics.pitch_deg == -4.0


def test_bad_config_values_are_config_errors(tmp_path):
    from panoptic_perception.config import from_dict
    from panoptic_perception.errors import ConfigError

    with pytest.raises(ConfigError, match="speed_mps"):
        from_dict(SynthConfig, {"speed_mps": -1})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(SynthConfig, {"camera": {"focal": 3}})
    with pytest.raises(ConfigError, match="start_time"):
        StreetWorld(dataclasses.replace(small_config(64, 32), start_time="yesterday"))
