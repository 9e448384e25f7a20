"""The torchvision backend: webdataset shards -> torchvision v2 views -> batches, in DataLoader workers.

Determinism without giving up workers: every worker reads the rank's sample
stream in the same order (same tars, same seeded shuffle buffer, cheap: it is
bytes), but decodes and augments only the batches j with
(j - skip) % workers == worker id, which the DataLoader's round robin then
returns in order 0, 1, 2, .... Each sample's augmentation is seeded from
(plan seed, its position in the rank's stream), so the batches do not depend
on the number of workers, and skipping n batches needs no decoding of them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2

from sslflow.augment import torchvision_ops as T
from sslflow.augment import views
from sslflow.augment.catalogue import rank_range
from sslflow.augment.plan import Plan
from sslflow.augment.spec import AugmentCfg
from sslflow.data.read import IMAGE_EXTS

Raw = tuple[str, object, int]  # (key, a shard's image member or an HWC uint8 patch, label or surrogate class)


class TorchvisionLoader:
    """Iterable of contract batches for one epoch of one rank; len() = batches it yields."""

    def __init__(self, plan: Plan, cfg: AugmentCfg):
        self.plan, self.cfg = plan, cfg

    def __len__(self) -> int:
        return self.plan.num_batches - self.plan.skip_batches

    def next_epoch(self) -> TorchvisionLoader:
        """The next epoch's loader: its batches depend on (seed, epoch, position) alone, nothing carries over."""
        return TorchvisionLoader(self.plan.for_epoch(self.plan.epoch + 1), self.cfg)

    def state(self) -> None:
        """Nothing to keep beyond the epoch and batch the caller resumes at (see `make_loader`)."""
        return None

    def __iter__(self):
        workers = max(1, min(self.plan.threads, len(self)))
        cuda = self.plan.torch_device.type == "cuda"
        loader = DataLoader(
            BatchStream(self.plan, self.cfg),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=self.cfg.prefetch,
            pin_memory=cuda,
        )
        for batch in loader:
            yield {
                k: v.to(self.plan.torch_device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()
            }


class BatchStream(IterableDataset):
    def __init__(self, plan: Plan, cfg: AugmentCfg):
        self.plan, self.cfg = plan, cfg

    def __iter__(self) -> Iterator[dict]:
        plan = self.plan
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        maker = ViewMaker(plan, self.cfg)
        for index, samples in enumerate(_chunks(self._raw(), plan.batch_size)):
            if index >= plan.num_batches:
                return
            if index >= plan.skip_batches and (index - plan.skip_batches) % workers == worker:
                yield maker.batch(index, samples[: plan.batch_size])

    def _raw(self) -> Iterator[Raw]:
        """This rank's samples in order: by index for keyed subsets and exemplar copies, else the shard stream."""
        plan = self.plan
        if plan.patches is not None:
            n = len(plan.patches)
            yield from ((str(i), plan.patches[i % n], int(i % n)) for i in plan.order)
        elif plan.positions is not None:
            cat = plan.catalogue
            yield from ((cat.keys[i], cat.read_image(i), cat.read_label(i)) for i in plan.order)
        else:
            yield from self._shard_stream()

    def _shard_stream(self) -> Iterator[Raw]:
        """The rank's contiguous slice of the split read through webdataset, shuffled by a seeded buffer."""
        plan, cat = self.plan, self.plan.catalogue
        start, end = rank_range(plan.total, plan.slot, plan.world_size)
        wanted = set(cat.keys[start:end])
        tars = [str(cat.shards[s]) for s in np.unique(cat.shard[start:end])]
        stream = wds.WebDataset(tars, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
        stream = stream.select(lambda sample: sample["__key__"] in wanted)
        if plan.shuffle:
            # the shard stage already shuffled globally; the buffer varies the order between epochs,
            # and starting to yield at 1/8 full keeps the first batch from waiting on a full buffer
            buffer = max(1, min(self.cfg.shuffle_buffer, end - start))
            stream = stream.shuffle(buffer, initial=max(1, buffer // 8), rng=random.Random(plan.seed))
        for sample in stream:
            ext = next(e for e in IMAGE_EXTS if e in sample)
            yield sample["__key__"], sample[ext], int(sample["cls"])


class ViewMaker:
    """Raw samples -> one contract batch, every sample's randomness seeded from its position."""

    def __init__(self, plan: Plan, cfg: AugmentCfg):
        self.plan, self.cfg = plan, cfg
        args = (cfg.size, plan.channels, plan.mean, plan.std)
        view_ops = {
            "simclr": cfg.simclr.ops,
            "supervised": cfg.supervised.ops,
            "rotation": cfg.rotation.ops,
            "exemplar": cfg.exemplar.ops,
        }
        self.transform = T.view_transform(view_ops[plan.kind], *args) if plan.kind in view_ops else None
        self.eval = T.eval_transform(cfg.size, cfg.eval.crop_frac, plan.mean, plan.std)
        self.normalise = v2.Normalize(list(plan.mean), list(plan.std))

    def batch(self, index: int, samples: list[Raw]) -> dict:
        made = []
        for offset, (key, data, label) in enumerate(samples):
            position = index * self.plan.batch_size + offset
            with torch.random.fork_rng(devices=[]):
                # the CPU generator alone: torch.manual_seed would also (lazily) seed every CUDA device
                torch.default_generator.manual_seed(views.derive_seed(self.plan.seed, position))
                made.append(self.sample(self.image(data), key, label))
        parts = {name: _stack([m[name] for m in made]) for name in made[0]}
        return views.assemble(self.plan.kind, parts)

    def image(self, data) -> torch.Tensor:
        if isinstance(data, np.ndarray):
            return torch.from_numpy(data).permute(2, 0, 1)
        return T.stored_image(data, self.plan.channels, self.plan.raw_shape)

    def sample(self, image: torch.Tensor, key: str, label: int) -> dict:
        kind = self.plan.kind
        if kind == "simclr":
            return {"view1": self.transform(image), "view2": self.transform(image), "label": label}
        if kind == "rotation":
            base = self.transform(image)
            return {f"rot{k}": T.quarter_turn(base, k) for k in range(4)} | {"label": label}
        if kind == "relpos":
            center, neighbour, target = T.relpos_pair(image, self.cfg.relpos, self.normalise)
            return {"center": center, "neighbour": neighbour, "target": target}
        if kind == "exemplar":
            return {"image": self.transform(image), "target": label}
        if kind == "supervised":
            return {"image": self.transform(image), "label": label}
        return {"image": self.eval(image), "label": label, "key": key}


def _stack(items: list):
    if isinstance(items[0], str):
        return items
    if isinstance(items[0], int):
        return torch.tensor(items, dtype=torch.int64)
    return torch.stack(items)


def _chunks(items: Iterator[Raw], size: int) -> Iterator[list[Raw]]:
    chunk: list[Raw] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
