"""The linear evaluation protocol: multinomial logistic regression on frozen features.

Both backends minimise the same convex objective,

    mean_i cross_entropy(x_i W + b, y_i) + l2 / 2 * |W|^2      (bias not penalised),

so they reach the same classifier and differ only in speed: scikit-learn's
L-BFGS is simplest for small sets; the torch path runs full-batch L-BFGS in
float32 on the GPU when there is one, with the loss summed over row chunks.
(scikit-learn's ``C`` is ``1 / (l2 * n)`` for the same objective.)

Memory: the torch path never copies the feature matrix whole. Rows are taken
from it (a memory map of the features file) by index, a chunk at a time, and
standardised on the way; the standardised float32 rows are kept resident on the
probe's device only up to ``resident_mb``. So a 1.28M x 2048 ImageNet feature
set costs its mapped file plus a few chunks, not three float32 copies.

Features are standardised with train statistics, and the L2 strength is chosen
on a held-out slice of train, never on val, then the probe is refit on all of train.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from sslflow.eval.device import default_device

Backend = Literal["torch", "sklearn"]
SMALL_FOR_BLAS = 20_000 * 512  # feature values up to which scikit-learn fits on one BLAS thread


@dataclass(frozen=True)
class LinearModel:
    """Weights of a fitted probe in standardised feature space: scores = x @ weight + bias."""

    weight: np.ndarray  # (d, c) float32
    bias: np.ndarray  # (c,) float32


@dataclass(frozen=True)
class ProbeResult:
    top1: float
    top5: float
    l2: float
    n_train: int
    n_features: int
    backend: Backend
    holdout_top1: dict[float, float]  # L2 strength -> top-1 on the held-out slice of train

    def metrics(self) -> dict:
        """The JSON a stage writes: accuracies as fractions, plus how the probe was chosen."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "l2": self.l2,
            "n_train": self.n_train,
            "n_features": self.n_features,
            "backend": self.backend,
        }


# ----------------------------------------------------------------------------- pieces


class Standardizer:
    """Per-feature mean / std from the train rows (float64 sums), applied to any split.

    Constant features (pixels that are always black) get std 1 instead of a division by zero.
    """

    def __init__(self, x: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = 8192):
        # sums accumulate in float64 without a float64 copy of the rows (20x faster than astype)
        total = np.zeros(x.shape[1], np.float64)
        total_sq = np.zeros(x.shape[1], np.float64)
        n = len(x) if rows is None else len(rows)
        for start in range(0, n, chunk_rows):
            part = take_rows(x, rows, start, start + chunk_rows).astype(np.float32, copy=False)
            total += part.sum(0, dtype=np.float64)
            total_sq += np.square(part).sum(0, dtype=np.float64)
        mean = total / n
        var = np.maximum(total_sq / n - mean * mean, 0.0)
        std = np.sqrt(var)
        self.mean = mean.astype(np.float32)
        self.std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, 1.0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) - self.mean) / self.std


def take_rows(x: np.ndarray, rows: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    """x's rows start:stop, or those of the index `rows` (a gather that reads only them from a memory map)."""
    return x[start:stop] if rows is None else x[rows[start:stop]]


class Rows:
    """Standardised float32 rows of a feature matrix on a device, handed out a chunk at a time.

    The matrix stays where it is (a memory-mapped features file); the prepared
    chunks are kept resident when they fit in ``resident_bytes`` (one pass over
    the file instead of one per L-BFGS evaluation), else rebuilt on each pass.
    """

    def __init__(self, x, y, rows, standardize: Standardizer, device: str, chunk_rows: int, resident_bytes: float):
        self.x, self.rows, self.standardize, self.device, self.chunk_rows = x, rows, standardize, device, chunk_rows
        self.n = len(x) if rows is None else len(rows)
        labels = y if rows is None else y[rows]
        self.y = torch.as_tensor(np.asarray(labels, np.int64), device=device)
        self.resident = None
        if self.n * x.shape[1] * 4 <= resident_bytes:
            self.resident = list(self._build())

    def __len__(self) -> int:
        return self.n

    def chunks(self):
        """(standardised x, labels) chunks, on the device, in row order."""
        return iter(self.resident) if self.resident is not None else self._build()

    def _build(self):
        for start in range(0, self.n, self.chunk_rows):
            part = self.standardize(take_rows(self.x, self.rows, start, start + self.chunk_rows))
            yield torch.from_numpy(part).to(self.device), self.y[start : start + self.chunk_rows]


def topk_accuracy(scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, k: int) -> float:
    """Share of rows whose label is among the k highest scores (k capped at the number of classes)."""
    scores = torch.as_tensor(scores)
    labels = torch.as_tensor(labels, device=scores.device)
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out): stratified by class when every class can give a row, random otherwise."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    n_out = max(1, int(round(fraction * len(labels))))
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    stratify = labels if counts.min() >= 2 and n_out >= len(counts) and len(labels) - n_out >= len(counts) else None
    fit, out = train_test_split(idx, test_size=n_out, random_state=seed, stratify=stratify)
    return np.sort(fit), np.sort(out)


