"""Multi-object tracker: the Kalman filter against textbook solutions, the tracker on synthetic streams."""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import mahalanobis

from panoptic_perception.config import from_dict
from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.geometry.grid import load_grid_config
from panoptic_perception.geometry.objects import Footprint, GroundObject, position_covariances
from panoptic_perception.labels import load_label_space
from panoptic_perception.tracking import kalman
from panoptic_perception.tracking.config import TrackerConfig, load_tracker_config
from panoptic_perception.tracking.tracker import CONFIRMED, LOST, TENTATIVE, Track, Tracker

DT_NS = 100_000_000  # 10 Hz
T0_NS = 1_317_000_000_000_000_000
CFG = load_tracker_config()
M = CFG.misses_to_delete
N = CFG.hits_to_confirm


def _obj(x_m: float, y_m: float, class_name: str = "car", segment_id: int = 1, sigma_m: float = 0.1,
         score: float = 0.8, heading_rad: float = 0.0, length_m: float = 4.4, width_m: float = 1.8,
         truncated: bool = False, category: int = 13) -> GroundObject:
    return GroundObject(segment_id=segment_id, category=category, class_name=class_name, score=score,
                        footprint=Footprint(x_m, y_m, length_m, width_m, heading_rad), range_m=math.hypot(x_m, y_m),
                        covariance_xy=(sigma_m ** 2, 0.0, 0.0, sigma_m ** 2), contact_columns=10,
                        contact_visible=True, truncated=truncated)


def _pose(x_m: float, y_m: float = 0.0, yaw_rad: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:2, 3] = x_m, y_m
    return pose


def _stamp(frame: int) -> int:
    return T0_NS + frame * DT_NS


def _by_segment(tracks: Iterable[Track]) -> Dict[int, Track]:
    return {t.segment_id: t for t in tracks if t.segment_id}


class _IdScore:
    """Identity switches of confirmed tracks against truth ids (CLEAR MOT's IDSW, matches given by segment ids)."""

    def __init__(self) -> None:
        self.last: Dict[int, int] = {}
        self.switches = 0
        self.matches = 0

    def add(self, truth_of_segment: Dict[int, int], tracks: Iterable[Track]) -> None:
        for segment_id, track in _by_segment(tracks).items():
            if track.status != CONFIRMED or segment_id not in truth_of_segment:
                continue
            truth = truth_of_segment[segment_id]
            self.matches += 1
            if truth in self.last and self.last[truth] != track.track_id:
                self.switches += 1
            self.last[truth] = track.track_id


# ---------------------------------------------------------------------------------------------- Kalman


def test_transition_is_the_matrix_exponential_and_noise_the_textbook_closed_form():
    dt, sigma = 0.1, 1.7
    a = np.zeros((4, 4))
    a[0, 2] = a[1, 3] = 1.0  # d/dt position = velocity
    np.testing.assert_allclose(kalman.transition_matrix(dt), scipy.linalg.expm(a * dt), atol=1e-12)
    # Bar-Shalom et al. 2001, eq. 6.3.3-4: per axis Q = [[dt^4/4, dt^3/2], [dt^3/2, dt^2]] sigma^2
    q = kalman.process_noise(dt, np.array([sigma, 2 * sigma]))
    per_axis = np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
    for k, s in enumerate((sigma, 2 * sigma)):
        for axis in (0, 1):
            idx = np.ix_([axis, axis + 2], [axis, axis + 2])
            np.testing.assert_allclose(q[k][idx], per_axis * s ** 2, rtol=1e-12)
        assert q[k][0, 1] == q[k][0, 3] == q[k][2, 3] == 0.0  # the axes are independent
    # the prediction of a covariance is F P F^T + Q
    p0 = np.diag([0.3, 0.4, 2.0, 3.0])[None]
    _, p1 = kalman.predict(np.zeros((1, 4)), p0, dt, np.array([sigma]))
    f = scipy.linalg.expm(a * dt)
    np.testing.assert_allclose(p1[0], f @ p0[0] @ f.T + q[0], rtol=1e-12)


