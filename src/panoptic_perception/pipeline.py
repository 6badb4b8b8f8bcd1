"""The one Pipeline: preprocess -> backend (network + fusion, one graph) -> postprocess -> projection.

The ROS node, the CLI (`predict`, `demo`) and the benchmarks all call `Pipeline.process`; there is
no second copy of preprocessing, fusion or projection anywhere.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from panoptic_perception.config import load_dataclass, load_yaml
from panoptic_perception.data.panoptic_io import Segment
from panoptic_perception.errors import ConfigError, InputError, PerceptionError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.labels import LabelSpace, load_label_space
from panoptic_perception.lru import LruCache
from panoptic_perception.model.config import ModelConfig
from panoptic_perception.paths import CONFIG_DIR, SHARE_ROOT
from panoptic_perception.runtime.config import RuntimeConfig, load_runtime_config

if TYPE_CHECKING:  # the projection (and torch) load with the first projected frame, not at import
    from panoptic_perception.geometry.projection import GridResult
    from panoptic_perception.tracking.fused_grid import FusedGridResult
    from panoptic_perception.tracking.stage import TrackingStage
    from panoptic_perception.tracking.tracker import Track

DEFAULT_PIPELINE_CONFIG = CONFIG_DIR / "pipeline.yaml"
INDEX_CACHE_SIZES = 4  # image sizes whose upsampling index tables are kept (one camera needs one)


@dataclass
class PipelineConfig:
    model_path: str = "models/panoptic_light.pt"  # relative paths resolve against the package root
    runtime_config: str = "config/runtime.yaml"  # the runtime YAML `runtime` is loaded from
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # filled from runtime_config; not in YAML
    grid_config_path: str = "config/grid.yaml"
    # Overrides of the grid YAML: GridConfig fields (`grid` takes GridExtent fields); empty = the file's.
    grid_overrides: Dict[str, Any] = field(default_factory=dict)
    project_grid: bool = True
    # Tracking over frames (frames given a stamp): a tracker and, with an ego pose, the grid fused in odom.
    track: bool = True
    tracker_config: str = "config/tracker.yaml"
    fused_grid_config: str = "config/fused_grid.yaml"
    # Overrides of what the checkpoint's model config says: single FusionConfig fields (empty = keep the
    # checkpoint's), applied before the graph is built because the fusion is part of it.
    fusion_overrides: Dict[str, Any] = field(default_factory=dict)
    input_width: Optional[int] = None
    input_height: Optional[int] = None


def load_pipeline_config(path: str | Path | None = None, runtime_config: str | Path | None = None
                         ) -> PipelineConfig:
    """The one way every entry point gets its settings: config/pipeline.yaml (or `path`), with its
    `runtime` loaded from the runtime YAML it names (or `runtime_config`). Entry points then apply
    their own overrides (ROS parameters, CLI flags) to the result."""
    path = DEFAULT_PIPELINE_CONFIG if path is None else Path(path)
    if "runtime" in (load_yaml(path) or {}):
        raise ConfigError(f"{path}: name the runtime YAML with runtime_config instead of a runtime: block")
    config = load_dataclass(PipelineConfig, path)
    runtime_path = resolve_path(runtime_config or config.runtime_config)
    return dataclasses.replace(config, runtime_config=str(runtime_path), runtime=load_runtime_config(runtime_path))


def resolve_path(path: str | Path) -> Path:
    """A path as given if it exists (or is absolute), else relative to the package root."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return SHARE_ROOT / path


