-- flame.optim: SGD, Adam and AdamW with PyTorch's update semantics, clip_grad_norm, EMA and the LR schedulers.
-- The options, param groups and state live here; every update is one C call per param group into a multi-tensor
-- kernel (src/lua/loptim.c -> fl_optim_step: a loop on the CPU, fused launches on CUDA), never a chain of tensor ops.
local flame = ...
local optim = flame.optim -- the C part made it, with _step, _norm, _clip and _lerp
local K = {step = optim._step, norm = optim._norm, clip = optim._clip, lerp = optim._lerp}
local is_tensor = flame.is_tensor

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

-- The state dtype of a param: its own for f32/f64, f32 for the half types (as PyTorch's fused kernels keep it).
local function state_dtype(p) return p.dtype == "f64" and "f64" or "f32" end
local function zeros_state(p) return flame.zeros(p.shape, {dtype = state_dtype(p), device = p.device}) end

-- A list of tensors from a list, a single tensor, or anything with :parameters() (a module).
local function tensor_list(name, x)
  if is_tensor(x) then return {x} end
  if type(x) == "table" and type(x.parameters) == "function" then x = x:parameters() end
  if type(x) ~= "table" then fail("%s: expected a list of tensors, got a %s", name, type(x)) end
  local out = {}
  for i, t in ipairs(x) do
    if not is_tensor(t) then fail("%s: entry %d is a %s, not a tensor", name, i, type(t)) end
    out[i] = t
  end
  return out
end

---------------------------------------------------------------------------------------------------- optimizers

local Optimizer = {}
Optimizer.__index = Optimizer

-- PyTorch's implementation switches, accepted for portability and ignored: the step is always one multi-tensor
-- call (fused on CUDA).
local accepted = {fused = true, foreach = true, capturable = true, differentiable = true}

-- params: a list of tensors, a module, or a list of param groups {params = {...}, lr = ..., ...} (PyTorch's forms).
local function make_groups(self, name, params, defaults, validate)
  if is_tensor(params) or type(params) ~= "table" then
    fail("%s: params must be a list of tensors or of param groups, got a %s", name,
      is_tensor(params) and "tensor" or type(params))
  end
  if type(params.parameters) == "function" then params = params:parameters() end
  if #params == 0 then fail("%s: got an empty parameter list", name) end
  if is_tensor(params[1]) then params = {{params = params}} end
  local seen, groups = {}, {}
  for gi, g in ipairs(params) do
    if type(g) ~= "table" or is_tensor(g) then
      fail("%s: entry %d is a %s, expected a tensor or a param group", name, gi, is_tensor(g) and "tensor" or type(g))
    end
    for k in pairs(g) do
      if k ~= "params" and k ~= "lr" and defaults[k] == nil then fail("%s: unknown option '%s' in param group %d", name, tostring(k), gi) end
    end
    local grp = {params = {}}
    for i, p in ipairs(tensor_list(name .. " (param group " .. gi .. ")", g.params)) do
      if seen[p] then fail("%s: some parameters appear in more than one parameter group", name) end
      if p.dtype ~= "f32" and p.dtype ~= "f64" and p.dtype ~= "f16" and p.dtype ~= "bf16" then
        fail("%s: parameter %d of group %d is %s, not a floating-point tensor", name, i, gi, p.dtype)
      end
      seen[p] = true
      grp.params[i] = p
    end
    for k, v in pairs(defaults) do grp[k] = v end
    for k, v in pairs(g) do
      if k ~= "params" then grp[k] = v end
    end
    if type(grp.betas) == "table" then grp.betas = {grp.betas[1], grp.betas[2]} end
    validate(name, grp)
    groups[gi] = grp
  end
  self.param_groups, self.defaults, self.state = groups, defaults, {}
end

local function check_common(name, g)
  if type(g.lr) ~= "number" then fail("%s: lr must be a number, got %s", name, type(g.lr)) end
  if not (g.lr >= 0) then fail("%s: invalid learning rate: %s", name, tostring(g.lr)) end
  if type(g.weight_decay) ~= "number" or not (g.weight_decay >= 0) then
    fail("%s: invalid weight_decay value: %s", name, tostring(g.weight_decay))
  end
end

-- zero_grad(set_to_none = true): grads to nil (PyTorch 2's default), or zeroed in place.
function Optimizer:zero_grad(set_to_none)
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if set_to_none == false then
        local gr = p.grad
        if gr then gr:zero_() end
      else
        p.grad = nil
      end
    end
  end
end

-- The parameters of a group that have a gradient (the others are skipped, as PyTorch does), with their grads.
local function with_grads(g)
  local ps, gs = {}, {}
  for _, p in ipairs(g.params) do
    local gr = p.grad
    if gr then ps[#ps + 1], gs[#gs + 1] = p, gr end
  end
  return ps, gs
end

-- opt:step(closure?): closure (if given) runs first with grad enabled and its result is returned.
function Optimizer:step(closure)
  local loss
  if closure then loss = closure() end
  flame.no_grad(function()
    for _, g in ipairs(self.param_groups) do self:_update(g) end
  end)
  return loss
end

-- The position of every parameter over all groups (1-based): the keys of state_dict's state.
local function positions(self)
  local pos, list = {}, {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      list[#list + 1] = p
      pos[p] = #list
    end
  end
  return pos, list
end

-- PyTorch's layout: {state = {[i] = {...}}, param_groups = {{lr = ..., ..., params = {i, ...}}}} with i the
-- parameter's position over all groups, counted from 1. State tensors are references (as in PyTorch); step is a number.
function Optimizer:state_dict()
  local pos = positions(self)
  local state, groups = {}, {}
  for p, s in pairs(self.state) do
    local e = {}
    for k, v in pairs(s) do e[k] = v end
    state[pos[p]] = e
  end
  for gi, g in ipairs(self.param_groups) do
    local e = {params = {}}
    for k, v in pairs(g) do
      if k ~= "params" then e[k] = type(v) == "table" and {table.unpack(v)} or v end
    end
    for i, p in ipairs(g.params) do e.params[i] = pos[p] end
    groups[gi] = e
  end
  return {state = state, param_groups = groups}
end

-- Loads a state_dict of an optimizer of the same structure: the options of every group, and copies of the state
-- tensors moved to each parameter's device (state dtype as for a fresh state).
function Optimizer:load_state_dict(sd)
  local name = self.name .. ":load_state_dict"
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    fail("%s: expected a table with state and param_groups", name)
  end
  if #sd.param_groups ~= #self.param_groups then
    fail("%s: loaded state dict has %d parameter groups, the optimizer has %d", name, #sd.param_groups,
      #self.param_groups)
  end
  local _, list = positions(self)
  local map = {}
  for gi, sg in ipairs(sd.param_groups) do
    local g = self.param_groups[gi]
    if type(sg.params) ~= "table" or #sg.params ~= #g.params then
      fail("%s: loaded param group %d has %s parameters, the optimizer's has %d", name, gi,
        type(sg.params) == "table" and tostring(#sg.params) or "no", #g.params)
    end
    for i, id in ipairs(sg.params) do map[id] = g.params[i] end
  end
  for id, s in pairs(sd.state) do
    local p = map[id]
    if not p then fail("%s: state for parameter %s, which no param group lists", name, tostring(id)) end
    for k, v in pairs(s) do
      if is_tensor(v) and v:numel() ~= p:numel() and k ~= "step" then
        fail("%s: state '%s' of parameter %s has %d elements, the parameter %d", name, k, tostring(id), v:numel(),
          p:numel())
      end
    end
  end
  for gi, sg in ipairs(sd.param_groups) do
    local g = self.param_groups[gi]
    for k, v in pairs(sg) do
      if k ~= "params" then g[k] = type(v) == "table" and {table.unpack(v)} or v end
    end
  end
  self.state = {}
  for id, s in pairs(sd.state) do
    local p, e = map[id], {}
    for k, v in pairs(s) do
      if k == "step" then e[k] = is_tensor(v) and math.tointeger(v:item()) or v
      elseif is_tensor(v) then e[k] = v:to(p.device):to(state_dtype(p)):clone():view(p.shape)
      else e[k] = v end
    end
    self.state[p] = e
  end
  return self
end

local function new_optimizer(class, name, params, defaults, validate)
  local self = setmetatable({name = name}, class)
  make_groups(self, name, params, defaults, validate)
  return self
end

-- SGD ---------------------------------------------------------------------------------------------------------

local SGD = setmetatable({}, {__index = Optimizer})
SGD.__index = SGD

local function check_sgd(name, g)
  if g.lr == nil then fail("%s: lr is required", name) end
  check_common(name, g)
  if type(g.momentum) ~= "number" or not (g.momentum >= 0) then fail("%s: invalid momentum value: %s", name, tostring(g.momentum)) end
  if type(g.dampening) ~= "number" then fail("%s: invalid dampening value: %s", name, tostring(g.dampening)) end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    fail("%s: nesterov momentum requires a momentum and zero dampening", name)
  end
end

-- SGD(params, {lr, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false})
function optim.SGD(params, opts)
  opts = opts or {}
  local d = {lr = opts.lr, momentum = opts.momentum or 0, dampening = opts.dampening or 0,
             weight_decay = opts.weight_decay or 0, nesterov = opts.nesterov or false, maximize = opts.maximize or false}
  for k in pairs(opts) do
    if d[k] == nil and k ~= "lr" and not accepted[k] then fail("SGD: unknown option '%s'", tostring(k)) end
  end
  return new_optimizer(SGD, "SGD", params, d, check_sgd)
end

-- Parameters with a momentum buffer and fresh ones go in separate calls: a fresh buffer starts as d_p itself.
function SGD:_update(g)
  local ps, gs = with_grads(g)
  if #ps == 0 then return end
  local args = {kind = "sgd", lr = g.lr, weight_decay = g.weight_decay, momentum = g.momentum, dampening = g.dampening,
                nesterov = g.nesterov, maximize = g.maximize}
  if g.momentum == 0 then
    args.params, args.grads = ps, gs
    return K.step(args)
  end
  local old, new = {params = {}, grads = {}, buf1 = {}}, {params = {}, grads = {}, buf1 = {}}
  for i, p in ipairs(ps) do
    local s = self.state[p]
    local set = new
    if s and s.momentum_buffer then set = old else
      s = {momentum_buffer = zeros_state(p)}
      self.state[p] = s
    end
    local n = #set.params + 1
    set.params[n], set.grads[n], set.buf1[n] = p, gs[i], s.momentum_buffer
  end
  for _, set in ipairs({old, new}) do
    if #set.params > 0 then
      args.params, args.grads, args.buf1, args.first = set.params, set.grads, set.buf1, set == new
      K.step(args)
    end
  end
end

-- Adam and AdamW -------------------------------------------------------------------------------------------------

local Adam = setmetatable({}, {__index = Optimizer})
Adam.__index = Adam

local function check_adam(name, g)
  check_common(name, g)
  if type(g.eps) ~= "number" or not (g.eps >= 0) then fail("%s: invalid epsilon value: %s", name, tostring(g.eps)) end
  local b = g.betas
  if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
    fail("%s: betas must be a table of two numbers", name)
  end
  if not (b[1] >= 0 and b[1] < 1) then fail("%s: invalid beta parameter at index 1: %s", name, tostring(b[1])) end
  if not (b[2] >= 0 and b[2] < 1) then fail("%s: invalid beta parameter at index 2: %s", name, tostring(b[2])) end
end

local function new_adam(name, params, opts, decoupled)
  opts = opts or {}
  local d = {lr = opts.lr or 1e-3, betas = opts.betas or {0.9, 0.999}, eps = opts.eps or 1e-8,
             weight_decay = opts.weight_decay or (decoupled and 1e-2 or 0), amsgrad = opts.amsgrad or false,
             maximize = opts.maximize or false}
  for k in pairs(opts) do
    if d[k] == nil and not accepted[k] then fail("%s: unknown option '%s'", name, tostring(k)) end
  end
  local self = new_optimizer(Adam, name, params, d, check_adam)
  self.decoupled = decoupled
  return self
end

-- Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false, maximize = false})
function optim.Adam(params, opts) return new_adam("Adam", params, opts, false) end
-- AdamW: the same with decoupled weight decay (default 1e-2): p *= 1 - lr * weight_decay before the Adam step.
function optim.AdamW(params, opts) return new_adam("AdamW", params, opts, true) end

function Adam:_update(g)
  local ps, gs = with_grads(g)
  if #ps == 0 then return end
  local m, v, x, steps = {}, {}, {}, {}
  for i, p in ipairs(ps) do
    local s = self.state[p]
    if not s then
      s = {step = 0, exp_avg = zeros_state(p), exp_avg_sq = zeros_state(p)}
      self.state[p] = s
    end
    if g.amsgrad and not s.max_exp_avg_sq then s.max_exp_avg_sq = zeros_state(p) end
    s.step = s.step + 1
    m[i], v[i], x[i], steps[i] = s.exp_avg, s.exp_avg_sq, s.max_exp_avg_sq, s.step
  end
  K.step{kind = "adam", params = ps, grads = gs, buf1 = m, buf2 = v, buf3 = g.amsgrad and x or nil, steps = steps,
         lr = g.lr, beta1 = g.betas[1], beta2 = g.betas[2], eps = g.eps, weight_decay = g.weight_decay,
         decoupled = self.decoupled, amsgrad = g.amsgrad, maximize = g.maximize}
end

--------------------------------------------------------------------------------------------------- clip_grad_norm

local function norm_type_of(opts)
  local p = opts and opts.norm_type or 2
  if p == "inf" then p = math.huge end
  if type(p) ~= "number" or not (p > 0) then fail("clip_grad_norm: norm_type must be a positive number or 'inf'") end
  return p
end

-- clip_grad_norm(params, max_norm, {norm_type = 2}): PyTorch's clip_grad_norm_. The total norm of all gradients
-- (one fused reduction per device and dtype), then every gradient *= min(1, max_norm / (total + 1e-6)) on the device;
-- returns the total norm as a 0-dim tensor (no host sync unless the caller reads it). Params without grad are skipped.
-- The gradients of the params that have one, by device and dtype (the multi-tensor kernels' unit): groups[key] a
-- list, order the keys as first seen. A strided gradient becomes a contiguous one (.grad replaced), since the
-- callers (clip_grad_norm, GradScaler) scale them in place.
function optim._grads_by_device_dtype(list)
  local groups, order = {}, {}
  for _, t in ipairs(list) do
    local gr = t.grad
    if gr and not gr:is_contiguous() then
      gr = gr:contiguous()
      t.grad = gr
    end
    if gr then
      local key = gr.device .. "/" .. gr.dtype
      if not groups[key] then groups[key] = {}; order[#order + 1] = key end
      local gl = groups[key]
      gl[#gl + 1] = gr
    end
  end
  return groups, order
end

function optim.clip_grad_norm(params, max_norm, opts)
  local list = tensor_list("clip_grad_norm", params)
  if type(max_norm) ~= "number" then fail("clip_grad_norm: max_norm must be a number, got %s", type(max_norm)) end
  local p = norm_type_of(opts)
  local groups, order = optim._grads_by_device_dtype(list)
  if #order == 0 then return flame.tensor(0.0) end
  local total
  if #order == 1 then
    total = K.norm(groups[order[1]], p)
  else -- several devices or dtypes: the norm of the per-group norms, on the first group's device
    local dev = groups[order[1]][1].device
    local parts = {}
    for i, key in ipairs(order) do parts[i] = K.norm(groups[key], p):to(dev):to("f32"):view(1) end
    local cat = flame.cat(parts)
    total = p == math.huge and cat:abs():max() or cat:abs():pow(p):sum():pow(1 / p)
  end
  for _, key in ipairs(order) do
    local gl = groups[key]
    K.clip(gl, total:to(gl[1].device), max_norm)
  end
  return total
end
optim.clip_grad_norm_ = optim.clip_grad_norm

------------------------------------------------------------------------------------------------------------- EMA

local EMA = {}
EMA.__index = EMA

-- EMA(model_or_params, decay = 0.9999, {warmup = false}): shadow copies of the parameters, updated by
-- shadow -= (1 - d) * (shadow - param) in one multi-tensor call. Without warmup d = decay on every update; with
-- warmup d follows diffusers' EMAModel: 0 on the first update, then min(decay, (1 + t) / (10 + t)), t = updates - 1.
function optim.EMA(model, decay, opts)
  decay = decay == nil and 0.9999 or decay
  if type(decay) ~= "number" or not (decay >= 0 and decay <= 1) then fail("EMA: decay must be in [0, 1], got %s", tostring(decay)) end
  opts = opts or {}
  for k in pairs(opts) do if k ~= "warmup" then fail("EMA: unknown option '%s'", tostring(k)) end end
  local params = tensor_list("EMA", model)
  local self = setmetatable({params = params, decay = decay, warmup = opts.warmup or false, optimization_step = 0,
                             shadow_params = {}}, EMA)
  for i, p in ipairs(params) do self.shadow_params[i] = p:detach():clone() end
  return self
end

function EMA:get_decay()
  if not self.warmup then return self.decay end
  local t = self.optimization_step - 1
  if t <= 0 then return 0.0 end
  return math.min(self.decay, (1 + t) / (10 + t))
end

local function same_count(name, a, b)
  if #a ~= #b then fail("EMA:%s: got %d parameters, the EMA holds %d", name, #a, #b) end
end

-- update(params?): one EMA step towards the current parameters (the ones given at construction by default).
function EMA:update(params)
  params = params and tensor_list("EMA:update", params) or self.params
  same_count("update", params, self.shadow_params)
  self.optimization_step = self.optimization_step + 1
  local d = self:get_decay()
  local src = {}
  for i, p in ipairs(params) do src[i] = p:detach() end
  K.lerp(self.shadow_params, src, 1 - d)
end

local function copy_all(dst, src)
  flame.no_grad(function()
    for i, t in ipairs(dst) do t:copy_(src[i]) end
  end)
end

-- copy_to(params?): the averages into the parameters.
function EMA:copy_to(params)
  params = params and tensor_list("EMA:copy_to", params) or self.params
  same_count("copy_to", params, self.shadow_params)
  copy_all(params, self.shadow_params)
end

-- store(params?) keeps copies of the parameters; restore(params?) puts them back (evaluate with the EMA weights).
function EMA:store(params)
  params = params and tensor_list("EMA:store", params) or self.params
  self.stored = {}
  for i, p in ipairs(params) do self.stored[i] = p:detach():clone() end
end

function EMA:restore(params)
  params = params and tensor_list("EMA:restore", params) or self.params
  if not self.stored then fail("EMA:restore: nothing stored (call store first)") end
  same_count("restore", params, self.stored)
  copy_all(params, self.stored)
  self.stored = nil
end

function EMA:state_dict()
  return {decay = self.decay, warmup = self.warmup, optimization_step = self.optimization_step,
          shadow_params = {table.unpack(self.shadow_params)}}
end

function EMA:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.shadow_params) ~= "table" then fail("EMA:load_state_dict: expected a table with shadow_params") end
  same_count("load_state_dict", sd.shadow_params, self.shadow_params)
  for i, s in ipairs(sd.shadow_params) do
    local mine = self.shadow_params[i]
    if not is_tensor(s) or s:numel() ~= mine:numel() then
      fail("EMA:load_state_dict: shadow parameter %d does not match (%s elements expected)", i, mine:numel())
    end
  end
  copy_all(self.shadow_params, sd.shadow_params)
  self.decay = sd.decay or self.decay
  if sd.warmup ~= nil then self.warmup = sd.warmup end
  self.optimization_step = sd.optimization_step or 0
  return self
end

----------------------------------------------------------------------------------------------------- lr_scheduler

local lrs = {}
optim.lr_scheduler = lrs

local Scheduler = {}
Scheduler.__index = Scheduler

-- PyTorch's LRScheduler: sets initial_lr on every group (base_lrs), then takes step 0.
local function new_scheduler(class, name, opt, fields)
  if getmetatable(opt) == nil or type(opt.param_groups) ~= "table" then fail("%s: expected an optimizer", name) end
  local self = setmetatable(fields or {}, class)
  self.name, self.optimizer, self.last_epoch, self.base_lrs = name, opt, -1, {}
  for i, g in ipairs(opt.param_groups) do
    if g.initial_lr == nil then g.initial_lr = g.lr end
    self.base_lrs[i] = g.initial_lr
  end
  self:step()
  return self
end

function Scheduler:step()
  self.last_epoch = self.last_epoch + 1
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = self:lr_at(i, g.lr)
    self._last_lr[i] = g.lr
  end
end

function Scheduler:get_last_lr() return {table.unpack(self._last_lr)} end

local saved = {"last_epoch", "base_lrs", "_last_lr", "step_size", "gamma", "factor", "total_iters", "start_factor",
               "end_factor", "warmup_steps", "total_steps", "min_lr", "num_cycles"}
function Scheduler:state_dict()
  local sd = {}
  for _, k in ipairs(saved) do
    local v = self[k]
    sd[k] = type(v) == "table" and {table.unpack(v)} or v
  end
  return sd
end

function Scheduler:load_state_dict(sd)
  if type(sd) ~= "table" then fail("%s:load_state_dict: expected a table", self.name) end
  for _, k in ipairs(saved) do
    local v = sd[k]
    if v ~= nil then self[k] = type(v) == "table" and {table.unpack(v)} or v end
  end
  return self
end

local function class(lr_at)
  local c = setmetatable({lr_at = lr_at}, {__index = Scheduler})
  c.__index = c
  return c
end

local function num_opt(name, opts, key, dflt, check)
  local v = opts[key]
  if v == nil then v = dflt end
  if type(v) ~= "number" or (check and not check(v)) then fail("%s: invalid %s: %s", name, key, tostring(v)) end
  return v
end

local function check_opts(name, opts, keys)
  if opts ~= nil and type(opts) ~= "table" then fail("%s: options must be a table", name) end
  for k in pairs(opts or {}) do
    if not keys[k] then fail("%s: unknown option '%s'", name, tostring(k)) end
  end
  return opts or {}
end

-- LambdaLR(opt, fn or {fn per group}): lr = base_lr * fn(epoch).
local Lambda = class(function(self, i, _) return self.base_lrs[i] * self.lambdas[i](self.last_epoch) end)
function lrs.LambdaLR(opt, fn)
  local fns = {}
  for i = 1, #(opt.param_groups or {}) do fns[i] = type(fn) == "table" and fn[i] or fn end
  for i, f in ipairs(fns) do
    if type(f) ~= "function" then fail("LambdaLR: lr_lambda %d is a %s, not a function", i, type(f)) end
  end
  return new_scheduler(Lambda, "LambdaLR", opt, {lambdas = fns})
end

-- StepLR(opt, {step_size, gamma = 0.1}): lr *= gamma every step_size epochs (PyTorch's chainable form).
local Step = class(function(self, _, lr)
  if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then return lr end
  return lr * self.gamma
end)
function lrs.StepLR(opt, opts)
  opts = check_opts("StepLR", opts, {step_size = true, gamma = true})
  local step_size = num_opt("StepLR", opts, "step_size", nil, function(v) return v >= 1 and math.tointeger(v) end)
  return new_scheduler(Step, "StepLR", opt, {step_size = step_size, gamma = num_opt("StepLR", opts, "gamma", 0.1)})
end

-- ConstantLR(opt, {factor = 1/3, total_iters = 5}): base_lr * factor until total_iters, then base_lr.
local ConstantF = class(function(self, _, lr)
  if self.last_epoch == 0 then return lr * self.factor end
  if self.last_epoch ~= self.total_iters then return lr end
  return lr * (1.0 / self.factor)
end)
function lrs.ConstantLR(opt, opts)
  opts = check_opts("ConstantLR", opts, {factor = true, total_iters = true})
  local f = num_opt("ConstantLR", opts, "factor", 1 / 3, function(v) return v >= 0 and v <= 1 end)
  return new_scheduler(ConstantF, "ConstantLR", opt, {factor = f, total_iters = num_opt("ConstantLR", opts, "total_iters", 5)})
end

-- LinearLR(opt, {start_factor = 1/3, end_factor = 1, total_iters = 5}): the factor moves linearly (PyTorch's form).
local Linear = class(function(self, _, lr)
  local s, e, n, t = self.start_factor, self.end_factor, self.total_iters, self.last_epoch
  if t == 0 then return lr * s end
  if t > n then return lr end
  return lr * (1.0 + (e - s) / (n * s + (t - 1) * (e - s)))
end)
function lrs.LinearLR(opt, opts)
  opts = check_opts("LinearLR", opts, {start_factor = true, end_factor = true, total_iters = true})
  local s = num_opt("LinearLR", opts, "start_factor", 1 / 3, function(v) return v > 0 and v <= 1 end)
  local e = num_opt("LinearLR", opts, "end_factor", 1.0, function(v) return v >= 0 and v <= 1 end)
  return new_scheduler(Linear, "LinearLR", opt,
    {start_factor = s, end_factor = e, total_iters = num_opt("LinearLR", opts, "total_iters", 5)})
end

-- The diffusers schedules (diffusers.optimization), LambdaLR-style: lr = base_lr * factor(step).
local function warmup_factor(self)
  return self.last_epoch / math.max(1, self.warmup_steps)
end
local function check_warmup(name, opts, need_total)
  local w = num_opt(name, opts, "warmup_steps", 0, function(v) return v >= 0 end)
  local t = need_total and num_opt(name, opts, "total_steps", nil, function(v) return v >= 0 end) or nil
  return w, t
end

-- constant(opt): the lr as it is (diffusers' get_constant_schedule).
local Const = class(function(self, i) return self.base_lrs[i] end)
function lrs.constant(opt) return new_scheduler(Const, "constant", opt) end

-- constant_with_warmup(opt, {warmup_steps}): linear from 0 over warmup_steps, then constant.
local ConstW = class(function(self, i)
  if self.last_epoch < self.warmup_steps then return self.base_lrs[i] * warmup_factor(self) end
  return self.base_lrs[i]
end)
function lrs.constant_with_warmup(opt, opts)
  opts = check_opts("constant_with_warmup", opts, {warmup_steps = true})
  return new_scheduler(ConstW, "constant_with_warmup", opt, {warmup_steps = check_warmup("constant_with_warmup", opts)})
end

-- linear_with_warmup(opt, {warmup_steps, total_steps}): up linearly, then down linearly to 0 at total_steps.
local LinW = class(function(self, i)
  local t = self.last_epoch
  if t < self.warmup_steps then return self.base_lrs[i] * warmup_factor(self) end
  return self.base_lrs[i] * math.max(0.0, (self.total_steps - t) / math.max(1, self.total_steps - self.warmup_steps))
end)
function lrs.linear_with_warmup(opt, opts)
  opts = check_opts("linear_with_warmup", opts, {warmup_steps = true, total_steps = true})
  local w, t = check_warmup("linear_with_warmup", opts, true)
  return new_scheduler(LinW, "linear_with_warmup", opt, {warmup_steps = w, total_steps = t})
end

-- cosine_with_warmup(opt, {warmup_steps, total_steps, num_cycles = 0.5, min_lr = 0}): diffusers'
-- get_cosine_schedule_with_warmup; with min_lr the cosine part runs from base_lr down to min_lr instead of 0.
local CosW = class(function(self, i)
  local t, base = self.last_epoch, self.base_lrs[i]
  if t < self.warmup_steps then return base * warmup_factor(self) end
  local progress = (t - self.warmup_steps) / math.max(1, self.total_steps - self.warmup_steps)
  local f = math.max(0.0, 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * progress)))
  if self.min_lr == 0 then return base * f end
  return self.min_lr + (base - self.min_lr) * f
end)
function lrs.cosine_with_warmup(opt, opts)
  opts = check_opts("cosine_with_warmup", opts, {warmup_steps = true, total_steps = true, num_cycles = true, min_lr = true})
  local w, t = check_warmup("cosine_with_warmup", opts, true)
  return new_scheduler(CosW, "cosine_with_warmup", opt, {warmup_steps = w, total_steps = t,
    num_cycles = num_opt("cosine_with_warmup", opts, "num_cycles", 0.5),
    min_lr = num_opt("cosine_with_warmup", opts, "min_lr", 0, function(v) return v >= 0 end)})
end

return optim
