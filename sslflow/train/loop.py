"""The one pretraining loop every method shares.

One process, or one per device under `torchrun` (DDP; SyncBN on GPUs), bf16
autocast and channels_last on GPUs, optional torch.compile, LARS/SGD/AdamW with
linear warmup and cosine decay. Every `checkpoint_every` steps (and at the end,
and on SIGTERM) the full state goes to models/<method>/last.pt; running the same
command again continues from it, the loader from the same position (the DALI
pipeline's own checkpoint is part of it), so on CPU a resumed run ends with the
weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sslflow import paths
from sslflow.augment.views import VIEWS_PER_IMAGE
from sslflow.errors import UserError
from sslflow.eval.split import eval_split
from sslflow.methods.base import Method
from sslflow.methods.registry import build_method
from sslflow.precision import autocast, use_bf16
from sslflow.progress import Progress
from sslflow.schedule import TrainCfg, knn_steps, method_train_cfg, run_steps
from sslflow.signals import TERMINATED_EXIT
from sslflow.testpoints import pause_point
from sslflow.train import distributed as ddp
from sslflow.train.checkpoint import config_hash, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sslflow.train.compiled import CompiledStep
from sslflow.train.monitor import Monitor
from sslflow.train.optim import build_optimizer, build_scheduler, scaled_lr

PREEMPTED_EXIT = TERMINATED_EXIT  # what a scheduler expects from a pre-empted job (sslflow.signals)
# train keys that change how a run is watched or executed, not what it computes: a checkpoint
# written with other values of these still resumes
OPERATIONAL = {"log_every", "checkpoint_every", "threads", "knn", "compile", "device"}


class StopRequest:
    """SIGTERM sets a flag; the loop checkpoints at the next step and exits (pre-emption)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame) -> None:
        self.requested = True


