"""The label subsets (1% and 10% of the train keys) and the validation slice held out of train.

Each class gets its share of a subset's size by largest remainder (so each class
is within one sample of its proportional share) and never less than one image:
a subset that misses a class cannot train a classifier for it. Within a class,
one seeded permutation of the sorted keys serves every subset: the 1% keys are
the first ones of the 10% keys, and the validation slice (`VAL`, what
`eval.split: val` scores on) is drawn from the other end, so it never shares an
image with a label subset. A class too small for that is an error at `shard` time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from sslflow.data.fractions import FRACTIONS
from sslflow.errors import UserError

VAL = "val"  # data/shards/subsets/val.txt: the validation slice


def apportion(counts: list[int], fraction: Fraction) -> list[int]:
    """Per-class sizes near fraction x counts (largest remainder, ties: lower class), at least one for a
    class that has any sample."""
    quotas = [fraction * c for c in counts]
    sizes = [math.floor(q) for q in quotas]
    extra = round(fraction * sum(counts)) - sum(sizes)
    by_remainder = sorted(range(len(counts)), key=lambda c: (-(quotas[c] - sizes[c]), c))
    for c in by_remainder[:extra]:
        sizes[c] += 1
    return [max(size, 1) if count else 0 for size, count in zip(sizes, counts, strict=True)]


def sample_subsets(
    samples: list[tuple[str, int]], classes: Sequence[str], seed: int, val_fraction: float
) -> dict[str, list[str]]:
    """{name: sorted keys} for each fraction and the validation slice; `samples` are the train (key, label) pairs."""
    by_class = _by_class(samples, len(classes))
    counts = [len(keys) for keys in by_class]
    sizes = {name: apportion(counts, fraction) for name, fraction in FRACTIONS.items()}
    val_sizes = apportion(counts, Fraction(val_fraction).limit_denominator(10_000))
    chosen: dict[str, list[str]] = {name: [] for name in [*FRACTIONS, VAL]}
    for label, keys in enumerate(by_class):
        largest = max(sizes[name][label] for name in FRACTIONS)
        _check_room(classes[label], len(keys), largest, val_sizes[label])
        ranked = _ranked(keys, seed, label)
        for name in FRACTIONS:
            chosen[name] += ranked[: sizes[name][label]]
        chosen[VAL] += ranked[len(ranked) - val_sizes[label] :]
    return {name: sorted(keys) for name, keys in chosen.items()}


def sample_val_slice(
    samples: list[tuple[str, int]], classes: Sequence[str], seed: int, val_fraction: float, labelled: set[str]
) -> list[str]:
    """The validation slice beside given label subsets (the published ImageNet lists): drawn per class from the
    end of the seeded order, among the images no subset holds."""
    by_class = _by_class(samples, len(classes))
    val_sizes = apportion([len(k) for k in by_class], Fraction(val_fraction).limit_denominator(10_000))
    chosen = []
    for label, keys in enumerate(by_class):
        free = [k for k in _ranked(keys, seed, label) if k not in labelled]
        _check_room(classes[label], len(keys), len(keys) - len(free), val_sizes[label])
        chosen += free[len(free) - val_sizes[label] :]
    return sorted(chosen)


def _by_class(samples: list[tuple[str, int]], num_classes: int) -> list[list[str]]:
    by_class: list[list[str]] = [[] for _ in range(num_classes)]
    for key, label in samples:
        by_class[label].append(key)
    return by_class


def _ranked(keys: list[str], seed: int, label: int) -> list[str]:
    """The class's keys in its seeded order (the same on every machine: sorted first)."""
    keys = sorted(keys)
    order = np.random.default_rng([seed, label]).permutation(len(keys))
    return [keys[i] for i in order.tolist()]


def _check_room(name: str, count: int, labelled: int, held_out: int) -> None:
    if count and labelled + held_out > count:
        raise UserError(
            f"data.source: class {name!r} has {count} train image(s); its label subsets need {labelled} and "
            f"the validation slice {held_out} more, apart (give it at least {labelled + held_out})"
        )


def read_file_lists(
    files: dict[str, Path], key_of_name, train_keys: set[str], skipped_names: set[str]
) -> dict[str, list[str]]:
    """Published subset lists (one file name per line) -> sorted keys; every name must be a train image.

    Names of images skipped as bad are dropped (they are in the manifest's skip list).
    """
    subsets = {}
    for name in FRACTIONS:
        path = Path(files[name])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UserError(f"data.subsets.files.{name} {path}: cannot read ({exc.strerror or exc})") from None
        keys = set()
        for number, line in enumerate(lines, 1):
            file_name = line.strip()
            if not file_name:
                continue
            key = key_of_name(file_name)
            if key in train_keys:
                keys.add(key)
            elif file_name not in skipped_names:
                raise UserError(f"{path}:{number}: {file_name} is not a train image of the source")
        subsets[name] = sorted(keys)
    return subsets


def write_subsets(subsets: dict[str, list[str]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, keys in subsets.items():
        (directory / f"{name}.txt").write_text("".join(k + "\n" for k in keys))
