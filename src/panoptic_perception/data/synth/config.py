"""Configuration of the synthetic street world (YAML -> dataclasses via panoptic_perception.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from panoptic_perception.config import load_dataclass
from panoptic_perception.geometry.camera import (
    KITTI_CAMERA_HEIGHT_M,
    KITTI_CX,
    KITTI_CY,
    KITTI_FX,
    KITTI_HEIGHT_PX,
    KITTI_WIDTH_PX,
    Camera,
    Extrinsics,
    Intrinsics,
)
from panoptic_perception.geometry.grid import GridExtent
from panoptic_perception.paths import CONFIG_DIR

DEFAULT_CONFIG_PATH = CONFIG_DIR / "synth.yaml"


@dataclass(frozen=True)
class CameraSettings:
    """The synthetic camera: KITTI raw 2011_09_26 rectified camera 2 by default."""

    width: int = KITTI_WIDTH_PX
    height: int = KITTI_HEIGHT_PX
    fx: float = KITTI_FX
    fy: float = KITTI_FX
    cx: float = KITTI_CX
    cy: float = KITTI_CY
    height_m: float = KITTI_CAMERA_HEIGHT_M
    pitch_deg: float = 0.0
    roll_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera size must be at least 8x8 pixels, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if not 0.3 <= self.height_m <= 5.0:
            raise ValueError(f"height_m must be within 0.3..5 m, got {self.height_m}")
        if abs(self.pitch_deg) > 30 or abs(self.roll_deg) > 30:
            raise ValueError(
                f"pitch_deg/roll_deg must be within +-30 deg, got {self.pitch_deg}/{self.roll_deg}"
            )

    def camera(self) -> Camera:
        intrinsics = Intrinsics.pinhole(self.width, self.height, self.fx, self.fy, self.cx, self.cy)
        extrinsics = Extrinsics(height_m=self.height_m, pitch_deg=self.pitch_deg, roll_deg=self.roll_deg)
        return Camera(intrinsics, extrinsics)


@dataclass(frozen=True)
class WorldSettings:
    """Ranges the seed draws the street from; densities are things per 100 m of street."""

    cars_per_100m: float = 9.0
    parked_cars_per_100m: float = 10.0
    persons_per_100m: float = 10.0
    cyclists_per_100m: float = 2.0
    poles_per_100m: float = 6.0
    oncoming_speed_mps: float = 10.0
    max_range_m: float = 250.0
    curb_height_m: Optional[float] = None  # None: drawn per drive within 0.10..0.18 m

    def __post_init__(self) -> None:
        for name in (
            "cars_per_100m",
            "parked_cars_per_100m",
            "persons_per_100m",
            "cyclists_per_100m",
            "poles_per_100m",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"world.{name} must not be negative")
        if self.max_range_m < 50:
            raise ValueError(f"world.max_range_m must be at least 50 m, got {self.max_range_m}")
        if self.curb_height_m is not None and not 0.0 <= self.curb_height_m <= 0.3:
            raise ValueError(f"world.curb_height_m must be within 0..0.3 m, got {self.curb_height_m}")


@dataclass(frozen=True)
class SynthConfig:
    """One synthetic drive: camera, ego motion, clock, world ranges and the BEV grid."""

    camera: CameraSettings = field(default_factory=CameraSettings)
    speed_mps: float = 8.0
    frame_rate_hz: float = 10.0  # KITTI raw is recorded at 10 Hz
    date: str = "2011_09_26"
    drive: int = 1
    start_time: str = "2011-09-26 13:02:25.964389445"
    label_space: str = "cityscapes"
    world: WorldSettings = field(default_factory=WorldSettings)
    # the truth is drawn on the projection's grid (geometry.grid), arrays indexed [x, y]
    bev: GridExtent = field(default_factory=GridExtent)

    def __post_init__(self) -> None:
        if not 0.0 <= self.speed_mps <= 40.0:
            raise ValueError(f"speed_mps must be within 0..40 m/s, got {self.speed_mps}")
        if self.frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be positive, got {self.frame_rate_hz}")
        if not 0 <= self.drive <= 9999:
            raise ValueError(f"drive must be within 0..9999, got {self.drive}")
        if self.label_space != "cityscapes":
            raise ValueError(
                f"the synthetic world draws Cityscapes classes; label_space "
                f"'{self.label_space}' is not supported"
            )


def load_synth_config(path: str | Path | None = None) -> SynthConfig:
    """Read a SynthConfig from YAML (default: config/synth.yaml; built-in defaults if absent)."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return SynthConfig()
        path = DEFAULT_CONFIG_PATH
    return load_dataclass(SynthConfig, path)