def test_steady_state_covariance_and_gain_solve_the_discrete_riccati_equation():
    dt, sigma = 0.1, 2.0
    r = np.array([[0.5, 0.1], [0.1, 0.3]])
    f = kalman.transition_matrix(dt)
    q = kalman.process_noise(dt, np.array([sigma]))[0]
    h = kalman.MEASUREMENT_MATRIX
    # the a-priori steady-state covariance X solves X = F X F^T - F X H^T (H X H^T + R)^-1 H X F^T + Q
    x_dare = scipy.linalg.solve_discrete_are(f.T, h.T, q, r)
    k_dare = x_dare @ h.T @ np.linalg.inv(h @ x_dare @ h.T + r)
    x, p = kalman.initial_state(np.zeros((1, 2)), r[None], np.array([10.0]))
    for _ in range(400):
        x, p_prior = kalman.predict(x, p, dt, np.array([sigma]))
        x, p = kalman.update(x, p_prior, np.zeros((1, 2)), r[None])
    np.testing.assert_allclose(p_prior[0], x_dare, rtol=1e-8, atol=1e-12)
    gain = p_prior[0] @ h.T @ np.linalg.inv(h @ p_prior[0] @ h.T + r)
    np.testing.assert_allclose(gain, k_dare, rtol=1e-8, atol=1e-12)


def test_without_process_noise_the_filter_is_the_weighted_least_squares_line():
    rng = np.random.default_rng(3)
    t = np.arange(12) * 0.1
    sigma = rng.uniform(0.1, 1.0, t.size)
    truth = np.stack([2.0 + 3.0 * t, -1.0 + 0.5 * t], 1)
    z = truth + rng.normal(size=truth.shape) * sigma[:, None]
    r = (sigma ** 2)[:, None, None] * np.eye(2)
    x, p = kalman.initial_state(np.zeros((1, 2)), 1e10 * np.eye(2)[None], np.array([1e5]))  # a diffuse prior
    for k in range(t.size):
        if k:
            x, p = kalman.predict(x, p, t[k] - t[k - 1], np.array([0.0]))
        x, p = kalman.update(x, p, z[k:k + 1], r[k:k + 1])
    for axis in (0, 1):
        slope, intercept = np.polyfit(t, z[:, axis], 1, w=1.0 / sigma)
        assert x[0, axis] == pytest.approx(intercept + slope * t[-1], abs=1e-6)
        assert x[0, axis + 2] == pytest.approx(slope, abs=1e-5)


def test_update_covariance_is_the_information_form_and_distances_are_mahalanobis():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4))
    p = a @ np.swapaxes(a, 1, 2) + np.eye(4)
    b = rng.normal(size=(3, 2, 2))
    r = b @ np.swapaxes(b, 1, 2) + 0.1 * np.eye(2)
    x = rng.normal(size=(3, 4))
    z = rng.normal(size=(3, 2))
    _, p_post = kalman.update(x, p, z, r)
    h = kalman.MEASUREMENT_MATRIX
    for k in range(3):
        info = np.linalg.inv(p[k]) + h.T @ np.linalg.inv(r[k]) @ h
        np.testing.assert_allclose(p_post[k], np.linalg.inv(info), rtol=1e-9, atol=1e-12)
    d2, log_det = kalman.mahalanobis_sq(x, p, z, r)
    for i in range(3):
        for j in range(3):
            s = p[i, :2, :2] + r[j]
            assert d2[i, j] == pytest.approx(mahalanobis(z[j], x[i, :2], np.linalg.inv(s)) ** 2, rel=1e-9)
            assert log_det[i, j] == pytest.approx(np.linalg.slogdet(s)[1], rel=1e-9)


# ---------------------------------------------------------------------------------------------- tracker


def _run(stream: List[List[GroundObject]], tracker: Optional[Tracker] = None,
         poses: Optional[List[np.ndarray]] = None) -> Tuple[Tracker, List[List[Track]]]:
    tracker = tracker if tracker is not None else Tracker(CFG)
    out = []
    for k, objects in enumerate(stream):
        out.append(tracker.update(objects, _stamp(k), None if poses is None else poses[k]))
    return tracker, out


