"""Process-group set-up for `torchrun` (env://), and the few collectives the loop needs.

Launched without torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything runs in
one process with no process group, so the same code serves a laptop and a cluster.
"""

from __future__ import annotations

import os
import warnings
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


def world_size() -> int:
    """Processes in the job, from torchrun's WORLD_SIZE (1 without torchrun)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(value))
    except ValueError:
        raise UserError(f"WORLD_SIZE={value!r}: not a number of processes") from None


def quiet_other_ranks() -> None:
    """Python warnings from rank 0 only: every rank runs the same code and would print the same
    warning, N copies of it in a log; rank 0's copy says all there is to say."""
    if int(os.environ.get("RANK", "0")) != 0:
        warnings.simplefilter("ignore")


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """Join the torchrun job if there is one: nccl on GPUs, gloo on CPUs."""
    processes = world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if processes > 1 and not dist.is_initialized():
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise UserError(f"WORLD_SIZE={processes} but {' and '.join(missing)} not set: launch with torchrun")
        store = _attempt_store()
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", store=store, rank=rank, world_size=processes, device_id=device)
        else:
            dist.init_process_group("gloo", store=store, rank=rank, world_size=processes)
    return DistEnv(rank, processes, local_rank, device)


def _attempt_store() -> dist.Store:
    """torchrun's env:// store, with this restart attempt's keys kept apart from the previous attempt's.

    The elastic agent serves one store for the whole job, and workers it restarts
    (--max-restarts) reuse it as it is: a rank could read the address its peer
    published in the failed attempt and fail with 'connection refused' (or wait on
    a dead peer). A prefix per TORCHELASTIC_RESTART_COUNT gives each attempt its own keys.
    """
    from torch.distributed.rendezvous import rendezvous

    store, _, _ = next(rendezvous("env://"))
    return dist.PrefixStore(f"sslflow/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


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


def gather_objects(value, env: DistEnv) -> list:
    """Every rank's `value`, in rank order, on every rank (each rank's loader state goes into rank 0's checkpoint)."""
    if not env.distributed:
        return [value]
    values: list = [None] * env.world_size
    dist.all_gather_object(values, value)
    return values
