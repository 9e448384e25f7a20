"""The DALI backend: shards -> decoded images -> the views of one kind -> torch batches.

Whole splits are read by ``fn.readers.webdataset`` (with the DALI indexes,
split per rank by ``shard_id``/``num_shards``, shuffled with a seed derived
from (params.seed, first epoch, rank)). Keyed subsets (1%, 10%) and exemplar patches
come through ``fn.external_source``: the reader cannot filter keys, and the
catalogue already knows every sample's byte range, so a subset is read by seek.

A run builds its pipeline once and goes from epoch to epoch in it (`PipelineRun`):
rebuilding per epoch cost 0.4 s of set-up per epoch on the CPU profile, more than
the 1% subset's whole epoch of reading, and on a GPU it drained the prefetch
queue at every boundary. Checkpointing is on, so a training checkpoint carries
the pipeline's state and a resumed run reads what the uninterrupted one would.

On a GPU, JPEG/PNG decoding is 'mixed' (nvJPEG) and every op runs on the GPU;
on the CPU, DALI runs with ``device_id=None``. Raw shards (small images, the
manifest's ``"encoding": "raw"``) are not decoded at all: each ``.raw`` member
is reshaped to the manifest's (H, W, C) and, on a GPU, copied there by
``.gpu()``; `augment.gpu_decode` and `roi_decode` then have nothing to do. Batches leave the pipeline
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
from sslflow.data.read import ENCODED_EXTS, RAW_EXT

LABEL_BYTES = 8  # longest class id, in ASCII digits, that a `.cls` member may hold


def build_pipeline(plan: Plan, cfg: AugmentCfg, checkpoint: str | None = None) -> Pipeline:
    """One pipeline per (kind, rank) and run, starting at the plan's epoch: its seed fixes the shuffle and every
    random op; `checkpoint` (`Pipeline.checkpoint()` of an earlier one) puts it where that one stood."""
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
        enable_checkpointing=True,
        checkpoint=checkpoint,
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
        made = _views(encoded, plan, view_ops, 2 if plan.kind == "simclr" else 1, cfg, frame)
        if plan.kind == "rotation":
            return tuple(ops.normalize(ops.rotate_by(made[0], k), frame) for k in range(4)) + (label,)
        return tuple(ops.normalize(v, frame) for v in made) + (label,)
    images = _images(encoded, plan, cfg, frame)
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
    if plan.indexed:
        return _indexed_source(plan)
    tars = shard_files(plan.shards_dir, plan.split)
    encoded, cls = fn.readers.webdataset(
        paths=[str(t) for t in tars],
        index_paths=[str(index_path(t)) for t in tars],
        ext=[RAW_EXT if plan.raw_shape else ";".join(ENCODED_EXTS), "cls"],
        missing_component_behavior="error",
        shard_id=plan.slot,
        num_shards=plan.world_size,
        stick_to_shard=not plan.shuffle,  # shuffling: the next slice each epoch, as `slot_for`
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
    """Keyed subsets (encoded or raw bytes) and exemplar copies (HWC patches), batch by batch from Python."""
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


def _images(encoded, plan: Plan, cfg: AugmentCfg, frame: ops.Frame):
    """HWC uint8 images for the augmentation ops, on the pipeline's device: raw pixels reshaped, else decoded."""
    if plan.raw_shape is None:
        return _decode(encoded, cfg, frame)
    images = _on_device(fn.reshape(encoded, shape=list(plan.raw_shape), layout="HWC"), frame)
    stored = plan.raw_shape[2]
    if stored == frame.channels:
        return images
    # what the decoders do when asked for the other colour mode: grey replicated, or RGB -> luma
    return fn.color_space_conversion(images, image_type=_COLOURS[stored], output_type=_colour(frame))


_COLOURS = {1: types.GRAY, 3: types.RGB}


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
    return _COLOURS[frame.channels]


def _views(encoded, plan: Plan, view_ops: list, copies: int, cfg: AugmentCfg, frame: ops.Frame) -> list:
    """`copies` independent draws of `view_ops`: from one decode (or raw read), or, with roi_decode, each from its
    own crop decode."""
    if cfg.roi_decode and plan.raw_shape is None and view_ops and isinstance(view_ops[0], RandomResizedCrop):
        return [_roi_view(encoded, view_ops, cfg, frame) for _ in range(copies)]
    images = _images(encoded, plan, cfg, frame)
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
    """Batch `iteration` of epoch `epoch_idx` of a keyed subset or of the exemplar copies, in the plan's order.

    Indexed by (epoch, iteration) rather than by call count, so prefetching, skipping
    and restoring from a checkpoint cannot shift which samples a batch holds; the
    epoch's order is the plan's for the pipeline's first epoch + epoch_idx. A keyed
    subset is read by `plan.threads` threads (a seek and a read per image, which
    release the GIL), and the next batch's reads start before this one is returned,
    so the reading overlaps the pipeline's work instead of stalling it.
    """

    def __init__(self, plan: Plan, with_labels: bool):
        self.first, self.with_labels = plan, with_labels
        self._epoch: tuple[int, Plan] = (0, plan)  # (epoch_idx, its plan): one epoch at a time
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[int, int], list[Future]] = {}

    def __call__(self, info):
        epoch, iteration = info.epoch_idx, info.iteration
        chunk = self._chunk(epoch, iteration)
        if len(chunk) == 0:
            raise StopIteration
        if self.first.patches is not None:
            n = len(self.first.patches)
            images, labels = [self.first.patches[i % n] for i in chunk], [i % n for i in chunk]
        else:
            futures = self._pending.pop((epoch, iteration), None) or self._submit(chunk)
            following = self._chunk(epoch, iteration + 1)
            self._pending = {(epoch, iteration + 1): self._submit(following)} if len(following) else {}
            images, labels = zip(*(f.result() for f in futures))
        if not self.with_labels:
            return list(images)
        return list(images), [np.array(label, np.int64) for label in labels]

    def _chunk(self, epoch: int, iteration: int) -> np.ndarray:
        if self._epoch[0] != epoch:
            self._epoch = (epoch, self.first.for_epoch(self.first.epoch + epoch))
        size = self.first.batch_size
        return self._epoch[1].order[iteration * size : (iteration + 1) * size]

    def _submit(self, chunk) -> list[Future]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.first.threads, thread_name_prefix="keyed-read")
        return [self._pool.submit(self._read, int(i)) for i in chunk]

    def _read(self, i: int) -> tuple[np.ndarray, int]:
        cat = self.first.catalogue
        image = np.frombuffer(cat.read_image(i), np.uint8)
        return image, cat.read_label(i) if self.with_labels else -1