def test_crossing_targets_of_one_class_keep_their_ids():
    rng = np.random.default_rng(1)
    stream = []
    for k in range(40):  # two cars crossing in an X at t = 2.05 s, 0.5 m apart at the nearest frames
        t = k * 0.1
        a = (5 * t, -10.25 + 5 * t)
        b = (5 * t, 10.25 - 5 * t)
        stream.append([_obj(*(np.add(a, rng.normal(0, 0.1, 2))), segment_id=1, heading_rad=math.pi / 4),
                       _obj(*(np.add(b, rng.normal(0, 0.1, 2))), segment_id=2, heading_rad=-math.pi / 4)])
    score = _IdScore()
    tracker = Tracker(CFG)
    for k, objects in enumerate(stream):
        score.add({1: 1, 2: 2}, tracker.update(objects, _stamp(k)))
    assert score.switches == 0
    assert score.matches == 2 * (40 - N + 1)
    assert sorted(score.last.values()) == [1, 2]  # the two tracks born in the first frame, never replaced


def test_two_classes_at_the_same_place_never_swap():
    rng = np.random.default_rng(2)
    stream = []
    for k in range(40):
        t = k * 0.1
        # a rider on its bicycle (the same place), crossed at t = 2 s by a pedestrian at the same place
        bike = np.array([6 * t, 0.0]) + rng.normal(0, 0.3, 2)
        walker = np.array([12.0, -3.0 + 1.5 * t]) + rng.normal(0, 0.3, 2)
        stream.append([_obj(*bike, "bicycle", 1, 0.3, category=18), _obj(*(bike + 0.05), "rider", 2, 0.3, category=12),
                       _obj(*walker, "person", 3, 0.3, category=11, length_m=0.6, width_m=0.6)])
    score = _IdScore()
    tracker = Tracker(CFG)
    classes = {}
    for k, objects in enumerate(stream):
        tracks = tracker.update(objects, _stamp(k))
        score.add({1: 1, 2: 2, 3: 3}, tracks)
        classes.update({t.track_id: t.class_name for t in tracks})
    assert score.switches == 0
    assert {classes[score.last[truth]] for truth in (1, 2, 3)} == {"bicycle", "rider", "person"}
    assert len(classes) == 3


def _straight_car(frames: int, gap: range = range(0)) -> List[List[GroundObject]]:
    return [[] if k in gap else [_obj(10.0 + 1.0 * k, 2.0, segment_id=7)] for k in range(frames)]


def test_a_target_missed_for_fewer_than_m_frames_keeps_its_id_and_coasts():
    tracker, out = _run(_straight_car(30, gap=range(10, 10 + M - 1)))
    assert {t.track_id for tracks in out for t in tracks} == {1}
    coasting = out[10 + M - 2][0]
    assert coasting.status == LOST and coasting.misses == M - 1 and coasting.segment_id == 0
    assert coasting.x_m == pytest.approx(10.0 + (10 + M - 2), abs=0.05)  # predicted on at 10 m/s
    assert out[-1][0].status == CONFIRMED and out[-1][0].segment_id == 7


@pytest.mark.parametrize("missed", [M, M + 1])
def test_a_target_missed_for_m_frames_or_more_comes_back_with_a_new_id(missed):
    tracker, out = _run(_straight_car(30, gap=range(10, 10 + missed)))
    assert out[10 + M - 2] and not out[10 + M - 1]  # deleted at the M-th consecutive miss
    assert [t.track_id for t in out[-1]] == [2]


def test_velocity_converges_on_noiseless_constant_velocity_data():
    for velocity, cls in (((8.0, 0.0), "car"), ((-10.0, 1.0), "car"), ((1.0, 1.0), "person"), ((0.0, 0.0), "car")):
        stream = [[_obj(5.0 + velocity[0] * k * 0.1, -3.0 + velocity[1] * k * 0.1, cls)] for k in range(11)]
        _, out = _run(stream)
        track = out[-1][0]
        assert math.hypot(track.vx_mps - velocity[0], track.vy_mps - velocity[1]) < 0.1, (velocity, track)


def test_a_parked_car_is_still_in_odom_while_the_ego_drives_and_turns():
    odom_car = np.array([30.0, 3.0, 0.0, 1.0])
    yaws = [0.2 * k * 0.1 for k in range(30)]  # 10 m/s forward, turning left at 0.2 rad/s
    poses = [_pose(10.0 * k * 0.1, 0.5 * k * 0.1, yaw) for k, yaw in enumerate(yaws)]
    stream = []
    for pose, yaw in zip(poses, yaws):
        x, y = (np.linalg.inv(pose) @ odom_car)[:2]
        stream.append([_obj(x, y, heading_rad=-yaw)])  # the car is parked along odom's x
    tracker, out = _run(stream, poses=poses)
    assert tracker.frame == "odom" and tracker.ego_motion_known
    track = out[-1][0]
    assert track.speed_mps < 0.05 and not track.is_moving
    assert track.position == pytest.approx((30.0, 3.0), abs=0.05)
    assert abs(track.heading_rad) < 0.05  # the footprint's axis, carried into odom
    in_vehicle = track.transformed(np.linalg.inv(poses[-1]))  # and back where the ego saw it last
    assert in_vehicle.position == pytest.approx((stream[-1][0].x_m, stream[-1][0].y_m), abs=0.05)
    assert in_vehicle.heading_rad == pytest.approx(-yaws[-1], abs=0.05)


