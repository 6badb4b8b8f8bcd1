"""StreetWorld: a seeded street and drive; `render(frame_index)` gives an image with exact truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from panoptic_perception.data.kitti import parse_timestamp_ns
from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.data.synth import layout as L
from panoptic_perception.data.synth import materials as M
from panoptic_perception.data.synth.bev import BevTruth, bev_shape, cell_centres, rasterise_footprints
from panoptic_perception.data.synth.config import SynthConfig
from panoptic_perception.data.synth.ids import THING_ID_STRIDE
from panoptic_perception.data.synth.rays import RaySet
from panoptic_perception.data.synth.render import HitBuffer, PlacedThing, Renderer, place_tracks
from panoptic_perception.data.synth.textures import NoiseTexture, colourise, sky
from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.labels import load_label_space


@dataclass(frozen=True)
class ObjectBox:
    """A thing's 3D box in the vehicle frame at one frame (centre of the box, not of its base)."""

    track_id: int
    segment_id: int
    category_id: int  # Cityscapes train id
    category: str
    center_m: tuple  # (x, y, z)
    size_m: tuple  # (length along heading, width, height)
    yaw_rad: float  # heading about +z, 0 = along +x
    speed_mps: float  # over ground along the heading (negative: reversing)
    velocity_mps: tuple = (0.0, 0.0)  # (vx, vy) over ground, vehicle-frame axes
    visible_px: int = 0

    def footprint(self) -> np.ndarray:
        """(4, 2) ground corners, counter-clockwise, vehicle frame."""
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        hl, hw = self.size_m[0] / 2, self.size_m[1] / 2
        local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
        return local @ np.array([[c, s], [-s, c]]) + np.array(self.center_m[:2])

    def corners(self) -> np.ndarray:
        """(8, 3) box corners: the footprint at the bottom, then at the top."""
        fp = self.footprint()
        z0 = self.center_m[2] - self.size_m[2] / 2
        z1 = z0 + self.size_m[2]
        return np.concatenate([np.c_[fp, np.full(4, z0)], np.c_[fp, np.full(4, z1)]])

    def to_json(self) -> dict:
        return {
            "track_id": self.track_id,
            "segment_id": self.segment_id,
            "category_id": self.category_id,
            "category": self.category,
            "center_m": [round(v, 6) for v in self.center_m],
            "size_m": [round(v, 6) for v in self.size_m],
            "yaw_rad": round(self.yaw_rad, 6),
            "speed_mps": round(self.speed_mps, 6),
            "velocity_mps": [round(v, 6) for v in self.velocity_mps],
            "visible_px": self.visible_px,
        }


@dataclass
class SynthFrame:
    index: int
    timestamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    panoptic: np.ndarray  # (H, W) int32 segment ids, 0 = void (never produced: every ray hits or is sky)
    semantic: np.ndarray  # (H, W) uint8 Cityscapes train ids
    depth_m: np.ndarray  # (H, W) float32 optical depth of the hit, inf for sky
    segments: List[Segment]
    camera: Camera
    objects: List[ObjectBox]
    bev: BevTruth
    ego_x_m: float = 0.0  # ego position along the street (world frame), for debugging and tests
    extras: dict = field(default_factory=dict)


def segments_table(panoptic: np.ndarray) -> List[Segment]:
    """Area and bbox of every segment in one pass over the image (COCO bbox: x, y, w, h)."""
    h, w = panoptic.shape
    ids, inverse = np.unique(panoptic.ravel(), return_inverse=True)
    area = np.bincount(inverse, minlength=ids.size)
    lab = inverse.reshape(h, w)
    cols = np.zeros((ids.size, w), dtype=bool)
    rows = np.zeros((ids.size, h), dtype=bool)
    cols[lab, np.arange(w)[None, :]] = True
    rows[lab, np.arange(h)[:, None]] = True
    out = []
    for k, seg_id in enumerate(ids):
        if seg_id == 0:
            continue
        cs, rs = np.nonzero(cols[k])[0], np.nonzero(rows[k])[0]
        train = seg_id // THING_ID_STRIDE - 1 if seg_id >= THING_ID_STRIDE else seg_id - 1
        out.append(
            Segment(
                id=int(seg_id),
                category_id=int(train),
                area_px=int(area[k]),
                bbox_xywh=(int(cs[0]), int(rs[0]), int(cs[-1] - cs[0] + 1), int(rs[-1] - rs[0] + 1)),
            )
        )
    return out


