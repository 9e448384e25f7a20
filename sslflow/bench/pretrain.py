"""Pretraining step throughput: the compute ceiling against the step fed by the real loader.

    sslflow bench pretrain                                  # this params file: its model, views and shards
    sslflow bench pretrain --arch resnet50 --size 224 --batch 256 --compile   # the GPU measurement
    sslflow bench pretrain --vs-fp32                        # what bf16 autocast buys on this machine
    sslflow bench pretrain --lever cpu-decode:augment.gpu_decode=cpu --lever prefetch-4:augment.prefetch=4

In one process, on one model and batch size: (1) the training step on
synthetic tensors already on the device (the ceiling), (2) the same step fed
by `make_loader` from shards, (3) the loader alone. If (2) is close to (1), the
data pipeline is not what the model waits for. Where it is not, two more
measurements say why: the step fed by real batches made before the clock
started (the fed step without the loader's work: what the batches themselves
cost), and the CPU time the loader takes a batch against the CPU time of a
step. Where the step keeps every core busy (a CPU), the loader's work can only
be added to it: fed / ceiling cannot pass step / (step + loader) in CPU time.
images/s counts source images (a SimCLR image is two views). At a size other
than the params file's, the views follow the ImageNet recipe on generated
ILSVRC-sized JPEG shards (see `sslflow bench loader`) unless --shards is given. --vs-fp32 adds the ceiling of
the same step in fp32, interleaved with the others, and their ratio: what
`train.precision: auto` gains where it picks bf16 (sslflow.precision).

Against the machine: the step's FLOPs (forward + backward, torch's flop
counter, one eager step), the FLOP/s the ceiling achieves, and a same-run
square matmul at the step's precision (bf16 or fp32), interleaved with the
rounds: `peak_fraction` is how near the step runs to what this machine's
matrix units deliver now, on a machine shared or not. And the step's own
convolutions timed alone (sslflow.bench.convs), also interleaved: the rate
this network's shapes reach here, and the bound it puts on `peak_fraction`.

Each `--lever NAME:KEY=VALUE` (repeat a NAME for several keys; only `augment`
keys, the model stays the same) adds the step fed by a loader built with those
params, in the same rounds, on the same compiled model: one row per data-path
lever, all against one ceiling.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

from sslflow.atomic import write_json
from sslflow.errors import UserError
from sslflow.machine import cpu_description

METHODS = ("simclr", "simclr_v2", "rotation", "relpos", "exemplar", "supervised")
LONG_ENOUGH_S = 0.25  # a matmul call this long is timed well by perf_counter, and few of them fit in a bench
HELD_BATCHES = 4  # real batches the memory-fed step cycles through: a few, so ImageNet-sized ones fit too


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="simclr", choices=METHODS)
    parser.add_argument("--arch", default=None, help="resnet18 | resnet34 | resnet50 (default: model.arch)")
    parser.add_argument("--width", type=float, default=None, help="width multiplier (default: model.width)")
    parser.add_argument("--size", type=int, default=None, help="view side (default: augment.size)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 256 on GPU, 64 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default: 50 GPU, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 GPU, 2 CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved ceiling/fed repetitions; medians reported")
    parser.add_argument("--compile", action="store_true", help="torch.compile the step's model")
    parser.add_argument(
        "--vs-fp32", action="store_true", help="also time the ceiling in fp32 (interleaved) and report bf16's speed-up"
    )
    parser.add_argument(
        "--shards", type=Path, default=None, help="shards dir (default: data/shards, or generated JPEGs with --size)"
    )
    parser.add_argument(
        "--lever",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="also time the step fed by a loader with these augment params (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")


def run(
    params,
    method: str = "simclr",
    arch: str | None = None,
    width: float | None = None,
    size: int | None = None,
    batch: int | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    rounds: int = 3,
    compile: bool = False,
    vs_fp32: bool = False,
    shards: Path | None = None,
    lever: list[str] | None = None,
    json: Path | None = None,
) -> dict:
    import torch

    from sslflow.bench.loader import _bench_params, _cwd, _shards
    from sslflow.train.distributed import pick_device

    device = pick_device(params.train.device)
    gpu = device.type == "cuda"
    batch = batch or (256 if gpu else 64)
    steps = steps or (50 if gpu else 5)
    warmup = warmup if warmup is not None else (10 if gpu else 2)
    if min(batch, steps, rounds) < 1 or warmup < 0:
        raise UserError("--batch, --steps and --rounds must be >= 1, --warmup >= 0")
    bench_params = _with_model(_bench_params(params, size), arch, width, compile)
    levers = _levers(bench_params, lever or [])
    with _shards(size, shards, images=max(4 * batch * (warmup + steps), 1536)) as (shards_dir, workdir), _cwd(workdir):
        bench = StepBench(bench_params, method, device, batch, shards_dir)
        fp32 = _fp32_bench(bench_params, method, device, batch, shards_dir) if vs_fp32 and bench.bf16 else None
        flops = bench.step_flops()
        convs = bench.conv_ceiling()
        conv_flops = convs.flops()
        # interleaved, so that a change in the machine's load hits all alike
        ceiling, fed, memory, ceiling_fp32, peak, conv_rate = [], [], [], [], [], []
        step_cpu, loader_cpu = [], []
        lever_fed: dict[str, list[float]] = {name: [] for name in levers}
        for _ in range(rounds):
            peak.append(matmul_flops_per_s(device, bench.bf16))
            conv_rate.append(convs.flops_per_s(warmup, steps))
            ceiling.append(bench.synthetic(warmup, steps, cpu=step_cpu))
            fed.append(bench.fed(warmup, steps))
            memory.append(bench.from_memory(warmup, steps))
            for name, lever_params in levers.items():
                lever_fed[name].append(bench.fed(warmup, steps, lever_params))
            if fp32 is not None:
                ceiling_fp32.append(fp32.synthetic(warmup, steps))
        result = {
            "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({os.cpu_count()} cores)",
            "method": method,
            "backbone": bench.backbone_name,
            "size": bench_params.augment.size,
            "batch": batch,
            "bf16": bench.bf16,
            "channels_last": bench_params.train.channels_last,
            "compile": compile,
            "synthetic_images_per_s": _median(ceiling),
            "loader_fed_images_per_s": _median(fed),
            "rounds": {
                "synthetic": ceiling,
                "fed": fed,
                "memory_fed": memory,
                "matmul_flops_per_s": peak,
                "conv_flops_per_s": conv_rate,
                **({"synthetic_fp32": ceiling_fp32} if fp32 else {}),
                **{f"fed[{name}]": values for name, values in lever_fed.items()},
            },
            "memory_fed_images_per_s": _median(memory),
            "loader_images_per_s": bench.loader_alone(warmup, steps, cpu=loader_cpu),
            "step_cpu_s": round(_median(step_cpu), 5),
            "loader_cpu_s": round(loader_cpu[0], 5),
            "gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if gpu else None,
            "cpu": cpu_description(),
            "step_flops_per_image": round(flops / bench.images_per_batch),
            "matmul_flops_per_s": _median(peak),
            "conv_flops_per_image": round(conv_flops / bench.images_per_batch),
            "conv_flops_per_s": _median(conv_rate),
        }
    result["ratio"] = _ratio(result["loader_fed_images_per_s"], result["synthetic_images_per_s"])
    result["memory_ratio"] = _ratio(result["memory_fed_images_per_s"], result["synthetic_images_per_s"])
    result["loader_cpu_share"] = _ratio(result["loader_cpu_s"], result["step_cpu_s"])
    result["ratio_bound"] = _ratio(result["step_cpu_s"], result["step_cpu_s"] + result["loader_cpu_s"])
    result["step_flops_per_s"] = round(result["synthetic_images_per_s"] * result["step_flops_per_image"])
    result["peak_fraction"] = _ratio(result["step_flops_per_s"], result["matmul_flops_per_s"])
    result.update(_conv_ratios(result))
    result["levers"] = [
        {
            "lever": name,
            "overrides": [item.split(":", 1)[1] for item in lever or [] if item.split(":", 1)[0] == name],
            "loader_fed_images_per_s": _median(values),
            "ratio": _ratio(_median(values), result["synthetic_images_per_s"]),
        }
        for name, values in lever_fed.items()
    ]
    if fp32 is not None:
        result["synthetic_fp32_images_per_s"] = _median(ceiling_fp32)
        result["bf16_speedup"] = _ratio(result["synthetic_images_per_s"], result["synthetic_fp32_images_per_s"])
    _print(result)
    if json is not None:
        write_json(json, result)
    return result


def _conv_ratios(r: dict) -> dict:
    """The convolutions' share of the step's FLOPs, their rate against the matmul's, the bound that puts on the
    step's `peak_fraction` (its convolutions' time alone, everything else free), and how near the step runs to it."""
    share = r["conv_flops_per_image"] / r["step_flops_per_image"]
    return {
        "conv_share": _ratio(r["conv_flops_per_image"], r["step_flops_per_image"]),
        "conv_peak_fraction": _ratio(r["conv_flops_per_s"], r["matmul_flops_per_s"]),
        "peak_fraction_bound": _ratio(r["conv_flops_per_s"] / share, r["matmul_flops_per_s"]),
        "bound_fraction": _ratio(r["step_flops_per_s"] * share, r["conv_flops_per_s"]),
    }


def _levers(params, items: list[str]) -> dict:
    """{name: params with the lever's augment overrides}, in the order first named."""
    from sslflow.params import with_overrides

    grouped: dict[str, list[str]] = {}
    for item in items:
        name, sep, override = item.partition(":")
        if not sep or not name or "=" not in override:
            raise UserError(f"--lever {item}: expected NAME:KEY=VALUE")
        if not override.startswith("augment."):
            raise UserError(f"--lever {item}: only augment.* keys (the model and the step stay the bench's)")
        grouped.setdefault(name, []).append(override)
    return {name: with_overrides(params, overrides, f"--lever {name}") for name, overrides in grouped.items()}


def matmul_flops_per_s(device, bf16: bool) -> float:
    """A square matmul's FLOP/s at the step's precision: what the matrix units deliver now.

    8192 on a GPU; on a CPU 2048 (~0.1 s in fp32 on two cores), or the first smaller size whose
    one call takes a quarter second: a CPU that only emulates bf16 multiplies at ~0.3 GFLOP/s,
    a minute a 2048 call. The best of a few repeats after one untimed call, so that a
    preempted repeat does not set the peak."""
    import torch

    gpu = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32

    @functools.lru_cache(maxsize=1)  # one size's operands at a time, drawn once for all its calls
    def operands(n: int) -> tuple:
        return torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)

    def seconds(n: int) -> float:
        a, b = operands(n)
        if gpu:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if gpu:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    n, repeats = (8192, 10) if gpu else (square_matmul_size(seconds, largest=2048), 3)
    seconds(n)  # untimed: the first call of a size allocates and warms up
    return round(2 * n**3 / min(seconds(n) for _ in range(repeats)))


