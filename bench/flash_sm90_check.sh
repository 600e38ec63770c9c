#!/usr/bin/env bash
# The Hopper flash forwards (cuda/flash_fwd_sm90.cu) checked on the lent H200 in one call, most decisive first, each
# step with its own time limit (about 6-8 minutes on a built tree; past FLASH_CHECK_BUDGET seconds, default 500, the
# optional steps are skipped). Two kernels: FLAME_FLASH_FWD=sm90 (warp-specialised: a producer warpgroup and
# mbarriers) and FLAME_FLASH_FWD=sm90sync (every thread loads, CTA barriers; the fallback if the first fails).
#   1. tests/test_wgmma_sm90.cu: the building blocks against host references (PASS/FAIL per case; ring = the
#      warp-specialised protocol);
#   2. spec/flash_attention_spec.lua on cuda with each (its spec "names the fused forward kernel" asserts that the
#      one asked for is the one selected);
#   3. bench/nn.lua attention_flash with each beside PyTorch's flash backend (bench/nn_ratio.py);
#   4. compute-sanitizer memcheck and racecheck on the unit test, memcheck on a spec subset (several tiles, varlen)
#      with sm90, racecheck on a few forward calls of each kernel;
#   5. the flash spec and the table with the default (FlashAttention-2) forward, whose softmax step and epilogue
#      moved into cuda/flash_common.cuh in this change (its SASS kept its instruction counts).
#   source .deps/activate.sh; scripts/gpu.sh build; bench/flash_sm90_check.sh
# (a build dir from an earlier call, e.g. build-gpu, is only brought up to date here: flame-lua and the unit test).
# Under $OUT: flash_sm90.txt (the pass/fail lines and the tables), flash_{sm90,sm90sync,fa2}_ratio.md, and the
# full logs of each step (flash_sm90_*.log).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
OUT=${OUT:-/tmp/flame-gpu-out}
build=${FLAME_BUILD:-$here/build-gpu}
budget=${FLASH_CHECK_BUDGET:-500}
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

spec() { # spec NAME [FLAME_FLASH_FWD value]: the flash spec on cuda, its summary and first failures
  local name=$1
  env -u FLAME_FLASH_FWD ${2:+FLAME_FLASH_FWD=$2} FLAME_DEVICE=cuda timeout 240 scripts/busted-flame spec/flash_attention_spec.lua \
    >"$OUT/flash_sm90_spec_$name.log" 2>&1 || status=1
  say "$name: $(grep -E "successes" "$OUT/flash_sm90_spec_$name.log")"
  grep -E "^(Failure|Error)" -A4 "$OUT/flash_sm90_spec_$name.log" | head -30 | tee -a "$log"
}
for mode in sm90 sm90sync; do
  step "spec/flash_attention_spec.lua, FLAME_FLASH_FWD=$mode"
  spec "$mode" "$mode"
done

step "which forward runs (bf16 d64, d128)"
for mode in sm90 sm90sync; do
  FLAME_FLASH_FWD=$mode "$build/flame-lua" -e '
    local flame = require "flame"
    for _, d in ipairs({64, 128}) do
      local q = flame.randn(1, 2, 8, d, {dtype = "bf16", device = "cuda"})
      print(string.format("FLAME_FLASH_FWD=%s d%d: %s", os.getenv("FLAME_FLASH_FWD"), d,
        table.concat({flame.F.sdpa_backend(q, q, q)}, " ")))
    end' 2>&1 | tee -a "$log"
done

bench() { # bench NAME [FLAME_FLASH_FWD value]: bench/nn.lua attention_flash beside PyTorch's numbers
  local name=$1
  env -u FLAME_FLASH_FWD ${2:+FLAME_FLASH_FWD=$2} timeout 200 "$build/flame-lua" bench/nn.lua attention_flash \
    >"$OUT/flash_sm90_bench_$name.jsonl" 2>"$OUT/flash_sm90_bench_$name.log" || status=1
  python3 bench/nn_ratio.py "$OUT/flash_sm90_bench_$name.jsonl" "$OUT/flash_sm90_torch.jsonl" >"$OUT/flash_${name}_ratio.md"
  say "--- $name"
  tee -a "$log" <"$OUT/flash_${name}_ratio.md"
}
step "bench: attention_flash beside PyTorch (flash backend)"
timeout 200 python3 bench/nn_torch.py attention_flash >"$OUT/flash_sm90_torch.jsonl" 2>"$OUT/flash_sm90_torch.log" ||
  say "PyTorch's run failed: $(tail -3 "$OUT/flash_sm90_torch.log")"
bench sm90 sm90
left "bench sm90sync" && bench sm90sync sm90sync

cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
sanitize() { # sanitize NAME TOOL CMD...: the tool's summary line
  local name=$1 tool=$2 rc
  shift 2
  timeout 150 "$cs" --tool "$tool" --error-exitcode=1 --target-processes all "$@" >"$OUT/flash_sm90_$name.log" 2>&1
  rc=$?
  [ "$rc" = 0 ] || status=1
  say "$name: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/flash_sm90_$name.log" | tail -1) (exit $rc)"
}
fwd_calls='
  local flame = require "flame"
  for _, c in ipairs({{64, false}, {128, true}, {128, "bottom_right"}}) do
    local q = flame.randn(1, 2, 300, c[1], {dtype = "bf16", device = "cuda"})
    local k = flame.randn(1, 1, 260, c[1], {dtype = "bf16", device = "cuda"})
    flame.F.scaled_dot_product_attention(q, k, k, {causal = c[2]})
  end
  flame.cuda.synchronize()
  local q = flame.randn(1, 1, 4, 64, {dtype = "bf16", device = "cuda"})
  print(select(2, flame.F.sdpa_backend(q, q, q)))'
step "compute-sanitizer"
if left sanitizers; then
  sanitize unit_memcheck memcheck "$build/test_wgmma_sm90" --require
  sanitize unit_racecheck racecheck "$build/test_wgmma_sm90" --require
  for mode in sm90 sm90sync; do
    left "forward memcheck $mode" && FLAME_FLASH_FWD=$mode sanitize "fwd_memcheck_$mode" memcheck "$build/flame-lua" -e "$fwd_calls"
    left "forward racecheck $mode" && FLAME_FLASH_FWD=$mode sanitize "fwd_racecheck_$mode" racecheck "$build/flame-lua" -e "$fwd_calls"
  done
  if left "spec memcheck"; then
    FLAME_FLASH_FWD=sm90 FLAME_DEVICE=cuda sanitize spec_memcheck memcheck scripts/busted-flame \
      spec/flash_attention_spec.lua --filter "longer sequences" --filter "varlen equals the reference"
    say "spec subset under memcheck: $(grep -E "successes" "$OUT/flash_sm90_spec_memcheck.log")"
  fi
fi

step "the default forward (fa2)"
left "default spec" && spec fa2
left "default bench" && bench fa2

say "=== done (${SECONDS}s): $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