def test_without_a_pose_velocities_are_relative_to_the_ego():
    stream = [[_obj(30.0 - 10.0 * k * 0.1, 3.0)] for k in range(20)]  # parked, ego at 10 m/s
    tracker, out = _run(stream)
    assert tracker.frame == "vehicle" and not tracker.ego_motion_known
    assert out[-1][0].velocity == pytest.approx((-10.0, 0.0), abs=0.1)
    assert out[-1][0].is_moving


def test_births_need_n_consecutive_hits():
    stream = [[_obj(10.0, 0.0)] if k < N - 1 else [] for k in range(N + 1)]  # seen N - 1 times, then gone
    _, out = _run(stream)
    assert [t.status for t in out[N - 2]] == [TENTATIVE]
    assert out[N - 1] == []  # a tentative track dies at its first miss
    _, out = _run([[_obj(10.0, 0.0)]] * N)
    assert [t.status for t in out[N - 2]] == [TENTATIVE] and [t.status for t in out[N - 1]] == [CONFIRMED]
    assert out[N - 1][0].hits == N and out[N - 1][0].age_frames == N


def test_a_sure_birth_is_confirmed_at_once_and_an_unsure_one_waits():
    """Score at least confirm_at_birth_min_score, contact seen, not cut, placed within
    confirm_at_birth_max_sigma_m: confirmed in its first frame. Anything less waits for N hits."""
    sure = CFG.confirm_at_birth_min_score
    assert sure is not None and N >= 2
    far_sigma_m = CFG.confirm_at_birth_max_sigma_m * 1.5
    births = [_obj(10.0, 0.0, segment_id=1, score=sure),
              _obj(10.0, 8.0, segment_id=2, score=sure - 0.05),
              _obj(20.0, 0.0, segment_id=3, score=sure, truncated=True),
              dataclasses.replace(_obj(30.0, 0.0, segment_id=4, score=sure), contact_visible=False),
              _obj(40.0, 0.0, segment_id=5, score=sure, sigma_m=far_sigma_m)]
    status = {t.segment_id: t.status for t in Tracker(CFG).update(births, _stamp(0))}
    assert status == {1: CONFIRMED, 2: TENTATIVE, 3: TENTATIVE, 4: TENTATIVE, 5: TENTATIVE}
    waiting = dataclasses.replace(CFG, confirm_at_birth_min_score=None)
    assert {t.status for t in Tracker(waiting).update(births, _stamp(0))} == {TENTATIVE}


def test_a_sure_birth_next_to_a_track_that_missed_waits():
    """The car seen a little off (outside the gate, inside twice its distance) is likely the track's
    own thing: a second confirmed id for it at once would be an identity switch. (A still car known
    to ~0.05 m: the gate reaches ~0.45 m, twice its distance ~0.9 m.)"""
    sure = CFG.confirm_at_birth_min_score
    stream = [[_obj(10.0, 0.0, segment_id=1)] for _ in range(10)]
    _, out = _run(stream + [[_obj(10.7, 0.0, segment_id=2, score=sure)]])
    old, new = out[-1]
    assert (old.status, new.status) == (LOST, TENTATIVE)
    _, out = _run(stream + [[_obj(40.0, 0.0, segment_id=2, score=sure)]])  # far from it: sure
    assert [t.status for t in out[-1]] == [LOST, CONFIRMED]


def test_low_scores_start_no_track_but_update_one():
    stream = [[_obj(10.0, 0.0, score=0.9 if k < 5 else 0.2)] for k in range(10)] + [[_obj(30.0, 0.0, score=0.2)]]
    _, out = _run(stream)
    assert [(t.track_id, t.status, t.segment_id) for t in out[9]] == [(1, CONFIRMED, 1)]
    assert [t.track_id for t in out[10]] == [1]  # the far low-score object started nothing


