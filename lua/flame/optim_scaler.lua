-- flame.optim.GradScaler: dynamic loss scaling for f16 training, with the semantics of PyTorch's
-- torch.amp.GradScaler. The loss is multiplied by the scale before backward; before the optimizer step the
-- gradients are divided by it, and a step whose gradients hold an inf or NaN is skipped and the scale backed off.
-- The scale lives on the host: the finiteness check reads one fused norm per (device, dtype) of gradients, a single
-- sync per step, as PyTorch's non-fused step does.
local flame = ...
local optim = flame.optim
local norm = optim._norm

local GradScaler = {}
GradScaler.__index = GradScaler
GradScaler.__name = "flame.optim.GradScaler"

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end
local function optfail(fmt, ...) error(string.format(fmt, ...), 4) end -- from check_opts

local defaults = {init_scale = 65536.0, growth_factor = 2.0, backoff_factor = 0.5, growth_interval = 2000, enabled = true}

local function check_opts(opts)
  if opts ~= nil and type(opts) ~= "table" then optfail("GradScaler: options must be a table, got %s", type(opts)) end
  local o = {}
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then optfail("GradScaler: unknown option '%s'", tostring(k)) end
    if type(v) ~= type(defaults[k]) then optfail("GradScaler: %s must be a %s, got %s", k, type(defaults[k]), type(v)) end
    o[k] = v
  end
  for k, v in pairs(defaults) do if o[k] == nil then o[k] = v end end
  if not (o.init_scale > 0) then optfail("GradScaler: init_scale must be > 0, got %s", tostring(o.init_scale)) end
  if not (o.growth_factor > 1) then optfail("GradScaler: growth_factor must be > 1, got %s", tostring(o.growth_factor)) end
  if not (o.backoff_factor > 0 and o.backoff_factor < 1) then
    optfail("GradScaler: backoff_factor must be in (0, 1), got %s", tostring(o.backoff_factor))
  end
  if math.type(o.growth_interval) ~= "integer" or o.growth_interval < 1 then
    optfail("GradScaler: growth_interval must be a positive integer, got %s", tostring(o.growth_interval))
  end
  return o
end

-- GradScaler({init_scale = 2^16, growth_factor = 2, backoff_factor = 0.5, growth_interval = 2000, enabled = true})
function optim.GradScaler(opts)
  local o = check_opts(opts)
  return setmetatable({_enabled = o.enabled, _scale = o.init_scale, _growth_factor = o.growth_factor,
                       _backoff_factor = o.backoff_factor, _growth_interval = o.growth_interval, _growth_tracker = 0,
                       _per_optimizer = setmetatable({}, {__mode = "k"})}, GradScaler)
end

function GradScaler:is_enabled() return self._enabled end
function GradScaler:get_scale() return self._enabled and self._scale or 1.0 end
function GradScaler:get_growth_factor() return self._growth_factor end
function GradScaler:get_backoff_factor() return self._backoff_factor end
function GradScaler:get_growth_interval() return self._growth_interval end

-- scale(outputs): outputs (a tensor or a table of them, nested) times the scale.
function GradScaler:scale(outputs)
  if not self._enabled then return outputs end
  if flame.is_tensor(outputs) then return outputs * self._scale end
  if type(outputs) ~= "table" then fail("GradScaler:scale: expected a tensor or a table of tensors, got %s", type(outputs)) end
  local out = {}
  for k, v in pairs(outputs) do out[k] = self:scale(v) end
  return out
end

local function per_opt(self, opt)
  if type(opt) ~= "table" or type(opt.param_groups) ~= "table" then
    fail("GradScaler: expected an optimizer (with param_groups), got %s", type(opt))
  end
  local st = self._per_optimizer[opt]
  if not st then st = {stage = "ready"}; self._per_optimizer[opt] = st end
  return st
end

