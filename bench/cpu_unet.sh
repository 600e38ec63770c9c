#!/usr/bin/env bash
# CPU inference of the diffusion UNet (examples/unet.lua, the "tiny" preset, batch 1) against PyTorch and
# onnxruntime in the same run, at 1 and 2 threads (docs/performance.md):
#   FLAME_BUILD=$PWD/build-cpu bench/cpu_unet.sh [rounds]
# Each round runs flame (bench/cpu_unet.lua), then PyTorch and onnxruntime (bench/cpu_unet.py) at each thread
# count; the table gives, per engine and thread count, the median over the rounds of each round's median time per
# forward, and the spread (lowest and highest round). PyTorch is Debian's python3-torch (/usr/bin/python3);
# onnxruntime comes from PyPI into a virtual environment over that Python ($build/venv-ort, made on first use;
# PYTHON=... picks another interpreter that has torch and onnxruntime).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FLAME_BUILD:-$here/build}
rounds=${1:-3}
cmake --build "$build" --target flame-lua >/dev/null
py=${PYTHON:-}
if [ -z "$py" ]; then
  venv="$build/venv-ort"
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q onnxruntime # numpy: Debian's (1.24), which torch 1.13 was built against
  fi
  py="$venv/bin/python"
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$here"
"$build/flame-lua" bench/cpu_unet.lua export "$dir"
out="$dir/times.txt"
for r in $(seq "$rounds"); do
  for t in 1 2; do
    "$build/flame-lua" bench/cpu_unet.lua time "$t" >>"$out"
    "$py" -W ignore bench/cpu_unet.py "$dir" "$t" >>"$out" 2>"$dir/check.txt"
  done
done
echo "outputs against flame's (max abs difference: torch, onnxruntime; max |out|): $(cat "$dir/check.txt")"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$out" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    eng, t, med, best = line.split()
    rows.setdefault((eng, int(t)), []).append(float(med))
print("| threads | flame | PyTorch | onnxruntime | PyTorch / flame | onnxruntime / flame |")
print("|---|---|---|---|---|---|")
for t in (1, 2):
    m = {e: statistics.median(rows[(e, t)]) for e in ("flame", "torch", "ort")}
    s = {e: f"{m[e]:.3f} ms ({min(rows[(e, t)]):.3f}-{max(rows[(e, t)]):.3f})" for e in m}
    print(f"| {t} | {s['flame']} | {s['torch']} | {s['ort']} | {m['torch'] / m['flame']:.2f}x | {m['ort'] / m['flame']:.2f}x |")
PY
