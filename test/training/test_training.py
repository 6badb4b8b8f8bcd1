"""Training: one step lowers the loss; a resumed run continues exactly where it stopped."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from panoptic_perception.data.augment import AugmentConfig
from panoptic_perception.data.datasets import DatasetConfig
from panoptic_perception.errors import ModelFileError
from panoptic_perception.model.checkpoint import load_checkpoint
from panoptic_perception.model.config import load_model_config
from panoptic_perception.paths import CONFIG_DIR
from panoptic_perception.training.config import ScheduleConfig, TrainConfig
from panoptic_perception.training.trainer import Trainer, lr_factor

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 256, 128


@pytest.fixture(scope="module")
def drive_root(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    root = tmp_path_factory.mktemp("synth")
    DriveWriter(root, small_config(WIDTH, HEIGHT), seed=11).write(3)
    return root


def _config(drive_root, out_dir, iterations=4, **kwargs) -> TrainConfig:
    still = AugmentConfig(crop_height_px=HEIGHT, crop_width_px=WIDTH, min_scale=1.0, max_scale=1.0,
                          hflip_prob=0.0, photometric_prob=0.0)
    schedule = ScheduleConfig(iterations=iterations, base_lr=0.01, warmup_iterations=0, lr_steps=())
    return TrainConfig(train_data=DatasetConfig(root=str(drive_root)), augment=still, schedule=schedule,
                       batch_size=2, num_workers=0, device="cpu", out_dir=str(out_dir), log_every=1,
                       eval_every=10_000, checkpoint_every=2, **kwargs)


def _model_config():
    return dataclasses.replace(load_model_config(CONFIG_DIR / "model_resnet18.yaml"),
                               input_width=WIDTH, input_height=HEIGHT)


def _loss_on_first_batch(trainer: Trainer) -> float:
    images, targets = next(iter(trainer._loader()))
    torch.manual_seed(123)  # same RPN / RoI sampling for both measurements
    trainer.model.train()
    with torch.no_grad():
        return float(sum(trainer.model(images, targets).values()))


def test_training_steps_lower_the_loss(drive_root, tmp_path):
    trainer = Trainer(_config(drive_root, tmp_path, iterations=6), model_config=_model_config())
    before = _loss_on_first_batch(trainer)
    rows = trainer.train(progress=False)
    assert len(rows) == 6 and all(row["loss"] > 0 for row in rows)
    trainer.iteration = 0  # same first batch again
    after = _loss_on_first_batch(trainer)
    assert after < before, (before, after)


def test_resume_continues_from_saved_step_exactly(drive_root, tmp_path):
    straight = Trainer(_config(drive_root, tmp_path / "straight"), model_config=_model_config())
    straight.train(progress=False)

    first = Trainer(_config(drive_root, tmp_path / "split"), model_config=_model_config())
    first.train(iterations=2, progress=False)
    assert first.iteration == 2
    state, _, meta = load_checkpoint(tmp_path / "split" / "last.pt")  # weights_only load
    assert meta["iteration"] == 2

    resumed = Trainer(_config(drive_root, tmp_path / "split"), resume=True, model_config=_model_config())
    assert resumed.iteration == 2
    assert resumed.optimizer.state_dict()["state"], "momentum buffers were not restored"
    resumed.train(progress=False)
    assert resumed.iteration == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name} differs after resume")
    log = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3", "4"]


def test_resume_without_checkpoint_is_named(drive_root, tmp_path):
    with pytest.raises(ModelFileError, match="no last.pt"):
        Trainer(_config(drive_root, tmp_path / "empty"), resume=True, model_config=_model_config())


def test_lr_schedule_warmup_and_steps():
    s = ScheduleConfig(iterations=100, base_lr=0.1, warmup_iterations=10, warmup_factor=0.0,
                       lr_steps=(50, 80), lr_gamma=0.1)
    assert lr_factor(0, s) == 0.0
    assert lr_factor(5, s) == pytest.approx(0.5)
    assert lr_factor(10, s) == 1.0
    assert lr_factor(50, s) == pytest.approx(0.1)
    assert lr_factor(80, s) == pytest.approx(0.01)
