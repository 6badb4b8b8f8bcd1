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
  log-odds weighted by confidence.

Tables depend only on camera, image size and grid; they are rebuilt when one of those changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from panoptic_perception.errors import ConfigError, InputError
from panoptic_perception.geometry.camera import Camera
from panoptic_perception.geometry.grid import (
    CLASS_UNKNOWN,
    OCCUPANCY_FREE,
    OCCUPANCY_OCCUPIED,
    GridConfig,
    GridGeometry,
    occupancy_from_log_odds,
)
from panoptic_perception.geometry.ipm import GroundLookup, build_ground_lookup
from panoptic_perception.geometry.objects import (
    GroundObject,
    fit_footprint,
    footprint_cells,
    position_covariance,
)
from panoptic_perception.labels import LabelSpace

CONFIDENCE_KEYS = ("pixel_confidence", "confidence")
# bits of a segment's code
_OBSTACLE, _GROUND_BELOW, _THING = 1, 2, 4
_REQUIRED_KEYS = ("segment_map", "segment_category", "segment_is_thing", "segment_score", "segment_valid")


@dataclass
class GridResult:
    """One frame on the grid. Tensors live on the input's device; grids are [height, width]."""

    occupancy: Any  # torch.int8: -1 unknown, 0 free, 100 occupied (nav_msgs/OccupancyGrid)
    class_grid: Any  # torch.uint8: winning category id per cell, 255 unknown
    log_odds: Any  # torch.float32: the summed evidence (for a grid filter)
    geometry: GridGeometry
    objects: List[GroundObject] = field(default_factory=list)

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


