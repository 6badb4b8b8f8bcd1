#!/usr/bin/env python3
"""Parity of imported detectron2 weights with detectron2 itself: image in -> panoptic out.

A developer reference, not part of the package: it needs a real detectron2 build, which the
package never depends on. It only imports and calls detectron2; nothing of it is copied here.

What it does
  1. Builds detectron2's COCO Panoptic FPN R-50 (configs/COCO-PanopticSegmentation/
     panoptic_fpn_R_50_1x.yaml, MODEL.DEVICE cpu) with a seeded random init, then rescales a few
     predictor layers so that random weights give a realistic mix on a street frame (see
     `make_realistic`), and saves the weights in model-zoo format (.pkl: {"model": {name: ndarray},
     "__author__": ...}).
  2. Imports that .pkl with our `import_detectron2` (what `import-weights --from detectron2` runs)
     into our checkpoint, with config/model_detectron2_r50.yaml.
  3. Runs a KITTI-size frame (1242x375; the synthetic world's image_02 unless --image is given)
     through detectron2's DefaultPredictor and through our `Pipeline.process` (torch, and the
     onnxruntime backend), and compares: the category of every pixel (thing / stuff class, void
     equal to void), segment matching (every detectron2 segment matched by one of ours of the same
     category with IoU > 0.5), score differences of matched thing segments, and the intermediate
     stages (FPN features, RPN proposals, box-head detections) to find causes.

Building the reference (CPU, once; outside every repository)
  detectron2's C++ ops need torchvision's; the registry's default (CUDA) torch wheel runs on CPU,
  while the CPU-only torch wheel does not load torchvision's ops. Tested with torch 2.14.1 +
  torchvision 0.29.1, Python 3.11:

    D2REF=$HOME/d2ref   # any folder outside the repository
    mkdir -p $D2REF && cd $D2REF
    python3 -m venv venv && . venv/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1
    pip install wheel ninja fvcore iopath yacs hydra-core omegaconf pycocotools termcolor tabulate \\
        cloudpickle tqdm matplotlib packaging black onnx onnxruntime==1.32.0 onnxscript==0.7.2 \\
        pillow==13.0.0 pyyaml opencv-python-headless pytest pytest-timeout
    git clone https://github.com/facebookresearch/detectron2 detectron2 && cd detectron2
    FORCE_CUDA=0 MAX_JOBS=1 python setup.py build_ext --inplace

Running it (from the repository root, in that venv; our package from src/):

    PYTHONPATH=src:$D2REF/detectron2 OMP_NUM_THREADS=1 \\
        $D2REF/venv/bin/python tools/detectron2_parity.py --json /tmp/parity.json
    PYTHONPATH=src:test/support:$D2REF/detectron2 OMP_NUM_THREADS=1 \\
        $D2REF/venv/bin/python -m pytest test/model/test_detectron2_parity.py -s

Without --image it synthesises the frame (`synth --frames 2 --drives 1 --seed 4242`, image_02 of
frame 0) into --workdir.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

D2_CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
SEED = 2024
SYNTH_SEED = 4242
VOID = 255
MATCH_IOU = 0.5
# detectron2's COCO panoptic metadata: thing classes are contiguous 0..79, the semantic head's
# stuff labels 1..53 (0 = all things). Our coco_panoptic label space: things 0..79, stuff 80..132.
NUM_THINGS = 80

# `make_realistic`: a random R-50 without trained BatchNorm statistics has FPN features in the
# thousands, so every random predictor on top of it is either saturated (objectness ~1e3, box
# deltas that blow every anchor up to the whole image) or dominated by one common mode (every box
# the same class); its mask logits sit near 0, on the 0.5 threshold itself. Each predictor layer
# y = Wx + b is therefore recalibrated on the frame itself: y' = a (y - mean(y)) + offset, the
# mean per output channel over the layer's outputs on this frame, a = target std / std(y).
# Layers are calibrated in the order data flows (RPN, then the box head on the new proposals,
# then the mask head on the new detections), one detectron2 forward pass each. What follows is a
# normal detector on random features: decisive proposal ranking, varied classes with scores from
# ~0.05 to 1, structured masks, and a few stuff classes (biased up) that win large regions.
CALIBRATION = {  # layer: (target std, offset added after centring)
    "proposal_generator.rpn_head.objectness_logits": (3.0, 0.0),
    "proposal_generator.rpn_head.anchor_deltas": (0.15, 0.0),
    "roi_heads.box_predictor.cls_score": (2.5, 0.0),
    "roi_heads.box_predictor.bbox_pred": (0.5, 0.0),
    "roi_heads.mask_head.predictor": (3.0, 1.0),
}
CALIBRATION_ORDER = (
    ("proposal_generator.rpn_head.objectness_logits", "proposal_generator.rpn_head.anchor_deltas"),
    ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
    ("roi_heads.mask_head.predictor",),
)
BACKGROUND_BIAS = 1.0  # on top of the calibration: most proposals are background
STUFF_BIAS = {1: 1.5, 5: 1.5, 20: 1.5, 40: 1.5}  # detectron2 semantic labels (stuff 1..53) -> logit bias


# ------------------------------------------------------------------------------------------ detectron2


def detectron2_cfg():
    """detectron2's COCO Panoptic FPN R-50 config on CPU (weights set later)."""
    import detectron2
    from detectron2.config import get_cfg

    # The source tree's configs/ (an in-place build): model_zoo.get_config_file needs
    # pkg_resources, which current setuptools no longer ships.
    path = Path(detectron2.__file__).resolve().parents[1] / "configs" / D2_CONFIG
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


