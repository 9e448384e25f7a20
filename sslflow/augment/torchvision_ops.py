"""The ops of the spec as torchvision.transforms.v2, applied per sample to CHW uint8 tensors.

Each op maps to the v2 transform that does the same thing as its DALI
counterpart in `dali_ops`; only Sobel and the relative-position colour
treatments, which v2 lacks, are written out. Randomness comes from torch's
global generator, which the loader seeds per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslflow.augment import spec as S
from sslflow.augment.views import neighbour_cell

LUMA = torch.tensor([0.299, 0.587, 0.114])
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
GREEN_MAGENTA = torch.tensor([-1.0, 2.0, -1.0]) / 6.0**0.5


def stored_image(data: bytes, channels: int, raw_shape: tuple[int, int, int] | None) -> torch.Tensor:
    """A shard's image member -> CHW uint8 with `channels` channels: raw pixels viewed at the manifest's
    (H, W, C) with no decode, else JPEG/PNG decoded; grey is replicated to RGB or RGB reduced to luma as
    the decoders do when asked for the other mode."""
    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if raw_shape is None:
        mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        return decode_image(buffer, mode=mode)
    image = buffer.view(raw_shape).permute(2, 0, 1)
    if image.shape[0] == channels:
        return image
    return image.expand(3, -1, -1).contiguous() if channels == 3 else TF.rgb_to_grayscale(image)


class RightAngleRotation(v2.Transform):
    """Counter-clockwise by one of `angles` (multiples of 90), as an exact pixel permutation."""

    def __init__(self, angles: list[int]):
        super().__init__()
        self.turns = [a // 90 for a in angles]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.turns[int(torch.randint(len(self.turns), ()))]
        return quarter_turn(x, k)


class Sobel(v2.Transform):
    """Gradient magnitude of the luminance, divided by 4 (the kernel's gain), in every channel; float input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sobel_magnitude(x)


def quarter_turn(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.rot90(x, k, dims=(-2, -1))


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    grey = (x * LUMA.view(3, 1, 1)).sum(0, keepdim=True) if x.shape[0] == 3 else x
    padded = F.pad(grey.unsqueeze(0), (1, 1, 1, 1), mode="reflect")
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).unsqueeze(1)
    gx, gy = F.conv2d(padded, kernels)[0]
    magnitude = (torch.sqrt(gx * gx + gy * gy) * 0.25).clamp(0, 1)
    return magnitude.expand(x.shape[0], -1, -1).clone()


def _transform(op, size: int, channels: int, mean: tuple[float, ...]):
    if isinstance(op, S.RandomResizedCrop):
        return v2.RandomResizedCrop(size, scale=op.scale, ratio=op.ratio, antialias=True)
    if isinstance(op, S.Flip):
        return v2.RandomHorizontalFlip(op.p)
    if isinstance(op, S.ColorJitter):
        colour = channels == 3
        jitter = v2.ColorJitter(
            brightness=op.brightness,
            contrast=op.contrast,
            saturation=op.saturation if colour else 0,
            hue=op.hue if colour else 0,
        )
        return v2.RandomApply([jitter], p=op.p)
    if isinstance(op, S.Grayscale):
        return v2.RandomGrayscale(op.p) if channels == 3 else v2.Identity()
    if isinstance(op, S.GaussianBlur):
        return v2.RandomApply([v2.GaussianBlur(op.window(size), sigma=op.sigma)], p=op.p)
    if isinstance(op, S.Rotate):
        return v2.RandomApply([RightAngleRotation(op.angles)], p=op.p)
    if isinstance(op, S.Cutout):
        area = (round(op.size * size) / size) ** 2
        return v2.RandomErasing(p=op.p, scale=(area, area), ratio=(1.0, 1.0), value=list(mean))
    if isinstance(op, S.GaussianNoise):
        return v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=op.std, clip=True)], p=op.p)
    if isinstance(op, S.Sobel):
        return v2.RandomApply([Sobel()], p=op.p)
    raise TypeError(f"no torchvision mapping for {type(op).__name__}")


def view_transform(
    ops: list, size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...], normalise: bool = True
) -> v2.Compose:
    """uint8 CHW -> float32 CHW: the first op (crop, else a resize to size x size) on uint8, the rest on [0, 1] floats."""
    steps = list(ops)
    first = (
        _transform(steps.pop(0), size, channels, mean)
        if steps and isinstance(steps[0], S.RandomResizedCrop)
        else v2.Resize((size, size), antialias=True)
    )
    chain = [first, v2.ToDtype(torch.float32, scale=True)]
    chain += [_transform(op, size, channels, mean) for op in steps if getattr(op, "p", 1.0) > 0]
    if normalise:
        chain.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(chain)


def eval_transform(size: int, crop_frac: float, mean, std) -> v2.Compose:
    """Shorter side to size / crop_frac, centre crop size, normalise: deterministic."""
    return v2.Compose(
        [
            v2.Resize(round(size / crop_frac), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def relpos_pair(
    image: torch.Tensor, rp: S.RelposView, normalise: v2.Normalize
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(centre patch, neighbour patch, label) from a jittered 3x3 grid placed at random in the resized image."""
    grid = TF.resize(image, [rp.grid, rp.grid], antialias=True)
    span = rp.grid - rp.extent
    top0, left0 = (int(torch.randint(span + 1, ())) for _ in range(2))
    target = int(torch.randint(8, ()))
    step = rp.patch + rp.gap

    def patch(row: int, col: int) -> torch.Tensor:
        top = top0 + row * step + int(torch.randint(2 * rp.jitter + 1, ()))
        left = left0 + col * step + int(torch.randint(2 * rp.jitter + 1, ()))
        x = TF.to_dtype(grid[:, top : top + rp.patch, left : left + rp.patch], torch.float32, scale=True)
        return normalise(_chroma_treatment(x, rp, normalise))

    return patch(1, 1), patch(*neighbour_cell(target)), target


def _chroma_treatment(x: torch.Tensor, rp: S.RelposView, normalise: v2.Normalize) -> torch.Tensor:
    """Colour dropping with probability colour_drop, else green-magenta projection; grey patches pass."""
    if x.shape[0] != 3:
        return x
    if float(torch.rand(())) < rp.colour_drop:
        return colour_drop(x, torch.tensor(normalise.mean), torch.tensor(normalise.std))
    return project_green_magenta(x) if rp.projection else x


def colour_drop(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Keep one random channel; the others become the dataset mean plus noise of 1/100 its std."""
    keep = int(torch.randint(3, ()))
    mask = torch.zeros(3, 1, 1)
    mask[keep] = 1
    mixed = x * mask + mean.view(3, 1, 1) * (1 - mask)
    return (mixed + torch.randn_like(x) * 0.01 * float(std.mean())).clamp(0, 1)


def project_green_magenta(x: torch.Tensor) -> torch.Tensor:
    """x - (x . a) a for the green-magenta axis a."""
    along = torch.einsum("chw,c->hw", x, GREEN_MAGENTA)
    return (x - GREEN_MAGENTA.view(3, 1, 1) * along).clamp(0, 1)