def test_the_gate_rejects_far_detections():
    stream = [[_obj(10.0, 0.0, segment_id=1)] for _ in range(10)] + [[_obj(13.0, 0.0, segment_id=2)]]
    _, out = _run(stream)
    old, new = out[-1]
    assert (old.track_id, old.status, old.segment_id) == (1, LOST, 0)
    assert (new.track_id, new.status, new.segment_id) == (2, TENTATIVE, 2)
    chi2 = (3.0 ** 2) / (old.covariance_matrix()[0, 0] + 0.1 ** 2 + CFG.measurement_sigma_floor_m ** 2)
    assert chi2 > CFG.gate_chi2  # 3 m from a still car known to ~0.05 m


def test_heading_follows_the_velocity_and_keeps_the_front_when_the_car_stops():
    # a car driving along -x at 5 m/s (its footprint axis is ~0: front and back alike), braking at
    # 2.5 m/s^2 from t = 2 s to a stop at t = 4 s
    def x_m(t: float) -> float:
        braking = min(max(t - 2.0, 0.0), 2.0)
        return 20.0 - 5.0 * min(t, 2.0) - 5.0 * braking + 1.25 * braking ** 2

    _, out = _run([[_obj(x_m(k * 0.1), 0.0, heading_rad=0.02)] for k in range(60)])
    assert {t.track_id for tracks in out for t in tracks} == {1}
    moving = out[19][0]
    assert moving.front_known and abs(abs(moving.heading_rad) - math.pi) < 0.05
    stopped = out[-1][0]
    assert not stopped.is_moving
    assert stopped.front_known and abs(abs(stopped.heading_rad) - math.pi) < 0.05  # the axis, turned to the front


def test_a_still_objects_heading_is_the_mean_axis_across_the_half_turn():
    headings = [-math.pi / 2 + 0.02, math.pi / 2 - 0.02] * 10  # the same axis written both ways
    _, out = _run([[_obj(10.0, 0.0, heading_rad=h)] for h in headings])
    track = out[-1][0]
    assert not track.front_known
    assert abs(abs(track.heading_rad) - math.pi / 2) < 0.01  # not 0, which the plain mean would give


def test_size_is_smoothed_and_truncated_footprints_leave_it_alone():
    lengths = [4.0, 5.0] * 10
    stream = [[_obj(10.0, 0.0, length_m=length)] for length in lengths] + [[_obj(10.0, 0.0, length_m=1.0,
                                                                                   truncated=True)]]
    _, out = _run(stream)
    assert 4.2 < out[-2][0].length_m < 4.8
    assert out[-1][0].length_m == out[-2][0].length_m


def test_time_going_backwards_resets_and_ids_are_never_reused():
    tracker = Tracker(CFG)
    for k in range(5):
        tracker.update([_obj(10.0, 0.0)], _stamp(k))
    assert tracker.reset_reason is None
    tracks = tracker.update([_obj(10.0, 0.0)], _stamp(2))  # a bag loop
    assert tracker.reset_reason is not None and str(_stamp(2)) in tracker.reset_reason
    assert str(_stamp(4)) in tracker.reset_reason
    assert [(t.track_id, t.status, t.hits) for t in tracks] == [(2, TENTATIVE, 1)]
    assert tracker.resets == 1
    tracker.update([_obj(10.0, 0.0)], _stamp(3))
    assert tracker.reset_reason is None  # a flag of the last update only
    tracker.reset()
    assert [t.track_id for t in tracker.update([_obj(10.0, 0.0)], _stamp(0))] == [3]


def test_a_long_gap_and_a_change_of_frame_reset():
    tracker = Tracker(CFG)
    tracker.update([_obj(10.0, 0.0)], _stamp(0))
    tracker.update([_obj(10.0, 0.0)], _stamp(0) + int((CFG.reset_after_gap_s + 0.1) * 1e9))
    assert "gap" in tracker.reset_reason
    tracker.update([_obj(10.0, 0.0)], _stamp(22), _pose(0.0))
    assert "frame" in tracker.reset_reason and tracker.frame == "odom"


