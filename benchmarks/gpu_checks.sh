#!/usr/bin/env bash
# Every GPU measurement the project reports, then the GPU tests, in one run of at most 8 minutes
# on a 16-core H100/H200 node that has torch but not DVC, Prefect or dvclive
# (../shared/device/gpu-bundle.sh brings DALI, pydantic, webdataset and a Fashion-MNIST cut):
#
#   bash benchmarks/gpu_checks.sh        # $OUT/gpu_checks.json (every number) + $OUT/gpu_checks.log
#
# 1. Data, once, on every core: ILSVRC-sized JPEG shards (`sslflow bench shards`) and Fashion-MNIST
#    shards (`sslflow shard`, params/gpu-fmnist.yaml); every measurement gets them through --shards.
# 2. ResNet-50 SimCLR step, 224 px, bf16, channels_last, batch 256 x 2 views, blur on as in the
#    recipe: eager, then compiled with one row per data-path lever on the same compiled model.
# 3. The 28 px profile (params/gpu-fmnist.yaml: ResNet-18, small stem, batch 512), eager and compiled.
# 4. The tests marked `gpu`, under what is left of the budget.
# Each step's timeout is cut to the time left, so the run ends by the deadline whatever hangs;
# a failed step is reported and the rest still run.
set -uo pipefail
OUT=${OUT:-bench-out}
BUDGET_S=${BUDGET_S:-480}
WORK=${WORK:-/tmp/sslflow-gpu-checks}
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
JPEG=$WORK/jpeg/data/shards
FMNIST=$WORK/fmnist/data/shards
R50=(--params params/imagenet-r50.yaml --arch resnet50 --size 224 --batch 256 --shards "$JPEG")
LEVERS=(
  --lever cpu-decode:augment.gpu_decode=cpu
  --lever hw-decoder-0:augment.hw_decoder_load=0
  --lever hw-decoder-1:augment.hw_decoder_load=1
  --lever roi-decode:augment.roi_decode=true
  --lever prefetch-4:augment.prefetch=4
  --lever threads-8:augment.threads=8
)

left() { echo $((DEADLINE - $(date +%s))); }

step() { # NAME CAP_S COMMAND...: run with timeout min(CAP_S, time left); log its seconds and exit code
  local name=$1 cap=$2 t0 rc budget
  shift 2
  budget=$(left)
  ((budget < cap)) && cap=$budget
  if ((cap < 10)); then
    echo "!! $name: skipped, the ${BUDGET_S} s budget is spent"
    echo "{\"step\": \"$name\", \"rc\": null, \"seconds\": 0}" >>"$OUT/steps.jsonl"
    return
  fi
  echo "== $name (at most ${cap} s): $*"
  t0=$(date +%s)
  timeout "$cap" "$@"
  rc=$?
  ((rc == 0)) || echo "!! $name failed (exit $rc)"
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(($(date +%s) - t0))}" >>"$OUT/steps.jsonl"
}

bench() { # NAME CAP_S ARGS...: one `sslflow bench pretrain`, its JSON in $OUT/NAME.json
  local name=$1 cap=$2
  shift 2
  step "$name" "$cap" python -m sslflow bench pretrain "$@" --json "$OUT/$name.json"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c 'import torch, nvidia.dali as d; print("torch", torch.__version__, "| DALI", d.__version__)'
  rm -f "$OUT/steps.jsonl"
  # 1. data: the JPEGs take every core; the Fashion-MNIST shards follow (raw pixels: seconds)
  step jpeg-shards 150 python -m sslflow bench shards --images 12000 --to "$WORK/jpeg"
  mkdir -p "$WORK/fmnist"
  step fmnist-shards 60 bash -c "cd '$WORK/fmnist' && python -m sslflow shard --params '$PWD/params/gpu-fmnist.yaml'"
  # 2. ResNet-50 at 224 px
  bench r50-eager 90 "${R50[@]}" --steps 30 --warmup 10 --rounds 3
  bench r50-compiled 200 "${R50[@]}" --steps 30 --warmup 10 --rounds 2 --compile "${LEVERS[@]}"
  # 3. the 28 px profile
  bench fmnist-eager 45 --params params/gpu-fmnist.yaml --shards "$FMNIST" --batch 512 --steps 60 --rounds 3
  bench fmnist-compiled 90 --params params/gpu-fmnist.yaml --shards "$FMNIST" --batch 512 --steps 60 --rounds 3 \
    --compile --lever threads-8:augment.threads=8 --lever prefetch-4:augment.prefetch=4
  # 4. the GPU tests with what is left
  step gpu-tests 150 python -m pytest -q -m gpu -p no:cacheprovider tests/gpu --junitxml "$OUT/gpu-tests.xml"
  echo "== total $(($(date +%s) - START)) s of ${BUDGET_S}"
} 2>&1 | tee "$OUT/gpu_checks.log"

python - "$OUT" "$BUDGET_S" <<'PY'
"""$OUT/gpu_checks.json: each step's seconds and exit code, every bench JSON, the tests' counts."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, budget = Path(sys.argv[1]), int(sys.argv[2])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
report = {"budget_s": budget, "total_s": sum(s["seconds"] for s in steps), "steps": steps, "bench": {}}
for step in steps:
    path = out / f"{step['step']}.json"
    if path.exists():
        report["bench"][step["step"]] = json.loads(path.read_text())
junit = out / "gpu-tests.xml"
if junit.exists():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    report["gpu_tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
(out / "gpu_checks.json").write_text(json.dumps(report, indent=2) + "\n")
print(f"{out / 'gpu_checks.json'}: {len(steps)} steps in {report['total_s']} s of {budget}")
PY
