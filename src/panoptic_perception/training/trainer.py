"""The training loop: SGD + warm-up + steps, AMP on CUDA, checkpoints, resume, CSV / TensorBoard
logs and periodic PQ on held-out frames through the same Pipeline the node runs."""
from __future__ import annotations

import copy
import csv
import logging
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from panoptic_perception.data.datasets import build_dataset
from panoptic_perception.errors import ConfigError, ModelFileError
from panoptic_perception.labels import load_label_space
from panoptic_perception.model.backbone_import import apply_backbone_weights, load_backbone_init
from panoptic_perception.model.checkpoint import apply_state_dict, load_checkpoint, save_checkpoint
from panoptic_perception.model.config import ModelConfig, load_model_config
from panoptic_perception.model.panoptic_fpn import build_model
from panoptic_perception.model.weights_file import is_url
from panoptic_perception.pipeline import resolve_path
from panoptic_perception.training import distributed
from panoptic_perception.training.config import ScheduleConfig, TrainConfig
from panoptic_perception.training.data import PassSampler, TrainingSamples, collate
from panoptic_perception.training.panoptic_head import (
    freeze_all_but_head,
    panoptic_head_losses,
    start_state,
    with_conv_head,
)

LOG = logging.getLogger("panoptic_perception.train")
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAIN_STATE = "train_state.pt"


