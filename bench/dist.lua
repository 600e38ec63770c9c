-- flame.distributed cases for scripts/gpu-dist.sh, run under the launcher (flame-lua --nproc 2 bench/dist.lua);
-- rank 0 prints one JSON line per case in bench/nn.lua's format; bench/dist_torch.py times the same names with
-- torch.distributed (NCCL) under torch.distributed.run, and bench/nn_ratio.py joins them.
--   all_reduce 256 MB bf16: one in-place sum of 128 Mi bf16 elements (bus bandwidth = 2 (W-1)/W x bytes / time);
--   ddp step: forward, backward with the bucketed all-reduce, AdamW, on an MLP 1024 -> 4096 x 3 -> 1024, batch 64.
local D, F = flame.distributed, flame.F
D.init()
local r, dev = D.get_rank(), D.device()
local sync = function() flame.cuda.synchronize(dev) end

local function median_time(fn, iters, reps)
  fn(); sync(); D.barrier()
  local ts = {}
  for _ = 1, reps do
    sync()
    local t0 = flame.timer()
    for _ = 1, iters do fn() end
    sync()
    ts[#ts + 1] = (flame.timer() - t0) / iters
  end
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end

local function report(name, t, target)
  if r == 0 then print(string.format('{"name": %q, "family": "dist", "target": %s, "flame_s": %.9g}', name, target or "null", t)) end
end

local buf = flame.ones(128 * 1024 * 1024, {dtype = "bf16", device = dev})
report("all_reduce 256 MB bf16 (2 ranks)", median_time(function() D.all_reduce(buf) end, 10, 5), 0.95)
buf = nil
collectgarbage()

flame.manual_seed(0)
local net = flame.nn.Sequential(flame.nn.Linear(1024, 4096), flame.nn.GELU(), flame.nn.Linear(4096, 4096), flame.nn.GELU(),
  flame.nn.Linear(4096, 4096), flame.nn.GELU(), flame.nn.Linear(4096, 1024)):to(dev)
local ddp = flame.nn.DistributedDataParallel(net)
local opt = flame.optim.AdamW(ddp:parameters(), {lr = 1e-4})
local x, y = flame.randn(64, 1024):to(dev), flame.randn(64, 1024):to(dev)
report("ddp step f32 mlp 1024-4096x3-1024 b64 (2 ranks)", median_time(function()
  opt:zero_grad()
  F.mse_loss(ddp(x), y):backward()
  opt:step()
end, 10, 5), 1.0)
D.destroy()
