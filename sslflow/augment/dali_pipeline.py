"""The DALI backend: shards -> decoded images -> the views of one kind -> torch batches.

Whole splits are read by ``fn.readers.webdataset`` (with the DALI indexes,
split per rank by ``shard_id``/``num_shards``, shuffled with a seed derived
from (params.seed, epoch, rank)). Keyed subsets (1%, 10%) and exemplar patches
come through ``fn.external_source``: the reader cannot filter keys, and the
catalogue already knows every sample's byte range, so a subset is read by seek.

On a GPU, JPEG/PNG decoding is 'mixed' (nvJPEG) and every op runs on the GPU;
on the CPU, DALI runs with ``device_id=None``. Batches leave the pipeline
through `feed_ndarray` copies into torch tensors on the requested device
(the one copy: DALI reuses its buffers), NHWC in memory and NCHW in shape,
which is channels_last.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from nvidia.dali import Pipeline, fn, pipeline_def, types
from nvidia.dali.backend import TensorListGPU
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
        made = _views(encoded, view_ops, 2 if plan.kind == "simclr" else 1, cfg, frame)
        if plan.kind == "rotation":
            return tuple(ops.normalize(ops.rotate_by(made[0], k), frame) for k in range(4)) + (label,)
        return tuple(ops.normalize(v, frame) for v in made) + (label,)
    images = _decode(encoded, cfg, frame)
    if plan.kind == "relpos":
        return _relpos(images, cfg, frame)
    # keyed sources know their keys on the Python side; the reader reports each sample's member name
    return (_eval(images, cfg, frame), label) + ((info,) if info is not None else ())


def _frame(plan: Plan, cfg: AugmentCfg) -> ops.Frame:
    return ops.Frame(
        size=cfg.size,
        channels=plan.channels,
        device="cpu" if plan.gpu is None else "gpu",
        mean255=tuple(255.0 * m for m in plan.mean),
        std255=tuple(255.0 * s for s in plan.std),
    )


def _source(plan: Plan, cfg: AugmentCfg):
    """(encoded or raw images, label, source info or None) for the plan's selection."""
    if plan.patches is not None or plan.positions is not None:
        return _indexed_source(plan)
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
        # read(), not mmap: mapped shards count in the process's resident set as they are read, so an
        # epoch over ImageNet would look like 140 GB of RSS to a cluster's memory limit (and network
        # file systems serve reads better than mappings)
        dont_use_mmap=True,
        name="reader",
    )
    info = fn.get_property(encoded, key="source_info") if plan.kind == "eval" else None
    return encoded, fn.pad(cls, shape=[LABEL_BYTES], fill_value=0), info


def _indexed_source(plan: Plan):
    """Keyed subsets (encoded bytes) and exemplar copies (HWC patches), batch by batch from Python."""
    layout = "HWC" if plan.patches is not None else ""
    if plan.kind == "relpos":  # the only view without labels
        images = fn.external_source(
            source=ExternalBatches(plan, False), batch=True, batch_info=True, dtype=types.UINT8, layout=layout
        )
        return images, None, None
    images, labels = fn.external_source(
        source=ExternalBatches(plan, True),
        num_outputs=2,
        batch=True,
        batch_info=True,
        dtype=[types.UINT8, types.INT64],
        layout=[layout, ""],
    )
    return images, labels, None


def _decode(encoded, cfg: AugmentCfg, frame: ops.Frame):
    return _decoded(fn.decoders.image(encoded, output_type=_colour(frame), **_decoder(cfg, frame)), cfg, frame)


def _decoder(cfg: AugmentCfg, frame: ops.Frame) -> dict:
    """Decoder placement: CPU without a GPU; on a GPU, nvJPEG ('mixed') unless gpu_decode says cpu."""
    if frame.device == "gpu" and cfg.gpu_decode == "mixed":
        return {"device": "mixed", "hw_decoder_load": cfg.hw_decoder_load}
    return {"device": "cpu"}


def _decoded(images, cfg: AugmentCfg, frame: ops.Frame):
    """Images for the augmentation ops: moved to the GPU when they were decoded on the CPU for a GPU pipeline."""
    return images.gpu() if frame.device == "gpu" and cfg.gpu_decode == "cpu" else images


