"""The `augment` section of params.yaml: one view spec that both backends run.

A view is an ordered list of ops, each with its own probability and strength,
so an ablation ("no colour", "blur off", "crop scale 0.2") is an edit of
params.yaml rather than of code. The ops are a pydantic discriminated union on
``op``; DALI (``dali_ops``) and torchvision (``torchvision_ops``) each map every
op once. The class defaults are the papers' ImageNet settings (SimCLR appendix
A); params.yaml holds the Fashion-MNIST profile that `make run` uses.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from sslflow.section import Section

Prob = Annotated[float, Field(ge=0.0, le=1.0, description="probability that the op is applied to a sample")]
# YAML has no tuples: take a two-element list (the items stay strict: "0.1" is refused).
Range = Annotated[tuple[float, float], Field(strict=False)]


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"low {value[0]} > high {value[1]}")
    return value


class RandomResizedCrop(Section):
    """Crop a random area fraction and aspect ratio, resize to the view's output side (SimCLR (a)-(b))."""

    op: Literal["random_resized_crop"]
    scale: Range = Field((0.08, 1.0), description="area fraction of the source")
    ratio: Range = Field((3 / 4, 4 / 3), description="aspect ratio w/h, sampled log-uniformly")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= 1 or not 0 < v[1] <= 1:
            raise ValueError("area fractions must be in (0, 1]")
        return _ordered(v)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("aspect ratios must be > 0")
        return _ordered(v)


class Flip(Section):
    """Horizontal mirror (SimCLR (c))."""

    op: Literal["flip"]
    p: Prob = 0.5


class ColorJitter(Section):
    """Brightness, contrast, saturation 0.8 s and hue 0.2 s (SimCLR's strength s). Grey images: brightness and contrast only."""

    op: Literal["color_jitter"]
    p: Prob = 0.8
    strength: float = Field(1.0, ge=0.0, le=1.25, description="s; 1.25 keeps brightness/contrast factors >= 0")

    @property
    def brightness(self) -> float:
        return 0.8 * self.strength

    @property
    def contrast(self) -> float:
        return 0.8 * self.strength

    @property
    def saturation(self) -> float:
        return 0.8 * self.strength

    @property
    def hue(self) -> float:
        """Fraction of the hue circle, at most 0.5 (torchvision's convention)."""
        return min(0.2 * self.strength, 0.5)


class Grayscale(Section):
    """Colour dropping (SimCLR (d)); a no-op on grey images."""

    op: Literal["grayscale"]
    p: Prob = 0.2


class GaussianBlur(Section):
    """Gaussian blur with a per-sample sigma and a window a fixed fraction of the side (SimCLR (i))."""

    op: Literal["gaussian_blur"]
    p: Prob = 0.5
    sigma: Range = Field((0.1, 2.0), description="pixels, sampled uniformly")
    kernel_frac: float = Field(0.1, gt=0.0, le=1.0, description="window side as a fraction of the view side")

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError("sigma must be > 0")
        return _ordered(v)

    def window(self, side: int) -> int:
        """Odd window of about kernel_frac * side pixels, at least 3."""
        k = max(3, int(round(self.kernel_frac * side)))
        return k if k % 2 else k + 1


class Rotate(Section):
    """Rotation by one of `angles` degrees (SimCLR (f)); multiples of 90 are exact pixel permutations."""

    op: Literal["rotate"]
    p: Prob = 1.0
    angles: list[int] = Field([90, 180, 270], min_length=1, description="degrees counter-clockwise, picked uniformly")


class Cutout(Section):
    """Erase a random square (SimCLR (g)); filled with the normalisation mean, so it is 0 after normalising."""

    op: Literal["cutout"]
    p: Prob = 0.5
    size: float = Field(0.5, gt=0.0, le=1.0, description="square side as a fraction of the view side")


class GaussianNoise(Section):
    """Additive Gaussian noise (SimCLR (h))."""

    op: Literal["gaussian_noise"]
    p: Prob = 0.5
    std: float = Field(0.1, ge=0.0, le=1.0, description="standard deviation as a fraction of the pixel range")


class Sobel(Section):
    """Sobel gradient magnitude of the luminance (SimCLR (j)), replicated to every channel."""

    op: Literal["sobel"]
    p: Prob = 1.0


Op = Annotated[
    RandomResizedCrop | Flip | ColorJitter | Grayscale | GaussianBlur | Rotate | Cutout | GaussianNoise | Sobel,
    Field(discriminator="op"),
]


SIMCLR_OPS = [
    RandomResizedCrop(op="random_resized_crop"),
    Flip(op="flip"),
    ColorJitter(op="color_jitter"),
    Grayscale(op="grayscale"),
    GaussianBlur(op="gaussian_blur"),
]


class _OpsView(Section):
    """A view made of an ordered op list; checks shared by every such view."""

    ops: list[Op] = Field(default_factory=list)

    @field_validator("ops")
    @classmethod
    def _crop_first(cls, ops: list) -> list:
        """The crop fixes the view's size; every other op then works on the small view."""
        for i, op in enumerate(ops):
            if isinstance(op, RandomResizedCrop) and i != 0:
                raise ValueError("random_resized_crop may only be the first op")
        return ops

    @field_validator("ops")
    @classmethod
    def _right_angles(cls, ops: list) -> list:
        """Multiples of 90 are pixel permutations: no interpolation trace for a network to read."""
        for op in ops:
            if isinstance(op, Rotate) and any(a % 90 for a in op.angles):
                raise ValueError("rotate.angles must be multiples of 90")
        return ops