def fit_pad_size(height_px: int, width_px: int, input_h: int, input_w: int, shortest_edge_px: int = 0,
                 max_size_px: int = 0) -> tuple:
    """(h, w) an image is resized to before bottom/right padding to input_h x input_w.

    With shortest_edge_px, detectron2's ResizeShortestEdge (shortest side to it, longest at most
    max_size_px, rounded as detectron2 rounds); in any case capped so it fits the input.
    """
    if height_px <= 0 or width_px <= 0:
        raise InputError(f"image is empty ({width_px}x{height_px})")
    new_h, new_w = float(height_px), float(width_px)
    if shortest_edge_px > 0:
        scale = shortest_edge_px / min(height_px, width_px)
        new_h, new_w = height_px * scale, width_px * scale
        if max_size_px > 0 and max(new_h, new_w) > max_size_px:
            shrink = max_size_px / max(new_h, new_w)
            new_h, new_w = new_h * shrink, new_w * shrink
    fit = min(input_h / new_h, input_w / new_w)
    if fit < 1.0 or shortest_edge_px <= 0:
        new_h, new_w = new_h * fit, new_w * fit
    return (max(1, min(input_h, int(new_h + 0.5))), max(1, min(input_w, int(new_w + 0.5))))


@dataclass
class FrameResult:
    segment_map: np.ndarray  # int32 [H, W] at image size, 0 = void
    category_map: np.ndarray  # uint8 [H, W] class ids, label_space.ignore_id where void
    segments: List[Segment]
    grid: Optional[GridResult] = None  # host numpy grids (GridResult.to_numpy())
    timings_ms: Dict[str, float] = field(default_factory=dict)
    grid_error: Optional[str] = None  # why no grid was made although a camera was given
    # Tracking (frames given a stamp): every live track, in `tracking_frame` (odom with an ego pose,
    # else vehicle); segments of confirmed tracks carry their track_id.
    tracks: List[Track] = field(default_factory=list)
    tracking_frame: Optional[str] = None
    fused_grid: Optional[FusedGridResult] = None  # with an ego pose and a grid
    tracking_reset: Optional[str] = None  # why this frame started the tracks afresh


