-- flame.schedules, part 2: the samplers that walk a list of sigmas, EulerDiscreteScheduler and
-- FlowMatchEulerDiscreteScheduler, with diffusers' (0.31) options and numbers. As in diffusers they keep a step
-- index: the first step (or scale_model_input) finds the timestep in s.timesteps, later steps advance by one.
-- Timesteps are floats (diffusers' float32 values); pass back the values of s.timesteps.
local flame = ...
local S = flame.schedules
local B = S._base
local Base, f32, sqrt32, fail, need_tensor = B.Base, B.f32, B.sqrt32, B.fail, B.need_tensor
local options = flame._options
local is_tensor = flame.is_tensor

------------------------------------------------------------------------------------------ shared by both

local Sigma = setmetatable({}, {__index = Base})
Sigma.__index = Sigma

local function sigma_class(name)
  local cls = setmetatable({}, {__index = Sigma})
  cls.__index = cls
  cls.__tostring = Base.__tostring
  cls.__name = name
  return cls
end

-- diffusers' index_for_timestep: the position of t in s.timesteps (1-based here); the second of several matches,
-- so that a schedule that repeats its first timestep does not skip a sigma.
function Sigma:_index(method, t, level)
  if is_tensor(t) then
    if t:numel() ~= 1 then fail(self, method, level + 1, "timestep must be a number or a one-element tensor") end
    t = t:item()
  end
  if type(t) ~= "number" then fail(self, method, level + 1, "timestep must be a number, got %s", type(t)) end
  local t32, first = f32(t), nil
  for i, v in ipairs(self.timesteps) do
    if v == t32 then
      if first then return i end
      first = i
    end
  end
  if not first then
    fail(self, method, level + 1, "timestep %s is not in the schedule (pass a value of s.timesteps)", tostring(t))
  end
  return first
end

-- The schedule's timesteps (a [1, n] f32 row) and sigmas (x's dtype) on x's device, made once per schedule.
function Sigma:_schedule_tensors(x)
  local key = tostring(x.device) .. "/" .. x.dtype
  local c = self._scache[key]
  if not c then
    c = {flame.tensor(self.timesteps, {dtype = "f32", device = x.device}):reshape(1, #self.timesteps),
      B.f64_tensor(self._sigmas):to({dtype = x.dtype, device = x.device})}
    self._scache[key] = c
  end
  return c[1], c[2]
end

-- The sigma of each per-sample timestep (a tensor [B]), found on the device: [B, 1, ...] for x. A timestep that
-- is not in the schedule is an error on the CPU and gives NaN elsewhere (no sync to check it there).
function Sigma:_sigma_tensor(method, x, t, level)
  local b, shape = self:_batch_shape(method, x, t, level + 1)
  local row, sigmas = self:_schedule_tensors(x)
  local hit = t:to({device = x.device, dtype = "f32"}):reshape(b, 1):eq(row):float() -- [B, n]
  local count = hit:sum(2, true)
  if x.device == "cpu" and b > 0 and count:min():item() == 0 then
    fail(self, method, level + 1, "a timestep is not in the schedule (pass values of s.timesteps)")
  end
  local want = count:gt(1):float() + 1 -- the second match when there are several, as index_for_timestep
  local idx = (hit * hit:cumsum(2):eq(want):float()):argmax(2)
  local sig = sigmas:index_select(1, idx)
  return flame.where(count:reshape(b):gt(0), sig, 0 / 0):reshape(shape)
end

-- The sigma for x at t: a number for a number t, else a tensor shaped to broadcast over x.
function Sigma:_sigma_at(method, x, t, level)
  if is_tensor(t) and t:dim() >= 1 then
    local sigma = self:_sigma_tensor(method, x, t, level + 1) -- not a tail call: the error level counts this frame
    return sigma
  end
  return self._sigmas[self:_index(method, t, level + 1)]
end

function Sigma:_init_step_index(method, t, level)
  if not self._step_index then self._step_index = self:_index(method, t, level + 1) end
  return self._step_index
end

------------------------------------------------------------------------------------------ Euler

local Euler = sigma_class("EulerDiscreteScheduler")
local euler_defaults = {num_train_timesteps = 1000, beta_start = 0.0001, beta_end = 0.02, beta_schedule = "linear",
  trained_betas = false, prediction_type = "epsilon", interpolation_type = "linear", use_karras_sigmas = false,
  use_exponential_sigmas = false, use_beta_sigmas = false, sigma_min = false, sigma_max = false,
  timestep_spacing = "linspace", timestep_type = "discrete", steps_offset = 0, rescale_betas_zero_snr = false,
  final_sigmas_type = "zero"}

local function not_implemented(name, what) error(string.format("%s: %s is not implemented", name, what), 3) end

-- ((1 - acp) / acp) ** 0.5 for every train timestep, in f32 (ascending in t).
local function train_sigmas(acp)
  local out = {}
  for i, a in ipairs(acp) do out[i] = sqrt32(f32(f32(1 - a) / a)) end
  return out
end

function Euler:_set_sigmas(ts, sigmas)
  self.timesteps, self._sigmas = ts, sigmas
  self.sigmas = sigmas
  local max = -math.huge
  for _, s in ipairs(sigmas) do if s > max then max = s end end
  local sp = self.config.timestep_spacing
  self.init_noise_sigma = (sp == "linspace" or sp == "trailing") and max or sqrt32(f32(f32(max * max) + 1))
  self._step_index, self._scache = nil, {}
end

-- EulerDiscreteScheduler(opts): diffusers' EulerDiscreteScheduler (discrete timesteps, linear interpolation of the
-- train sigmas, final sigma zero or sigma_min).
function S.EulerDiscreteScheduler(opts)
  local name = "EulerDiscreteScheduler"
  local cfg = B.configure(name, opts, euler_defaults)
  if cfg.trained_betas == false then cfg.trained_betas = nil end
  if cfg.use_beta_sigmas then not_implemented(name, "use_beta_sigmas") end
  if cfg.use_karras_sigmas and cfg.use_exponential_sigmas then
    error(name .. ": only one of use_karras_sigmas and use_exponential_sigmas can be set", 2)
  end
  if cfg.sigma_min == false then cfg.sigma_min = nil end
  if cfg.sigma_max == false then cfg.sigma_max = nil end
  if cfg.interpolation_type ~= "linear" then not_implemented(name, "interpolation_type '" .. tostring(cfg.interpolation_type) .. "'") end
  if cfg.timestep_type ~= "discrete" then not_implemented(name, "timestep_type '" .. tostring(cfg.timestep_type) .. "'") end
  B.check_choice(name, "final_sigmas_type", cfg.final_sigmas_type, {"zero", "sigma_min"})
  local s = setmetatable({name = name, config = cfg}, Euler)
  B.init_tables(s, cfg)
  if cfg.rescale_betas_zero_snr then -- diffusers' fix for an infinite last sigma
    s._acp[#s._acp] = 2.0 ^ -24
    s.alphas_cumprod = B.f64_tensor(s._acp)
  end
  s._train_sigmas = train_sigmas(s._acp)
  local N, ts, sig = s.num_train_timesteps, {}, {}
  for i = 1, N do ts[i] = (N - i) + 0.0; sig[i] = s._train_sigmas[N + 1 - i] end
  sig[N + 1] = 0.0
  s:_set_sigmas(ts, sig)
  return s
end

-- np.interp(x, 0 .. N-1, ys) in f64.
local function interp(x, ys)
  local n = #ys
  if x <= 0 then return ys[1] end
  if x >= n - 1 then return ys[n] end
  local j = math.floor(x)
  return (ys[j + 2] - ys[j + 1]) * (x - j) + ys[j + 1]
end

-- diffusers' _sigma_to_t: the fractional train timestep of a sigma, by interpolating log sigmas.
local function sigma_to_t(sigma, log_sigmas)
  local ls = f32(math.log(math.max(sigma, 1e-10)))
  local n, low = #log_sigmas, 1
  for i = 1, n do if ls - log_sigmas[i] >= 0 then low = i end end
  low = math.min(low, n - 1)
  local lo, hi = log_sigmas[low], log_sigmas[low + 1]
  local w = math.min(math.max((lo - math.log(math.max(sigma, 1e-10))) / (lo - hi), 0), 1)
  return (1 - w) * (low - 1) + w * low
end

-- Karras et al.'s sigmas (rho = 7) between sigma_min and sigma_max, in f64 as diffusers' _convert_to_karras.
local function karras(lo, hi, n)
  local rho, out = 7.0, {}
  local a, b = hi ^ (1 / rho), lo ^ (1 / rho)
  for i, r in ipairs(B.np_linspace(0, 1, n)) do out[i] = (a + r * (b - a)) ^ rho end
  return out
end

-- diffusers' _convert_to_exponential: exp of torch's f32 linspace between the log sigmas.
local function exponential(lo, hi, n)
  local out = {}
  for i, v in ipairs(B.torch_linspace32(math.log(hi), math.log(lo), n)) do out[i] = f32(math.exp(v)) end
  return out
end

-- set_timesteps(n), or set_timesteps(nil, {timesteps = {...}}) or set_timesteps(nil, {sigmas = {...}}) (custom,
-- the sigmas with their final value).
function Euler:set_timesteps(n, opts)
  local o = options(self.name .. ":set_timesteps", opts, {timesteps = true, sigmas = true}, 2)
  if (o.timesteps and o.sigmas) or (n ~= nil and (o.timesteps or o.sigmas)) or (n == nil and not o.timesteps and not o.sigmas) then
    fail(self, "set_timesteps", 2, "pass exactly one of num_inference_steps, timesteps or sigmas")
  end
  local ts, sig = {}, {}
  if o.sigmas then
    local log_sigmas = {}
    for i, s in ipairs(self._train_sigmas) do log_sigmas[i] = f32(math.log(s)) end
    for i, s in ipairs(o.sigmas) do sig[i] = f32(s) end
    if #sig < 2 then fail(self, "set_timesteps", 2, "custom sigmas need at least two values (the last is the final sigma)") end
    for i = 1, #sig - 1 do ts[i] = f32(sigma_to_t(sig[i], log_sigmas)) end
    self.num_inference_steps = #sig - 1
    self:_set_sigmas(ts, sig)
    return self
  end
  if o.timesteps then
    for i, t in ipairs(o.timesteps) do ts[i] = f32(t) end
    n = #ts
  else
    self:_check_steps("set_timesteps", n, 2)
    if self.config.timestep_spacing == "linspace" then
      local l = B.np_linspace(0, self.num_train_timesteps - 1, n)
      for i = 1, n do ts[i] = f32(l[n + 1 - i]) end
    else
      for i, t in ipairs(self:_spaced("set_timesteps", n, 2)) do ts[i] = t + 0.0 end
    end
  end
  self.num_inference_steps = n
  for i, t in ipairs(ts) do sig[i] = interp(t, self._train_sigmas) end
  local c = self.config
  if c.use_karras_sigmas or c.use_exponential_sigmas then
    if o.timesteps then fail(self, "set_timesteps", 2, "custom timesteps cannot be combined with karras or exponential sigmas") end
    local lo, hi = c.sigma_min or sig[#sig], c.sigma_max or sig[1]
    sig = c.use_karras_sigmas and karras(lo, hi, n) or exponential(lo, hi, n)
    local log_sigmas = {}
    for i, v in ipairs(self._train_sigmas) do log_sigmas[i] = f32(math.log(v)) end
    for i, v in ipairs(sig) do ts[i] = f32(sigma_to_t(v, log_sigmas)) end
  end
  for i = 1, #sig do sig[i] = f32(sig[i]) end
  local a0 = self._acp[1]
  sig[#ts + 1] = self.config.final_sigmas_type == "sigma_min" and sqrt32(f32(f32(1 - a0) / a0)) or 0.0
  self:_set_sigmas(ts, sig)
  return self
end

-- Diffusers' _check_steps refuses n > num_train_timesteps only for DDPM and DDIM; Euler interpolates any n.
function Euler:_check_steps(method, n, level)
  if math.type(n) ~= "integer" or n < 1 then
    fail(self, method, level + 1, "num_inference_steps must be a positive integer, got %s", tostring(n))
  end
end

-- sample / sqrt(sigma^2 + 1) at t's sigma.
function Euler:scale_model_input(sample, t)
  need_tensor(self, "scale_model_input", "sample", sample, 2)
  local sigma = self._sigmas[self:_init_step_index("scale_model_input", t, 2)]
  return sample / sqrt32(f32(f32(sigma * sigma) + 1))
end

-- add_noise(x0, noise, t): x0 + sigma_t noise; t a value of s.timesteps or a [B] tensor of them.
function Euler:add_noise(x0, noise, t)
  need_tensor(self, "add_noise", "original_samples", x0, 2)
  need_tensor(self, "add_noise", "noise", noise, 2)
  return x0 + noise * self:_sigma_at("add_noise", x0, t, 2)
end

-- get_velocity(x0, noise, t): the v target of the VP process at t's sigma, (noise - sigma x0) / sqrt(1 + sigma^2),
-- the one Euler's v_prediction step inverts. (diffusers 0.31 indexes alphas_cumprod with the step index here,
-- which is not t's alpha; this is.)
function Euler:get_velocity(x0, noise, t)
  need_tensor(self, "get_velocity", "sample", x0, 2)
  need_tensor(self, "get_velocity", "noise", noise, 2)
  local sigma = self:_sigma_at("get_velocity", x0, t, 2)
  if is_tensor(sigma) then return (noise - x0 * sigma) * (sigma * sigma + 1):rsqrt() end
  return (noise - x0 * sigma) / math.sqrt(sigma * sigma + 1)
end

local euler_step_keys = {s_churn = true, s_tmin = true, s_tmax = true, s_noise = true, variance_noise = true}

-- step(model_output, t, sample, {s_churn = 0, s_tmin = 0, s_tmax = inf, s_noise = 1, variance_noise}) ->
-- prev_sample, pred_original_sample.
function Euler:step(model_output, t, sample, opts)
  local o = self:_step_args(model_output, sample, opts, euler_step_keys)
  local p = self:_prediction("step", 2)
  local i = self:_init_step_index("step", t, 2)
  if i >= #self._sigmas then fail(self, "step", 2, "the schedule is finished (%d steps taken): call set_timesteps again", i - 1) end
  local sigma = self._sigmas[i]
  local churn, tmin, tmax = o.s_churn or 0.0, o.s_tmin or 0.0, o.s_tmax or math.huge
  local gamma = (tmin <= sigma and sigma <= tmax) and math.min(churn / (#self._sigmas - 1), 2 ^ 0.5 - 1) or 0.0
  local sigma_hat = f32(sigma * f32(gamma + 1))
  -- As diffusers: the sample is upcast to f32 (so an f64 sample is rounded to f32 too), the arithmetic then runs
  -- in the promoted dtype of it and the model output, and prev_sample is cast to the model output's dtype.
  local x, mo = sample:float(), model_output
  if gamma > 0 then
    x = x + B.step_noise(o, model_output) * ((o.s_noise or 1.0) * sqrt32(f32(f32(sigma_hat * sigma_hat) - f32(sigma * sigma))))
  end
  local x0
  if p == "sample" then
    x0 = mo
  elseif p == "epsilon" then
    x0 = x - mo * sigma_hat
  else
    local s2 = f32(f32(sigma * sigma) + 1)
    x0 = mo * f32(-sigma / sqrt32(s2)) + x / s2
  end
  local dt = f32(self._sigmas[i + 1] - sigma_hat)
  local prev = x + (x - x0) / sigma_hat * dt
  self._step_index = i + 1
  return prev:to(model_output.dtype), x0
end

------------------------------------------------------------------------------------------ flow matching

local Flow = sigma_class("FlowMatchEulerDiscreteScheduler")
local flow_defaults = {num_train_timesteps = 1000, shift = 1.0, use_dynamic_shifting = false, base_shift = 0.5,
  max_shift = 1.15, base_image_seq_len = 256, max_image_seq_len = 4096}

-- FlowMatchEulerDiscreteScheduler(opts): diffusers' rectified-flow sampler. x_t = (1 - sigma) x0 + sigma noise,
-- the model predicts the velocity noise - x0, and timesteps are sigma * num_train_timesteps.
function S.FlowMatchEulerDiscreteScheduler(opts)
  local name = "FlowMatchEulerDiscreteScheduler"
  local cfg = B.configure(name, opts, flow_defaults)
  local N = cfg.num_train_timesteps
  if math.type(N) ~= "integer" or N < 1 then
    error(string.format("%s: num_train_timesteps must be a positive integer, got %s", name, tostring(N)), 2)
  end
  if type(cfg.shift) ~= "number" or cfg.shift <= 0 then
    error(string.format("%s: shift must be a positive number, got %s", name, tostring(cfg.shift)), 2)
  end
  local s = setmetatable({name = name, config = cfg, num_train_timesteps = N, _cache = {}, init_noise_sigma = 1.0}, Flow)
  local shift, sig, ts = f32(cfg.shift), {}, {}
  for i = 1, N do
    local v = f32((N + 1 - i) / N)
    if not cfg.use_dynamic_shifting then v = f32(f32(shift * v) / f32(1 + f32(f32(cfg.shift - 1) * v))) end
    sig[i], ts[i] = v, f32(v * N)
  end
  s.sigma_max, s.sigma_min = sig[1], sig[N]
  s.timesteps, s._sigmas, s.sigmas, s._scache = ts, sig, sig, {}
  return s
end

-- diffusers' pipelines' calculate_shift: mu for an image of seq_len tokens, linear between the base and max shifts.
function Flow:calculate_shift(seq_len)
  local c = self.config
  local m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
  return seq_len * m + (c.base_shift - m * c.base_image_seq_len)
end

-- set_timesteps(n, {sigmas, mu}): n steps from sigma_max to sigma_min, or the given sigmas (without the final
-- zero), shifted by `shift` or, with use_dynamic_shifting, by exp(mu).
function Flow:set_timesteps(n, opts)
  local o = options(self.name .. ":set_timesteps", opts, {sigmas = true, mu = true}, 2)
  if self.config.use_dynamic_shifting and o.mu == nil then
    fail(self, "set_timesteps", 2, "mu is required when use_dynamic_shifting is set")
  end
  local N, sig = self.num_train_timesteps, {}
  if o.sigmas then
    for i, v in ipairs(o.sigmas) do sig[i] = v end
    if #sig == 0 then fail(self, "set_timesteps", 2, "custom sigmas are empty") end
    self.num_inference_steps = n
  else
    if math.type(n) ~= "integer" or n < 1 then
      fail(self, "set_timesteps", 2, "num_inference_steps must be a positive integer, got %s", tostring(n))
    end
    self.num_inference_steps = n
    for i, t in ipairs(B.np_linspace(self.sigma_max * N, self.sigma_min * N, n)) do sig[i] = t / N end
  end
  local shift, em = self.config.shift, o.mu and math.exp(o.mu)
  local ts = {}
  for i, v in ipairs(sig) do
    if self.config.use_dynamic_shifting then v = em / (em + (1 / v - 1)) else v = shift * v / (1 + (shift - 1) * v) end
    sig[i] = f32(v)
    ts[i] = f32(sig[i] * N)
  end
  sig[#sig + 1] = 0.0
  self.timesteps, self._sigmas, self.sigmas, self._step_index, self._scache = ts, sig, sig, nil, {}
  return self
end

-- add_noise(x0, noise, t) (diffusers' scale_noise(x0, t, noise)): sigma noise + (1 - sigma) x0.
function Flow:add_noise(x0, noise, t)
  need_tensor(self, "add_noise", "original_samples", x0, 2)
  need_tensor(self, "add_noise", "noise", noise, 2)
  local sigma = self:_sigma_at("add_noise", x0, t, 2)
  return noise * sigma + x0 * (1 - sigma)
end

-- get_velocity(x0, noise, t): the flow-matching target noise - x0 (the same at every t).
function Flow:get_velocity(x0, noise, t)
  need_tensor(self, "get_velocity", "sample", x0, 2)
  need_tensor(self, "get_velocity", "noise", noise, 2)
  return noise - x0
end

local flow_step_keys = {}

-- step(model_output, t, sample) -> prev_sample, pred_original_sample: x + (sigma_next - sigma) v, and the x0 it
-- implies, x - sigma v (diffusers 0.31 returns only prev_sample). prev_sample has model_output's dtype.
function Flow:step(model_output, t, sample, opts)
  self:_step_args(model_output, sample, opts, flow_step_keys)
  local i = self:_init_step_index("step", t, 2)
  if i >= #self._sigmas then fail(self, "step", 2, "the schedule is finished (%d steps taken): call set_timesteps again", i - 1) end
  local sigma, nxt = self._sigmas[i], self._sigmas[i + 1]
  local x, v = sample:float(), model_output -- diffusers' upcast, as in Euler's step
  local prev = x + v * f32(nxt - sigma)
  self._step_index = i + 1
  return prev:to(model_output.dtype), x - v * sigma
end
