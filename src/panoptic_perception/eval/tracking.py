"""Tracking scores of KITTI tracking files against synthetic drives' exact track truth, with TrackEval.

Truth: a synthetic drive's gt/objects/%010d.json (every thing's 3D box in the vehicle frame with a
persistent track_id and its velocity over ground). Tracks: `<drive>.txt` in the KITTI tracking
format (tracking.kitti_tracking), read back into the vehicle frame through the drive's calibration,
and the side file `<drive>.velocity.json` for velocities.

Matching is in the bird's eye view, per KITTI type (a truck tracked as a car is a miss and a false
track): similarity = max(0, 1 - d / 2 m) of the footprint centres, so a pair within 2 m can match,
as nuScenes' tracking benchmark matches centres at 2 m. TrackEval's CLEAR (MOTA, ID switches) and
Identity (IDF1) take pairs with any positive similarity (their THRESHOLD set just above 0: within
2 m); HOTA averages over its own thresholds alpha = 0.05 .. 0.95 (pairs within 1.9 m .. 0.1 m).

Which truth counts (`TrackingEvalConfig`): things the camera sees, with at least min_visible_px
pixels in the image (100, about 10 x 10: fewer give a segmentation next to nothing and a footprint
of a few ground-contact pixels), within nuScenes' class ranges of the ego (50 m for vehicles, 40 m
for pedestrians, cyclists and Misc, KITTI's bucket of two-wheelers). Other truth things are
distractors: a track matching one is dropped rather than called false, as TrackEval's MOT
preprocessing does, and a track matching nothing beyond its class range is dropped too (nuScenes
filters predictions by range).

Besides TrackEval's numbers: ID switches per 100 track-frames (truth things' frames matched by a
track, CLEAR's TP), and the error of the tracks' velocities (|v_track - v_truth|, m/s, over ground)
on truth things within 30 m that the same track has matched for at least 5 frames in a row (a
constant-velocity filter needs a few frames to find a speed), its median over those samples.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from panoptic_perception.data.kitti import KittiCalibration
from panoptic_perception.errors import InputError
from panoptic_perception.tracking.kitti_tracking import (
    DONT_CARE,
    KittiBoxConverter,
    TrackVelocities,
    VehicleBox,
    kitti_type,
    read_tracking_file,
    read_velocity_file,
    velocity_file_path,
)

MATCH_DISTANCE_M = 2.0
# TrackEval's CLEAR / Identity THRESHOLD on our similarity: any positive similarity (d < 2 m) matches.
MATCH_THRESHOLD = 1e-6
# nuScenes' tracking class ranges (detection_cvpr_2019 / tracking_nips_2019 configs) by KITTI type.
DEFAULT_CLASS_RANGES_M = {"Car": 50.0, "Van": 50.0, "Truck": 50.0, "Tram": 50.0, "Pedestrian": 40.0,
                          "Person_sitting": 40.0, "Cyclist": 40.0, "Misc": 40.0}
SUMMARY_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "idsw_per_100_track_frames")


@dataclass(frozen=True)
class TrackingEvalConfig:
    match_distance_m: float = MATCH_DISTANCE_M
    min_visible_px: int = 100
    # Truth the image cuts (KITTI truncation > 0) is a distractor, as TrackEval's KITTI preprocessing
    # (max_truncation = 0) treats it: a camera sees only part of it, so its ground position is unknown.
    ignore_truncated: bool = True
    class_ranges_m: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_RANGES_M))
    velocity_range_m: float = 30.0
    velocity_min_tracked_frames: int = 5

    def __post_init__(self) -> None:
        if not self.match_distance_m > 0:
            raise ValueError(f"match_distance_m must be > 0, got {self.match_distance_m}")
        if self.min_visible_px < 0 or self.velocity_min_tracked_frames < 1 or not self.velocity_range_m > 0:
            raise ValueError("min_visible_px must be >= 0, velocity_min_tracked_frames >= 1, velocity_range_m > 0")

    def range_m(self, kind: str) -> float:
        return float(self.class_ranges_m.get(kind, max(self.class_ranges_m.values())))

    def to_dict(self) -> dict:
        return {"match_distance_m": self.match_distance_m, "min_visible_px": self.min_visible_px,
                "ignore_truncated": self.ignore_truncated,
                "class_ranges_m": dict(self.class_ranges_m), "velocity_range_m": self.velocity_range_m,
                "velocity_min_tracked_frames": self.velocity_min_tracked_frames,
                "similarity": f"max(0, 1 - d / {self.match_distance_m} m), bird's-eye centre distance d, same "
                              "KITTI type"}


@dataclass(frozen=True)
class BevObject:
    """A truth thing or a track at one frame, in the vehicle frame's bird's-eye view."""

    track_id: int
    kind: str  # KITTI type
    x_m: float
    y_m: float
    velocity_mps: Optional[Tuple[float, float]] = None  # over ground, vehicle axes
    visible_px: int = 0  # truth only
    truncated: bool = False  # truth only: the box projects partly outside the image (KITTI truncation > 0)

    @property
    def range_m(self) -> float:
        return math.hypot(self.x_m, self.y_m)


Frames = List[List[BevObject]]  # per frame index


# ---------------------------------------------------------------------------- reading
def find_truth_drives(root: str | Path) -> List[Path]:
    """Drive folders with gt/objects/ under root (root itself, a date folder or a `synth --out` root)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"synthetic data folder not found: {root}")
    drives = {p.parent.parent for pattern in ("gt/objects", "*/gt/objects", "*/*/gt/objects")
              for p in root.glob(pattern) if p.is_dir()}
    if not drives:
        raise InputError(f"no drive with gt/objects/ under {root} (expected DATE/DATE_drive_XXXX_sync/gt/objects/, "
                         f"as `synth` writes)")
    return sorted(drives)