class Pipeline:
    """Loads a checkpoint once, picks a backend, then turns RGB frames into panoptic + grid results."""

    def __init__(self, config: PipelineConfig | None = None, *, module=None,
                 model_config: Optional[ModelConfig] = None) -> None:
        """From config.model_path (the normal case), or from an in-memory eval `module` built for
        `model_config` (training's periodic evaluation; the config's overrides do not apply)."""
        import torch

        from panoptic_perception.geometry.projection import grid_config_with_overrides
        from panoptic_perception.model.checkpoint import load_checkpoint
        from panoptic_perception.runtime.select import create_backend, create_backend_for_module

        self.config = config or PipelineConfig()
        if module is None:
            self.model_path = resolve_path(self.config.model_path)
            state_dict, model_config, self.model_meta = load_checkpoint(self.model_path)
            self.model_config = self._apply_overrides(model_config)
            self.backend = create_backend(self.model_config, state_dict, self.config.runtime,
                                          checkpoint_path=self.model_path)
        else:
            if model_config is None:
                raise ValueError("Pipeline(module=...) needs the module's model_config")
            self.model_path = Path("<in-memory>")
            self.model_meta = {}
            self.model_config = model_config
            self.backend = create_backend_for_module(module, model_config, self.config.runtime,
                                                     weights_digest="in-memory")
        self.label_space: LabelSpace = load_label_space(self.model_config.label_space)
        self.device = self.backend.device
        self.input_size = (self.model_config.input_width, self.model_config.input_height)
        self.grid_config = grid_config_with_overrides(self.grid_config_path(), self.config.grid_overrides,
                                                      self.label_space)
        self._projector = None
        self._tracking: Optional[TrackingStage] = None
        if self.config.track:
            self._tracking = self._tracking_stage()
        self._torch = torch
        thing = [c.is_thing for c in self.label_space.categories] + [False]
        self._is_thing_table = np.array(thing, dtype=bool)
        # per image size; bounded so a camera changing size every frame cannot grow memory forever
        self._index_cache: LruCache[tuple] = LruCache(INDEX_CACHE_SIZES)
        self._image_size_cache: LruCache[Any] = LruCache(INDEX_CACHE_SIZES)

    def _tracking_stage(self) -> TrackingStage:
        from panoptic_perception.tracking.config import load_tracker_config
        from panoptic_perception.tracking.fused_grid import FusedGrid, load_fused_grid_config
        from panoptic_perception.tracking.stage import TrackingStage

        fused = FusedGrid(load_fused_grid_config(resolve_path(self.config.fused_grid_config)))
        return TrackingStage(load_tracker_config(resolve_path(self.config.tracker_config)), fused,
                             self.label_space.names)

    @property
    def tracking_stage(self) -> Optional[TrackingStage]:
        """The tracker and fused grid the frames go through (None with tracking turned off)."""
        return self._tracking

    def reset_tracking(self) -> None:
        """Forget tracks and the fused grid (the next frame starts a new drive); ids keep counting up."""
        if self._tracking is not None:
            self._tracking.reset()

    def grid_config_path(self) -> str:
        """The grid YAML to project with (resolved path). Its class lists name classes of one label space,
        so in place of the default (Cityscapes) file a model of another label space gets
        config/grid_<label space>.yaml."""
        path = self.config.grid_config_path
        if path == PipelineConfig.grid_config_path and self.label_space.name != "cityscapes":
            own = CONFIG_DIR / f"grid_{self.label_space.name}.yaml"
            if own.is_file():
                return str(own)
        return str(resolve_path(path))

    def _apply_overrides(self, model_config: ModelConfig) -> ModelConfig:
        changes = {}
        if self.config.fusion_overrides:
            try:
                changes["fusion"] = dataclasses.replace(model_config.fusion, **self.config.fusion_overrides)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"fusion overrides {self.config.fusion_overrides}: {exc}") from exc
        if self.config.input_width is not None:
            changes["input_width"] = self.config.input_width
        if self.config.input_height is not None:
            changes["input_height"] = self.config.input_height
        return dataclasses.replace(model_config, **changes) if changes else model_config

    def describe(self) -> str:
        w, h = self.input_size
        return f"model {self.model_path.name} ({self.model_config.backbone.name}, {w}x{h}), " \
               f"backend {self.backend.describe()}"

    # -- stages ---------------------------------------------------------------------------------

    def preprocess(self, rgb: np.ndarray):
        """uint8 RGB [H, W, 3] -> float32 [1, 3, h, w] 0..255 at the network's static input size."""
        torch = self._torch
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            raise InputError(f"image must be a uint8 RGB array of shape [H, W, 3], got "
                             f"{getattr(rgb, 'dtype', type(rgb).__name__)} {shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise InputError(f"image is empty ({rgb.shape[1]}x{rgb.shape[0]})")
        w, h = self.input_size
        if self.model_config.resize == "fit_pad":
            return self._fit_pad(rgb, h, w)
        if not rgb.flags.writeable:  # zero-copy views of ROS message buffers are read-only
            rgb = rgb.copy()
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()
        if x.shape[-2:] != (h, w):
            # antialias: downscaling KITTI 1242 -> 640 without it aliases thin poles and lane marks
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                                                antialias=True)
        return x.contiguous()

    def _fit_pad(self, rgb: np.ndarray, input_h: int, input_w: int):
        """detectron2's test-time input: one scale for both axes, image top-left, pixel-mean padding."""
        torch = self._torch
        valid_h, valid_w = self.valid_size(int(rgb.shape[0]), int(rgb.shape[1]))
        if (valid_h, valid_w) != tuple(rgb.shape[:2]):
            # Exactly detectron2's ResizeTransform on a uint8 image: PIL bilinear (PIL's own filter
            # support, antialiased when shrinking, and its rounding to whole grey levels). A torch
            # resize of the float image differs by a grey level at many pixels, which a network
            # turns into different detections.
            rgb = np.array(Image.fromarray(np.ascontiguousarray(rgb)).resize((valid_w, valid_h),
                                                                               Image.Resampling.BILINEAR))
        elif not rgb.flags.writeable:  # zero-copy views of ROS message buffers are read-only
            rgb = rgb.copy()
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()
        if (valid_h, valid_w) == (input_h, input_w):
            return x.contiguous()
        mean = self.model_config.pixel_mean
        mean_rgb = tuple(reversed(mean)) if self.model_config.input_format == "BGR" else tuple(mean)
        # Padding with the mean normalises to 0: detectron2 pads the normalised image with 0.
        canvas = torch.tensor(mean_rgb, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        canvas = canvas.expand(1, 3, input_h, input_w).clone()
        canvas[:, :, :valid_h, :valid_w] = x
        return canvas

    def valid_size(self, height_px: int, width_px: int) -> tuple:
        """(h, w) of the network input that an image of this size covers (the whole input for stretch)."""
        w, h = self.input_size
        if self.model_config.resize != "fit_pad":
            return h, w
        cfg = self.model_config
        return fit_pad_size(height_px, width_px, h, w, cfg.resize_shortest_edge_px, cfg.resize_max_size_px)

    def image_size_input(self, height_px: int, width_px: int):
        """The graph's image_size input for an image of this size: float32 [2] (h, w) of its region of
        the input, on the backend's device (cached per size: one small host-to-device copy per camera)."""
        key = (height_px, width_px)
        valid_h, valid_w = self.valid_size(height_px, width_px)
        return self._image_size_cache.get_or_build(key, lambda: self._torch.tensor(
            [float(valid_h), float(valid_w)], dtype=self._torch.float32, device=self.device))

    def crop_outputs(self, outputs: Dict[str, object], height_px: int, width_px: int) -> Dict[str, object]:
        """Network outputs cut to the image's region of the input (fit_pad): every map whose last two
        dims are the input size, so postprocess and projection never see the padding."""
        w, h = self.input_size
        valid_h, valid_w = self.valid_size(height_px, width_px)
        if (valid_h, valid_w) == (h, w):
            return outputs
        cropped = dict(outputs)
        for key, value in outputs.items():
            shape = getattr(value, "shape", ())
            if len(shape) >= 2 and tuple(shape[-2:]) == (h, w):
                cropped[key] = value[..., :valid_h, :valid_w]
        return cropped

    def fuse_at_image_size(self, outputs: Dict[str, object], height_px: int, width_px: int) -> Dict[str, object]:
        """fusion.resolution "image": detectron2's postprocessing of the (cropped) network outputs.

        As detectron2's detector_postprocess + sem_seg_postprocess: boxes scaled from the network's
        image region to the image and clipped to it, masks pasted at the image's size, semantic
        logits resized bilinearly to it; then the configured fusion there. Only the detections the
        fusion can use (valid, score >= instance_score_threshold) are pasted.
        """
        from panoptic_perception.model.box_ops import clip_boxes
        from panoptic_perception.model.paste_masks import paste_masks

        torch = self._torch
        valid_h, valid_w = self.valid_size(height_px, width_px)
        scores, valid = outputs["scores"], outputs["valid"].to(torch.bool)
        rows = (valid & (scores >= self.model_config.fusion.instance_score_threshold)).nonzero()[:, 0]
        scale = torch.tensor([width_px / valid_w, height_px / valid_h] * 2, dtype=torch.float32, device=scores.device)
        boxes = clip_boxes(outputs["boxes"][rows].float() * scale, height_px, width_px)
        masks = paste_masks(outputs["mask_rois"][rows].float(), boxes, height_px, width_px)
        fused = self._image_fusion(height_px, width_px)(masks, scores[rows], outputs["classes"][rows], valid[rows],
                                                        outputs["sem_logits"])
        return {**outputs, **fused}

    def _image_fusion(self, height_px: int, width_px: int):
        """The PanopticFusion for one image size (cached: its tables depend on the size only)."""
        from panoptic_perception.model.fusion import PanopticFusion

        cfg = self.model_config
        return self._image_size_cache.get_or_build(("fusion", height_px, width_px), lambda: PanopticFusion(
            cfg.fusion, self.label_space, cfg.semantic_head.mode, height_px, width_px,
            cfg.roi_heads.max_detections).to(self.device))

    def postprocess(self, outputs: Dict[str, object], height_px: int, width_px: int):
        """Network-size (or image-size) maps -> image-size maps and the measured segment table."""
        torch = self._torch
        seg_small = outputs["segment_map"]
        cat_small = outputs["category_map"]
        rows, cols, ys, xs = self._image_index(seg_small.shape, height_px, width_px, seg_small.device)
        if tuple(seg_small.shape) == (height_px, width_px):  # fused at the image's size
            seg, cat = seg_small, cat_small
        else:
            seg = seg_small.index_select(0, rows).index_select(1, cols)
            cat = cat_small.index_select(0, rows).index_select(1, cols)
        n_slots = int(outputs["segment_valid"].shape[0]) + 1
        flat = seg.reshape(-1).long()
        area = torch.bincount(flat, minlength=n_slots)
        big = height_px + width_px
        x0 = torch.full((n_slots,), big, device=flat.device).scatter_reduce(0, flat, xs, "amin")
        y0 = torch.full((n_slots,), big, device=flat.device).scatter_reduce(0, flat, ys, "amin")
        x1 = torch.full((n_slots,), -1, device=flat.device).scatter_reduce(0, flat, xs, "amax")
        y1 = torch.full((n_slots,), -1, device=flat.device).scatter_reduce(0, flat, ys, "amax")
        table = torch.stack([area, x0, y0, x1, y1], dim=1).cpu().numpy()
        category = outputs["segment_category"].cpu().numpy()
        score = outputs["segment_score"].float().cpu().numpy()
        segments = []
        names = self.label_space.names
        for seg_id in np.flatnonzero(table[:, 0] > 0):
            if seg_id == 0:
                continue
            a, bx0, by0, bx1, by1 = (int(v) for v in table[seg_id])
            cat_id = int(category[seg_id - 1])
            segments.append(Segment(
                id=int(seg_id), category_id=cat_id, category_name=names[cat_id],
                is_thing=bool(self._is_thing_table[cat_id]), score=float(score[seg_id - 1]), area_px=a,
                bbox_xywh=(bx0, by0, bx1 - bx0 + 1, by1 - by0 + 1)))
        return (seg.to(torch.int32).cpu().numpy(), cat.to(torch.uint8).cpu().numpy(), segments)

    def _image_index(self, small_shape, height_px: int, width_px: int, device) -> tuple:
        """Nearest-neighbour source rows/cols and per-pixel coordinates for one image size (cached)."""
        key = (tuple(small_shape), height_px, width_px, str(device))
        cached = self._index_cache.get(key)
        if cached is None:
            torch = self._torch
            h, w = small_shape
            rows = ((torch.arange(height_px, device=device) + 0.5) * (h / height_px)).long().clamp_(max=h - 1)
            cols = ((torch.arange(width_px, device=device) + 0.5) * (w / width_px)).long().clamp_(max=w - 1)
            ys = torch.arange(height_px, device=device).repeat_interleave(width_px)
            xs = torch.arange(width_px, device=device).repeat(height_px)
            cached = self._index_cache.put(key, (rows, cols, ys, xs))
        return cached

    def projector_for(self, camera: Camera):
        from panoptic_perception.geometry.projection import GroundProjector

        if self._projector is None:
            self._projector = GroundProjector(camera, self.grid_config, self.label_space)
        else:
            self._projector.set_camera(camera)  # rebuilds tables only if the camera changed
        return self._projector

    # -- one frame ------------------------------------------------------------------------------

    def process(self, rgb: np.ndarray, camera: Optional[Camera] = None, stamp_ns: Optional[int] = None,
                odom_from_vehicle: Optional[np.ndarray] = None) -> FrameResult:
        """One RGB frame (uint8 [H, W, 3]) seen by `camera` -> panoptic segmentation and grid; with the
        image's `stamp_ns`, tracks too (and with the ego pose `odom_from_vehicle`, the fused grid)."""
        torch = self._torch
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        timings: Dict[str, float] = {}
        t0 = time.perf_counter()
        x = self.preprocess(rgb)
        height_px, width_px = rgb.shape[:2]
        image_size = self.image_size_input(height_px, width_px)
        sync()
        t1 = time.perf_counter()
        outputs = self.backend.infer(x, image_size)
        sync()
        t2 = time.perf_counter()
        outputs = self.crop_outputs(outputs, height_px, width_px)
        if self.model_config.fusion.resolution == "image":
            outputs = self.fuse_at_image_size(outputs, height_px, width_px)
        segment_map, category_map, segments = self.postprocess(outputs, height_px, width_px)
        t3 = time.perf_counter()
        timings.update(preprocess_ms=(t1 - t0) * 1e3, network_ms=(t2 - t1) * 1e3,
                       postprocess_ms=(t3 - t2) * 1e3)
        # Project the network-size map: the projector scales the camera to it, and it is
        # (input/image)^2 fewer pixels than the upsampled map.
        result = FrameResult(segment_map, category_map, segments, timings_ms=timings)
        self._project_and_track(result, outputs, camera, stamp_ns, odom_from_vehicle)
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        return result

    def process_panoptic(self, segment_map: np.ndarray, segments: Sequence[Segment], camera: Optional[Camera] = None,
                         stamp_ns: Optional[int] = None, odom_from_vehicle: Optional[np.ndarray] = None
                         ) -> FrameResult:
        """The stages after the network (projection, objects, tracking) on a given panoptic segmentation,
        e.g. a drive's ground truth: segment ids [H, W] (0 void) and their segments (label space ids)."""
        from panoptic_perception.geometry.panoptic_outputs import fusion_outputs_from_panoptic

        t0 = time.perf_counter()
        segment_map = np.asarray(segment_map)
        categories = {s.id: s.category_id for s in segments}
        outputs, slot_of = fusion_outputs_from_panoptic(segment_map, categories, self.label_space)
        # one lookup over the slot map the outputs already hold, instead of a pass over the image per segment
        slot_category = np.concatenate([[self.label_space.ignore_id], outputs["segment_category"].numpy()])
        category_map = slot_category.astype(np.uint8)[outputs["segment_map"].numpy()]
        result = FrameResult(segment_map.astype(np.int32, copy=False), category_map, list(segments),
                             timings_ms={})
        self._project_and_track(result, outputs, camera, stamp_ns, odom_from_vehicle,
                                segment_of_slot={slot: seg_id for seg_id, slot in slot_of.items()})
        result.timings_ms["total_ms"] = (time.perf_counter() - t0) * 1e3
        return result

    def _project_and_track(self, result: FrameResult, outputs: Dict[str, object], camera: Optional[Camera],
                           stamp_ns: Optional[int], odom_from_vehicle: Optional[np.ndarray],
                           segment_of_slot: Optional[Dict[int, int]] = None) -> None:
        """Fills result.grid (or grid_error) and, for a stamped frame, the tracking fields. The panoptic
        result stands on its own: a grid problem is reported in grid_error, never raised."""
        height_px, width_px = result.segment_map.shape
        t0 = time.perf_counter()
        if self.config.project_grid and camera is not None:
            if (camera.width, camera.height) != (width_px, height_px):
                raise InputError(f"camera is {camera.width}x{camera.height} but the image is "
                                 f"{width_px}x{height_px}")
            try:
                grid = self.projector_for(camera).project(outputs)
            except PerceptionError as exc:
                result.grid_error = str(exc)
            else:
                result.grid = grid.to_numpy()
                if segment_of_slot is not None:  # objects name the given segments, not the slots
                    result.grid.objects = [dataclasses.replace(o, segment_id=segment_of_slot[o.segment_id])
                                           for o in result.grid.objects]
                result.timings_ms["projection_ms"] = (time.perf_counter() - t0) * 1e3
        if self._tracking is None or stamp_ns is None:
            return
        t1 = time.perf_counter()
        objects = result.grid.objects if result.grid is not None else []
        tracking = self._tracking.update(objects, stamp_ns, odom_from_vehicle, result.grid)
        result.tracks, result.tracking_frame = tracking.tracks, tracking.frame
        result.fused_grid, result.tracking_reset = tracking.fused_grid, tracking.reset_reason
        if tracking.track_of_segment:
            result.segments = [dataclasses.replace(s, track_id=tracking.track_of_segment.get(s.id, 0))
                               for s in result.segments]
        result.timings_ms["tracking_ms"] = (time.perf_counter() - t1) * 1e3