def choose_backend(requested: str, n_rows: int, sklearn_max_rows: int, device: str) -> Backend:
    """auto: scikit-learn for small sets on CPU, torch (GPU when present) otherwise."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return "sklearn" if n_rows <= sklearn_max_rows and device == "cpu" else "torch"


# ----------------------------------------------------------------------------- fitting


def fit_sklearn(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int, tol: float) -> LinearModel:
    """scikit-learn's multinomial L-BFGS with C = 1/(l2 n): the objective of the module docstring."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(C=1.0 / (l2 * len(x)), solver="lbfgs", max_iter=max_iter, tol=tol)

    # One BLAS thread for small sets: there OpenMP's spinning threads cost far more than they
    # save, up to 100x on a busy 2-core machine. Large sets get every core.
    threads = 1 if x.size <= SMALL_FOR_BLAS else None
    with warnings.catch_warnings(), threadpool_limits(limits=threads):
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the budget we chose
        clf.fit(x, y)
    weight = np.zeros((x.shape[1], n_classes), np.float32)
    bias = np.full(n_classes, -1e4, np.float32)  # classes absent from y never win
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # scikit-learn stores one row for two classes
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight[:, clf.classes_] = coef.T
    bias[clf.classes_] = intercept
    return LinearModel(weight, bias)


def fit_torch(
    data: Rows,
    n_classes: int,
    l2: float,
    max_iter: int,
    tol: float,
    init: LinearModel | None = None,
) -> LinearModel:
    """Full-batch L-BFGS (strong Wolfe line search) in float32 on the rows' device.

    The loss and its gradient are accumulated over the rows' chunks, so memory is
    bounded by a chunk, not by the whole set. The weight is held as
    (classes, features) for F.linear, whose weight gradient is grad^T @ x: on CPU
    several times faster than the x^T @ grad that a (features, classes) matmul needs.
    ``init`` warm-starts from a neighbouring L2 strength (the optimum is unique,
    only the number of iterations changes).
    """
    n, d, dev = len(data), data.x.shape[1], data.device
    if init is None:
        weight, bias = torch.zeros(n_classes, d, device=dev), torch.zeros(n_classes, device=dev)
    else:
        weight = torch.as_tensor(init.weight.T, device=dev).contiguous()
        bias = torch.as_tensor(init.bias, device=dev).clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = torch.zeros((), device=dev)
        for x, y in data.chunks():
            part = F.cross_entropy(F.linear(x, weight, bias), y, reduction="sum") / n
            part.backward()
            total += part.detach()
        penalty = 0.5 * l2 * (weight * weight).sum()
        penalty.backward()
        return total + penalty.detach()

    opt.step(closure)
    return LinearModel(weight.detach().T.contiguous().cpu().numpy(), bias.detach().cpu().numpy())


def scores(model: LinearModel, x: np.ndarray | torch.Tensor, chunk_rows: int = 262144) -> torch.Tensor:
    """Class scores (logits) for standardised features, on x's device when x is a tensor."""
    x = torch.as_tensor(x)
    weight = torch.as_tensor(model.weight, device=x.device)
    bias = torch.as_tensor(model.bias, device=x.device)
    return torch.cat([x[s : s + chunk_rows] @ weight + bias for s in range(0, len(x), chunk_rows)])


def rows_topk(model: LinearModel, data: Rows, ks: Sequence[int]) -> list[float]:
    """Top-k accuracies of the probe over the rows, counted chunk by chunk (no N x classes score matrix)."""
    weight = torch.as_tensor(model.weight, device=data.device)
    bias = torch.as_tensor(model.bias, device=data.device)
    hits = [0.0] * len(ks)
    for x, y in data.chunks():
        logits = x @ weight + bias
        for i, k in enumerate(ks):
            hits[i] += topk_accuracy(logits, y, k) * len(y)
    return [h / len(data) for h in hits]


