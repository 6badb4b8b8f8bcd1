"""Per-frame projection of a panoptic segmentation onto the bird's-eye grid (what the Pipeline calls).

Input is the fusion output (static-shape torch tensors): "segment_map" int32 [H, W] (0 void,
segment id = slot + 1), "segment_category" int64 [S], "segment_is_thing" bool [S],
"segment_score" float [S], "segment_valid" bool [S], optionally a per-pixel confidence [H, W]
under "pixel_confidence" (or "confidence").

- Ground classes (config free_classes) give free evidence at the cells their pixels see.
- Stuff obstacles (walls, poles...) give occupied evidence where they meet the ground: pixels
  of theirs with a ground pixel directly below.
- Things give occupied evidence over their footprint, built from the lowest mask pixel of each
  image column (its ground contact) and the class's size prior - never the whole mask, whose
  upper part would smear to the horizon.
- A cell is unknown without evidence: outside the field of view, or hidden along the camera's
  rays behind an object (its pixels show the object, not the ground). Evidence is summed as
  log-odds weighted by confidence; a far cell seen through fewer than min_pixels_per_cell
  samples counts as seen by that many (ipm.py), so distant ground is not striped with unknown.

Tables depend only on camera, image size and grid; they are rebuilt when one of those changes.
A frame has two parts. The per-pixel work (ground votes, the final grids) is torch gathers and
scatter-adds over the tables, on the input's device. The work on segment boundaries (a few
thousand pixels: obstacle contacts, thing contacts, footprints) is numpy on the host, in one
batch per frame: no per-pixel or per-object Python. On CPU the host arrays are views, not copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import (
    CLASS_UNKNOWN,
    GridConfig,
    GridGeometry,
    load_grid_config,
    occupancy_from_masks,
)
from panoptic_perception.geometry.ipm import GroundLookup, build_ground_lookup
from panoptic_perception.geometry.objects import (
    Footprint,
    GroundObject,
    fit_axes_batch,
    fit_footprints,
    footprints_cells,
    position_covariances,
)
from panoptic_perception.labels import LabelSpace
from panoptic_perception.lru import LruCache

CONFIDENCE_KEYS = ("pixel_confidence", "confidence")
LOOKUP_CACHE_SIZES = 4  # (image size, device) lookup tables kept per camera
# bits of a segment's code
_OBSTACLE, _GROUND_BELOW, _THING = 1, 2, 4
# footprints cut by the image border are also tried grown toward the camera along these axes of
# their fit (objects.fit_footprints' extend_toward_camera)
_TOWARD_CAMERA = ((True, False), (False, True), (True, True))
_REQUIRED_KEYS = ("segment_map", "segment_category", "segment_is_thing", "segment_score", "segment_valid")


@dataclass(frozen=True)
class _Segments:
    """Per-segment tables of one frame, index 0 void (host arrays)."""

    category: np.ndarray  # int64 [S + 1]; the label space's class count for void / invalid segments
    score: np.ndarray  # float32 [S + 1]; 0 for void / invalid
    code: np.ndarray  # int32 [S + 1]; bits _OBSTACLE, _GROUND_BELOW, _THING


@dataclass
class GridResult:
    """One frame on the grid. Tensors live on the input's device; grids are [height, width]."""

    occupancy: Any  # torch.int8: -1 unknown, 0 free, 100 occupied (nav_msgs/OccupancyGrid)
    class_grid: Any  # torch.uint8: winning category id per cell, 255 unknown
    log_odds: Any  # torch.float32: the summed evidence (for a grid filter)
    geometry: GridGeometry
    objects: List[GroundObject] = field(default_factory=list)

    def to_numpy(self) -> GridResult:
        """A new GridResult with the grids as host numpy arrays (this one keeps its tensors)."""
        def host(grid: Any) -> np.ndarray:
            return grid.detach().cpu().numpy() if hasattr(grid, "detach") else np.asarray(grid)

        return replace(self, occupancy=host(self.occupancy), class_grid=host(self.class_grid),
                                   log_odds=host(self.log_odds))

    @property
    def resolution_m(self) -> float:
        return self.geometry.resolution_m

    @property
    def origin_x_m(self) -> float:
        return self.geometry.origin_x_m

    @property
    def origin_y_m(self) -> float:
        return self.geometry.origin_y_m

    @property
    def width(self) -> int:
        return self.geometry.width

    @property
    def height(self) -> int:
        return self.geometry.height


