"""Object footprints on the ground from a thing's visible ground-contact points.

A camera sees only the near faces of an object, so its ground contact (the bottom edge of the
mask, projected to the ground) is one side of the footprint or an L of two sides. The heading is
the rectangle orientation that best explains those points (the closeness criterion of L-shape
fitting, Zhang et al., "Efficient L-shape fitting for vehicle detection using laser scanners",
2017); the hidden part of the footprint is filled in with the class's size prior, extending away
from the camera. The per-frame entry points (fit_footprints, position_covariances,
footprints_cells) take all of a frame's objects at once; the one-object forms wrap them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from panoptic_perception.geometry.grid import GridGeometry, ThingPrior, UncertaintyConfig

_ANGLES_RAD = np.deg2rad(np.arange(0.0, 90.0, 1.0))
_N_ANGLES = len(_ANGLES_RAD)
# x and y weights of the 2 x 90 axes the closeness criterion projects on: (cos a, sin a) for each
# angle a, then the normals (-sin a, cos a)
_AXIS_X = np.concatenate([np.cos(_ANGLES_RAD), -np.sin(_ANGLES_RAD)])
_AXIS_Y = np.concatenate([np.sin(_ANGLES_RAD), np.cos(_ANGLES_RAD)])
_CLOSENESS_FLOOR_M = 0.05  # points closer than this to an edge all count the same (mask noise)
_MAX_FIT_POINTS = 64  # an L's orientation needs few points; more only cost time


def _corners(x_m: np.ndarray, y_m: np.ndarray, length_m: np.ndarray, width_m: np.ndarray, cos: np.ndarray,
             sin: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """x and y (n, 4) of rectangles' corners, counter-clockwise: centre +- half length +- half width."""
    along_x, along_y = cos * length_m / 2, sin * length_m / 2
    across_x, across_y = -sin * width_m / 2, cos * width_m / 2
    # (front, back) x (left, right) in counter-clockwise order: +along +across, -along +across, ...
    sign_along, sign_across = np.array([1.0, -1.0, -1.0, 1.0]), np.array([1.0, 1.0, -1.0, -1.0])
    corners_x = x_m[:, None] + sign_along * along_x[:, None] + sign_across * across_x[:, None]
    corners_y = y_m[:, None] + sign_along * along_y[:, None] + sign_across * across_y[:, None]
    return corners_x, corners_y


@dataclass(frozen=True)
class Footprint:
    """A rectangle on the ground: centre, size along / across the heading, heading (rad)."""

    x_m: float
    y_m: float
    length_m: float
    width_m: float
    heading_rad: float  # yaw of the length axis in [-pi/2, pi/2): front and back look alike

    def corners(self) -> np.ndarray:
        """(4, 2) corners, counter-clockwise."""
        c, s = math.cos(self.heading_rad), math.sin(self.heading_rad)
        corners_x, corners_y = _corners(*(np.array([v]) for v in (
            self.x_m, self.y_m, self.length_m, self.width_m, c, s)))
        return np.stack([corners_x[0], corners_y[0]], 1)


@dataclass(frozen=True)
class GroundObject:
    """One thing instance on the ground, for a tracker (vehicle frame, metres, radians)."""

    segment_id: int
    category: int
    class_name: str
    score: float
    footprint: Footprint
    range_m: float  # camera to footprint centre, on the ground
    covariance_xy: Tuple[float, float, float, float]  # row-major 2x2 of (x, y), m^2
    contact_columns: int  # image columns whose ground contact was seen
    contact_visible: bool  # False: the bottom of the mask is hidden (occluded / image border)
    truncated: bool  # the mask touches the left, right or bottom image border

    @property
    def x_m(self) -> float:
        return self.footprint.x_m

    @property
    def y_m(self) -> float:
        return self.footprint.y_m

    @property
    def position_sigma_m(self) -> float:
        """Standard deviation along the worst direction (largest eigenvalue of the covariance)."""
        cov = np.array(self.covariance_xy).reshape(2, 2)
        return float(math.sqrt(max(np.linalg.eigvalsh(cov)[-1], 0.0)))


def footprints_corners(footprints: Sequence[Footprint]) -> np.ndarray:
    """(n, 4, 2) corners of each footprint, counter-clockwise (Footprint.corners of all at once)."""
    if len(footprints) == 0:
        return np.zeros((0, 4, 2))
    x_m, y_m, length_m, width_m, heading_rad = np.array(
        [(f.x_m, f.y_m, f.length_m, f.width_m, f.heading_rad) for f in footprints]).T
    corners_x, corners_y = _corners(x_m, y_m, length_m, width_m, np.cos(heading_rad), np.sin(heading_rad))
    return np.stack([corners_x, corners_y], 2)


