-- flame.nn.DistributedDataParallel: PyTorch's DDP over flame.distributed's default communicator.
-- At construction rank 0's parameters and buffers are broadcast. The gradients live in buckets of about
-- bucket_cap_mb (parameters in reverse registration order, the order the backward produces them): as PyTorch's
-- gradient_as_bucket_view, each parameter's .grad becomes a view of its slot in a flat bucket, so the backward
-- accumulates into the bucket itself (in place, as the engine accumulates .grad) and nothing is copied back after
-- the reduction. A post-accumulate grad hook per parameter counts the bucket's ready gradients; full buckets are
-- all-reduced (averaged) in bucket order (the same collectives in the same order on every rank), without ordering
-- the rest of the backward after them (all_reduce's async_op), so
-- the communication overlaps the rest of the backward and one rank's late start does not stall the other's
-- compute. When the backward returns, the last buckets are reduced and the device waits for the reductions
-- (work:wait(), no host wait) before anything queued later reads or writes the gradients.
-- no_sync(fn) runs fn without communication: gradients accumulate locally and join the next synced step.
local flame = ...
local nn, D = flame.nn, flame.distributed

local DDP = nn.Module:extend("DistributedDataParallel")
nn.DistributedDataParallel = DDP
-- The flame.distributed a DDP built next talks to (kept per instance, st.D). A test seam: spec/ddp_world_spec.lua
-- puts each replica of a one-process fake world of several ranks here while it builds that rank's DDP.
DDP._dist = D

local opt_keys = {bucket_cap_mb = true, broadcast_buffers = true, overlap = true}
-- Each gradient view starts at a multiple of this many bytes of its bucket, so the multi-tensor kernels (the
-- fused AdamW) read it with their aligned vector loads; the padding between views stays zero.
local ALIGN_BYTES = 64

local function build_buckets(params, cap_bytes)
  local order, sizes = {}, {}
  for i = #params, 1, -1 do order[#order + 1] = params[i] end
  for k, p in ipairs(order) do sizes[k] = {p:numel(), p:element_size(), p.device .. "/" .. p.dtype} end
  local buckets, where = {}, {}
  for b, list in ipairs(D._bucket_plan(sizes, cap_bytes)) do
    local total, offs = 0, {}
    for j, k in ipairs(list) do
      local p = order[k]
      local a = math.max(1, ALIGN_BYTES // p:element_size())
      offs[j] = total
      total = total + (p:numel() + a - 1) // a * a
    end
    local p1 = order[list[1]]
    local bucket = {flat = flame.zeros(total, {dtype = p1.dtype, device = p1.device}), params = {}, views = {},
                    got = {}, ready = 0}
    for j, k in ipairs(list) do
      local p = order[k]
      bucket.params[j] = p
      bucket.views[j] = bucket.flat:narrow(1, offs[j] + 1, p:numel()):view(p.shape)
      where[p] = {bucket, j}
    end
    buckets[b] = bucket
  end
  return buckets, where
end

-- Each p.grad of a bucket becomes its slot, holding what p.grad held (zeros when it had none), just before the
-- bucket is reduced. Once bound a .grad stays bound until something replaces it (zero_grad's set_to_none, an
-- assignment): then the backward makes a fresh one, and the next launch copies it in. The copies of a bucket are
-- one multi-tensor copy (one launch on CUDA, where a copy per parameter was a launch per parameter).
local bind_all = D._bind_grads

-- Buckets are launched in order: st.next is the first one not launched yet this backward.
local function launch(st, bucket)
  bind_all(bucket.params, bucket.views)
  local _, work = st.D.all_reduce(bucket.flat, "avg", st.reduce_opts)
  st.work = work
  st.next = st.next + 1
  st.reductions = st.reductions + 1
end

-- A parameter's gradient was accumulated into p.grad (its bucket slot when bound); a full bucket is reduced.
-- Hooks run inside the backward, where grad mode is off.
local function on_grad(st, p)
  if not st.sync then return end
  local w = st.where[p]
  local bucket, j = w[1], w[2]
  if bucket.got[j] == st.step then
    -- the engine already accumulated into a slot whose reduction may be running (PyTorch's DDP refuses it too)
    error("DistributedDataParallel: a parameter of shape " .. table.concat(p.shape, "x") .. " got its gradient twice"
          .. " in one backward (used in two checkpointed segments?): DDP reduces each gradient once per backward", 0)
  end
  if not st.pending then
    st.pending = true
    flame.autograd.queue_callback(st.finish)
  end
  bucket.got[j] = st.step
  bucket.ready = bucket.ready + 1
  -- Full buckets are reduced in bucket order only: NCCL pairs the ranks' collectives by issue order, and the order
  -- buckets fill in differs between ranks when a parameter has no gradient on one of them (that rank's bucket
  -- waits for the end of the backward), so launching a bucket as it fills would reduce one rank's bucket with
  -- another rank's (PyTorch's Reducer keeps the same order: next_bucket_).
  while st.next <= #st.buckets do
    local b = st.buckets[st.next]
    if b.ready < #b.params then break end
    launch(st, b)
    st.early = st.early + 1
  end
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
  local dist = DDP._dist
  if not dist.is_initialized() then error("DistributedDataParallel: call flame.distributed.init() first", 3) end
  self.module = module
  local params = {}
  for _, p in ipairs(module:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  local cap = (opts.bucket_cap_mb or 25) * 1024 * 1024
  local st = {D = dist, sync = true, pending = false, broadcast_buffers = opts.broadcast_buffers ~= false, params = params,
              step = 1, -- the synced backward now running: a bucket's got[j] == step once slot j's gradient is in
              next = 1, -- the next bucket to reduce (they are reduced in order, the same on every rank)
              reductions = 0, early = 0, -- bucket all-reduces so far, and those launched from a hook (overlapped)
              reduce_opts = opts.overlap == false and {} or {async_op = true}}
  st.buckets, st.where = build_buckets(params, cap)
  st.finish = function() self:_finish() end
  self._ddp = st
  flame.no_grad(function()
    for _, p in ipairs(module:parameters()) do dist.broadcast(p, 0) end
    for _, b in ipairs(module:buffers()) do dist.broadcast(b, 0) end
  end)
  for _, p in ipairs(params) do
    p:register_post_accumulate_grad_hook(function() on_grad(st, p) end)
  end
end

-- The buckets not full when the backward ended: a parameter without a gradient this step enters with the .grad it
-- has (zeros when none), as plain training keeps it; every rank issues the same collectives, in bucket order.
local function launch_rest(st)
  for b = st.next, #st.buckets do launch(st, st.buckets[b]) end
end

-- The device waits for the reductions (the last one's wait covers all: the comm stream runs in order); the
-- buckets start the next step empty.
local function end_step(st)
  if st.work then st.work:wait() end
  st.work = nil
  for _, bucket in ipairs(st.buckets) do bucket.ready = 0 end
  st.next = 1
  st.step = st.step + 1
  st.pending = false
end

-- After the backward: every bucket reduced, and the device ordered after the reductions (the .grads are their
-- views already).
function DDP:_finish()
  local st = self._ddp
  flame.no_grad(function()
    launch_rest(st)
    end_step(st)
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
  -- a backward that failed before its end never ran its callback (not a checkpoint's forward inside a backward)
  if st.pending and not flame.autograd._running() then end_step(st) end
  if st.broadcast_buffers and st.D.get_world_size() > 1 then
    flame.no_grad(function()
      for _, b in ipairs(self.module:buffers()) do st.D.broadcast(b, 0) end
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
