-- flame.schedules: noise schedules (betas) and the DDPM / DDIM samplers with diffusers' (0.31) names, options and
-- numbers. The Euler and flow-matching samplers are in schedules_sigma.lua, which uses the helpers exported here
-- as flame.schedules._base.
--
-- Where the numbers come from: diffusers computes its tables in torch.float32, so the tables here are f64 host
-- numbers rounded to f32 after every operation diffusers does in f32 (`f32` below); its per-step coefficients are
-- f32 0-dim tensors, and so they are here (the same rounding, on the host). Only tensor arithmetic touches the
-- sample, in the sample's dtype on its device: a sampling step sends Lua numbers to the kernels and reads nothing
-- back. Per-sample timesteps (a tensor, during training) gather their coefficients from tables moved to the
-- sample's device and dtype once (cached per device and dtype).
--
-- Timesteps are diffusers' values (0 .. num_train_timesteps - 1), never Lua indices; `s.timesteps` is a Lua array.
--   local s = flame.schedules.DDIMScheduler({prediction_type = "v_prediction", timestep_spacing = "trailing"})
--   local t = flame.randint(0, s.num_train_timesteps, {B}, {device = dev})      -- training
--   local loss = F.mse_loss(model(s:add_noise(x0, noise, t), t), s:get_velocity(x0, noise, t))
--   s:set_timesteps(50)                                                         -- sampling
--   local x = flame.randn(shape, {device = dev}) * s.init_noise_sigma
--   for _, t in ipairs(s.timesteps) do
--     x = s:step(model(s:scale_model_input(x, t), flame.full({B}, t, {device = dev})), t, x)
--   end
local flame = ...
local S = {}
flame.schedules = S
local is_tensor = flame.is_tensor
local options = flame._options

------------------------------------------------------------------------------------------ numbers as numpy/torch

