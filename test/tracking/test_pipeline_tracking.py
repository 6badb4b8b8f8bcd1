"""Pipeline + tracking: a synthetic drive's exact panoptic truth through process_panoptic, frame after
frame with the world's ego poses. Every thing keeps one track id in the segments (the video panoptic
convention), tracks are over ground in odom, and the fused grid exists only with a pose."""
from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest

from panoptic_perception.data import synth
from panoptic_perception.errors import InputError
from panoptic_perception.pipeline import Pipeline, PipelineConfig

FRAMES = 20


@pytest.fixture(scope="module")
def drive():
    config = synth.SynthConfig()
    c = config.camera  # half of KITTI's resolution: real occlusion, a quarter of the render time
    config = dataclasses.replace(config, camera=dataclasses.replace(
        c, width=c.width // 2, height=c.height // 2, fx=c.fx / 2, fy=c.fy / 2, cx=c.cx / 2, cy=c.cy / 2))
    world = synth.StreetWorld(config, seed=11)
    return world, [world.render(k) for k in range(FRAMES)]


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(PipelineConfig())


def _run(pipeline, world, frames, with_pose: bool = True):
    pipeline.reset_tracking()
    return [pipeline.process_panoptic(f.panoptic, f.segments, world.camera, f.timestamp_ns,
                                      world.ego_pose(f.index) if with_pose else None) for f in frames]


@pytest.mark.slow
def test_each_thing_keeps_one_track_id_and_parked_things_stand_still(pipeline, drive):
    world, frames = drive
    results = _run(pipeline, world, frames)
    seen = defaultdict(list)  # synthetic segment ids are per thing, per drive: (frame, track id) per thing
    things_of_id = defaultdict(set)
    for k, result in enumerate(results):
        assert result.tracking_frame == "odom"
        for seg in result.segments:
            if seg.track_id:
                seen[seg.id].append((k, seg.track_id))
                things_of_id[seg.track_id].add(seg.id)
    assert len(seen) >= 3, "too few things tracked to say anything"
    assert all(len(things) == 1 for things in things_of_id.values()), dict(things_of_id)  # no id on two things
    # a thing changes its id only when it went unseen long enough for its track to be deleted
    misses = pipeline._tracking.tracker.config.misses_to_delete
    switches = [(thing, a, b) for thing, frames in seen.items() for a, b in zip(frames, frames[1:])
                if a[1] != b[1] and b[0] - a[0] <= misses]
    assert not switches, switches
    # track ids of the panoptic output are the tracks' own, and only confirmed ones are shown
    last = results[-1]
    confirmed = {t.track_id for t in last.tracks if t.status == "confirmed" and t.segment_id}
    assert {s.track_id for s in last.segments if s.track_id} == confirmed
    # over-ground velocity in odom: the truth's, within the tracker's noise
    truth = {o.segment_id: o for o in frames[-1].objects}
    errors = [np.hypot(t.vx_mps - truth[t.segment_id].velocity_mps[0], t.vy_mps - truth[t.segment_id].velocity_mps[1])
              for t in last.tracks if t.status == "confirmed" and t.segment_id in truth and t.hits >= 5]
    assert errors and float(np.median(errors)) < 1.0, errors
    # with a pose the grid is fused; it covers the vehicle's surroundings in odom
    assert last.fused_grid is not None and (last.fused_grid.occupancy >= 0).any()


@pytest.mark.slow
def test_without_a_pose_tracks_live_in_the_vehicle_frame_and_nothing_is_fused(pipeline, drive):
    world, frames = drive
    results = _run(pipeline, world, frames[:6], with_pose=False)
    assert all(r.tracking_frame == "vehicle" and r.fused_grid is None for r in results)
    assert any(s.track_id for s in results[-1].segments)


@pytest.mark.slow
def test_time_going_back_restarts_the_tracks_and_says_why(pipeline, drive):
    world, frames = drive
    results = _run(pipeline, world, frames[:4])
    assert results[-1].tracks and results[-1].tracking_reset is None
    again = pipeline.process_panoptic(frames[0].panoptic, frames[0].segments, world.camera,
                                      frames[0].timestamp_ns, world.ego_pose(0))
    assert again.tracking_reset and "back" in again.tracking_reset
    old_ids = {t.track_id for t in results[-1].tracks}
    assert again.tracks and all(t.track_id not in old_ids and t.hits == 1 for t in again.tracks)


@pytest.mark.slow
def test_unstamped_frames_are_not_tracked_and_bad_poses_are_refused(pipeline, drive):
    world, frames = drive
    pipeline.reset_tracking()
    plain = pipeline.process_panoptic(frames[0].panoptic, frames[0].segments, world.camera)
    assert plain.tracking_frame is None and not plain.tracks and not any(s.track_id for s in plain.segments)
    with pytest.raises(InputError, match="4x4"):
        pipeline.process_panoptic(frames[1].panoptic, frames[1].segments, world.camera, frames[1].timestamp_ns,
                                  np.eye(3))


@pytest.mark.slow
def test_tracking_can_be_switched_off(drive):
    world, frames = drive
    pipeline = Pipeline(PipelineConfig(track=False))
    result = pipeline.process_panoptic(frames[0].panoptic, frames[0].segments, world.camera,
                                       frames[0].timestamp_ns, world.ego_pose(0))
    assert result.tracking_frame is None and result.fused_grid is None


@pytest.mark.slow
def test_bench_tracking_reports_the_stage_with_and_without_a_pose(tmp_path):
    import json

    from panoptic_perception.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "tracking", "--frames", "4", "--passes", "1", "--scale", "0.25", "--objects", "12",
                 "--no-record", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["stage"] for r in rows] == ["tracker + fused grid (ego pose)", "tracker only (no pose)",
                                          "12 objects: tracker + fused grid (ego pose)",
                                          "12 objects: tracker only (no pose)"]
    assert all(r["n"] == 4 and r["median_ms"] > 0 for r in rows[:2])
    # the crowded scene keeps every car tracked: all confirmed after the first frames
    assert all(r["n"] == 30 and r["median_ms"] > 0 and r["confirmed_tracks_median"] == 12 for r in rows[2:])


def test_crowded_scene_stays_in_view_and_moves_as_told():
    from panoptic_perception.benchmarks.tracking import crowded_objects

    scene = crowded_objects(50, 30)
    assert len(scene) == 30 and all(len(objects) == 50 for _, objects in scene)
    for _, objects in scene:
        x = np.array([o.x_m for o in objects])
        assert (x > 5).all() and (x < 60).all()  # within the grid ahead of the ego
    first, last = scene[0], scene[-1]
    over_ground = [(b.x_m + last[0][0, 3] - a.x_m - first[0][0, 3]) / 2.9 for a, b in zip(first[1], last[1])]
    parked = np.abs(over_ground) < 0.5
    assert 15 <= parked.sum() <= 18  # a third parked, the rest at 5-15 m/s
    assert all(4.5 < v < 15.5 for v in np.array(over_ground)[~parked])
