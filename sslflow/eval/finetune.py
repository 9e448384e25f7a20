"""Fine-tuning a pretrained encoder on a labelled subset, and scoring any classifier on val.

SimCLR (appendix B.5) fine-tunes the whole network with Nesterov SGD, lr
0.05 x B/256, no weight decay, crop + flip as the only augmentation. SimCLRv2
fine-tunes from the first layer of its 3-layer projection head rather than from
the backbone output. The same loop trains a `random_init` encoder, which makes
it the supervised baseline trained from scratch on the subset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sslflow.eval.device import to_model
from sslflow.eval.linear_probe import topk_accuracy
from sslflow.precision import autocast
from sslflow.progress import Progress


class Batches(Protocol):
    """One epoch's batches and the way to the next epoch's (what `make_loader` returns)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[dict]: ...

    def next_epoch(self) -> Batches: ...


# (model, batch) -> scalar loss
LossFn = Callable[[nn.Module, dict], torch.Tensor]


def build_classifier(encoder_path: Path | str, *, head_layers: int, n_classes: int, device: str) -> nn.Module:
    """encoder (+ head layers) followed by a new linear layer, every parameter trainable; convolutions
    channels-last (oneDNN's and cuDNN's fast layout: 1.6x on the CPU profile's ResNet-18)."""
    from sslflow.models.encoder import load_encoder

    encoder, info = load_encoder(encoder_path, head_layers=head_layers, device=device)
    encoder.requires_grad_(True)
    fc = nn.Linear(info["out_dim"], n_classes)
    nn.init.normal_(fc.weight, std=0.01)  # as SimCLR's supervised head: starts near uniform predictions
    nn.init.zeros_(fc.bias)
    return nn.Sequential(encoder, fc).to(device, memory_format=torch.channels_last)


def cross_entropy_loss(device: str) -> LossFn:
    """The fine-tuning loss: cross-entropy against the subset's labels."""

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        return F.cross_entropy(model(to_model(batch["image"], device)), batch["label"].to(device))

    return loss


def train(
    model: nn.Module,
    batches: Batches,
    loss_fn: LossFn,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    desc: str,
    log_every: int = 10,
    max_steps: int | None = None,
    bf16: bool = False,
) -> Trained:
    """Nesterov SGD with a per-step cosine decay to zero; returns what the run did.

    max_steps ends the run (and its cosine) early, in its last epoch: a fraction of an epoch
    over a large unlabelled set is what distillation can afford on a CPU. bf16: the forward
    pass under bf16 autocast (sslflow.precision), as pretraining runs it.

    Progress as pretraining shows it (sslflow.progress): a bar on a terminal, a line
    every `log_every` steps elsewhere, and a closing line.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    total = epochs * len(batches)
    if max_steps is not None:
        total, epochs = min(total, max_steps), min(epochs, math.ceil(max_steps / max(1, len(batches))))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
    losses: list[float] = []
    step, images, started = 0, 0, time.perf_counter()
    window = Window()
    with Progress(desc, total, log_every=log_every, epochs=epochs, leave=False) as progress:
        for epoch in range(epochs):
            model.train()
            epoch_loss, epoch_steps = 0.0, 0
            if epoch:
                batches = batches.next_epoch()
            for batch in batches:
                with autocast(device, bf16):
                    loss = loss_fn(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                lr_now = sched.get_last_lr()[0]
                sched.step()
                value, count = loss.item(), len(batch["image"])
                epoch_loss, epoch_steps, step, images = epoch_loss + value, epoch_steps + 1, step + 1, images + count
                window.add(value, count)
                progress.advance()
                if progress.due(step):
                    loss_mean, rate = window.close()
                    progress.log(step, epoch=epoch + 1, loss=loss_mean, lr=lr_now, images_per_s=rate)
                if step == total:
                    break
            losses.append(epoch_loss / max(1, epoch_steps))
        wall = time.perf_counter() - started
        progress.done(
            steps=step,
            loss=losses[-1] if losses else None,
            images_per_s=images / wall if wall > 0 else None,
            wall_s=wall,
        )
    model.eval()
    return Trained(losses, step, images)


@dataclass(frozen=True)
class Trained:
    losses: list[float]  # the mean loss of each epoch
    steps: int
    images: int  # the images the model trained on, repeats counted


class Window:
    """Mean loss and images/s since the last log point."""

    def __init__(self) -> None:
        self.loss, self.steps, self.images, self.tick = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, images: int) -> None:
        self.loss, self.steps, self.images = self.loss + loss, self.steps + 1, self.images + images

    def close(self) -> tuple[float, float]:
        now = time.perf_counter()
        seconds = now - self.tick
        result = (self.loss / max(1, self.steps), self.images / seconds if seconds > 0 else math.nan)
        self.loss, self.steps, self.images, self.tick = 0.0, 0, 0, now
        return result


def predict(
    model: nn.Module, batches: Iterable[dict], device: str, desc: str = "predict", bf16: bool = False
) -> tuple[torch.Tensor, np.ndarray]:
    """(logits, labels) over every batch, model in eval mode (BN running statistics)."""
    model.eval()
    logits, labels = [], []
    with torch.inference_mode(), autocast(device, bf16):
        for batch in tqdm(batches, desc=desc, disable=None, leave=False):
            logits.append(model(to_model(batch["image"], device)).float().cpu())
            labels.append(batch["label"].cpu())
    return torch.cat(logits), torch.cat(labels).numpy()


def evaluate(
    model: nn.Module, batches: Iterable[dict], device: str, desc: str = "val", bf16: bool = False
) -> tuple[float, float]:
    """Top-1 and top-5 of a classifier over an eval loader."""
    logits, labels = predict(model, batches, device, desc, bf16)
    return topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5)
