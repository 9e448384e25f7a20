"""Write what each method's network sees: reports/augment/<kind>.png, rows = source images, columns = views.

The grids come from the real loaders (the configured backend) over a keyed
set of train images, one per class where possible: each extra epoch of a
keyed loader re-draws the augmentations of the same images in the same order.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sslflow import paths
from sslflow.atomic import atomic_path
from sslflow.augment.catalogue import load_catalogue
from sslflow.augment.loader import make_loader, pick_backend
from sslflow.augment.views import KINDS, NEIGHBOURS

OUT_DIR = paths.REPORTS / "augment"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated views (default: {','.join(KINDS)})")
    parser.add_argument("--rows", type=int, default=8, help="source images (rows)")
    parser.add_argument("--views", type=int, default=6, help="augmented views per image (columns)")


def run(params, kinds: str = ",".join(KINDS), rows: int = 8, views: int = 6) -> list:
    drawn = draw_grids(params, kinds.split(","), OUT_DIR, rows, views)
    backend = pick_backend(params.augment.backend)
    for path, (n_rows, n_cols) in drawn.items():
        print(f"{path}: {n_rows} rows x {n_cols} columns ({backend} backend)")
    return list(drawn)


def draw_grids(params, kinds: list[str], out_dir, rows: int = 8, views: int = 6) -> dict:
    """One grid per view kind in `out_dir` (the report draws into its own folder): path -> (rows, columns)."""
    keys = sample_keys(rows)
    drawn = {}
    for kind in kinds:
        grid, titles = GRIDS[kind](params, keys, views)
        path = out_dir / f"{kind}.png"
        save_grid(grid, titles, path, params, kind)
        drawn[path] = (len(grid), len(grid[0]))
    return drawn


def sample_keys(rows: int) -> list[str]:
    """The first train image of each class in shard order, then the next ones, up to `rows`."""
    cat = load_catalogue(paths.SHARDS, "train")
    firsts, rest, seen = [], [], set()
    for i in range(min(len(cat), 50 * rows)):
        label = cat.read_label(i)
        (rest if label in seen else firsts).append(cat.keys[i])
        seen.add(label)
    return (firsts + rest)[:rows]


def _epochs(params, kind: str, keys: list[str], epochs: int):
    """One batch per epoch of a keyed, unshuffled loader: the same images, fresh augmentations."""
    for epoch in range(epochs):
        loader = make_loader(
            params, kind=kind, batch_size=len(keys), keys=keys, shuffle=False, drop_last=False, epoch=epoch
        )
        yield next(iter(loader))


def _originals(params, keys: list[str]) -> list[torch.Tensor]:
    return list(next(_epochs(params, "eval", keys, 1))["image"])


def simclr_grid(params, keys, views):
    cols = [_originals(params, keys)]
    for batch in _epochs(params, "simclr", keys, (views + 1) // 2):
        cols += [list(batch["view1"]), list(batch["view2"])]
    cols = cols[: views + 1]
    return _rows(cols), ["source"] + [f"view {i + 1}" for i in range(len(cols) - 1)]


def supervised_grid(params, keys, views):
    cols = [_originals(params, keys)] + [list(b["image"]) for b in _epochs(params, "supervised", keys, views)]
    return _rows(cols), ["source"] + [f"crop+flip {i + 1}" for i in range(views)]


def eval_grid(params, keys, views):
    return _rows([_originals(params, keys)]), ["eval view"]


def rotation_grid(params, keys, views):
    batch = next(_epochs(params, "rotation", keys, 1))
    quarters = batch["image"].split(len(keys))
    return _rows([list(q) for q in quarters]), [f"target {k} ({90 * k} deg)" for k in range(4)]


def relpos_grid(params, keys, views):
    cols, titles = [_originals(params, keys)], ["source"]
    for batch in _epochs(params, "relpos", keys, max(1, views // 2)):
        captioned = [(img, f"{t}: {_direction(t)}") for img, t in zip(batch["neighbour"], batch["target"].tolist())]
        cols += [list(batch["center"]), captioned]
        titles += ["centre", "neighbour"]
    return _rows(cols), titles


def exemplar_grid(params, keys, views):
    """Rows = the first surrogate classes: the stored patch, then augmented copies found in one epoch."""
    classes = len(keys)
    loader = make_loader(params, kind="exemplar", batch_size=256, drop_last=False)
    from sslflow.augment.exemplar import ARTEFACT

    patches = np.load(ARTEFACT)["patches"][:classes]
    found: dict[int, list] = {c: [] for c in range(classes)}
    for batch in loader:
        for img, target in zip(batch["image"], batch["target"].tolist()):
            if target < classes and len(found[target]) < views:
                found[target].append(img)
        if all(len(v) == views for v in found.values()):
            break
    rows = [[_raw_patch(patches[c])] + found[c] for c in range(classes)]
    return rows, ["stored patch"] + [f"copy {i + 1}" for i in range(views)]


def _raw_patch(patch: np.ndarray):
    return ("raw", patch)


def _direction(target: int) -> str:
    dr, dc = NEIGHBOURS[target]
    return {-1: "up", 0: "", 1: "down"}[dr] + ("-" if dr and dc else "") + {-1: "left", 0: "", 1: "right"}[dc]


def _rows(cols: list[list]) -> list[list]:
    return [list(r) for r in zip(*cols)]


GRIDS = {
    "simclr": simclr_grid,
    "supervised": supervised_grid,
    "eval": eval_grid,
    "rotation": rotation_grid,
    "relpos": relpos_grid,
    "exemplar": exemplar_grid,
}


def save_grid(grid: list[list], titles: list[str], path, params, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(grid), max(len(r) for r in grid)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.3 * n_rows + 0.5), squeeze=False)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            image, label = _displayable(row[c], params)
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if label:
                ax.set_xlabel(label, fontsize=7)
            if r == 0:
                ax.set_title(titles[c] if c < len(titles) else "", fontsize=8)
    fig.suptitle(f"{kind} views ({params.augment.size} px)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _displayable(item, params) -> tuple[np.ndarray, str]:
    """A normalised CHW tensor, or ('raw', HWC uint8), or (tensor, caption) -> (HxW or HxWx3 in [0, 1], caption)."""
    label = ""
    if isinstance(item, tuple) and item[0] == "raw":
        image = item[1].astype(np.float32) / 255.0
    else:
        if isinstance(item, tuple):
            item, label = item
        chw = item.float().cpu()
        channels = chw.shape[0]
        mean = torch.tensor(_expand(params.augment.mean, channels)).view(-1, 1, 1)
        std = torch.tensor(_expand(params.augment.std, channels)).view(-1, 1, 1)
        image = (chw * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    return (image[:, :, 0] if image.shape[2] == 1 else image), label


def _expand(values: list[float], channels: int) -> list[float]:
    return list(values) * channels if len(values) == 1 else list(values)
