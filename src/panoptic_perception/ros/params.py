"""The node's private parameters (`~...`) as one validated dataclass tree.

`load_node_params(rospy.get_param("~", {}))` turns what the parameter server holds into
`NodeParams`; every value goes through `panoptic_perception.config.from_dict`, so a typo or a
wrongly typed / out-of-range value fails at start-up with a message naming the parameter the way
a user writes it (`~grid/resolution_m`). Nested dataclasses are parameter sub-namespaces, which is
what `rospy.get_param("~")` returns for `<param name="grid/resolution_m" .../>` or a `<rosparam>`.

`params_markdown_table()` renders the README's parameter table from the same fields (type, unit,
default, meaning), so the documentation cannot drift from the code.

This module does not import rospy: the node passes the dict in.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple

from panoptic_perception.config import from_dict
from panoptic_perception.errors import ConfigError
from panoptic_perception.geometry.camera import KITTI_CAMERA_HEIGHT_M, Extrinsics

# Keys the node itself writes under its private namespace (class metadata for consumers); they
# are outputs, not settings, so a respawned node must not reject them.
PUBLISHED_PARAM_KEYS: Tuple[str, ...] = ("label_space_name", "classes")


def _p(default: Any = dataclasses.MISSING, doc: str = "", unit: str = "", factory: Any = None) -> Any:
    """A dataclass field carrying its documentation for the README table."""
    meta = {"doc": doc, "unit": unit}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _set_values(obj: Any) -> Dict[str, Any]:
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {name: value for name, value in values.items() if value is not None}


def _require(ok: bool, message: str) -> None:
    # ValueError from __post_init__ becomes a ConfigError prefixed with the namespace by from_dict.
    if not ok:
        raise ValueError(message)


@dataclass
class ExtrinsicsParams:
    """Camera pose on the vehicle, used only when tf has no camera -> vehicle transform."""

    x_m: float = _p(0.0, "camera optical centre ahead of the vehicle origin", "m")
    y_m: float = _p(0.0, "camera optical centre left of the vehicle origin", "m")
    height_m: float = _p(KITTI_CAMERA_HEIGHT_M, "camera optical centre above the ground", "m")
    roll_deg: float = _p(0.0, "roll about vehicle +x", "deg")
    pitch_deg: float = _p(0.0, "pitch about vehicle +y; positive looks down", "deg")
    yaw_deg: float = _p(0.0, "yaw about vehicle +z; positive looks left", "deg")

    def __post_init__(self) -> None:
        _require(self.height_m > 0.0, f"height_m must be > 0 (camera above the ground), got {self.height_m}")
        for name in ("roll_deg", "pitch_deg", "yaw_deg"):
            value = getattr(self, name)
            _require(-180.0 <= value <= 180.0, f"{name} must be within [-180, 180], got {value}")
        _require(-89.0 <= self.pitch_deg <= 89.0, f"pitch_deg must be within [-89, 89], got {self.pitch_deg}")

    def to_extrinsics(self) -> Extrinsics:
        return Extrinsics(x_m=self.x_m, y_m=self.y_m, height_m=self.height_m, roll_deg=self.roll_deg,
                          pitch_deg=self.pitch_deg, yaw_deg=self.yaw_deg)


@dataclass
class GridParams:
    """Overrides of the grid extent in ~grid_config (config/grid.yaml); null keeps the file's value.

    Vehicle frame, metres; nav_msgs/OccupancyGrid layout: origin (x_min_m, y_min_m), columns
    along +x, rows along +y.
    """

    resolution_m: Optional[float] = _p(None, "cell edge length; null = grid_config's (0.2)", "m")
    x_min_m: Optional[float] = _p(None, "grid starts this far ahead of the vehicle origin", "m")
    x_max_m: Optional[float] = _p(None, "grid ends this far ahead of the vehicle origin", "m")
    y_min_m: Optional[float] = _p(None, "right edge of the grid (negative = right)", "m")
    y_max_m: Optional[float] = _p(None, "left edge of the grid", "m")

    def __post_init__(self) -> None:
        _require(self.resolution_m is None or (self.resolution_m > 0.0 and math.isfinite(self.resolution_m)),
                 f"resolution_m must be > 0, got {self.resolution_m}")
        for low, high in (("x_min_m", "x_max_m"), ("y_min_m", "y_max_m")):
            lo, hi = getattr(self, low), getattr(self, high)
            _require(lo is None or hi is None or hi > lo, f"{high} must be > {low}, got {lo} .. {hi}")

    def overrides(self) -> Dict[str, Any]:
        return _set_values(self)


@dataclass
class FusionParams:
    """Overrides of the model file's fusion settings; unset (null) keeps the model's value."""

    mode: Optional[Literal["panoptic_fpn", "jsis", "conv_head"]] = _p(
        None, "panoptic fusion rule: panoptic_fpn (heuristic), jsis, conv_head")
    instance_score_threshold: Optional[float] = _p(None, "drop instances scoring below this", "0..1")
    overlap_threshold: Optional[float] = _p(None, "drop an instance whose visible part is below this "
                                                  "fraction of its mask", "0..1")
    mask_threshold: Optional[float] = _p(None, "mask probability that counts as inside", "0..1")
    stuff_area_px: Optional[int] = _p(None, "drop stuff regions smaller than this (at the reference "
                                            "input area; in image pixels with the model's fusion.resolution "
                                            "image)", "px")

    def __post_init__(self) -> None:
        for name in ("instance_score_threshold", "overlap_threshold", "mask_threshold"):
            value = getattr(self, name)
            _require(value is None or 0.0 <= value <= 1.0, f"{name} must be within [0, 1], got {value}")
        _require(self.stuff_area_px is None or self.stuff_area_px >= 0,
                 f"stuff_area_px must be >= 0, got {self.stuff_area_px}")

    def overrides(self) -> Dict[str, Any]:
        """The set values only, ready for `dataclasses.replace(model_config.fusion, **overrides)`."""
        return _set_values(self)


@dataclass
class NodeParams:
    """Everything the panoptic node reads from its private namespace."""

    model_file: str = _p("", "model checkpoint (.pt; its model config is stored inside, compiled engines are "
                             "cached beside it); empty = the shipped default model")
    pipeline_config: str = _p("", "pipeline YAML (model, runtime file, grid file, fusion overrides), read as "
                                  "every entry point reads it; empty = config/pipeline.yaml")
    runtime_config: str = _p("", "runtime YAML (backend, device, precision, engines); empty = the one "
                                 "pipeline_config names (config/runtime.yaml)")
    backend: Optional[Literal["auto", "tensorrt", "torch", "onnxruntime"]] = _p(
        None, "inference backend; auto = TensorRT > torch CUDA > best CPU backend; null = runtime_config's")
    device: Optional[Literal["auto", "cpu", "cuda"]] = _p(None, "device; null = runtime_config's")
    precision: Optional[Literal["fp32", "fp16", "int8"]] = _p(
        None, "network precision on GPU backends (CPU always runs fp32); null = runtime_config's")
    engine_cache_dir: Optional[str] = _p(None, "folder of compiled engines (TensorRT .ep, .onnx); null = "
                                               "runtime_config's (beside the model file)")
    engine_path: Optional[str] = _p(None, "exact compiled engine file, built there when missing or stale; "
                                          "null = a slot in engine_cache_dir")
    num_threads: Optional[int] = _p(None, "CPU inference threads, 0 = all cores; null = runtime_config's",
                                    "threads")
    input_width: int = _p(0, "network input width; 0 = the model's own", "px")
    input_height: int = _p(0, "network input height; 0 = the model's own", "px")
    fusion: FusionParams = _p(doc="panoptic fusion overrides (sub-namespace)", factory=FusionParams)
    vehicle_frame: str = _p("base_link", "frame of the grid, objects and markers (x forward, z up, "
                                         "origin on the ground)")
    use_tf: bool = _p(True, "look up camera -> vehicle in tf at the image stamp; fall back to "
                            "~extrinsics when it is missing")
    tf_timeout_s: float = _p(0.05, "how long to wait for the tf lookup per frame", "s")
    extrinsics: ExtrinsicsParams = _p(doc="camera pose fallback (sub-namespace)", factory=ExtrinsicsParams)
    grid_config: str = _p("", "grid YAML (extent, class -> occupancy, priors); empty = the model's: "
                         "config/grid.yaml, config/grid_<label space>.yaml for others")
    grid: GridParams = _p(doc="grid extent overrides (sub-namespace)", factory=GridParams)
    free_classes: Optional[List[str]] = _p(None, "stuff classes that mark cells free; null = grid_config's "
                                                 "(road, sidewalk, terrain)")
    obstacle_classes: Optional[List[str]] = _p(None, "stuff classes that occupy cells (things always do); "
                                                     "null = grid_config's")
    track: bool = _p(True, "track things over frames (~tracks, track ids in ~panoptic) and fuse the grid over "
                           "time (~fused_grid, needs odometry in tf)")
    odom_frame: str = _p("odom", "odometry frame (REP 105): tf odom_frame -> vehicle_frame at the image stamp is "
                                 "the ego motion; without it tracks stay in the vehicle frame and no grid is fused")
    tracker_config: str = _p("", "tracker YAML (noise, gate, births and deaths); empty = pipeline_config's "
                                 "(config/tracker.yaml)")
    fused_grid_config: str = _p("", "fused grid YAML (odom window, decay, clamp); empty = pipeline_config's "
                                    "(config/fused_grid.yaml)")
    approximate_sync: bool = _p(False, "approximate-time Image/CameraInfo sync instead of exact stamps")
    sync_slop_s: float = _p(0.01, "largest stamp difference accepted by approximate sync", "s")
    sync_queue_size: int = _p(5, "messages per topic held while matching stamps", "msgs")
    compressed: bool = _p(False, "subscribe to image/compressed (sensor_msgs/CompressedImage)")
    queue_size: int = _p(1, "subscriber queue; 1 = always the newest frame", "msgs")
    buff_size_bytes: int = _p(2**24, "subscriber receive buffer; must hold several whole images", "bytes")
    max_image_width: int = _p(4096, "wider images are refused (logged, skipped): one frame must not allocate "
                                    "gigabytes", "px")
    max_image_height: int = _p(4096, "taller images are refused (logged, skipped)", "px")
    overlay_alpha: float = _p(0.5, "weight of class colours in ~overlay", "0..1")
    diagnostics_period_s: float = _p(1.0, "period of /diagnostics status", "s")

    def __post_init__(self) -> None:
        for name in ("input_width", "input_height"):
            value = getattr(self, name)
            _require(value == 0 or (value > 0 and value % 32 == 0),
                     f"{name} must be 0 (model's own) or a positive multiple of 32, got {value}")
        for name in ("vehicle_frame", "odom_frame"):
            frame = getattr(self, name)
            _require(bool(frame.strip()) and not frame.startswith("/"),
                     f"{name} must be a non-empty tf frame id without a leading '/', got {frame!r}")
        _require(self.odom_frame != self.vehicle_frame,
                 f"odom_frame and vehicle_frame must differ, both are {self.vehicle_frame!r}")
        _require(0.0 <= self.tf_timeout_s <= 5.0,
                 f"tf_timeout_s must be within [0, 5], got {self.tf_timeout_s}")
        _require(0.0 < self.sync_slop_s <= 1.0, f"sync_slop_s must be within (0, 1], got {self.sync_slop_s}")
        _require(1 <= self.sync_queue_size <= 100,
                 f"sync_queue_size must be in 1..100, got {self.sync_queue_size}")
        _require(1 <= self.queue_size <= 100, f"queue_size must be in 1..100, got {self.queue_size}")
        _require(self.buff_size_bytes >= 2**20,
                 f"buff_size_bytes must be >= 1048576 (1 MiB) to hold an image, got {self.buff_size_bytes}")
        for name in ("max_image_width", "max_image_height"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(0.0 <= self.overlay_alpha <= 1.0,
                 f"overlay_alpha must be within [0, 1], got {self.overlay_alpha}")
        _require(self.diagnostics_period_s > 0.0,
                 f"diagnostics_period_s must be > 0, got {self.diagnostics_period_s}")
        _require(self.num_threads is None or self.num_threads >= 0,
                 f"num_threads must be >= 0, got {self.num_threads}")
        for name in ("obstacle_classes", "free_classes"):
            names = getattr(self, name)
            if names is not None:
                _require(all(n.strip() for n in names), f"{name} has an empty class name: {names}")
        if self.obstacle_classes and self.free_classes:
            both = sorted(set(self.obstacle_classes) & set(self.free_classes))
            _require(not both, f"obstacle_classes has classes also in free_classes: {', '.join(both)}")

    def runtime_config_with_overrides(self, base: Any) -> Any:
        """runtime.config.RuntimeConfig: `base` (the pipeline config's runtime, from ~runtime_config or
        the file pipeline.yaml names) with the set runtime parameters applied."""
        names = ("backend", "device", "precision", "engine_cache_dir", "engine_path", "num_threads")
        overrides = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        try:
            return dataclasses.replace(base, **overrides)
        except ValueError as exc:
            raise ConfigError(f"bad node parameter: runtime: {exc}") from exc

    def grid_overrides(self) -> Dict[str, Any]:
        """PipelineConfig.grid_overrides from ~grid/* and the class lists (unset ones keep the file's)."""
        overrides: Dict[str, Any] = {name: list(getattr(self, name)) for name in ("free_classes", "obstacle_classes")
                                     if getattr(self, name) is not None}
        if self.grid.overrides():
            overrides["grid"] = self.grid.overrides()
        return overrides


def _ros_name(message: str) -> str:
    # from_dict writes key paths as "~.grid.resolution_m"; users write them "~grid/resolution_m".
    message = re.sub(r"~\.([A-Za-z0-9_.\[\]]+)", lambda m: "~" + m.group(1).replace(".", "/"), message)
    # __post_init__ errors read "~grid: resolution_m must ..."; join them into one parameter name.
    return re.sub(r"~([A-Za-z0-9_/]*): ([a-z][a-z0-9_]*) (must|has)",
                  lambda m: f"~{m.group(1) + '/' if m.group(1) else ''}{m.group(2)} {m.group(3)}", message)


def load_node_params(private_params: Optional[Mapping[str, Any]]) -> NodeParams:
    """Validate `rospy.get_param("~", {})` into NodeParams; raises ConfigError naming the parameter."""
    data = dict(private_params or {})
    for key in PUBLISHED_PARAM_KEYS:
        data.pop(key, None)
    try:
        return from_dict(NodeParams, data, where="~")
    except ConfigError as exc:
        raise ConfigError(f"bad node parameter: {_ros_name(str(exc))}") from exc


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" or null" if len(inner) < len(args) else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, List):
        return f"list of {_type_name(args[0])}" if args else "list"
    names = {bool: "bool", int: "int", float: "double", str: "string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _format_default(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return f"`{value}`"


def iter_params(cls: type = NodeParams, prefix: str = "~") -> Iterator[Tuple[str, str, str, str, str]]:
    """(name, type, unit, default, meaning) for every leaf parameter, sub-namespaces flattened."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_params(hint, f"{prefix}{f.name}/")
            continue
        yield (f"{prefix}{f.name}", _type_name(hint), f.metadata.get("unit", ""),
               _format_default(getattr(defaults, f.name)), f.metadata.get("doc", ""))


def params_markdown_table() -> str:
    """The README's parameter table, generated from NodeParams."""
    lines = ["| parameter | type | unit | default | meaning |", "|---|---|---|---|---|"]
    for name, type_name, unit, default, doc in iter_params():
        lines.append(f"| `{name}` | {type_name} | {unit} | {default} | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
