-- flame.nn.DistributedDataParallel: PyTorch's DDP over flame.distributed's default communicator.
-- At construction rank 0's parameters and buffers are broadcast. The gradients go into buckets of about
-- bucket_cap_mb (parameters in reverse registration order, the order the backward produces them), and each bucket
-- is all-reduced (averaged) as soon as all its gradients arrived, from the parameters' gradient hooks, without
-- ordering the rest of the backward after it (all_reduce's async_op), so the communication overlaps the rest of
-- the backward and one rank's late start does not stall the other's compute. When the backward returns, the last
-- buckets are reduced, the device waits for the reductions (work:wait(), no host wait), and the reduced values are
-- copied into .grad. no_sync(fn) runs fn without communication: gradients accumulate locally and join the next synced step.
local flame = ...
local nn, D = flame.nn, flame.distributed

local DDP = nn.Module:extend("DistributedDataParallel")
nn.DistributedDataParallel = DDP

local opt_keys = {bucket_cap_mb = true, broadcast_buffers = true, overlap = true}

local function build_buckets(params, cap_bytes)
  local order, sizes = {}, {}
  for i = #params, 1, -1 do order[#order + 1] = params[i] end
  for k, p in ipairs(order) do sizes[k] = {p:numel(), p:element_size(), p.device .. "/" .. p.dtype} end
  local buckets, where = {}, {}
  for b, list in ipairs(D._bucket_plan(sizes, cap_bytes)) do
    local total = 0
    for _, k in ipairs(list) do total = total + order[k]:numel() end
    local p1 = order[list[1]]
    local bucket = {flat = flame.zeros(total, {dtype = p1.dtype, device = p1.device}), params = {}, views = {},
                    got = {}, ready = 0, launched = false}
    local off = 1
    for j, k in ipairs(list) do
      local p = order[k]
      bucket.params[j] = p
      bucket.views[j] = bucket.flat:narrow(1, off, p:numel()):view(p.shape)
      where[p] = {bucket, j}
      off = off + p:numel()
    end
    buckets[b] = bucket
  end
  return buckets, where
end

-- DistributedDataParallel(module, {bucket_cap_mb = 25, broadcast_buffers = true, overlap = true})
-- overlap = false: each bucket's reduction ends before the rest of the backward runs (no compute beside NCCL's
-- kernels; bench/dist.lua measures both)
function DDP:__init(module, opts)
  if not (type(module) == "table" and module.parameters) then
    error("DistributedDataParallel: expected a module, got " .. type(module), 3)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not opt_keys[k] then error("DistributedDataParallel: unknown option '" .. tostring(k) .. "'", 3) end
  end
  if not D.is_initialized() then error("DistributedDataParallel: call flame.distributed.init() first", 3) end
  self.module = module
  local params = {}
  for _, p in ipairs(module:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  local cap = (opts.bucket_cap_mb or 25) * 1024 * 1024
  local st = {sync = true, pending = false, broadcast_buffers = opts.broadcast_buffers ~= false, params = params,
              reductions = 0, early = 0, -- bucket all-reduces so far, and those launched from a hook (overlapped)
              reduce_opts = opts.overlap == false and {} or {async_op = true}}
  st.buckets, st.where = build_buckets(params, cap)
  st.finish = function() self:_finish() end
  self._ddp = st
  flame.no_grad(function()
    for _, p in ipairs(module:parameters()) do D.broadcast(p, 0) end
    for _, b in ipairs(module:buffers()) do D.broadcast(b, 0) end
  end)
  for _, p in ipairs(params) do
    p:register_hook(function(g) self:_on_grad(p, g) end)
  end
end

-- A gradient arrived: into its bucket (plus what no_sync steps accumulated in .grad); a full bucket is reduced.
-- Hooks run inside the backward, where grad mode is off.
function DDP:_on_grad(p, g)
  local st = self._ddp
  if not st.sync then return end
  local w = st.where[p]
  local bucket, j = w[1], w[2]
  if not st.pending then
    st.pending = true
    flame.autograd.queue_callback(st.finish)
  end
  local v = bucket.views[j]
  v:copy_(g)
  local acc = p.grad
  if acc then v:add_(acc) end
  bucket.got[j] = true
  bucket.ready = bucket.ready + 1
  if bucket.ready == #bucket.params then
    local _, work = D.all_reduce(bucket.flat, "avg", st.reduce_opts)
    st.work = work
    bucket.launched = true
    st.reductions, st.early = st.reductions + 1, st.early + 1
  end
end

-- The buckets not full when the backward ended: parameters without a gradient this step count as 0 (every rank
-- issues the same collectives, in bucket order).
local function launch_rest(st)
  for _, bucket in ipairs(st.buckets) do
    if not bucket.launched then
      for j, v in ipairs(bucket.views) do
        if not bucket.got[j] then v:zero_() end
      end
      local _, work = D.all_reduce(bucket.flat, "avg", st.reduce_opts)
      st.work = work
      st.reductions = st.reductions + 1
    end
  end
end

-- After the backward: every bucket reduced, the device ordered after the reductions, the results into .grad.
function DDP:_finish()
  local st = self._ddp
  st.pending = false
  flame.no_grad(function()
    launch_rest(st)
    -- the device waits for the reductions: the last one's wait covers all (the comm stream runs in order)
    if st.work then st.work:wait() end
    st.work = nil
    for _, bucket in ipairs(st.buckets) do
      for j, p in ipairs(bucket.params) do
        local gr = p.grad
        if gr then gr:copy_(bucket.views[j]) else p.grad = bucket.views[j]:clone() end
        bucket.got[j] = nil
      end
      bucket.ready, bucket.launched = 0, false
    end
  end)
end

-- no_sync(fn, ...): runs fn(...) (forward and backward) without gradient communication.
function DDP:no_sync(fn, ...)
  local st = self._ddp
  local prev = st.sync
  st.sync = false
  local res = table.pack(pcall(fn, ...))
  st.sync = prev
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

function DDP:forward(...)
  local st = self._ddp
  if st.broadcast_buffers and D.get_world_size() > 1 then
    flame.no_grad(function()
      for _, b in ipairs(self.module:buffers()) do D.broadcast(b, 0) end
    end)
  end
  return self.module(...)
end

-- The bucket layout (for tests and tuning): a list of {numel, dtype, device, params = count}.
function DDP:bucket_info()
  local out = {}
  for i, b in ipairs(self._ddp.buckets) do
    out[i] = {numel = b.flat:numel(), dtype = b.flat.dtype, device = b.flat.device, params = #b.params}
  end
  return out
end
