#!/usr/bin/env bash
# The GPU tests, then every GPU measurement the project reports, in one run (~12 minutes on an H200), for a
# machine that has torch but not sslflow's other packages installed: DALI and webdataset
# come with ../shared/device/dali-carry.sh, sslflow runs from this tree.
#
#   bash benchmarks/gpu_checks.sh            # results (JSON + log) land in $OUT, or bench-out/
#
# 0. The tests marked `gpu` (DALI GPU ops and nvJPEG, bf16 + compile on CUDA, NCCL/SyncBN on 2+ GPUs),
#    first, under a timeout: a failing test is reported and the measurements still run.
# 1. ResNet-50 SimCLR step, 224 px, bf16, channels_last, batch 256 x 2 views: synthetic
#    tensors (the ceiling) against the step fed by DALI from JPEG shards, eager and
#    compiled, then the compiled step under each data-pipeline lever (issue: GPU throughput).
# 2. The same on the small-image path (28 px, ResNet-18 small stem) when Fashion-MNIST
#    shards are at data/shards (carry them, or run `python -m sslflow shard` first).
# 3. The linear probe on 1.28M x 2048 random features: torch on the GPU against scikit-learn.
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
R50=(--params params/imagenet-r50.yaml --arch resnet50 --size 224 --batch 256 --steps 50 --warmup 10 --rounds 3)

bench() {  # NAME ARGS...: one `sslflow bench pretrain`, its JSON in $OUT/NAME.json, a failure never stops the rest
  local name=$1
  shift
  echo "== $name: sslflow bench pretrain $*"
  timeout 300 python -m sslflow bench pretrain "$@" --json "$OUT/$name.json" || echo "!! $name failed (exit $?)"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c 'import torch, nvidia.dali as d; print("torch", torch.__version__, "| DALI", d.__version__)'
  echo "== gpu tests: pytest -m gpu"
  if python -c 'import pytest, scipy' 2>/dev/null; then
    timeout 240 python -m pytest -q -m gpu -p no:cacheprovider tests/gpu --junitxml "$OUT/gpu-tests.xml" ||
      echo "!! gpu tests failed (exit $?)"
  else
    echo "!! gpu tests skipped: pytest or scipy is not installed here"
  fi
  bench r50-eager "${R50[@]}"
  bench r50-compiled "${R50[@]}" --compile
  bench r50-cpu-decode "${R50[@]}" --compile -S augment.gpu_decode=cpu
  bench r50-hw-decoder-0 "${R50[@]}" --compile -S augment.hw_decoder_load=0
  bench r50-roi-decode "${R50[@]}" --compile -S augment.roi_decode=true
  bench r50-prefetch-4 "${R50[@]}" --compile -S augment.prefetch=4
  if [ -f data/shards/manifest.json ]; then
    bench fmnist-r18 --params params/gpu-fmnist.yaml --batch 512 --steps 100 --rounds 3 --compile
  else
    echo "== fmnist-r18: skipped, no data/shards (Fashion-MNIST shards) in this tree"
  fi
  echo "== linear probe, 1,281,167 x 2048, 1000 classes"
  timeout 600 python benchmarks/linear.py --rows 1281167 --dim 2048 --classes 1000 --sklearn-rows 64000 \
    --json "$OUT/linear.json" || echo "!! linear failed (exit $?)"
} 2>&1 | tee "$OUT/gpu_checks.log"
