"""Multi-object tracker: ground objects of successive frames -> tracks with persistent ids.

Per frame: the objects go into the tracking frame (odom when an ego pose is given), every track is
predicted to the frame's stamp by a constant-velocity Kalman filter, objects are assigned to tracks
of their own class by the Hungarian algorithm on the measurement likelihood within a chi-square
gate, matched tracks are updated, unmatched objects sure enough start tentative tracks, and tracks
that keep missing are dropped.

Life cycle: a new track is tentative; hits_to_confirm consecutive hits confirm it, a miss before
that deletes it (so a birth needs N hits in a row). A confirmed track that misses is lost: it
coasts on its prediction, is confirmed again when it is matched, and is deleted after
misses_to_delete consecutive misses. Established (confirmed and lost) tracks pick their objects
before tentative ones do. Track ids start at 1 and are never reused, across reset()
too, so a consumer that saw an id once never sees it on another object.

Frames: with an ego pose (odom_from_vehicle) tracks live in odom and their velocities are over
ground. Without one they live in the vehicle frame and every velocity is relative to the moving
ego (a parked car "drives" at minus the ego's speed); the config's without_odometry noise covers
that. Switching between the two resets the tracker (the tracks' frame no longer exists).

Time: a stamp earlier than the previous one means the source restarted (a bag loop, a simulator
reset); following ROS's convention (tf's buffer, rosbag play --loop), the tracker resets and goes
on from the new stamp. So does a gap longer than reset_after_gap_s. `reset_reason` tells the
caller why the last update reset (None when it did not); the tracker logs nothing itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.objects import GroundObject
from panoptic_perception.tracking import kalman
from panoptic_perception.tracking.config import TrackerConfig, load_tracker_config
from panoptic_perception.tracking.ego_motion import check_pose

TENTATIVE, CONFIRMED, LOST = "tentative", "confirmed", "lost"
FRAME_ODOM, FRAME_VEHICLE = "odom", "vehicle"
BIRTH_GUARD_GATES = 2.0  # a sure birth within this many gate distances of a track that missed waits
_INFEASIBLE = 1e9  # cost of a gated-out pair: the assignment takes as many feasible pairs as it can


def _wrap_pi(angle_rad: Any) -> Any:
    """Angle in [-pi, pi); of a float or of each of an array (numpy's % takes the divisor's sign, as Python's)."""
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi


def _wrap_half_pi(angle_rad: Any) -> Any:
    """Axis angle in [-pi/2, pi/2)."""
    return (angle_rad + math.pi / 2) % math.pi - math.pi / 2


@dataclass(frozen=True)
class Track:
    """One tracked object at one stamp, in the tracker's frame (`Tracker.frame`), metres, seconds."""

    track_id: int  # >= 1, persistent, never reused
    class_name: str
    category: int
    status: str  # tentative | confirmed | lost (coasting on its prediction)
    x_m: float
    y_m: float
    vx_mps: float
    vy_mps: float
    speed_mps: float
    speed_sigma_mps: float  # standard deviation of the speed estimate (along the velocity)
    is_moving: bool  # speed_mps above config moving_speed_mps and significant_speed_sigmas * speed_sigma_mps
    heading_rad: float  # [-pi, pi) when front_known, else the footprint's axis in [-pi/2, pi/2)
    front_known: bool  # the heading points forward: the track moved (fast enough) at some time
    length_m: float
    width_m: float
    covariance: Tuple[float, ...]  # row-major 4x4 of (x, y, vx, vy)
    age_frames: int  # updates since birth, the birth frame included
    hits: int  # frames matched
    misses: int  # consecutive frames without a match
    segment_id: int  # segment of the object matched in this frame, 0 if none
    score: float  # score of the last matched object

    @property
    def position(self) -> Tuple[float, float]:
        return self.x_m, self.y_m

    @property
    def velocity(self) -> Tuple[float, float]:
        return self.vx_mps, self.vy_mps

    def covariance_matrix(self) -> np.ndarray:
        return np.array(self.covariance).reshape(4, 4)

    def transformed(self, target_from_tracking: np.ndarray) -> Track:
        """This track in another frame, e.g. the vehicle frame with inv(odom_from_vehicle).

        Velocities are rotated, not re-referenced: over-ground velocities stay over ground.
        """
        pose = check_pose(target_from_tracking, "target_from_tracking")
        j = pose[:2, :2]
        x_m, y_m = j @ np.array([self.x_m, self.y_m]) + pose[:2, 3]
        vx, vy = j @ np.array([self.vx_mps, self.vy_mps])
        block = np.zeros((4, 4))
        block[:2, :2] = block[2:, 2:] = j
        cov = block @ self.covariance_matrix() @ block.T
        heading = math.atan2(*(j @ np.array([math.cos(self.heading_rad), math.sin(self.heading_rad)]))[::-1])
        heading = _wrap_pi(heading) if self.front_known else _wrap_half_pi(heading)
        return replace(self, x_m=float(x_m), y_m=float(y_m), vx_mps=float(vx), vy_mps=float(vy), heading_rad=heading,
                       covariance=tuple(float(v) for v in cov.ravel()))


_TRACK_FIELDS = tuple(f.name for f in fields(Track))


def _track(values: tuple) -> Track:
    """Track(*values), without the frozen dataclass's __init__: it sets each of the 21 fields through
    object.__setattr__, 5 us a track, a quarter millisecond for a frame of 50."""
    track = object.__new__(Track)
    track.__dict__.update(zip(_TRACK_FIELDS, values))
    return track


_VALUES = 13  # x, y, length, width, heading, score, covariance_xy (4), unreliable contact, truncated, segment id
_X, _Y, _LENGTH, _WIDTH, _HEADING, _SCORE = range(6)
_COVARIANCE = slice(6, 10)
_UNRELIABLE, _TRUNCATED, _SEGMENT = 10, 11, 12


def _values_of(obj: GroundObject) -> tuple:
    fp = obj.footprint
    return (fp.x_m, fp.y_m, fp.length_m, fp.width_m, fp.heading_rad, obj.score, *obj.covariance_xy,
            obj.truncated or not obj.contact_visible, obj.truncated, obj.segment_id)


def _object_values(objects: Sequence[GroundObject]) -> Tuple[np.ndarray, np.ndarray]:
    """The objects' numbers as one (m, _VALUES) array, and which objects are usable: every number finite,
    sizes positive, the covariance a covariance. An object whose numbers are not numbers (or not
    four covariance entries) gets a row of NaN."""
    if len(objects) == 0:
        return np.zeros((0, _VALUES)), np.zeros(0, dtype=bool)
    nan_row = (math.nan,) * _VALUES
    try:
        values = np.array([_values_of(o) for o in objects], dtype=np.float64).reshape(len(objects), -1)
        if values.shape[1] != _VALUES:
            raise ValueError("covariance_xy of some object is not 4 numbers")
    except (TypeError, ValueError):  # one at a time, to find which
        rows = []
        for o in objects:
            try:
                row = np.array(_values_of(o), dtype=np.float64)
            except (TypeError, ValueError):
                row = None
            rows.append(row if row is not None and row.shape == (_VALUES,) else nan_row)
        values = np.array(rows, dtype=np.float64).reshape(len(objects), _VALUES)
    a, b, c, d = values[:, _COVARIANCE].T
    with np.errstate(invalid="ignore"):
        usable = (np.isfinite(values).all(1) & (values[:, _LENGTH] > 0) & (values[:, _WIDTH] > 0) & (a >= 0)
                  & (d >= 0) & (a * d - b * c >= -1e-12))
    return values, usable


_STATUS = (TENTATIVE, CONFIRMED, LOST)  # the codes of _Lives.status
_TENTATIVE, _CONFIRMED, _LOST = range(3)


class _Lives:
    """What the tracks carry besides their Kalman state: one array per field, a row per track, in the
    order of the Kalman arrays (which is the order of track ids: births append, deaths keep the order)."""

    _INT = ("track_id", "category", "class_code", "status", "age_frames", "hits", "misses", "segment_id")
    # axis_c2, axis_s2: the smoothed (cos 2a, sin 2a) of the footprint axis a, the mean of an undirected
    # angle; front_rad: the last direction of motion, NaN while it was never known
    _FLOAT = ("length_m", "width_m", "axis_c2", "axis_s2", "front_rad", "score")

    def __init__(self) -> None:
        for name in self._INT:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        for name in self._FLOAT:
            setattr(self, name, np.zeros(0))

    def __len__(self) -> int:
        return len(self.track_id)

    def keep(self, keep: np.ndarray) -> None:
        for name in self._INT + self._FLOAT:
            setattr(self, name, getattr(self, name)[keep])

    def append(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            setattr(self, name, np.concatenate([getattr(self, name), values]))


class Tracker:
    """Tracks ground objects over time. Not thread-safe: one update at a time."""

    def __init__(self, config: Optional[TrackerConfig] = None,
                 label_space_names: Optional[Sequence[str]] = None) -> None:
        self.config = config if config is not None else load_tracker_config()
        if label_space_names is not None:
            self.config.check_class_names(list(label_space_names))
        self._next_id = 1
        self._codes: Dict[str, int] = {}  # class name -> the integer tracks carry (_Lives.class_code)
        self._class_names: List[str] = []  # and back
        self.reset_reason: Optional[str] = None  # why the last update reset the tracker, None if it did not
        self.resets = 0
        self.skipped_objects = 0  # objects of the last update skipped for NaN/inf or impossible values
        self.skipped_objects_total = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Drop every track and forget the last stamp and frame; ids keep counting up."""
        self._x = np.zeros((0, kalman.STATE_DIM))
        self._p = np.zeros((0, kalman.STATE_DIM, kalman.STATE_DIM))
        self._accel_sigma = np.zeros(0)
        self._lives = _Lives()
        self._last_stamp_ns: Optional[int] = None
        self.frame: Optional[str] = None  # odom | vehicle: the frame of the tracks' coordinates
        self.tracks: List[Track] = []

    @property
    def ego_motion_known(self) -> bool:
        """True when tracks are in odom, so their velocities are over ground."""
        return self.frame == FRAME_ODOM

    @property
    def last_stamp_ns(self) -> Optional[int]:
        return self._last_stamp_ns

    def _keep(self, keep: np.ndarray) -> None:
        self._x, self._p, self._accel_sigma = self._x[keep], self._p[keep], self._accel_sigma[keep]
        self._lives.keep(keep)

    # ------------------------------------------------------------------ one frame
    def update(self, objects: Sequence[GroundObject], stamp_ns: int,
               odom_from_vehicle: Optional[np.ndarray] = None) -> List[Track]:
        """Every live track (tentative, confirmed, lost) by id, after this frame's objects.

        objects are in the vehicle frame at stamp_ns; odom_from_vehicle is the ego pose then (None:
        unknown, see the module's notes). A bad stamp or pose raises InputError before anything
        changes; objects with NaN/inf or impossible values are skipped and counted.
        """
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise InputError(f"stamp_ns must be an integer number of nanoseconds, got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        pose = None if odom_from_vehicle is None else check_pose(odom_from_vehicle)
        frame = FRAME_VEHICLE if pose is None else FRAME_ODOM
        values, usable = _object_values(objects)
        valid = list(objects) if usable.all() else [o for o, ok in zip(objects, usable.tolist()) if ok]
        self.reset_reason = self._reset_reason(stamp_ns, frame)
        if self.reset_reason is not None:
            self.reset()
            self.resets += 1
        dt_s = 0.0 if self._last_stamp_ns is None else (stamp_ns - self._last_stamp_ns) * 1e-9
        self._last_stamp_ns, self.frame = stamp_ns, frame

        self.skipped_objects = len(objects) - len(valid)
        self.skipped_objects_total += self.skipped_objects
        values = values[usable]
        z, r, axis = self._measurements(values, pose)

        lives = self._lives
        if len(lives) and dt_s > 0:
            self._x, self._p = kalman.predict(self._x, self._p, dt_s, self._accel_sigma)
        lives.age_frames += 1
        lives.segment_id[:] = 0
        object_class = self._class_codes(o.class_name for o in valid)
        matched_tracks, matched_objects = self._associate(object_class, z, r)
        if len(matched_tracks):
            self._x[matched_tracks], self._p[matched_tracks] = kalman.update(
                self._x[matched_tracks], self._p[matched_tracks], z[matched_objects], r[matched_objects])
            self._hit(matched_tracks, values[matched_objects], axis[matched_objects])
        self._miss_unmatched(matched_tracks)
        unmatched = np.ones(len(values), dtype=bool)
        unmatched[matched_objects] = False
        self._start_tracks(valid, values, object_class, z, r, axis, unmatched)
        self.tracks = self._outputs()
        return self.tracks

    def _reset_reason(self, stamp_ns: int, frame: str) -> Optional[str]:
        last = self._last_stamp_ns
        if last is None:
            return None
        if stamp_ns < last:
            return f"time went backwards: stamp {stamp_ns} ns is before the previous {last} ns (bag loop?)"
        if (stamp_ns - last) * 1e-9 > self.config.reset_after_gap_s:
            return (f"gap of {(stamp_ns - last) * 1e-9:.3f} s between stamps {last} ns and {stamp_ns} ns exceeds "
                    f"reset_after_gap_s = {self.config.reset_after_gap_s} s")
        if frame != self.frame:
            return (f"tracks were in the {self.frame} frame and this update is in the {frame} frame "
                    f"(the ego pose {'disappeared' if frame == FRAME_VEHICLE else 'appeared'})")
        return None

    def _measurements(self, values: np.ndarray,
                      pose: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (m, 2), covariances with the floor (m, 2, 2) and footprint axes (m,) in the tracking frame,
        from the objects' values (_object_values)."""
        z = values[:, [_X, _Y]]
        r = values[:, _COVARIANCE].reshape(-1, 2, 2)
        r = (r + np.swapaxes(r, 1, 2)) / 2
        axis = values[:, _HEADING]
        if pose is not None:
            j = pose[:2, :2]  # x and y of the vehicle frame's ground plane, seen in odom's x and y
            z = z @ j.T + pose[:2, 3]
            r = j @ r @ j.T
            cos, sin = np.cos(axis), np.sin(axis)
            axis = np.arctan2(j[1, 0] * cos + j[1, 1] * sin, j[0, 0] * cos + j[0, 1] * sin)
        # the floor on both variances, then more for an unreliable contact (0 for the others: x + 0 is x)
        variances = r.reshape(-1, 4)[:, [0, 3]]
        variances += self.config.measurement_sigma_floor_m ** 2
        variances += values[:, _UNRELIABLE, None] * self.config.unreliable_contact_sigma_m ** 2
        r.reshape(-1, 4)[:, [0, 3]] = variances
        return z, r, _wrap_half_pi(axis)

    def _class_codes(self, names: Iterable[str]) -> np.ndarray:
        """Integer codes of class names (the same name, the same code, for the tracker's life)."""
        codes = self._codes
        out = []
        for name in names:
            if name not in codes:
                codes[name] = len(self._class_names)
                self._class_names.append(name)
            out.append(codes[name])
        return np.array(out, dtype=np.int64)

    def _associate(self, object_class: np.ndarray, z: np.ndarray, r: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Matched (track indices, object indices): the assignment of least total cost inside the gate, a
        track only with objects of its class (one assignment for all classes: their pairs do not
        compete, so it is each class's own).

        Established (confirmed or lost) tracks are matched first, tentative ones to what is left: a
        tentative track born of one outlying detection next to a track that missed it would
        otherwise compete with that track for the object's next detections, and the two could take
        turns forever, neither missing misses_to_delete frames in a row.
        """
        tracks: List[np.ndarray] = []
        objects: List[np.ndarray] = []
        if len(object_class) and len(self._lives):
            tentative = self._lives.status == _TENTATIVE
            free = np.ones(len(object_class), dtype=bool)
            for stage in (~tentative, tentative):
                ti, oi = np.flatnonzero(stage), np.flatnonzero(free)
                if len(ti) and len(oi):
                    same_class = self._lives.class_code[ti][:, None] == object_class[oi][None, :]
                    ti, oi = self._assign(ti, oi, z, r, same_class)
                    tracks.append(ti)
                    objects.append(oi)
                    free[oi] = False
        if not tracks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(tracks), np.concatenate(objects)

    def _assign(self, ti: np.ndarray, oi: np.ndarray, z: np.ndarray, r: np.ndarray,
                allowed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Least-cost pairs (tracks, objects) of tracks ti and objects oi inside the gate, among `allowed` pairs."""
        d2, log_det = kalman.mahalanobis_sq(self._x[ti], self._p[ti], z[oi], r[oi])
        inside = (d2 <= self.config.gate_chi2) & allowed
        if not inside.any():
            return ti[:0], oi[:0]
        # d^2 + ln det S: twice the negative log-likelihood, up to a constant
        cost = np.where(inside, d2 + log_det, _INFEASIBLE)
        rows, cols = linear_sum_assignment(cost)
        kept = inside[rows, cols]
        return ti[rows[kept]], oi[cols[kept]]

    def _hit(self, tracks: np.ndarray, values: np.ndarray, axis_rad: np.ndarray) -> None:
        """Tracks `tracks` matched objects with these values and axes (tracking frame)."""
        lives, cfg = self._lives, self.config
        lives.hits[tracks] += 1
        lives.misses[tracks] = 0
        lives.segment_id[tracks] = values[:, _SEGMENT].astype(np.int64)
        lives.score[tracks] = values[:, _SCORE]
        status = lives.status[tracks]
        confirm = (status == _LOST) | ((status == _TENTATIVE) & (lives.hits[tracks] >= cfg.hits_to_confirm))
        lives.status[tracks] = np.where(confirm, _CONFIRMED, status)
        whole = values[:, _TRUNCATED] == 0  # a mask cut by the image border gives a footprint too small
        tracks, values, axis_rad = tracks[whole], values[whole], axis_rad[whole]
        # the first few measurements are averaged equally, later ones enter with a fixed weight
        w = np.maximum(1.0 / lives.hits[tracks], cfg.size_smoothing)
        for name, measured in (("length_m", values[:, _LENGTH]), ("width_m", values[:, _WIDTH]),
                               ("axis_c2", np.cos(2 * axis_rad)), ("axis_s2", np.sin(2 * axis_rad))):
            column = getattr(lives, name)
            column[tracks] += w * (measured - column[tracks])

    def _miss_unmatched(self, matched_tracks: np.ndarray) -> None:
        lives = self._lives
        missed = np.ones(len(lives), dtype=bool)
        missed[matched_tracks] = False
        lives.misses[missed] += 1
        dropped = missed & ((lives.status == _TENTATIVE) | (lives.misses >= self.config.misses_to_delete))
        lives.status[missed & ~dropped] = _LOST
        if dropped.any():
            self._keep(~dropped)

    def _start_tracks(self, objects: Sequence[GroundObject], values: np.ndarray, object_class: np.ndarray,
                      z: np.ndarray, r: np.ndarray, axis: np.ndarray, unmatched: np.ndarray) -> None:
        cfg = self.config
        new = [k for k in np.flatnonzero(unmatched).tolist()
               if objects[k].score >= cfg.for_class(objects[k].class_name).min_score]
        if not new:
            return
        params = [cfg.for_class(objects[k].class_name) for k in new]
        velocity_sigma = np.array([p.initial_velocity_sigma_mps for p in params])
        accel_sigma = np.array([p.acceleration_sigma_mps2 for p in params])
        if self.frame == FRAME_VEHICLE:
            velocity_sigma = np.hypot(velocity_sigma, cfg.without_odometry.ego_speed_sigma_mps)
            accel_sigma = np.hypot(accel_sigma, cfg.without_odometry.ego_acceleration_sigma_mps2)
        sure = self._sure_births(objects, new, object_class, z, r)
        x, p = kalman.initial_state(z[new], r[new], velocity_sigma)
        self._x = np.concatenate([self._x, x])
        self._p = np.concatenate([self._p, p])
        self._accel_sigma = np.concatenate([self._accel_sigma, accel_sigma])
        born = values[new]
        count = len(new)
        self._lives.append(
            track_id=np.arange(self._next_id, self._next_id + count),
            category=np.array([int(objects[k].category) for k in new], dtype=np.int64),
            class_code=object_class[new],
            status=np.where((cfg.hits_to_confirm <= 1) | np.array(sure, dtype=bool), _CONFIRMED, _TENTATIVE),
            length_m=born[:, _LENGTH], width_m=born[:, _WIDTH], axis_c2=np.cos(2 * axis[new]),
            axis_s2=np.sin(2 * axis[new]), front_rad=np.full(count, math.nan), age_frames=np.ones(count, np.int64),
            hits=np.ones(count, np.int64), misses=np.zeros(count, np.int64),
            segment_id=born[:, _SEGMENT].astype(np.int64), score=born[:, _SCORE])
        self._next_id += count

    def _sure_births(self, objects: Sequence[GroundObject], new: List[int], object_class: np.ndarray,
                     z: np.ndarray, r: np.ndarray) -> List[bool]:
        """Which births need no second hit: confident, ground contact seen, not cut by the border, and no
        track of their class that missed this frame near (within twice the gate's distance): that
        one may be the same thing seen a little off, and a second confirmed id for it would be an
        identity switch."""
        least = self.config.confirm_at_birth_min_score
        sigma = self.config.confirm_at_birth_max_sigma_m
        sure = [least is not None and objects[k].score >= least and objects[k].contact_visible
                and not objects[k].truncated and objects[k].position_sigma_m <= sigma for k in new]
        missed = self._lives.misses > 0
        if not any(sure) or not missed.any():
            return sure
        missed_class = self._lives.class_code[missed]
        d2, _ = kalman.mahalanobis_sq(self._x[missed], self._p[missed], z[new], r[new])
        near = d2 <= BIRTH_GUARD_GATES ** 2 * self.config.gate_chi2  # (missed tracks, births)
        for j, k in enumerate(new):
            if sure[j] and (near[:, j] & (missed_class == object_class[k])).any():
                sure[j] = False
        return sure

    # ------------------------------------------------------------------ outputs
    def _outputs(self) -> List[Track]:
        """Tracks from the filter state: speeds, their sigmas and the moving test for all tracks at
        once (array arithmetic), then one record per track."""
        cfg = self.config
        n = len(self._lives)
        if n == 0:
            return []
        vx, vy = self._x[:, 2], self._x[:, 3]
        speed = np.hypot(vx, vy)
        p_v = self._p[:, 2:, 2:]
        along = speed > 1e-9
        a, b, d = p_v[:, 0, 0], (p_v[:, 0, 1] + p_v[:, 1, 0]) / 2, p_v[:, 1, 1]
        # u^T P u with u the unit velocity, written out for the symmetric 2x2
        along_var = (a * vx * vx + 2 * b * vx * vy + d * vy * vy) / np.where(along, speed * speed, 1.0)
        # without a direction, the worst one: the largest eigenvalue
        largest = (a + d) / 2 + np.sqrt(((a - d) / 2) ** 2 + b * b)
        speed_sigma = np.sqrt(np.maximum(np.where(along, along_var, largest), 0.0))
        # moving clearly faster than the velocity's noise: the direction of travel is the heading
        significant = speed > cfg.significant_speed_sigmas * speed_sigma
        moving = significant & (speed > cfg.moving_speed_mps)
        travel = significant & (speed >= cfg.heading_min_speed_mps)
        lives = self._lives
        # the footprint's axis: half the angle of the smoothed (cos 2a, sin 2a), in [-pi/2, pi/2)
        axis = _wrap_half_pi(0.5 * np.arctan2(lives.axis_s2, lives.axis_c2))
        travelled = _wrap_pi(np.arctan2(vy, vx))
        front = lives.front_rad = np.where(travel, travelled, lives.front_rad)
        # not moving now: the footprint's axis, turned to the side of the last known direction of travel
        heading = np.where(travel, travelled, np.where(np.isnan(front), axis, _wrap_pi(
            np.where(np.cos(axis - front) >= 0, axis, axis + math.pi))))
        status = [_STATUS[code] for code in lives.status.tolist()]
        covariances = [tuple(c) for c in self._p.reshape(n, -1).tolist()]
        class_names = [self._class_names[code] for code in lives.class_code.tolist()]
        columns = (lives.track_id.tolist(), class_names, lives.category.tolist(), status,
                   *self._x.T.tolist(), speed.tolist(), speed_sigma.tolist(), moving.tolist(), heading.tolist(),
                   (~np.isnan(front)).tolist(), lives.length_m.tolist(), lives.width_m.tolist(), covariances,
                   lives.age_frames.tolist(), lives.hits.tolist(), lives.misses.tolist(), lives.segment_id.tolist(),
                   lives.score.tolist())
        return [_track(values) for values in zip(*columns)]  # in the order of track ids, as the rows are