@dataclass
class Position:
    """Where training stands: the next batch to read is batch `step_in_epoch` of `epoch`."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


@dataclass
class Result:
    method: Method
    in_channels: int
    summary: dict


def pretrain(params, method: str, *, fresh: bool = False) -> Result | None:
    """Train `method` to the end (resuming from last.pt unless `fresh`); rank 0 gets the result, other ranks None."""
    ddp.quiet_other_ranks()
    cfg = method_train_cfg(params.train, params.pretrain, method)
    # before joining the process group: every rank refuses the same bad batch at once instead
    # of some waiting in the rendezvous for ranks that have already exited
    ddp.check_batch(cfg.batch_size, ddp.world_size(), batch_key(params, method))
    env = ddp.init_distributed(cfg.device)
    try:
        trainer = Trainer(params, method, cfg, env)
        summary = trainer.run(fresh=fresh)
        return Result(trainer.method, trainer.in_channels, summary) if env.is_main else None
    finally:
        ddp.shutdown()


class Trainer:
    def __init__(self, params, method: str, cfg: TrainCfg, env: ddp.DistEnv) -> None:
        from sslflow.augment.loader import in_channels
        from sslflow.data.manifest import check_shard_sizes, load_manifest

        self.params, self.name, self.cfg, self.env = params, method, cfg, env
        self.local_batch = ddp.check_batch(cfg.batch_size, env.world_size, batch_key(params, method))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.manifest = load_manifest()
        split = eval_split(params)
        check_shard_sizes(self.manifest, paths.SHARDS, split.shard_splits)
        self.in_channels = in_channels(params)
        self.device = env.device
        self.bf16 = use_bf16(cfg.precision, self.device)
        torch.manual_seed(params.seed)  # the same initial weights on every rank and every run
        self.train_exclude = split.train_exclude  # the validation slice, under eval.split: val
        self.method: Method = build_method(method, params, self.in_channels, len(self.manifest["classes"]))
        self.method.to(self.device)
        if cfg.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.sync_bn = env.distributed and self.device.type == "cuda"  # SyncBatchNorm has no CPU kernel
        if self.sync_bn:
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.run_id = config_hash(
            params.seed,
            params.augment.model_dump(),
            params.model.model_dump(),
            cfg.model_dump(exclude=OPERATIONAL),
            getattr(params.pretrain, method).model_dump(),
            params.eval.split,
            [s["sha256"] for s in self.manifest["splits"]["train"]["shards"]],
            _source_digest(),
        )

    # ---- set-up -------------------------------------------------------------------------

    def loader(self, epoch: int, skip: int = 0, state: dict | None = None):
        """This rank's loader from batch `skip` of `epoch`; `state`: its own from a checkpoint."""
        from sslflow.augment.loader import make_loader

        return make_loader(
            self.params,
            kind=self.method.kind,
            split="train",
            batch_size=self.local_batch,
            rank=self.env.rank,
            world_size=self.env.world_size,
            epoch=epoch,
            skip_batches=skip,
            exclude=self.train_exclude,
            device=self.device,
            state=state,
        )

    def wrap(self, compile: bool) -> nn.Module:
        """What the step calls: DDP over the method when distributed, compiled if asked."""
        net: nn.Module = self.method
        if self.env.distributed:
            net = nn.parallel.DistributedDataParallel(
                net,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                # SyncBN keeps running stats equal already; at init they are equal on every rank
                # anyway (same seed, same checkpoint), which DDP checks by broadcasting them once
                forward_sync_buffers=not self.sync_bn,
            )
        if compile:
            net = torch.compile(net)
        return net

    def restore(self, fresh: bool) -> dict | None:
        """The checkpoint to continue from, if there is one written by this same run."""
        path = paths.checkpoint(self.name)
        state = None if fresh else load_checkpoint(path, self.device)
        if state is not None and state.get("run_id") != self.run_id:
            if self.env.is_main:
                print(f"{path}: written with other params, data or code; starting over", file=sys.stderr)
            state = None
        if state is not None and state["world_size"] != self.env.world_size:
            raise UserError(
                f"{path}: written by {state['world_size']} process(es), now {self.env.world_size}; "
                "rerun with the same number or delete it to start over"
            )
        step = ddp.broadcast_float(float(state["position"][2]) if state else -1.0, self.env)
        if (state["position"][2] if state else -1) != step:
            raise UserError(f"{path}: not the same on every node; put {paths.MODELS} on a shared filesystem")
        if state is not None and self.env.is_main:  # the log says a run continued (after a kill, a restart)
            print(f"{path}: resuming from step {state['position'][2]}", file=sys.stderr)
        return state

    # ---- the loop -------------------------------------------------------------------------

    def run(self, fresh: bool = False) -> dict:
        state = self.restore(fresh)
        pos = Position(*state["position"]) if state else Position()
        loader = None if state else self.loader(0)
        self.steps_per_epoch = state["steps_per_epoch"] if state else len(loader)
        self.total_steps = run_steps(self.cfg, self.steps_per_epoch, VIEWS_PER_IMAGE[self.method.kind])
        total_steps = self.total_steps
        knn_at = knn_steps(total_steps, self.cfg.knn.points)
        warmup_steps = round(self.cfg.warmup_epochs * self.steps_per_epoch)
        optimizer = build_optimizer(self.method, self.cfg, scaled_lr(self.cfg, self.cfg.batch_size))
        scheduler = build_scheduler(optimizer, warmup_steps, total_steps)
        monitor = Monitor(self, resume=state is not None)
        if state:
            self.method.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            monitor.load_state(state["monitor"])
            pause_point("pretrain.resumed", pos.global_step)
        net = CompiledStep(self.wrap, self.cfg.compile, self.env, f"pretrain {self.name}")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        def checkpoint(done: bool = False) -> None:
            loader_states = ddp.gather_objects(loader.state() if loader is not None else None, self.env)
            if not self.env.is_main:
                return
            ends_epoch = pos.step_in_epoch == self.steps_per_epoch
            save_checkpoint(
                paths.checkpoint(self.name),
                {
                    "method": self.name,
                    "run_id": self.run_id,
                    "world_size": self.env.world_size,
                    "position": [pos.epoch + 1, 0, pos.global_step]
                    if ends_epoch
                    else [pos.epoch, pos.step_in_epoch, pos.global_step],
                    "steps_per_epoch": self.steps_per_epoch,
                    "done": done,
                    "model": self.method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_state(),
                    "loader": loader_states,
                    "monitor": monitor.state(),
                },
            )

        progress = Progress(
            f"pretrain {self.name}",
            total_steps,
            log_every=self.cfg.log_every,
            epochs=math.ceil(total_steps / self.steps_per_epoch),
            initial=pos.global_step,
            enabled=self.env.is_main,
        )
        with StopRequest() as stop, progress:
            while pos.global_step < total_steps:
                if loader is None:
                    loader = self.loader(pos.epoch, pos.step_in_epoch, state["loader"][self.env.rank])
                monitor.start_window()
                for batch in loader:
                    loss, metrics, images = self.step(net, batch, optimizer, scheduler)
                    pos.step_in_epoch += 1
                    pos.global_step += 1
                    monitor.update(loss, metrics, images)
                    progress.advance()
                    if pos.global_step % self.cfg.log_every == 0 or self.step_ends_epoch(pos.global_step):
                        self.report(progress, monitor, pos, scheduler.get_last_lr()[0])
                    if pos.global_step in knn_at and pos.global_step != total_steps:
                        monitor.knn(pos.global_step)
                    if pos.global_step % self.cfg.checkpoint_every == 0:
                        monitor.pause()
                        checkpoint()
                        pause_point("pretrain.checkpoint", pos.global_step)
                        monitor.resume()
                    if self._should_stop(stop, pos):
                        checkpoint()
                        self._exit_preempted(pos)
                    if pos.global_step == total_steps:
                        break
                if pos.step_in_epoch == self.steps_per_epoch:
                    pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
                    loader = loader.next_epoch()  # the same pipeline goes on
            if monitor.knn_step != total_steps:  # the last point (also after a kill between the last step and it)
                monitor.knn(total_steps)
        if not (state and state["done"]):
            checkpoint(done=True)
        summary = monitor.summary(pos.global_step, compiled=net.compiled)
        monitor.close()
        return summary

    def report(self, progress: Progress, monitor: Monitor, pos: Position, lr: float) -> None:
        """Close the monitor's window (curves) and show its numbers at this step."""
        numbers = monitor.log(pos.global_step, lr)
        if numbers:
            progress.log(pos.global_step, epoch=pos.epoch + 1, **numbers)

    def step_ends_epoch(self, global_step: int) -> bool:
        """The last step of an epoch, or of a run that max_steps cuts short."""
        return global_step % self.steps_per_epoch == 0 or global_step == self.total_steps

    def _exit_preempted(self, pos: Position) -> None:
        if self.env.is_main:
            print(
                f"pretrain {self.name}: stopped by SIGTERM at step {pos.global_step}; "
                f"{paths.checkpoint(self.name)} saved, rerun the same command to resume",
                file=sys.stderr,
            )
        # leave together: the first rank out makes torchrun stop the others, so none may leave before
        # rank 0 has written last.pt and said so
        ddp.barrier(self.env)
        raise SystemExit(PREEMPTED_EXIT)

    def step(self, net: CompiledStep, batch: dict, optimizer, scheduler) -> tuple[torch.Tensor, dict, int]:
        batch = to_device(batch, self.device, self.cfg.channels_last)
        loss, metrics = net.run(
            lambda module: train_step(module, self.method, batch, optimizer, scheduler, self.bf16, self.cfg.grad_clip),
            state=[self.method, optimizer, scheduler],
        )
        return loss, metrics, self.method.batch_images(batch)

    def _should_stop(self, stop: StopRequest, pos: Position) -> bool:
        """Single process: every step. Distributed: every log interval, agreed by all ranks."""
        if not self.env.distributed:
            return stop.requested
        if pos.global_step % self.cfg.log_every:
            return False
        return ddp.any_rank(stop.requested, self.env)


