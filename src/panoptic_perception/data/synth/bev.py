"""Bird's-eye ground truth in the vehicle frame.

The grid is the projection's (geometry.grid GridExtent / GridGeometry: same cells, same
centres), but arrays are indexed [i, j] = [x, y], the transpose of the OccupancyGrid's [row = y,
col = x]: i along x (forward) from x_min_m, j along y (left) from y_min_m; cell (i, j) covers x in
[x_min + i*res, x_min + (i+1)*res) and likewise in y, and is judged at its centre. `visible` is
exact: a cell is visible when it projects into the image and the straight ray from the camera
centre to the cell's ground point meets nothing before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from panoptic_perception.errors import InputError
from panoptic_perception.geometry.grid import GridExtent, GridGeometry

BEV_FORMAT_VERSION = 1


@dataclass
class BevTruth:
    drivable: np.ndarray  # (nx, ny) bool: road surface (lanes, bike and parking lanes)
    visible: np.ndarray  # (nx, ny) bool: ground point seen by the camera
    footprint_ids: np.ndarray  # (nx, ny) int32: panoptic segment id of the thing standing there, 0 none
    ground_class: np.ndarray  # (nx, ny) uint8: train id of the ground surface (road, sidewalk, terrain)
    resolution_m: float
    x_min_m: float
    y_min_m: float

    @property
    def shape(self) -> tuple:
        return self.drivable.shape

    def cell_centres(self) -> np.ndarray:
        """(nx, ny, 2) vehicle-frame x, y of each cell centre."""
        return cell_centres(self.shape, self.resolution_m, self.x_min_m, self.y_min_m)

    def save_npz(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            drivable=self.drivable,
            visible=self.visible,
            footprint_ids=self.footprint_ids,
            ground_class=self.ground_class,
            resolution_m=np.float64(self.resolution_m),
            origin_m=np.array([self.x_min_m, self.y_min_m]),
            shape=np.array(self.shape, dtype=np.int64),
            format_version=np.int64(BEV_FORMAT_VERSION),
        )

    @classmethod
    def load_npz(cls, path: str | Path) -> BevTruth:
        path = Path(path)
        try:
            with np.load(path) as data:
                shape = tuple(int(v) for v in data["shape"])
                origin = data["origin_m"]
                out = cls(
                    data["drivable"].astype(bool),
                    data["visible"].astype(bool),
                    data["footprint_ids"].astype(np.int32),
                    data["ground_class"].astype(np.uint8),
                    float(data["resolution_m"]),
                    float(origin[0]),
                    float(origin[1]),
                )
        except FileNotFoundError as exc:
            raise InputError(f"BEV truth not found: {path}") from exc
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"BEV truth {path} is unreadable or incomplete: {exc}") from exc
        if out.shape != shape:
            raise InputError(f"BEV truth {path}: arrays have shape {out.shape}, header says {shape}")
        return out


def bev_shape(geometry: GridGeometry) -> tuple:
    """(cells along x, cells along y): the grid's (width, height), the array order used here."""
    return (geometry.width, geometry.height)


def cell_centres(shape: tuple, resolution_m: float, x_min_m: float, y_min_m: float) -> np.ndarray:
    """(nx, ny, 2) x, y of the cell centres: GridGeometry.cell_centers, transposed to [x, y]."""
    x, y = GridGeometry(resolution_m, x_min_m, y_min_m, width=shape[0], height=shape[1]).cell_centers()
    return np.stack([x.T, y.T], axis=-1)


def rasterise_footprints(extent: GridExtent, boxes: Iterable[tuple]) -> np.ndarray:
    """boxes: (segment_id, centre_xy (2,), half_extent (2,), yaw_rad) in the vehicle frame, drawn in
    order (later ones win where footprints overlap, e.g. a bicycle over its rider)."""
    geometry = extent.geometry()
    shape = bev_shape(geometry)
    ids = np.zeros(shape, dtype=np.int32)
    res, x_min_m, y_min_m = geometry.resolution_m, geometry.origin_x_m, geometry.origin_y_m
    for seg_id, centre, half, yaw in boxes:
        reach = float(np.hypot(*half))
        i0 = max(0, int(np.floor((centre[0] - reach - x_min_m) / res)))
        i1 = min(shape[0], int(np.ceil((centre[0] + reach - x_min_m) / res)) + 1)
        j0 = max(0, int(np.floor((centre[1] - reach - y_min_m) / res)))
        j1 = min(shape[1], int(np.ceil((centre[1] + reach - y_min_m) / res)) + 1)
        if i1 <= i0 or j1 <= j0:
            continue
        xs = x_min_m + (np.arange(i0, i1) + 0.5) * res - centre[0]
        ys = y_min_m + (np.arange(j0, j1) + 0.5) * res - centre[1]
        c, s = np.cos(yaw), np.sin(yaw)
        local_x = c * xs[:, None] + s * ys[None, :]
        local_y = -s * xs[:, None] + c * ys[None, :]
        inside = (np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1])
        ids[i0:i1, j0:j1][inside] = seg_id
    return ids
