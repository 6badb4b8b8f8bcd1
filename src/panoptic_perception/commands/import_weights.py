"""`import-weights`: turn detectron2 model-zoo / training weights into our checkpoint (.pt)."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from panoptic_perception.errors import ConfigError
from panoptic_perception.size_args import size_arg, with_input_size

HELP = "import detectron2 Panoptic FPN weights (.pkl / .pth, file or --url) into a checkpoint"

DEFAULT_CONFIG = "model_detectron2_r50"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", type=Path, default=None,
                        help="detectron2 checkpoint: model-zoo .pkl or training .pth (omit with --url)")
    parser.add_argument("--from", dest="source", required=True, choices=["detectron2"],
                        help="framework that wrote the checkpoint")
    parser.add_argument("--url", default=None,
                        help="download the checkpoint from this http(s):// or file:// URL, then import it")
    parser.add_argument("--out", required=True, type=Path,
                        help="checkpoint to write, e.g. models/panoptic_fpn_r50_coco.pt")
    parser.add_argument("--config", default=None,
                        help=f"model config YAML describing the network (default: config/{DEFAULT_CONFIG}.yaml)")
    parser.add_argument("--input-size", type=size_arg, default=None, metavar="WxH",
                        help="static input size stored in the checkpoint (multiples of 32); default: the config's")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="keep the downloaded file here (default: a temporary directory, deleted after)")


def run(args: argparse.Namespace) -> int:
    from panoptic_perception.config import named_config_file
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.model.detectron2_import import download, import_detectron2
    from panoptic_perception.paths import CONFIG_DIR

    if (args.checkpoint is None) == (args.url is None):
        raise ConfigError("give exactly one of CHECKPOINT (a local .pkl / .pth) or --url URL")
    if args.out.suffix != ".pt":
        raise ConfigError(f"--out must be a .pt checkpoint path, got {args.out}")
    config_path = named_config_file(args.config or DEFAULT_CONFIG, CONFIG_DIR, "model config")
    config = load_model_config(config_path)
    config = with_input_size(config, args.input_size)

    if args.url is None:
        result = import_detectron2(args.checkpoint, args.out, config)
    elif args.download_dir is not None:
        print(f"import-weights: downloading {args.url}")
        local = download(args.url, args.download_dir)
        result = import_detectron2(local, args.out, config, url=args.url)
    else:
        print(f"import-weights: downloading {args.url}")
        with tempfile.TemporaryDirectory(prefix=".import-", dir=args.out.parent if args.out.parent.is_dir()
                                         else None) as tmp:
            result = import_detectron2(download(args.url, Path(tmp)), args.out, config, url=args.url)
    cfg = result.config
    print(f"import-weights: {result.num_arrays} arrays, all consumed (sha256 {result.sha256[:16]}...)")
    print(f"import-weights: wrote {result.out_path} ({cfg.backbone.name}, label space {cfg.label_space}, "
          f"{cfg.input_width}x{cfg.input_height}, resize {cfg.resize}, input {cfg.input_format})")
    return 0