def batch_key(params, method: str) -> str:
    """The params key the method's global batch comes from (for error messages)."""
    return f"pretrain.{method}.batch_size" if getattr(params.pretrain, method).batch_size else "train.batch_size"


def _source_digest() -> str:
    """The code a checkpoint was trained with (the packages dvc.yaml lists as pretrain deps)."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(p for part in ("augment", "models", "methods", "train") for p in (root / part).rglob("*.py"))
    return config_hash([(str(p.relative_to(root)), p.read_text()) for p in files])


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """Tensors to the device (no-op when the loader already put them there), images channels_last if asked."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if value.ndim == 4:
                value = value.contiguous(memory_format=fmt)
        moved[key] = value
    return moved


def train_step(
    net: nn.Module, method: Method, batch: dict, optimizer, scheduler, bf16: bool, grad_clip: float | None = None
) -> tuple[torch.Tensor, dict]:
    """One optimisation step: forward (bf16 autocast if asked), backward, update, schedule, momentum encoder.

    grad_clip caps the gradient's global norm: a classification head on un-normalised features
    (rotation, relative position, the supervised control) otherwise blows its loss up to several
    times chance in the first warm-up steps, even at a tenth of the peak rate.
    """
    with autocast(next(method.parameters()).device, bf16):
        loss, metrics = net(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(method.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    method.after_step()
    return loss.detach(), metrics