def square_matmul_size(seconds: Callable[[int], float], largest: int, smallest: int = 256) -> int:
    """Doubling from `smallest`, the first size whose call takes LONG_ENOUGH_S, or `largest`."""
    n = smallest
    while n < largest and seconds(n) < LONG_ENOUGH_S:
        n *= 2
    return n


def _fp32_bench(params, method: str, device, batch: int, shards_dir: Path) -> StepBench:
    """The same step with `train.precision: fp32`, from the same initial weights."""
    train = params.train.model_copy(update={"precision": "fp32"})
    return StepBench(params.model_copy(update={"train": train}), method, device, batch, shards_dir)


def _with_model(params, arch: str | None, width: float | None, compile: bool):
    """The params file's model and loop settings with the command line's replacements."""
    model = params.model.model_copy(
        update={
            "arch": arch or params.model.arch,
            "width": width or params.model.width,
            "small_stem": params.augment.size <= 96,
        }
    )
    train = params.train.model_copy(update={"compile": compile})
    return params.model_copy(update={"model": model, "train": train})


class StepBench:
    """One model, optimizer and batch size; three timings."""

    def __init__(self, params, method: str, device, batch: int, shards_dir: Path) -> None:
        import torch

        from sslflow.augment.loader import in_channels
        from sslflow.data.manifest import load_manifest
        from sslflow.methods.registry import build_method
        from sslflow.models.backbone import describe
        from sslflow.precision import use_bf16
        from sslflow.train.optim import build_optimizer, scaled_lr

        self.params, self.device, self.batch, self.shards_dir = params, device, batch, shards_dir
        self.gpu = device.type == "cuda"
        self.bf16 = use_bf16(params.train.precision, device)
        manifest = load_manifest(shards_dir)
        torch.manual_seed(params.seed)
        self.method = build_method(method, params, in_channels(params, shards_dir), len(manifest["classes"]))
        self.method.to(device)
        if params.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.net = torch.compile(self.method) if params.train.compile else self.method
        self.optimizer = build_optimizer(self.method, params.train, scaled_lr(params.train, batch))
        self.backbone_name = describe(params.model)
        self._example = None
        self._held: list[dict] | None = None
        self.images_per_batch = batch

    def loader(self, params=None):
        from sslflow.augment.loader import make_loader

        return make_loader(
            params or self.params,
            kind=self.method.kind,
            batch_size=self.batch,
            device=self.device,
            shards_dir=self.shards_dir,
        )

    def _step(self, batch: dict) -> None:
        from sslflow.train.loop import to_device, train_step

        train_step(
            self.net,
            self.method,
            to_device(batch, self.device, self.params.train.channels_last),
            self.optimizer,
            None,
            self.bf16,
        )

    def _sync(self) -> None:
        import torch

        if self.gpu:
            torch.cuda.synchronize(self.device)

    def _timed(self, batches, warmup: int, steps: int, work, cpu: list[float] | None = None) -> float:
        """images/s over `steps` calls of `work` after `warmup` untimed ones; the process's CPU seconds a
        step (every thread, torch's and the loader's) appended to `cpu` when given."""
        iterator = iter(batches)
        for _ in range(warmup):
            work(next(iterator))
        self._sync()
        images, start, start_cpu = 0, time.perf_counter(), time.process_time()
        for _ in range(steps):
            batch = next(iterator, None)
            if batch is None:
                raise UserError(f"{self.shards_dir}: too few batches of {self.batch} for --warmup + --steps")
            work(batch)
            images += self.method.batch_images(batch)
        self._sync()
        seconds = time.perf_counter() - start
        if cpu is not None:
            cpu.append((time.process_time() - start_cpu) / steps)
        return round(images / seconds, 1)

    def example(self) -> dict:
        """One real batch's shapes, random values generated once on the device."""
        import torch

        from sslflow.train.loop import to_device

        if self._example is None:
            example = to_device(next(iter(self.loader())), self.device, self.params.train.channels_last)
            self._example = {
                k: (torch.randn_like(v) if v.is_floating_point() else v.clone()) if isinstance(v, torch.Tensor) else v
                for k, v in example.items()
            }
            self.images_per_batch = self.method.batch_images(self._example)
        return self._example

    def step_flops(self) -> int:
        """FLOPs of one training step (forward + backward) on the example batch, counted on the eager
        method (the counter sees torch's ops, not a compiled graph's kernels; the arithmetic is the same)."""
        from torch.utils.flop_counter import FlopCounterMode

        from sslflow.train.loop import train_step

        counter = FlopCounterMode(display=False)
        with counter:
            train_step(self.method, self.method, self.example(), self.optimizer, None, self.bf16)
        return counter.get_total_flops()

    def conv_ceiling(self):
        """The convolutions of one eager step on the example batch, ready to be timed alone."""
        from sslflow.bench.convs import ConvCeiling, step_convolutions
        from sslflow.train.loop import train_step

        def step():
            train_step(self.method, self.method, self.example(), self.optimizer, None, self.bf16)

        return ConvCeiling(step_convolutions(self.method, step), self.device, self.bf16)

    def synthetic(self, warmup: int, steps: int, cpu: list[float] | None = None) -> float:
        """The ceiling: the step on `example()`, with no loader at all."""
        return self._timed(_repeat(self.example()), warmup, steps, self._step, cpu)

    def fed(self, warmup: int, steps: int, params=None) -> float:
        """The step fed by the loader (built from `params`, a lever's, when given)."""
        return self._timed(self.loader(params), warmup, steps, self._step)

    def from_memory(self, warmup: int, steps: int) -> float:
        """The step fed by real batches the loader made before the clock started, a few taken in turn: the
        fed step with the loader's work taken away, and what the batches themselves cost left in."""
        if self._held is None:
            batches = iter(self.loader())
            self._held = [next(batches) for _ in range(HELD_BATCHES)]
        return self._timed(itertools.cycle(self._held), warmup, steps, self._step)

    def loader_alone(self, warmup: int, steps: int, cpu: list[float] | None = None) -> float:
        return self._timed(self.loader(), warmup, max(steps, 10), lambda batch: None, cpu)


