-- examples/train.lua --ddp: the data-parallel plumbing, kept out of train.lua. Start the script with the launcher:
--   flame-lua --nproc 2 examples/train.lua --ddp          -- two ranks, one GPU each (cuda:LOCAL_RANK)
-- Each rank trains on --batch images a step (the global batch is world x --batch) drawn through
-- flame.data.DistributedSampler, the model wrapped in flame.nn.DistributedDataParallel (gradients averaged over the
-- ranks, so every rank holds the same weights, EMA and optimizer state). Rank 0 alone prints, writes checkpoints
-- and sample grids. A checkpoint holds the data position as a count of images seen in the epoch by all ranks
-- together, so it resumes under another world size (rounded up to a whole step of the new world). Each rank
-- draws its own noise: rank r's generator seed is the run's plus r x a large odd constant (rank 0's is the run's,
-- the one the checkpoint holds). Also here: the throughput meter train.lua prints with or without --ddp.
local flame = require "flame"

local M = {}
local D = flame.distributed
local RANK_SEED_STRIDE = 0x9E3779B97F4A7C15 -- odd: the ranks' Philox seeds differ (wrapping in 64 bits)

local Dist = {}
Dist.__index = Dist

-- init(opt, C) -> the DDP context: the process group of the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK,
-- MASTER_ADDR, MASTER_PORT; without them one rank) on cuda:LOCAL_RANK, or on the CPU with --device cpu (one rank
-- only: the CPU has no collectives). C: diffusion_lib's cli (usage_error, fail).
function M.init(opt, C)
  if opt.ddp ~= true then C.usage_error("--ddp takes no value, got '" .. tostring(opt.ddp) .. "'") end
  if opt.device and opt.device:match("^cuda:") then
    C.usage_error("--ddp: each rank trains on cuda:LOCAL_RANK; give --device cuda, not " .. opt.device)
  end
  local ok, g = pcall(D.init, {device = opt.device == "cpu" and "cpu" or nil})
  if not ok then C.fail(g) end
  return M.context(g.rank, g.world, g.device)
end

-- context(rank, world, device): the context of init without a process group (for the specs of order and seeds).
function M.context(rank, world, device)
  return setmetatable({rank = rank, world = world, device = device, main = rank == 0}, Dist)
end

-- wrap(model) -> the DistributedDataParallel wrapper that the training forward goes through (rank 0's weights are
-- broadcast); the model itself stays what is saved, sampled and measured.
function Dist:wrap(model) return flame.nn.DistributedDataParallel(model) end

-- order(n, bs, seed): this rank's batches of dataset positions (an i64 tensor of bs 1-based indices on the device
-- per next() call), one DistributedSampler permutation per epoch; an epoch ends when fewer than bs indices are left.
function Dist:order(n, bs, seed)
  local sized = setmetatable({}, {__len = function() return n end})
  local s = flame.data.DistributedSampler(sized, {num_replicas = self.world, rank = self.rank, seed = seed})
  if #s < bs then return nil, string.format("--batch %d is larger than a rank's share of the data set (%d of %d " ..
    "images over %d ranks)", bs, #s, n, self.world) end
  local o = {epoch = 0, pos = 0, idx = nil, world = self.world}
  local dev = self.device
  local function draw()
    s:set_epoch(o.epoch)
    o.idx = s:indices():to(dev)
  end
  function o.next()
    if o.idx == nil then draw() end
    if o.pos + bs > #s then
      o.epoch, o.pos = o.epoch + 1, 0
      draw()
    end
    local idx = o.idx:narrow(1, o.pos + 1, bs)
    o.pos = o.pos + bs
    return idx
  end
  -- {epoch, seen (images of the epoch consumed by all ranks), world}: what the checkpoint keeps
  function o.state() return {epoch = o.epoch, seen = o.pos * o.world, world = o.world, sampler = "distributed"} end
  -- From a --ddp checkpoint (any world size), or a plain one (its epoch and position, the order differs).
  function o.load(st)
    local seen = st.seen or st.pos or 0
    o.epoch, o.pos, o.idx = st.epoch or 0, (seen + o.world - 1) // o.world, nil
  end
  return o
end

-- Gives rank r its own random stream (noise, timesteps, label dropout, dropout): call after init and after a
-- resume, which restores rank 0's generator state on every rank. The counters stay in step across ranks, since
-- every rank draws the same shapes.
function Dist:seed_ranks()
  local seed, offset = flame.autograd._rng_state()
  flame.autograd._set_rng_state(seed + self.rank * RANK_SEED_STRIDE, offset)
end

-- The mean of a scalar tensor over the ranks (a collective: every rank calls it at the same steps).
function Dist:mean(t) return D.all_reduce(t:detach():float():clone(), "avg") end

local quiet_bar = {update = function() end, print = function() end, close = function() end}
-- flame.progress on rank 0; a bar that prints nothing on the others.
function Dist:progress(total, opts) return self.main and flame.progress(total, opts) or quiet_bar end

-- The end of the run: checks that every rank holds rank 0's weights, bit for bit (DDP's averaged gradients make
-- the same update everywhere; a difference is a bug, so an error), waits until rank 0 wrote the last checkpoint
-- and grid, and leaves the group.
function Dist:finish(model)
  if self.world > 1 then
    local flat = flame.no_grad(function()
      local parts = {}
      for i, p in ipairs(model:parameters()) do parts[i] = p:detach():reshape(p:numel()) end
      return flame.cat(parts)
    end)
    local all = D.all_gather(flat)
    for q = 2, self.world do
      if not flame.allclose(all[q], all[1], {rtol = 0, atol = 0}) then
        error(string.format("ddp: rank %d's weights differ from rank 0's after training", q - 1), 0)
      end
    end
    if self.main then print(string.format("ddp: the %d ranks hold identical weights", self.world)) end
  end
  D.barrier()
  D.destroy()
end

-- throughput(device, world, batch, first, last): times the steps after a warm-up tenth of first..last (host
-- synchronised at both ends) and says images per second over all ranks. meter.step(step, host_s) after each step,
-- host_s the seconds the host spent issuing it (no sync inside): beside the step time it tells a host-bound step
-- (host time close to the step time) from a device-bound one. meter.line() -> the sentence, or nil when the run
-- had too few steps to time.
function M.throughput(device, world, batch, first, last)
  local warm = first + math.max(1, (last - first) // 10)
  local m = {host = 0}
  local function sync() if device ~= "cpu" then flame.cuda.synchronize(device) end end
  function m.step(step, host_s)
    if m.t0 and not m.t1 then m.host = m.host + (host_s or 0) end
    if step == warm then
      sync()
      m.t0 = flame.timer()
    elseif step == last and m.t0 then
      sync()
      m.t1 = flame.timer()
    end
  end
  function m.line()
    if not (m.t0 and m.t1) or m.t1 <= m.t0 then return nil end
    local n = (last - warm) * batch * world
    return string.format("throughput: %.1f images/s (%d rank%s x batch %d, steps %d..%d, %.1f ms a step, the host " ..
      "busy %.1f ms of it)", n / (m.t1 - m.t0), world, world > 1 and "s" or "", batch, warm + 1, last,
      (m.t1 - m.t0) / (last - warm) * 1e3, m.host / (last - warm) * 1e3)
  end
  return m
end

return M
