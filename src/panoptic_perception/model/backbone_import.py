"""ImageNet classifier weights -> our bottom-up backbones (the start of every serious training run).

Two families of files are read, both without executing code:
- torchvision's classifier state dicts (`mobilenet_v2`, `resnet18`, `resnet50`; .pth read with
  `torch.load(weights_only=True)`, bare or under "state_dict" / "model"). Input: RGB, ImageNet
  mean / std in 0..255 units. torchvision's ResNet-50 strides in the 3x3 conv.
- detectron2's MSRA ImageNet ResNet-50 (`ImageNetPretrained/MSRA/R-50.pkl`, Caffe2 names such as
  `res2_0_branch2a_w` / `_bn_s` / `_bn_b`, possibly under "blobs", with `_momentum` copies), read
  through `safe_pickle`. Input: BGR, the pixel mean, std 1; the stride sits in the 1x1 conv and
  every norm is an affine scale and shift (a FrozenBatchNorm with zero mean and unit variance).

The mapping is strict: every tensor of our backbone is filled, only the classifier (and
MobileNetV2's 1280-channel last conv, which our backbone does not have) is dropped, and any
leftover, unfilled or mis-shaped tensor fails the import with one error listing them all.

`import-weights --from torchvision` writes the result as a small backbone file (BACKBONE_FORMAT);
training's `backbone_init` reads that file, a torchvision .pth, an MSRA .pkl, or a URL of either.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from panoptic_perception.errors import ConfigError, ModelFileError
from panoptic_perception.model.backbone import _MOBILENETV2_STAGES, STAGE_NAMES, build_backbone
from panoptic_perception.model.checkpoint import atomic_torch_save, read_foreign_weights_file
from panoptic_perception.model.config import BACKBONE_NAMES, BackboneConfig, ModelConfig
from panoptic_perception.model.layers import BN_EPS
from panoptic_perception.model.weights_file import (
    download,
    is_url,
    listing,
    named_numeric_arrays,
    sha256_of,
    url_file_name,
)

BACKBONE_FORMAT = "panoptic_perception.backbone"
BACKBONE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class InputNormalisation:
    """How the weights expect their input: channel order and per-channel mean / std in 0..255 units."""
    input_format: str
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]


TORCHVISION_INPUT = InputNormalisation("RGB", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
MSRA_INPUT = InputNormalisation("BGR", (103.530, 116.280, 123.675), (1.0, 1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class BackboneWeights:
    """One backbone's weights under our names (`stem.conv1.weight`, `res2.0.conv1.norm.bias`, ...)."""
    backbone: str
    state_dict: Dict[str, torch.Tensor]
    normalisation: InputNormalisation
    stride_in_1x1: bool  # ResNet-50 only: where the layout puts the stride
    meta: Dict[str, Any]

    def config_for(self, config: ModelConfig) -> ModelConfig:
        """`config` set up to start from these weights: same backbone, their input normalisation,
        their stride placement, and frozen BatchNorm statistics (detectron2's FrozenBN)."""
        if config.backbone.name != self.backbone:
            raise ConfigError(f"backbone_init holds {self.backbone} weights but the model config's backbone "
                              f"is {config.backbone.name}")
        backbone = dataclasses.replace(config.backbone, norm="FrozenBN", stride_in_1x1=self.stride_in_1x1)
        n = self.normalisation
        return dataclasses.replace(config, backbone=backbone, input_format=n.input_format,
                                   pixel_mean=n.pixel_mean, pixel_std=n.pixel_std)


# --------------------------------------------------------------------------- name mappings


def _mobilenetv2_module_map() -> Dict[str, str]:
    """torchvision `mobilenet_v2` module prefix -> ours, for every conv and norm."""
    mapping = {"features.0.0": "stem.conv1", "features.0.1": "stem.conv1.norm",
               "features.1.conv.0.0": "stem.block1.conv2", "features.1.conv.0.1": "stem.block1.conv2.norm",
               "features.1.conv.1": "stem.block1.conv3", "features.1.conv.2": "stem.block1.conv3.norm"}
    index = 2  # features.2 .. features.17 are the expanding blocks, in our stage order
    for stage in STAGE_NAMES:
        block = 0
        for _, _, repeats, _ in _MOBILENETV2_STAGES[stage]:
            for _ in range(repeats):
                ours, theirs = f"{stage}.{block}", f"features.{index}.conv"
                mapping.update({f"{theirs}.0.0": f"{ours}.conv1", f"{theirs}.0.1": f"{ours}.conv1.norm",
                                f"{theirs}.1.0": f"{ours}.conv2", f"{theirs}.1.1": f"{ours}.conv2.norm",
                                f"{theirs}.2": f"{ours}.conv3", f"{theirs}.3": f"{ours}.conv3.norm"})
                block += 1
                index += 1
    return mapping


_TV_RESNET = re.compile(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])$")


