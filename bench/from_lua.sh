#!/usr/bin/env bash
# flame.tensor from a Lua table against numpy.array from the same Python list,
# in the same run (docs/performance.md): bench/from_lua.sh
# Needs Debian's python3-numpy (/usr/bin/python3; scripts/setup installs it with
# FLAME_BENCH=1); PYTHON=... picks another interpreter.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLAME_BUILD:-$here/build}
cmake --build "$build" --target flame-lua >/dev/null
flame=$("$build/flame-lua" "$here/bench/from_lua.lua")
numpy=$("${PYTHON:-/usr/bin/python3}" - <<'PY'
import time, numpy as np
def median(fn):
    ts = []
    for r in range(-1, 10):
        t0 = time.perf_counter(); fn(); t = time.perf_counter() - t0
        if r > 0: ts.append(t)
    return sorted(ts)[4] * 1e3
n = 1000000
floats = [i * 0.5 for i in range(1, n + 1)]
ints = list(range(1, n + 1))
rows = [[(i * 1000 + j) * 0.5 for j in range(1, 1001)] for i in range(1, 1001)]
print("floats_1M_f32", median(lambda: np.array(floats, dtype=np.float32)))
print("ints_1M_i64", median(lambda: np.array(ints, dtype=np.int64)))
print("rows_1000x1000_f32", median(lambda: np.array(rows, dtype=np.float32)))
PY
)
echo "| case | flame.tensor | numpy.array | numpy time / flame time |"
echo "|---|---|---|---|"
join <(echo "$flame" | sort) <(echo "$numpy" | sort) | while read -r name f n; do
  awk -v c="$name" -v f="$f" -v n="$n" 'BEGIN { printf "| %s | %.1f ms | %.1f ms | %.2fx |\n", c, f, n, n / f }'
done