def _host(tensor: Any) -> np.ndarray:
    """A tensor's values as a numpy array (a view for a CPU tensor)."""
    return tensor.detach().cpu().numpy()


def _take(tensor: Any, index: np.ndarray, on_host: Optional[bool] = None) -> np.ndarray:
    """tensor.reshape(-1)[index] as a host array: numpy indexing (default for a CPU tensor) or a
    gather on the tensor's device and a copy of the few values."""
    import torch

    flat = tensor.reshape(-1)
    if on_host is None:
        on_host = flat.device.type == "cpu"
    if on_host:
        return flat.cpu().numpy()[index]
    return flat[torch.from_numpy(index).to(flat.device)].cpu().numpy()


def _rows_differ(region: Any, on_host: Optional[bool] = None) -> np.ndarray:
    """Flat indices into region[:-1] of the pixels whose segment differs from the one below.

    On the host (default for a CPU tensor) numpy: its compare and nonzero are several times faster
    than torch's CPU kernels here. Otherwise torch on the tensor's device, and only the indices move.
    """
    import torch

    if on_host is None:
        on_host = region.device.type == "cpu"
    if on_host:
        values = region.cpu().numpy()
        return np.flatnonzero(values[:-1] != values[1:])
    return torch.nonzero((region[:-1] != region[1:]).reshape(-1)).squeeze(1).cpu().numpy()


