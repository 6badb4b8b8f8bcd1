"""Data-parallel training across processes (torchrun): who this process is, and the few collectives
the training loop needs.

Under `torchrun --nproc_per_node N` every process gets RANK / WORLD_SIZE / LOCAL_RANK in its
environment; without them the run is a single process and every collective is the identity, so the
training loop has one code path. GPUs talk through NCCL (one GPU per process, cuda:LOCAL_RANK),
CPUs through gloo.

The global batch (TrainConfig.batch_size) is split evenly over the processes, each reading its own
slice of every global batch, and DistributedDataParallel averages the gradients: N processes with
batch B/N each take the same step as one process with batch B (the learning rate belongs to the
global batch; see TrainConfig).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, List

import torch
import torch.distributed as dist

from panoptic_perception.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistContext:
    world_size: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints, logs and evaluations."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from exc


def start(device_name: str) -> DistContext:
    """This process's place in the run; joins the process group when torchrun started it."""
    world_size, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train: device is 'cuda' but no CUDA device is available")
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"train: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(world_size, rank, local_rank, device)


def stop(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(context: DistContext, values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over all processes (a copy; the identity for one process)."""
    values = values.detach().clone()
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= context.world_size
    return values


def gather_objects(context: DistContext, obj: Any) -> List[Any]:
    """Every process's `obj`, in rank order (plain picklable data such as RNG states)."""
    if not context.enabled:
        return [obj]
    gathered: List[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