class _Fitter:
    """One backend, bound to its settings, so selection, refit and scoring call the same thing."""

    def __init__(
        self,
        backend: Backend,
        n_classes: int,
        max_iter: int,
        tol: float,
        chunk_rows: int,
        device: str,
        resident_bytes: float,
    ):
        self.backend, self.n_classes, self.max_iter, self.tol = backend, n_classes, max_iter, tol
        self.chunk_rows, self.device, self.resident_bytes = chunk_rows, device, resident_bytes

    def prepare(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray | None, standardize: Standardizer):
        """x's rows (all, or the index `rows`) as the backend fits on them."""
        if self.backend == "sklearn":
            return standardize(take_rows(x, rows, 0, len(x))), (y if rows is None else y[rows])
        return Rows(x, y, rows, standardize, self.device, self.chunk_rows, self.resident_bytes)

    def fit(self, data, l2: float, init: LinearModel | None) -> LinearModel:
        if self.backend == "sklearn":
            return fit_sklearn(*data, self.n_classes, l2, self.max_iter, self.tol)
        return fit_torch(data, self.n_classes, l2, self.max_iter, self.tol, init)

    def topk(self, model: LinearModel, data, ks: Sequence[int] = (1,)) -> list[float]:
        if self.backend == "sklearn":
            x, y = data
            logits = scores(model, x, self.chunk_rows)
            return [topk_accuracy(logits, y, k) for k in ks]
        return rows_topk(model, data, ks)


# ----------------------------------------------------------------------------- protocol


def select_l2(
    fitter: _Fitter, x: np.ndarray, y: np.ndarray, grid: Sequence[float], holdout: float, seed: int
) -> tuple[float, dict[float, float], LinearModel | None]:
    """The L2 strength with the best top-1 on a held-out slice of train (ties: the stronger one).

    Strengths are visited from strong to weak so each torch fit warm-starts from the last;
    the chosen model is returned to warm-start the refit on all of train.
    """
    fit_idx, out_idx = holdout_split(y, holdout, seed)
    standardize = Standardizer(x, fit_idx, fitter.chunk_rows)
    fit_data = fitter.prepare(x, y, fit_idx, standardize)
    out_data = fitter.prepare(x, y, out_idx, standardize)
    results: dict[float, float] = {}
    models: dict[float, LinearModel] = {}
    model = None
    for l2 in sorted(set(grid), reverse=True):
        model = models[l2] = fitter.fit(fit_data, l2, model)
        results[l2] = fitter.topk(model, out_data)[0]
    best = max(results, key=lambda l2: (results[l2], l2))
    return best, results, models[best]


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    n_classes: int,
    l2_grid: Sequence[float],
    holdout: float = 0.1,
    backend: str = "auto",
    sklearn_max_rows: int = 20000,
    max_iter: int = 100,
    tol: float = 1e-5,
    chunk_rows: int = 65536,
    resident_mb: float = 2048,
    seed: int = 0,
    device: str | None = None,
) -> ProbeResult:
    """Standardise, choose L2 on held-out train, refit on all train, report top-1/top-5 on val.

    The feature matrices may be memory maps: they are read by row, never copied whole.
    """
    device = device or default_device()
    chosen = choose_backend(backend, len(train_x), sklearn_max_rows, device)
    fitter = _Fitter(
        chosen, n_classes, max_iter, tol, chunk_rows, device if chosen == "torch" else "cpu", resident_mb * 2**20
    )
    if len(l2_grid) > 1:
        l2, holdout_top1, warm = select_l2(fitter, train_x, train_y, l2_grid, holdout, seed)
    else:
        l2, holdout_top1, warm = float(l2_grid[0]), {}, None
    standardize = Standardizer(train_x, chunk_rows=chunk_rows)
    model = fitter.fit(fitter.prepare(train_x, train_y, None, standardize), l2, warm)
    top1, top5 = fitter.topk(model, fitter.prepare(val_x, val_y, None, standardize), (1, 5))
    return ProbeResult(
        top1=top1,
        top5=top5,
        l2=float(l2),
        n_train=int(len(train_x)),
        n_features=int(train_x.shape[1]),
        backend=chosen,
        holdout_top1=holdout_top1,
    )


def probe_with(cfg, train_x, train_y, val_x, val_y, *, n_classes: int, seed: int) -> ProbeResult:
    """linear_probe with the settings of params.yaml's `eval.linear` section (the stages' one way in)."""
    return linear_probe(
        train_x,
        train_y,
        val_x,
        val_y,
        n_classes=n_classes,
        l2_grid=cfg.l2_grid,
        holdout=cfg.holdout,
        backend=cfg.backend,
        sklearn_max_rows=cfg.sklearn_max_rows,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        chunk_rows=cfg.chunk_rows,
        resident_mb=cfg.resident_mb,
        seed=seed,
    )
