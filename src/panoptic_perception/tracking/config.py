"""config/tracker.yaml: the multi-object tracker's noise model, gate and track life cycle."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

from panoptic_perception.config import load_dataclass
from panoptic_perception.errors import ConfigError
from panoptic_perception.paths import CONFIG_DIR

DEFAULT_TRACKER_CONFIG = CONFIG_DIR / "tracker.yaml"


def _check_positive(owner: str, **values: Optional[float]) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{owner} {name} must be a positive finite number, got {value}")


def _check_score(owner: str, min_score: Optional[float]) -> None:
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"{owner} min_score must be within [0, 1], got {min_score}")


@dataclass(frozen=True)
class ClassOverrides:
    """Per-class values that replace the tracker-wide ones (None: keep the tracker-wide value)."""

    acceleration_sigma_mps2: Optional[float] = None
    initial_velocity_sigma_mps: Optional[float] = None
    min_score: Optional[float] = None

    def __post_init__(self) -> None:
        _check_positive("class override", acceleration_sigma_mps2=self.acceleration_sigma_mps2,
                        initial_velocity_sigma_mps=self.initial_velocity_sigma_mps)
        _check_score("class override", self.min_score)


@dataclass(frozen=True)
class ClassParameters:
    """The values one class is tracked with (tracker-wide values with its overrides applied)."""

    acceleration_sigma_mps2: float
    initial_velocity_sigma_mps: float
    min_score: float


@dataclass(frozen=True)
class NoOdometryConfig:
    """Extra uncertainty when no ego pose is given: tracks then live in the moving vehicle frame."""

    # Static things move at minus the ego's speed in the vehicle frame, so a new track's velocity
    # prior must also cover the ego's speed (added in quadrature to initial_velocity_sigma_mps).
    ego_speed_sigma_mps: float = 10.0
    # Ego braking and turning appear as every object's acceleration (turning at 0.3 rad/s moves
    # a thing 20 m to the side at 6 m/s); added in quadrature to acceleration_sigma_mps2.
    ego_acceleration_sigma_mps2: float = 3.0

    def __post_init__(self) -> None:
        _check_positive("without_odometry", ego_speed_sigma_mps=self.ego_speed_sigma_mps,
                        ego_acceleration_sigma_mps2=self.ego_acceleration_sigma_mps2)


@dataclass(frozen=True)
class TrackerConfig:
    """Constant-velocity Kalman tracks, Hungarian association per class, N-hit birth, M-miss death."""

    acceleration_sigma_mps2: float = 2.0
    initial_velocity_sigma_mps: float = 10.0
    measurement_sigma_floor_m: float = 0.1
    unreliable_contact_sigma_m: float = 3.0
    gate_chi2: float = 9.21
    hits_to_confirm: int = 3
    # a birth from an object this sure (score, its ground contact seen, not cut by the border) is
    # confirmed at once; None: every birth waits for hits_to_confirm
    confirm_at_birth_min_score: Optional[float] = None
    confirm_at_birth_max_sigma_m: float = 1.0  # ... and placed this well (worst-direction sigma)
    misses_to_delete: int = 5
    min_score: float = 0.5
    moving_speed_mps: float = 0.7
    heading_min_speed_mps: float = 1.0
    significant_speed_sigmas: float = 3.0
    size_smoothing: float = 0.2
    reset_after_gap_s: float = 2.0
    classes: Dict[str, ClassOverrides] = field(default_factory=dict)
    without_odometry: NoOdometryConfig = field(default_factory=NoOdometryConfig)

    def __post_init__(self) -> None:
        _check_positive("tracker", acceleration_sigma_mps2=self.acceleration_sigma_mps2,
                        initial_velocity_sigma_mps=self.initial_velocity_sigma_mps,
                        measurement_sigma_floor_m=self.measurement_sigma_floor_m,
                        unreliable_contact_sigma_m=self.unreliable_contact_sigma_m, gate_chi2=self.gate_chi2,
                        reset_after_gap_s=self.reset_after_gap_s,
                        confirm_at_birth_max_sigma_m=self.confirm_at_birth_max_sigma_m,
                        significant_speed_sigmas=self.significant_speed_sigmas)
        _check_score("tracker", self.min_score)
        _check_score("tracker confirm_at_birth", self.confirm_at_birth_min_score)
        if self.hits_to_confirm < 1:
            raise ValueError(f"tracker hits_to_confirm must be >= 1, got {self.hits_to_confirm}")
        if self.misses_to_delete < 1:
            raise ValueError(f"tracker misses_to_delete must be >= 1, got {self.misses_to_delete}")
        for name, value in (("moving_speed_mps", self.moving_speed_mps),
                            ("heading_min_speed_mps", self.heading_min_speed_mps)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"tracker {name} must be a finite number >= 0, got {value}")
        if not 0.0 < self.size_smoothing <= 1.0:
            raise ValueError(f"tracker size_smoothing must be within (0, 1], got {self.size_smoothing}")

    def for_class(self, class_name: str) -> ClassParameters:
        """The values `class_name` is tracked with."""
        over = self.classes.get(class_name, ClassOverrides())
        return ClassParameters(
            acceleration_sigma_mps2=(self.acceleration_sigma_mps2 if over.acceleration_sigma_mps2 is None
                                     else over.acceleration_sigma_mps2),
            initial_velocity_sigma_mps=(self.initial_velocity_sigma_mps if over.initial_velocity_sigma_mps is None
                                        else over.initial_velocity_sigma_mps),
            min_score=self.min_score if over.min_score is None else over.min_score)

    def check_class_names(self, names: Sequence[str]) -> None:
        """ConfigError naming any per-class override for a class the label space does not have."""
        unknown = sorted(set(self.classes) - set(names))
        if unknown:
            raise ConfigError(f"tracker classes: unknown class name(s) {', '.join(unknown)}; "
                              f"known: {', '.join(names)}")


def load_tracker_config(path: str | Path | None = None) -> TrackerConfig:
    """Load config/tracker.yaml (or another file of the same shape)."""
    return load_dataclass(TrackerConfig, DEFAULT_TRACKER_CONFIG if path is None else path)
