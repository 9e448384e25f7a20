"""Resumable training state in models/<method>/last.pt.

Only tensors and primitive types go in (RNG states as tensors), so the file
loads with ``torch.load(weights_only=True)``: a checkpoint can be read without
trusting whoever wrote it. Written atomically: a kill during the write leaves
the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslflow.atomic import atomic_path
from sslflow.errors import UserError

FORMAT = 1


def rng_state() -> dict[str, torch.Tensor]:
    """torch (CPU and CUDA), numpy and python generator states as tensors."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_rest": torch.tensor([np_pos, np_has_gauss, np_gauss], dtype=torch.float64),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if py_gauss is None else py_gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy_rest"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
    py_gauss = state["python_gauss"].item()
    random.setstate((3, tuple(state["python"].tolist()), None if py_gauss != py_gauss else py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def config_hash(*parts: Any) -> str:
    """Identity of a run (params, data, code): a checkpoint resumes only the run that wrote it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at `path`, or None if there is none; UserError if it cannot be read."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a checkpoint of this version of sslflow; delete it to start over")
    return state
