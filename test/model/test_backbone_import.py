"""ImageNet backbone weights: torchvision and detectron2 MSRA layouts onto our backbones.

The real MobileNetV2 file is checked against an independent reference of torchvision's
`mobilenet_v2` layout written here (loaded with strict=True, so every key of the file is used by
the reference): the reference's stride-4..32 features must equal our backbone's res2..res5. The
other layouts are checked from manifests of the real files' keys and shapes
(fixtures/backbone_manifests.json, written from torchvision 0.29.1 and checked against detectron2's
own Caffe2 name conversion), with a torchvision-layout ResNet-18 reference for the features.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from repo_paths import FIXTURES, REPO_ROOT
from torch import nn
from torch.nn import functional as F

from panoptic_perception.errors import ConfigError, ModelFileError
from panoptic_perception.model.backbone import build_backbone
from panoptic_perception.model.backbone_import import (
    MSRA_INPUT,
    TORCHVISION_INPUT,
    apply_backbone_weights,
    detect_layout,
    map_backbone_arrays,
    read_backbone_weights,
    save_backbone_weights,
)
from panoptic_perception.model.config import BackboneConfig, ModelConfig
from panoptic_perception.model.panoptic_fpn import build_model

SHARED_MOBILENET = REPO_ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth"
MANIFESTS = json.loads((FIXTURES / "backbone_manifests.json").read_text())


def _random_arrays(manifest: Dict[str, List[int]], seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in manifest.items():
        if name.endswith("num_batches_tracked"):
            arrays[name] = np.array(0, dtype=np.int64)
        elif name.endswith("running_var"):
            arrays[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            arrays[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return arrays


def _our_backbone(name: str, weights_state: Dict[str, torch.Tensor], stride_in_1x1: bool = False) -> nn.Module:
    model = build_backbone(BackboneConfig(name=name, norm="FrozenBN", stride_in_1x1=stride_in_1x1)).eval()
    model.load_state_dict(weights_state, strict=True)
    return model


# ------------------------------------------------------ independent torchvision-layout references


class _ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class _TvInvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers: List[nn.Module] = [] if t == 1 else [_ConvBNAct(cin, hidden, 1)]
        layers += [_ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    """torchvision's mobilenet_v2 module tree (features.0..18, classifier.1), Sandler et al. Table 2."""

    def __init__(self) -> None:
        super().__init__()
        table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1)]
        layers: List[nn.Module] = [_ConvBNAct(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in table:
            for i in range(n):
                layers.append(_TvInvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_ConvBNAct(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def taps(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Outputs at strides 4, 8, 16, 32: after features 3, 6, 13 and 17."""
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            tap = {3: "res2", 6: "res3", 13: "res4", 17: "res5"}.get(index)
            if tap:
                out[tap] = x
        return out


class _TvBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class TorchvisionResNet18(nn.Module):
    """torchvision's resnet18 module tree (conv1, bn1, layer1..4 of BasicBlocks, fc)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, cout in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"layer{i}", nn.Sequential(_TvBasicBlock(cin, cout, stride), _TvBasicBlock(cout, cout, 1)))
            cin = cout
        self.fc = nn.Linear(512, 1000)

    def taps(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        out = {}
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            out[f"res{i + 1}"] = x
        return out


def _assert_taps_equal(ours: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]) -> None:
    for name in ("res2", "res3", "res4", "res5"):
        assert ours[name].shape == reference[name].shape, name
        scale = reference[name].abs().max().item()
        assert (ours[name] - reference[name]).abs().max().item() <= 1e-4 * max(scale, 1.0), name


# ------------------------------------------------------------------------------- the real file


@pytest.mark.skipif(not SHARED_MOBILENET.is_file(), reason="no ImageNet MobileNetV2 file beside the repo")
def test_real_mobilenetv2_file_gives_torchvision_features() -> None:
    state = torch.load(SHARED_MOBILENET, map_location="cpu", weights_only=True)
    reference = TorchvisionMobileNetV2().eval()
    reference.load_state_dict(state, strict=True)  # the reference uses every key of the real file
    weights = read_backbone_weights(SHARED_MOBILENET, "mobilenetv2")
    ours = _our_backbone("mobilenetv2", weights.state_dict)
    # Tensor by tensor: every conv of ours holds the reference conv it maps from.
    assert torch.equal(ours.stem.conv1.weight, reference.features[0][0].weight)
    assert torch.equal(ours.res4[6].conv2.weight, reference.features[13].conv[1][0].weight)
    assert torch.equal(ours.res5[3].conv3.norm.running_var, reference.features[17].conv[3].running_var)
    image = torch.rand(1, 3, 96, 160) * 4 - 2
    with torch.no_grad():
        _assert_taps_equal(ours(image), reference.taps(image))
    assert weights.normalisation == TORCHVISION_INPUT
    assert weights.meta["num_arrays"] == 314


# ---------------------------------------------------------------------------------- manifests


def test_torchvision_resnet18_manifest_maps_and_gives_reference_features() -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_resnet18"])
    state = map_backbone_arrays(arrays, "resnet18", detect_layout(arrays))
    reference = TorchvisionResNet18().eval()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    ours = _our_backbone("resnet18", state)
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _assert_taps_equal(ours(image), reference.taps(image))


def test_torchvision_resnet50_manifest_fills_every_tensor() -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_resnet50"])
    state = map_backbone_arrays(arrays, "resnet50", "torchvision")
    assert np.array_equal(state["res4.5.conv2.weight"].numpy(), arrays["layer3.5.conv2.weight"])
    assert np.array_equal(state["res3.0.shortcut.norm.running_var"].numpy(),
                          arrays["layer2.0.downsample.1.running_var"])
    own = build_backbone(BackboneConfig(name="resnet50", norm="FrozenBN", stride_in_1x1=False)).state_dict()
    assert set(state) == set(own)


@pytest.mark.slow
def test_msra_r50_pkl_maps_with_caffe2_norm_semantics(tmp_path: Path) -> None:
    arrays = _random_arrays(MANIFESTS["detectron2_msra_r50"])
    arrays["res2_0_branch2a_w_momentum"] = np.zeros((64, 64, 1, 1), np.float32)  # optimiser state is skipped
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps({"blobs": arrays}, protocol=2))
    weights = read_backbone_weights(path)  # the layout says ResNet-50; no --backbone needed
    assert weights.backbone == "resnet50" and weights.stride_in_1x1 and weights.normalisation == MSRA_INPUT
    ours = _our_backbone("resnet50", weights.state_dict, stride_in_1x1=True)
    # Caffe2's affine norm: y = s * conv(x) + b, exactly, through our FrozenBN.
    x = torch.randn(1, 3, 32, 32)
    conv = F.conv2d(x, torch.from_numpy(arrays["conv1_w"]), stride=2, padding=3)
    expected = F.relu(conv * torch.from_numpy(arrays["res_conv1_bn_s"]).reshape(1, -1, 1, 1)
                      + torch.from_numpy(arrays["res_conv1_bn_b"]).reshape(1, -1, 1, 1))
    with torch.no_grad():
        got = ours.stem.conv1(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_mobilenet_manifest_drops_only_the_classifier() -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_mobilenet_v2"])
    state = map_backbone_arrays(arrays, "mobilenetv2", "torchvision")
    assert len(state) == 255
    used = {k for k in arrays if not k.startswith(("classifier.", "features.18.")) and "num_batches" not in k}
    assert len(used) == len(state)


# ------------------------------------------------------------------------------------ failures


def test_leftover_and_missing_keys_are_all_listed() -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_resnet18"])
    arrays["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    del arrays["layer2.1.bn2.bias"]
    with pytest.raises(ModelFileError) as err:
        map_backbone_arrays(arrays, "resnet18", "torchvision")
    text = str(err.value)
    assert "layer5.0.conv1.weight" in text and "res3.1.conv2.norm.bias" in text


def test_wrong_backbone_is_a_shape_or_key_error_not_a_silent_load() -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_resnet50"])
    with pytest.raises(ModelFileError, match="shape mismatches"):
        map_backbone_arrays(arrays, "resnet18", "torchvision")
    with pytest.raises(ModelFileError, match="keys not consumed"):
        map_backbone_arrays(_random_arrays(MANIFESTS["torchvision_mobilenet_v2"]), "resnet18", "torchvision")


def test_torchvision_file_needs_its_backbone_named(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save({k: torch.from_numpy(v) for k, v in _random_arrays(MANIFESTS["torchvision_resnet18"]).items()}, path)
    with pytest.raises(ConfigError, match="say which backbone"):
        read_backbone_weights(path)
    assert read_backbone_weights(path, "resnet18").backbone == "resnet18"


def test_code_carrying_pth_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": torch.zeros(1), "hook": print}, path)
    with pytest.raises(ModelFileError, match="without running code"):
        read_backbone_weights(path, "mobilenetv2")


# ------------------------------------------------------------------------- file round trip + model


def test_backbone_file_round_trip_and_model_config(tmp_path: Path) -> None:
    arrays = _random_arrays(MANIFESTS["torchvision_mobilenet_v2"])
    path = tmp_path / "mnv2.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in arrays.items()}}, path)
    weights = read_backbone_weights(path, "mobilenetv2")
    saved = save_backbone_weights(weights, tmp_path / "backbone.pt")
    again = read_backbone_weights(saved)
    assert again.backbone == "mobilenetv2" and again.normalisation == weights.normalisation
    assert all(torch.equal(again.state_dict[k], weights.state_dict[k]) for k in weights.state_dict)
    with pytest.raises(ModelFileError, match="not resnet18"):
        read_backbone_weights(saved, "resnet18")

    base = ModelConfig(backbone=BackboneConfig(name="mobilenetv2", norm="BN"), input_format="BGR")
    config = again.config_for(base)
    assert config.backbone.norm == "FrozenBN" and config.input_format == "RGB"
    assert config.pixel_std == TORCHVISION_INPUT.pixel_std
    model = build_model(config)
    assert apply_backbone_weights(model, again) == 255
    assert torch.equal(model.backbone.bottom_up.res3[1].conv2.weight, again.state_dict["res3.1.conv2.weight"])
    with pytest.raises(ConfigError, match="backbone is resnet18"):
        again.config_for(ModelConfig(backbone=BackboneConfig(name="resnet18")))
