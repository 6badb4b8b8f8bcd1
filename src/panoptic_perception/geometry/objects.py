"""Object footprints on the ground from a thing's visible ground-contact points.

A camera sees only the near faces of an object, so its ground contact (the bottom edge of the
mask, projected to the ground) is one side of the footprint or an L of two sides. The heading is
the rectangle orientation that best explains those points (the closeness criterion of L-shape
fitting, Zhang et al., "Efficient L-shape fitting for vehicle detection using laser scanners",
2017); the hidden part of the footprint is filled in with the class's size prior, extending away
from the camera. Small numpy work per instance: at most one call per detected thing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from panoptic_perception.geometry.grid import GridGeometry, ThingPrior, UncertaintyConfig

_ANGLES_RAD = np.deg2rad(np.arange(0.0, 90.0, 1.0))
_CLOSENESS_FLOOR_M = 0.05  # points closer than this to an edge all count the same (mask noise)
_MAX_FIT_POINTS = 64  # an L's orientation needs few points; more only cost time


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
        along, across = np.array([c, s]) * self.length_m / 2, np.array([-s, c]) * self.width_m / 2
        centre = np.array([self.x_m, self.y_m])
        return np.stack([centre + along + across, centre - along + across, centre - along - across,
                         centre + along - across])


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


def fit_axes(points_xy: np.ndarray) -> float:
    """Rectangle orientation in [0, pi/2) that puts the points closest to two perpendicular edges."""
    pts = np.asarray(points_xy, dtype=np.float64)
    if len(pts) > _MAX_FIT_POINTS:  # evenly spread subset, keeping both ends (the L's corners)
        pts = pts[np.unique(np.linspace(0, len(pts) - 1, _MAX_FIT_POINTS).round().astype(np.int64))]
    if len(pts) < 3:
        if len(pts) == 2 and np.linalg.norm(pts[1] - pts[0]) > 1e-6:
            d = pts[1] - pts[0]
            return float(math.atan2(d[1], d[0]) % (math.pi / 2))
        return 0.0
    c, s = np.cos(_ANGLES_RAD)[:, None], np.sin(_ANGLES_RAD)[:, None]
    p1 = c * pts[None, :, 0] + s * pts[None, :, 1]  # (angles, points)
    p2 = -s * pts[None, :, 0] + c * pts[None, :, 1]
    d1 = np.minimum(p1.max(1, keepdims=True) - p1, p1 - p1.min(1, keepdims=True))
    d2 = np.minimum(p2.max(1, keepdims=True) - p2, p2 - p2.min(1, keepdims=True))
    closeness = (1.0 / np.maximum(np.minimum(d1, d2), _CLOSENESS_FLOOR_M)).sum(1)
    return float(_ANGLES_RAD[int(np.argmax(closeness))])


def _wrap_half_pi(angle_rad: float) -> float:
    """Angle of an undirected axis, in [-pi/2, pi/2)."""
    return (angle_rad + math.pi / 2) % math.pi - math.pi / 2


def fit_footprint(points_xy: np.ndarray, camera_xy: Tuple[float, float], prior: ThingPrior) -> Footprint:
    """The footprint whose near faces the contact points are, sized by the prior where unseen."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    cam = np.asarray(camera_xy, dtype=np.float64)
    centroid = pts.mean(0)
    ray = centroid - cam
    ray /= max(np.linalg.norm(ray), 1e-9)
    theta = fit_axes(pts) if len(pts) >= 2 else math.atan2(ray[1], ray[0])
    axes = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    proj = pts @ axes.T  # (n, 2) coordinates along the two axes
    lo, hi = proj.min(0), proj.max(0)
    extent = hi - lo
    # The face most perpendicular to the ray is seen whole: its extent measures its true size.
    visible = int(np.argmin(np.abs(axes @ ray)))

    def cost(dims: np.ndarray) -> float:
        return float(abs(extent[visible] - dims[visible]) + np.maximum(extent - dims, 0.0).sum())

    dims_a = np.array([prior.length_m, prior.width_m])  # axis 0 is the length
    dims_b = dims_a[::-1].copy()
    length_axis = 0 if cost(dims_a) <= cost(dims_b) else 1
    dims = np.maximum(dims_a if length_axis == 0 else dims_b, extent)

    # Along each axis, anchor the box at the seen end nearest the camera and extend it away.
    cam_proj = axes @ cam
    centre_proj = np.empty(2)
    for i in range(2):
        if cam_proj[i] <= lo[i]:
            centre_proj[i] = lo[i] + dims[i] / 2
        elif cam_proj[i] >= hi[i]:
            centre_proj[i] = hi[i] - dims[i] / 2
        else:
            centre_proj[i] = (lo[i] + hi[i]) / 2
    centre = centre_proj @ axes
    heading = theta if length_axis == 0 else theta + math.pi / 2
    return Footprint(float(centre[0]), float(centre[1]), float(dims[length_axis]),
                     float(dims[1 - length_axis]), _wrap_half_pi(heading))


