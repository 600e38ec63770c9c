#!/usr/bin/env bash
# The GPU run, in one call on the lent machine (see docs/performance.md):
#   source .deps/activate.sh; scripts/gpu.sh [build] [specs] [ctest] [sanitize] [bench] [nnbench] [train] [interop] [diffusion] [hostcost]
# (no step named: all of them but diffusion and hostcost). hostcost: where the host time of train.lua's step goes on
# CUDA (bench/step_host.lua --device cuda: ms a step, ops a step, and its op profile, whose per-op syncs charge each
# op class its host path and launch; at 8x8 batch 1 the kernels are negligible), plus bench/gpu_overhead.lua. nnbench: the NN-op ratio table (bench/nn/, incl. the training steps of
# bench/nn/train.*) with the 2 GiB safetensors load of bench/io.* in the same table. interop: the safetensors
# round trips with Python (scripts/interop.sh on cuda; needs python3 with torch and safetensors). diffusion:
# examples/train.lua's default preset (about 5 minutes). Builds for sm_90, runs the whole spec suite with
# FLAME_DEVICE=cuda (every op checked against the CPU), compute-sanitizer
# memcheck on the C backend test and a spec subset, and the benchmarks beside
# PyTorch on the same GPU. Logs and tables go under $OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
OUT=${OUT:-/tmp/flame-gpu-out}
mkdir -p "$OUT"
build=${FLAME_BUILD:-$here/build-gpu}
steps=${*:-build specs ctest sanitize bench nnbench train interop}
status=0
has() { [[ " $steps " == *" $1 "* ]]; }
step() { echo "=== $1 ($(date +%T))"; }

if has build; then
  step build
  export PATH=/usr/local/cuda/bin:$PATH
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/build.log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  grep -q "CUDA backend: ON" "$OUT/build.log" || { echo "CUDA backend not built"; exit 1; }
fi
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua

if has specs; then
  step "specs on cuda"
  FLAME_DEVICE=cuda scripts/busted-flame spec -o utfTerminal >"$OUT/specs_cuda.txt" 2>&1 || status=1
  grep -E "successes" "$OUT/specs_cuda.txt"
  grep -E "^(Failure|Error)" -A6 "$OUT/specs_cuda.txt" | head -60
fi

if has ctest; then
  step "C tests (incl. the CPU-vs-CUDA backend test)"
  (cd "$build" && ctest --output-on-failure -E specs) 2>&1 | tail -15
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if has sanitize; then
  # The NN-op specs first (the newest kernels), one spec file per memcheck run so
  # each reports on its own; cuDNN's algorithm search is off under the sanitizer
  # (it times every candidate, which memcheck makes very slow).
  step "compute-sanitizer memcheck"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  : >"$OUT/sanitizer.txt"
  # FLAME_SANITIZE_SPECS / FLAME_SANITIZE_TESTS narrow a run to some files (the full list takes a while).
  for f in ${FLAME_SANITIZE_SPECS:-spec/nn_*_spec.lua spec/optim_spec.lua spec/grad_scaler_spec.lua spec/autocast_spec.lua spec/io_spec.lua spec/data_spec.lua}; do
    echo "--- $f" >>"$OUT/sanitizer.txt"
    # NCCL probes kernels built for other GPUs (cudaFuncGetAttributes -> no kernel image): API errors of its
    # own, not memory errors; ours are all checked and surface as statuses
    api=yes; [[ "$f" == *distributed* ]] && api=no
    FLAME_CUDNN_FIND=0 FLAME_DEVICE=cuda "$cs" --tool memcheck --report-api-errors $api --error-exitcode=1 \
      --target-processes all scripts/busted-flame "$f" >>"$OUT/sanitizer.txt" 2>&1 || status=1
  done
  for t in ${FLAME_SANITIZE_TESTS:-test_cuda_backend test_gemm test_conv_cudnn test_optim test_embed_cuda}; do
    echo "--- $t" >>"$OUT/sanitizer.txt"
    FLAME_CUDNN_FIND=0 "$cs" --tool memcheck --error-exitcode=1 "$build/$t" >>"$OUT/sanitizer.txt" 2>&1 || status=1
  done
  [ -n "${FLAME_SANITIZE_SPECS:-}" ] || {
  echo "--- older op specs" >>"$OUT/sanitizer.txt"
  FLAME_DEVICE=cuda "$cs" --tool memcheck --error-exitcode=1 --target-processes all \
    scripts/busted-flame spec/elementwise_spec.lua spec/reduce_spec.lua spec/index_spec.lua spec/linalg_spec.lua \
    spec/backend_spec.lua spec/ops_extra_spec.lua >>"$OUT/sanitizer.txt" 2>&1 || status=1
  }
  grep -E "^---|ERROR SUMMARY|successes" "$OUT/sanitizer.txt"