def _recalibrate(layer: torch.nn.Module, outputs: List[torch.Tensor], target_std: float, offset: float) -> None:
    """y' = a (y - mean_c(y)) + offset for a Linear ([N, C] outputs) or a 1x1 Conv2d ([N, C, H, W]),
    from every output it gave (one per FPN level for the RPN head)."""
    channels = torch.cat([o.transpose(0, 1).reshape(o.shape[1], -1) for o in outputs], dim=1).double()
    mean = channels.mean(dim=1)
    scale = target_std / max(float((channels - mean[:, None]).std()), 1e-12)
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.bias.copy_((scale * (layer.bias.double() - mean) + offset).to(layer.bias.dtype))


def make_realistic(predictor, bgr: np.ndarray) -> None:
    """Recalibrate the random model of `predictor` (a DefaultPredictor) on the frame, in place."""
    model = predictor.model
    modules = dict(model.named_modules())
    for group in CALIBRATION_ORDER:
        seen: Dict[str, List[torch.Tensor]] = {name: [] for name in group}
        hooks = [modules[name].register_forward_hook(lambda m, i, o, out=seen[name]: out.append(o))
                 for name in group]
        try:
            with torch.no_grad():
                predictor(bgr)
        finally:
            for hook in hooks:
                hook.remove()
        for name in group:
            _recalibrate(modules[name], seen[name], *CALIBRATION[name])
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[-1] += BACKGROUND_BIAS  # background is the last class
        for label, bias in STUFF_BIAS.items():
            model.sem_seg_head.predictor.bias[label] += bias


def write_weights(path: Path, rgb: np.ndarray, seed: int = SEED) -> Path:
    """The seeded random detectron2 model, calibrated on the frame, in model-zoo .pkl format."""
    from detectron2.engine import DefaultPredictor

    torch.manual_seed(seed)
    predictor = DefaultPredictor(detectron2_cfg())  # no MODEL.WEIGHTS: the seeded random init
    make_realistic(predictor, np.ascontiguousarray(rgb[:, :, ::-1]))
    arrays = {k: v.detach().cpu().numpy() for k, v in predictor.model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({"model": arrays, "__author__": f"tools/detectron2_parity.py seed {seed}"}, handle)
    return path


@dataclass
class Panoptic:
    """One side's answer at image size: category per pixel (VOID where none) and its segments."""

    category_map: np.ndarray  # int64 [H, W]
    segment_map: np.ndarray  # int64 [H, W], 0 = void
    segments: List[Dict[str, Any]]  # id, category_id (our label space), is_thing, score (things)
    stages: Dict[str, Any]
    seconds: float


def run_detectron2(pkl: Path, rgb: np.ndarray) -> Panoptic:
    """DefaultPredictor on an RGB frame; category ids mapped to our coco_panoptic label space."""
    from detectron2.engine import DefaultPredictor

    cfg = detectron2_cfg()
    cfg.MODEL.WEIGHTS = str(pkl)
    predictor = DefaultPredictor(cfg)
    stages: Dict[str, Any] = {}
    model = predictor.model

    def keep_proposals(module, inputs, output) -> None:
        stages["proposal_boxes"] = output[0][0].proposal_boxes.tensor.clone()
        stages["proposal_logits"] = output[0][0].objectness_logits.clone()

    def keep_detections(module, inputs, output) -> None:
        # cloned: detector_postprocess rescales these boxes in place to the image size
        det = output[0][0]
        stages.update(det_boxes=det.pred_boxes.tensor.clone(), det_scores=det.scores.clone(),
                      det_classes=det.pred_classes.clone(), input_hw=tuple(int(v) for v in det.image_size))

    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: stages.__setitem__("features", o)),
        model.proposal_generator.register_forward_hook(keep_proposals),
        model.roi_heads.register_forward_hook(keep_detections),
    ]
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = predictor(np.ascontiguousarray(rgb[:, :, ::-1]))  # DefaultPredictor takes BGR
    finally:
        for hook in hooks:
            hook.remove()
    seconds = time.perf_counter() - start
    seg, infos = out["panoptic_seg"]
    seg = seg.numpy().astype(np.int64)
    category = np.full(seg.shape, VOID, dtype=np.int64)
    segments = []
    for info in infos:
        cat = int(info["category_id"]) if info["isthing"] else NUM_THINGS - 1 + int(info["category_id"])
        category[seg == info["id"]] = cat
        segments.append({"id": int(info["id"]), "category_id": cat, "is_thing": bool(info["isthing"]),
                         "score": float(info["score"]) if info["isthing"] else None})
    return Panoptic(category, seg, segments, stages, seconds)