def _torchvision_resnet_module(prefix: str) -> Optional[str]:
    if prefix == "conv1":
        return "stem.conv1"
    if prefix == "bn1":
        return "stem.conv1.norm"
    match = _TV_RESNET.match(prefix)
    if match is None:
        return None
    stage, block, part = int(match.group(1)) + 1, match.group(2), match.group(3)
    name = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}.get(part)
    if name is None:
        name = part if part.startswith("conv") else f"conv{part[2:]}.norm"
    return f"res{stage}.{block}.{name}"


_MSRA = re.compile(r"^res(\d)_(\d+)_branch(1|2a|2b|2c)_(w|bn_s|bn_b)$")
_MSRA_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_MSRA_LEAF = {"w": "weight", "bn_s": "norm.weight", "bn_b": "norm.bias"}


def _msra_name(key: str) -> Optional[str]:
    fixed = {"conv1_w": "stem.conv1.weight", "res_conv1_bn_s": "stem.conv1.norm.weight",
             "res_conv1_bn_b": "stem.conv1.norm.bias"}
    if key in fixed:
        return fixed[key]
    match = _MSRA.match(key)
    if match is None:
        return None
    stage, block, branch, leaf = match.groups()
    return f"res{stage}.{block}.{_MSRA_BRANCH[branch]}.{_MSRA_LEAF[leaf]}"


def _torchvision_name(key: str, backbone: str) -> Optional[str]:
    prefix, _, leaf = key.rpartition(".")
    if backbone == "mobilenetv2":
        module = _MOBILENETV2_MAP.get(prefix)
    else:
        module = _torchvision_resnet_module(prefix)
    return None if module is None else f"{module}.{leaf}"


_MOBILENETV2_MAP = _mobilenetv2_module_map()
# The classifier, and MobileNetV2's 1x1 conv to 1280 channels that only feeds it.
_DROPPED = {"mobilenetv2": ("classifier.", "features.18."), "resnet18": ("fc.",), "resnet50": ("fc.",),
            "msra": ("fc1000_",)}


# ------------------------------------------------------------------------------- reading


def _read_arrays(path: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, Any], str]:
    """(name -> array, payload when it is ours, kind) of a .pth / .pkl / our backbone file."""
    payload, kind = read_foreign_weights_file(path, "backbone weights")
    if payload.get("format") == BACKBONE_FORMAT:
        return {}, dict(payload), "ours"
    for wrapper in ("state_dict", "model", "blobs"):
        if isinstance(payload.get(wrapper), Mapping):
            payload = payload[wrapper]
            break
    # Caffe2's optimiser state and authorship are not weights
    arrays = named_numeric_arrays(payload, path, lambda name: name == "__author__" or (
        isinstance(name, str) and name.endswith("_momentum")))
    if not arrays:
        raise ModelFileError(f"{path} holds no weights")
    return arrays, {}, kind


def detect_layout(arrays: Mapping[str, np.ndarray]) -> str:
    """'torchvision' or 'msra' from the key names; ModelFileError otherwise."""
    if "conv1_w" in arrays or any(k.startswith("res2_0_") for k in arrays):
        return "msra"
    if "features.0.0.weight" in arrays or "layer1.0.conv1.weight" in arrays:
        return "torchvision"
    sample = ", ".join(sorted(arrays)[:5])
    raise ModelFileError(f"unrecognised backbone weights layout (keys such as {sample}); expected torchvision's "
                         "mobilenet_v2 / resnet state dict or detectron2's MSRA R-50.pkl")


def map_backbone_arrays(arrays: Mapping[str, np.ndarray], backbone: str, layout: str,
                        source: str = "weights") -> Dict[str, torch.Tensor]:
    """Map a classifier's arrays onto `backbone` (our names); strict, every problem listed at once."""
    if backbone not in BACKBONE_NAMES:
        raise ConfigError(f"--backbone must be one of {', '.join(BACKBONE_NAMES)}, got {backbone!r}")
    if layout == "msra" and backbone != "resnet50":
        raise ModelFileError(f"{source} is detectron2's MSRA ResNet-50 layout; it cannot initialise {backbone}")
    stride_in_1x1 = layout == "msra"
    own = build_backbone(BackboneConfig(name=backbone, norm="FrozenBN", stride_in_1x1=stride_in_1x1)).state_dict()
    dropped = _DROPPED["msra" if layout == "msra" else backbone]
    mapped: Dict[str, np.ndarray] = {}
    leftovers: List[str] = []
    for key, value in arrays.items():
        if key.startswith(dropped) or key.endswith("num_batches_tracked"):
            continue
        name = _msra_name(key) if layout == "msra" else _torchvision_name(key, backbone)
        if name is None or name not in own:
            leftovers.append(key)
        else:
            mapped[name] = value
    if layout == "msra":
        # Caffe2's norms are a pure scale and shift: zero mean and a variance that cancels the epsilon.
        for name in [n for n in own if n.endswith("norm.weight") and n in mapped]:
            base = name[: -len("weight")]
            mapped[base + "running_mean"] = np.zeros_like(mapped[name])
            mapped[base + "running_var"] = np.full_like(mapped[name], 1.0 - BN_EPS)
    unfilled = sorted(k for k in own if k not in mapped)
    mismatched = [f"{k} {tuple(mapped[k].shape)} vs {backbone} {tuple(own[k].shape)}"
                  for k in own if k in mapped and tuple(mapped[k].shape) != tuple(own[k].shape)]
    problems = [f"{label} ({len(items)}): {listing(sorted(items))}" for label, items in
                (("keys not consumed", leftovers), ("backbone tensors not filled", unfilled),
                 ("shape mismatches", mismatched)) if items]
    if problems:
        raise ModelFileError(f"{source} does not fit our {backbone} ({layout} layout): " + "; ".join(problems))
    return {k: torch.from_numpy(np.ascontiguousarray(mapped[k])).to(own[k].dtype) for k in own}


