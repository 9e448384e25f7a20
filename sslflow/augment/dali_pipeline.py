"""The DALI backend: shards -> decoded images -> the views of one kind -> torch batches.

Whole splits are read by ``fn.readers.webdataset`` (with the DALI indexes,
split per rank by ``shard_id``/``num_shards``, shuffled with a seed derived
from (params.seed, epoch, rank)). Keyed subsets (1%, 10%) and exemplar patches
come through ``fn.external_source``: the reader cannot filter keys, and the
catalogue already knows every sample's byte range, so a subset is read by seek.

On a GPU, JPEG/PNG decoding is 'mixed' (nvJPEG) and every op runs on the GPU;
on the CPU, DALI runs with ``device_id=None``. Batches leave the pipeline
through `feed_ndarray` copies into torch tensors on the requested device.
"""

from __future__ import annotations

import numpy as np
import torch
from nvidia.dali import Pipeline, fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import feed_ndarray

from sslflow.augment import dali_ops as ops
from sslflow.augment import views
from sslflow.augment.catalogue import index_path, shard_files
from sslflow.augment.plan import Plan
from sslflow.augment.spec import AugmentCfg, RandomResizedCrop

LABEL_BYTES = 8  # longest class id, in ASCII digits, that a `.cls` member may hold


def build_pipeline(plan: Plan, cfg: AugmentCfg) -> Pipeline:
    """One pipeline per (kind, epoch, rank): its seed fixes the shuffle and every random op."""
    device_id = None if plan.gpu is None else plan.gpu
    pipe = _graph(
        plan,
        cfg,
        batch_size=plan.batch_size,
        num_threads=plan.threads,
        device_id=device_id,
        seed=plan.seed,
        prefetch_queue_depth=cfg.prefetch,
        enable_conditionals=True,
    )
    pipe.build()
    return pipe


@pipeline_def
def _graph(plan: Plan, cfg: AugmentCfg):
    frame = _frame(plan, cfg)
    encoded, label, info = _source(plan, cfg)
    if plan.kind == "exemplar":
        images = _on_device(encoded, frame)
        return _exemplar(images, cfg, frame) + (label,)
    if plan.kind in ("simclr", "supervised", "rotation"):
        view_ops = {"simclr": cfg.simclr.ops, "supervised": cfg.supervised.ops, "rotation": cfg.rotation.ops}[plan.kind]
        copies = 2 if plan.kind == "simclr" else 1
        made = [_augmented_view(encoded, view_ops, cfg, frame) for _ in range(copies)]
        if plan.kind == "rotation":
            return tuple(ops.normalize(ops.rotate_by(made[0], k), frame) for k in range(4)) + (label,)
        return tuple(ops.normalize(v, frame) for v in made) + (label,)
    images = _decode(encoded, frame)
    if plan.kind == "relpos":
        return _relpos(images, cfg, frame)
    return _eval(images, cfg, frame), label, info


def _frame(plan: Plan, cfg: AugmentCfg) -> ops.Frame:
    return ops.Frame(
        size=cfg.size,
        channels=plan.channels,
        device="cpu" if plan.gpu is None else "gpu",
        mean255=tuple(255.0 * m for m in plan.mean),
        std255=tuple(255.0 * s for s in plan.std),
    )


def _source(plan: Plan, cfg: AugmentCfg):
    """(encoded or raw images, int label, source info or None) for the plan's selection."""
    if plan.patches is not None or plan.positions is not None:
        images, label = fn.external_source(
            source=ExternalBatches(plan),
            num_outputs=2,
            batch=True,
            batch_info=True,
            dtype=[types.UINT8, types.INT64],
            layout=["HWC" if plan.patches is not None else "", ""],
        )
        return images, label, None
    tars = shard_files(plan.shards_dir, plan.split)
    encoded, cls = fn.readers.webdataset(
        paths=[str(t) for t in tars],
        index_paths=[str(index_path(t)) for t in tars],
        ext=["jpg;png", "cls"],
        missing_component_behavior="error",
        shard_id=plan.slot,
        num_shards=plan.world_size,
        random_shuffle=plan.shuffle,
        initial_fill=max(1, min(cfg.shuffle_buffer, plan.total)),
        seed=plan.seed,
        pad_last_batch=True,
        name="reader",
    )
    info = fn.get_property(encoded, key="source_info") if plan.kind == "eval" else None
    return encoded, fn.pad(cls, shape=[LABEL_BYTES], fill_value=0), info