# ------------------------------------------------------------------------------------------------ ours


def import_weights(pkl: Path, out: Path) -> Path:
    """Our checkpoint from the .pkl, as `import-weights --from detectron2 PKL --out OUT` writes it."""
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.model.detectron2_import import import_detectron2
    from panoptic_perception.paths import CONFIG_DIR

    config = load_model_config(CONFIG_DIR / "model_detectron2_r50.yaml")
    return import_detectron2(pkl, out, config).out_path


def run_ours(checkpoint: Path, rgb: np.ndarray, backend: str, workdir: Path) -> Panoptic:
    """Pipeline.process on the frame with `backend`; the raw network outputs kept as stages."""
    from panoptic_perception.pipeline import Pipeline, PipelineConfig
    from panoptic_perception.runtime.config import RuntimeConfig

    runtime = RuntimeConfig(backend=backend, device="cpu", warmup_frames=0, num_threads=torch.get_num_threads(),
                            engine_cache_dir=str(workdir))
    pipeline = Pipeline(PipelineConfig(model_path=str(checkpoint), runtime=runtime, project_grid=False))
    raw: Dict[str, Any] = {}
    infer = pipeline.backend.infer

    def recording_infer(*args, **kwargs):
        raw.update(infer(*args, **kwargs))
        return raw

    pipeline.backend.infer = recording_infer
    hooks = []
    model = getattr(pipeline.backend, "model", None)  # torch backend: the module's stages too
    if model is not None:
        hooks = [
            model.backbone.register_forward_hook(lambda m, i, o: raw.__setitem__("_features", o)),
            model.proposal_generator.register_forward_hook(lambda m, i, o: raw.__setitem__("_proposals", o[0])),
        ]
    start = time.perf_counter()
    try:
        result = pipeline.process(rgb)
    finally:
        for hook in hooks:
            hook.remove()
    seconds = time.perf_counter() - start
    segments = [{"id": s.id, "category_id": s.category_id, "is_thing": s.is_thing,
                 "score": s.score if s.is_thing else None} for s in result.segments]
    category = result.category_map.astype(np.int64)
    category[category == pipeline.label_space.ignore_id] = VOID
    valid = raw["valid"].bool()
    stages: Dict[str, Any] = {
        "det_boxes": raw["boxes"][valid], "det_scores": raw["scores"][valid], "det_classes": raw["classes"][valid],
        "input_hw": pipeline.valid_size(*rgb.shape[:2]), "timings_ms": result.timings_ms,
    }
    if "_features" in raw:
        stages["features"] = raw["_features"]
        boxes, logits, pvalid = raw["_proposals"]
        stages["proposal_boxes"] = boxes[0][pvalid[0]]
        stages["proposal_logits"] = logits[0][pvalid[0]]
    return Panoptic(category, result.segment_map.astype(np.int64), segments, stages, seconds)