fi

if has bench; then
  step "benchmarks beside PyTorch"
  "$build/flame-lua" -e 'local cs = dofile("bench/gpu_cases.lua")
    local function enc(v) if type(v) == "table" then local o = {} for i, x in ipairs(v) do o[i] = enc(x) end
      if #o > 0 then return "[" .. table.concat(o, ",") .. "]" end
      local kv = {} for k, x in pairs(v) do kv[#kv + 1] = string.format("%q:%s", k, enc(x)) end
      return "{" .. table.concat(kv, ",") .. "}"
      elseif type(v) == "string" then return string.format("%q", v) else return tostring(v) end end
    print(enc(cs))' >/tmp/flame_cases.json
  "$build/flame-lua" bench/gpu.lua >"$OUT/flame.jsonl" 2>"$OUT/bench.err" || status=1
  python3 bench/gpu_torch.py /tmp/flame_cases.json >"$OUT/torch.jsonl" 2>>"$OUT/bench.err" || status=1
  python3 bench/ratio.py /tmp/flame_cases.json "$OUT/flame.jsonl" "$OUT/torch.jsonl" | tee "$OUT/bench.md"
  "$build/flame-lua" bench/gpu_overhead.lua | tee -a "$OUT/bench.md"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >>"$OUT/bench.md" 2>/dev/null
fi

if has nnbench; then
  step "NN-op benchmarks beside PyTorch (bench/nn/)"
  "$build/flame-lua" bench/nn.lua >"$OUT/nn_flame.jsonl" 2>"$OUT/nn_bench.err" || status=1
  python3 bench/nn_torch.py >"$OUT/nn_torch.jsonl" 2>>"$OUT/nn_bench.err" || status=1
  # The checkpoint load (flame first: it writes the 2 GiB file both sides read), rows appended to the same table.
  "$build/flame-lua" bench/io.lua >>"$OUT/nn_flame.jsonl" 2>>"$OUT/nn_bench.err" || status=1
  python3 bench/io_torch.py >>"$OUT/nn_torch.jsonl" 2>>"$OUT/nn_bench.err" || status=1
  python3 bench/nn_ratio.py "$OUT/nn_flame.jsonl" "$OUT/nn_torch.jsonl" | tee "$OUT/bench_nn.md"
fi

if has hostcost; then
  step "the host cost of train.lua's step on cuda (bench/step_host.lua)"
  { "$build/flame-lua" bench/step_host.lua --device cuda --channels 96 --profile &&
    "$build/flame-lua" bench/step_host.lua --device cuda --channels 96 --size 32 --batch 32 --reps 9 &&
    "$build/flame-lua" bench/gpu_overhead.lua; } >"$OUT/hostcost.txt" 2>&1 || status=1
  head -45 "$OUT/hostcost.txt"; tail -8 "$OUT/hostcost.txt"
fi

# Not in the default list (about 5 minutes): the diffusion example's default preset; its log, checkpoint and sample
# grids under $OUT/train.
if has diffusion; then
  step "examples/train.lua --device cuda (the default preset)"
  mkdir -p "$OUT/train"
  "$build/flame-lua" examples/train.lua --device cuda --out "$OUT/train" 2>"$OUT/train/progress.log" |
    tee "$OUT/train.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if has train; then
  step "examples/train_mlp.lua on cuda"
  "$build/flame-lua" examples/train_mlp.lua --device cuda 2>&1 | tail -4
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if has interop; then
  step "safetensors interop with Python (spec/interop/)"
  rm -rf /tmp/flame-interop
  if INTEROP_DIR=/tmp/flame-interop FLAME_LUA="$build/flame-lua" PYTHON=python3 scripts/interop.sh cuda \
    >"$OUT/interop.txt" 2>&1; then :; else status=1; cp -r /tmp/flame-interop "$OUT/interop"; fi # files kept on failure
  grep -E "^(FAIL|interop)" "$OUT/interop.txt" || tail -20 "$OUT/interop.txt"
fi
exit $status
