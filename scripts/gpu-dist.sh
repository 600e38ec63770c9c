#!/usr/bin/env bash
# The multi-GPU run, in one call on the lent nvidia-h200-x2 machine (two H200s, NCCL):
#   source .deps/activate.sh; scripts/gpu-dist.sh [build] [tests] [bench]
# tests: every collective against its definition (2 ranks), DDP (ranks bit-identical, 2 x B vs 1 x 2B, ZeRO-1
# vs DDP), the two-"node" launch (two launchers of one GPU each), and a dead peer ending in an error, not a hang.
# bench: all_reduce bus bandwidth and the DDP step beside torch.distributed (NCCL) in the same run. NCCL's NVLink
# multicast stays as the machine sets it (NCCL_NVLS_ENABLE=0 there): never override it.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
OUT=${OUT:-/tmp/flame-gpu-out}
mkdir -p "$OUT"
build=${FLAME_BUILD:-$here/build-gpu}
steps=${*:-build tests bench}
status=0
has() { [[ " $steps " == *" $1 "* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
check() { if "$@"; then echo "ok   - $*"; else echo "FAIL - $*"; status=1; fi; }

if has build; then scripts/gpu.sh build || exit 1; fi
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua
fl=$build/flame-lua
port=$((20000 + RANDOM % 20000))

if has tests; then
  step "collectives, 2 ranks"
  check "$fl" --nproc 2 --master-port $((port + 1)) spec/dist/collectives.lua
  step "DDP and ZeRO-1, 2 ranks"
  check "$fl" --nproc 2 --master-port $((port + 2)) spec/dist/ddp.lua
  step "two nodes of one GPU each on this host"
  CUDA_VISIBLE_DEVICES=0 "$fl" --nproc 1 --nnodes 2 --node-rank 0 --master-port $((port + 3)) spec/dist/collectives.lua \
    >"$OUT/node0.txt" 2>&1 &
  n0=$!
  CUDA_VISIBLE_DEVICES=1 "$fl" --nproc 1 --nnodes 2 --node-rank 1 --master-port $((port + 3)) spec/dist/collectives.lua \
    >"$OUT/node1.txt" 2>&1
  n1=$?
  wait $n0
  check test "$?" = 0 -a "$n1" = 0
  cat "$OUT/node0.txt" "$OUT/node1.txt"
  step "a dead peer is an error, not a hang"
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_PORT=$((port + 4)) FLAME_DIST_TIMEOUT=30 \
      timeout 120 "$fl" spec/dist/peer_dies.lua >"$OUT/peer$r.txt" 2>&1 &
  done
  wait
  cat "$OUT/peer0.txt"
  check grep -q "peer error" "$OUT/peer0.txt"
  step "distributed spec (one rank, through NCCL)"
  FLAME_DEVICE=cuda scripts/busted-flame spec/distributed_spec.lua 2>&1 | tail -3
fi

if has bench; then
  step "torch.distributed beside flame.distributed"
  "$fl" --nproc 2 --master-port $((port + 5)) bench/dist.lua | sed 's/^\[rank 0\] //' | grep '^{' >"$OUT/dist_flame.jsonl" || status=1
  python3 -m torch.distributed.run --nproc_per_node 2 --master_port $((port + 6)) bench/dist_torch.py \
    2>"$OUT/dist_torch.err" | grep '^{' >"$OUT/dist_torch.jsonl" || status=1
  python3 bench/nn_ratio.py "$OUT/dist_flame.jsonl" "$OUT/dist_torch.jsonl" | tee "$OUT/bench_dist.md"
fi
exit $status
