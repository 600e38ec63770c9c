-- ZeRO-1 for the fused AdamW: flame.optim.AdamW(params, {zero = true, ...}) shards the optimizer state over the
-- ranks of flame.distributed's default communicator. The parameters are laid out as one flat vector (padded to a
-- multiple of the world size) and rank r owns block r: the gradients are reduce-scattered (averaged) into the
-- owned block, the fused AdamW kernel updates that block with its own exp_avg / exp_avg_sq (1/world of the
-- state), and the updated blocks are all-gathered back into every rank's parameters. With a model already wrapped
-- in DistributedDataParallel (gradients already averaged), pass reduce_grads = false: the owned block is then read
-- from the local gradients. state_dict() holds the whole (gathered) state, so a checkpoint resumes under another
-- world size.
local flame = ...
local optim, D = flame.optim, flame.distributed

local plain_adamw = optim.AdamW
local Zero = {}
Zero.__index = Zero

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

local function new_zero(params, opts)
  if not D.is_initialized() then fail("AdamW(zero): call flame.distributed.init() first") end
  local list = type(params) == "table" and params.parameters and params:parameters() or params
  if type(list) ~= "table" or #list == 0 then fail("AdamW(zero): expected a non-empty list of parameters or a module") end
  for i, p in ipairs(list) do
    if not flame.is_tensor(p) then fail("AdamW(zero): parameter %d is a %s, not a tensor (one param group only)", i, type(p)) end
    if p.device ~= list[1].device or p.dtype ~= list[1].dtype then
      fail("AdamW(zero): every parameter must share one device and dtype (%s %s), parameter %d is %s %s",
        list[1].device, list[1].dtype, i, p.device, p.dtype)
    end
  end
  local inner_opts = {}
  for k, v in pairs(opts) do if k ~= "zero" and k ~= "reduce_grads" then inner_opts[k] = v end end
  local W, r = D.get_world_size(), D.get_rank()
  local n = 0
  for _, p in ipairs(list) do n = n + p:numel() end
  local S = (n + W - 1) // W
  local self = setmetatable({name = "AdamW", params = list, numel = n, shard_size = S, world = W, rank = r,
                             reduce_grads = opts.reduce_grads ~= false}, Zero)
  local flat = self:_flat(function(p) return p end)
  local shard = flat:narrow(1, r * S + 1, S):clone()
  shard.requires_grad = true
  self.shard = shard
  self.inner = plain_adamw({shard}, inner_opts)
  self.param_groups = self.inner.param_groups -- what schedulers change
  return self
end

-- The parameters' (or gradients') values as one flat vector padded with zeros to world x shard_size.
function Zero:_flat(get)
  local parts = {}
  for i, p in ipairs(self.params) do
    local t = get(p)
    parts[i] = t and t:reshape(t:numel()) or flame.zeros(p:numel(), {dtype = p.dtype, device = p.device})
  end
  local pad = self.world * self.shard_size - self.numel
  if pad > 0 then parts[#parts + 1] = flame.zeros(pad, {dtype = self.params[1].dtype, device = self.params[1].device}) end
  return flame.cat(parts)
end

function Zero:zero_grad(set_to_none)
  for _, p in ipairs(self.params) do
    if set_to_none == false then
      if p.grad then p.grad:zero_() end
    else
      p.grad = nil
    end
  end
end

function Zero:step(closure)
  local loss
  if closure then loss = closure() end
  flame.no_grad(function()
    local S, r = self.shard_size, self.rank
    local g = self:_flat(function(p) return p.grad end)
    self.shard.grad = self.reduce_grads and D.reduce_scatter(g, "avg") or g:narrow(1, r * S + 1, S):clone()
    self.inner:step()
    local all = D.all_gather(self.shard):view(self.world * S)
    local off = 1
    for _, p in ipairs(self.params) do
      p:copy_(all:narrow(1, off, p:numel()):view(p.shape))
      off = off + p:numel()
    end
  end)
  return loss
end

-- {zero = true, numel, step, exp_avg, exp_avg_sq (whole, gathered), param_groups}: the same on every rank.
function Zero:state_dict()
  local s = self.inner.state[self.shard]
  local sd = self.inner:state_dict()
  local out = {zero = true, numel = self.numel, param_groups = sd.param_groups, step = s and s.step or 0}
  if s then
    for _, k in ipairs({"exp_avg", "exp_avg_sq"}) do
      out[k] = D.all_gather(s[k]):view(self.world * self.shard_size):narrow(1, 1, self.numel):clone()
    end
  end
  return out
end

function Zero:load_state_dict(sd)
  if type(sd) ~= "table" or not sd.zero then fail("AdamW(zero):load_state_dict: expected a ZeRO state dict") end
  if sd.numel ~= self.numel then
    fail("AdamW(zero):load_state_dict: the state covers %s elements, the parameters %d", tostring(sd.numel), self.numel)
  end
  local S, r = self.shard_size, self.rank
  local function own(t) -- this rank's block of a whole flat state, zero-padded
    local pad = self.world * S - self.numel
    local full = pad > 0 and flame.cat({t, flame.zeros(pad, {dtype = t.dtype, device = t.device})}) or t
    return full:narrow(1, r * S + 1, S)
  end
  local st = {}
  if sd.exp_avg then st[1] = {step = sd.step, exp_avg = own(sd.exp_avg), exp_avg_sq = own(sd.exp_avg_sq)} end
  local groups = {}
  for i, g in ipairs(sd.param_groups) do
    local e = {}
    for k, v in pairs(g) do e[k] = v end
    e.params = {1}
    groups[i] = e
  end
  self.inner:load_state_dict({state = st, param_groups = groups})
  return self
end

-- AdamW(params, {zero = true, reduce_grads = true, lr, betas, eps, weight_decay, ...})
function optim.AdamW(params, opts)
  if type(opts) ~= "table" or (opts.zero == nil and opts.reduce_grads == nil) then return plain_adamw(params, opts) end
  if opts.zero then return new_zero(params, opts) end
  local rest = {}
  for k, v in pairs(opts) do if k ~= "zero" and k ~= "reduce_grads" then rest[k] = v end end
  return plain_adamw(params, rest)
end
