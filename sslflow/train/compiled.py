"""torch.compile for the training step, with the eager step to fall back on.

A compiler failure is not the user's mistake and should not cost them the run:
a Triton or Inductor bug on one GPU, driver or torch version (an H200 with
torch 2.11 failed inside Triton's make_ttgir on every method). Compilation
happens lazily, at the first forward and the first backward, so a failure
shows inside the first step. That step is tried compiled; if it raises on any
rank, every rank (they agree through one all-reduce) puts the model, the
optimizer, the schedule and the random generators back as they were before it,
says so in one line, and takes it again eager, as every later step is taken.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from sslflow.train import distributed as ddp
from sslflow.train.checkpoint import rng_state, set_rng_state

T = TypeVar("T")


class CompiledStep:
    """The network the step calls: compiled if asked, eager from the first step that fails to compile.

    `build(compile)` wraps the method (DDP, torch.compile); it is called again, with False, on a
    failure, so a DDP wrapper left mid-iteration by the failed step is not reused.
    """

    def __init__(self, build: Callable[[bool], nn.Module], compile: bool, env: ddp.DistEnv, label: str) -> None:
        self.build, self.env, self.label = build, env, label
        self.compiled = compile
        self.net = build(compile)
        self._proven = not compile

    def run(self, step: Callable[[nn.Module], T], state: list) -> T:
        """`step(net)`, after which a compile failure has been handled; `state`: the objects with
        `state_dict`/`load_state_dict` that the step changes (the method, its optimizer, its schedule)."""
        if self._proven:
            return step(self.net)
        before = [copy.deepcopy(obj.state_dict()) for obj in state], rng_state()
        error: Exception | None = None
        try:
            result = step(self.net)
        except Exception as exc:  # noqa: BLE001 - any compiler failure; a real bug raises again eager
            error = exc
        self._proven = True
        if not ddp.any_rank(error is not None, self.env):
            return result
        if self.env.is_main:
            print(f"{self.label}: torch.compile failed ({_first_line(error)}); continuing eager", file=sys.stderr)
        states, rng = before
        for obj, saved in zip(state, states, strict=True):
            obj.load_state_dict(saved)
        set_rng_state(rng)
        self.compiled = False
        self.net = self.build(False)
        return step(self.net)


def _first_line(error: BaseException | None) -> str:
    """The exception's type and the first line of its message; where that line only introduces
    what follows (dynamo's "backend='inductor' raised:", Inductor's "An exception occurred in a
    subprocess:"), the cause's first line, or else the message's last line (the subprocess's error)."""
    if error is None:
        return "on another rank"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].endswith(":"):
        cause = getattr(error, "inner_exception", None) or error.__cause__  # dynamo keeps the backend's own
        if cause is not None:
            return f"{type(error).__name__}: {_first_line(cause)}"
        return f"{type(error).__name__}: {lines[-1]}"
    return f"{type(error).__name__}: {lines[0]}"
