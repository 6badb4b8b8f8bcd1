"""The cells under polygons, one cell and one edge at a time in Python integers: the rule that
tracking/polygon_cells.py documents, written out without its row runs, to check them against."""
from __future__ import annotations

import math
from typing import Iterable, Tuple

import numpy as np

FRACTION_BITS, COORDINATE_BITS = 16, 29


def per_cell_masks(polygons: Iterable[np.ndarray], yaw: float, tx: float, ty: float, origin_col: int,
                   origin_row: int, width: int, height: int, res: float, margin: float) -> Tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """Whole-window masks (inside, grown) of polygons (k, 2) in the vehicle frame at pose (yaw, tx, ty)."""
    inside = np.zeros((height, width), dtype=bool)
    grown = np.zeros_like(inside)
    c, s = math.cos(yaw), math.sin(yaw)
    for polygon in polygons:
        x = tx + c * polygon[:, 0] - s * polygon[:, 1]
        y = ty + s * polygon[:, 0] + c * polygon[:, 1]
        c0 = max(math.floor((x.min() - margin) / res) - origin_col, 0)
        c1 = min(math.ceil((x.max() + margin) / res) - origin_col, width)
        r0 = max(math.floor((y.min() - margin) / res) - origin_row, 0)
        r1 = min(math.ceil((y.max() + margin) / res) - origin_row, height)
        if c0 >= c1 or r0 >= r1:
            continue
        u, v = x / res - (origin_col + c0), y / res - (origin_row + r0)
        extent = max(np.abs(u).max(), np.abs(v).max()) + margin / res + 2.0
        bits = min(FRACTION_BITS, COORDINATE_BITS - math.frexp(extent)[1])
        scale = 2 ** bits
        corners = [(int(np.rint(a * scale)), int(np.rint(b * scale))) for a, b in zip(u, v)]
        twice_area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(corners, corners[1:] + corners[:1]))
        if twice_area < 0:
            corners = corners[::-1]
        edges = []
        for a, b in zip(corners, corners[1:] + corners[:1]):
            ex, ey = b[0] - a[0], b[1] - a[1]
            edges.append((a, ex, ey, -int(np.rint(margin / res * scale * math.hypot(ex, ey)))))
        for row in range(r0, r1):
            for col in range(c0, c1):
                # the centre of the cell, in the box's fixed point: (index + 1/2) cells
                cx, cy = (2 * (col - c0) + 1) * scale // 2, (2 * (row - r0) + 1) * scale // 2
                values = [(ex * (cy - a[1]) - ey * (cx - a[0]), floor) for a, ex, ey, floor in edges]
                inside[row, col] |= all(e >= 0 for e, _ in values)
                grown[row, col] |= all(e >= floor for e, floor in values)
    return inside, grown
