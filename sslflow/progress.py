"""How a training loop tells a person where it stands: pretraining, fine-tuning and distillation alike
(sslflow/train and sslflow/eval both speak through it, so it sits below both).

On a terminal, a tqdm bar with the latest numbers. Anywhere else (a file, a pipe
that Slurm, CI or a Prefect task reads) a bar is useless: its carriage returns
make one unreadable line of the log and it refreshes by time, not by step. There
a plain line is printed every `log_every` steps and at the last one:

    pretrain simclr: step 40/400  epoch 1/1  loss 4.1234  acc 23.4%  lr 0.25  812 img/s  eta 2:31

Only the process that owns the output speaks (rank 0 under torchrun). The run
ends with one summary line (see `summary_line`). `parse_step` reads the step
back from a line, for whoever follows a log (the Prefect flow's progress artifacts).
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

_STEP = re.compile(r": step (\d+)/(\d+)  ")


def format_duration(seconds: float) -> str:
    """'2:31', '1:02:03'; '?' when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.0f}"


def progress_line(
    desc: str,
    step: int,
    total: int,
    *,
    epoch: int,
    epochs: int,
    loss: float,
    lr: float,
    images_per_s: float,
    eta_s: float,
    acc: float | None = None,
) -> str:
    """One step's line; `acc` (the pretext task's accuracy) only where the loop has one."""
    parts = [f"{desc}: step {step}/{total}", f"epoch {epoch}/{epochs}", f"loss {loss:.4f}"]
    if acc is not None:
        parts.append(f"acc {_percent(acc)}")
    parts += [f"lr {lr:.4g}", f"{_rate(images_per_s)} img/s", f"eta {format_duration(eta_s)}"]
    return "  ".join(parts)


def parse_step(line: str) -> tuple[int, int] | None:
    """(step, total) of a progress line, None for any other line."""
    match = _STEP.search(line)
    return (int(match[1]), int(match[2])) if match else None


def summary_line(
    desc: str,
    *,
    steps: int,
    wall_s: float,
    encoder: Path | str | None = None,
    loss: float | None = None,
    acc: float | None = None,
    knn_top1: float | None = None,
    images_per_s: float | None = None,
) -> str:
    """The run's last line: where its result went, how far it got, its final numbers, its cost.
    Numbers that do not apply (a control trains nothing) are left out."""
    parts = [f"{desc}: {encoder}" if encoder else f"{desc}: done", f"{steps} steps"]
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.4f}")
    if acc is not None and math.isfinite(acc):
        parts.append(f"acc {_percent(acc)}")
    if knn_top1 is not None and math.isfinite(knn_top1):
        parts.append(f"kNN top-1 {_percent(knn_top1)}")
    if images_per_s is not None and math.isfinite(images_per_s):
        parts.append(f"{_rate(images_per_s)} img/s")
    parts.append(f"{wall_s:.1f} s")
    return "  ".join(parts)


class Progress:
    """A loop's progress: a bar on a terminal, a line every `log_every` steps elsewhere, nothing when not `enabled`.

    `initial` is where a resumed run starts: its ETA counts only the steps this process ran.
    """

    def __init__(
        self,
        desc: str,
        total: int,
        *,
        log_every: int,
        epochs: int,
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        leave: bool = True,
    ) -> None:
        self.desc, self.total, self.log_every, self.epochs = desc, total, log_every, epochs
        self.stream = stream if stream is not None else sys.stderr
        terminal = enabled and _isatty(self.stream)
        self.lines = enabled and not terminal
        self.bar = (
            tqdm(
                total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=leave, file=self.stream
            )
            if terminal
            else None
        )
        self.first_step = initial
        self.started = time.perf_counter()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def due(self, step: int) -> bool:
        """A log point: every `log_every` steps, and the last step."""
        return step % self.log_every == 0 or step == self.total

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def log(
        self,
        step: int,
        *,
        epoch: int,
        loss: float,
        lr: float,
        images_per_s: float,
        acc: float | None = None,
    ) -> None:
        """The numbers at `step`: on the bar, or as a line."""
        if self.bar is not None:
            postfix = {"loss": f"{loss:.3f}", "lr": f"{lr:.3g}", "img/s": _rate(images_per_s)}
            if acc is not None:
                postfix["acc"] = _percent(acc)
            self.bar.set_postfix(postfix, refresh=False)
        elif self.lines:
            line = progress_line(
                self.desc,
                step,
                self.total,
                epoch=epoch,
                epochs=self.epochs,
                loss=loss,
                lr=lr,
                images_per_s=images_per_s,
                eta_s=self.eta(step),
                acc=acc,
            )
            print(line, file=self.stream, flush=True)

    def eta(self, step: int) -> float:
        """Seconds left at this process's pace so far (checkpoints and kNN included: it is wall time)."""
        done = step - self.first_step
        if done <= 0:
            return math.nan
        return (time.perf_counter() - self.started) / done * (self.total - step)

    def done(self, **numbers) -> None:
        """Without a terminal, the closing line (`summary_line`'s numbers); a bar needs none."""
        if self.lines:
            print(summary_line(self.desc, **numbers), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
