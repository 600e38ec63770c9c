-- flame.distributed cases for scripts/gpu-dist.sh, run under the launcher (flame-lua --nproc 2 bench/dist.lua);
-- rank 0 prints one JSON line per case in bench/nn.lua's format; bench/dist_torch.py times the same names with
-- torch.distributed (NCCL) under torch.distributed.run, and bench/nn_ratio.py joins them.
--   all_reduce 256 MB bf16: one in-place sum of 128 Mi bf16 elements (bus bandwidth = 2 (W-1)/W x bytes / time);
--   ddp step mlp: forward, backward with the bucketed all-reduce, AdamW, on an MLP 1024 -> 4096 x 3 -> 1024, batch 64;
--   ddp step unet: examples/train.lua's default-preset step at batch 128 per GPU (bench/nn/unet.lua's train step,
--     the model wrapped in DistributedDataParallel; bench/nn/unet.py's twin in PyTorch's DDP).
-- The clock is bench/timing.lua's (warm-up, then the median of synchronised loops), after a barrier that lines the
-- ranks up.
local D, F = flame.distributed, flame.F
D.init()
local r, W, dev = D.get_rank(), D.get_world_size(), D.device()
local median_time = dofile("bench/timing.lua")

local function timed(fn, iters, reps)
  fn()
  D.barrier()
  return median_time(fn, iters, reps, false, dev)
end

local function report(name, t, target, extra)
  if r == 0 then
    print(string.format('{"name": %q, "family": "dist", "target": %s, "flame_s": %.9g%s}', name, target or "null", t,
      extra or ""))
    io.stdout:flush()
  end
end

local function case(name, target, setup, iters, reps)
  flame.manual_seed(0)
  local fn = setup()
  local t = timed(fn, iters, reps)
  report(name, t, target)
  fn = nil
  collectgarbage(); collectgarbage()
  flame.cuda.empty_cache(dev)
  return t
end

local ranks = string.format(" (%d ranks)", W)
case("all_reduce 256 MB bf16" .. ranks, 0.95, function()
  local buf = flame.ones(128 * 1024 * 1024, {dtype = "bf16", device = dev})
  return function() D.all_reduce(buf) end
end, 10, 5)

case("ddp step f32 mlp 1024-4096x3-1024 b64" .. ranks, 1.0, function()
  local net = flame.nn.Sequential(flame.nn.Linear(1024, 4096), flame.nn.GELU(), flame.nn.Linear(4096, 4096),
    flame.nn.GELU(), flame.nn.Linear(4096, 4096), flame.nn.GELU(), flame.nn.Linear(4096, 1024)):to(dev)
  local ddp = flame.nn.DistributedDataParallel(net)
  local opt = flame.optim.AdamW(ddp:parameters(), {lr = 1e-4})
  local x, y = flame.randn(64, 1024):to(dev), flame.randn(64, 1024):to(dev)
  return function()
    opt:zero_grad()
    F.mse_loss(ddp(x), y):backward()
    opt:step()
  end
end, 10, 5)

local unet = dofile("bench/nn/unet.lua")
-- issue 12's 2-GPU miss, taken apart (no PyTorch twins): the same step without DDP on every rank at once (what the
-- machine costs when the ranks run side by side), and inside DDP's no_sync (its hooks, no communication)
case("unet train step bf16 b128 per GPU (default preset), no DDP" .. ranks, nil, function()
  return unet.train_step(flame, {device = dev})
end, 10, 5)
case("ddp unet train step bf16 b128 per GPU (default preset), no_sync" .. ranks, nil, function()
  return unet.train_step(flame, {device = dev, no_sync = true,
    wrap = function(m) return flame.nn.DistributedDataParallel(m) end})
end, 10, 5)
case("ddp unet train step bf16 b128 per GPU (default preset)" .. ranks, 1.0, function()
  return unet.train_step(flame, {device = dev, wrap = function(m) return flame.nn.DistributedDataParallel(m) end})
end, 10, 5)
-- the same without overlap: each bucket's reduction ends before the backward goes on (no PyTorch twin)
case("ddp unet train step bf16 b128 per GPU (default preset), overlap off" .. ranks, nil, function()
  return unet.train_step(flame, {device = dev, wrap = function(m)
    return flame.nn.DistributedDataParallel(m, {overlap = false}) end})
end, 10, 5)

D.destroy()