def _truncated(converter: Optional[KittiBoxConverter], obj: Mapping) -> bool:
    if converter is None:
        return False
    box = VehicleBox(tuple(float(v) for v in obj["center_m"]), tuple(float(v) for v in obj["size_m"]),
                     float(obj["yaw_rad"]))
    label = converter.label(box, 0, 0, "Car")
    return label is None or label.truncated > 0


def read_truth(drive_dir: str | Path, converter: Optional[KittiBoxConverter] = None) -> Frames:
    """Every frame's truth things (gt/objects/%010d.json, frames 0..N-1 without gaps); with the drive's
    `converter`, each knows whether the camera's image cuts it (its box projects beyond the border)."""
    folder = Path(drive_dir) / "gt" / "objects"
    files = sorted(folder.glob("*.json"))
    if not files:
        raise InputError(f"no truth in {folder}")
    frames: Frames = []
    for index, path in enumerate(files):
        if path.name != f"{index:010d}.json":
            raise InputError(f"{folder}: expected {index:010d}.json next, found {path.name}")
        try:
            data = json.loads(path.read_text())
            things = [BevObject(int(o["track_id"]), kitti_type(str(o["category"])), float(o["center_m"][0]),
                                float(o["center_m"][1]), (float(o["velocity_mps"][0]), float(o["velocity_mps"][1])),
                                int(o["visible_px"]), _truncated(converter, o)) for o in data["objects"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputError(f"truth file {path} is unreadable or malformed: {exc!r}") from exc
        if data.get("frame_id", "vehicle") != "vehicle":
            raise InputError(f"truth file {path}: frame_id must be 'vehicle', got {data.get('frame_id')!r}")
        frames.append(things)
    return frames


def read_tracks(tracks_path: str | Path, calibration: KittiCalibration, num_frames: int,
                velocities: Optional[TrackVelocities] = None, camera: str = "02") -> Frames:
    """A KITTI tracking file's tracks per frame (0..num_frames-1), in the vehicle frame; DontCare lines
    are skipped. velocities, when given, must hold every track's velocity."""
    converter = KittiBoxConverter(calibration, camera)
    frames: Frames = [[] for _ in range(num_frames)]
    for label in read_tracking_file(tracks_path):
        if label.type == DONT_CARE:
            continue
        if label.frame >= num_frames:
            raise InputError(f"{tracks_path}: frame {label.frame} is past the drive's {num_frames} frames")
        velocity = None
        if velocities is not None:
            velocity = velocities.velocities_mps.get((label.frame, label.track_id))
            if velocity is None:
                raise InputError(f"{tracks_path}: track {label.track_id} in frame {label.frame} has no velocity in "
                                 f"its velocity file")
        box = converter.box(label)
        frames[label.frame].append(BevObject(label.track_id, label.type, box.center_m[0], box.center_m[1], velocity))
    return frames


# ---------------------------------------------------------------------------- matching
def similarity(truth: Sequence[BevObject], tracks: Sequence[BevObject], match_distance_m: float) -> np.ndarray:
    """(n_truth, n_tracks) max(0, 1 - d / match_distance_m), zero between different KITTI types."""
    if not truth or not tracks:
        return np.zeros((len(truth), len(tracks)))
    a = np.array([(o.x_m, o.y_m) for o in truth])
    b = np.array([(o.x_m, o.y_m) for o in tracks])
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    same = np.array([o.kind for o in truth], dtype=object)[:, None] == np.array([o.kind for o in tracks], dtype=object)
    return np.where(same, np.maximum(0.0, 1.0 - d / match_distance_m), 0.0)


def _best_pairs(score: np.ndarray, valid: np.ndarray) -> List[Tuple[int, int]]:
    if score.size == 0:
        return []
    rows, cols = linear_sum_assignment(-np.where(valid, score, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]


def select(truth: Sequence[BevObject], tracks: Sequence[BevObject],
           config: TrackingEvalConfig) -> Tuple[List[BevObject], List[BevObject]]:
    """One frame's truth that counts and the tracks that are scored (see the module's notes)."""
    counts = [o.visible_px >= config.min_visible_px and o.range_m <= config.range_m(o.kind)
              and not (config.ignore_truncated and o.truncated) for o in truth]
    sim = similarity(truth, tracks, config.match_distance_m)
    matched_to = {c: r for r, c in _best_pairs(sim, sim >= MATCH_THRESHOLD)}
    kept_tracks = [t for c, t in enumerate(tracks)
                   if (counts[matched_to[c]] if c in matched_to else t.range_m <= config.range_m(t.kind))]
    return [o for o, keep in zip(truth, counts) if keep], kept_tracks


def _trackeval_metrics():
    """HOTA, CLEAR and Identity instances (TrackEval prints on import and construction: kept quiet)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from trackeval.metrics import CLEAR, HOTA, Identity

        return {"HOTA": HOTA(), "CLEAR": CLEAR({"THRESHOLD": MATCH_THRESHOLD, "PRINT_CONFIG": False}),
                "Identity": Identity({"THRESHOLD": MATCH_THRESHOLD, "PRINT_CONFIG": False})}


def trackeval_data(truth: Frames, tracks: Frames, match_distance_m: float = MATCH_DISTANCE_M) -> dict:
    """TrackEval's per-sequence data dict (ids 0-based and contiguous) for frames of truth and tracks."""
    if len(truth) != len(tracks):
        raise ValueError(f"{len(truth)} truth frames but {len(tracks)} track frames")
    gt_index: Dict[int, int] = {}
    tr_index: Dict[int, int] = {}
    data = {"num_timesteps": len(truth), "gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for gt_t, tr_t in zip(truth, tracks):
        data["gt_ids"].append(np.array([gt_index.setdefault(o.track_id, len(gt_index)) for o in gt_t], dtype=int))
        data["tracker_ids"].append(np.array([tr_index.setdefault(o.track_id, len(tr_index)) for o in tr_t], dtype=int))
        data["similarity_scores"].append(similarity(gt_t, tr_t, match_distance_m))
    data.update(num_gt_ids=len(gt_index), num_tracker_ids=len(tr_index),
                num_gt_dets=sum(len(f) for f in truth), num_tracker_dets=sum(len(f) for f in tracks))
    return data


def velocity_errors(truth: Frames, tracks: Frames, config: TrackingEvalConfig) -> List[float]:
    """|v_track - v_truth| (m/s) for truth within velocity_range_m matched by the same track for at least
    velocity_min_tracked_frames frames in a row. A frame's matches keep last frame's pairs where they
    can (as CLEAR does), then take the closest."""
    errors: List[float] = []
    streak: Dict[Tuple[int, int], int] = {}
    for gt_t, tr_t in zip(truth, tracks):
        sim = similarity(gt_t, tr_t, config.match_distance_m)
        keep = np.array([[streak.get((g.track_id, t.track_id), 0) > 0 for t in tr_t] for g in gt_t],
                        dtype=bool).reshape(sim.shape)
        pairs = _best_pairs(sim + 1000.0 * keep, sim >= MATCH_THRESHOLD)
        streak = {(gt_t[r].track_id, tr_t[c].track_id): streak.get((gt_t[r].track_id, tr_t[c].track_id), 0) + 1
                  for r, c in pairs}
        for r, c in pairs:
            g, t = gt_t[r], tr_t[c]
            if (streak[(g.track_id, t.track_id)] >= config.velocity_min_tracked_frames
                    and g.range_m <= config.velocity_range_m and t.velocity_mps is not None
                    and g.velocity_mps is not None):
                errors.append(math.hypot(t.velocity_mps[0] - g.velocity_mps[0], t.velocity_mps[1] - g.velocity_mps[1]))
    return errors


# ---------------------------------------------------------------------------- scoring
@dataclass
class DriveTracks:
    """One drive's truth and tracks, frame by frame."""

    name: str
    truth: Frames
    tracks: Frames
    velocity_over_ground: Optional[bool] = None  # None: no velocity file


def _summary(hota: dict, clear: dict, identity: dict, velocity: List[float], velocity_note: Optional[str]) -> dict:
    tp = int(clear["CLR_TP"])
    out = {
        # TrackEval's summaries: HOTA, DetA and AssA averaged over its localisation thresholds
        "HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "MOTA": float(clear["MOTA"]), "MOTP": float(clear["MOTP"]), "IDF1": float(identity["IDF1"]),
        "IDSW": int(clear["IDSW"]), "TP": tp, "FN": int(clear["CLR_FN"]), "FP": int(clear["CLR_FP"]),
        "MT": int(clear["MT"]), "ML": int(clear["ML"]), "Frag": int(clear["Frag"]),
        "idsw_per_100_track_frames": 100.0 * int(clear["IDSW"]) / tp if tp else None,
        "velocity": {"samples": len(velocity), "median_error_mps": float(np.median(velocity)) if velocity else None,
                     "mean_error_mps": float(np.mean(velocity)) if velocity else None},
    }
    if velocity_note:
        out["velocity"]["note"] = velocity_note
    return out


def evaluate(drives: Sequence[DriveTracks], config: Optional[TrackingEvalConfig] = None) -> dict:
    """Scores per drive, per KITTI type and over everything (TrackEval's sequence and det-averaged class
    combinations) as a plain dict; see the module's notes for what counts."""
    config = config or TrackingEvalConfig()
    metrics = _trackeval_metrics()
    per_class: Dict[str, Dict[str, dict]] = {}  # kind -> drive -> metric name -> result
    velocity: Dict[str, Dict[str, List[float]]] = {}  # kind -> drive -> errors
    notes: Dict[str, str] = {}
    for drive in drives:
        if len(drive.truth) != len(drive.tracks):
            raise ValueError(f"drive {drive.name}: {len(drive.truth)} truth frames, {len(drive.tracks)} track frames")
        selected = [select(g, t, config) for g, t in zip(drive.truth, drive.tracks)]
        if drive.velocity_over_ground is None:
            notes[drive.name] = "no velocity file"
        elif not drive.velocity_over_ground:
            notes[drive.name] = "velocities relative to the ego (no ego poses): not scored"
        kinds = sorted({o.kind for g, t in selected for o in (*g, *t)})
        for kind in kinds:
            truth = [[o for o in g if o.kind == kind] for g, _ in selected]
            tracks = [[o for o in t if o.kind == kind] for _, t in selected]
            data = trackeval_data(truth, tracks, config.match_distance_m)
            with contextlib.redirect_stdout(io.StringIO()):
                per_class.setdefault(kind, {})[drive.name] = {n: m.eval_sequence(data) for n, m in metrics.items()}
            velocity.setdefault(kind, {})[drive.name] = (
                velocity_errors(truth, tracks, config) if drive.velocity_over_ground else [])

    def combined(results: Mapping[str, Mapping[str, dict]], how: str) -> Dict[str, dict]:
        with contextlib.redirect_stdout(io.StringIO()):
            if how == "sequences":
                return {n: m.combine_sequences({k: r[n] for k, r in results.items()}) for n, m in metrics.items()}
            return {n: m.combine_classes_det_averaged({k: r[n] for k, r in results.items()})
                    for n, m in metrics.items()}

    def summary(results: Dict[str, dict], errors: List[float], names: Sequence[str]) -> dict:
        missing = [notes[n] + f" ({n})" for n in names if n in notes]
        return _summary(results["HOTA"], results["CLEAR"], results["Identity"], errors,
                        "; ".join(missing) if missing else None)

    names = [d.name for d in drives]
    report: dict = {"settings": config.to_dict(), "drives": {}, "classes": {}, "all": None}
    class_totals = {}
    for kind, by_drive in sorted(per_class.items()):
        class_totals[kind] = combined(by_drive, "sequences")
        errors = [e for errs in velocity[kind].values() for e in errs]
        report["classes"][kind] = summary(class_totals[kind], errors, list(by_drive))
    for name in names:
        by_kind = {kind: per_class[kind][name] for kind in per_class if name in per_class[kind]}
        errors = [e for kind in velocity for e in velocity[kind].get(name, [])]
        frames = len(next(d for d in drives if d.name == name).truth)
        if by_kind:
            report["drives"][name] = {"frames": frames, **summary(combined(by_kind, "classes"), errors, [name])}
        else:
            report["drives"][name] = {"frames": frames, "note": "no truth or tracks to score"}
    if class_totals:
        errors = [e for kind in velocity for errs in velocity[kind].values() for e in errs]
        report["all"] = summary(combined(class_totals, "classes"), errors, names)
    return report


# ---------------------------------------------------------------------------- folders
def load_drive(drive_dir: Path, tracks_dir: Path, camera: str = "02") -> DriveTracks:
    """A synthetic drive's truth and the tracks `tracks_dir/<drive>.txt` (+ `.velocity.json`) written for it."""
    tracks_path = tracks_dir / f"{drive_dir.name}.txt"
    calibration = KittiCalibration.read(drive_dir.parent)
    truth = read_truth(drive_dir, KittiBoxConverter(calibration, camera))
    velocities = None
    side = velocity_file_path(tracks_path)
    if side.is_file():
        velocities = read_velocity_file(side)
        if velocities.num_frames > len(truth):
            raise InputError(f"{side}: {velocities.num_frames} frames tracked but the drive has {len(truth)}")
        truth = truth[: velocities.num_frames]  # a run over the first frames is scored on those
    tracks = read_tracks(tracks_path, calibration, len(truth), velocities, camera)
    return DriveTracks(drive_dir.name, truth, tracks, None if velocities is None else velocities.over_ground)


def evaluate_folder(tracks_dir: str | Path, data_root: str | Path, config: Optional[TrackingEvalConfig] = None,
                    log=print) -> dict:
    """Every drive under data_root that has `<drive>.txt` in tracks_dir; drives without one are named
    in the report's `not_scored` and logged."""
    tracks_dir = Path(tracks_dir)
    if not tracks_dir.is_dir():
        raise InputError(f"tracks folder not found: {tracks_dir}")
    drives, skipped = [], []
    for drive_dir in find_truth_drives(data_root):
        if (tracks_dir / f"{drive_dir.name}.txt").is_file():
            drives.append(load_drive(drive_dir, tracks_dir))
        else:
            skipped.append(drive_dir.name)
            log(f"no tracks for drive {drive_dir.name} in {tracks_dir}: not scored")
    if not drives:
        raise InputError(f"none of the drives under {data_root} has a tracks file <drive>.txt in {tracks_dir}")
    report = evaluate(drives, config)
    report["not_scored"] = skipped
    return report


def format_report(report: dict) -> str:
    """A text table: each drive, each KITTI type, and all."""
    header = (f"{'':<32}{'HOTA':>7}{'DetA':>7}{'AssA':>7}{'MOTA':>8}{'IDF1':>7}{'IDSW':>6}{'/100':>7}"
              f"{'TP':>7}{'FN':>6}{'FP':>6}{'vel med':>9}{'n':>6}")
    lines = [header, "-" * len(header)]

    def row(name: str, r: Optional[dict]) -> str:
        if r is None or "HOTA" not in r:
            return f"{name:<32}  {(r or {}).get('note', 'nothing to score')}"
        rate = "-" if r["idsw_per_100_track_frames"] is None else f"{r['idsw_per_100_track_frames']:.2f}"
        vel = r["velocity"]
        med = "-" if vel["median_error_mps"] is None else f"{vel['median_error_mps']:.2f}"
        return (f"{name:<32}{100 * r['HOTA']:>7.1f}{100 * r['DetA']:>7.1f}{100 * r['AssA']:>7.1f}"
                f"{100 * r['MOTA']:>8.1f}{100 * r['IDF1']:>7.1f}{r['IDSW']:>6d}{rate:>7}{r['TP']:>7d}{r['FN']:>6d}"
                f"{r['FP']:>6d}{med:>9}{vel['samples']:>6d}")

    for name, r in report["drives"].items():
        lines.append(row(name, r))
    lines.append("")
    for kind, r in report["classes"].items():
        lines.append(row(kind, r))
    lines.append(row("all", report["all"]))
    lines.append("")
    lines.append("HOTA DetA AssA MOTA IDF1 in %; /100: ID switches per 100 track-frames; vel med: median velocity "
                 "error (m/s) over n samples")
    return "\n".join(lines)