# ------------------------------------------------------------------------------------------- comparing


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from panoptic_perception.model.box_ops import box_iou

    return box_iou(a.double(), b.double())


def compare_features(ref: Dict[str, torch.Tensor], ours: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """Per FPN level, max |ours - ref| / max |ref| over the region both maps cover."""
    out = {}
    for level, a in ref.items():
        b = ours.get(level)
        if b is None:
            continue
        h, w = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])
        diff = (a[..., :h, :w] - b[..., :h, :w]).abs().max().item()
        out[level] = {"rel_err": diff / max(a[..., :h, :w].abs().max().item(), 1e-12),
                      "ref_hw": list(a.shape[-2:]), "ours_hw": list(b.shape[-2:])}
    return out


def compare_boxes(ref_boxes: torch.Tensor, ours_boxes: torch.Tensor, tol_px: float = 1e-2) -> Dict[str, Any]:
    """How many reference boxes have a box of ours within tol_px on every coordinate."""
    if ref_boxes.numel() == 0 or ours_boxes.numel() == 0:
        return {"ref": int(ref_boxes.shape[0]), "ours": int(ours_boxes.shape[0]), "identical": 0}
    dist = (ref_boxes[:, None, :].double() - ours_boxes[None, :, :].double()).abs().amax(-1)
    return {"ref": int(ref_boxes.shape[0]), "ours": int(ours_boxes.shape[0]),
            "identical": int((dist.amin(1) <= tol_px).sum())}


def compare_detections(ref: Dict[str, Any], ours: Dict[str, Any]) -> Dict[str, Any]:
    """Box-head detections on the network input: same class and IoU > 0.9, score differences."""
    rb, rs, rc = ref["det_boxes"], ref["det_scores"], ref["det_classes"]
    ob, os_, oc = ours["det_boxes"], ours["det_scores"], ours["det_classes"]
    matched, diffs = 0, []
    if rb.numel() and ob.numel():
        iou = _box_iou(rb, ob) * (rc[:, None] == oc[None, :]).double()
        best, index = iou.max(dim=1)
        for i in range(rb.shape[0]):
            if best[i] > 0.9:
                matched += 1
                diffs.append(abs(float(rs[i]) - float(os_[index[i]])))
    return {"ref": int(rb.shape[0]), "ours": int(ob.shape[0]), "matched": matched,
            "max_score_diff": max(diffs) if diffs else None}


def compare_panoptic(ref: Panoptic, ours: Panoptic) -> Dict[str, Any]:
    """Pixel category agreement and segment matching (same category, IoU > MATCH_IOU)."""
    if ref.category_map.shape != ours.category_map.shape:
        raise ValueError(f"maps differ in size: {ref.category_map.shape} vs {ours.category_map.shape}")
    agree = float(np.mean(ref.category_map == ours.category_map))
    unmatched, score_diffs = [], []
    ours_masks = {s["id"]: (ours.segment_map == s["id"], s) for s in ours.segments}
    for seg in ref.segments:
        mask = ref.segment_map == seg["id"]
        best, best_seg = 0.0, None
        for other_mask, other in ours_masks.values():
            if other["category_id"] != seg["category_id"]:
                continue
            inter = np.logical_and(mask, other_mask).sum()
            if inter == 0:
                continue
            iou = inter / np.logical_or(mask, other_mask).sum()
            if iou > best:
                best, best_seg = float(iou), other
        if best <= MATCH_IOU:
            unmatched.append({"id": seg["id"], "category_id": seg["category_id"], "best_iou": best,
                              "area": int(mask.sum())})
        elif seg["is_thing"]:
            score_diffs.append(abs(seg["score"] - best_seg["score"]))
    return {
        "pixel_agreement": agree,
        "segments_ref": len(ref.segments),
        "segments_ours": len(ours.segments),
        "things_ref": sum(s["is_thing"] for s in ref.segments),
        "stuff_ref": sum(not s["is_thing"] for s in ref.segments),
        "matched": len(ref.segments) - len(unmatched),
        "unmatched": unmatched,
        "max_score_diff": max(score_diffs) if score_diffs else 0.0,
    }


