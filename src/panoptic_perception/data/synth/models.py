"""Metric part models of the things: unions of boxes in the object's own frame.

Object frame: x along the heading, y to the left, z up, origin at the centre of the ground
footprint. Every model has a solid part from the ground up covering at least the inner half of
its footprint (riders excepted: they sit on their vehicle), so a ray that meets the ground inside
that region hits the thing first - the property the exactness tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panoptic_perception.data.synth import materials as mat


@dataclass(frozen=True)
class PartModel:
    lo: np.ndarray  # (K, 3) box minima in the object frame, metres
    hi: np.ndarray  # (K, 3) box maxima
    materials: np.ndarray  # (K,) material ids

    @property
    def bounds(self) -> tuple:
        """(min corner (3,), max corner (3,)) of the tight axis-aligned box around all parts."""
        return self.lo.min(axis=0), self.hi.max(axis=0)


def _model(parts) -> PartModel:
    lo = np.array([p[0] for p in parts], dtype=np.float64)
    hi = np.array([p[1] for p in parts], dtype=np.float64)
    return PartModel(lo, hi, np.array([p[2] for p in parts], dtype=np.int32))


def _paint(rng: np.random.Generator, table: mat.MaterialTable, palette) -> int:
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float64)
    return table.add(np.clip(base * rng.uniform(0.85, 1.15), 5, 250), mat.PAINT)


CAR_PAINTS = [
    (200, 200, 205),
    (25, 25, 30),
    (120, 125, 130),
    (160, 20, 25),
    (30, 60, 140),
    (230, 230, 225),
    (70, 90, 60),
    (180, 150, 90),
    (90, 30, 40),
]
TRUCK_PAINTS = [(235, 235, 235), (200, 60, 30), (40, 80, 150), (220, 200, 40), (90, 90, 95)]
BUS_PAINTS = [(230, 200, 40), (220, 220, 220), (30, 110, 170), (180, 30, 30)]
CLOTHES = [
    (30, 30, 40),
    (60, 60, 70),
    (140, 30, 40),
    (30, 60, 120),
    (200, 200, 200),
    (100, 80, 60),
    (50, 100, 60),
    (220, 170, 40),
    (150, 150, 160),
]
SKINS = [(235, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40)]


class ModelFactory:
    """Draws one part model per thing (sizes and colours from the rng)."""

    def __init__(self, table: mat.MaterialTable) -> None:
        self.table = table
        self.glass = table.add((40, 50, 60), mat.GLASS)
        self.rubber = table.add((22, 22, 24), mat.RUBBER)
        self.chrome = table.add((110, 110, 115), mat.METAL)

    def car(self, rng: np.random.Generator) -> PartModel:
        length, width, height = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9), rng.uniform(1.4, 1.65)
        paint = _paint(rng, self.table, CAR_PAINTS)
        hl, hw = length / 2, width / 2
        belt = 0.58 * height
        return _model(
            [
                ((-hl, -hw, 0.0), (hl, hw, 0.32), self.rubber),  # wheels and underbody band
                ((-hl, -hw, 0.32), (hl, hw, belt), paint),
                ((-0.42 * hl, -hw + 0.08, belt), (0.28 * hl, hw - 0.08, height - 0.06), self.glass),
                ((-0.40 * hl, -hw + 0.1, height - 0.06), (0.25 * hl, hw - 0.1, height), paint),  # roof
            ]
        )

    def truck(self, rng: np.random.Generator) -> PartModel:
        length, width, height = rng.uniform(6.0, 9.0), rng.uniform(2.3, 2.5), rng.uniform(2.9, 3.6)
        cab_paint = _paint(rng, self.table, TRUCK_PAINTS)
        box_paint = _paint(rng, self.table, TRUCK_PAINTS)
        hl, hw = length / 2, width / 2
        cab_len = 2.1
        return _model(
            [
                ((-hl, -hw, 0.0), (hl, hw, 0.9), self.rubber),  # chassis and wheels
                ((hl - cab_len, -hw, 0.9), (hl, hw, 1.6), cab_paint),
                ((hl - cab_len + 0.1, -hw + 0.05, 1.6), (hl, hw - 0.05, 2.45), self.glass),
                ((-hl, -hw, 0.9), (hl - cab_len - 0.15, hw, height), box_paint),
            ]
        )

    def bus(self, rng: np.random.Generator) -> PartModel:
        length, width, height = rng.uniform(10.0, 12.5), rng.uniform(2.45, 2.55), rng.uniform(3.0, 3.3)
        paint = _paint(rng, self.table, BUS_PAINTS)
        hl, hw = length / 2, width / 2
        return _model(
            [
                ((-hl, -hw, 0.0), (hl, hw, 0.45), self.rubber),
                ((-hl, -hw, 0.45), (hl, hw, 1.2), paint),
                ((-hl, -hw, 1.2), (hl, hw, 2.3), self.glass),
                ((-hl, -hw, 2.3), (hl, hw, height), paint),
            ]
        )

    def person(self, rng: np.random.Generator, z0: float = 0.0) -> PartModel:
        height = rng.uniform(1.55, 1.95)
        top = self.table.add(CLOTHES[rng.integers(len(CLOTHES))], mat.CLOTH)
        legs = self.table.add(CLOTHES[rng.integers(len(CLOTHES))], mat.CLOTH)
        skin = self.table.add(SKINS[rng.integers(len(SKINS))], mat.SKIN)
        depth, shoulders = rng.uniform(0.2, 0.26), rng.uniform(0.26, 0.31)
        return _model(
            [
                ((-0.14, -0.17, z0), (0.14, 0.17, z0 + 0.47 * height), legs),
                ((-depth, -shoulders, z0 + 0.47 * height), (depth, shoulders, z0 + 0.83 * height), top),
                ((-0.1, -0.09, z0 + 0.83 * height), (0.1, 0.09, z0 + height), skin),
            ]
        )

    def rider(self, rng: np.random.Generator, seat_m: float, x_m: float) -> PartModel:
        """A seated rider whose body starts at the vehicle's seat height."""
        top = self.table.add(CLOTHES[rng.integers(len(CLOTHES))], mat.CLOTH)
        skin = self.table.add(SKINS[rng.integers(len(SKINS))], mat.SKIN)
        return _model(
            [
                ((x_m - 0.25, -0.2, seat_m), (x_m + 0.2, 0.2, seat_m + 0.25), top),  # hips and thighs
                ((x_m - 0.2, -0.24, seat_m + 0.25), (x_m + 0.12, 0.24, seat_m + 0.8), top),
                ((x_m - 0.1, -0.09, seat_m + 0.8), (x_m + 0.08, 0.09, seat_m + 1.0), skin),
            ]
        )

    def bicycle(self, rng: np.random.Generator) -> PartModel:
        frame = _paint(rng, self.table, CAR_PAINTS)
        return _model(
            [
                ((-0.86, -0.13, 0.0), (0.86, 0.13, 0.68), self.rubber),  # wheels seen edge-on, frame
                ((-0.3, -0.05, 0.68), (-0.2, 0.05, 0.9), frame),  # seat post
                ((0.45, -0.05, 0.68), (0.55, 0.05, 1.0), frame),  # steerer
                ((0.42, -0.3, 1.0), (0.55, 0.3, 1.06), self.chrome),  # handlebar
            ]
        )

    def motorcycle(self, rng: np.random.Generator) -> PartModel:
        paint = _paint(rng, self.table, CAR_PAINTS)
        return _model(
            [
                ((-1.05, -0.22, 0.0), (1.05, 0.22, 0.45), self.rubber),
                ((-0.8, -0.25, 0.45), (0.75, 0.25, 0.85), paint),
                ((0.55, -0.4, 0.95), (0.7, 0.4, 1.1), self.chrome),
                ((0.55, -0.1, 0.85), (0.7, 0.1, 0.95), self.chrome),
            ]
        )
