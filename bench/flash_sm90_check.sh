#!/usr/bin/env bash
# The Hopper flash forward (cuda/flash_fwd_sm90.cu, FLAME_FLASH_FWD=sm90) checked on the lent H200 in one call, most
# decisive first, each step with its own time limit (the whole well under 10 minutes on a built tree):
#   1. tests/test_wgmma_sm90.cu: the wgmma building blocks against host references (PASS/FAIL per case);
#   2. spec/flash_attention_spec.lua on cuda with FLAME_FLASH_FWD=sm90 (its first fused spec asserts that the sm90
#      kernel is the one selected), then without it (the FlashAttention-2 forward, whose softmax step and epilogue
#      moved into cuda/flash_common.cuh);
#   3. bench/nn.lua attention_flash with FLAME_FLASH_FWD=sm90 beside PyTorch's flash backend (bench/nn_ratio.py);
#   4. compute-sanitizer memcheck and racecheck on the unit test, memcheck on a spec subset (several tiles, varlen)
#      and racecheck on a few forward calls of the sm90 kernel;
#   5. if time is left, the same table for the default (FlashAttention-2) forward, for the before/after.
#   source .deps/activate.sh; scripts/gpu.sh build; bench/flash_sm90_check.sh
# (a build dir from an earlier call, e.g. build-gpu, is only brought up to date here: flame-lua and the unit test).
# Under $OUT: flash_sm90.txt (the pass/fail lines and the tables), flash_sm90_ratio.md, flash_fa2_ratio.md, and
# the full logs of each step (flash_sm90_*.log).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
OUT=${OUT:-/tmp/flame-gpu-out}
build=${FLAME_BUILD:-$here/build-gpu}
budget=${FLASH_CHECK_BUDGET:-540} # seconds; optional steps are skipped past it
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$OUT"
log=$OUT/flash_sm90.txt
: >"$log"
status=0
say() { echo "$*" | tee -a "$log"; }
step() { say "=== $1 ($(date +%T), ${SECONDS}s)"; }
left() { [ "$SECONDS" -lt "$budget" ] || { say "SKIP $1: past the ${budget}s budget"; return 1; }; }

step build
cmake --build "$build" --target flame-lua test_wgmma_sm90 -j "$(nproc)" >"$OUT/flash_sm90_build.log" 2>&1 ||
  { tail -30 "$OUT/flash_sm90_build.log" | tee -a "$log"; exit 1; }

step "unit: tests/test_wgmma_sm90.cu"
timeout 120 "$build/test_wgmma_sm90" --require 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

spec() { # spec NAME ENV...: the flash spec on cuda, its summary and first failures
  local name=$1
  shift
  env "$@" FLAME_DEVICE=cuda timeout 300 scripts/busted-flame spec/flash_attention_spec.lua \
    >"$OUT/flash_sm90_spec_$name.log" 2>&1 || status=1
  grep -E "successes" "$OUT/flash_sm90_spec_$name.log" | tee -a "$log"
  grep -E "^(Failure|Error)" -A4 "$OUT/flash_sm90_spec_$name.log" | head -30 | tee -a "$log"
}
step "spec/flash_attention_spec.lua, FLAME_FLASH_FWD=sm90"
spec sm90 FLAME_FLASH_FWD=sm90

step "which forward runs (bf16 d64, d128)"
FLAME_FLASH_FWD=sm90 "$build/flame-lua" -e '
  local flame = require "flame"
  for _, d in ipairs({64, 128}) do
    local q = flame.randn(1, 2, 8, d, {dtype = "bf16", device = "cuda"})
    print(string.format("d%d: %s", d, table.concat({flame.F.sdpa_backend(q, q, q)}, " ")))
  end' 2>&1 | tee -a "$log"

bench() { # bench NAME ENV...: bench/nn.lua attention_flash beside PyTorch's numbers
  local name=$1
  shift
  env "$@" timeout 240 "$build/flame-lua" bench/nn.lua attention_flash >"$OUT/flash_sm90_bench_$name.jsonl" \
    2>"$OUT/flash_sm90_bench_$name.log" || status=1
  python3 bench/nn_ratio.py "$OUT/flash_sm90_bench_$name.jsonl" "$OUT/flash_sm90_torch.jsonl" >"$OUT/flash_${name}_ratio.md"
  tee -a "$log" <"$OUT/flash_${name}_ratio.md"
}
step "bench: attention_flash, FLAME_FLASH_FWD=sm90, beside PyTorch (flash backend)"
timeout 240 python3 bench/nn_torch.py attention_flash >"$OUT/flash_sm90_torch.jsonl" 2>"$OUT/flash_sm90_torch.log" ||
  say "PyTorch's run failed: $(tail -3 "$OUT/flash_sm90_torch.log")"
bench sm90 FLAME_FLASH_FWD=sm90

cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
sanitize() { # sanitize NAME TOOL CMD...: the tool's summary line
  local name=$1 tool=$2 rc
  shift 2
  timeout 240 "$cs" --tool "$tool" --error-exitcode=1 --target-processes all "$@" >"$OUT/flash_sm90_$name.log" 2>&1
  rc=$?
  [ "$rc" = 0 ] || status=1
  say "$name: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/flash_sm90_$name.log" | tail -1) (exit $rc)"
}
step "compute-sanitizer"
if left sanitizers; then
  sanitize unit_memcheck memcheck "$build/test_wgmma_sm90" --require
  sanitize unit_racecheck racecheck "$build/test_wgmma_sm90" --require
  left "spec memcheck" && FLAME_FLASH_FWD=sm90 FLAME_DEVICE=cuda \
    sanitize spec_memcheck memcheck scripts/busted-flame spec/flash_attention_spec.lua \
    --filter "longer sequences" --filter "varlen equals the reference"
  grep -E "successes" "$OUT/flash_sm90_spec_memcheck.log" | tee -a "$log"
  left "forward racecheck" && FLAME_FLASH_FWD=sm90 sanitize fwd_racecheck racecheck "$build/flame-lua" -e '
    local flame = require "flame"
    for _, c in ipairs({{64, false}, {128, true}, {128, "bottom_right"}}) do
      local q = flame.randn(1, 2, 300, c[1], {dtype = "bf16", device = "cuda"})
      local k = flame.randn(1, 1, 260, c[1], {dtype = "bf16", device = "cuda"})
      flame.F.scaled_dot_product_attention(q, k, k, {causal = c[2]})
    end
    flame.cuda.synchronize()
    print(select(2, flame.F.sdpa_backend(flame.randn(1, 1, 4, 64, {dtype = "bf16", device = "cuda"}),
      flame.randn(1, 1, 4, 64, {dtype = "bf16", device = "cuda"}), flame.randn(1, 1, 4, 64, {dtype = "bf16", device = "cuda"}))))'
fi

step "spec/flash_attention_spec.lua, default forward (fa2)"
left "default spec" && spec fa2
step "bench: attention_flash, default forward (fa2)"
left "default bench" && bench fa2

say "=== done (${SECONDS}s): $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
