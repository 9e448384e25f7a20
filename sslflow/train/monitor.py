"""What a run reports: dvclive curves, throughput, the kNN monitor, and the final summary.

Step metrics are summed on the device and read back only at log points, so a
GPU step never waits for a host sync. Throughput counts dataset images (not
views) per second of training, without checkpoint and kNN time.
"""

from __future__ import annotations

import math
import sys
import time

import torch

from sslflow import paths
from sslflow.augment.views import VIEWS_PER_IMAGE
from sslflow.models.backbone import count_params_m, describe
from sslflow.precision import autocast
from sslflow.train import distributed as ddp
from sslflow.train.knn import extract_features, knn_top1
from sslflow.train.summary import pretrain_summary

LIVE_DIR = "dvclive"


class Monitor:
    def __init__(self, trainer, resume: bool) -> None:
        self.trainer = trainer
        self.is_main = trainer.env.is_main
        self.live = None
        if self.is_main:
            self.live = open_live(f"{LIVE_DIR}/{trainer.name}", resume)
        self.train_images = 0
        self.train_seconds = 0.0
        self.wall_before = 0.0  # wall time of earlier (interrupted) runs
        self.started = time.perf_counter()
        self.knn_top1 = math.nan
        self.knn_step = -1
        # the last logged window's means: where training ended, not an average over a run
        # that may be shorter than an epoch
        self.final_loss = math.nan
        self.final_acc = math.nan
        self._window = self._empty_window()
        self._tick = time.perf_counter()

    # ---- per step -----------------------------------------------------------------------

    def _empty_window(self) -> dict:
        device = self.trainer.device
        zero = torch.zeros((), device=device)
        return {"loss": zero.clone(), "acc": zero.clone(), "steps": 0, "images": 0, "seconds": 0.0}

    def start_window(self) -> None:
        """Start the clock (an epoch's first batch: loader set-up is not training time)."""
        self._tick = time.perf_counter()

    def pause(self) -> None:
        """Stop the clock (checkpoint, kNN)."""
        now = time.perf_counter()
        self._window["seconds"] += now - self._tick
        self._tick = now

    def resume(self) -> None:
        self._tick = time.perf_counter()

    def update(self, loss: torch.Tensor, metrics: dict, images: int) -> None:
        w = self._window
        w["loss"] += loss.float()
        w["acc"] += metrics.get("acc", torch.zeros((), device=loss.device)).float()
        w["steps"] += 1
        w["images"] += images * self.trainer.env.world_size

    def log(self, step: int, lr: float) -> dict:
        """Close the window: host sync, curves to dvclive; the window's numbers, for the progress report
        (empty when no step ran since the last log point)."""
        w = self._window
        if not w["steps"]:
            return {}
        self.pause()
        seconds = w["seconds"]
        self.train_seconds += seconds
        loss, acc = w["loss"].item() / w["steps"], w["acc"].item() / w["steps"]
        self.final_loss, self.final_acc = loss, acc
        self.train_images += w["images"]
        rate = w["images"] / seconds if seconds > 0 else math.nan
        self._window = self._empty_window()
        if self.live is not None:
            self.live.step = step
            for name, value in (("loss", loss), ("pretext_acc", acc), ("lr", lr), ("images_per_s", rate)):
                self.live.log_metric(f"train/{name}", value)
            self.live.make_summary()
        return {"loss": loss, "acc": acc, "lr": lr, "images_per_s": rate}

    # ---- kNN --------------------------------------------------------------------------

    def knn(self, step: int) -> float:
        """kNN top-1 of the current backbone on rank 0 (the others wait), logged at `step`."""
        self.pause()
        t = self.trainer
        value = math.nan
        if self.is_main:
            value = knn_monitor(
                t.params,
                t.method.backbone,
                t.device,
                t.cfg.knn,
                len(t.manifest["classes"]),
                batch_size=min(512, max(64, t.local_batch)),
                bf16=t.bf16,
            )
        self.knn_top1 = ddp.broadcast_float(value, self.trainer.env)
        self.knn_step = step
        if self.live is not None:
            self.live.step = step
            self.live.log_metric("knn/top1", self.knn_top1)
            self.live.make_summary()
        self.resume()
        return self.knn_top1

    # ---- resume -------------------------------------------------------------------------

    def state(self) -> dict:
        w = self._window
        return {
            "train_images": self.train_images,
            "train_seconds": self.train_seconds,
            "wall_s": self.wall_before + time.perf_counter() - self.started,
            "knn_top1": self.knn_top1,
            "knn_step": self.knn_step,
            "final_loss": self.final_loss,
            "final_acc": self.final_acc,
            "window": [w["loss"].item(), w["acc"].item(), w["steps"], w["images"], w["seconds"]],
        }

    def load_state(self, state: dict) -> None:
        self.train_images = state["train_images"]
        self.train_seconds = state["train_seconds"]
        self.wall_before = state["wall_s"]
        self.knn_top1 = state["knn_top1"]
        self.knn_step = state["knn_step"]
        self.final_loss = state["final_loss"]
        self.final_acc = state["final_acc"]
        loss, acc, steps, images, seconds = state["window"]
        device = self.trainer.device
        self._window = {
            "loss": torch.tensor(loss, device=device),
            "acc": torch.tensor(acc, device=device),
            "steps": steps,
            "images": images,
            "seconds": seconds,
        }

    # ---- the end ------------------------------------------------------------------------

    def summary(self, global_step: int, compiled: bool) -> dict:
        """metrics/<method>/pretrain.json."""
        t = self.trainer
        return pretrain_summary(
            method=t.name,
            backbone=describe(t.params.model),
            params_m=count_params_m(t.method.backbone),
            epochs=global_step / t.steps_per_epoch,
            steps=global_step,
            global_batch=t.cfg.batch_size,
            views=global_step * t.cfg.batch_size * VIEWS_PER_IMAGE[t.method.kind],
            world_size=t.env.world_size,
            final_loss=self.final_loss,
            final_pretext_acc=self.final_acc,
            knn_top1=self.knn_top1,
            images_per_s=self.train_images / self.train_seconds if self.train_seconds else math.nan,
            wall_s=self.wall_before + time.perf_counter() - self.started,
            precision="bf16" if t.bf16 else "fp32",
            compiled=compiled,
        )

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def knn_monitor(params, encoder, device, knn_cfg, num_classes: int, batch_size: int = 256, bf16: bool = False) -> float:
    """Weighted kNN top-1: the labelled train subset as memory bank, the first images the protocol scores on
    (the test split's, or the validation slice's under `eval.split: val`) as queries."""
    from sslflow.augment.loader import make_loader
    from sslflow.data.read import read_subset
    from sslflow.eval.split import eval_split

    common = {"kind": "eval", "batch_size": batch_size, "shuffle": False, "drop_last": False, "device": device}
    bank_loader = make_loader(params, split="train", keys=read_subset(knn_cfg.train_subset, paths.SHARDS), **common)
    query_loader = make_loader(params, **eval_split(params).scored, **common)
    with autocast(device, bf16):
        bank = extract_features(encoder, bank_loader, device)
        queries = extract_features(encoder, query_loader, device, limit=knn_cfg.val_samples)
    return knn_top1(bank, queries, knn_cfg.k, knn_cfg.temperature, num_classes)


def open_live(directory: str, resume: bool):
    """dvclive's logger, or None where it cannot write: not installed (a GPU node that carries
    only torch, DALI and sslflow), or a git repository with no commit yet (dvclive reads HEAD and
    fails there). Training goes on without curves, and says so in one line."""
    try:
        from dvclive import Live
        from scmrepo.exceptions import SCMError
    except ImportError as exc:
        print(f"{directory}: no training curves ({exc.name or 'dvclive'} is not installed)", file=sys.stderr)
        return None

    try:
        return Live(dir=directory, resume=resume, save_dvc_exp=False, dvcyaml=None)
    except SCMError as exc:
        print(f"{directory}: no training curves ({exc}: dvclive needs a first git commit)", file=sys.stderr)
        return None