class StreetWorld:
    """One seeded street and drive. Cheap to construct; frames render independently of each other."""

    def __init__(self, config: Optional[SynthConfig] = None, seed: int = 0) -> None:
        self.config = config if config is not None else SynthConfig()
        self.seed = int(seed)
        self.camera: Camera = self.config.camera.camera()
        self.labels = load_label_space(self.config.label_space)
        rng = np.random.default_rng([self.seed, 0])
        self.section = L.draw_cross_section(rng, self.config.world, self.config.speed_mps)
        self.materials = M.MaterialTable()
        tone = rng.uniform(0.85, 1.15)
        ground = {
            "road": self.materials.add(np.array([82, 82, 88]) * tone, M.ASPHALT),
            "marking": self.materials.add((225, 225, 220), M.PLAIN),
            "curb": self.materials.add((175, 172, 165), M.PAVING),
            "sidewalk": self.materials.add(np.array([150, 140, 135]) * rng.uniform(0.85, 1.15), M.PAVING),
            "terrain": self.materials.add(np.array([95, 125, 55]) * rng.uniform(0.8, 1.15), M.GRASS),
        }
        self.noise = NoiseTexture(rng)
        sun_az, sun_el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(15, 65))
        self.sun_dir = np.array(
            [np.cos(sun_az) * np.cos(sun_el), np.sin(sun_az) * np.cos(sun_el), np.sin(sun_el)]
        )
        self.exposure = float(rng.uniform(0.85, 1.2))
        self.sky_horizon = np.array([200.0, 210.0, 220.0]) * rng.uniform(0.9, 1.05)
        self.sky_zenith = np.array([70.0, 120.0, 190.0]) * rng.uniform(0.8, 1.1)
        self.cloud_cover = float(rng.uniform(0.1, 0.7))
        self.chunks = L.ChunkGenerator(self.seed, self.section, self.config.world, self.materials)
        self.renderer = Renderer(
            self.camera,
            self.section,
            self.chunks,
            self.noise,
            self.sun_dir,
            float(rng.uniform(0.45, 0.65)),
            self.config.world.max_range_m,
            ground,
        )
        try:
            self.start_ns = parse_timestamp_ns(self.config.start_time, "start_time")
        except InputError as exc:
            raise ConfigError(str(exc)) from exc
        self._pixels: Optional[RaySet] = None
        self._bev_rays: Optional[tuple] = None
        speeds = [b.speed_mps for b in self.section.bands]
        self._v_max, self._v_min = max(speeds + [0.0]), min(speeds + [0.0])

    # ------------------------------------------------------------------ clock and ego
    def time_s(self, frame_index: int) -> float:
        return frame_index / self.config.frame_rate_hz

    def timestamp_ns(self, frame_index: int) -> int:
        return self.start_ns + int(round(self.time_s(frame_index) * 1e9))

    def ego_x_m(self, frame_index: int) -> float:
        return self.config.speed_mps * self.time_s(frame_index)

    def ego_pose(self, frame_index: int) -> np.ndarray:
        """4x4 vehicle frame -> street frame: the ego drives along +x at constant speed, level, at y = ego_y_m."""
        pose = np.eye(4)
        pose[0, 3] = self.ego_x_m(frame_index)
        pose[1, 3] = self.section.ego_y_m
        return pose

    # ------------------------------------------------------------------ things
    def things_at(self, frame_index: int) -> List[PlacedThing]:
        """Every thing near enough to matter (behind the ego by up to 30 m, ahead up to max range)."""
        t = self.time_s(frame_index)
        lo = self.ego_x_m(frame_index) - 30.0
        hi = self.ego_x_m(frame_index) + self.config.world.max_range_m
        c0 = int(np.floor((lo - 15.0 - self._v_max * t) / L.CHUNK_M))
        c1 = int(np.floor((hi + 15.0 - self._v_min * t) / L.CHUNK_M))
        placed = []
        for c in range(c0, c1 + 1):
            for p in place_tracks(self.chunks.chunk(c).tracks, t):
                if lo <= p.centre_xy[0] <= hi:
                    placed.append(p)
        return placed

    def _object_box(self, p: PlacedThing, ego_x: float, visible_px: int) -> ObjectBox:
        lo, hi = p.track.model.bounds
        centre_local = (lo + hi) / 2
        centre = p.rotation @ centre_local + p.world_origin()
        size = hi - lo
        return ObjectBox(
            p.track.track_id,
            p.segment_id,
            p.track.train_id,
            self.labels.names[p.track.train_id],
            (float(centre[0] - ego_x), float(centre[1] - self.section.ego_y_m), float(centre[2])),
            (float(size[0]), float(size[1]), float(size[2])),
            float(p.track.yaw_rad),
            float(p.track.speed_mps * np.cos(p.track.yaw_rad)),
            (float(p.track.speed_mps), 0.0),
            visible_px,
        )

    # ------------------------------------------------------------------ rendering
    @property
    def pixel_rays(self) -> RaySet:
        if self._pixels is None:
            self._pixels = RaySet.pixel_grid(self.camera)
        return self._pixels

    def cast(self, rays: RaySet, frame_index: int, with_ground: bool = True) -> HitBuffer:
        """Nearest hits of arbitrary rays from the camera at a frame (class, segment, t)."""
        return self.renderer.cast(
            rays,
            self.ego_x_m(frame_index),
            self.time_s(frame_index),
            with_ground,
            self.things_at(frame_index),
        )

    def render(self, frame_index: int) -> SynthFrame:
        if frame_index < 0:
            raise ValueError(f"frame index must be >= 0, got {frame_index}")
        ego_x = self.ego_x_m(frame_index)
        things = self.things_at(frame_index)
        rays = self.pixel_rays
        buf = self.renderer.cast(rays, ego_x, self.time_s(frame_index), True, things)
        h, w = self.camera.height, self.camera.width
        rgb = colourise(buf.material, buf.tu, buf.tv, buf.shade, self.materials, self.noise, self.exposure)
        is_sky = buf.material < 0
        if is_sky.any():
            rgb[is_sky] = sky(
                rays.dirs[is_sky], self.noise, self.sky_horizon, self.sky_zenith, self.cloud_cover
            )
        # Haze towards the horizon hides the far end of the street the way real cameras see it.
        haze = np.clip(np.where(np.isfinite(buf.t), buf.t, 1e9) / 600.0, 0.0, 0.6)[:, None]
        rgb = rgb * (1 - haze) + self.sky_horizon * haze
        panoptic = buf.segment.reshape(h, w)
        segments = segments_table(panoptic)
        areas = {s.id: s.area_px for s in segments}
        objects = []
        bev_boxes = []
        for p in things:
            box = self._object_box(p, ego_x, areas.get(p.segment_id, 0))
            spec = self.config.bev
            in_grid = (
                spec.x_min_m - 15 <= box.center_m[0] <= spec.x_max_m + 15
                and spec.y_min_m - 15 <= box.center_m[1] <= spec.y_max_m + 15
            )
            if box.visible_px > 0 or in_grid:
                objects.append(box)
            if in_grid:
                order = 0 if p.track.train_id == L.RIDER else 1
                bev_boxes.append((order, box))
        bev_boxes.sort(key=lambda ob: ob[0])
        bev = self._bev(frame_index, ego_x, [b for _, b in bev_boxes], things)
        return SynthFrame(
            index=frame_index,
            timestamp_ns=self.timestamp_ns(frame_index),
            rgb=np.clip(rgb, 0, 255).astype(np.uint8).reshape(h, w, 3),
            panoptic=panoptic,
            semantic=buf.train.reshape(h, w),
            depth_m=buf.t.astype(np.float32).reshape(h, w),
            segments=segments,
            camera=self.camera,
            objects=objects,
            bev=bev,
            ego_x_m=ego_x,
        )

    def _bev(
        self, frame_index: int, ego_x: float, boxes: List[ObjectBox], things: List[PlacedThing]
    ) -> BevTruth:
        spec = self.config.bev
        shape = bev_shape(spec.geometry())
        s = self.section
        centres = cell_centres(shape, spec.resolution_m, spec.x_min_m, spec.y_min_m)
        y_world = centres[..., 1] + s.ego_y_m
        drivable = (y_world >= -s.road_right_m) & (y_world <= s.road_left_m)
        on_walk = (y_world >= -s.sidewalk_outer_m(-1)) & (y_world <= s.sidewalk_outer_m(1))
        ground_class = np.where(drivable, L.ROAD, np.where(on_walk, L.SIDEWALK, L.TERRAIN)).astype(np.uint8)
        if self._bev_rays is None:
            z = np.where(drivable, 0.0, s.curb_height_m)
            pts = np.concatenate([centres.reshape(-1, 2), z.reshape(-1, 1)], axis=1)
            rays = RaySet.towards(self.camera, pts)
            _, depth = self.camera.project_vehicle_points(pts)
            w, h = self.camera.width, self.camera.height
            in_view = (
                (depth > 0) & (rays.u >= -0.5) & (rays.u < w - 0.5) & (rays.v >= -0.5) & (rays.v < h - 0.5)
            )
            keep = np.nonzero(in_view)[0]
            self._bev_rays = (keep, RaySet(rays.dirs[keep], rays.u[keep], rays.v[keep]))
        keep, rays = self._bev_rays
        # Only what stands between the camera and the grid can hide a cell.
        hits = self.renderer.cast(
            rays, ego_x, self.time_s(frame_index), False, things, range_m=spec.x_max_m + 5.0
        )
        visible = np.zeros(centres.shape[0] * centres.shape[1], dtype=bool)
        visible[keep] = hits.t >= 1.0 - 1e-9
        footprints = rasterise_footprints(
            spec,
            [(b.segment_id, b.center_m[:2], (b.size_m[0] / 2, b.size_m[1] / 2), b.yaw_rad) for b in boxes],
        )
        return BevTruth(
            drivable,
            visible.reshape(shape),
            footprints,
            ground_class,
            spec.resolution_m,
            spec.x_min_m,
            spec.y_min_m,
        )
