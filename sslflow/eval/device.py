"""Where evaluation runs: the GPU when there is one, else the CPU; same code either way."""

import torch


def default_device() -> str:
    """'cuda' when a GPU is visible (CUDA_VISIBLE_DEVICES= hides it), else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def to_model(images: torch.Tensor, device: str) -> torch.Tensor:
    """A batch of images on the device, channels-last, the layout every evaluated network runs in
    (oneDNN's and cuDNN's fast one); a view when the loader's batch already is."""
    return images.to(device, non_blocking=True, memory_format=torch.channels_last)
