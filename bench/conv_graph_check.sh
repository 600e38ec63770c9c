#!/usr/bin/env bash
# cuDNN's backend (graph) API path of the direct convolution (cuda/conv_cudnn_graph.cu, FLAME_CUDNN_API=graph)
# in one GPU call, on an existing CUDA build (scripts/gpu.sh build: build-gpu), from the repository root:
#   source .deps/activate.sh; bench/conv_graph_check.sh [build-dir]
# 1. tests/test_conv_cudnn: every case x dtype x direction through both APIs against an f64 reference and each
#    other (a PASS/FAIL line each; here only the counts, the FAIL lines and how many ran on the graph API);
# 2. the conv specs on cuda with FLAME_CUDNN_API=graph (they compare against the CPU and the im2col path);
# 3. compute-sanitizer memcheck of the C test (FLAME_CUDNN_FIND=0: one plan a key, as scripts/gpu.sh does);
# 4. bench/conv_host.lua (legacy and graph) and bench/conv_host_torch.py: host us per call, joined into one table.
# Full logs under $OUT (default /tmp/flame-conv-graph). Each step has a time limit so the whole stays under about
# 8 minutes even when one hangs. FLAME_CUDNN_LOG=1 in the environment logs every plan's candidates (large).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
build=${1:-${FLAME_BUILD:-$here/build-gpu}}
OUT=${OUT:-/tmp/flame-conv-graph}
mkdir -p "$OUT"
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua
status=0
step() { echo "=== $1 ($(date +%T))"; }
py=python3
command -v "$py" >/dev/null && "$py" -c "import torch" 2>/dev/null || py=/usr/bin/python3

step "C test: test_conv_cudnn, both APIs"
timeout 150 "$build/test_conv_cudnn" >"$OUT/test_conv_cudnn.txt" 2>&1 || { echo "exit $?"; status=1; }
echo "PASS $(grep -c '^PASS' "$OUT/test_conv_cudnn.txt"), FAIL $(grep -c '^FAIL conv' "$OUT/test_conv_cudnn.txt")"
grep -E '^FAIL' "$OUT/test_conv_cudnn.txt" | head -20
grep -E '^(skipped|graph API:|[0-9]+ checks)' "$OUT/test_conv_cudnn.txt"

step "conv specs on cuda, FLAME_CUDNN_API=graph"
FLAME_CUDNN_API=graph FLAME_DEVICE=cuda timeout 150 scripts/busted-flame spec/nn_conv_spec.lua \
  spec/nn_layers_extra_spec.lua spec/nn_module_spec.lua spec/autocast_spec.lua spec/unet_spec.lua \
  -o utfTerminal >"$OUT/specs_graph.txt" 2>&1 || { echo "exit $?"; status=1; }
grep -E "successes" "$OUT/specs_graph.txt"
grep -E "^(Failure|Error)" -A6 "$OUT/specs_graph.txt" | head -40

step "compute-sanitizer memcheck: test_conv_cudnn (FLAME_CUDNN_FIND=0)"
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
FLAME_CUDNN_FIND=0 timeout 150 "$cs" --tool memcheck --error-exitcode=1 "$build/test_conv_cudnn" \
  >"$OUT/sanitizer.txt" 2>&1 || { echo "exit $?"; status=1; }
grep -E "ERROR SUMMARY|^graph API:|^[0-9]+ checks" "$OUT/sanitizer.txt"
grep -E "^=+ (Invalid|Program hit|Error)" "$OUT/sanitizer.txt" | sort | uniq -c | head -10

step "host us per conv call: legacy, graph, PyTorch"
timeout 120 "$build/flame-lua" bench/conv_host.lua >"$OUT/conv_host_flame.jsonl" 2>"$OUT/conv_host.err" ||
  { echo "exit $?"; status=1; tail -5 "$OUT/conv_host.err"; }
timeout 90 "$py" bench/conv_host_torch.py >"$OUT/conv_host_torch.jsonl" 2>>"$OUT/conv_host.err" ||
  { echo "exit $?"; status=1; tail -5 "$OUT/conv_host.err"; }
"$py" bench/conv_host_ratio.py "$OUT/conv_host_flame.jsonl" "$OUT/conv_host_torch.jsonl" | tee "$OUT/conv_host.md"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
FLAME_CUDNN_LOG=1 "$build/flame-lua" -e 'local f = require "flame"
  f.F.conv2d(f.ones(1, 1, 3, 3, {device = "cuda"}), f.ones(1, 1, 3, 3, {device = "cuda"}))' 2>&1 |
  grep -m1 "flame cuDNN: version"
"$py" -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())" 2>/dev/null
echo "=== done: status $status; logs in $OUT"
exit $status