def _last_wins(cells: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct cells and, for each, the position of its last occurrence (what writing in order leaves)."""
    distinct, from_end = np.unique(cells[::-1], return_index=True)
    return distinct, len(cells) - 1 - from_end


class GridClassError(ConfigError):
    """A class list of the grid config (`key`) names a class (`name`) the label space lacks."""

    def __init__(self, key: str, name: str, label_space: LabelSpace) -> None:
        self.key, self.name = key, name
        self.detail = (f"no class named '{name}' in label space {label_space.name}; valid names: "
                       f"{', '.join(label_space.names)}")
        super().__init__(f"grid config {key}: {self.detail}")


class GridOverrideError(ConfigError):
    """An override of the grid config (`key`, a GridConfig field) is invalid; `detail` says why, so an
    entry point can name the key the way its users set it (a ROS parameter, a CLI flag)."""

    def __init__(self, key: str, detail: str, where: str) -> None:
        self.key, self.detail = key, detail
        super().__init__(f"{where}: {detail}")


def grid_config_with_overrides(path: str, overrides: Mapping[str, Any], label_space: LabelSpace) -> GridConfig:
    """The grid config a Pipeline projects with: the YAML at `path`, then `overrides` (GridConfig fields;
    `grid` takes a mapping of GridExtent fields), every class name checked against `label_space` so a
    start-up refuses a bad config instead of failing on the first frame that wants a grid.

    Errors name the key: GridOverrideError for an overridden one ("grid_overrides.KEY") or a key of
    the file ("KEY of PATH")."""
    base = load_grid_config(path)
    changes = dict(overrides)
    unknown = sorted(set(changes) - {f.name for f in fields(GridConfig)})
    if unknown:
        raise ConfigError(f"grid_overrides: unknown keys {', '.join(unknown)} (GridConfig fields)")
    extent = changes.pop("grid", None)
    try:
        if extent:
            changes["grid"] = replace(base.grid, **extent)
        for name in ("free_classes", "obstacle_classes"):
            if changes.get(name) is not None:
                changes[name] = tuple(changes[name])
        config = replace(base, **changes)
    except (TypeError, ValueError) as exc:
        key = ", ".join(sorted(overrides))
        raise GridOverrideError(key, str(exc), f"grid_overrides {key}") from exc
    try:
        check_grid_classes(config, label_space)
    except GridClassError as exc:
        if exc.key in overrides:
            raise GridOverrideError(exc.key, exc.detail, f"grid_overrides.{exc.key}") from exc
        raise ConfigError(f"{exc.key} of grid config ({path}): {exc.detail}") from exc
    return config


def check_grid_classes(config: GridConfig, label_space: LabelSpace) -> None:
    """GridClassError (or ConfigError) unless every class name of `config` is in `label_space`: the
    same class tables the projector builds, without a camera, so a start-up can refuse a bad config
    instead of failing on the first frame that wants a grid."""
    GroundProjector(Camera(), config, label_space)


class GroundProjector:
    """Projects fusion outputs of one camera onto the grid; tables cached per image size and device."""

    def __init__(self, camera: Camera, config: GridConfig, label_space: LabelSpace) -> None:
        self._config = config
        self._labels = label_space
        self._geometry = config.grid.geometry()
        self._camera = camera
        # per (size, device): a few, not one per size ever seen (fit_pad crops vary with the image size)
        self._lookups: LruCache[GroundLookup] = LruCache(LOOKUP_CACHE_SIZES)
        self._build_class_tables()

    @property
    def camera(self) -> Camera:
        return self._camera

    @property
    def config(self) -> GridConfig:
        return self._config

    @property
    def geometry(self) -> GridGeometry:
        return self._geometry

    def set_camera(self, camera: Camera) -> None:
        """New intrinsics or extrinsics (CameraInfo / tf changed): tables are rebuilt lazily."""
        if camera != self._camera:
            self._camera = camera
            self._lookups.clear()

    def set_config(self, config: GridConfig) -> None:
        if config != self._config:
            self._config = config
            self._geometry = config.grid.geometry()
            self._lookups.clear()
            self._build_class_tables()

    def lookup(self, width_px: int, height_px: int, device: Any = "cpu") -> GroundLookup:
        """The tables for this image size on this device (built on first use)."""
        key = (width_px, height_px, str(device))
        table = self._lookups.get(key)
        if table is None:
            cpu_key = (width_px, height_px, "cpu")
            cpu = self._lookups.get_or_build(cpu_key, lambda: build_ground_lookup(
                self._camera, width_px, height_px, self._geometry, self._config.max_pixels_per_cell,
                self._config.min_pixels_per_cell))
            table = cpu if key == cpu_key else self._lookups.put(key, cpu.to(device))
        return table

    # -- class tables -------------------------------------------------------------------------

    def _class_ids(self, names: Tuple[str, ...], what: str) -> List[int]:
        known = set(self._labels.names)
        for name in names:
            if name not in known:
                raise GridClassError(what, name, self._labels)
        return [self._labels.id_of(name) for name in names]

    def _build_class_tables(self) -> None:
        cfg, n = self._config, self._labels.num_classes
        if n > CLASS_UNKNOWN:
            raise ConfigError(f"the class grid is uint8 with {CLASS_UNKNOWN} for unknown: at most "
                              f"{CLASS_UNKNOWN} classes, the label space has {n}")
        free = self._class_ids(cfg.free_classes, "free_classes")
        obstacle = self._class_ids(cfg.obstacle_classes, "obstacle_classes")
        below = self._class_ids(cfg.contact_below_classes, "contact_below_classes") \
            if cfg.contact_below_classes is not None else free
        for name in cfg.thing_priors:
            cid = self._class_ids((name,), "thing_priors")[0]
            if not self._labels.categories[cid].is_thing:
                raise ConfigError(f"grid config thing_priors: '{name}' is not a thing class")
        # Per class (index n: void / invalid): a bit code and, for free classes, their slot in the
        # class vote (other classes vote into a spare slot len(free) that is never read).
        code = np.zeros(n + 1, dtype=np.int32)
        code[obstacle] |= _OBSTACLE
        code[below] |= _GROUND_BELOW
        self._class_code = code
        self._free_ids = free
        slot = np.full(n + 1, len(free), dtype=np.int32)
        slot[free] = np.arange(len(free), dtype=np.int32)
        self._free_slot = slot
        self._priors = [cfg.prior_for(c.name) for c in self._labels.categories]
        # contacts beyond an object's nearest one by more than this are overhangs (per class, metres)
        self._reach_m = np.array([cfg.overhang_diagonals * float(np.hypot(p.length_m, p.width_m))
                                  for p in self._priors] + [0.0])
        self._surface_heights = {self._class_ids((name,), "surface_height_m")[0]: h
                                 for name, h in cfg.surface_height_m.items()}
        self._carriers = [[] for _ in range(n + 1)]
        for name, carriers in cfg.carried_by.items():
            rider = self._class_ids((name,), "carried_by")[0]
            self._carriers[rider] = self._class_ids(carriers, "carried_by")
        self._is_carried = np.array([bool(c) for c in self._carriers])  # index n (void / invalid): False
        self._carriers_any = bool(self._is_carried.any())

    # -- per frame ----------------------------------------------------------------------------

    def project(self, outputs: Mapping[str, Any], camera: Optional[Camera] = None) -> GridResult:
        """Fusion outputs of one frame -> occupancy grid, class grid and objects."""
        import torch

        if camera is not None:
            self.set_camera(camera)
        missing = [k for k in _REQUIRED_KEYS if k not in outputs]
        if missing:
            raise InputError(f"projection input lacks {', '.join(missing)}")
        seg_map = outputs["segment_map"]
        if seg_map.dim() != 2:
            raise InputError(f"segment_map must be [H, W], got shape {tuple(seg_map.shape)}")
        if seg_map.dtype not in (torch.int32, torch.int64):
            raise InputError(f"segment_map must be int32 or int64, got {seg_map.dtype}")
        device = seg_map.device
        height_px, width_px = int(seg_map.shape[0]), int(seg_map.shape[1])
        table = self.lookup(width_px, height_px, device)
        host_table = self.lookup(width_px, height_px)
        geometry, ev = self._geometry, self._config.evidence
        n_cells, n_free = geometry.num_cells, len(self._free_ids)
        segments = self._segment_tables(outputs)
        confidence = next((outputs[k] for k in CONFIDENCE_KEYS if outputs.get(k) is not None), None)
        if confidence is not None:
            confidence = confidence.to(device=device, dtype=torch.float32).clamp(0, 1)

        # Ground pixels vote, weighted, for their ground class in their cell: one scatter-add into
        # slot-major [n_free + 1, n_cells] rows (each class's votes contiguous; the last row takes
        # the pixels of other classes). A ground pixel's free evidence is free_per_pixel times its
        # weight, so the free log-odds of a cell is its votes summed over the ground classes.
        s = torch.index_select(seg_map.reshape(-1), 0, table.sample_pixel)
        if confidence is None:
            weight = torch.index_select(torch.from_numpy(segments.score).to(device), 0, s)
        else:
            weight = torch.index_select(confidence.reshape(-1), 0, table.sample_pixel)
        vote_row = torch.from_numpy(self._free_slot[segments.category] * n_cells).to(device)
        free_votes = torch.zeros((n_free + 1) * n_cells, dtype=torch.float32, device=device)
        free_votes.index_add_(0, torch.index_select(vote_row, 0, s) + table.sample_cell, weight)
        free_votes = free_votes.reshape(n_free + 1, n_cells)
        log_odds = free_votes[:n_free].sum(0) * ev.free_per_pixel

        # Segment boundaries between a pixel and the one below it: stuff obstacles meet the
        # ground there, and things have their lowest pixels there (or on the image's last row).
        r0 = max(table.first_row - 1, 0)
        n_rows = height_px - r0
        upper = _rows_differ(seg_map[r0:])
        last_row_things = np.flatnonzero(segments.code[_host(seg_map[-1])] & _THING)
        upper = np.concatenate([upper, last_row_things + (n_rows - 1) * width_px]) + r0 * width_px
        upper_seg = _take(seg_map, upper)
        lower_seg = _take(seg_map, np.minimum(upper + width_px, height_px * width_px - 1))
        up_code = segments.code[upper_seg]
        ground_below = (segments.code[lower_seg] & _GROUND_BELOW) > 0
        ground_below[upper >= (height_px - 1) * width_px] = False  # the image ends there

        # Stuff obstacles: evidence at the cell of each ground contact; a cell's class is the
        # obstacle written there last, then any thing footprint over it.
        obstacle = ((up_code & _OBSTACLE) > 0) & ground_below
        o_pix, o_seg = upper[obstacle], upper_seg[obstacle]
        o_cell = host_table.edge_cell.numpy().reshape(-1)[o_pix]
        o_ok = o_cell < n_cells
        o_cell, o_pix, o_seg = o_cell[o_ok], o_pix[o_ok], o_seg[o_ok]
        o_w = segments.score[o_seg] if confidence is None else _take(confidence, o_pix)
        log_odds.index_add_(0, torch.from_numpy(o_cell).to(device),
                            torch.from_numpy(o_w * np.float32(ev.obstacle_per_contact)).to(device))
        # far cells seen through few samples: the table's gain scales their per-pixel evidence up
        # to min_pixels_per_cell samples' worth (ground and obstacle alike, so their balance holds)
        log_odds.mul_(table.cell_gain)
        occupied_class = np.full(n_cells, CLASS_UNKNOWN, dtype=np.uint8)
        cells, last = _last_wins(o_cell)
        occupied_class[cells] = segments.category[o_seg[last]]

        thing = (up_code & _THING) > 0
        t_pix, t_seg, t_below, t_ground = upper[thing], upper_seg[thing], lower_seg[thing], ground_below[thing]
        if r0 > 0 and self._carriers_any:
            # A rider's lowest pixels (legs over its bicycle) can sit above the first row that sees the
            # grid's ground; it still needs them to find what carries it.
            riders = np.flatnonzero(self._is_carried[segments.category] & ((segments.code & _THING) > 0))
            missing = np.setdiff1d(riders, t_seg)
            if missing.size:
                above = _rows_differ(seg_map[:r0 + 1])
                above_seg = _take(seg_map, above)
                keep = np.isin(above_seg, missing)
                a_pix, a_seg = above[keep], above_seg[keep]
                t_pix, t_seg = np.concatenate([a_pix, t_pix]), np.concatenate([a_seg, t_seg])
                t_below = np.concatenate([_take(seg_map, a_pix + width_px), t_below])
                t_ground = np.concatenate([np.zeros(a_pix.size, dtype=bool), t_ground])
        objects = self._objects(t_pix, t_seg, t_below, t_ground, segments, host_table, _host(log_odds))
        self._paint_footprints([o for o in objects if o.contact_visible], log_odds, occupied_class)

        log_odds = log_odds.clamp(-ev.clamp, ev.clamp)
        free, occupied = log_odds <= ev.free_threshold, log_odds >= ev.occupied_threshold
        shape = (geometry.height, geometry.width)
        occupancy = occupancy_from_masks(free, occupied).reshape(shape)
        class_grid = self._class_grid(free_votes, torch.from_numpy(occupied_class).to(device), free, occupied)
        return GridResult(occupancy, class_grid.reshape(shape), log_odds.reshape(shape), geometry, objects)

    def _segment_tables(self, outputs: Mapping[str, Any]) -> _Segments:
        """Per-segment category, score and code (host arrays), index 0 void; invalid segments are void."""
        n_classes = self._labels.num_classes
        valid = _host(outputs["segment_valid"]).astype(bool)
        # minimum/maximum: np.clip costs more than the rest of this on arrays this small
        category = _host(outputs["segment_category"]).astype(np.int64)
        category = np.where(valid, np.minimum(np.maximum(category, 0), n_classes), n_classes)
        score = np.minimum(np.maximum(_host(outputs["segment_score"]).astype(np.float32), 0), 1) * valid
        is_thing = _host(outputs["segment_is_thing"]).astype(bool) & valid
        category = np.concatenate([[n_classes], category])
        code = self._class_code[category] | (np.concatenate([[False], is_thing]).astype(np.int32) * _THING)
        return _Segments(category, np.concatenate([np.zeros(1, np.float32), score]), code)

    def _paint_footprints(self, objects: List[GroundObject], log_odds: Any, occupied_class: np.ndarray) -> None:
        """Thing evidence over each footprint; where footprints overlap the later object names the cell."""
        import torch

        cells, owner = footprints_cells(self._geometry, [o.footprint for o in objects])
        if cells.size == 0:
            return
        per_object = np.array([self._config.evidence.thing_footprint * o.score for o in objects], dtype=np.float32)
        device = log_odds.device
        log_odds.index_add_(0, torch.from_numpy(cells).to(device), torch.from_numpy(per_object[owner]).to(device))
        distinct, last = _last_wins(cells)
        occupied_class[distinct] = np.array([o.category for o in objects], dtype=np.uint8)[owner[last]]

    def _class_grid(self, free_votes: Any, occupied_class: Any, free: Any, occupied: Any) -> Any:
        """Winning ground class on free cells, the obstacle or thing class on occupied ones, else unknown.

        Selections are 0/1 arithmetic on uint8 (bool masks viewed as 0/1; wrapping is harmless as
        exactly one term survives): torch's CPU where / masked_fill branch per element, several
        times slower on these grids. Consumes occupied_class.
        """
        import torch

        best_id = torch.zeros(occupied_class.numel(), dtype=torch.uint8, device=occupied_class.device)
        if self._free_ids:
            # a running max over the few ground classes beats a generic argmax on CPU; a free cell
            # has positive votes (its log-odds is below a negative threshold), so a winner exists
            best = free_votes[0]
            best_id += self._free_ids[0]
            for k, cid in enumerate(self._free_ids[1:], start=1):
                better = (free_votes[k] > best).view(torch.uint8)
                best = torch.maximum(free_votes[k], best)
                best_id += better * (cid - best_id)
        # unknown (255) + free * (best + 1) + occupied * (class + 1), modulo 256
        grid = best_id.add_(1).mul_(free.view(torch.uint8))
        grid += occupied_class.add_(1).mul_(occupied.view(torch.uint8))
        return grid.sub_(1)

    def _objects(self, pixels: np.ndarray, segment_ids: np.ndarray, below_ids: np.ndarray,
                 ground_below: np.ndarray, segments: _Segments, table: GroundLookup,
                 ground_log_odds: np.ndarray) -> List[GroundObject]:
        """Things from their candidate bottom pixels (flat pixel index, segment id, ground below?).

        `ground_log_odds` (flat, per cell) is the frame's evidence before things are painted: a
        footprint cut by the image border grows where it covers the least ground seen free.

        The lowest candidate of each thing in each image column is its ground contact there;
        it is trusted when the pixel below it is ground, not another object or the image border.
        Candidates come in pixel order (row-major): a thing's lowest in a column is its last there.
        """
        if pixels.size == 0:
            return []
        width_px = table.width_px
        _, keep = _last_wins(segment_ids.astype(np.int64) * width_px + pixels % width_px)
        keep.sort()  # candidate order
        pixels, sid_np, below_np = pixels[keep], segment_ids[keep], below_ids[keep]
        rows_np, cols_np = pixels // width_px, pixels % width_px
        xy_np = np.stack([table.edge_x_m.numpy().reshape(-1)[pixels],
                          table.edge_y_m.numpy().reshape(-1)[pixels]], 1).astype(np.float64)
        finite = np.isfinite(xy_np[:, 0])
        ok_np = ground_below[keep] & finite
        cat_np, score_np = segments.category, segments.score

        cam = table.camera
        # contacts on a raised surface (sidewalk) meet the ray at its height, not at z = 0:
        # along the ray that scales the horizontal offset from the camera by (h - z) / h
        cam_height_m = float(cam.extrinsics.translation()[2])
        scale = self._surface_scale(cat_np[below_np], cam_height_m)
        camera_xy = table.camera_xy_m
        cam_xy = np.asarray(camera_xy)
        xy_np = cam_xy + (xy_np - cam_xy) * scale[:, None]

        # Contacts grouped by segment (ascending id, column order kept within one): group k holds
        # sorted positions starts[k] .. starts[k] + counts[k] - 1, and owner maps a contact to k.
        order = np.argsort(sid_np, kind="stable")
        ids, starts, counts = np.unique(sid_np[order], return_index=True, return_counts=True)
        owner = np.repeat(np.arange(len(ids)), counts)
        xy_s, ok_s, finite_s = xy_np[order], ok_np[order], finite[order]
        categories = cat_np[ids]
        with np.errstate(invalid="ignore"):
            dist = np.hypot(xy_s[:, 0] - cam_xy[0], xy_s[:, 1] - cam_xy[1])
        nearest = np.minimum.reduceat(np.where(ok_s, dist, np.inf), starts)
        good = ok_s & (dist <= (nearest + self._reach_m[categories])[owner])
        n_good = np.bincount(owner[good], minlength=len(ids))
        contact_visible = n_good >= self._config.min_contact_columns
        # without enough ground contact, every contact below the horizon bounds the position
        use = np.where(contact_visible[owner], good, finite_s)
        n_use = np.bincount(owner[use], minlength=len(ids))
        last_row, last_col = table.height_px - 1, table.width_px - 1
        at_border = (cols_np == 0) | (cols_np == last_col) | (rows_np == last_row)
        truncated = np.bincount(owner[at_border[order]], minlength=len(ids)) > 0

        carried = {}
        for k in np.flatnonzero([bool(self._carriers[c]) for c in categories]).tolist():
            members = order[starts[k]:starts[k] + counts[k]]
            below_cats = cat_np[below_np[members]]
            on = below_np[members][np.isin(below_cats, self._carriers[categories[k]])]
            if on.size:  # the carrier seen most directly below it
                carried[int(ids[k])] = int(np.bincount(on).argmax())

        placed = np.flatnonzero(n_use > 0)  # none: the whole mask is above the horizon
        priors = [self._priors[c] for c in categories[placed].tolist()]
        # Things cut by the image border are also fitted grown toward the camera (along one axis, the
        # other, both; their axes as fitted once); _grow_cut_footprints keeps the best of the four.
        cut = np.flatnonzero(truncated[placed] & contact_visible[placed])
        points, counts = xy_s[use], n_use[placed]
        axes = fit_axes_batch(points, counts)
        footprints = fit_footprints(points, counts, camera_xy, priors, axes_rad=axes)
        if cut.size:
            take = np.flatnonzero(np.isin(np.repeat(np.arange(len(placed)), counts), cut))  # the cut groups' points
            variants = len(_TOWARD_CAMERA)
            regrown = fit_footprints(np.tile(points[take], (variants, 1)), np.tile(counts[cut], variants), camera_xy,
                                     [priors[k] for k in cut.tolist()] * variants,
                                     np.concatenate([np.tile(v, (cut.size, 1)) for v in _TOWARD_CAMERA]),
                                     np.tile(axes[cut], variants))
            footprints = self._grow_cut_footprints(footprints, cut, regrown, ground_log_odds)
        covariances = position_covariances(
            footprints, camera_xy, float(cam.extrinsics.height_m), float(cam.intrinsics.camera_matrix[1, 1]),
            priors, self._config.uncertainty, contact_visible[placed])
        objects = []
        for k, footprint, cov in zip(placed.tolist(), footprints, covariances):
            segment_id, category = int(ids[k]), int(categories[k])
            objects.append(GroundObject(
                segment_id=segment_id, category=category,
                class_name=self._labels.categories[category].name, score=float(score_np[segment_id]),
                footprint=footprint,
                range_m=float(np.hypot(footprint.x_m - camera_xy[0], footprint.y_m - camera_xy[1])),
                covariance_xy=tuple(float(v) for v in cov.ravel()), contact_columns=int(n_good[k]),
                contact_visible=bool(contact_visible[k]), truncated=bool(truncated[k])))
        # a rider with no contact of its own that projects (all of it over its bicycle, above the
        # grid's first row) is still where its carrier is: _place_carried puts it there
        unplaced = np.setdiff1d(np.flatnonzero([int(i) in carried for i in ids]), placed).tolist()
        for k in unplaced:
            segment_id, category = int(ids[k]), int(categories[k])
            objects.append(GroundObject(
                segment_id=segment_id, category=category, class_name=self._labels.categories[category].name,
                score=float(score_np[segment_id]), footprint=Footprint(0.0, 0.0, 0.0, 0.0, 0.0), range_m=0.0,
                covariance_xy=(0.0, 0.0, 0.0, 0.0), contact_columns=0, contact_visible=False,
                truncated=bool(truncated[k])))
        return self._place_carried(objects, carried, camera_xy, {int(ids[k]) for k in unplaced})

    def _grow_cut_footprints(self, footprints: List[Footprint], cut: np.ndarray, regrown: List[Footprint],
                             ground_log_odds: np.ndarray) -> List[Footprint]:
        """Footprints of things cut by the image border (indices `cut`), each replaced by whichever of it
        and its regrown forms (`regrown`: per _TOWARD_CAMERA variant, one per cut thing) covers the least
        ground seen free.

        The seen contact of a cut thing can end at the border instead of at the thing's end, and
        growing the prior's hidden part away from the camera then lays it over ground the camera sees
        (a car being passed, its back below the image, came out 2-3 m too far ahead). Ties keep the
        usual growth away from the camera.
        """
        candidates = [footprints[k] for k in cut.tolist()] + list(regrown)
        cells, owner = footprints_cells(self._geometry, candidates)
        seen_free = np.bincount(owner, weights=np.maximum(-ground_log_odds[cells], 0.0), minlength=len(candidates))
        best = np.argmin(seen_free.reshape(-1, cut.size), axis=0)  # first of ties: the usual growth
        out = list(footprints)
        for j, k in enumerate(cut.tolist()):
            out[k] = candidates[best[j] * cut.size + j]
        return out

    def _place_carried(self, objects: List[GroundObject], carried: Dict[int, int],
                       camera_xy: Tuple[float, float], unplaced: Optional[set] = None) -> List[GroundObject]:
        """A rider stands where its bicycle does: take the carrier's footprint (centre, heading and size:
        the rider's own contacts are its feet and the wheels' spots under it, which fit no rectangle)."""
        if not carried:
            return objects
        by_id = {o.segment_id: o for o in objects}
        out = []
        for obj in objects:
            carrier = by_id.get(carried.get(obj.segment_id, -1))
            if carrier is not None and carrier.contact_visible:
                obj = replace(obj, footprint=carrier.footprint, range_m=carrier.range_m,
                              covariance_xy=carrier.covariance_xy, contact_visible=True,
                              contact_columns=carrier.contact_columns)
            elif obj.segment_id in (unplaced or ()):
                continue  # nothing to place it by
            out.append(obj)
        return out

    def _surface_scale(self, below_categories: np.ndarray, camera_height_m: float) -> np.ndarray:
        scale = np.ones(len(below_categories))
        for cid, height_m in self._surface_heights.items():
            scale[below_categories == cid] = max(camera_height_m - height_m, 1e-3) / camera_height_m
        return scale
