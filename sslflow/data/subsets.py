"""The low-label subsets: 1% and 10% of the train keys, class-balanced, seeded and nested.

Each class gets its share of a subset's size by largest remainder (so the total
is exactly round(fraction * N) and each class is within one sample of its
proportional share); within a class, one seeded permutation of the sorted keys
serves both fractions, so the 1% keys are the first ones of the 10% keys.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from sslflow.data.fractions import FRACTIONS
from sslflow.errors import UserError


def apportion(counts: list[int], fraction: Fraction) -> list[int]:
    """Per-class sizes summing to round(fraction * sum(counts)), by largest remainder (ties: lower class)."""
    quotas = [fraction * c for c in counts]
    sizes = [math.floor(q) for q in quotas]
    extra = round(fraction * sum(counts)) - sum(sizes)
    by_remainder = sorted(range(len(counts)), key=lambda c: (-(quotas[c] - sizes[c]), c))
    for c in by_remainder[:extra]:
        sizes[c] += 1
    return sizes


def sample_subsets(samples: list[tuple[str, int]], num_classes: int, seed: int) -> dict[str, list[str]]:
    """{name: sorted keys} for each fraction; `samples` are the train (key, label) pairs."""
    by_class: list[list[str]] = [[] for _ in range(num_classes)]
    for key, label in samples:
        by_class[label].append(key)
    counts = [len(keys) for keys in by_class]
    sizes = {name: apportion(counts, fraction) for name, fraction in FRACTIONS.items()}
    chosen: dict[str, list[str]] = {name: [] for name in FRACTIONS}
    for label, keys in enumerate(by_class):
        keys.sort()
        order = np.random.default_rng([seed, label]).permutation(len(keys))
        ranked = [keys[i] for i in order.tolist()]
        largest = max(sizes[name][label] for name in FRACTIONS)
        for name in FRACTIONS:
            # nesting wins over the exact total in the corner case of tiny classes
            chosen[name] += ranked[: min(sizes[name][label], largest)]
    return {name: sorted(keys) for name, keys in chosen.items()}


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
