"""Stage panoptic_head: the Inria report's conv panoptic head trained on a frozen network, and its checkpoint."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from panoptic_perception.data.augment import AugmentConfig
from panoptic_perception.data.datasets import DatasetConfig
from panoptic_perception.errors import ConfigError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.checkpoint import load_checkpoint
from panoptic_perception.model.panoptic_head import STATE_PREFIX
from panoptic_perception.paths import CONFIG_DIR, SHARE_ROOT
from panoptic_perception.training.config import (
    PanopticHeadTrainConfig,
    ScheduleConfig,
    TrainConfig,
    load_train_config,
)
from panoptic_perception.training.panoptic_head import (
    _loss_pixels,
    match_detections,
    panoptic_head_losses,
    with_conv_head,
)
from panoptic_perception.training.trainer import Trainer

WIDTH, HEIGHT = 256, 128  # the tiny_model fixture's input size


def _masks(*boxes, shape=(8, 10)) -> torch.Tensor:
    out = torch.zeros(len(boxes), *shape, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = True
    return out


def test_matching_is_one_to_one_by_score_within_a_class():
    gt = _masks((0, 4, 0, 4), (4, 8, 5, 10))  # 16 and 20 pixels
    gt_classes = torch.tensor([11, 13])
    det = _masks((0, 4, 0, 3),  # 12/16 = 0.75 with gt 0
                 (0, 4, 0, 4),  # exactly gt 0, lower score: gt 0 is taken -> unmatched
                 (4, 8, 5, 10),  # exactly gt 1 but another class -> unmatched
                 (4, 8, 7, 10))  # 12/20 = 0.6 with gt 1, same class
    det_classes = torch.tensor([11, 11, 12, 13])
    scores = torch.tensor([0.9, 0.8, 0.95, 0.7])
    assert match_detections(det, det_classes, scores, gt, gt_classes, 0.5).tolist() == [0, -1, -1, 1]
    assert match_detections(det, det_classes, scores, gt, gt_classes, 0.7).tolist() == [0, -1, -1, -1]
    assert match_detections(det[:0], det_classes[:0], scores[:0], gt, gt_classes, 0.5).tolist() == []
    assert match_detections(det, det_classes, scores, gt[:0], gt_classes[:0], 0.5).tolist() == [-1] * 4


def test_loss_pixels_leave_out_void_and_unlabelled_thing_pixels():
    labels = load_label_space("cityscapes")
    road, car = labels.id_of("road"), labels.id_of("car")
    thing_index = torch.full((labels.num_classes,), -1, dtype=torch.int64)
    thing_index[torch.tensor(labels.thing_ids)] = torch.arange(len(labels.thing_ids))
    semantic = torch.full((4, 6), road)
    semantic[0, :] = labels.ignore_id
    semantic[1:, 0:2] = car  # an instance in the targets
    semantic[1:, 4:6] = car  # a car too small to be a target: its pixels are not background
    gt_masks = torch.zeros(1, 4, 6, dtype=torch.bool)
    gt_masks[0, 1:, 0:2] = True
    want = torch.ones(4, 6)
    want[0, :] = 0
    want[1:, 4:6] = 0
    torch.testing.assert_close(_loss_pixels(semantic, gt_masks, thing_index, labels.ignore_id), want)


def test_head_stage_needs_a_trained_network_and_the_config_loads():
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(stage="panoptic_head")
    with pytest.raises(ValueError, match="model_config is null"):
        TrainConfig(model_config=None)
    config = load_train_config(CONFIG_DIR / "train_panoptic_head.yaml")
    assert config.stage == "panoptic_head" and config.init_from == "models/panoptic_light.pt"
    # the head trains on full frames at the network's input: the crop is the shipped model's input size
    _, shipped, _ = load_checkpoint(SHARE_ROOT / config.init_from)
    assert (config.augment.crop_width_px, config.augment.crop_height_px) == (shipped.input_width,
                                                                            shipped.input_height)


@pytest.fixture(scope="module")
def drive_root(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("synth_head")
    DriveWriter(root, small_config(WIDTH, HEIGHT), seed=12).write(3)
    return root


def _head_config(drive_root, out_dir, tiny_model, iterations=6) -> TrainConfig:
    still = AugmentConfig(crop_height_px=HEIGHT, crop_width_px=WIDTH, min_scale=1.0, max_scale=1.0,
                          hflip_prob=0.0, photometric_prob=0.0)
    schedule = ScheduleConfig(optimizer="adam", iterations=iterations, base_lr=0.05, warmup_iterations=0,
                              lr_steps=())
    # A random-weight network scores every class near 1/9: min_score 0 lets its detections train the head.
    return TrainConfig(
        stage="panoptic_head", model_config=None, init_from=str(tiny_model),
        panoptic_head=PanopticHeadTrainConfig(min_score=0.0), train_data=DatasetConfig(root=str(drive_root)),
        augment=still, schedule=schedule, batch_size=2, num_workers=0, device="cpu", out_dir=str(out_dir),
        log_every=1, eval_every=10_000, checkpoint_every=10_000)


def _tiny_model_config(tiny_model):
    return load_checkpoint(tiny_model)[1]


@pytest.mark.slow
def test_head_steps_change_only_the_head_and_lower_its_loss(drive_root, tmp_path, tiny_model):
    config = _head_config(drive_root, tmp_path, tiny_model)
    trainer = Trainer(config)
    # model_config null: the run takes the trained network's own config, with the head's fusion
    assert trainer.model_config == with_conv_head(_tiny_model_config(tiny_model))
    assert trainer.model_config.fusion.mode == "conv_head"
    assert all(p.requires_grad == n.startswith(STATE_PREFIX) for n, p in trainer.model.named_parameters())
    images, targets = next(iter(trainer._loader()))
    trainer.model.eval()
    with torch.no_grad():
        before = float(panoptic_head_losses(trainer.model, images, targets, config.panoptic_head)
                       ["loss_panoptic_head"])
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    rows = trainer.train(progress=False)

    assert len(rows) == 6 and all(row["loss_panoptic_head"] > 0 for row in rows)
    end = trainer.model.state_dict()
    head = [k for k in start if k.startswith(STATE_PREFIX)]
    assert len(head) == 4
    for name, value in start.items():  # weights and buffers (BatchNorm statistics) alike
        if name.startswith(STATE_PREFIX):
            continue
        assert torch.equal(value, end[name]), f"{name} changed in the head stage"
    assert any(not torch.equal(start[k], end[k]) for k in head)
    with torch.no_grad():
        after = float(panoptic_head_losses(trainer.model, images, targets, config.panoptic_head)
                      ["loss_panoptic_head"])
    assert after < before, (before, after)


@pytest.mark.slow
def test_head_checkpoint_round_trip_loads_with_no_other_setting(drive_root, tmp_path, tiny_model):
    from panoptic_perception.pipeline import Pipeline, PipelineConfig
    from panoptic_perception.runtime.config import RuntimeConfig

    config = _head_config(drive_root, tmp_path / "first", tiny_model, iterations=2)
    trainer = Trainer(config)
    trainer.train(progress=False)
    state, model_config, meta = load_checkpoint(tmp_path / "first" / "last.pt")
    assert model_config.fusion.mode == "conv_head" and meta["iteration"] == 2
    trained = trainer.model.state_dict()
    for name in trained:
        assert torch.equal(state[name], trained[name].cpu()), name
    network, _, _ = load_checkpoint(tiny_model)
    assert set(state) - set(network) == {k for k in state if k.startswith(STATE_PREFIX)}

    runtime = RuntimeConfig(backend="torch", device="cpu", precision="fp32", warmup_frames=0)
    pipeline = Pipeline(PipelineConfig(model_path=str(tmp_path / "first" / "last.pt"), runtime=runtime,
                                       project_grid=False))
    assert pipeline.model_config.fusion.mode == "conv_head"
    torch.testing.assert_close(pipeline.backend.model.fusion.conv_head.reduce_weight,
                               trained[STATE_PREFIX + "reduce_weight"])

    # A second head run may start from a head checkpoint: its head is kept, not re-initialised.
    again = Trainer(dataclasses.replace(config, init_from=str(tmp_path / "first" / "last.pt"),
                                        out_dir=str(tmp_path / "second")))
    for name in (k for k in state if k.startswith(STATE_PREFIX)):
        assert torch.equal(again.model.state_dict()[name], state[name]), name


def test_head_stage_needs_training_crops_at_the_model_size(drive_root, tmp_path, tiny_model):
    config = _head_config(drive_root, tmp_path, tiny_model)
    trainer = Trainer(config)
    images = torch.zeros(1, 3, HEIGHT, WIDTH // 2)
    with pytest.raises(ConfigError, match="crop_width_px"):
        panoptic_head_losses(trainer.model, images, [{}], config.panoptic_head)