def _colour(frame: ops.Frame):
    return types.GRAY if frame.channels == 1 else types.RGB


def _views(encoded, view_ops: list, copies: int, cfg: AugmentCfg, frame: ops.Frame) -> list:
    """`copies` independent draws of `view_ops`: from one decode, or, with roi_decode, each from its own crop decode."""
    if cfg.roi_decode and view_ops and isinstance(view_ops[0], RandomResizedCrop):
        return [_roi_view(encoded, view_ops, cfg, frame) for _ in range(copies)]
    images = _decode(encoded, cfg, frame)
    return [ops.apply_ops(images, view_ops, frame) for _ in range(copies)]


def _roi_view(encoded, view_ops: list, cfg: AugmentCfg, frame: ops.Frame):
    """Decode only a random crop (nvJPEG / libjpeg-turbo ROI decoding), then resize and run the other ops."""
    crop = view_ops[0]
    x = fn.decoders.image_random_crop(
        encoded,
        output_type=_colour(frame),
        random_area=list(crop.scale),
        random_aspect_ratio=list(crop.ratio),
        num_attempts=10,
        **_decoder(cfg, frame),
    )
    return ops.apply_ops(ops.resize_to(_decoded(x, cfg, frame), frame.size), view_ops[1:], frame, resized=True)


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
        if ops.sometimes(rp.colour_drop):
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
    cannot shift which samples a batch holds. A keyed subset is read by
    `plan.threads` threads (a seek and a read per image, which release the
    GIL), and the next batch's reads start before this one is returned, so
    the reading overlaps the pipeline's work instead of stalling it.
    """

    def __init__(self, plan: Plan, with_labels: bool):
        self.plan, self.with_labels = plan, with_labels
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, list[Future]] = {}

    def __call__(self, info):
        chunk = self._chunk(info.iteration)
        if len(chunk) == 0:
            raise StopIteration
        if self.plan.patches is not None:
            n = len(self.plan.patches)
            images, labels = [self.plan.patches[i % n] for i in chunk], [i % n for i in chunk]
        else:
            futures = self._pending.pop(info.iteration, None) or self._submit(chunk)
            if len(self._chunk(info.iteration + 1)):
                self._pending = {info.iteration + 1: self._submit(self._chunk(info.iteration + 1))}
            images, labels = zip(*(f.result() for f in futures))
        if not self.with_labels:
            return list(images)
        return list(images), [np.array(label, np.int64) for label in labels]

    def _chunk(self, iteration: int) -> np.ndarray:
        size = self.plan.batch_size
        return self.plan.order[iteration * size : (iteration + 1) * size]

    def _submit(self, chunk) -> list[Future]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.plan.threads, thread_name_prefix="keyed-read")
        return [self._pool.submit(self._read, int(i)) for i in chunk]

    def _read(self, i: int) -> tuple[np.ndarray, int]:
        cat = self.plan.catalogue
        image = np.frombuffer(cat.read_image(i), np.uint8)
        return image, cat.read_label(i) if self.with_labels else -1


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
        for position, name in enumerate(names):
            if name == "key":
                parts[name] = self._keys(outputs[position] if position < len(outputs) else None, index, keep)
            else:
                parts[name] = _nchw(_to_torch(outputs[position], plan.torch_device)[:keep])
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
    """Copy a DALI batch into a new torch tensor (DALI reuses its buffers), on the GPU when it is there."""
    dense = tensor_list.as_tensor()
    target_device = device if isinstance(tensor_list, TensorListGPU) else torch.device("cpu")
    out = torch.empty(dense.shape(), dtype=_TORCH_TYPES[dense.dtype], device=target_device)
    stream = torch.cuda.current_stream(device) if target_device.type == "cuda" else None
    feed_ndarray(dense, out, cuda_stream=stream)
    return out.to(device, non_blocking=True)


def _nchw(batch: torch.Tensor) -> torch.Tensor:
    """An NHWC image batch as the NCHW tensor the network takes, channels_last in memory: a view, no copy."""
    return batch.permute(0, 3, 1, 2) if batch.is_floating_point() and batch.ndim == 4 else batch


_TORCH_TYPES = {
    types.FLOAT: torch.float32,
    types.UINT8: torch.uint8,
    types.INT32: torch.int32,
    types.INT64: torch.int64,
}