class GroundProjector:
    """Projects fusion outputs of one camera onto the grid; tables cached per image size and device."""

    def __init__(self, camera: Camera, config: GridConfig, label_space: LabelSpace) -> None:
        self._config = config
        self._labels = label_space
        self._geometry = config.grid.geometry()
        self._camera = camera
        self._lookups: Dict[Tuple[int, int, str], GroundLookup] = {}
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
            cpu = self._lookups.get(cpu_key)
            if cpu is None:
                cpu = build_ground_lookup(self._camera, width_px, height_px, self._geometry,
                                          self._config.max_pixels_per_cell)
                self._lookups[cpu_key] = cpu
            table = cpu if key == cpu_key else cpu.to(device)
            self._lookups[key] = table
        return table

    # -- class tables -------------------------------------------------------------------------

    def _class_ids(self, names: Tuple[str, ...], what: str) -> List[int]:
        ids = []
        for name in names:
            try:
                ids.append(self._labels.id_of(name))
            except ConfigError as exc:
                raise ConfigError(f"grid config {what}: {exc}") from exc
        return ids

    def _build_class_tables(self) -> None:
        import torch

        cfg, n = self._config, self._labels.num_classes
        ev = cfg.evidence
        free = self._class_ids(cfg.free_classes, "free_classes")
        obstacle = self._class_ids(cfg.obstacle_classes, "obstacle_classes")
        below = self._class_ids(cfg.contact_below_classes, "contact_below_classes") \
            if cfg.contact_below_classes is not None else free
        for name in cfg.thing_priors:
            cid = self._class_ids((name,), "thing_priors")[0]
            if not self._labels.categories[cid].is_thing:
                raise ConfigError(f"grid config thing_priors: '{name}' is not a thing class")
        # Per class (index n: void / invalid): a bit code, the free log-odds of one pixel and,
        # for free classes, their slot in the class vote.
        code = torch.zeros(n + 1, dtype=torch.int32)
        code[obstacle] |= _OBSTACLE
        code[below] |= _GROUND_BELOW
        self._class_code = code
        self._pixel_log_odds = torch.zeros(n + 1, dtype=torch.float32)
        self._pixel_log_odds[free] = ev.free_per_pixel
        self._free_ids = free
        slot = torch.full((n + 1,), len(free), dtype=torch.int32)
        slot[free] = torch.arange(len(free), dtype=torch.int32)
        self._free_slot = slot
        self._priors = [cfg.prior_for(c.name) for c in self._labels.categories]
        self._surface_heights = {self._class_ids((name,), "surface_height_m")[0]: h
                                 for name, h in cfg.surface_height_m.items()}
        self._carriers = [[] for _ in range(n + 1)]
        for name, carriers in cfg.carried_by.items():
            rider = self._class_ids((name,), "carried_by")[0]
            self._carriers[rider] = self._class_ids(carriers, "carried_by")
        self._device_tables: Dict[str, Tuple[Any, ...]] = {}

    def _tables_on(self, device: Any) -> Tuple[Any, ...]:
        key = str(device)
        if key not in self._device_tables:
            self._device_tables[key] = tuple(t.to(device) for t in (
                self._class_code, self._pixel_log_odds, self._free_slot))
        return self._device_tables[key]

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
        class_code, class_lo, class_free_slot = self._tables_on(device)
        n_classes = self._labels.num_classes
        geometry, ev = self._geometry, self._config.evidence
        n_cells, n_free = geometry.num_cells, len(self._free_ids)

        # Per-segment tables, index 0 void; invalid segments count as void. Everything per pixel
        # below is a gather through these (index_select: far faster than advanced indexing on CPU).
        valid = outputs["segment_valid"].to(device=device, dtype=torch.bool)
        category = outputs["segment_category"].to(device=device, dtype=torch.int64).clamp(0, n_classes)
        category = torch.where(valid, category, torch.full_like(category, n_classes))
        seg_cat = torch.cat([category.new_full((1,), n_classes), category])
        score = outputs["segment_score"].to(device=device, dtype=torch.float32).clamp(0, 1) * valid
        seg_score = torch.cat([score.new_zeros(1), score])
        is_thing = outputs["segment_is_thing"].to(device=device, dtype=torch.bool) & valid
        seg_code = class_code[seg_cat] | (torch.cat([is_thing.new_zeros(1), is_thing]).to(torch.int32)
                                         * _THING)
        confidence = next((outputs[k] for k in CONFIDENCE_KEYS if outputs.get(k) is not None), None)
        seg_flat = seg_map.reshape(-1)

        # ground pixels -> free evidence, and votes for which ground class
        s = torch.index_select(seg_flat, 0, table.sample_pixel)
        weight = torch.index_select(seg_score, 0, s)
        if confidence is not None:
            conf = confidence.to(device=device, dtype=torch.float32).reshape(-1).clamp(0, 1)
            weight = torch.index_select(conf, 0, table.sample_pixel)
        lo_per_seg = class_lo[seg_cat]
        log_odds = torch.zeros(n_cells, dtype=torch.float32, device=device)
        log_odds.index_add_(0, table.sample_cell, torch.index_select(lo_per_seg, 0, s) * weight)
        # slot-major [n_free + 1, n_cells] so each class's votes are one contiguous row
        free_votes = torch.zeros((n_free + 1) * n_cells, dtype=torch.float32, device=device)
        slot_per_seg = class_free_slot[seg_cat]
        free_votes.index_add_(0, torch.index_select(slot_per_seg, 0, s) * n_cells + table.sample_cell, weight)

        # Segment boundaries between a pixel and the one below it: stuff obstacles meet the
        # ground there, and things have their lowest pixels there (or on the image's last row).
        r0 = max(table.first_row - 1, 0)
        region = seg_map[r0:]
        upper = torch.nonzero((region[:-1] != region[1:]).reshape(-1)).squeeze(1)
        last_row = torch.nonzero(torch.index_select(seg_code, 0, region[-1]) & _THING).squeeze(1)
        upper = torch.cat([upper, last_row + (region.shape[0] - 1) * width_px])
        upper_seg = torch.index_select(seg_flat, 0, upper + r0 * width_px)
        below_idx = (upper + (r0 + 1) * width_px).clamp(max=seg_flat.numel() - 1)
        lower_seg = torch.index_select(seg_flat, 0, below_idx)
        up_code = torch.index_select(seg_code, 0, upper_seg)
        ground_below = (torch.index_select(seg_code, 0, lower_seg) & _GROUND_BELOW) > 0
        ground_below[upper >= (region.shape[0] - 1) * width_px] = False  # the image ends there

        obstacle = ((up_code & _OBSTACLE) > 0) & ground_below
        o_pix = upper[obstacle] + r0 * width_px
        o_cell = torch.index_select(table.edge_cell.reshape(-1), 0, o_pix)
        o_ok = o_cell < n_cells
        o_cell = o_cell[o_ok]
        o_w = seg_score[upper_seg[obstacle][o_ok]] if confidence is None else conf[o_pix[o_ok]]
        log_odds.index_add_(0, o_cell, o_w * ev.obstacle_per_contact)
        occupied_class = torch.full((n_cells,), CLASS_UNKNOWN, dtype=torch.int64, device=device)
        occupied_class[o_cell] = seg_cat[upper_seg[obstacle][o_ok]]

        thing = (up_code & _THING) > 0
        objects = self._objects(upper[thing] + r0 * width_px, upper_seg[thing], lower_seg[thing],
                                ground_below[thing], seg_cat, seg_score, table)
        for obj in objects:
            if not obj.contact_visible:
                continue
            cells = torch.from_numpy(footprint_cells(geometry, obj.footprint)).to(device)
            if cells.numel():
                log_odds.index_add_(0, cells, torch.full(cells.shape, ev.thing_footprint * obj.score,
                                                         device=device))
                occupied_class[cells] = obj.category

        log_odds = log_odds.clamp(-ev.clamp, ev.clamp).reshape(geometry.height, geometry.width)
        occupancy = occupancy_from_log_odds(log_odds, ev)
        class_grid = self._class_grid(free_votes.reshape(n_free + 1, n_cells), occupied_class, occupancy)
        return GridResult(occupancy, class_grid, log_odds, geometry, objects)

    def _class_grid(self, free_votes: Any, occupied_class: Any, occupancy: Any) -> Any:
        """Winning ground class on free cells, the obstacle or thing class on occupied ones."""
        import torch

        occ = occupancy.reshape(-1)
        grid = torch.full_like(occupied_class, CLASS_UNKNOWN)
        if self._free_ids:
            # a running max over the few ground classes beats a generic argmax on CPU
            best = free_votes[0]
            best_id = torch.full_like(occupied_class, self._free_ids[0])
            for k, cid in enumerate(self._free_ids[1:], start=1):
                better = free_votes[k] > best
                best = torch.maximum(free_votes[k], best)
                best_id.masked_fill_(better, cid)
            grid = torch.where((occ == OCCUPANCY_FREE) & (best > 0), best_id, grid)
        grid = torch.where(occ == OCCUPANCY_OCCUPIED, occupied_class, grid)
        return grid.to(torch.uint8).reshape(occupancy.shape)

    def _objects(self, pixels: Any, segment_ids: Any, below_ids: Any, ground_below: Any, seg_cat: Any,
                 seg_score: Any, table: GroundLookup) -> List[GroundObject]:
        """Things from their candidate bottom pixels (flat pixel index, segment id, ground below?).

        The lowest candidate of each thing in each image column is its ground contact there;
        it is trusted when the pixel below it is ground, not another object or the image border.
        """
        import torch

        width_px = table.width_px
        if pixels.numel() == 0:
            return []
        rows, cols = pixels // width_px, pixels % width_px
        key = segment_ids.to(torch.int64) * width_px + cols
        lowest = torch.full((int(seg_cat.numel()) * width_px,), -1, dtype=rows.dtype, device=rows.device)
        lowest.scatter_reduce_(0, key, rows, reduce="amax")
        keep = lowest[key] == rows
        pixels, rows, cols = pixels[keep], rows[keep], cols[keep]
        x = torch.index_select(table.edge_x_m.reshape(-1), 0, pixels)
        y = torch.index_select(table.edge_y_m.reshape(-1), 0, pixels)

        sid_np = segment_ids[keep].cpu().numpy()
        below_np = below_ids[keep].cpu().numpy()
        cols_np, rows_np = cols.cpu().numpy(), rows.cpu().numpy()
        xy_np = torch.stack([x, y], 1).cpu().numpy().astype(np.float64)
        finite = np.isfinite(xy_np[:, 0])
        ok_np = ground_below[keep].cpu().numpy() & finite
        cat_np, score_np = seg_cat.cpu().numpy(), seg_score.cpu().numpy()

        cam = table.camera
        # contacts on a raised surface (sidewalk) meet the ray at its height, not at z = 0:
        # along the ray that scales the horizontal offset from the camera by (h - z) / h
        cam_height_m = float(cam.extrinsics.translation()[2])
        scale = self._surface_scale(cat_np[below_np], cam_height_m)
        cam_xy = np.asarray(table.camera_xy_m)
        xy_np = cam_xy + (xy_np - cam_xy) * scale[:, None]
        camera_xy = table.camera_xy_m
        focal_px = float(cam.intrinsics.camera_matrix[1, 1])
        height_m = float(cam.extrinsics.height_m)
        last_row, last_col = table.height_px - 1, table.width_px - 1
        min_cols = self._config.min_contact_columns
        order = np.argsort(sid_np, kind="stable")
        ids, starts = np.unique(sid_np[order], return_index=True)
        bounds = np.r_[starts, len(order)]
        objects = []
        carried = {}
        for k, segment_id in enumerate(ids.tolist()):
            members = order[bounds[k]:bounds[k + 1]]
            category = int(cat_np[segment_id])
            carriers = self._carriers[category]
            if carriers:
                below_cats = cat_np[below_np[members]]
                on = below_np[members][np.isin(below_cats, carriers)]
                if on.size:  # the carrier seen most directly below it
                    carried[int(segment_id)] = int(np.bincount(on).argmax())
            good = members[ok_np[members]]
            prior = self._priors[category]
            if good.size:
                dist = np.hypot(*(xy_np[good] - cam_xy).T)
                reach = self._config.overhang_diagonals * float(np.hypot(prior.length_m, prior.width_m))
                good = good[dist <= dist.min() + reach]
            truncated = bool((cols_np[members] == 0).any() or (cols_np[members] == last_col).any()
                             or (rows_np[members] == last_row).any())
            contact_visible = len(good) >= min_cols
            use = good if contact_visible else members[finite[members]]
            if len(use) == 0:
                continue  # the whole mask is above the horizon: no ground position
            footprint = fit_footprint(xy_np[use], camera_xy, prior)
            cov = position_covariance(footprint, camera_xy, height_m, focal_px, prior,
                                      self._config.uncertainty, contact_visible)
            objects.append(GroundObject(
                segment_id=int(segment_id), category=category,
                class_name=self._labels.categories[category].name, score=float(score_np[segment_id]),
                footprint=footprint,
                range_m=float(np.hypot(footprint.x_m - camera_xy[0], footprint.y_m - camera_xy[1])),
                covariance_xy=tuple(float(v) for v in cov.ravel()), contact_columns=int(len(good)),
                contact_visible=contact_visible, truncated=truncated))
        return self._place_carried(objects, carried, camera_xy)

    def _place_carried(self, objects: List[GroundObject], carried: Dict[int, int],
                       camera_xy: Tuple[float, float]) -> List[GroundObject]:
        """A rider stands where its bicycle does: take the carrier's centre and heading."""
        if not carried:
            return objects
        by_id = {o.segment_id: o for o in objects}
        out = []
        for obj in objects:
            carrier = by_id.get(carried.get(obj.segment_id, -1))
            if carrier is not None and carrier.contact_visible:
                fp = carrier.footprint
                footprint = replace(obj.footprint, x_m=fp.x_m, y_m=fp.y_m, heading_rad=fp.heading_rad)
                obj = replace(obj, footprint=footprint, range_m=carrier.range_m,
                              covariance_xy=carrier.covariance_xy, contact_visible=True,
                              contact_columns=carrier.contact_columns)
            out.append(obj)
        return out

    def _surface_scale(self, below_categories: np.ndarray, camera_height_m: float) -> np.ndarray:
        scale = np.ones(len(below_categories))
        for cid, height_m in self._surface_heights.items():
            scale[below_categories == cid] = max(camera_height_m - height_m, 1e-3) / camera_height_m
        return scale