def _median(values: list[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def _repeat(batch: dict):
    while True:
        yield batch


def _ratio(a: float, b: float) -> float:
    """a / b to 4 significant digits: decimal places would round a small ratio (a loaded machine's
    0.0932) to a different number (0.093)."""
    return float(f"{a / b:.4g}")


def _print(r: dict) -> None:
    print(f"{r['cpu']}")
    print(
        f"{r['device']} | {r['method']} {r['backbone']} | {r['size']} px | batch {r['batch']} | "
        f"bf16 {'on' if r['bf16'] else 'off'} | channels_last {'on' if r['channels_last'] else 'off'} | "
        f"compile {'on' if r['compile'] else 'off'}"
    )
    print(f"  medians of {len(r['rounds']['fed'])} interleaved rounds")
    print(f"  step on synthetic tensors (ceiling) {r['synthetic_images_per_s']:>10.1f} images/s")
    print(f"  step fed by the loader from shards  {r['loader_fed_images_per_s']:>10.1f} images/s")
    print(f"  ratio fed / ceiling                 {r['ratio']:>10.3f}")
    for row in r["levers"]:
        label = f"fed, lever {row['lever']}"
        print(f"  {label:<35} {row['loader_fed_images_per_s']:>10.1f} images/s  ratio {row['ratio']:.3f}")
    memory = f"{r['memory_fed_images_per_s']:>10.1f} images/s  ratio {r['memory_ratio']:.3f}"
    print(f"  step fed from memory (no loader)    {memory}")
    print(f"  loader alone                        {r['loader_images_per_s']:>10.1f} images/s")
    cpu = f"{r['loader_cpu_s'] * 1e3:.1f} / {r['step_cpu_s'] * 1e3:.1f} ms"
    print(f"  CPU time: loader a batch / step     {cpu:>10}  ({r['loader_cpu_share']:.1%})")
    if r["device"].startswith("cpu"):  # the step keeps every core busy: the loader's work adds to it
        print(f"  fed / ceiling, bound on these cores {r['ratio_bound']:>10.3f}  (step / (step + loader) CPU time)")
    precision = "bf16" if r["bf16"] else "fp32"
    print(f"  step FLOPs per image (fwd + bwd)    {r['step_flops_per_image'] / 1e6:>10.1f} MFLOP")
    print(f"  step on synthetic tensors           {r['step_flops_per_s'] / 1e9:>10.1f} GFLOP/s")
    print(f"  {precision} matmul, same run             {r['matmul_flops_per_s'] / 1e9:>10.1f} GFLOP/s")
    print(f"  step / matmul peak                  {r['peak_fraction']:>10.3f}")
    share = f"({r['conv_share']:.0%} of the step's FLOPs)"
    print(f"  its convolutions alone              {r['conv_flops_per_s'] / 1e9:>10.1f} GFLOP/s  {share}")
    print(f"  convolutions / matmul peak          {r['conv_peak_fraction']:>10.3f}")
    print(f"  bound on step / matmul peak         {r['peak_fraction_bound']:>10.3f}  (the rest of the step free)")
    print(f"  step / that bound                   {r['bound_fraction']:>10.3f}")
    if "bf16_speedup" in r:
        print(f"  step in fp32 (ceiling)              {r['synthetic_fp32_images_per_s']:>10.1f} images/s")
        print(f"  bf16 / fp32 ceiling                 {r['bf16_speedup']:>10.3f}")
    if r["gpu_memory_gib"] is not None:
        print(f"  GPU memory (peak allocated)         {r['gpu_memory_gib']:>10.2f} GiB")