def _from_payload(payload: Mapping[str, Any], path: Path, backbone: Optional[str]) -> BackboneWeights:
    try:
        norm = payload["normalisation"]
        weights = BackboneWeights(
            backbone=str(payload["backbone"]), state_dict=dict(payload["state_dict"]),
            normalisation=InputNormalisation(str(norm["input_format"]), tuple(norm["pixel_mean"]),
                                             tuple(norm["pixel_std"])),
            stride_in_1x1=bool(payload["stride_in_1x1"]), meta=dict(payload.get("meta", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"backbone file {path} is incomplete: {exc}") from exc
    if backbone is not None and backbone != weights.backbone:
        raise ModelFileError(f"{path} holds {weights.backbone} weights, not {backbone}")
    return weights


def read_backbone_weights(path: str | Path, backbone: Optional[str] = None,
                          url: Optional[str] = None) -> BackboneWeights:
    """Backbone weights from our backbone file, a torchvision .pth or an MSRA .pkl.

    `backbone` is required for foreign files (which network the classifier is) and checked for ours.
    """
    path = Path(path)
    arrays, payload, kind = _read_arrays(path)
    if kind == "ours":
        return _from_payload(payload, path, backbone)
    layout = detect_layout(arrays)
    if backbone is None:
        if layout != "msra":
            raise ConfigError(f"{path} is a torchvision classifier: say which backbone it is "
                              f"({', '.join(BACKBONE_NAMES)})")
        backbone = "resnet50"
    state_dict = map_backbone_arrays(arrays, backbone, layout, source=url or str(path))
    meta = {"source": layout, "source_file": path.name, "source_format": kind, "source_sha256": sha256_of(path),
            "source_url": url, "num_arrays": len(arrays)}
    normalisation = MSRA_INPUT if layout == "msra" else TORCHVISION_INPUT
    return BackboneWeights(backbone, state_dict, normalisation, layout == "msra", meta)


def load_backbone_init(path_or_url: str, backbone: str, download_dir: Path) -> BackboneWeights:
    """What training's `backbone_init` names: a local file, or a URL downloaded once into download_dir."""
    if is_url(path_or_url):
        local = download_dir / url_file_name(path_or_url)
        if not local.is_file():
            local = download(path_or_url, download_dir)
        return read_backbone_weights(local, backbone, url=path_or_url)
    return read_backbone_weights(path_or_url, backbone)


def save_backbone_weights(weights: BackboneWeights, path: str | Path) -> Path:
    """Write our backbone file atomically (plain data + tensors, readable with weights_only=True)."""
    path = Path(path)
    n = weights.normalisation
    payload = {"format": BACKBONE_FORMAT, "version": BACKBONE_VERSION, "backbone": weights.backbone,
               "state_dict": {k: v.detach().cpu() for k, v in weights.state_dict.items()},
               "normalisation": {"input_format": n.input_format, "pixel_mean": list(n.pixel_mean),
                                 "pixel_std": list(n.pixel_std)},
               "stride_in_1x1": weights.stride_in_1x1, "meta": dict(weights.meta)}
    return atomic_torch_save(payload, path)


def apply_backbone_weights(model: torch.nn.Module, weights: BackboneWeights) -> int:
    """Copy the weights into model.backbone.bottom_up (strict); returns how many tensors were set."""
    bottom_up = model.backbone.bottom_up
    own = bottom_up.state_dict()
    missing = sorted(k for k in own if k not in weights.state_dict and not k.endswith("num_batches_tracked"))
    mismatched = [k for k in weights.state_dict if k not in own or own[k].shape != weights.state_dict[k].shape]
    if missing or mismatched:
        raise ModelFileError(f"backbone weights do not fit the model's {weights.backbone}: missing "
                             f"{listing(missing)}; unexpected or mis-shaped {listing(mismatched)}")
    with torch.no_grad():
        for name, value in weights.state_dict.items():
            own[name].copy_(value)
    return len(weights.state_dict)
