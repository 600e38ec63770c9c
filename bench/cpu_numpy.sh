#!/usr/bin/env bash
# CPU elementwise/reduction table of docs/performance.md: flame beside numpy and
# PyTorch (Debian's python3-numpy and python3-torch, CPU) on the same data
# sizes in the same run, at 1 thread and at all threads. Ratios are the other
# library's time over flame's (> 1: flame is faster).
# Usage: bench/cpu_numpy.sh [threads...]   (default: 1 and nproc)
# Needs python3-numpy and python3-torch: FLAME_BENCH_DEPS=1 scripts/setup installs them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLAME_BUILD:-$here/build}
py=/usr/bin/python3 # Debian's, where python3-numpy and python3-torch live
cmake --build "$build" --target flame-lua >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| op | size | threads | flame | numpy | torch | numpy / flame | torch / flame |"
echo "|---|---|---|---|---|---|---|---|"
for t in "${@:-1 $(nproc)}"; do
  for t1 in $t; do
    OMP_NUM_THREADS=$t1 "$build/flame-lua" "$here/bench/cpu_ops.lua" "$t1" > "$tmp/flame.txt"
    OMP_NUM_THREADS=$t1 "$py" "$here/bench/cpu_ops.py" "$t1" > "$tmp/others.txt"
    "$py" "$here/bench/cpu_ratio.py" "$t1" "$tmp/flame.txt" "$tmp/others.txt"
  done
done
