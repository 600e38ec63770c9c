#!/usr/bin/env bash
# CPU performance table (docs/performance.md): bench/cpu.sh
# Runs flame's matmul and cblas_sgemm called directly on the same shapes, first
# with single-threaded OpenBLAS (stable ratios on a small shared machine), then
# with OpenBLAS's default threads.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLAME_BUILD:-$here/build}
cmake --build "$build" --target blas_direct flame-lua >/dev/null
for threads in 1 default; do
  echo
  echo "OpenBLAS threads: $threads"
  echo
  if [ "$threads" = default ]; then unset OPENBLAS_NUM_THREADS; else export OPENBLAS_NUM_THREADS=$threads; fi
  "$build/blas_direct" 20 > /tmp/blas_direct.txt
  "$build/flame-lua" "$here/bench/cpu.lua" /tmp/blas_direct.txt
done
