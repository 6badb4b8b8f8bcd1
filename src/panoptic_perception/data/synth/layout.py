"""The street's layout, drawn from the seed: a cross-section constant along x plus per-chunk
content (facades, fences, poles, parked and moving things).

World frame: x along the street (the ego drives towards +x), y to the left, z up; the road
surface is z = 0 and the road's centre line is y = 0. Content is generated lazily per 40 m chunk
from `rng(seed, chunk)`, so any frame of an arbitrarily long drive is reproducible on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from panoptic_perception.data.synth import materials as mat
from panoptic_perception.data.synth.config import WorldSettings
from panoptic_perception.data.synth.models import ModelFactory, PartModel
from panoptic_perception.errors import InputError

CHUNK_M = 40.0
MAX_THINGS_PER_CHUNK = 64
_CHUNK_OFFSET = 1000  # chunk indices -1000.. map to non-negative track id blocks

# Cityscapes train ids used by the generator.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)


@dataclass(frozen=True)
class Band:
    """A strip along the street where things of one kind move at one speed (so they never collide)."""

    y_m: float
    speed_mps: float
    kind: str  # "lane", "ego_lane", "bike", "parking", "walk"
    side: int  # -1 right (ego direction), +1 left (oncoming)


@dataclass(frozen=True)
class CrossSection:
    road_right_m: float  # road spans y in [-road_right_m, road_left_m]
    road_left_m: float
    curb_height_m: float
    sidewalk_m: Tuple[float, float]  # (right, left) widths
    terrain_m: Tuple[float, float]  # grass strip between sidewalk and facade line
    ego_y_m: float
    lane_lines: Tuple[Tuple[float, float, bool], ...]  # (y, width, dashed)
    bands: Tuple[Band, ...]

    def sidewalk_outer_m(self, side: int) -> float:
        """|y| where the sidewalk ends on side -1 (right) or +1 (left)."""
        i = 0 if side < 0 else 1
        return (self.road_right_m if side < 0 else self.road_left_m) + self.sidewalk_m[i]

    def facade_m(self, side: int) -> float:
        i = 0 if side < 0 else 1
        return self.sidewalk_outer_m(side) + self.terrain_m[i]


@dataclass
class FacadeRow:
    """Segments along one vertical plane |y| = const: x starts/ends, class, height, material."""

    x0: np.ndarray
    x1: np.ndarray
    train_id: np.ndarray
    height_m: np.ndarray
    ragged_m: np.ndarray  # amplitude of a noisy top (hedges, tree lines)
    material: np.ndarray

    @staticmethod
    def concat(rows: List[FacadeRow]) -> FacadeRow:
        return FacadeRow(
            *(
                np.concatenate([getattr(r, f) for r in rows])
                for f in ("x0", "x1", "train_id", "height_m", "ragged_m", "material")
            )
        )


@dataclass
class Prop:
    """A static box or vertical cylinder drawn as stuff (pole, sign, traffic light)."""

    train_id: int
    material: int
    lo: Tuple[float, float, float]
    hi: Tuple[float, float, float]
    radius_m: float = 0.0  # > 0: vertical cylinder through the box's centre


@dataclass
class Track:
    """A thing that persists over the drive: position x(t) = x0 + speed * t along its band."""

    track_id: int
    train_id: int
    x0_m: float
    y_m: float
    z_m: float  # ground height under it
    yaw_rad: float
    speed_mps: float
    model: PartModel
    carrier_track: int = 0  # riders: the vehicle they ride


@dataclass
class Chunk:
    facades: Dict[int, FacadeRow] = field(default_factory=dict)  # side -> row at the facade line
    fences: Dict[int, FacadeRow] = field(default_factory=dict)  # side -> row at the sidewalk's edge
    props: List[Prop] = field(default_factory=list)
    tracks: List[Track] = field(default_factory=list)


def draw_cross_section(
    rng: np.random.Generator, settings: WorldSettings, ego_speed_mps: float
) -> CrossSection:
    lane_w = rng.uniform(3.0, 3.6)
    lanes = int(rng.choice([1, 2], p=[0.6, 0.4]))
    bike = [1.5 if rng.random() < 0.35 else 0.0 for _ in range(2)]
    park = [2.2 if rng.random() < 0.55 else 0.0 for _ in range(2)]
    widths = [lanes * lane_w + bike[i] + park[i] for i in range(2)]
    curb = settings.curb_height_m if settings.curb_height_m is not None else rng.uniform(0.10, 0.18)
    sidewalk = (rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5))
    terrain = tuple(0.0 if rng.random() < 0.4 else rng.uniform(1.0, 5.0) for _ in range(2))
    ego_lane = int(rng.integers(lanes))
    ego_y = -(ego_lane + 0.5) * lane_w

    lines: List[Tuple[float, float, bool]] = [(0.0, 0.15, lanes == 1)]
    bands: List[Band] = []
    for i, side in enumerate((-1, 1)):
        for k in range(1, lanes):
            lines.append((side * k * lane_w, 0.12, True))
        lines.append((side * lanes * lane_w, 0.12, False))
        for k in range(lanes):
            y = side * (k + 0.5) * lane_w
            if side < 0 and k == ego_lane:
                bands.append(Band(y, ego_speed_mps, "ego_lane", side))
            elif side < 0:
                base = ego_speed_mps if ego_speed_mps > 1 else 8.0
                bands.append(Band(y, base * rng.uniform(0.6, 1.4), "lane", side))
            else:
                bands.append(Band(y, -settings.oncoming_speed_mps * rng.uniform(0.7, 1.3), "lane", side))
        if bike[i] > 0:
            bands.append(Band(side * (lanes * lane_w + 0.75), -side * rng.uniform(3.0, 6.0), "bike", side))
        if park[i] > 0:
            bands.append(Band(side * (widths[i] - 1.1), 0.0, "parking", side))
        inner = widths[i] + max(1.25, 0.35 * sidewalk[i])
        outer = widths[i] + max(inner - widths[i] + 0.8, 0.75 * sidewalk[i])
        for y_abs in (inner, outer):
            if y_abs < widths[i] + sidewalk[i] - 0.35:
                speed = 0.0 if rng.random() < 0.25 else rng.choice([-1, 1]) * rng.uniform(0.8, 1.7)
                bands.append(Band(side * y_abs, float(speed), "walk", side))
    return CrossSection(
        widths[0], widths[1], float(curb), sidewalk, terrain, ego_y, tuple(lines), tuple(bands)
    )


class ChunkGenerator:
    """Makes the content of chunk c (x in [c*CHUNK_M, (c+1)*CHUNK_M)) from rng(seed, c)."""

    def __init__(
        self,
        seed: int,
        section: CrossSection,
        settings: WorldSettings,
        table: mat.MaterialTable,
        ego_start_x_m: float = 0.0,
    ) -> None:
        self.seed = seed
        self.section = section
        self.settings = settings
        self.table = table
        self.models = ModelFactory(table)
        self.ego_start_x_m = ego_start_x_m
        self._pole_mat = table.add((120, 122, 125), mat.METAL)
        self._light_mat = table.add((35, 35, 30), mat.METAL)
        self._sign_mats = [
            table.add(c, mat.PLAIN) for c in ((30, 70, 170), (200, 30, 30), (235, 235, 235), (240, 190, 20))
        ]
        self._fence_mats = [table.add(c, mat.FENCE) for c in ((150, 140, 120), (90, 95, 90), (170, 160, 150))]
        self._wall_mats = [
            table.add(c, mat.PAVING) for c in ((160, 155, 145), (120, 110, 100), (180, 175, 170))
        ]
        self._hedge_mats = [table.add(c, mat.FOLIAGE) for c in ((60, 100, 40), (45, 80, 35), (80, 110, 50))]
        self._cache: Dict[int, Chunk] = {}

    def chunk(self, index: int) -> Chunk:
        if index not in self._cache:
            self._cache[index] = self._make(index)
        return self._cache[index]

    def _make(self, index: int) -> Chunk:
        if not -_CHUNK_OFFSET <= index < (99_999 // MAX_THINGS_PER_CHUNK) - _CHUNK_OFFSET:
            raise InputError(
                f"the synthetic street ends at chunk {index} (x = {index * CHUNK_M:.0f} m): "
                "use a shorter drive or a lower speed"
            )
        rng = np.random.default_rng([self.seed, 1 + index + _CHUNK_OFFSET])
        out = Chunk()
        x0 = index * CHUNK_M
        for side in (-1, 1):
            out.facades[side] = self._facade_row(rng, x0)
            if self.section.terrain_m[0 if side < 0 else 1] > 0.7:
                out.fences[side] = self._fence_row(rng, x0)
            out.props.extend(self._props(rng, x0, side))
        out.tracks = self._tracks(rng, index)
        return out

    def _facade_row(self, rng: np.random.Generator, x0: float) -> FacadeRow:
        rows = []
        x = x0
        while x < x0 + CHUNK_M - 1e-9:
            length = min(rng.uniform(6.0, 24.0), x0 + CHUNK_M - x)
            kind = rng.choice(4, p=[0.62, 0.2, 0.08, 0.1])
            if kind == 0:  # building with a window grid: params = spacing, floor height, window w, h
                base = np.array(
                    [
                        (190, 175, 150),
                        (150, 150, 150),
                        (150, 80, 60),
                        (220, 215, 200),
                        (110, 90, 75),
                        (170, 160, 135),
                    ][rng.integers(6)]
                ) * rng.uniform(0.85, 1.1)
                m = self.table.add(
                    base,
                    mat.FACADE,
                    (
                        rng.uniform(2.2, 3.6),
                        rng.uniform(2.8, 3.4),
                        rng.uniform(0.35, 0.6),
                        rng.uniform(0.4, 0.6),
                    ),
                )
                rows.append((x, x + length, BUILDING, rng.uniform(6.0, 22.0), 0.0, m))
            elif kind == 1:
                m = self._hedge_mats[rng.integers(len(self._hedge_mats))]
                rows.append((x, x + length, VEGETATION, rng.uniform(3.0, 9.0), rng.uniform(0.5, 2.0), m))
            elif kind == 3:
                m = self._wall_mats[rng.integers(len(self._wall_mats))]
                rows.append((x, x + length, WALL, rng.uniform(1.6, 3.2), 0.0, m))
            x += length  # kind 2: a gap through which sky and far ground show
        arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return FacadeRow(
            arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int32), arr[:, 3], arr[:, 4], arr[:, 5].astype(np.int32)
        )

    def _fence_row(self, rng: np.random.Generator, x0: float) -> FacadeRow:
        rows = []
        x = x0 + rng.uniform(0.0, 10.0)
        while x < x0 + CHUNK_M - 2.0:
            length = min(rng.uniform(4.0, 25.0), x0 + CHUNK_M - x)
            kind = rng.choice(3, p=[0.5, 0.2, 0.3])
            if kind == 0:
                rows.append(
                    (
                        x,
                        x + length,
                        FENCE,
                        rng.uniform(1.0, 1.8),
                        0.0,
                        self._fence_mats[rng.integers(len(self._fence_mats))],
                    )
                )
            elif kind == 1:
                rows.append(
                    (
                        x,
                        x + length,
                        WALL,
                        rng.uniform(0.8, 1.6),
                        0.0,
                        self._wall_mats[rng.integers(len(self._wall_mats))],
                    )
                )
            else:
                rows.append(
                    (
                        x,
                        x + length,
                        VEGETATION,
                        rng.uniform(0.9, 1.6),
                        0.3,
                        self._hedge_mats[rng.integers(len(self._hedge_mats))],
                    )
                )
            x += length + rng.uniform(2.0, 15.0)
        arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return FacadeRow(
            arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int32), arr[:, 3], arr[:, 4], arr[:, 5].astype(np.int32)
        )

    def _props(self, rng: np.random.Generator, x0: float, side: int) -> List[Prop]:
        props = []
        z = self.section.curb_height_m
        y = side * ((self.section.road_right_m if side < 0 else self.section.road_left_m) + 0.45)
        count = rng.poisson(self.settings.poles_per_100m * CHUNK_M / 100.0 / 2.0)
        for x in np.sort(rng.uniform(x0 + 0.5, x0 + CHUNK_M - 0.5, size=count)):
            height, radius = rng.uniform(3.5, 8.5), rng.uniform(0.06, 0.12)
            props.append(
                Prop(
                    POLE,
                    self._pole_mat,
                    (x - radius, y - radius, z),
                    (x + radius, y + radius, z + height),
                    radius,
                )
            )
            r = rng.random()
            if r < 0.4:  # a sign plate facing the traffic, 2 - 3 m up
                size = rng.uniform(0.5, 0.85)
                zc = z + min(height - size / 2, rng.uniform(2.0, 3.0))
                props.append(
                    Prop(
                        TRAFFIC_SIGN,
                        self._sign_mats[rng.integers(len(self._sign_mats))],
                        (x - radius - 0.05, y - size / 2, zc - size / 2),
                        (x - radius, y + size / 2, zc + size / 2),
                    )
                )
            elif r < 0.6 and height > 3.8:
                props.append(
                    Prop(
                        TRAFFIC_LIGHT,
                        self._light_mat,
                        (x - radius - 0.3, y - 0.17, z + height - 1.0),
                        (x - radius, y + 0.17, z + height - 0.1),
                    )
                )
        return props

    def _tracks(self, rng: np.random.Generator, index: int) -> List[Track]:
        s = self.settings
        x0, x1 = index * CHUNK_M, (index + 1) * CHUNK_M
        lanes = [b for b in self.section.bands if b.kind in ("lane", "ego_lane")]
        tracks: List[Track] = []

        def next_id() -> int:
            if len(tracks) >= MAX_THINGS_PER_CHUNK:
                return 0
            return (index + _CHUNK_OFFSET) * MAX_THINGS_PER_CHUNK + len(tracks) + 1

        for band in self.section.bands:
            if band.kind in ("lane", "ego_lane"):
                mean = s.cars_per_100m * CHUNK_M / 100.0 / max(1, len(lanes))
            elif band.kind == "parking":
                mean = s.parked_cars_per_100m * CHUNK_M / 100.0 / 2.0
            elif band.kind == "bike":
                mean = s.cyclists_per_100m * CHUNK_M / 100.0
            else:
                mean = s.persons_per_100m * CHUNK_M / 100.0 / 4.0
            wanted = rng.poisson(mean)
            cursor = x0
            for x_try in np.sort(rng.uniform(x0, x1, size=wanted)):
                made = self._thing_for_band(rng, band)
                if not made:
                    continue
                lo, hi = made[0][1].bounds
                half_len = max(-lo[0], hi[0])
                gap = 0.5 if band.kind == "walk" else 1.5
                start = max(x_try, cursor + half_len + gap)
                if start + half_len > x1 - gap / 2:
                    break
                if band.kind == "ego_lane" and -12.0 < start - self.ego_start_x_m < 15.0:
                    continue  # the ego's own lane stays free around the ego (they share its speed)
                cursor = start + half_len
                yaw = 0.0 if band.speed_mps > 0 or (band.speed_mps == 0 and band.side < 0) else np.pi
                if band.kind == "walk" and band.speed_mps == 0:
                    yaw = rng.uniform(-np.pi, np.pi)
                elif band.kind == "parking":
                    yaw += rng.normal(0.0, 0.03)
                z = self.section.curb_height_m if band.kind == "walk" else 0.0
                carrier = 0
                for train_id, model in made:
                    track_id = next_id()
                    if track_id == 0:
                        break
                    tracks.append(
                        Track(
                            track_id,
                            train_id,
                            float(start),
                            band.y_m,
                            z,
                            float(yaw),
                            band.speed_mps,
                            model,
                            carrier,
                        )
                    )
                    carrier = track_id
        return tracks

    def _thing_for_band(self, rng: np.random.Generator, band: Band) -> List[Tuple[int, PartModel]]:
        f = self.models
        if band.kind == "walk":
            return [(PERSON, f.person(rng))]
        if band.kind == "bike":
            return self._two_wheeler(rng, bicycle=True)
        if band.kind == "parking":
            return [(CAR, f.car(rng))]  # a parked truck would overhang the curb
        r = rng.random()
        if r < 0.74:
            return [(CAR, f.car(rng))]
        if r < 0.86:
            return [(TRUCK, f.truck(rng))]
        if r < 0.94:
            return [(BUS, f.bus(rng))]
        return self._two_wheeler(rng, bicycle=False)

    def _two_wheeler(self, rng: np.random.Generator, bicycle: bool) -> List[Tuple[int, PartModel]]:
        f = self.models
        if bicycle:
            return [(BICYCLE, f.bicycle(rng)), (RIDER, f.rider(rng, seat_m=0.9, x_m=-0.2))]
        return [(MOTORCYCLE, f.motorcycle(rng)), (RIDER, f.rider(rng, seat_m=0.85, x_m=-0.25))]