def lr_factor(iteration: int, schedule: ScheduleConfig) -> float:
    """Linear warm-up from warmup_factor to 1, then x lr_gamma at each step."""
    factor = schedule.lr_gamma ** sum(iteration >= step for step in schedule.lr_steps)
    if iteration < schedule.warmup_iterations:
        alpha = iteration / schedule.warmup_iterations
        factor *= schedule.warmup_factor * (1 - alpha) + alpha
    return factor


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False,
                 model_config: Optional[ModelConfig] = None) -> None:
        self.config = config
        self.out_dir = Path(config.out_dir)  # relative to the working directory, like any CLI output
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dist = distributed.start(config.device)
        self.device = self.dist.device
        if config.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is the global batch: it must divide evenly over "
                              f"the {self.dist.world_size} processes")
        init_state = None
        if config.init_from:
            init_state, init_config, _ = load_checkpoint(resolve_path(config.init_from))
        if model_config is None:
            model_config = (init_config if config.model_config is None
                            else load_model_config(resolve_path(config.model_config)))
        self.model_config = model_config
        backbone_weights = None
        if config.backbone_init:
            source = config.backbone_init if is_url(config.backbone_init) else str(resolve_path(config.backbone_init))
            backbone_weights = load_backbone_init(source, self.model_config.backbone.name,
                                                  self.out_dir / "downloads")
            self.model_config = backbone_weights.config_for(self.model_config)
        self.head_stage = config.stage == "panoptic_head"
        if self.head_stage:
            # The checkpoint this stage writes carries fusion.mode conv_head with the head's weights,
            # so eval / predict / the node load it with no other setting.
            self.model_config = with_conv_head(self.model_config)
        self.label_space = load_label_space(self.model_config.label_space)
        torch.manual_seed(config.seed)
        self.model = build_model(self.model_config, self.label_space).to(self.device)
        if backbone_weights is not None and not resume:
            count = apply_backbone_weights(self.model, backbone_weights)
            LOG.info("backbone %s: %d tensors from %s (input %s)", backbone_weights.backbone, count,
                     config.backbone_init, backbone_weights.normalisation.input_format)
        if init_state is not None:
            if self.head_stage:
                init_state = start_state(self.model, init_state)
            apply_state_dict(self.model, init_state, config.init_from)
        if self.head_stage:
            freeze_all_but_head(self.model)
        self.optimizer = self._optimizer()
        # The loop runs through the wrapper (gradients averaged over processes); checkpoints and
        # evaluation use the plain module, so their files are the same as a single process's.
        self.train_model: torch.nn.Module = self.model
        if self.dist.enabled:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)  # an image without positives leaves the mask head unused
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.iteration = 0
        self.best_pq = -1.0
        if resume:
            self._resume()
        self.train_set = build_dataset(config.train_data)
        self.val_set = build_dataset(config.val_data) if config.val_data is not None else None
        self._writer = None

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for param in self.model.parameters():
            if not param.requires_grad:
                continue
            # norm scales/shifts and biases are not weight-decayed (detectron2's default)
            (no_decay if param.ndim <= 1 else decay).append(param)
        s = self.config.schedule
        groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if s.optimizer == "adam":
            return torch.optim.Adam(groups, lr=s.base_lr)
        return torch.optim.SGD(groups, lr=s.base_lr, momentum=s.momentum)

    # -- checkpoints --------------------------------------------------------------------------

    def save(self, name: str = LAST_CHECKPOINT, metrics: Optional[Dict[str, float]] = None) -> Path:
        """Write a checkpoint (the main process; every process must call it: RNG states are gathered)."""
        path = self.out_dir / name
        rng_states = distributed.gather_objects(self.dist, torch.get_rng_state()) if name == LAST_CHECKPOINT else []
        if not self.dist.is_main:
            return path
        meta = {"iteration": self.iteration, "best_pq": self.best_pq, **(metrics or {})}
        save_checkpoint(path, self.model.state_dict(), self.model_config, meta)
        if name == LAST_CHECKPOINT:
            # One RNG state per process, so each one's RPN / RoI sampling resumes where it stopped.
            state = {"iteration": self.iteration, "best_pq": self.best_pq,
                     "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                     "torch_rng": rng_states[0], "torch_rng_per_process": rng_states}
            tmp = self.out_dir / (TRAIN_STATE + ".tmp")
            torch.save(state, tmp)
            tmp.replace(self.out_dir / TRAIN_STATE)
        return path

    def _resume(self) -> None:
        last = self.out_dir / LAST_CHECKPOINT
        state_path = self.out_dir / TRAIN_STATE
        if not last.is_file() or not state_path.is_file():
            raise ModelFileError(f"--resume: no {LAST_CHECKPOINT} and {TRAIN_STATE} in {self.out_dir}")
        weights, saved_cfg, _ = load_checkpoint(last)
        if saved_cfg != self.model_config:
            raise ModelFileError(f"--resume: {last} was trained with another model config")
        apply_state_dict(self.model, weights, str(last))
        try:
            state = torch.load(state_path, map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            per_process = state.get("torch_rng_per_process") or [state["torch_rng"]]
            if len(per_process) != self.dist.world_size:
                LOG.warning("resuming a %d-process run with %d processes: the RNG streams restart from the first "
                            "process's, so sampling differs from the uninterrupted run", len(per_process),
                            self.dist.world_size)
            torch.set_rng_state(per_process[min(self.dist.rank, len(per_process) - 1)].cpu())
            self.iteration = int(state["iteration"])
            self.best_pq = float(state["best_pq"])
        except Exception as exc:  # noqa: BLE001 - any unreadable state is the same user error
            raise ModelFileError(f"--resume: {state_path} is unreadable: {exc}") from exc
        LOG.info("resumed from %s at iteration %d", last, self.iteration)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self) -> Dict[str, float]:
        from panoptic_perception.eval.run import evaluate_pipeline
        from panoptic_perception.pipeline import Pipeline, PipelineConfig
        from panoptic_perception.runtime.config import RuntimeConfig

        if self.val_set is None or self.config.eval_frames == 0:
            return {}
        module = copy.deepcopy(self.model).eval()
        runtime = RuntimeConfig(backend="torch", device=self.device.type, precision="fp32", warmup_frames=0)
        pipeline = Pipeline(PipelineConfig(runtime=runtime, project_grid=False), module=module,
                            model_config=self.model_config)
        result = evaluate_pipeline(pipeline, self.val_set, self.label_space, self.config.eval_frames)
        # PQResult numbers are already percentages
        return {"pq": result.all.pq, "sq": result.all.sq, "rq": result.all.rq,
                "pq_things": result.things.pq, "pq_stuff": result.stuff.pq, "miou": result.miou}

    # -- the loop -----------------------------------------------------------------------------

    def _loader(self):
        samples = TrainingSamples(self.train_set, self.label_space, self.config.augment, self.config.seed,
                                  self.config.min_instance_area_px)
        sampler = PassSampler(len(samples), self.config.batch_size, self.config.seed,
                              start_batch=self.iteration, num_shards=self.dist.world_size, shard=self.dist.rank)
        # Its own generator: creating a loader iterator must not draw from the global RNG, or a
        # resumed run's RPN / RoI sampling would drift from the uninterrupted run's.
        generator = torch.Generator().manual_seed(self.config.seed + self.iteration)
        return torch.utils.data.DataLoader(samples, batch_sampler=sampler, collate_fn=collate,
                                           num_workers=self.config.num_workers, generator=generator,
                                           persistent_workers=self.config.num_workers > 0)

    def _log(self, row: Dict[str, float], file_name: str = "log.csv") -> None:
        path = self.out_dir / file_name
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                self._writer = False
        if self._writer:
            for key, value in row.items():
                if key != "iteration":
                    self._writer.add_scalar(key, value, int(row["iteration"]))

    def _train_mode(self) -> None:
        # The head stage keeps the frozen network in eval mode: BatchNorm statistics stay fixed and
        # the RPN / RoI heads produce inference-time detections, the head's real inputs.
        if self.head_stage:
            self.model.eval()
        else:
            self.model.train()

    def _losses(self, images: torch.Tensor, targets) -> Dict[str, torch.Tensor]:
        if self.head_stage:
            return panoptic_head_losses(self.model, images, targets, self.config.panoptic_head)
        return self.train_model(images, targets)

    def train(self, iterations: Optional[int] = None, progress: bool = True) -> List[Dict[str, float]]:
        """Run until schedule.iterations (or `iterations` more); returns the logged rows."""
        from tqdm import tqdm

        s = self.config.schedule
        stop = s.iterations if iterations is None else min(s.iterations, self.iteration + iterations)
        rows: List[Dict[str, float]] = []
        if self.iteration >= stop:
            return rows
        self._train_mode()
        batches = iter(self._loader())
        bar = tqdm(total=stop, initial=self.iteration, disable=not progress or not self.dist.is_main, unit="it",
                   dynamic_ncols=True)
        window: Dict[str, float] = {}
        window_start = time.perf_counter()
        window_n = 0
        while self.iteration < stop:
            images, targets = next(batches)
            images = images.to(self.device, non_blocking=True)
            targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
            for group in self.optimizer.param_groups:
                group["lr"] = s.base_lr * lr_factor(self.iteration, s)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                losses = self._losses(images, targets)
            total = sum(losses.values())
            # Every process sees the same averaged losses: they log the same numbers and, on a
            # non-finite loss, all stop together instead of leaving the others waiting.
            names = list(losses)
            averaged = distributed.mean_over_processes(self.dist, torch.stack([total.float()] + [
                losses[k].float() for k in names]))
            if not torch.isfinite(averaged[0]):
                raise FloatingPointError(f"loss is {averaged[0].item()} at iteration {self.iteration}: "
                                         f"{ {k: float(v) for k, v in zip(names, averaged[1:])} }")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if s.grad_clip_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.iteration += 1
            window_n += 1
            for key, value in zip(names, averaged[1:].tolist()):
                window[key] = window.get(key, 0.0) + value
            window["loss"] = window.get("loss", 0.0) + float(averaged[0])
            bar.update(1)
            bar.set_postfix(loss=f"{float(averaged[0]):.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}")
            if self.iteration % self.config.log_every == 0 or self.iteration == stop:
                elapsed = time.perf_counter() - window_start
                row = {"iteration": self.iteration, "lr": self.optimizer.param_groups[0]["lr"],
                       **{k: v / window_n for k, v in window.items()},
                       "images_per_s": window_n * self.config.batch_size / max(elapsed, 1e-9)}
                rows.append(row)
                if self.dist.is_main:
                    self._log(row)
                window, window_n, window_start = {}, 0, time.perf_counter()
            if self.iteration % self.config.checkpoint_every == 0 or self.iteration == stop:
                self.save()
            if self.iteration % self.config.eval_every == 0 or self.iteration == stop:
                # Evaluated by the main process alone; the others wait for its result in the gather.
                metrics = self.evaluate() if self.dist.is_main else {}
                self._train_mode()
                best = distributed.gather_objects(self.dist, metrics)[0]
                if best and best["pq"] > self.best_pq and not math.isnan(best["pq"]):
                    self.best_pq = best["pq"]
                    self.save(BEST_CHECKPOINT, best)
                    self.save()
                if metrics:
                    bar.write(f"iteration {self.iteration}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                          metrics.items()))
                    self._log({"iteration": self.iteration, **{f"val_{k}": v for k, v in metrics.items()}},
                              "eval.csv")
        bar.close()
        return rows