def position_covariance(footprint: Footprint, camera_xy: Tuple[float, float], camera_height_m: float,
                        focal_px: float, prior: ThingPrior, uncertainty: UncertaintyConfig,
                        contact_visible: bool = True) -> np.ndarray:
    """2x2 covariance of the footprint centre, from pixel, pitch, height and size-prior errors.

    Ground range r at depression angle a is h / tan(a), so dr/da = -(r^2 + h^2) / h: pixel and
    pitch errors grow with the square of the range, height errors linearly (dr/dh = r / h).
    """
    dx, dy = footprint.x_m - camera_xy[0], footprint.y_m - camera_xy[1]
    r = max(math.hypot(dx, dy), 1e-3)
    h = max(camera_height_m, 1e-3)
    angle_sigma = uncertainty.pixel_sigma_px / focal_px + math.radians(uncertainty.pitch_sigma_deg)
    var_radial = ((r * r + h * h) / h * angle_sigma) ** 2 + (r / h * uncertainty.height_sigma_m) ** 2
    var_radial += (prior.length_sigma_m / 2) ** 2  # the hidden far side is the prior's guess
    if not contact_visible:
        var_radial += (prior.length_m) ** 2  # contact hidden: only a bound on the range is known
    var_lateral = (r * uncertainty.pixel_sigma_px / focal_px) ** 2 + (prior.length_sigma_m / 4) ** 2
    c, s = dx / r, dy / r
    rot = np.array([[c, -s], [s, c]])
    return rot @ np.diag([var_radial, var_lateral]) @ rot.T


def footprint_cells(geometry: GridGeometry, footprint: Footprint) -> np.ndarray:
    """Flat indices of the grid cells whose centres lie inside the footprint."""
    corners = footprint.corners()
    res = geometry.resolution_m
    c0 = max(int(math.floor((corners[:, 0].min() - geometry.origin_x_m) / res)), 0)
    c1 = min(int(math.ceil((corners[:, 0].max() - geometry.origin_x_m) / res)), geometry.width)
    r0 = max(int(math.floor((corners[:, 1].min() - geometry.origin_y_m) / res)), 0)
    r1 = min(int(math.ceil((corners[:, 1].max() - geometry.origin_y_m) / res)), geometry.height)
    if c0 >= c1 or r0 >= r1:
        return np.zeros(0, dtype=np.int64)
    cols = np.arange(c0, c1)
    rows = np.arange(r0, r1)
    x = geometry.origin_x_m + (cols[None, :] + 0.5) * res - footprint.x_m
    y = geometry.origin_y_m + (rows[:, None] + 0.5) * res - footprint.y_m
    c, s = math.cos(footprint.heading_rad), math.sin(footprint.heading_rad)
    along = c * x + s * y
    across = -s * x + c * y
    inside = (np.abs(along) <= footprint.length_m / 2) & (np.abs(across) <= footprint.width_m / 2)
    rr, cc = np.nonzero(inside)
    return ((rows[rr]) * geometry.width + cols[cc]).astype(np.int64)