-- Divides every gradient of opt by the scale and notes whether any is inf or NaN (one fused L1 norm per
-- device and dtype: it is finite exactly when every gradient element is).
local function unscale_grads(opt, inv_scale)
  local params = {}
  for _, g in ipairs(opt.param_groups) do
    for _, p in ipairs(g.params) do
      local gr = p.grad
      if gr and gr.dtype == "f16" then
        fail("GradScaler:unscale_: attempting to unscale f16 gradients (keep the parameters f32 and use autocast)")
      end
      params[#params + 1] = p
    end
  end
  local groups, order = optim._grads_by_device_dtype(params)
  local found_inf = false
  flame.no_grad(function()
    for _, key in ipairs(order) do
      local total = norm(groups[key], 1):item()
      if total ~= total or total == math.huge then found_inf = true end
      for _, gr in ipairs(groups[key]) do gr:mul_(inv_scale) end
    end
  end)
  return found_inf
end

-- unscale_(opt): divides opt's gradients by the scale now (e.g. before clip_grad_norm); once per step.
function GradScaler:unscale_(opt)
  if not self._enabled then return end
  local st = per_opt(self, opt)
  if st.stage == "unscaled" then fail("GradScaler:unscale_: already called on this optimizer since the last update()") end
  if st.stage == "stepped" then fail("GradScaler:unscale_: called after step(); call update() first") end
  st.found_inf = unscale_grads(opt, 1.0 / self._scale)
  st.stage = "unscaled"
end

-- step(opt, ...): unscales (unless unscale_ ran) and calls opt:step(...) unless a gradient was inf or NaN;
-- returns opt:step's result, or nil for a skipped step.
function GradScaler:step(opt, ...)
  if not self._enabled then return opt:step(...) end
  local st = per_opt(self, opt)
  if st.stage == "stepped" then fail("GradScaler:step: already called on this optimizer since the last update()") end
  if st.stage == "ready" then self:unscale_(opt) end
  local ret
  if not st.found_inf then ret = opt:step(...) end
  st.stage = "stepped"
  return ret
end

-- update(new_scale?): backs the scale off after a skipped step, grows it after growth_interval clean ones, or
-- sets it to new_scale.
function GradScaler:update(new_scale)
  if not self._enabled then return end
  if new_scale ~= nil then
    if flame.is_tensor(new_scale) then new_scale = new_scale:item() end
    if type(new_scale) ~= "number" or not (new_scale > 0) then fail("GradScaler:update: new_scale must be a positive number") end
    self._scale = new_scale
  else
    local found, any = false, false
    for _, st in pairs(self._per_optimizer) do
      if st.stage ~= "ready" then any = true; found = found or st.found_inf end
    end
    if not any then fail("GradScaler:update: no inf checks were recorded prior to update (call step or unscale_ first)") end
    if found then
      self._scale = self._scale * self._backoff_factor
      self._growth_tracker = 0
    else
      self._growth_tracker = self._growth_tracker + 1
      if self._growth_tracker == self._growth_interval then
        self._scale = self._scale * self._growth_factor
        self._growth_tracker = 0
      end
    end
  end
  self._per_optimizer = setmetatable({}, {__mode = "k"})
end

function GradScaler:state_dict()
  if not self._enabled then return {} end
  return {scale = self._scale, growth_factor = self._growth_factor, backoff_factor = self._backoff_factor,
          growth_interval = self._growth_interval, _growth_tracker = self._growth_tracker}
end

function GradScaler:load_state_dict(sd)
  if not self._enabled then return end
  if type(sd) ~= "table" or next(sd) == nil then
    fail("GradScaler:load_state_dict: the state dict is empty (saved from a disabled GradScaler?)")
  end
  for _, k in ipairs({"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}) do
    local v = sd[k]
    if flame.is_tensor(v) then v = v:item() end
    if type(v) ~= "number" then fail("GradScaler:load_state_dict: '%s' must be a number, got %s", k, type(v)) end
  end
  self._scale, self._growth_factor, self._backoff_factor = sd.scale, sd.growth_factor, sd.backoff_factor
  self._growth_interval = math.tointeger(sd.growth_interval) or sd.growth_interval
  self._growth_tracker = math.tointeger(sd._growth_tracker) or sd._growth_tracker
end