def _starts(counts: np.ndarray) -> np.ndarray:
    """Offsets of consecutive groups of the given sizes."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _axes_fit_points(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of the points each group's axes fit uses, and how many per group.

    All of a group's points, or an evenly spread subset of _MAX_FIT_POINTS that keeps both ends
    (the L's corners): an L's orientation needs few points, more only cost time. The subset is
    np.linspace(0, n - 1, _MAX_FIT_POINTS) rounded, written out so that all groups take one pass.
    """
    fit_counts = np.minimum(counts, _MAX_FIT_POINTS)
    local = np.arange(int(fit_counts.sum())) - np.repeat(_starts(fit_counts), fit_counts)
    step = (counts - 1) / (_MAX_FIT_POINTS - 1)
    spread = np.rint(local * np.repeat(step, fit_counts)).astype(np.int64)
    local = np.where(np.repeat(counts > _MAX_FIT_POINTS, fit_counts), spread, local)
    return np.repeat(_starts(counts), fit_counts) + local, fit_counts


def fit_axes_batch(points_xy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """fit_axes of consecutive groups of points (group k: the next counts[k] rows), in one pass.

    Every group is laid out over all _MAX_FIT_POINTS slots, padding repeating its first point (which
    leaves its extremes alone) with zero weight, so each closeness is the same sum whatever else is
    in the batch: a group's result is the one it gets alone.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    counts = np.asarray(counts, dtype=np.int64)
    theta = np.zeros(len(counts))
    if len(counts) == 0:
        return theta
    index, fit_counts = _axes_fit_points(counts)
    pts = pts[index]
    fit_starts = _starts(fit_counts)
    fitted = np.flatnonzero(fit_counts >= 3)
    if fitted.size:
        slot = np.arange(_MAX_FIT_POINTS)[:, None]
        used = slot < fit_counts[fitted]  # (slots, groups)
        at = pts[fit_starts[fitted] + np.where(used, slot, 0)]  # (slots, groups, 2)
        # the coordinate along each of the 2 x 90 axes: (cos, sin) for the angle, then its normal
        along = at[:, :, :1] * _AXIS_X + at[:, :, 1:] * _AXIS_Y  # (slots, groups, 180)
        to_edge = along.max(0) - along
        np.minimum(to_edge, np.subtract(along, along.min(0), out=along), out=to_edge)
        to_edge = np.minimum(to_edge[:, :, :_N_ANGLES], to_edge[:, :, _N_ANGLES:])
        np.maximum(to_edge, _CLOSENESS_FLOOR_M, out=to_edge)
        closeness = np.divide(used[:, :, None], to_edge, out=to_edge).sum(0)
        theta[fitted] = _ANGLES_RAD[np.argmax(closeness, axis=-1)]
    for k in np.flatnonzero(fit_counts == 2).tolist():  # two points: the line through them
        d = pts[fit_starts[k] + 1] - pts[fit_starts[k]]
        if np.linalg.norm(d) > 1e-6:
            theta[k] = math.atan2(d[1], d[0]) % (math.pi / 2)
    return theta


def fit_axes(points_xy: np.ndarray) -> float:
    """Rectangle orientation in [0, pi/2) that puts the points closest to two perpendicular edges."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return float(fit_axes_batch(pts, np.array([len(pts)]))[0])


def _wrap_half_pi(angle_rad):
    """Angle of an undirected axis, in [-pi/2, pi/2) (floats or arrays)."""
    return (angle_rad + math.pi / 2) % math.pi - math.pi / 2


def fit_footprints(points_xy: np.ndarray, counts: np.ndarray, camera_xy: Tuple[float, float],
                   priors: Sequence[ThingPrior], extend_toward_camera: Optional[np.ndarray] = None,
                   axes_rad: Optional[np.ndarray] = None) -> List[Footprint]:
    """fit_footprint of consecutive groups of contact points (group k: the next counts[k] rows, prior k).

    One pass of array arithmetic over all groups: a frame's objects cost a few numpy calls, not a
    few dozen each. `extend_toward_camera` (n, 2) bool, per group and per axis of the fit (the first
    axis, then its normal): where the seen extent is shorter than the prior, grow the box from its far
    seen end toward the camera instead of away from it. That is where the hidden part lies when the
    near end is cut off by the image border, not hidden behind the seen face. `axes_rad`: the groups'
    fit_axes_batch, when the caller has it already (the same points fitted again).
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    if n == 0:
        return []
    if len(priors) != n or (counts < 1).any() or counts.sum() != len(pts):
        raise ValueError(f"fit_footprints: {len(pts)} points in groups {counts.tolist()} with {len(priors)} priors")
    starts = _starts(counts)
    owner = np.repeat(np.arange(n), counts)
    cam_x, cam_y = float(camera_xy[0]), float(camera_xy[1])
    centroid = np.add.reduceat(pts, starts, axis=0) / counts[:, None]
    ray_x, ray_y = centroid[:, 0] - cam_x, centroid[:, 1] - cam_y
    ray_norm = np.maximum(np.hypot(ray_x, ray_y), 1e-9)
    ray_x, ray_y = ray_x / ray_norm, ray_y / ray_norm
    theta = fit_axes_batch(pts, counts) if axes_rad is None else np.array(axes_rad, dtype=np.float64)
    single = counts < 2  # one point has no orientation: face the camera
    theta[single] = np.arctan2(ray_y[single], ray_x[single])
    # the two axes: u = (cos, sin) and v = (-sin, cos); coordinates of the points along them
    cos, sin = np.cos(theta), np.sin(theta)
    cos_p, sin_p = cos[owner], sin[owner]
    along_u = pts[:, 0] * cos_p + pts[:, 1] * sin_p
    along_v = -pts[:, 0] * sin_p + pts[:, 1] * cos_p
    lo_u, hi_u = np.minimum.reduceat(along_u, starts), np.maximum.reduceat(along_u, starts)
    lo_v, hi_v = np.minimum.reduceat(along_v, starts), np.maximum.reduceat(along_v, starts)
    extent_u, extent_v = hi_u - lo_u, hi_v - lo_v
    # The face most perpendicular to the ray is seen whole: its extent measures its true size.
    seen_v = np.abs(-ray_x * sin + ray_y * cos) < np.abs(ray_x * cos + ray_y * sin)
    prior_length = np.array([p.length_m for p in priors], dtype=np.float64)
    prior_width = np.array([p.width_m for p in priors], dtype=np.float64)

    def cost(dim_u: np.ndarray, dim_v: np.ndarray) -> np.ndarray:
        seen = np.where(seen_v, extent_v - dim_v, extent_u - dim_u)
        return np.abs(seen) + (np.maximum(extent_u - dim_u, 0.0) + np.maximum(extent_v - dim_v, 0.0))

    length_on_v = cost(prior_length, prior_width) > cost(prior_width, prior_length)
    dim_u = np.maximum(np.where(length_on_v, prior_width, prior_length), extent_u)
    dim_v = np.maximum(np.where(length_on_v, prior_length, prior_width), extent_v)

    # Along each axis, anchor the box at the seen end nearest the camera and extend it away (or the
    # reverse where asked).
    toward = np.zeros((n, 2), dtype=bool) if extend_toward_camera is None else np.asarray(extend_toward_camera, bool)
    if toward.shape != (n, 2):
        raise ValueError(f"fit_footprints: extend_toward_camera has shape {toward.shape}, want ({n}, 2)")

    def anchored(cam_along: np.ndarray, lo: np.ndarray, hi: np.ndarray, dim: np.ndarray,
                 reverse: np.ndarray) -> np.ndarray:
        from_lo, from_hi = lo + dim / 2, hi - dim / 2
        near_lo = np.where(reverse, from_hi, from_lo)
        near_hi = np.where(reverse, from_lo, from_hi)
        return np.where(cam_along <= lo, near_lo, np.where(cam_along >= hi, near_hi, (lo + hi) / 2))

    centre_u = anchored(cos * cam_x + sin * cam_y, lo_u, hi_u, dim_u, toward[:, 0])
    centre_v = anchored(-sin * cam_x + cos * cam_y, lo_v, hi_v, dim_v, toward[:, 1])
    centre_x = centre_u * cos - centre_v * sin
    centre_y = centre_u * sin + centre_v * cos
    heading = _wrap_half_pi(theta + length_on_v * (math.pi / 2))
    length = np.where(length_on_v, dim_v, dim_u)
    width = np.where(length_on_v, dim_u, dim_v)
    return [Footprint(*values) for values in zip(centre_x.tolist(), centre_y.tolist(), length.tolist(),
                                                 width.tolist(), heading.tolist())]


def fit_footprint(points_xy: np.ndarray, camera_xy: Tuple[float, float], prior: ThingPrior) -> Footprint:
    """The footprint whose near faces the contact points are, sized by the prior where unseen."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return fit_footprints(pts, np.array([len(pts)]), camera_xy, [prior])[0]


def position_covariances(footprints: Sequence[Footprint], camera_xy: Tuple[float, float], camera_height_m: float,
                         focal_px: float, priors: Sequence[ThingPrior], uncertainty: UncertaintyConfig,
                         contact_visible: Sequence[bool]) -> np.ndarray:
    """(n, 2, 2) covariances of footprint centres, from pixel, pitch, height and size-prior errors.

    Ground range r at depression angle a is h / tan(a), so dr/da = -(r^2 + h^2) / h: pixel and
    pitch errors grow with the square of the range, height errors linearly (dr/dh = r / h).
    """
    if len(footprints) == 0:
        return np.zeros((0, 2, 2))
    dx = np.array([f.x_m for f in footprints]) - camera_xy[0]
    dy = np.array([f.y_m for f in footprints]) - camera_xy[1]
    length_m = np.array([p.length_m for p in priors], dtype=np.float64)
    length_sigma_m = np.array([p.length_sigma_m for p in priors], dtype=np.float64)
    r = np.maximum(np.hypot(dx, dy), 1e-3)
    h = max(camera_height_m, 1e-3)
    angle_sigma = uncertainty.pixel_sigma_px / focal_px + math.radians(uncertainty.pitch_sigma_deg)
    var_radial = ((r * r + h * h) / h * angle_sigma) ** 2 + (r / h * uncertainty.height_sigma_m) ** 2
    var_radial += (length_sigma_m / 2) ** 2  # the hidden far side is the prior's guess
    # contact hidden: only a bound on the range is known
    var_radial += np.where(np.asarray(contact_visible, dtype=bool), 0.0, length_m ** 2)
    var_lateral = (r * uncertainty.pixel_sigma_px / focal_px) ** 2 + (length_sigma_m / 4) ** 2
    c, s = dx / r, dy / r  # rotation from (radial, lateral) to (x, y)
    return np.stack([np.stack([c * c * var_radial + s * s * var_lateral, c * s * (var_radial - var_lateral)], -1),
                     np.stack([c * s * (var_radial - var_lateral), s * s * var_radial + c * c * var_lateral], -1)],
                    -2)


def position_covariance(footprint: Footprint, camera_xy: Tuple[float, float], camera_height_m: float,
                        focal_px: float, prior: ThingPrior, uncertainty: UncertaintyConfig,
                        contact_visible: bool = True) -> np.ndarray:
    """2x2 covariance of the footprint centre (position_covariances of one footprint)."""
    return position_covariances([footprint], camera_xy, camera_height_m, focal_px, [prior], uncertainty,
                                [contact_visible])[0]


def footprints_cells(geometry: GridGeometry, footprints: Sequence[Footprint]) -> Tuple[np.ndarray, np.ndarray]:
    """Flat indices of the grid cells whose centres lie inside each footprint, and whose they are.

    Cells come grouped by footprint in the given order, row-major within one; each footprint is
    tested over its bounding window, all windows padded to the largest in one array pass.
    """
    empty = np.zeros(0, dtype=np.int64)
    if len(footprints) == 0:
        return empty, empty
    x_m, y_m, length_m, width_m, heading_rad = np.array(
        [(f.x_m, f.y_m, f.length_m, f.width_m, f.heading_rad) for f in footprints]).T
    # math.cos as Footprint.corners uses: the window and the inside test agree to the bit
    c = np.array([math.cos(h) for h in heading_rad.tolist()])
    s = np.array([math.sin(h) for h in heading_rad.tolist()])
    corners_x, corners_y = _corners(x_m, y_m, length_m, width_m, c, s)  # (n, 4) each
    res = geometry.resolution_m
    c0 = np.maximum(np.floor((corners_x.min(1) - geometry.origin_x_m) / res), 0).astype(np.int64)
    c1 = np.minimum(np.ceil((corners_x.max(1) - geometry.origin_x_m) / res), geometry.width).astype(np.int64)
    r0 = np.maximum(np.floor((corners_y.min(1) - geometry.origin_y_m) / res), 0).astype(np.int64)
    r1 = np.minimum(np.ceil((corners_y.max(1) - geometry.origin_y_m) / res), geometry.height).astype(np.int64)
    n_cols, n_rows = int((c1 - c0).max()), int((r1 - r0).max())
    if n_cols <= 0 or n_rows <= 0:
        return empty, empty
    cols = c0[:, None] + np.arange(n_cols)  # (n, n_cols)
    rows = r0[:, None] + np.arange(n_rows)
    x = geometry.origin_x_m + (cols[:, None, :] + 0.5) * res - x_m[:, None, None]
    y = geometry.origin_y_m + (rows[:, :, None] + 0.5) * res - y_m[:, None, None]
    c, s = c[:, None, None], s[:, None, None]
    along = c * x + s * y  # (n, n_rows, n_cols)
    across = -s * x + c * y
    inside = (np.abs(along) <= (length_m / 2)[:, None, None]) & (np.abs(across) <= (width_m / 2)[:, None, None])
    inside &= (cols < c1[:, None])[:, None, :] & (rows < r1[:, None])[:, :, None]  # padding is outside
    owner, rr, cc = np.nonzero(inside)
    return rows[owner, rr] * geometry.width + cols[owner, cc], owner


def footprint_cells(geometry: GridGeometry, footprint: Footprint) -> np.ndarray:
    """Flat indices of the grid cells whose centres lie inside the footprint."""
    return footprints_cells(geometry, [footprint])[0]
