"""Data-parallel training under a real torchrun with 2 gloo processes on the CPU.

The equivalence run is built so that one process and two take mathematically the same step:
every RPN anchor and RoI is used (no random subsampling, whose draws come from each process's own
generator), and each global batch holds the same frame twice, so every per-batch normaliser of the
box and mask losses (detectron2's: over all sampled RoIs of the batch) splits evenly. With distinct
images those normalisers differ between a process's half and the whole batch, as in detectron2.
The backbone uses FrozenBN (detectron2's default and the ImageNet recipe here): a training-mode
BatchNorm's running statistics come from each process's own images, as without SyncBatchNorm.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch
import yaml

from panoptic_perception.model.checkpoint import load_checkpoint
from panoptic_perception.training.data import PassSampler

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 128, 64


def test_shards_partition_every_global_batch() -> None:
    whole = iter(PassSampler(10, 4, seed=3, start_batch=5))
    halves = [iter(PassSampler(10, 4, seed=3, start_batch=5, num_shards=2, shard=s)) for s in (0, 1)]
    for _ in range(6):
        assert next(halves[0]) + next(halves[1]) == next(whole)
    with pytest.raises(ValueError, match="equal slice"):
        PassSampler(10, 3, seed=0, num_shards=2, shard=0)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("ddp")
    DriveWriter(root / "data", small_config(WIDTH, HEIGHT), seed=5).write(1)
    every = {"batch_size_per_image": 1_000_000, "positive_fraction": 1.0}
    model = {"label_space": "cityscapes", "input_width": WIDTH, "input_height": HEIGHT,
             "backbone": {"name": "mobilenetv2", "norm": "FrozenBN"}, "fpn": {"channels": 32},
             "rpn": {**every, "anchor_sizes": [8, 16, 32, 64, 128], "pre_nms_topk_train": 200,
                     "post_nms_topk_train": 50},
             "roi_heads": {**every, "box_fc_dim": 32, "mask_conv_dim": 16, "mask_num_conv": 1,
                           "pooler_sampling_ratio": 2},
             "semantic_head": {"conv_dims": 32}}
    (root / "model.yaml").write_text(yaml.safe_dump(model))
    train = {"model_config": str(root / "model.yaml"),
             "train_data": {"kind": "synthetic", "root": str(root / "data")},
             "augment": {"crop_width_px": WIDTH, "crop_height_px": HEIGHT, "min_scale": 1.0, "max_scale": 1.0,
                         "hflip_prob": 0.0, "photometric_prob": 0.0},
             "schedule": {"iterations": 4, "base_lr": 0.02, "warmup_iterations": 0, "lr_steps": []},
             "batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 7, "log_every": 1,
             "eval_every": 1000, "checkpoint_every": 1}
    (root / "train.yaml").write_text(yaml.safe_dump(train))
    return root / "train.yaml"


def _train(config: Path, out_dir: Path, processes: int, *extra: str) -> None:
    launcher: List[str] = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                           "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher + ["-m", "panoptic_perception", "train", "--config", str(config),
                                      "--out-dir", str(out_dir), "--no-progress", *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _weights(out_dir: Path) -> dict:
    state, _, meta = load_checkpoint(out_dir / "last.pt")
    return {"iteration": meta["iteration"], **state}


def _assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a["iteration"] == b["iteration"]
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if k != "iteration" and a[k].numel())
    assert worst <= atol, worst


def test_two_processes_take_the_single_process_step_and_resume_exactly(run_config: Path, tmp_path: Path) -> None:
    _train(run_config, tmp_path / "one", 1)
    _train(run_config, tmp_path / "two", 2)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    _assert_same_weights(one, two, atol=2e-5)
    # Logs come from the main process only: one row per iteration, not one per process.
    rows = (tmp_path / "two" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    assert not any(p.name.startswith("log") for p in (tmp_path / "two").glob("*rank*"))

    # Stopped after 2 iterations and resumed (with the per-process RNG states): the same weights.
    _train(run_config, tmp_path / "split", 2, "--iterations", "2")
    halfway = _weights(tmp_path / "split")
    assert halfway["iteration"] == 2
    # Two more steps move the weights far more than the tolerance above: the comparison can fail.
    assert max(float((halfway[k].float() - two[k].float()).abs().max()) for k in two if k != "iteration") > 1e-3
    state = torch.load(tmp_path / "split" / "train_state.pt", weights_only=True)
    assert len(state["torch_rng_per_process"]) == 2
    _train(run_config, tmp_path / "split", 2, "--resume")
    _assert_same_weights(two, _weights(tmp_path / "split"), atol=1e-6)


def test_shipped_training_configs_load_and_the_cityscapes_schedule_is_detectron2s_1x() -> None:
    from panoptic_perception.model.config import load_model_config
    from panoptic_perception.paths import CONFIG_DIR
    from panoptic_perception.pipeline import resolve_path
    from panoptic_perception.training.config import load_train_config

    for path in sorted(CONFIG_DIR.glob("train_*.yaml")):
        config = load_train_config(path)
        if config.model_config is not None:  # null: init_from's own, read when the run starts
            load_model_config(resolve_path(config.model_config))
    cityscapes = load_train_config(CONFIG_DIR / "train_cityscapes_r50_1x.yaml")
    per_gpu, gpus = 2, 8
    assert cityscapes.batch_size == per_gpu * gpus
    # detectron2's 1x: 90k iterations at global batch 16, lr 0.02, x0.1 at 60k and 80k.
    s = cityscapes.schedule
    assert (s.iterations, s.base_lr, tuple(s.lr_steps)) == (90000, 0.02, (60000, 80000))
    assert cityscapes.backbone_init.endswith("MSRA/R-50.pkl")
