"""Process-group set-up for `torchrun` (env://), and the few collectives the loop needs.

Launched without torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything runs in
one process with no process group, so the same code serves a laptop and a cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sslflow.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda requested but no CUDA device is available")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """Join the torchrun job if there is one: nccl on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", init_method="env://", device_id=device)
        else:
            dist.init_process_group("gloo", init_method="env://")
    return DistEnv(rank, world_size, local_rank, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch(global_batch: int, world_size: int, key: str) -> int:
    """Per-rank batch; the global batch must split evenly so every rank steps in lockstep."""
    if global_batch < world_size or global_batch % world_size:
        raise UserError(f"{key}: {global_batch} must be a multiple of the number of processes ({world_size})")
    return global_batch // world_size


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank if it is true on any (a SIGTERM seen by one rank stops all at the same step)."""
    if not env.distributed:
        return flag
    value = torch.tensor([int(flag)], device=env.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_float(value: float, env: DistEnv) -> float:
    """Rank 0's value everywhere (the kNN monitor runs on rank 0 only)."""
    if not env.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
