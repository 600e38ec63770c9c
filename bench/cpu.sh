#!/usr/bin/env bash
# CPU performance table (docs/performance.md): bench/cpu.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLAME_BUILD:-$here/build}
cmake --build "$build" --target blas_direct flame-lua >/dev/null
"$build/blas_direct" 20 > /tmp/blas_direct.txt
"$build/flame-lua" "$here/bench/cpu.lua" /tmp/blas_direct.txt