def _decode(encoded, frame: ops.Frame):
    return fn.decoders.image(encoded, device=_decoder_device(frame), output_type=_colour(frame))


def _decoder_device(frame: ops.Frame) -> str:
    return "mixed" if frame.device == "gpu" else "cpu"


def _colour(frame: ops.Frame):
    return types.GRAY if frame.channels == 1 else types.RGB


def _augmented_view(encoded, view_ops: list, cfg: AugmentCfg, frame: ops.Frame):
    """Decode and augment one view; with roi_decode, the crop is decoded directly (fewer pixels decoded)."""
    if cfg.roi_decode and view_ops and isinstance(view_ops[0], RandomResizedCrop):
        crop = view_ops[0]
        x = fn.decoders.image_random_crop(
            encoded,
            device=_decoder_device(frame),
            output_type=_colour(frame),
            random_area=list(crop.scale),
            random_aspect_ratio=list(crop.ratio),
            num_attempts=10,
        )
        return ops.apply_ops(ops.resize_to(x, frame.size), view_ops[1:], frame, resized=True)
    return ops.apply_ops(_decode(encoded, frame), view_ops, frame)


def _exemplar(images, cfg: AugmentCfg, frame: ops.Frame):
    return (ops.normalize(ops.apply_ops(images, cfg.exemplar.ops, frame), frame),)


def _eval(images, cfg: AugmentCfg, frame: ops.Frame):
    """Shorter side to size / crop_frac, centre crop size: deterministic."""
    resized = fn.resize(images, resize_shorter=round(frame.size / cfg.eval.crop_frac))
    return ops.normalize(resized, frame, crop=frame.size)


def _relpos(images, cfg: AugmentCfg, frame: ops.Frame):
    """A jittered 3x3 grid placed at random in the resized image; the centre cell and neighbour `target`."""
    rp = cfg.relpos
    grid = ops.resize_to(images, rp.grid)
    step = rp.patch + rp.gap
    origin_y, origin_x = _integer(0, rp.grid - rp.extent), _integer(0, rp.grid - rp.extent)
    target = fn.random.uniform(values=list(range(8)), dtype=types.INT32)
    cell = target + fn.cast(target >= 4, dtype=types.INT32)  # skip the centre (cell 4)
    row, col = cell // 3, cell % 3

    def patch(cell_row, cell_col):
        top = origin_y + cell_row * step + _integer(0, 2 * rp.jitter)
        left = origin_x + cell_col * step + _integer(0, 2 * rp.jitter)
        start = fn.stack(fn.cast(top, dtype=types.INT32), fn.cast(left, dtype=types.INT32))
        x = fn.slice(grid, start=start, shape=[rp.patch, rp.patch], axis_names="HW")
        return ops.normalize(_chroma_treatment(x, rp, frame), frame)

    return patch(1, 1), patch(row, col), target


def _chroma_treatment(x, rp, frame: ops.Frame):
    """Per patch: colour dropping with probability colour_drop, else green-magenta projection (colour only)."""
    if frame.channels == 3:
        if ops.coin(rp.colour_drop):
            x = ops.colour_drop(x, frame)
        elif rp.projection:
            x = ops.project_green_magenta(x, frame)
    return x


