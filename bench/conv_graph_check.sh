#!/usr/bin/env bash
# cuDNN's backend (graph) API path of the direct convolution (cuda/conv_cudnn_graph.cu, FLAME_CUDNN_API=graph)
# in one GPU call, from the repository root:
#   source .deps/activate.sh; bench/conv_graph_check.sh [probe] [test] [specs] [sanitize] [bench]   (no step: all)
# It builds first (scripts/gpu.sh build, into $FLAME_BUILD or build-gpu) when that build has no flame-lua.
# probe:    bench/conv_graph_probe.lua with FLAME_CUDNN_LOG=1: one small bf16 and f32 conv (forward, dx, dw) through
#           the graph API against im2col + GEMM, and the log's first lines (the candidates, or why a key declined);
# test:     tests/test_conv_cudnn_mock (the graph path's calls against a mock cuDNN), then tests/test_conv_cudnn:
#           every case x dtype x direction through both APIs against an f64 reference and each other (a PASS/FAIL
#           line each; printed here: the counts, the FAIL lines, how many ran on the graph API);
# specs:    the conv specs on cuda with FLAME_CUDNN_API=graph (they compare against the CPU and the im2col path);
# sanitize: compute-sanitizer memcheck of the C test on a subset of its cases (1-d, 2-d incl. the UNet's and the
#           unaligned ones, 1x1, 3-d) with FLAME_CUDNN_FIND=0 (one plan a key, as scripts/gpu.sh does);
# bench:    bench/conv_host.lua (legacy and graph) and bench/conv_host_torch.py: host us per call, in one table; then
#           train.lua's step (bench/step_host.lua --device cuda, 32x32 batch 32) under each API.
# Logs under $OUT (default /tmp/flame-conv-graph), this output also in $OUT/summary.txt. Each step has a time limit
# (about 8 minutes in all at worst, 2-4 expected). FLAME_CUDNN_LOG=1 in the environment logs every plan's candidates (large).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
build=${FLAME_BUILD:-$here/build-gpu}
OUT=${OUT:-/tmp/flame-conv-graph}
mkdir -p "$OUT"
exec > >(tee "$OUT/summary.txt") 2>&1
steps=${*:-probe test specs sanitize bench}
has() { [[ " $steps " == *" $1 "* ]]; }
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua
status=0
step() { echo "=== $1 ($(date +%T))"; }
py=python3
command -v "$py" >/dev/null && "$py" -c "import torch" 2>/dev/null || py=/usr/bin/python3

if [ ! -x "$build/flame-lua" ] || [ ! -x "$build/test_conv_cudnn" ] || [ ! -x "$build/test_conv_cudnn_mock" ]; then
  step "build ($build)"
  OUT="$OUT" FLAME_BUILD="$build" scripts/gpu.sh build || exit 1
fi

if has probe; then
step "probe: one small conv through the graph API (FLAME_CUDNN_LOG=1)"
FLAME_CUDNN_LOG=1 timeout 60 "$build/flame-lua" bench/conv_graph_probe.lua >"$OUT/probe.txt" 2>&1 || { echo "exit $?"; status=1; }
grep -E "^probe|flame cuDNN: version" "$OUT/probe.txt"
grep -vE "^probe|flame cuDNN: version" "$OUT/probe.txt" | cut -c1-600 | head -12
fi

if has test; then
step "C tests: test_conv_cudnn_mock (the protocol, no GPU), test_conv_cudnn (both APIs on the GPU)"
"$build/test_conv_cudnn_mock" >"$OUT/test_conv_cudnn_mock.txt" 2>&1 || status=1
grep -E "^FAIL|checks" "$OUT/test_conv_cudnn_mock.txt" | head -10
timeout 100 "$build/test_conv_cudnn" >"$OUT/test_conv_cudnn.txt" 2>&1 || { echo "exit $?"; status=1; }
echo "PASS $(grep -c '^PASS' "$OUT/test_conv_cudnn.txt"), FAIL $(grep -c '^FAIL conv' "$OUT/test_conv_cudnn.txt")"
grep -E '^FAIL' "$OUT/test_conv_cudnn.txt" | head -20
grep -E '^(skipped|graph API:|[0-9]+ checks)' "$OUT/test_conv_cudnn.txt"
fi

if has specs; then
step "conv specs on cuda, FLAME_CUDNN_API=graph"
FLAME_CUDNN_API=graph FLAME_DEVICE=cuda timeout 100 scripts/busted-flame spec/nn_conv_spec.lua \
  spec/nn_layers_extra_spec.lua spec/nn_module_spec.lua spec/autocast_spec.lua spec/unet_spec.lua \
  -o utfTerminal >"$OUT/specs_graph.txt" 2>&1 || { echo "exit $?"; status=1; }
grep -E "successes" "$OUT/specs_graph.txt"
grep -E "^(Failure|Error)" -A6 "$OUT/specs_graph.txt" | head -40
fi

if has sanitize; then
step "compute-sanitizer memcheck: test_conv_cudnn (FLAME_CUDNN_FIND=0)"
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
FLAME_TEST_CONV_CASES="2d k3 p1,1x1,3d k3 p1,1d k3" FLAME_CUDNN_FIND=0 timeout 90 "$cs" --tool memcheck \
  --error-exitcode=1 "$build/test_conv_cudnn" \
  >"$OUT/sanitizer.txt" 2>&1 || { echo "exit $?"; status=1; }
grep -E "ERROR SUMMARY|^graph API:|^[0-9]+ checks" "$OUT/sanitizer.txt"
grep -E "^=+ (Invalid|Program hit|Error)" "$OUT/sanitizer.txt" | sort | uniq -c | head -10
fi

if has bench; then
step "host us per conv call: legacy, graph, PyTorch"
timeout 75 "$build/flame-lua" bench/conv_host.lua >"$OUT/conv_host_flame.jsonl" 2>"$OUT/conv_host.err" ||
  { echo "exit $?"; status=1; tail -5 "$OUT/conv_host.err"; }
timeout 60 "$py" bench/conv_host_torch.py >"$OUT/conv_host_torch.jsonl" 2>>"$OUT/conv_host.err" ||
  { echo "exit $?"; status=1; tail -5 "$OUT/conv_host.err"; }
"$py" bench/conv_host_ratio.py "$OUT/conv_host_flame.jsonl" "$OUT/conv_host_torch.jsonl" | tee "$OUT/conv_host.md"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
FLAME_CUDNN_LOG=1 "$build/flame-lua" -e 'local f = require "flame"
  f.F.conv2d(f.ones(1, 1, 3, 3, {device = "cuda"}), f.ones(1, 1, 3, 3, {device = "cuda"}))' 2>&1 |
  grep -m1 "flame cuDNN: version"
"$py" -c "import torch; print('torch', torch.__version__, 'cuDNN', torch.backends.cudnn.version())" 2>/dev/null
for api in legacy graph; do
  FLAME_CUDNN_API=$api timeout 40 "$build/flame-lua" bench/step_host.lua --device cuda --channels 96 --size 32 \
    --batch 32 --reps 9 2>>"$OUT/conv_host.err" | sed "s/^/FLAME_CUDNN_API=$api: /" || status=1
done
fi
echo "=== done: status $status; logs in $OUT"
exit $status
