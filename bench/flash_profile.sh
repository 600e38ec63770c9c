#!/usr/bin/env bash
# Nsight Compute counters of the fused attention kernels beside PyTorch's flash backend, for the cause of each
# miss in docs/performance.md's flash table (a profile, not a guess). One case of bench/nn/attention_flash.* runs
# once on each side under ncu (clocks left alone, as the device notes ask); the kernels whose names match "flash"
# get the speed-of-light, compute, occupancy, warp-state, scheduler and launch sections.
#   source .deps/activate.sh; scripts/gpu.sh build; bench/flash_profile.sh "flash fwd+bwd bf16 [8,16,2048,128]" ...
# Reports: $OUT/ncu_flame.txt and $OUT/ncu_torch.txt (one block per case).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
OUT=${OUT:-/tmp/flame-gpu-out}
build=${FLAME_BUILD:-$here/build-gpu}
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua
mkdir -p "$OUT"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "no ncu on this machine"; exit 1; }
sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section WarpStateStats
  --section SchedulerStats --section LaunchStats --section InstructionStats)
prof() { "$ncu" --clock-control none --kernel-name regex:'[Ff]lash|^fa_' --launch-count 4 "${sections[@]}" "$@"; }
status=0
for name in "$@"; do
  for side in flame torch; do echo "##### $name" >>"$OUT/ncu_$side.txt"; done
  FLASH_CASE=$name prof "$build/flame-lua" -e '
    local flame = require "flame"
    for _, c in ipairs(dofile("bench/nn/attention_flash.lua")) do
      if c.name == os.getenv("FLASH_CASE") then c.setup(flame)(); flame.cuda.synchronize(); return end
    end
    error("no case " .. os.getenv("FLASH_CASE"))' >>"$OUT/ncu_flame.txt" 2>&1 || status=1
  [ -n "${FLASH_NO_TORCH:-}" ] || prof python3 -c '
import sys, runpy, torch
cases = runpy.run_path("bench/nn/attention_flash.py")["CASES"]
cases[sys.argv[1]](torch)()
torch.cuda.synchronize()' "$name" >>"$OUT/ncu_torch.txt" 2>&1 || status=1
done
exit $status
