#!/usr/bin/env bash
# The multi-GPU run, in one call on the lent nvidia-h200-x2 machine (two H200s, NCCL):
#   source .deps/activate.sh; scripts/gpu-dist.sh [build] [tests] [train] [contention] [bench]
#   (no step named: build tests train bench)
# tests: every collective against its definition (2 ranks); DDP (ranks bit-identical, 2 x B vs 1 x 2B, ZeRO-1 vs
#   DDP, no_sync accumulation; spec/dist/ddp.lua); the two-"node" launch (two launchers of one GPU each,
#   --nnodes 2);
#   a dead peer ending in an error, not a hang; spec/distributed_spec.lua through NCCL with one rank.
# train: examples/train.lua --ddp: a 2-GPU checkpoint resumed on 1 GPU, then on 2 again (a different world size
#   each time), and the default preset's throughput at a fixed per-GPU batch: 1 GPU without DDP, 1 rank and 2 ranks
#   with it (target: 2 GPUs >= 1.9x one).
# contention: two plain (no DDP) train.lua runs at once, one per GPU, beside one alone: if each slows as much as
#   2-rank DDP does, the machine (host CPU, driver) is what costs, not DDP or NCCL (issue 12's 2-GPU scaling miss).
# bench: all_reduce bus bandwidth and the DDP steps (an MLP; train.lua's UNet at batch 128 per GPU) beside
#   torch.distributed (NCCL, PyTorch's DDP) in the same run.
# Logs and tables under $OUT (bench_dist.md: the tables for docs/performance.md). Exits 1 when a check fails (a
# missed performance target is marked **no** in the table, not a failure). Every run is bounded by `timeout`, and
# FLAME_DIST_TIMEOUT bounds a stuck collective, so the whole script stays within one 10-minute call (about 5 minutes
# without the build). NCCL's NVLink multicast stays as the machine sets it (NCCL_NVLS_ENABLE=0 there): never
# override it.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
OUT=${OUT:-/tmp/flame-gpu-out}
mkdir -p "$OUT"
build=${FLAME_BUILD:-$here/build-gpu}
steps=${*:-build tests train bench}
status=0
has() { [[ " $steps " == *" $1 "* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
# check NAME LOG CMD...: runs CMD with its output in $OUT/LOG, says ok or FAIL (and shows the log's end).
check() {
  local name=$1 log=$OUT/$2
  shift 2
  if "$@" >"$log" 2>&1; then echo "ok   - $name"; else
    echo "FAIL - $name (exit $?; $log):"; tail -25 "$log"; status=1
  fi
}

if has build; then scripts/gpu.sh build || exit 1; fi
export FLAME_CPATH=$build FLAME_LUA=$build/flame-lua
export FLAME_DIST_TIMEOUT=${FLAME_DIST_TIMEOUT:-120} # a stuck collective is an error after 2 minutes, not a hang
fl=$build/flame-lua
[ -x "$fl" ] || { echo "no $fl: run the build step first"; exit 1; }
# A port nobody listens on now (the system's pick), so runs never meet a leftover listener.
port() { "$fl" -e 'print(flame.distributed._free_port())'; }
echo "GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | tr '\n' ' ')" \
  "NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE-unset}"
nvidia-smi topo -m >"$OUT/topo.txt" 2>&1

if has tests; then
  step "collectives, 2 ranks"
  check "every collective on every dtype (2 ranks)" collectives.txt \
    timeout 180 "$fl" --nproc 2 --master-port "$(port)" spec/dist/collectives.lua
  step "DDP and ZeRO-1, 2 ranks"
  check "DDP: ranks bit-identical, 2 x B vs 1 x 2B, ZeRO-1 vs DDP, no_sync" ddp.txt \
    timeout 180 "$fl" --nproc 2 --master-port "$(port)" spec/dist/ddp.lua
  grep -h "ddp ok" "$OUT/ddp.txt"

  step "two nodes of one GPU each on this host"
  p=$(port)
  CUDA_VISIBLE_DEVICES=0 timeout 180 "$fl" --nproc 1 --nnodes 2 --node-rank 0 --master-addr 127.0.0.1 \
    --master-port "$p" spec/dist/collectives.lua >"$OUT/node0.txt" 2>&1 &
  n0=$!
  CUDA_VISIBLE_DEVICES=1 timeout 180 "$fl" --nproc 1 --nnodes 2 --node-rank 1 --master-addr 127.0.0.1 \
    --master-port "$p" spec/dist/collectives.lua >"$OUT/node1.txt" 2>&1
  s1=$?
  wait $n0
  s0=$?
  cat "$OUT/node0.txt" "$OUT/node1.txt"
  check "two launchers of one GPU each, --nnodes 2 (they exited $s0 and $s1)" nodes.txt \
    bash -c "[ $s0 = 0 ] && [ $s1 = 0 ] && grep -q 'collectives ok: rank 0 of 2' '$OUT/node0.txt' &&
      grep -q 'collectives ok: rank 1 of 2' '$OUT/node1.txt'"

  step "a dead peer is an error, not a hang"
  p=$(port)
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$p FLAME_DIST_TIMEOUT=20 \
      timeout 120 "$fl" spec/dist/peer_dies.lua >"$OUT/peer$r.txt" 2>&1 &
  done
  wait
  cat "$OUT/peer0.txt"
  check "rank 0 reports its dead peer" peer.txt grep -q "peer error" "$OUT/peer0.txt"

  step "distributed spec (one rank, through NCCL)"
  check "spec/distributed_spec.lua on cuda" distributed_spec.txt \
    env FLAME_DEVICE=cuda timeout 300 scripts/busted-flame spec/distributed_spec.lua
  grep -h "successes" "$OUT/distributed_spec.txt"
fi

# train.lua --ddp: bounded runs of the default preset (no sample grids; the LR schedule of 1000 steps).
train() { timeout 240 "$@" --steps 1000 --sample-every 0 --ckpt-every 0; }
# the images/s of a run's "throughput:" line
ips() { sed -n 's/.*throughput: \([0-9.]*\) images\/s.*/\1/p' "$1" | tail -1; }
if has train; then
  step "train.lua --ddp: resume under another world size"
  d=$OUT/train_resume
  rm -rf "$d"
  check "2 ranks to step 20" resume_a.txt train "$fl" --nproc 2 --master-port "$(port)" examples/train.lua --ddp \
    --out "$d" --stop-at 20
  check "resumed on 1 rank to step 30" resume_b.txt train "$fl" --nproc 1 examples/train.lua --ddp --out "$d" \
    --resume --stop-at 30
  check "resumed on 2 ranks to step 40" resume_c.txt train "$fl" --nproc 2 --master-port "$(port)" \
    examples/train.lua --ddp --out "$d" --resume --stop-at 40
  grep -h "resumed at step\|identical weights" "$OUT"/resume_[abc].txt
  check "the checkpoint: step 40, world 2, the data position of 70 steps of one batch" resume_check.txt \
    env CKPT="$d/checkpoint.safetensors" "$fl" -e '
    local st = flame.utils.load_training_state(os.getenv("CKPT"))
    print(st.step, st.data.world, st.data.epoch, st.data.seen, st.run.batch)
    assert(st.step == 40 and st.data.world == 2 and st.data.sampler == "distributed")
    -- 20 steps of 2 x B, 10 of 1 x B, 10 of 2 x B: 70 x B images of epoch 0 (60000 images)
    assert(st.data.epoch == 0 and st.data.seen == 70 * st.run.batch, "data position")'

  step "train.lua throughput at a fixed per-GPU batch (default preset)"
  check "1 GPU, no DDP" tp_plain.txt train "$fl" examples/train.lua --device cuda --out "$OUT/tp_plain" \
    --stop-at 200
  check "1 rank, DDP" tp_ddp1.txt train "$fl" --nproc 1 examples/train.lua --ddp --out "$OUT/tp_ddp1" --stop-at 200
  check "2 ranks, DDP" tp_ddp2.txt train "$fl" --nproc 2 --master-port "$(port)" examples/train.lua --ddp \
    --out "$OUT/tp_ddp2" --stop-at 200
  grep -h "throughput:\|identical weights" "$OUT"/tp_*.txt
  a=$(ips "$OUT/tp_plain.txt") b=$(ips "$OUT/tp_ddp1.txt") c=$(ips "$OUT/tp_ddp2.txt")
  python3 - "$a" "$b" "$c" >"$OUT/train_scaling.md" <<'EOF'
import sys
one, ddp1, two = (float(x) if x else None for x in sys.argv[1:4])
print("| examples/train.lua, default preset, its batch per GPU, bf16 | images/s | vs 1 GPU | target | met |")
print("|---|---|---|---|---|")
for name, v, tgt in (("1 GPU, no DDP", one, None), ("1 rank, DDP", ddp1, None), ("2 GPUs, DDP", two, 1.9)):
    r = v / one if v and one else None
    met = "-" if tgt is None or r is None else ("yes" if r >= tgt else "**no**")
    print(f"| {name} | {v if v else 'error'} | {'%.2fx' % r if r else '-'} | {tgt or '-'} | {met} |")
EOF
  cat "$OUT/train_scaling.md"
fi

if has contention; then
  step "two independent single-GPU runs at once (machine contention, no DDP)"
  check "1 GPU alone" cont_alone.txt train "$fl" examples/train.lua --device cuda:0 --out "$OUT/cont_a" --stop-at 150
  CUDA_VISIBLE_DEVICES=1 train "$fl" examples/train.lua --device cuda --out "$OUT/cont_c" --stop-at 150 \
    >"$OUT/cont_pair1.txt" 2>&1 &
  pid=$!
  check "cuda:0 while cuda:1 trains too" cont_pair0.txt train "$fl" examples/train.lua --device cuda:0 \
    --out "$OUT/cont_b" --stop-at 150
  wait $pid || { echo "FAIL - cuda:1 beside it"; tail -5 "$OUT/cont_pair1.txt"; status=1; }
  grep -h "throughput:" "$OUT"/cont_alone.txt "$OUT"/cont_pair0.txt "$OUT"/cont_pair1.txt
  echo "| run | images/s | vs alone |" >"$OUT/contention.md"
  echo "|---|---|---|" >>"$OUT/contention.md"
  a=$(ips "$OUT/cont_alone.txt")
  for f in cont_alone cont_pair0 cont_pair1; do
    v=$(ips "$OUT/$f.txt")
    echo "| $f | ${v:-error} | $(python3 -c "print('%.2fx' % ($v / $a))" 2>/dev/null || echo -) |" >>"$OUT/contention.md"
  done
  cat "$OUT/contention.md"
fi

if has bench; then
  step "torch.distributed beside flame.distributed"
  timeout 240 "$fl" --nproc 2 --master-port "$(port)" bench/dist.lua >"$OUT/dist_flame.txt" 2>&1 || status=1
  grep -o '{"name".*' "$OUT/dist_flame.txt" >"$OUT/dist_flame.jsonl" # rank 0's lines, "[rank 0] " cut
  # the same cases at one rank (the "(1 ranks)" rows: no PyTorch twin), beside the 2-rank ones
  timeout 240 "$fl" --nproc 1 bench/dist.lua >"$OUT/dist_flame1.txt" 2>&1 || status=1
  grep -o '{"name".*(1 ranks).*' "$OUT/dist_flame1.txt" >>"$OUT/dist_flame.jsonl"
  timeout 240 python3 -m torch.distributed.run --nproc_per_node 2 --master_port "$(port)" bench/dist_torch.py \
    >"$OUT/dist_torch.txt" 2>"$OUT/dist_torch.err" || status=1
  grep -o '{"name".*' "$OUT/dist_torch.txt" >"$OUT/dist_torch.jsonl"
  [ -s "$OUT/dist_flame.jsonl" ] || { echo "FAIL - bench/dist.lua:"; tail -25 "$OUT/dist_flame.txt"; status=1; }
  [ -s "$OUT/dist_torch.jsonl" ] || { echo "FAIL - bench/dist_torch.py:"; tail -25 "$OUT/dist_torch.err"; status=1; }
  python3 bench/nn_ratio.py "$OUT/dist_flame.jsonl" "$OUT/dist_torch.jsonl" >"$OUT/bench_dist.md"
  [ -f "$OUT/train_scaling.md" ] && { echo; cat "$OUT/train_scaling.md"; } >>"$OUT/bench_dist.md"
  { echo; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1
    python3 -c 'import torch; print("torch", torch.__version__, "NCCL", torch.cuda.nccl.version())'; } \
    >>"$OUT/bench_dist.md" 2>&1
  cat "$OUT/bench_dist.md"
fi
exit $status