class PipelineRun:
    """One pipeline for a whole run, and where it stands: batch `produced` of the plan's epoch.

    Epochs follow each other in the same pipeline: the reader reshuffles and moves to
    the next slice by itself, every random op continues its stream, and prefetching
    carries over the boundary. An epoch the caller leaves early (drop_last's partial
    batch) is run to its end first, so every epoch starts at its source's beginning.
    """

    def __init__(self, plan: Plan, cfg: AugmentCfg, state: dict | None = None):
        first = plan.for_epoch(state["first_epoch"] if state else plan.epoch)
        self.first_epoch = first.epoch
        self.pipe = build_pipeline(first, cfg, checkpoint=state["dali"] if state else None)
        self.plan = plan.for_epoch(state["epoch"]) if state else first
        self.produced = state["produced"] if state else 0

    @property
    def position(self) -> tuple[int, int]:
        return self.plan.epoch, self.produced

    def run(self):
        outputs = self.pipe.run()
        self.produced += 1
        return outputs

    def go_to(self, epoch: int, batch: int) -> None:
        """Run forward to batch `batch` of `epoch`; the batches in between are produced and dropped."""
        if self.position > (epoch, batch):
            raise ValueError(
                f"the DALI pipeline stands at epoch {self.plan.epoch} batch {self.produced}, "
                f"past epoch {epoch} batch {batch}"
            )
        while self.position != (epoch, batch):
            if self.plan.epoch < epoch and self.produced >= self.plan.num_batches:
                self.end_epoch()
            else:
                self.run()

    def end_epoch(self) -> None:
        for _ in range(self.produced, self.plan.source_batches):
            self.pipe.run()
        if self.plan.indexed:  # an external source ends its epoch by raising StopIteration; reset starts the next
            try:
                self.pipe.run()
            except StopIteration:
                self.pipe.reset()
            else:
                raise RuntimeError(f"DALI external source: more than {self.plan.source_batches} batches in an epoch")
        self.plan, self.produced = self.plan.for_epoch(self.plan.epoch + 1), 0

    def state(self) -> dict:
        return {
            "first_epoch": self.first_epoch,
            "epoch": self.plan.epoch,
            "produced": self.produced,
            "dali": self.pipe.checkpoint(),
        }


class DaliLoader:
    """Iterable of contract batches for one epoch of one rank; len() = batches it yields.

    The pipeline is built at the first iteration (from `state` when given) and handed
    on by `next_epoch`, so a training run builds one; iterating the same loader again
    builds a fresh one.
    """

    def __init__(self, plan: Plan, cfg: AugmentCfg, state: dict | None = None, run: PipelineRun | None = None):
        self.plan, self.cfg = plan, cfg
        self._state, self._run = state, run

    def __len__(self) -> int:
        return self.plan.num_batches - self.plan.skip_batches

    def __iter__(self):
        plan = self.plan
        start = (plan.epoch, plan.skip_batches)
        if self._run is not None and self._run.position > start:
            self._run = None  # iterated again: a fresh pipeline
        run = self._pipeline()
        run.go_to(*start)
        for index in range(plan.skip_batches, plan.num_batches):
            outputs = run.run()
            yield views.assemble(plan.kind, self._parts(outputs, index))

    def next_epoch(self) -> DaliLoader:
        """The next epoch's loader, over this loader's pipeline."""
        return DaliLoader(self.plan.for_epoch(self.plan.epoch + 1), self.cfg, run=self._pipeline())

    def state(self) -> dict:
        """The pipeline's checkpoint and position: `make_loader(..., state=...)` continues from here."""
        return self._pipeline().state()

    def _pipeline(self) -> PipelineRun:
        """This loader's pipeline, built on first use (from the given state, once)."""
        if self._run is None:
            state, self._state = self._state, None
            self._run = PipelineRun(self.plan, self.cfg, state)
        return self._run

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
