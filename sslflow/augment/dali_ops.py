"""The ops of the spec as DALI graph fragments, one function per op.

Images flow as HWC uint8 (C = 1 or 3) on the pipeline's device ('cpu', or 'gpu'
after a mixed decode) until `normalize`. An op with probability p runs inside a
DALI conditional, so the samples that skip it cost nothing (blur is the
expensive one on a GPU). Every random draw is a DALI random op, seeded from the
pipeline seed, so a fixed seed gives the same batches.

These functions run inside a `pipeline_def(enable_conditionals=True)`: DALI's
autograph rewrites their `if` statements on DataNodes into per-sample branches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali import math as dmath

from sslflow.augment import spec as S

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
# Green-magenta axis that Doersch et al. project out against chromatic aberration.
GREEN_MAGENTA = np.array([-1.0, 2.0, -1.0], np.float32) / np.sqrt(6.0)


@dataclass(frozen=True)
class Frame:
    """What every op needs besides the image: the view side, channels, device and fill colour (0-255)."""

    size: int
    channels: int
    device: str  # 'cpu' | 'gpu'
    mean255: tuple[float, ...]  # per-channel normalisation mean in pixel units
    std255: tuple[float, ...]


def coin(p: float):
    """Per-sample boolean, True with probability p."""
    return fn.cast(fn.random.coin_flip(probability=p), dtype=types.BOOL)


def sometimes(p: float):
    """The condition of an op applied with probability p: plain True at p = 1, so no split and merge is paid."""
    return True if p >= 1 else coin(p)


def uniform(low: float, high: float):
    """Per-sample uniform in [low, high); a constant when the range is a point (DALI refuses empty ranges)."""
    return fn.random.uniform(range=[low, high]) if high > low else float(low)


def random_resized_crop(x, op: S.RandomResizedCrop, f: Frame):
    return fn.random_resized_crop(
        x, size=[f.size, f.size], random_area=list(op.scale), random_aspect_ratio=list(op.ratio), num_attempts=10
    )


def resize_to(x, side: int):
    """Exact `side` x `side` (views without a crop op, exemplar patches, relpos grids)."""
    return fn.resize(x, size=[side, side])


def flip(x, op: S.Flip, f: Frame):
    return fn.flip(x, horizontal=fn.random.coin_flip(probability=op.p))


def color_jitter(x, op: S.ColorJitter, f: Frame):
    """torchvision's ColorJitter: brightness, contrast and colour (saturation + hue) in a random order per sample.

    The order is one of the permutations, drawn per sample, and a chain of
    DALI conditionals runs each order on the samples that drew it (5 splits
    for 6 orders, each on what the previous left). Saturation and hue are one
    fn.hsv: in HSV they act on separate coordinates, so their relative order
    changes nothing, and one colour-space round trip costs half of two. The
    factors are drawn once, before the branches.
    """
    if sometimes(op.p):
        steps = _jitter_steps(op, f)
        orders = list(itertools.permutations(steps))
        x = _in_drawn_order(x, fn.random.uniform(values=list(range(len(orders))), dtype=types.INT32), orders, 0)
    return x


def _in_drawn_order(x, drawn, orders: list, k: int):
    """Samples that drew order k run its steps; the rest go on to order k + 1 (the last takes what is left)."""
    if k == len(orders) - 1:
        return _run(x, orders[k])
    if drawn == k:  # noqa: SIM108 -- a statement: DALI conditionals convert `if` statements, not expressions
        x = _run(x, orders[k])
    else:
        x = _in_drawn_order(x, drawn, orders, k + 1)
    return x


def _run(x, steps):
    for step in steps:
        x = step(x)
    return x


def _jitter_steps(op: S.ColorJitter, f: Frame) -> list:
    """One function per jitter step (grey images: brightness and contrast), each with its factors drawn."""
    brightness = uniform(max(0.0, 1 - op.brightness), 1 + op.brightness)
    contrast = uniform(max(0.0, 1 - op.contrast), 1 + op.contrast)
    steps = [
        lambda x: fn.brightness(x, brightness=brightness),
        lambda x: adjust_contrast(x, contrast, f),
    ]
    if f.channels == 3:
        saturation = uniform(max(0.0, 1 - op.saturation), 1 + op.saturation)
        hue = uniform(-360.0 * op.hue, 360.0 * op.hue)
        steps.append(lambda x: fn.hsv(x, saturation=saturation, hue=hue))
    return steps


def adjust_contrast(x, factor, f: Frame):
    """mean + factor * (x - mean), the mean being this image's own mean luminance, as torchvision's contrast.

    On the CPU, fn.contrast with the mean as its pivot. On a GPU the mean is a
    GPU tensor, which an operator's named argument cannot take, so the formula
    is written as arithmetic (as DALI's auto_aug does); the cast back to uint8
    saturates.
    """
    grey = x if f.channels == 1 else fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)
    if f.device == "cpu":
        return fn.contrast(x, contrast=factor, contrast_center=fn.reductions.mean(grey))
    centre = fn.reductions.mean(grey, axis_names="HWC", keep_dims=True)
    return fn.cast_like(centre + (x - centre) * factor, x)


def grayscale(x, op: S.Grayscale, f: Frame):
    """ITU-R 601 luma in every channel (torchvision's rgb_to_grayscale); grey input is left as is.

    Through a grey round trip rather than fn.hsv(saturation=0): the same pixels at a tenth of the CPU cost.
    """
    if f.channels == 3 and sometimes(op.p):
        grey = fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)
        x = fn.color_space_conversion(grey, image_type=types.GRAY, output_type=types.RGB)
    return x


def gaussian_blur(x, op: S.GaussianBlur, f: Frame):
    if sometimes(op.p):
        x = separable_gaussian(x, uniform(*op.sigma), op.window(f.size), f)
    return x


def gaussian_taps(sigma, window: int):
    """Per-sample normalised 1-D Gaussian of `window` taps: exp(-d^2 / 2 sigma^2), d the offset from the centre.

    The kernel torchvision's GaussianBlur builds, so both backends blur alike.
    """
    half = (window - 1) / 2
    exponents = fn.constant(fdata=[-0.5 * (i - half) ** 2 for i in range(window)], shape=[window])
    taps = dmath.exp(exponents / (sigma * sigma))
    return taps / fn.reductions.sum(taps)


def separable_gaussian(x, sigma, window: int, f: Frame):
    """A row pass then a column pass of fn.filter, mirrored at the borders (reflect_101, as torch's reflect pad).

    On the CPU this is about 9x cheaper than fn.gaussian_blur at a 23-tap window;
    the intermediate is rounded to uint8 (at most half a level).
    """
    taps = gaussian_taps(sigma, window)
    row = _on(fn.reshape(taps, shape=[1, window]), f)
    column = _on(fn.reshape(taps, shape=[window, 1]), f)
    return fn.filter(fn.filter(x, row, border="reflect_101"), column, border="reflect_101")


def rotate(x, op: S.Rotate, f: Frame):
    """Nearest-neighbour rotation by a multiple of 90 degrees of a square view: a pixel permutation."""
    if sometimes(op.p):
        angle = fn.random.uniform(values=[float(a) for a in op.angles])
        x = fn.rotate(x, angle=angle, interp_type=types.INTERP_NN, keep_size=True)
    return x


def rotate_by(x, quarter_turns: int):
    """Counter-clockwise by quarter_turns * 90 degrees, for the rotation view's four copies."""
    if quarter_turns % 4 == 0:
        return x
    return fn.rotate(x, angle=90.0 * quarter_turns, interp_type=types.INTERP_NN, keep_size=True)


def cutout(x, op: S.Cutout, f: Frame):
    """A square of side size * view side at a uniform position, filled with the mean (0 once normalised)."""
    side = max(1, int(round(op.size * f.size)))
    if sometimes(op.p):
        top_left = fn.random.uniform(range=[0.0, float(f.size - side + 1)], shape=[2])
        x = fn.erase(
            x,
            anchor=dmath.floor(top_left),
            shape=[float(side), float(side)],
            axis_names="HW",
            fill_value=list(f.mean255),
        )
    return x


def gaussian_noise(x, op: S.GaussianNoise, f: Frame):
    if sometimes(op.p):
        x = fn.noise.gaussian(x, stddev=255.0 * op.std)
    return x


def sobel(x, op: S.Sobel, f: Frame):
    """Gradient magnitude of the luminance, scaled by 1/4 (the kernel's gain) into 0-255, in every channel."""
    if sometimes(op.p):
        x = sobel_magnitude(x, f)
    return x


def sobel_magnitude(x, f: Frame):
    grey = x if f.channels == 1 else fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)
    grey = fn.cast(grey, dtype=types.FLOAT)
    gx = fn.filter(grey, SOBEL_X, border="reflect_101")
    gy = fn.filter(grey, SOBEL_X.T.copy(), border="reflect_101")
    magnitude = fn.cast(dmath.sqrt(gx * gx + gy * gy) * 0.25, dtype=types.UINT8)
    return magnitude if f.channels == 1 else fn.cat(magnitude, magnitude, magnitude, axis=2)


APPLY = {
    S.RandomResizedCrop: random_resized_crop,
    S.Flip: flip,
    S.ColorJitter: color_jitter,
    S.Grayscale: grayscale,
    S.GaussianBlur: gaussian_blur,
    S.Rotate: rotate,
    S.Cutout: cutout,
    S.GaussianNoise: gaussian_noise,
    S.Sobel: sobel,
}


def apply_ops(x, ops: list, f: Frame, resized: bool = False):
    """Run `ops` in order; a view that neither starts with a crop nor is `resized` yet is resized first."""
    if not resized and (not ops or not isinstance(ops[0], S.RandomResizedCrop)):
        x = resize_to(x, f.size)
    for op in ops:
        if getattr(op, "p", 1.0) > 0:
            x = APPLY[type(op)](x, op, f)
    return x


def normalize(x, f: Frame, crop: int | None = None):
    """uint8 HWC -> float32 HWC, (x / 255 - mean) / std per channel; optionally a centre crop on the way.

    HWC, not CHW: the loader hands torch an NCHW view of the NHWC batch, which
    is channels_last as it stands, so no copy turns it into the layout the
    network runs in.
    """
    args = {"crop": [crop, crop]} if crop else {}
    return fn.crop_mirror_normalize(
        x, dtype=types.FLOAT, output_layout="HWC", mean=list(f.mean255), std=list(f.std255), **args
    )


def colour_drop(x, f: Frame):
    """Doersch's colour dropping: keep one random channel, the others become the mean plus faint noise.

    The noise is 1/100 of the dataset's channel std, the paper's "~1/100 of the
    std of the remaining channel", with the dataset's std standing in for the
    patch's (a per-patch reduction cannot feed a GPU pipeline's arguments).
    """
    keep = fn.one_hot(fn.random.uniform(values=[0, 1, 2], dtype=types.INT32), num_classes=3)
    keep = _on(keep, f)
    mean = _on(fn.constant(fdata=list(f.mean255), shape=[3]), f)
    mixed = fn.cast(x, dtype=types.FLOAT) * keep + mean * (1.0 - keep)
    mixed = fn.noise.gaussian(mixed, stddev=0.01 * float(np.mean(f.std255)))
    return fn.cast(dmath.clamp(mixed, 0.0, 255.0), dtype=types.UINT8)


def project_green_magenta(x, f: Frame):
    """x - (x . a) a for the green-magenta direction a: colour survives only on the other two axes."""
    matrix = np.eye(3, dtype=np.float32) - np.outer(GREEN_MAGENTA, GREEN_MAGENTA)
    y = fn.coord_transform(fn.cast(x, dtype=types.FLOAT), M=matrix.flatten().tolist())
    return fn.cast(dmath.clamp(y, 0.0, 255.0), dtype=types.UINT8)


def _on(node, f: Frame):
    return node.gpu() if f.device == "gpu" else node