def compare(ref: Panoptic, ours: Panoptic) -> Dict[str, Any]:
    report = {"panoptic": compare_panoptic(ref, ours), "detections": compare_detections(ref.stages, ours.stages),
              "input_hw": {"ref": list(ref.stages["input_hw"]), "ours": list(ours.stages["input_hw"])},
              "seconds": {"ref": ref.seconds, "ours": ours.seconds}}
    if "features" in ours.stages:
        report["features"] = compare_features(ref.stages["features"], ours.stages["features"])
        report["proposals"] = compare_boxes(ref.stages["proposal_boxes"], ours.stages["proposal_boxes"])
    if "timings_ms" in ours.stages:
        report["timings_ms"] = ours.stages["timings_ms"]
    return report


# ------------------------------------------------------------------------------------------------ main


def synth_frame(workdir: Path) -> Path:
    """image_02 of frame 0 of the synthetic world (seed SYNTH_SEED), made once into workdir."""
    from panoptic_perception.cli import main as cli

    out = workdir / "synth"
    frames = sorted(out.glob("*/*/image_02/data/*.png"))
    if not frames:
        if cli(["synth", "--out", str(out), "--frames", "2", "--drives", "1", "--seed", str(SYNTH_SEED)]) != 0:
            raise RuntimeError("synth failed")
        frames = sorted(out.glob("*/*/image_02/data/*.png"))
    return frames[0]


def run_parity(workdir: Path, image: Optional[Path] = None, backends: Sequence[str] = ("torch", "onnxruntime"),
               seed: int = SEED) -> Dict[str, Any]:
    """The whole check: weights -> import -> both models on the frame -> one report per backend."""
    from PIL import Image

    workdir.mkdir(parents=True, exist_ok=True)
    image = image or synth_frame(workdir)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    pkl = write_weights(workdir / f"panoptic_fpn_r50_random_{seed}.pkl", rgb, seed)
    checkpoint = import_weights(pkl, workdir / f"panoptic_fpn_r50_random_{seed}.pt")
    ref = run_detectron2(pkl, rgb)
    report: Dict[str, Any] = {"image": str(image), "image_hw": list(rgb.shape[:2]), "seed": seed, "backends": {}}
    for backend in backends:
        report["backends"][backend] = compare(ref, run_ours(checkpoint, rgb, backend, workdir))
    return report


def format_report(report: Dict[str, Any]) -> str:
    lines = [f"image {report['image']} ({report['image_hw'][1]}x{report['image_hw'][0]}), weights seed "
             f"{report['seed']}"]
    header = f"{'backend':<12} {'pixels':>9} {'segments':>10} {'things':>7} {'stuff':>6} {'max dscore':>11} " \
             f"{'dets':>9} {'det dscore':>11} {'proposals':>10} {'FPN rel':>9}"
    lines += [header, "-" * len(header)]
    for name, r in report["backends"].items():
        p, d = r["panoptic"], r["detections"]
        props = r.get("proposals")
        props_text = f"{props['identical']}/{props['ref']}" if props else "-"
        fpn = max((v["rel_err"] for v in r.get("features", {}).values()), default=None)
        fpn_text = f"{fpn:.1e}" if fpn is not None else "-"
        lines.append(
            f"{name:<12} {p['pixel_agreement']:>8.3%} {p['matched']:>4}/{p['segments_ref']:<5} {p['things_ref']:>7} "
            f"{p['stuff_ref']:>6} {p['max_score_diff']:>11.2e} {d['matched']:>4}/{d['ref']:<4} "
            f"{(d['max_score_diff'] if d['max_score_diff'] is not None else float('nan')):>11.2e} "
            f"{props_text:>10} {fpn_text:>9}")
    for name, r in report["backends"].items():
        for seg in r["panoptic"]["unmatched"]:
            lines.append(f"  {name}: unmatched detectron2 segment {seg}")
        lines.append(f"  {name}: network input ours {r['input_hw']['ours']} vs detectron2 {r['input_hw']['ref']}; "
                     f"seconds ours {r['seconds']['ours']:.1f} vs detectron2 {r['seconds']['ref']:.1f}; "
                     f"timings {({k: round(v, 1) for k, v in r.get('timings_ms', {}).items()})}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=None, help="RGB frame (default: a synthetic KITTI frame)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/detectron2_parity"),
                        help="weights, checkpoint, ONNX cache and the synthetic frame go here")
    parser.add_argument("--backends", default="torch,onnxruntime", help="comma-separated: torch,onnxruntime")
    parser.add_argument("--seed", type=int, default=SEED, help="random init seed of the detectron2 model")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = run_parity(args.workdir, args.image, [b for b in args.backends.split(",") if b], args.seed)
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