-- x rounded to the nearest f32 (one IEEE rounding; for one + - * / or sqrt of f32 operands, rounding the f64 result
-- gives the f32 operation's result exactly).
local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end
local function sqrt32(x) return f32(math.sqrt(x)) end

-- np.round: halves to even.
local function round_half_even(x)
  local r = math.floor(x + 0.5)
  if r - x == 0.5 and r % 2 ~= 0 then r = r - 1 end
  return r
end

-- np.linspace(a, b, n): i * step + a, the last exactly b.
-- A count of points for the host-side tables: an integer up to 2^24, so a bad n (set_timesteps(1e9), 0.5) is an
-- error instead of a table that exhausts the host's memory.
local function point_count(n, level)
  local k = math.tointeger(n)
  if not k or k < 0 or k > 1 << 24 then
    error(string.format("schedules: %s points: expected a whole number from 0 to 2^24", tostring(n)), level + 1)
  end
  return k
end

local function np_linspace(a, b, n)
  n = point_count(n, 2)
  local out, step = {}, (b - a) / (n - 1)
  for i = 0, n - 1 do out[i + 1] = n > 1 and i * step + a or a end
  if n > 1 then out[n] = b end
  return out
end

-- fma(a, b, c) of f32 operands rounded once to f32: a * b is exact in f64 (a is a small integer here), the sum
-- is exact as s + err (TwoSum), and a tie of s between two f32 values is broken by err's sign.
local function fma32(a, b, c)
  local p = a * b
  local s = p + c
  local bb = s - p
  local err = (p - (s - bb)) + (c - bb)
  local r = f32(s)
  if err ~= 0 and s ~= r then
    local o = 2 * s - r -- r's other neighbour when s lies exactly midway
    if f32(o) == o and (err > 0) == (o > r) then r = o end
  end
  return r
end

-- torch.linspace(a, b, n, dtype=float32) bit for bit as ATen 1.13's CPU kernel with AVX2 (the default dispatch):
-- blocks of 2 x 8 lanes start from start + step * i (below n / 2) or end - step * (n - i - 1) (above), both an
-- FMA, and add lane * step (two roundings); the tail after the last whole block takes the scalar rule per element.
local function torch_linspace32(a, b, n)
  n = point_count(n, 2)
  local start, stop = f32(a), f32(b)
  if n == 1 then return {start} end
  local step, half, out = f32(f32(stop - start) / (n - 1)), n // 2, {}
  local function scalar(i) return i < half and fma32(i, step, start) or fma32(-(n - i - 1), step, stop) end
  local i, V = 0, 8
  while i <= n - 2 * V do
    for _, base in ipairs({i, i + V}) do
      local b0 = scalar(base)
      for j = 0, V - 1 do out[base + j + 1] = f32(b0 + f32(j * step)) end
    end
    i = i + 2 * V
  end
  for k = i, n - 1 do out[k + 1] = scalar(k) end
  return out
end

-- torch.cumprod of f32 values on the CPU: accumulated in f64, each output rounded to f32.
local function cumprod32(xs)
  local out, acc = {}, 1.0
  for i, x in ipairs(xs) do acc = acc * x; out[i] = f32(acc) end
  return out
end

------------------------------------------------------------------------------------------ betas

local function alpha_bar_betas(n, max_beta, kind)
  local bar = kind == "exp" and function(t) return math.exp(t * -12.0) end
    or function(t) return math.cos((t + 0.008) / 1.008 * math.pi / 2) ^ 2 end
  local out = {}
  for i = 0, n - 1 do out[i + 1] = f32(math.min(1 - bar((i + 1) / n) / bar(i / n), max_beta)) end
  return out
end

local beta_makers = {
  linear = function(o) return torch_linspace32(o.beta_start, o.beta_end, o.num_train_timesteps) end,
  scaled_linear = function(o)
    local b = torch_linspace32(o.beta_start ^ 0.5, o.beta_end ^ 0.5, o.num_train_timesteps)
    for i, x in ipairs(b) do b[i] = f32(x * x) end
    return b
  end,
  squaredcos_cap_v2 = function(o) return alpha_bar_betas(o.num_train_timesteps, o.max_beta or 0.999, "cosine") end,
  -- "cosine" is the same alpha-bar cosine schedule (Nichol & Dhariwal), diffusers' squaredcos_cap_v2.
  cosine = function(o) return alpha_bar_betas(o.num_train_timesteps, o.max_beta or 0.999, "cosine") end,
  exp = function(o) return alpha_bar_betas(o.num_train_timesteps, o.max_beta or 0.999, "exp") end,
  -- DDPMScheduler's sigmoid: sigmoid(linspace(-6, 6)) * (end - start) + start, in f32.
  sigmoid = function(o)
    local b = torch_linspace32(-6, 6, o.num_train_timesteps)
    local span, start = f32(o.beta_end - o.beta_start), f32(o.beta_start)
    for i, x in ipairs(b) do b[i] = f32(f32(f32(1 / (1 + math.exp(-x))) * span) + start) end
    return b
  end,
}
local beta_names = {}
for k in pairs(beta_makers) do beta_names[#beta_names + 1] = k end
table.sort(beta_names)

-- diffusers' rescale_zero_terminal_snr (Lin et al. 2023, algorithm 1), in f32 as diffusers does it.
local function rescale_zero_snr(betas)
  local alphas = {}
  for i, b in ipairs(betas) do alphas[i] = f32(1 - b) end
  local sq = cumprod32(alphas)
  for i, a in ipairs(sq) do sq[i] = sqrt32(a) end
  local s0, sT = sq[1], sq[#sq]
  local scale = f32(s0 / f32(s0 - sT))
  local bar = {}
  for i, s in ipairs(sq) do
    local v = f32(f32(s - sT) * scale)
    bar[i] = f32(v * v)
  end
  local out = {f32(1 - bar[1])}
  for i = 2, #bar do out[i] = f32(1 - f32(bar[i] / bar[i - 1])) end
  return out
end

-- The betas as a Lua array (f32 values), from a beta_schedule name or trained_betas.
local function beta_list(who, name, o, level)
  local betas
  if o.trained_betas ~= nil then
    local tb = o.trained_betas
    if is_tensor(tb) then tb = tb:double():cpu():reshape(-1):totable() end
    if type(tb) ~= "table" then error(who .. ": trained_betas must be a list of numbers or a tensor", level) end
    betas = {}
    for i, b in ipairs(tb) do betas[i] = f32(b) end
  else
    local make = beta_makers[name]
    if not make then
      error(string.format("%s: unknown beta_schedule '%s' (known: %s)", who, tostring(name),
        table.concat(beta_names, ", ")), level)
    end
    local n = o.num_train_timesteps
    if math.type(n) ~= "integer" or n < 1 or n > 1 << 24 then
      error(string.format("%s: num_train_timesteps must be a positive integer up to 2^24, got %s", who, tostring(n)), level)
    end
    betas = make(o)
  end
  if o.rescale_betas_zero_snr then betas = rescale_zero_snr(betas) end
  return betas
end

local function f64_tensor(list) return flame.tensor(list, {dtype = "f64"}) end

local betas_keys = {num_train_timesteps = true, beta_start = true, beta_end = true, rescale_betas_zero_snr = true,
  max_beta = true, dtype = true}

-- flame.schedules.betas(name, {num_train_timesteps = 1000, beta_start = 1e-4, beta_end = 0.02,
--   rescale_betas_zero_snr = false, max_beta = 0.999, dtype = "f64"}): a CPU tensor of diffusers' betas.
function S.betas(name, opts)
  local o = options("betas", opts, betas_keys, 2)
  o = {num_train_timesteps = o.num_train_timesteps or 1000, beta_start = o.beta_start or 1e-4,
    beta_end = o.beta_end or 0.02, rescale_betas_zero_snr = o.rescale_betas_zero_snr, max_beta = o.max_beta,
    dtype = o.dtype}
  return flame.tensor(beta_list("betas", name, o, 3), {dtype = o.dtype or "f64"})
end

------------------------------------------------------------------------------------------ shared scheduler parts

local Base = {}
Base.__index = Base

local function fail(self, method, level, fmt, ...)
  error(string.format("%s:%s: " .. fmt, self.name, method, ...), level + 1)
end

-- Options with defaults: an unknown key is an error listing the known ones.
local function configure(name, opts, defaults)
  local keys = {}
  for k in pairs(defaults) do keys[k] = true end
  local o = options(name, opts, keys, 3)
  local cfg = {}
  for k, v in pairs(defaults) do cfg[k] = v end
  for k, v in pairs(o) do cfg[k] = v end
  return cfg
end

local function check_choice(who, what, v, choices, level)
  for _, c in ipairs(choices) do if v == c then return v end end
  error(string.format("%s: unknown %s '%s' (known: %s)", who, what, tostring(v), table.concat(choices, ", ")), level or 3)
end

-- The train-time tables: betas, alphas, alphas_cumprod as f32-valued Lua arrays (index t + 1) and f64 CPU tensors.
local function init_tables(s, cfg)
  check_choice(s.name, "prediction_type", cfg.prediction_type, {"epsilon", "v_prediction", "sample"}, 4)
  check_choice(s.name, "timestep_spacing", cfg.timestep_spacing, {"linspace", "leading", "trailing"}, 4)
  local betas = beta_list(s.name, cfg.beta_schedule, cfg, 4)
  local alphas = {}
  for i, b in ipairs(betas) do alphas[i] = f32(1 - b) end
  s._betas, s._alphas, s._acp = betas, alphas, cumprod32(alphas)
  s.num_train_timesteps = #betas
  s.betas, s.alphas, s.alphas_cumprod = f64_tensor(betas), f64_tensor(alphas), f64_tensor(s._acp)
  s._cache = {}
end

-- A table of per-train-timestep numbers (computed by `make(dtype_route)`) as a tensor on x's device and dtype,
-- made once per (name, device, dtype).
function Base:_table(name, x, make)
  local key = name .. "/" .. tostring(x.device) .. "/" .. x.dtype
  local t = self._cache[key]
  if not t then
    t = f64_tensor(make(x.dtype == "f64")):to({dtype = x.dtype, device = x.device})
    self._cache[key] = t
  end
  return t
end

-- An integer train timestep from a Lua number (or a one-element tensor, read back: one sync).
function Base:_int_t(method, t, level)
  if is_tensor(t) then
    if t:numel() ~= 1 then fail(self, method, level + 1, "timestep must be a number or a one-element tensor, got shape %s", tostring(t.shape)) end
    t = t:item()
  end
  local i = math.type(t) and math.tointeger(t)
  if not i then fail(self, method, level + 1, "timestep must be an integer, got %s", tostring(t)) end
  if i < 0 or i >= self.num_train_timesteps then
    fail(self, method, level + 1, "timestep %d out of range [0, %d]", i, self.num_train_timesteps - 1)
  end
  return i
end

-- The number B of per-sample timesteps t (a tensor of shape [B], [1] or []) and the shape [B, 1, ...] that
-- broadcasts their coefficients over the sample batch x.
function Base:_batch_shape(method, x, t, level)
  local b = t:numel()
  if t:dim() > 1 or (b ~= 1 and (x:dim() == 0 or b ~= x.shape[1])) then
    fail(self, method, level + 1, "timesteps of shape %s do not match a sample batch of shape %s", tostring(t.shape), tostring(x.shape))
  end
  local shape = {b}
  for d = 2, x:dim() do shape[d] = 1 end
  return b, shape
end

-- The gather index (t + 1, i64 on x's device) and the broadcast shape of integer per-sample timesteps t.
function Base:_sample_index(method, x, t, level)
  if t.dtype ~= "i64" and t.dtype ~= "i32" then
    fail(self, method, level + 1, "per-sample timesteps must be an i64 or i32 tensor, got %s", t.dtype)
  end
  local b, shape = self:_batch_shape(method, x, t, level + 1)
  if t.device == "cpu" and b > 0 then -- free to check here; on a GPU index_select reports it at the next sync
    local lo, hi = t:min():item(), t:max():item()
    if lo < 0 or hi >= self.num_train_timesteps then
      fail(self, method, level + 1, "timestep %d out of range [0, %d]", lo < 0 and lo or hi, self.num_train_timesteps - 1)
    end
  end
  return t:to({device = x.device, dtype = "i64"}):reshape(b) + 1, shape
end

-- sqrt(alphas_cumprod[t]) and sqrt(1 - alphas_cumprod[t]) for x: numbers for a number t, else gathered per
-- sample and shaped to broadcast. In x's precision: f64 for f64 samples, else diffusers' f32 arithmetic.
function Base:_noise_coefs(method, x, t, level)
  local acp = self._acp
  local function a_coef(f64) local o = {} for i, a in ipairs(acp) do o[i] = f64 and math.sqrt(a) or sqrt32(a) end return o end
  local function b_coef(f64)
    local o = {}
    for i, a in ipairs(acp) do o[i] = f64 and math.sqrt(1 - a) or sqrt32(f32(1 - a)) end
    return o
  end
  if is_tensor(t) then
    local idx, shape = self:_sample_index(method, x, t, level + 1)
    return self:_table("sqrt_acp", x, a_coef):index_select(1, idx):reshape(shape),
      self:_table("sqrt_1m_acp", x, b_coef):index_select(1, idx):reshape(shape)
  end
  local a = acp[self:_int_t(method, t, level + 1) + 1]
  if x.dtype == "f64" then return math.sqrt(a), math.sqrt(1 - a) end
  return sqrt32(a), sqrt32(f32(1 - a))
end

local function need_tensor(self, method, what, x, level)
  if not is_tensor(x) then fail(self, method, level + 1, "%s must be a tensor, got %s", what, type(x)) end
end

-- add_noise(x0, noise, t): sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise; t a number or a [B] integer tensor.
function Base:add_noise(x0, noise, t)
  need_tensor(self, "add_noise", "original_samples", x0, 2)
  need_tensor(self, "add_noise", "noise", noise, 2)
  local ca, cb = self:_noise_coefs("add_noise", x0, t, 2)
  return x0 * ca + noise * cb
end

-- get_velocity(x0, noise, t): the v-prediction target sqrt(acp[t]) noise - sqrt(1 - acp[t]) x0.
function Base:get_velocity(x0, noise, t)
  need_tensor(self, "get_velocity", "sample", x0, 2)
  need_tensor(self, "get_velocity", "noise", noise, 2)
  local ca, cb = self:_noise_coefs("get_velocity", x0, t, 2)
  return noise * ca - x0 * cb
end

-- DDPM and DDIM take the model input as it is.
function Base:scale_model_input(sample, t)
  need_tensor(self, "scale_model_input", "sample", sample, 2)
  return sample
end

-- diffusers' timestep spacings over [0, N): integers as Lua numbers, largest first (before any dtype cast).
function Base:_spaced(method, n, level)
  local N, sp = self.num_train_timesteps, self.config.timestep_spacing
  local out = {}
  if sp == "linspace" then
    local l = np_linspace(0, N - 1, n)
    for i = 1, n do out[i] = round_half_even(l[n + 1 - i]) end
  elseif sp == "leading" then
    local ratio = N // n
    for i = 1, n do out[i] = (n - i) * ratio + self.config.steps_offset end
  elseif sp == "trailing" then
    -- np.arange(N, 0, -N/n) fills start + i * ((start + step) - start). For some n (61 of 1000) numpy's length
    -- rounding gives n + 1 entries ending in -1 in diffusers 0.31; here always the n that are meant.
    local step = -(N / n)
    local delta = (N + step) - N
    for i = 0, n - 1 do out[i + 1] = round_half_even(i == 1 and N + step or N + i * delta) - 1 end
  else
    fail(self, method, level + 1, "unknown timestep_spacing '%s' (known: linspace, leading, trailing)", tostring(sp))
  end
  return out
end

function Base:_check_steps(method, n, level)
  if math.type(n) ~= "integer" or n < 1 then
    fail(self, method, level + 1, "num_inference_steps must be a positive integer, got %s", tostring(n))
  end
  if n > self.num_train_timesteps then
    fail(self, method, level + 1, "num_inference_steps %d cannot be larger than num_train_timesteps %d", n, self.num_train_timesteps)
  end
end

function Base:_prediction(method, level)
  local p = self.config.prediction_type
  if p ~= "epsilon" and p ~= "v_prediction" and p ~= "sample" then
    fail(self, method, level + 1, "unknown prediction_type '%s' (known: epsilon, v_prediction, sample)", tostring(p))
  end
  return p
end

-- The step's tensors: model_output and sample tensors of one shape; opts a table (or nil) of the given keys.
function Base:_step_args(model_output, sample, opts, keys)
  need_tensor(self, "step", "model_output", model_output, 3)
  need_tensor(self, "step", "sample", sample, 3)
  if model_output.shape ~= sample.shape then
    fail(self, "step", 3, "model_output of shape %s and sample of shape %s differ", tostring(model_output.shape), tostring(sample.shape))
  end
  local o = options(self.name .. ":step", opts, keys, 3)
  if o.variance_noise ~= nil then
    need_tensor(self, "step", "variance_noise", o.variance_noise, 3)
    if o.variance_noise.shape ~= sample.shape then
      fail(self, "step", 3, "variance_noise of shape %s does not match the sample's %s", tostring(o.variance_noise.shape), tostring(sample.shape))
    end
  end
  return o
end

-- The noise of a stochastic step: the given one, else flame's seeded generator (flame.manual_seed).
local function step_noise(o, like)
  return o.variance_noise or flame.randn(like.shape, {dtype = like.dtype, device = like.device})
end

-- diffusers' _threshold_sample (Imagen's dynamic thresholding): per sample, s = the dynamic_thresholding_ratio
-- quantile of |x0| (torch.quantile's linear interpolation, in x0's dtype; f32 for the half types) clamped to
-- [1, sample_max_value]; x0 is clamped to [-s, s] and divided by s. One sort per step, no host read.
local function threshold(self, x0)
  local c, dtype = self.config, x0.dtype
  local x = (dtype == "f32" or dtype == "f64") and x0 or x0:float()
  local b = x.shape[1]
  local flat = x:reshape(b, -1)
  local n = flat.shape[2]
  local sorted = flat:abs():sort(2)
  local rank = x.dtype == "f64" and c.dynamic_thresholding_ratio * (n - 1) or f32(f32(c.dynamic_thresholding_ratio) * (n - 1))
  local lo, hi = math.floor(rank), math.ceil(rank)
  local w = rank - lo
  local vlo, vhi = sorted:narrow(2, lo + 1, 1), sorted:narrow(2, hi + 1, 1)
  local s = w < 0.5 and vlo + (vhi - vlo) * w or vhi - (vhi - vlo) * (1 - w) -- torch.lerp's two branches
  s = s:clamp(1, c.sample_max_value)
  return (flat:maximum(-s):minimum(s) / s):reshape(x0.shape):to(dtype)
end

local function clip(self, x0)
  if self.config.thresholding then return threshold(self, x0) end
  if not self.config.clip_sample then return x0 end
  local r = self.config.clip_sample_range
  return x0:clamp(-r, r)
end

-- The prediction of x0 (and of the noise) from the model output at alpha_prod_t = a (f32), as diffusers computes.
local function predict(self, p, model_output, sample, a)
  local b = f32(1 - a)
  local sa, sb = sqrt32(a), sqrt32(b)
  if p == "epsilon" then
    return (sample - model_output * sb) / sa, model_output, sa, sb
  elseif p == "sample" then
    return model_output, (sample - model_output * sa) / sb, sa, sb
  end
  return sample * sa - model_output * sb, model_output * sa + sample * sb, sa, sb
end

function Base:__tostring()
  return string.format("%s(num_train_timesteps=%d, %d inference steps)", self.name, self.num_train_timesteps,
    self.num_inference_steps or self.num_train_timesteps)
end

local function new_class(name)
  local cls = setmetatable({}, {__index = Base})
  cls.__index = cls
  cls.__tostring = Base.__tostring
  cls.__name = name
  return cls
end

------------------------------------------------------------------------------------------ DDPM

local DDPM = new_class("DDPMScheduler")
local ddpm_defaults = {num_train_timesteps = 1000, beta_start = 0.0001, beta_end = 0.02, beta_schedule = "linear",
  trained_betas = false, variance_type = "fixed_small", clip_sample = true, prediction_type = "epsilon",
  thresholding = false, dynamic_thresholding_ratio = 0.995, clip_sample_range = 1.0, sample_max_value = 1.0,
  timestep_spacing = "leading", steps_offset = 0, rescale_betas_zero_snr = false}
local ddpm_variances = {"fixed_small", "fixed_small_log", "fixed_large"}

-- DDPMScheduler(opts): diffusers' DDPMScheduler. Before set_timesteps it steps through every train timestep.
function S.DDPMScheduler(opts)
  local cfg = configure("DDPMScheduler", opts, ddpm_defaults)
  if cfg.trained_betas == false then cfg.trained_betas = nil end
  local s = setmetatable({name = "DDPMScheduler", config = cfg}, DDPM)
  check_choice("DDPMScheduler", "variance_type", cfg.variance_type, ddpm_variances)
  init_tables(s, cfg)
  s.init_noise_sigma = 1.0
  s.timesteps = {}
  for i = 1, s.num_train_timesteps do s.timesteps[i] = s.num_train_timesteps - i end
  return s
end

-- set_timesteps(n) or set_timesteps(nil, {timesteps = {...}}) (custom, descending).
function DDPM:set_timesteps(n, opts)
  local o = options("DDPMScheduler:set_timesteps", opts, {timesteps = true}, 2)
  if o.timesteps ~= nil then
    if n ~= nil then fail(self, "set_timesteps", 2, "pass either num_inference_steps or timesteps, not both") end
    local ts = {}
    for i, t in ipairs(o.timesteps) do
      ts[i] = self:_int_t("set_timesteps", t, 2)
      if i > 1 and ts[i] >= ts[i - 1] then fail(self, "set_timesteps", 2, "custom timesteps must be in descending order") end
    end
    if #ts == 0 then fail(self, "set_timesteps", 2, "custom timesteps are empty") end
    self.timesteps, self.custom_timesteps, self.num_inference_steps = ts, true, nil
    self._prev = {}
    for i, t in ipairs(ts) do self._prev[t] = ts[i + 1] or -1 end
    return self
  end
  self:_check_steps("set_timesteps", n, 2)
  self.num_inference_steps, self.custom_timesteps, self._prev = n, false, nil
  self.timesteps = self:_spaced("set_timesteps", n, 2)
  return self
end

function DDPM:previous_timestep(t)
  if self.custom_timesteps then
    local p = self._prev[t]
    if not p then fail(self, "step", 3, "timestep %d is not one of the custom timesteps", t) end
    return p
  end
  return t - self.num_train_timesteps // (self.num_inference_steps or self.num_train_timesteps)
end

-- The variance's standard deviation at t (f32 arithmetic as diffusers' _get_variance, then ** 0.5).
function DDPM:_std(t, a, a_prev)
  local cur_beta = f32(1 - f32(a / a_prev))
  local vt = self.config.variance_type
  if vt == "fixed_large" then return sqrt32(cur_beta) end
  local var = math.max(f32(f32(f32(1 - a_prev) / f32(1 - a)) * cur_beta), f32(1e-20))
  if vt == "fixed_small_log" then return f32(math.exp(f32(0.5 * f32(math.log(var))))) end
  return sqrt32(var)
end

local ddpm_step_keys = {variance_noise = true}

-- step(model_output, t, sample, {variance_noise}) -> prev_sample, pred_original_sample. For t > 0 a noise term
-- is added: variance_noise if given, else a draw from flame's seeded generator.
function DDPM:step(model_output, t, sample, opts)
  local o = self:_step_args(model_output, sample, opts, ddpm_step_keys)
  t = self:_int_t("step", t, 2)
  local p = self:_prediction("step", 2)
  local prev_t = self:previous_timestep(t)
  local acp = self._acp
  local a, a_prev = acp[t + 1], prev_t >= 0 and acp[prev_t + 1] or 1.0
  local b, b_prev = f32(1 - a), f32(1 - a_prev)
  local cur_alpha = f32(a / a_prev)
  local cur_beta = f32(1 - cur_alpha)
  local x0 = clip(self, (predict(self, p, model_output, sample, a)))
  local c0 = f32(f32(sqrt32(a_prev) * cur_beta) / b)
  local ct = f32(f32(sqrt32(cur_alpha) * b_prev) / b)
  local prev = x0 * c0 + sample * ct
  if t > 0 then prev = prev + step_noise(o, model_output) * self:_std(t, a, a_prev) end
  return prev, x0
end

------------------------------------------------------------------------------------------ DDIM

local DDIM = new_class("DDIMScheduler")
local ddim_defaults = {num_train_timesteps = 1000, beta_start = 0.0001, beta_end = 0.02, beta_schedule = "linear",
  trained_betas = false, clip_sample = true, set_alpha_to_one = true, steps_offset = 0, prediction_type = "epsilon",
  thresholding = false, dynamic_thresholding_ratio = 0.995, clip_sample_range = 1.0, sample_max_value = 1.0,
  timestep_spacing = "leading", rescale_betas_zero_snr = false}

-- DDIMScheduler(opts): diffusers' DDIMScheduler; step needs set_timesteps first.
function S.DDIMScheduler(opts)
  local cfg = configure("DDIMScheduler", opts, ddim_defaults)
  if cfg.trained_betas == false then cfg.trained_betas = nil end
  local s = setmetatable({name = "DDIMScheduler", config = cfg}, DDIM)
  init_tables(s, cfg)
  s.final_alpha_cumprod = cfg.set_alpha_to_one and 1.0 or s._acp[1]
  s.init_noise_sigma = 1.0
  s.timesteps = {}
  for i = 1, s.num_train_timesteps do s.timesteps[i] = s.num_train_timesteps - i end
  return s
end

function DDIM:set_timesteps(n, opts)
  options("DDIMScheduler:set_timesteps", opts, {}, 2)
  self:_check_steps("set_timesteps", n, 2)
  self.num_inference_steps = n
  self.timesteps = self:_spaced("set_timesteps", n, 2)
  return self
end

local ddim_step_keys = {eta = true, use_clipped_model_output = true, variance_noise = true}

-- step(model_output, t, sample, {eta = 0, use_clipped_model_output, variance_noise}) -> prev_sample,
-- pred_original_sample. With eta > 0 the noise is variance_noise if given, else from flame's seeded generator.
function DDIM:step(model_output, t, sample, opts)
  local o = self:_step_args(model_output, sample, opts, ddim_step_keys)
  if not self.num_inference_steps then
    fail(self, "step", 2, "the number of inference steps is not set: call set_timesteps first")
  end
  t = self:_int_t("step", t, 2)
  local p = self:_prediction("step", 2)
  local eta = o.eta or 0.0
  if type(eta) ~= "number" or eta < 0 then fail(self, "step", 2, "eta must be a number >= 0, got %s", tostring(eta)) end
  local prev_t = t - self.num_train_timesteps // self.num_inference_steps
  local a = self._acp[t + 1]
  local a_prev = prev_t >= 0 and self._acp[prev_t + 1] or self.final_alpha_cumprod
  local x0, eps, sa, sb = predict(self, p, model_output, sample, a)
  x0 = clip(self, x0)
  local b, b_prev = f32(1 - a), f32(1 - a_prev)
  local variance = f32(f32(b_prev / b) * f32(1 - f32(a / a_prev)))
  local std = f32(f32(eta) * sqrt32(variance))
  if o.use_clipped_model_output then eps = (sample - x0 * sa) / sb end
  local dir = sqrt32(f32(f32(1 - a_prev) - f32(std * std)))
  local prev = x0 * sqrt32(a_prev) + eps * dir
  if eta > 0 then prev = prev + step_noise(o, model_output) * std end
  return prev, x0
end

-- Shared with schedules_sigma.lua.
S._base = {Base = Base, new_class = new_class, configure = configure, check_choice = check_choice,
  init_tables = init_tables, fail = fail, f32 = f32, sqrt32 = sqrt32, round_half_even = round_half_even,
  np_linspace = np_linspace, torch_linspace32 = torch_linspace32, need_tensor = need_tensor, step_noise = step_noise, f64_tensor = f64_tensor}
