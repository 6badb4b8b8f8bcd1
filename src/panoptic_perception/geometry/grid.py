"""Bird's-eye grid geometry and the configuration of what becomes free, occupied or unknown.

The grid follows nav_msgs/OccupancyGrid: row-major, cell (row, col) has its centre at
origin + ((col + 0.5) * resolution, (row + 0.5) * resolution) in the vehicle frame (x forward,
y left), values -1 unknown, 0 free, 100 occupied. Columns therefore run forward along x and
rows run left along y, so row 0 is the rightmost strip of the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from panoptic_perception.config import load_dataclass
from panoptic_perception.paths import CONFIG_DIR

DEFAULT_GRID_CONFIG = CONFIG_DIR / "grid.yaml"

OCCUPANCY_UNKNOWN = -1
OCCUPANCY_FREE = 0
OCCUPANCY_OCCUPIED = 100
CLASS_UNKNOWN = 255


@dataclass(frozen=True)
class GridGeometry:
    """What a consumer needs to place the grid: OccupancyGrid's info (resolution, size, origin)."""

    resolution_m: float
    origin_x_m: float
    origin_y_m: float
    width: int  # cells along x (columns)
    height: int  # cells along y (rows)

    @property
    def num_cells(self) -> int:
        return self.width * self.height

    def cell_centers(self) -> Tuple[np.ndarray, np.ndarray]:
        """(height, width) arrays of the x and y of every cell centre, metres."""
        cols = np.arange(self.width, dtype=np.float64)
        rows = np.arange(self.height, dtype=np.float64)
        x = self.origin_x_m + (cols + 0.5) * self.resolution_m
        y = self.origin_y_m + (rows + 0.5) * self.resolution_m
        return np.broadcast_to(x[None, :], (self.height, self.width)), np.broadcast_to(
            y[:, None], (self.height, self.width))

    def cell_of(self, x_m: np.ndarray, y_m: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and an inside-the-grid mask of vehicle-frame points."""
        x_m = np.asarray(x_m, dtype=np.float64)
        y_m = np.asarray(y_m, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            col = np.floor((x_m - self.origin_x_m) / self.resolution_m)
            row = np.floor((y_m - self.origin_y_m) / self.resolution_m)
            inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        col = np.where(inside, col, -1).astype(np.int64)
        row = np.where(inside, row, -1).astype(np.int64)
        return row, col, inside


@dataclass(frozen=True)
class GridExtent:
    """The grid's area in the vehicle frame (config), from which the geometry follows."""

    resolution_m: float = 0.2
    x_min_m: float = 0.0
    x_max_m: float = 60.0
    y_min_m: float = -20.0
    y_max_m: float = 20.0

    def __post_init__(self) -> None:
        if not self.resolution_m > 0:
            raise ValueError(f"grid resolution_m must be positive, got {self.resolution_m}")
        if not (self.x_max_m > self.x_min_m and self.y_max_m > self.y_min_m):
            raise ValueError(f"grid extent is empty: x [{self.x_min_m}, {self.x_max_m}], "
                             f"y [{self.y_min_m}, {self.y_max_m}]")

    def geometry(self) -> GridGeometry:
        # round() so that 60 / 0.2 gives 300 cells, not 299 from float noise
        width = int(round((self.x_max_m - self.x_min_m) / self.resolution_m))
        height = int(round((self.y_max_m - self.y_min_m) / self.resolution_m))
        return GridGeometry(self.resolution_m, self.x_min_m, self.y_min_m, max(width, 1), max(height, 1))


@dataclass(frozen=True)
class ThingPrior:
    """Typical ground footprint of a thing class: fills in the part of it the camera cannot see."""

    length_m: float = 4.5
    width_m: float = 1.8
    length_sigma_m: float = 0.5  # spread of real lengths around the prior (enters the position sigma)

    def __post_init__(self) -> None:
        if not (self.length_m > 0 and self.width_m > 0 and self.length_sigma_m >= 0):
            raise ValueError(f"thing prior needs positive length_m/width_m, got {self}")


@dataclass(frozen=True)
class EvidenceConfig:
    """Log-odds added per observation; a cell's sum decides free / occupied / unknown."""

    free_per_pixel: float = -0.4  # one ground pixel (weighted by its confidence)
    obstacle_per_contact: float = 1.5  # one ground-contact pixel of a stuff obstacle (wall, pole...)
    thing_footprint: float = 4.0  # every cell of a thing's footprint, times the instance score
    occupied_threshold: float = 0.4  # sum >= this -> occupied
    free_threshold: float = -0.4  # sum <= this -> free; in between (or no evidence) -> unknown
    clamp: float = 20.0  # |log-odds| limit, keeps a grid filter able to change its mind

    def __post_init__(self) -> None:
        if not (self.free_per_pixel < 0 < self.obstacle_per_contact and self.thing_footprint > 0):
            raise ValueError("evidence: free_per_pixel must be negative, obstacle/thing evidence positive")
        if not self.free_threshold < 0 < self.occupied_threshold:
            raise ValueError("evidence: need free_threshold < 0 < occupied_threshold")


@dataclass(frozen=True)
class UncertaintyConfig:
    """Error sources behind an object's position sigma."""

    pixel_sigma_px: float = 0.5  # where the mask's bottom edge really is, in pixels
    pitch_sigma_deg: float = 0.1  # unmodelled pitch (braking, road slope) - dominates far away
    height_sigma_m: float = 0.02  # camera height error (suspension)


@dataclass(frozen=True)
class GridConfig:
    """config/grid.yaml: grid extent, class -> occupancy mapping, per-class depth priors."""

    grid: GridExtent = field(default_factory=GridExtent)
    # Names from the label space. Stuff classes not listed in either are ignored (sky, signs...).
    free_classes: Tuple[str, ...] = ("road", "sidewalk", "terrain")
    obstacle_classes: Tuple[str, ...] = ("building", "wall", "fence", "pole", "vegetation")
    # Things are always obstacles, projected from their ground contact; priors by class name.
    thing_priors: Dict[str, ThingPrior] = field(default_factory=dict)
    default_thing_prior: ThingPrior = field(default_factory=ThingPrior)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    # Pixels mapped per grid cell near the camera are capped: beyond a few they add cost, not evidence.
    max_pixels_per_cell: int = 16
    # Far away one pixel spans several cells, so a cell the camera sees gets only one or two samples
    # and a single sample's evidence (free_per_pixel times a confidence below 1) misses the free
    # threshold: rows of unknown between rows of free. The per-pixel evidence of a cell seen through
    # fewer samples than this (ground votes and obstacle contacts alike, so their balance holds) is
    # scaled as if it had this many: with the default evidence such a cell is free when its pixels
    # are on average at least 1/this sure of ground, and it never outweighs a cell seen by more.
    # 1 turns the scaling off.
    min_pixels_per_cell: int = 2
    min_contact_columns: int = 2  # fewer visible ground-contact columns -> no object
    # A contact is trusted only when the pixel below it is ground of one of these kinds.
    contact_below_classes: Optional[Tuple[str, ...]] = None  # None -> free_classes
    # Height above the road of ground surfaces (a sidewalk behind its curb): a thing standing on
    # one meets the ray there, not at z = 0. Classes not listed are at z = 0.
    surface_height_m: Dict[str, float] = field(default_factory=dict)
    # Things that do not touch the ground themselves take the position of what carries them.
    carried_by: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    # Contacts farther than the object's nearest contact by more than this many prior diagonals
    # are overhangs (a bicycle's frame, a rider's foot over the road), not ground contact.
    overhang_diagonals: float = 1.25

    def __post_init__(self) -> None:
        overlap = set(self.free_classes) & set(self.obstacle_classes)
        if overlap:
            raise ValueError(f"classes both free and obstacle: {', '.join(sorted(overlap))}")
        if any(not 0.0 <= h < 2.0 for h in self.surface_height_m.values()):
            raise ValueError(f"surface_height_m values must be within [0, 2) m, got {self.surface_height_m}")
        if self.max_pixels_per_cell < 1 or self.min_contact_columns < 1:
            raise ValueError("max_pixels_per_cell and min_contact_columns must be >= 1")
        if not 1 <= self.min_pixels_per_cell <= self.max_pixels_per_cell:
            raise ValueError(f"min_pixels_per_cell must be within [1, max_pixels_per_cell = "
                             f"{self.max_pixels_per_cell}], got {self.min_pixels_per_cell}")

    def prior_for(self, class_name: str) -> ThingPrior:
        return self.thing_priors.get(class_name, self.default_thing_prior)


def load_grid_config(path: str | Path | None = None) -> GridConfig:
    """Load config/grid.yaml (or another file of the same shape)."""
    return load_dataclass(GridConfig, DEFAULT_GRID_CONFIG if path is None else path)


def occupancy_from_log_odds(log_odds, evidence: EvidenceConfig):
    """Log-odds grid (torch float) -> int8 OccupancyGrid values -1 / 0 / 100."""
    return occupancy_from_masks(log_odds <= evidence.free_threshold, log_odds >= evidence.occupied_threshold)


def occupancy_from_masks(free, occupied):
    """Boolean free / occupied grids (torch; never both set) -> int8 OccupancyGrid values -1 / 0 / 100."""
    import torch

    # 0/1 arithmetic on the masks viewed as int8, rather than where(): torch's CPU where branches
    # per element
    occupancy = free.view(torch.int8) * (OCCUPANCY_FREE - OCCUPANCY_UNKNOWN)
    occupancy += occupied.view(torch.int8) * (OCCUPANCY_OCCUPIED - OCCUPANCY_UNKNOWN)
    return occupancy.add_(OCCUPANCY_UNKNOWN)

