"""Exact ray casting of the street world: the nearest hit per ray decides colour, class and
instance together, so the ground truth is the image's own geometry, never a second estimate.

Because the ego drives straight along +x, a ray's intersection with any surface of constant y or
z (road, sidewalks, curbs, facade and fence lines) has the same t in every frame; only its x
moves. Those t are computed once per ray set and cached; per frame the renderer only looks up
which facade segment each x falls in and casts the (culled) props and things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional

import numpy as np

from panoptic_perception.data.synth import layout as L
from panoptic_perception.data.synth import raycast
from panoptic_perception.data.synth.ids import stuff_segment_id, thing_segment_id
from panoptic_perception.data.synth.rays import RaySet
from panoptic_perception.data.synth.textures import NoiseTexture
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.slab import ray_boxes

_MAX_FACADE_M = 26.0
# Edges of a box given by its 8 corners in binary order (bit 0: x, bit 1: y, bit 2: z).
_BOX_EDGES = [(a, b) for a in range(8) for b in range(8) if a < b and bin(a ^ b).count("1") == 1]


_CORNER_BITS = np.arange(8)


def _aabb_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(8, 3) corners in binary order (bit 0: x, bit 1: y, bit 2: z)."""
    b = _CORNER_BITS
    return np.stack(
        [np.where(b & 1, hi[0], lo[0]), np.where(b & 2, hi[1], lo[1]), np.where(b & 4, hi[2], lo[2])], axis=1
    )


@dataclass
class PlacedThing:
    """A track at one instant, in world coordinates."""

    track: L.Track
    centre_xy: np.ndarray  # (2,) origin of the object frame (footprint centre), world frame
    rotation: np.ndarray  # (3, 3) yaw rotation object -> world

    @property
    def segment_id(self) -> int:
        return thing_segment_id(self.track.train_id, self.track.track_id)

    def world_origin(self) -> np.ndarray:
        return np.array([self.centre_xy[0], self.centre_xy[1], self.track.z_m])

    def corners_world(self) -> np.ndarray:
        lo, hi = self.track.model.bounds
        return _aabb_corners(lo, hi) @ self.rotation.T + self.world_origin()


class HitBuffer:
    """Nearest hit so far per ray."""

    def __init__(self, n: int) -> None:
        self.t = np.full(n, np.inf)
        self.material = np.full(n, -1, dtype=np.int32)
        self.segment = np.full(n, stuff_segment_id(L.SKY), dtype=np.int32)
        self.train = np.full(n, L.SKY, dtype=np.uint8)
        self.shade = np.ones(n, dtype=np.float32)
        self.tu = np.zeros(n, dtype=np.float32)
        self.tv = np.zeros(n, dtype=np.float32)

    def update(
        self, idx: Optional[np.ndarray], t: np.ndarray, material, segment, train, shade, tu, tv
    ) -> None:
        current = self.t if idx is None else self.t[idx]
        closer = t < current
        if not closer.any():
            return
        where = np.nonzero(closer)[0] if idx is None else idx[closer]

        def pick(value):
            return value[closer] if isinstance(value, np.ndarray) and value.ndim > 0 else value

        self.t[where] = t[closer]
        self.material[where] = pick(material)
        self.segment[where] = pick(segment)
        self.train[where] = pick(train)
        self.shade[where] = pick(shade)
        self.tu[where] = pick(tu)
        self.tv[where] = pick(tv)