def _integer(low: int, high: int):
    """Uniform integer in [low, high] per sample."""
    return fn.random.uniform(values=list(range(low, high + 1)), dtype=types.INT32)


def _on_device(node, frame: ops.Frame):
    return node.gpu() if frame.device == "gpu" else node


class ExternalBatches:
    """Batch `iteration` of a keyed subset or of the exemplar epoch, read from the plan's fixed order.

    Indexed by iteration rather than by call count, so prefetching and skipping
    cannot shift which samples a batch holds.
    """

    def __init__(self, plan: Plan):
        self.plan = plan

    def __call__(self, info) -> tuple[list[np.ndarray], list[np.ndarray]]:
        order = self.plan.order
        chunk = order[info.iteration * self.plan.batch_size : (info.iteration + 1) * self.plan.batch_size]
        if len(chunk) == 0:
            raise StopIteration
        if self.plan.patches is not None:
            n = len(self.plan.patches)
            return [self.plan.patches[i % n] for i in chunk], [np.array(i % n, np.int64) for i in chunk]
        cat = self.plan.catalogue
        images = [np.frombuffer(cat.read_image(i), np.uint8) for i in chunk]
        return images, [np.array(cat.read_label(i), np.int64) for i in chunk]


class DaliLoader:
    """Iterable of contract batches for one epoch of one rank; len() = batches it yields."""

    def __init__(self, plan: Plan, cfg: AugmentCfg):
        self.plan, self.cfg = plan, cfg

    def __len__(self) -> int:
        return self.plan.num_batches - self.plan.skip_batches

    def __iter__(self):
        plan = self.plan
        pipe = build_pipeline(plan, self.cfg)
        try:
            for _ in range(plan.skip_batches):
                pipe.run()
            for index in range(plan.skip_batches, plan.num_batches):
                outputs = pipe.run()
                yield views.assemble(plan.kind, self._parts(outputs, index))
        finally:
            del pipe

    def _parts(self, outputs, index: int) -> dict:
        plan = self.plan
        names = views.OUTPUTS[plan.kind]
        keep = min(plan.batch_size, plan.rank_count - index * plan.batch_size)
        parts = {}
        for name, out in zip(names, outputs):
            if name == "key":
                parts[name] = self._keys(out, index, keep)
            else:
                parts[name] = _to_torch(out, plan.torch_device)[:keep]
        if "label" in parts and parts["label"].dtype == torch.uint8:
            parts["label"] = views.ascii_labels(parts["label"])
        for name in ("label", "target"):
            if name in parts:
                parts[name] = parts[name].to(torch.int64)
        return parts

    def _keys(self, info, index: int, keep: int) -> list[str]:
        plan = self.plan
        if plan.order is not None:
            chunk = plan.order[index * plan.batch_size : index * plan.batch_size + keep]
            return [plan.catalogue.keys[i] for i in chunk]
        # source_info is "<tar>:<offset>:<member>"; the key is the member name up to its first dot
        return [bytes(np.asarray(info[i])).decode().rsplit(":", 1)[-1].split(".", 1)[0] for i in range(keep)]


def _to_torch(tensor_list, device: torch.device) -> torch.Tensor:
    dense = tensor_list.as_tensor()
    target_device = device if isinstance(tensor_list, _GPU_LISTS) else torch.device("cpu")
    out = torch.empty(dense.shape(), dtype=_TORCH_TYPES[dense.dtype], device=target_device)
    stream = torch.cuda.current_stream(device) if target_device.type == "cuda" else None
    feed_ndarray(dense, out, cuda_stream=stream)
    return out.to(device, non_blocking=True)


_TORCH_TYPES = {
    types.FLOAT: torch.float32,
    types.UINT8: torch.uint8,
    types.INT32: torch.int32,
    types.INT64: torch.int64,
}


def _gpu_lists():
    from nvidia.dali.backend import TensorListGPU

    return (TensorListGPU,)


_GPU_LISTS = _gpu_lists()
