#!/usr/bin/env bash
# Flash-attention kernel A/B on the lent GPU, in one call: each variant of cuda/flash_attention.cu given (a file
# path; "." is the tree's own) is built into the flame-lua of an existing CUDA build (only that file and the link
# are rebuilt), then spec/flash_attention_spec.lua runs on cuda and bench/nn.lua attention_flash is timed; PyTorch's
# flash backend is timed once. The machine's copy has no git history, so make the variants here first (untracked
# files travel with the tree): git show fa17:cuda/flash_attention.cu > tmp_fa17.cu
#   source .deps/activate.sh; scripts/gpu.sh build; bench/flash_ab.sh . tmp_fa17.cu ...
# A variant is compiled against the tree's headers: any flash_attention.cu that does not include flash_common.cuh
# (main's and s19-fa2's commits) builds, as does the tree's; one written against another flash_common.cuh may not
# (s19-wgmma's 4e4e6bd), nor one from before cuda/flash_keep.cuh (session 21: it defines the keep helpers itself and
# reads swap_stage, fwd_bit from flash_common.cuh). flash_fwd_sm90.cu needs nothing from the variant, and
# cuda/backend.cu has a weak fc::flash_attention_forward_kernel ("fa2") for variants that lack it.
# FLASH_AB_SANITIZE=1 also runs bench/flash_sanitize.lua under compute-sanitizer memcheck and racecheck per variant.
# Tables under $OUT: flash_<variant>.md (ratio = PyTorch time / flame time); spec summaries in flash_ab.txt.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
OUT=${OUT:-/tmp/flame-gpu-out}
build=${FLAME_BUILD:-$here/build-gpu}
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$OUT"
[ -x "$build/flame-lua" ] || { echo "no $build/flame-lua: run scripts/gpu.sh build first"; exit 1; }
file=cuda/flash_attention.cu
cp "$file" /tmp/flash_ab_saved.cu
restore() { cp /tmp/flash_ab_saved.cu "$file"; }
trap restore EXIT
python3 bench/nn_torch.py attention_flash >/tmp/flash_torch.jsonl 2>/tmp/flash_torch.err
status=0
for variant in "$@"; do
  name=$(basename "$variant" .cu | tr -c 'A-Za-z0-9_-' '_')
  [ "$variant" = . ] && name=tree
  echo "=== $variant ($(date +%T))" | tee -a "$OUT/flash_ab.txt"
  if [ "$variant" = . ]; then restore; else cp "$variant" "$file" || { status=1; continue; }; fi
  if ! cmake --build "$build" --target flame-lua -j "$(nproc)" >/tmp/flash_build.log 2>&1; then
    tail -20 /tmp/flash_build.log | tee -a "$OUT/flash_ab.txt"
    status=1
    continue
  fi
  FLAME_DEVICE=cuda timeout 300 scripts/busted-flame spec/flash_attention_spec.lua >/tmp/flash_spec.txt 2>&1 || status=1
  grep -E "successes|^(Failure|Error)" /tmp/flash_spec.txt | head -8 | tee -a "$OUT/flash_ab.txt"
  if [ -n "${FLASH_AB_SANITIZE:-}" ]; then # the variant's fused calls under memcheck and racecheck (~15 s)
    for tool in memcheck racecheck; do
      timeout 200 compute-sanitizer --tool $tool --error-exitcode=1 "$build/flame-lua" bench/flash_sanitize.lua \
        >/tmp/flash_san.txt 2>&1 || status=1
      echo "$tool: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" /tmp/flash_san.txt | tail -1)" | tee -a "$OUT/flash_ab.txt"
    done
  fi
  timeout 300 "$build/flame-lua" bench/nn.lua attention_flash >/tmp/flash_flame.jsonl 2>/dev/null || status=1
  python3 bench/nn_ratio.py /tmp/flash_flame.jsonl /tmp/flash_torch.jsonl | tee "$OUT/flash_$name.md"
done
restore
cmake --build "$build" --target flame-lua -j "$(nproc)" >/dev/null 2>&1 # the working tree's kernel again
exit $status