class Renderer:
    def __init__(
        self,
        camera: Camera,
        section: L.CrossSection,
        chunks: L.ChunkGenerator,
        noise: NoiseTexture,
        sun_dir: np.ndarray,
        ambient: float,
        max_range_m: float,
        ground_materials: dict,
    ) -> None:
        self.camera = camera
        self.section = section
        self.chunks = chunks
        self.noise = noise
        self.sun = np.asarray(sun_dir, dtype=np.float64) / np.linalg.norm(sun_dir)
        self.ambient = float(ambient)
        self.max_range_m = float(max_range_m)
        self.mats = ground_materials
        cam_t = camera.extrinsics.translation()
        # The camera's world position at ego x = 0; its y and z never change during a drive.
        self.cam_y_m = float(section.ego_y_m + cam_t[1])
        self.cam_z_m = float(cam_t[2])
        self.cam_dx_m = float(cam_t[0])

    def _shade(self, normals: np.ndarray) -> np.ndarray:
        lambert = np.clip(normals @ self.sun, 0.0, None)
        return (self.ambient + (1.0 - self.ambient) * lambert).astype(np.float32)

    # ---------------------------------------------------------------- static, frame-invariant geometry
    def _ground_static(self, rays: RaySet) -> dict:
        if "ground" in rays.cache:
            return rays.cache["ground"]
        s = self.section
        d = rays.dirs
        oy, oz, h = self.cam_y_m, self.cam_z_m, s.curb_height_m
        with np.errstate(divide="ignore", invalid="ignore"):
            t_road = np.where(d[:, 2] < 0, -oz / d[:, 2], np.inf)
            t_top = np.where(d[:, 2] < 0, (h - oz) / d[:, 2], np.inf)
            t_right = np.where(d[:, 1] < 0, (-s.road_right_m - oy) / d[:, 1], np.inf)
            t_left = np.where(d[:, 1] > 0, (s.road_left_m - oy) / d[:, 1], np.inf)
        y_road = oy + t_road * d[:, 1]
        y_top = oy + t_top * d[:, 1]
        t_road = np.where((y_road >= -s.road_right_m) & (y_road <= s.road_left_m), t_road, np.inf)
        t_top = np.where((y_top < -s.road_right_m) | (y_top > s.road_left_m), t_top, np.inf)
        for t_c in (t_right, t_left):
            z = oz + t_c * d[:, 2]
            t_c[~((z >= 0.0) & (z <= h))] = np.inf
        stack = np.stack([t_road, t_top, t_right, t_left])
        which = np.argmin(stack, axis=0)
        t = stack[which, np.arange(rays.size)]
        t[t > 1e4] = np.inf  # beyond this the ground is haze at the horizon
        y = oy + t * d[:, 1]
        z = oz + t * d[:, 2]
        outer_r, outer_l = s.sidewalk_outer_m(-1), s.sidewalk_outer_m(1)
        on_walk = (y >= -outer_r) & (y <= outer_l)
        train = np.where(which == 0, L.ROAD, np.where(on_walk, L.SIDEWALK, L.TERRAIN)).astype(np.uint8)
        material = np.where(
            which == 0,
            self.mats["road"],
            np.where(
                which >= 2, self.mats["curb"], np.where(on_walk, self.mats["sidewalk"], self.mats["terrain"])
            ),
        )
        normals = np.zeros_like(d)
        normals[which <= 1, 2] = 1.0
        normals[which == 2, 1] = 1.0
        normals[which == 3, 1] = -1.0
        hit = np.isfinite(t)
        tv = np.where(hit, np.where(which >= 2, z, y), 0.0)
        out = {
            "t": t,
            "hit": hit,
            "train": train,
            "material": material.astype(np.int32),
            "y": y,
            "shade": self._shade(normals),
            "tv": tv.astype(np.float32),
        }
        rays.cache["ground"] = out
        return out

    def _plane_static(self, rays: RaySet, side: int, y_abs: float, key: str) -> dict:
        """Rays that can meet the vertical plane y = side * y_abs within range and facade height."""
        cache_key = (key, side)
        if cache_key in rays.cache:
            return rays.cache[cache_key]
        d = rays.dirs
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (side * y_abs - self.cam_y_m) / d[:, 1]
        z = self.cam_z_m + t * d[:, 2]
        h = self.section.curb_height_m
        ok = (t > 0) & (t * np.abs(d[:, 0]) < self.max_range_m) & (z >= h) & (z <= h + _MAX_FACADE_M)
        idx = np.nonzero(ok)[0]
        normal = np.array([[0.0, -float(side), 0.0]])
        out = {
            "idx": idx,
            "t": t[idx],
            "xt": t[idx] * d[idx, 0],
            "z": z[idx],
            "shade": float(self._shade(normal)[0]),
        }
        rays.cache[cache_key] = out
        return out

    # ---------------------------------------------------------------- per frame
    def cast(
        self,
        rays: RaySet,
        ego_x_m: float,
        time_s: float,
        with_ground: bool = True,
        things: Optional[List[PlacedThing]] = None,
        range_m: Optional[float] = None,
    ) -> HitBuffer:
        """Nearest hits of `rays` with the ego at x = ego_x_m; only content up to range_m ahead is drawn."""
        buf = HitBuffer(rays.size)
        ox = ego_x_m + self.cam_dx_m
        origin = np.array([ox, self.cam_y_m, self.cam_z_m])
        reach = self.max_range_m if range_m is None else min(range_m, self.max_range_m)
        if with_ground:
            self._draw_ground(rays, buf, ox)
        chunk_ids = range(int(np.floor((ox - 10.0) / L.CHUNK_M)), int(np.floor((ox + reach) / L.CHUNK_M)) + 1)
        chunks = [self.chunks.chunk(c) for c in chunk_ids]
        for side in (-1, 1):
            self._draw_row(
                rays,
                buf,
                ox,
                side,
                self.section.facade_m(side),
                "facade",
                L.FacadeRow.concat([c.facades[side] for c in chunks]),
            )
            if self.section.terrain_m[0 if side < 0 else 1] > 0.7:
                self._draw_row(
                    rays,
                    buf,
                    ox,
                    side,
                    self.section.sidewalk_outer_m(side),
                    "fence",
                    L.FacadeRow.concat([c.fences[side] for c in chunks]),
                )
        props = [p for c in chunks for p in c.props if p.lo[0] - ox <= reach and p.hi[0] >= ox - 10.0]
        things = [t for t in (things or []) if -30.0 <= t.centre_xy[0] - ox <= reach]
        corners = [_aabb_corners(np.array(p.lo), np.array(p.hi)) for p in props]
        corners += [t.corners_world() for t in things]
        if not corners:
            return buf
        rects = self._cull_rects(np.stack(corners), origin)
        for k, prop in enumerate(props):
            if rects[k] is not None:
                self._draw_prop(rays, buf, origin, prop, rays.select(*rects[k]))
        for k, placed in enumerate(things):
            rect = rects[len(props) + k]
            if rect is not None:
                self._draw_thing(rays, buf, origin, placed, rays.select(*rect))
        return buf

    def _cull_rects(self, corners_world: np.ndarray, origin: np.ndarray) -> list:
        """Image rectangle (u0, u1, v0, v1) of each box (n, 8, 3), clipped at the camera; None if unseen."""
        cam = self.camera
        optical = (corners_world - origin) @ cam.extrinsics.rotation()
        near = 1e-3
        depth = optical[..., 2]
        in_front = depth > near
        m = cam.intrinsics.camera_matrix
        w, h = cam.width, cam.height
        with np.errstate(divide="ignore", invalid="ignore"):
            u = m[0, 0] * optical[..., 0] / depth + m[0, 1] * optical[..., 1] / depth + m[0, 2]
            v = m[1, 1] * optical[..., 1] / depth + m[1, 2]
        rects: list = []
        for k in range(len(corners_world)):
            if not in_front[k].any():
                rects.append(None)
                continue
            if in_front[k].all():
                u0, u1, v0, v1 = u[k].min(), u[k].max(), v[k].min(), v[k].max()
            else:  # straddles the camera plane: add where the box's edges cross it
                pts = [optical[k][in_front[k]]]
                for a, b in _BOX_EDGES:
                    if in_front[k, a] != in_front[k, b]:
                        f = (near - depth[k, a]) / (depth[k, b] - depth[k, a])
                        pts.append((optical[k, a] + f * (optical[k, b] - optical[k, a]))[None])
                uv, _ = cam.intrinsics.project(np.concatenate(pts))
                u0, v0 = uv.min(axis=0)
                u1, v1 = uv.max(axis=0)
            if u1 < -1.0 or v1 < -1.0 or u0 > w or v0 > h:
                rects.append(None)
            else:
                rects.append((u0 - 1.0, u1 + 1.0, v0 - 1.0, v1 + 1.0))
        return rects

    def _draw_ground(self, rays: RaySet, buf: HitBuffer, ox: float) -> None:
        g = self._ground_static(rays)
        hit = g["hit"]
        t = g["t"]
        x = ox + np.where(hit, t, 0.0) * rays.dirs[:, 0]
        x[~hit] = 0.0
        material = g["material"].copy()
        road = hit & (g["train"] == L.ROAD)
        y = g["y"]
        paint = np.zeros(rays.size, dtype=bool)
        for y_line, width, dashed in self.section.lane_lines:
            on = road & (np.abs(y - y_line) <= width / 2)
            if dashed:
                on &= np.mod(x, 9.0) < 3.0
            paint |= on
        material[paint] = self.mats["marking"]
        buf.t[:] = t
        buf.material[:] = np.where(hit, material, -1)
        buf.train[:] = np.where(hit, g["train"], L.SKY)
        buf.segment[:] = np.where(hit, g["train"].astype(np.int32) + 1, stuff_segment_id(L.SKY))
        buf.shade[:] = g["shade"]
        buf.tu[:] = x.astype(np.float32)
        buf.tv[:] = g["tv"]

    def _draw_row(
        self, rays: RaySet, buf: HitBuffer, ox: float, side: int, y_abs: float, key: str, row: L.FacadeRow
    ) -> None:
        if row.x0.size == 0:
            return
        p = self._plane_static(rays, side, y_abs, key)
        if p["idx"].size == 0:
            return
        x = ox + p["xt"]
        seg = np.searchsorted(row.x0, x, side="right") - 1
        seg_c = np.clip(seg, 0, None)
        z_rel = p["z"] - self.section.curb_height_m
        top = row.height_m[seg_c] + row.ragged_m[seg_c] * self.noise.profile(x * 1.7 + 31.0 * side)
        ok = (seg >= 0) & (x < row.x1[seg_c]) & (z_rel <= top)
        if not ok.any():
            return
        idx = p["idx"][ok]
        seg_c = seg_c[ok]
        train = row.train_id[seg_c].astype(np.uint8)
        buf.update(
            idx,
            p["t"][ok],
            row.material[seg_c],
            train.astype(np.int32) + 1,
            train,
            p["shade"],
            x[ok].astype(np.float32),
            z_rel[ok].astype(np.float32),
        )

    def _draw_prop(
        self, rays: RaySet, buf: HitBuffer, origin: np.ndarray, prop: L.Prop, idx: np.ndarray
    ) -> None:
        lo, hi = np.array(prop.lo), np.array(prop.hi)
        if idx.size == 0:
            return
        d = rays.dirs[idx]
        if prop.radius_m > 0:
            c = (lo + hi) / 2
            t, normal = raycast.vertical_cylinder(origin, d, c[0], c[1], prop.radius_m, lo[2], hi[2])
            tu = np.arctan2(normal[:, 1], normal[:, 0]) * prop.radius_m
        else:
            t, _, normal = ray_boxes(origin, d, lo[None], hi[None])
            tu = origin[1] + t * d[:, 1]
        z = origin[2] + t * d[:, 2]
        finite = np.isfinite(t)
        if not finite.any():
            return
        idx, t, normal, tu, z = idx[finite], t[finite], normal[finite], tu[finite], z[finite]
        buf.update(
            idx,
            t,
            prop.material,
            stuff_segment_id(prop.train_id),
            prop.train_id,
            self._shade(normal),
            tu.astype(np.float32),
            z.astype(np.float32),
        )

    def _draw_thing(
        self, rays: RaySet, buf: HitBuffer, origin: np.ndarray, placed: PlacedThing, idx: np.ndarray
    ) -> None:
        if idx.size == 0:
            return
        model = placed.track.model
        rot = placed.rotation
        o_local = (origin - placed.world_origin()) @ rot
        d_local = rays.dirs[idx] @ rot
        t, part, n_local = ray_boxes(o_local, d_local, model.lo, model.hi)
        finite = np.isfinite(t)
        if not finite.any():
            return
        idx, t, part, n_local, d_local = (
            idx[finite],
            t[finite],
            part[finite],
            n_local[finite],
            d_local[finite],
        )
        p = o_local + t[:, None] * d_local
        along_x = np.abs(n_local[:, 0]) > 0.5
        tu = np.where(along_x, p[:, 1], p[:, 0])
        tv = np.where(np.abs(n_local[:, 2]) > 0.5, p[:, 1], p[:, 2])
        buf.update(
            idx,
            t,
            model.materials[part],
            placed.segment_id,
            placed.track.train_id,
            self._shade(n_local @ rot.T),
            tu.astype(np.float32),
            tv.astype(np.float32),
        )


def place_tracks(tracks: Iterable[L.Track], time_s: float) -> List[PlacedThing]:
    placed = []
    for tr in tracks:
        x = tr.x0_m + tr.speed_mps * time_s
        placed.append(PlacedThing(tr, np.array([x, tr.y_m]), raycast.yaw_matrix(tr.yaw_rad)))
    return placed