def test_bad_objects_are_skipped_and_counted():
    tracker = Tracker(CFG)
    bad = [_obj(float("nan"), 0.0), _obj(10.0, float("inf")), _obj(10.0, 0.0, length_m=-1.0),
           dataclasses.replace(_obj(5.0, 0.0), covariance_xy=(float("nan"), 0.0, 0.0, 1.0))]
    tracks = tracker.update(bad + [_obj(20.0, 0.0, segment_id=9)], _stamp(0))
    assert tracker.skipped_objects == 4 and tracker.skipped_objects_total == 4
    assert [t.segment_id for t in tracks] == [9]
    tracker.update([_obj(20.0, 0.0, segment_id=9)], _stamp(1))
    assert tracker.skipped_objects == 0 and tracker.skipped_objects_total == 4


@pytest.mark.parametrize("pose, match", [
    (np.eye(3), "4x4"),
    (np.full((4, 4), np.nan), "non-finite"),
    (np.diag([2.0, 1.0, 1.0, 1.0]), "rotation"),
    (np.diag([1.0, -1.0, 1.0, 1.0]), "rotation"),
    (np.vstack([np.eye(4)[:3], [0.0, 0.0, 1.0, 1.0]]), "last row"),
    ("pose", "4x4"),
])
def test_a_bad_pose_is_an_input_error_and_leaves_the_tracks_alone(pose, match):
    tracker = Tracker(CFG)
    for k in range(4):
        tracker.update([_obj(10.0 + k, 0.0)], _stamp(k), _pose(0.0))
    before = tracker.tracks
    with pytest.raises(InputError, match=match):
        tracker.update([_obj(20.0, 0.0)], _stamp(4), pose)
    assert tracker.tracks == before and tracker.last_stamp_ns == _stamp(3)
    assert tracker.update([_obj(14.0, 0.0)], _stamp(4), _pose(0.0))[0].hits == 5


def test_a_bad_stamp_is_an_input_error():
    with pytest.raises(InputError, match="stamp_ns"):
        Tracker(CFG).update([], 1.5)


def test_transformed_round_trips():
    _, out = _run([[_obj(10.0 + k, 2.0, sigma_m=0.3)] for k in range(10)])
    track = out[-1][0]
    pose = _pose(3.0, -2.0, 0.7)
    back = track.transformed(pose).transformed(np.linalg.inv(pose))
    assert back.position == pytest.approx(track.position) and back.velocity == pytest.approx(track.velocity)
    np.testing.assert_allclose(back.covariance_matrix(), track.covariance_matrix(), atol=1e-12)
    assert math.cos(back.heading_rad - track.heading_rad) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- synthetic world

synth = pytest.importorskip("panoptic_perception.data.synth", reason="synthetic world not available")
_GRID = load_grid_config()


def _truth_objects(world, boxes, rng: Optional[np.random.Generator]):
    """Truth boxes in view as GroundObjects with the projection's covariances (and noise drawn from them)."""
    boxes = [b for b in boxes if 3.0 <= b.center_m[0] <= 50.0 and abs(b.center_m[1]) <= 0.8 * b.center_m[0]]
    footprints = [Footprint(b.center_m[0], b.center_m[1], b.size_m[0], b.size_m[1],
                            (b.yaw_rad + math.pi / 2) % math.pi - math.pi / 2) for b in boxes]
    covariances = position_covariances(footprints, (0.0, 0.0), world.config.camera.height_m, world.config.camera.fy,
                                       [_GRID.prior_for(b.category) for b in boxes], _GRID.uncertainty,
                                       [True] * len(boxes))
    objects = []
    for box, fp, cov in zip(boxes, footprints, covariances):
        if rng is not None:
            dx, dy = rng.multivariate_normal([0.0, 0.0], cov)
            fp = dataclasses.replace(fp, x_m=fp.x_m + dx, y_m=fp.y_m + dy)
        objects.append(GroundObject(box.segment_id, box.category_id, box.category, 0.9, fp, math.hypot(fp.x_m, fp.y_m),
                                    tuple(float(v) for v in cov.ravel()), 10, True, False))
    return boxes, objects


