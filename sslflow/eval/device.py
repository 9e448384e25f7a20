"""Where evaluation runs: the GPU when there is one, else the CPU; same code either way."""

import torch


def default_device() -> str:
    """'cuda' when a GPU is visible (CUDA_VISIBLE_DEVICES= hides it), else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"