class SimclrView(_OpsView):
    """Two independent draws of `ops` per image."""

    ops: list[Op] = Field(default_factory=lambda: list(SIMCLR_OPS))


class RotationView(_OpsView):
    """`ops` once per image, then the four rotations 0/90/180/270 (targets 0-3), as RotNet."""

    ops: list[Op] = Field(
        default_factory=lambda: [RandomResizedCrop(op="random_resized_crop", scale=(0.5, 1.0)), Flip(op="flip")]
    )

    @field_validator("ops")
    @classmethod
    def _no_rotate(cls, ops: list) -> list:
        if any(isinstance(op, Rotate) for op in ops):
            raise ValueError("the rotation view rotates by itself; a rotate op would corrupt its targets")
        return ops


class SupervisedView(_OpsView):
    """Crop and flip, the supervised baseline's and fine-tuning's augmentation."""

    ops: list[Op] = Field(default_factory=lambda: [RandomResizedCrop(op="random_resized_crop"), Flip(op="flip")])


class RelposView(Section):
    """Doersch et al.: a 3x3 grid of `patch` px patches `gap` px apart, each shifted by up to `jitter` px.

    The source is resized to `grid` x `grid`; the grid (3 patch + 2 gap + 2 jitter)
    is placed at a random position in it. Anti-shortcut colour treatments (paper
    section 3): with probability `colour_drop` two of three channels are replaced
    by faint noise; otherwise, if `projection`, the green-magenta axis is projected
    out. Both are identities on grey sources, which carry no chromatic cue.
    """

    grid: int = Field(224, gt=0, description="side the source is resized to before the grid is placed")
    patch: int = Field(56, gt=0)
    gap: int = Field(16, ge=0)
    jitter: int = Field(8, ge=0, description="max shift of each patch, pixels, per axis")
    colour_drop: Prob = Field(0.5, description="probability of colour dropping per patch")
    projection: bool = Field(True, description="project out green-magenta when not dropping colour")

    @model_validator(mode="after")
    def _fits(self) -> RelposView:
        need = self.extent
        if need > self.grid:
            raise ValueError(f"3*patch + 2*gap + 2*jitter = {need} does not fit in grid {self.grid}")
        return self

    @property
    def extent(self) -> int:
        """Side of the square the jittered grid can reach."""
        return 3 * self.patch + 2 * self.gap + 2 * self.jitter


class ExemplarView(_OpsView):
    """Dosovitskiy et al.: `classes` patches sampled once (seeded), each augmented `copies` times per epoch."""

    classes: int = Field(8000, gt=1, description="N surrogate classes (the classifier's outputs)")
    copies: int = Field(8, gt=0, description="K augmented copies of each patch per epoch")
    patch: int = Field(96, gt=0, description="side of the sampled patches, pixels of the source")
    candidates: int = Field(
        8, gt=0, description="positions tried per patch; one is kept with probability ~ gradient energy"
    )
    ops: list[Op] = Field(
        default_factory=lambda: [
            RandomResizedCrop(op="random_resized_crop", scale=(0.3, 1.0)),
            Flip(op="flip"),
            ColorJitter(op="color_jitter", p=1.0, strength=0.5),
        ]
    )


class EvalView(Section):
    """Deterministic: resize the shorter side to size / crop_frac, centre crop size (ImageNet: 0.875)."""

    crop_frac: float = Field(0.875, gt=0.0, le=1.0)


class AugmentCfg(Section):
    backend: Literal["auto", "dali", "torchvision"] = Field("auto", description="auto = DALI when importable")
    size: int = Field(224, gt=0, description="output side of every view but relpos patches (pixels)")
    channels: Literal["auto", 1, 3] = Field(
        "auto", description="auto: the manifest's (1 grey, 3 colour); 3 replicates grey"
    )
    mean: list[float] = Field(
        [0.485, 0.456, 0.406], min_length=1, max_length=3, description="per channel, pixel range [0, 1]"
    )
    std: list[float] = Field([0.229, 0.224, 0.225], min_length=1, max_length=3)
    threads: int = Field(
        0, ge=0, description="DALI threads / DataLoader workers per rank; 0 = the cores / LOCAL_WORLD_SIZE"
    )
    prefetch: int = Field(
        2, gt=0, description="batches prepared ahead (DALI prefetch queue, DataLoader prefetch factor)"
    )
    roi_decode: bool = Field(
        False, description="DALI: decode only the random crop (decoders.image_random_crop; JPEG/PNG shards)"
    )
    gpu_decode: Literal["mixed", "cpu"] = Field(
        "mixed",
        description="DALI on a GPU: decode with nvJPEG ('mixed') or on CPU threads, then augment on the GPU "
        "(raw shards have nothing to decode: their pixels are copied to the GPU)",
    )
    hw_decoder_load: float = Field(
        0.65, ge=0.0, le=1.0, description="DALI mixed decode: share for the hardware JPEG decoder"
    )
    shuffle_buffer: int = Field(4096, gt=0, description="samples in the reader's shuffle buffer")
    simclr: SimclrView = SimclrView()
    rotation: RotationView = RotationView()
    supervised: SupervisedView = SupervisedView()
    relpos: RelposView = RelposView()
    exemplar: ExemplarView = ExemplarView()
    eval: EvalView = EvalView()

    @field_validator("mean", "std")
    @classmethod
    def _per_channel(cls, v: list[float]) -> list[float]:
        if len(v) == 2:
            raise ValueError("give 1 value (grey, or all channels) or 3 (R, G, B)")
        return v

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v