def _drive(seed: int, frames: int, noisy: bool, rendered: bool = False):
    """Identity switches, matches and velocity errors (tracks matched >= 10 times) over a synthetic drive."""
    config = synth.SynthConfig()
    if rendered:  # a third of KITTI's resolution: occlusion from real renders at ~0.1 s a frame
        c = config.camera
        config = dataclasses.replace(config, camera=dataclasses.replace(
            c, width=c.width // 3, height=c.height // 3, fx=c.fx / 3, fy=c.fy / 3, cx=c.cx / 3, cy=c.cy / 3))
    world = synth.StreetWorld(config, seed=seed)
    rng = np.random.default_rng(seed) if noisy else None
    tracker = Tracker(CFG, load_label_space("cityscapes").names)
    score = _IdScore()
    errors = []
    for k in range(frames):
        ego_x = world.ego_x_m(k)
        if rendered:
            boxes = [b for b in world.render(k).objects if b.visible_px >= 20]
        else:
            boxes = [world._object_box(p, ego_x, 0) for p in world.things_at(k)]
        boxes, objects = _truth_objects(world, boxes, rng)
        tracks = tracker.update(objects, world.timestamp_ns(k), _pose(ego_x))
        score.add({b.segment_id: b.track_id for b in boxes}, tracks)
        seen = _by_segment(tracks)
        for box in boxes:
            track = seen.get(box.segment_id)
            if track is not None and track.status == CONFIRMED and track.hits >= 10:
                errors.append(math.hypot(track.vx_mps - box.velocity_mps[0], track.vy_mps - box.velocity_mps[1]))
    return score, np.array(errors)


def test_synthetic_drive_truth_keeps_every_identity_and_velocity():
    for seed in (0, 1):
        score, errors = _drive(seed, 100, noisy=False)
        assert score.matches > 500 and score.switches == 0
        assert np.median(errors) < 0.05 and np.percentile(errors, 90) < 0.5


def test_synthetic_drive_with_realistic_noise():
    for seed in (0, 1):
        score, errors = _drive(seed, 100, noisy=True)
        assert score.switches <= 0.01 * score.matches
        assert np.median(errors) < 0.5


@pytest.mark.slow
def test_rendered_synthetic_drive_with_occlusion():
    score, errors = _drive(0, 50, noisy=False, rendered=True)
    assert score.matches > 200 and score.switches == 0
    assert np.median(errors) < 0.1


# ---------------------------------------------------------------------------------------------- config


def test_tracker_yaml_sets_every_key_and_loads():
    import yaml

    from panoptic_perception.tracking.config import DEFAULT_TRACKER_CONFIG

    keys = set(yaml.safe_load(DEFAULT_TRACKER_CONFIG.read_text()))
    assert keys == {f.name for f in dataclasses.fields(TrackerConfig)}
    assert CFG.gate_chi2 == pytest.approx(9.21)
    assert CFG.for_class("person").initial_velocity_sigma_mps < CFG.for_class("car").initial_velocity_sigma_mps
    for space in ("cityscapes", "coco_panoptic"):
        Tracker(CFG, load_label_space(space).names)


@pytest.mark.parametrize("data, match", [
    ({"acceleration_sigma": 2.0}, "acceleration_sigma"),
    ({"acceleration_sigma_mps2": -1.0}, "acceleration_sigma_mps2"),
    ({"initial_velocity_sigma_mps": 0.0}, "initial_velocity_sigma_mps"),
    ({"gate_chi2": float("nan")}, "gate_chi2"),
    ({"hits_to_confirm": 0}, "hits_to_confirm"),
    ({"misses_to_delete": 1.5}, "misses_to_delete"),
    ({"min_score": 1.5}, "min_score"),
    ({"confirm_at_birth_min_score": -0.1}, "confirm_at_birth"),
    ({"confirm_at_birth_max_sigma_m": 0.0}, "confirm_at_birth_max_sigma_m"),
    ({"size_smoothing": 0.0}, "size_smoothing"),
    ({"classes": {"car": {"acceleration_sigma_mps2": -2.0}}}, r"classes\.car.*acceleration_sigma_mps2"),
    ({"classes": {"car": {"max_speed": 2.0}}}, "max_speed"),
    ({"without_odometry": {"ego_speed_sigma_mps": -1.0}}, "ego_speed_sigma_mps"),
])
def test_bad_tracker_config_is_named(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(TrackerConfig, data)


def test_overrides_of_unknown_classes_are_named():
    config = from_dict(TrackerConfig, {"classes": {"rider": {"min_score": 0.6}}})
    assert config.for_class("rider").min_score == 0.6 and config.for_class("car").min_score == CFG.min_score
    with pytest.raises(ConfigError, match="rider"):
        Tracker(config, load_label_space("coco_panoptic").names)
