"""`import-weights`: turn detectron2 model-zoo / training weights into our checkpoint (.pt)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from panoptic_perception.errors import ConfigError
from panoptic_perception.model.config import BACKBONE_NAMES
from panoptic_perception.model.weights_file import download
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.size_args import size_arg, with_input_size

HELP = ("import detectron2 Panoptic FPN weights (.pkl / .pth) into a checkpoint, or ImageNet backbone weights "
        "(torchvision .pth, detectron2 MSRA R-50.pkl) into a backbone file for training's backbone_init")

DEFAULT_CONFIG = "model_detectron2_r50"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", type=Path, default=None,
                        help="detectron2 checkpoint (model-zoo .pkl or training .pth), or with --from torchvision "
                             "an ImageNet classifier (.pth, or detectron2's MSRA R-50.pkl); omit with --url")
    parser.add_argument("--from", dest="source", required=True, choices=["detectron2", "torchvision"],
                        help="detectron2: a whole Panoptic FPN; torchvision: ImageNet backbone weights")
    parser.add_argument("--backbone", choices=list(BACKBONE_NAMES), default=None,
                        help="with --from torchvision: which network the classifier is (MSRA R-50.pkl: resnet50)")
    parser.add_argument("--url", default=None,
                        help="download the checkpoint from this http(s):// or file:// URL, then import it")
    parser.add_argument("--out", required=True, type=Path,
                        help="file to write, e.g. models/panoptic_fpn_r50_coco.pt or backbones/mobilenetv2.pt")
    parser.add_argument("--config", default=None,
                        help=f"model config YAML describing the network (default: config/{DEFAULT_CONFIG}.yaml)")
    parser.add_argument("--input-size", type=size_arg, default=None, metavar="WxH",
                        help="static input size stored in the checkpoint (multiples of 32); default: the config's")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="keep the downloaded file here (default: a temporary directory, deleted after)")


def _local_file(args: argparse.Namespace, work: Path) -> Path:
    if args.url is None:
        return args.checkpoint
    print(f"import-weights: downloading {args.url}")
    return download(args.url, args.download_dir or work)


def run(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.url is None):
        raise ConfigError("give exactly one of CHECKPOINT (a local file) or --url URL")
    if args.out.suffix != ".pt":
        raise ConfigError(f"--out must be a .pt path, got {args.out}")
    if args.source == "detectron2" and args.backbone is not None:
        raise ConfigError("--backbone goes with --from torchvision; a detectron2 checkpoint's network comes "
                          "from --config")
    work_parent = args.out.parent if args.out.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".import-", dir=work_parent) as tmp:
        local = _local_file(args, Path(tmp))
        if args.source == "torchvision":
            return _import_backbone(args, local)
        return _import_detectron2(args, local)


def _import_backbone(args: argparse.Namespace, local: Path) -> int:
    from panoptic_perception.model.backbone_import import read_backbone_weights, save_backbone_weights

    weights = read_backbone_weights(local, args.backbone, url=args.url)
    out = save_backbone_weights(weights, args.out)
    n = weights.normalisation
    print(f"import-weights: {weights.meta['num_arrays']} arrays -> {len(weights.state_dict)} {weights.backbone} "
          f"tensors ({weights.meta['source']} layout; classifier dropped)")
    print(f"import-weights: wrote {out} (input {n.input_format}, mean {list(n.pixel_mean)}, std {list(n.pixel_std)}); "
          f"train with backbone_init: {out}")
    return 0


def _import_detectron2(args: argparse.Namespace, local: Path) -> int:
    from panoptic_perception.config import named_config_file
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.model.detectron2_import import import_detectron2

    config_path = named_config_file(args.config or DEFAULT_CONFIG, CONFIG_DIR, "model config")
    config = with_input_size(load_model_config(config_path), args.input_size)
    result = import_detectron2(local, args.out, config, url=args.url)
    cfg = result.config
    print(f"import-weights: {result.num_arrays} arrays, all consumed (sha256 {result.sha256[:16]}...)")
    print(f"import-weights: wrote {result.out_path} ({cfg.backbone.name}, label space {cfg.label_space}, "
          f"{cfg.input_width}x{cfg.input_height}, resize {cfg.resize}, input {cfg.input_format})")
    return 0
