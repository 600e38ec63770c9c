-- flame.schedules against diffusers 0.31.0 itself (spec/fixtures/gen_schedules.py): betas and alphas_cumprod of
-- every schedule, timesteps and sigmas of every scheduler x spacing, step / add_noise / get_velocity /
-- scale_model_input of every scheduler x prediction type, in f64 (1e-6 relative) and f32 (f32 rounding); and an
-- error spec per error path.
local H = require "helper"
local flame = H.flame
local S = flame.schedules
local fx = require "fixtures.schedules"

local F64 = {rtol = 1e-6, atol = 1e-12}
local TABLE = {rtol = 1e-7, atol = 0} -- f32 tables: equal up to one f32 rounding
local F32 = {rtol = 2e-6, atol = 2e-6}

local function tol(dtype) return dtype == "f64" and F64 or F32 end

-- The fixture's inputs: c * sin(a k + b) over the flat index k, as gen_schedules.py's wave().
local function wave(a, b, c, dtype)
  local v = {}
  for k = 0, 35 do v[k + 1] = c * math.sin(a * k + b) end
  return H.t(v, {dtype = "f64"}):reshape(fx.shape):to(dtype)
end
local function inputs(dtype)
  return {x0 = wave(0.37, 0.1, 0.9, dtype), noise = wave(0.53, 0.2, 1.1, dtype), model = wave(0.71, 0.3, 1.3, dtype),
    sample = wave(0.29, 0.4, 1.7, dtype), vnoise = wave(0.43, 0.5, 0.8, dtype)}
end

local function list(t) return flame.is_tensor(t) and t:reshape(-1):cpu():totable() or t end

-- A long table of the fixture: values at some 0-based positions, the length and the sum.
local function check_long(got, want, tolerance, what)
  got = list(got)
  assert.are.equal(want.len, #got, what .. " length")
  for i, k in ipairs(want.idx) do H.close({got[k + 1]}, {want.at[i]}, tolerance, what .. " at " .. k) end
  local sum = 0
  for _, v in ipairs(got) do sum = sum + v end
  H.close({sum}, {want.sum}, {rtol = 1e-6, atol = 1e-9}, what .. " sum")
end

local function check_table(got, want, tolerance, what)
  if want.idx then return check_long(got, want, tolerance, what) end
  H.close(list(got), want, tolerance, what)
end

local function make(cls, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  return S[cls](o)
end

local function set(s, n, extra)
  local o
  if extra and next(extra) then o = {}; for k, v in pairs(extra) do o[k] = v end end
  return s:set_timesteps(n, o)
end

describe("flame.schedules.betas", function()
  for name, c in pairs(fx.betas) do
    it(name .. " matches diffusers' betas and alphas_cumprod", function()
      local o = c.opts
      local b = S.betas(o.beta_schedule, {num_train_timesteps = o.num_train_timesteps, beta_start = o.beta_start,
        beta_end = o.beta_end, rescale_betas_zero_snr = o.rescale_betas_zero_snr})
      assert.are.equal("f64", b.dtype)
      -- sigmoid (an extra of DDPMScheduler) goes through torch's vectorised f32 sigmoid, not correctly rounded
      local tl = o.beta_schedule == "sigmoid" and {rtol = 1e-6, atol = 0} or TABLE
      check_table(b, c.betas, tl, name .. " betas")
      local s = make("DDPMScheduler", o)
      check_table(s.betas, c.betas, tl, name .. " scheduler betas")
      check_table(s.alphas_cumprod, c.alphas_cumprod, tl, name .. " alphas_cumprod")
    end)
  end

  it("cosine is the alpha-bar cosine schedule (squaredcos_cap_v2)", function()
    H.close(S.betas("cosine", {num_train_timesteps = 100}), S.betas("squaredcos_cap_v2", {num_train_timesteps = 100}), {rtol = 0, atol = 0})
    local b = list(S.betas("cosine", {num_train_timesteps = 1000}))
    assert.are.equal((string.unpack("<f", string.pack("<f", 0.999))), b[1000]) -- capped at max_beta, in f32
  end)

  it("zero-terminal-SNR rescaling makes the last alphas_cumprod 0", function()
    local s = S.DDIMScheduler({rescale_betas_zero_snr = true})
    assert.are.equal(0, list(s.alphas_cumprod)[1000])
    assert.are.equal(1, list(s.betas)[1000])
  end)

  it("names an unknown schedule and a bad size", function()
    H.errors(function() return S.betas("cosin") end, "betas: unknown beta_schedule 'cosin'", "squaredcos_cap_v2")
    H.errors(function() return S.betas("linear", {num_train_timesteps = 0}) end, "betas: num_train_timesteps must be a positive integer")
    H.errors(function() return S.betas("linear", {num_train_timesteps = 1 << 30}) end, "num_train_timesteps must be a positive integer up to 2^24")
    H.errors(function() return S._base.np_linspace(0, 1, 1e308) end, "schedules: 1e+308 points: expected a whole number from 0 to 2^24")
    H.errors(function() return S.betas("linear", {steps = 3}) end, "betas: unknown option 'steps'")
    H.errors(function() return S.DDPMScheduler({beta_schedule = "quadratic"}) end, "DDPMScheduler: unknown beta_schedule 'quadratic'")
  end)
end)

describe("flame.schedules timesteps and sigmas", function()
  for i, c in ipairs(fx.timesteps) do
    local name = string.format("%s %s n=%s #%d", c.cls, c.opts.timestep_spacing or "", tostring(c.n), i)
    it(name, function()
      local s = make(c.cls, c.opts)
      set(s, c.n, c.set)
      if c.cls == "EulerDiscreteScheduler" then
        check_table(s.timesteps, c.timesteps, F64, "timesteps")
        if c.sigmas.idx then
          local sig = {}
          for k = 1, #s.sigmas - 1 do sig[k] = s.sigmas[k] end
          check_table(sig, c.sigmas, F64, "sigmas")
        else
          check_table(s.sigmas, c.sigmas, F64, "sigmas")
        end
        H.close({s.init_noise_sigma}, {c.init_noise_sigma}, F64, "init_noise_sigma")
      elseif c.timesteps.idx then
        check_long(s.timesteps, c.timesteps, {rtol = 0, atol = 0}, "timesteps")
      else
        assert.are.same(c.timesteps, s.timesteps)
      end
    end)
  end

  it("Euler's train schedule (before set_timesteps)", function()
    local s = S.EulerDiscreteScheduler()
    check_long(s.timesteps, fx.euler_train.timesteps, {rtol = 0, atol = 0}, "timesteps")
    local sig = {}
    for k = 1, 1000 do sig[k] = s.sigmas[k] end
    check_long(sig, fx.euler_train.sigmas, TABLE, "sigmas")
    H.close({s.init_noise_sigma}, {fx.euler_train.init_noise_sigma}, TABLE)
  end)

  for i, c in ipairs(fx.flow_timesteps) do
    it(string.format("FlowMatchEulerDiscreteScheduler #%d (shift %s, dynamic %s)", i, tostring(c.opts.shift),
      tostring(c.opts.use_dynamic_shifting)), function()
      local s = make("FlowMatchEulerDiscreteScheduler", c.opts)
      check_table(s.timesteps, c.train.timesteps, TABLE, "train timesteps")
      check_table(s.sigmas, c.train.sigmas, TABLE, "train sigmas")
      set(s, c.n, c.set)
      check_table(s.timesteps, c.timesteps, F64, "timesteps")
      check_table(s.sigmas, c.sigmas, F64, "sigmas")
      assert.are.equal(1.0, s.init_noise_sigma)
    end)
  end

  it("trailing spacing gives n timesteps where numpy's arange gives n + 1 (diffusers 0.31)", function()
    for _, cls in ipairs({"DDPMScheduler", "DDIMScheduler", "EulerDiscreteScheduler"}) do
      local s = S[cls]({timestep_spacing = "trailing"})
      s:set_timesteps(61)
      assert.are.equal(61, #s.timesteps)
      assert.are.equal(999, s.timesteps[1])
      assert.is_true(s.timesteps[61] >= 0)
    end
  end)

  it("names bad spacings and step counts", function()
    H.errors(function() return S.DDIMScheduler({timestep_spacing = "even"}) end, "DDIMScheduler: unknown timestep_spacing 'even'", "trailing")
    H.errors(function() return S.DDPMScheduler():set_timesteps(1001) end,
      "DDPMScheduler:set_timesteps: num_inference_steps 1001 cannot be larger than num_train_timesteps 1000")
    H.errors(function() return S.DDIMScheduler({num_train_timesteps = 50}):set_timesteps(51) end,
      "DDIMScheduler:set_timesteps: num_inference_steps 51 cannot be larger than num_train_timesteps 50")
    H.errors(function() return S.DDIMScheduler():set_timesteps(0) end, "DDIMScheduler:set_timesteps: num_inference_steps must be a positive integer")
    H.errors(function() return S.EulerDiscreteScheduler():set_timesteps(2.5) end, "EulerDiscreteScheduler:set_timesteps: num_inference_steps must be a positive integer")
    H.errors(function() return S.EulerDiscreteScheduler():set_timesteps(5, {sigmas = {1, 0}}) end, "pass exactly one of")
    H.errors(function() return S.DDPMScheduler():set_timesteps(nil, {timesteps = {10, 20}}) end, "descending order")
    H.errors(function() return S.DDPMScheduler():set_timesteps(5, {sigmas = {1}}) end, "DDPMScheduler:set_timesteps: unknown option 'sigmas'")
    H.errors(function() return S.FlowMatchEulerDiscreteScheduler({use_dynamic_shifting = true}):set_timesteps(5) end,
      "FlowMatchEulerDiscreteScheduler:set_timesteps: mu is required when use_dynamic_shifting is set")
  end)
end)

-- Runs one fixture step case on the device under test.
local function run_step(c)
  local I = inputs(c.dtype)
  local s = make(c.cls, c.opts)
  set(s, c.n, c.set)
  local tl = tol(c.dtype)
  -- fixed_small_log's std is torch's f32 exp(0.5 log var), one ulp off the correctly rounded one at some t:
  -- allow that ulp (1.2e-7 relative) times the noise (below 1) in absolute terms
  if c.opts.variance_type == "fixed_small_log" then tl = {rtol = tl.rtol, atol = 1e-7} end
  if c.seq then
    local x = c.cls == "EulerDiscreteScheduler" and I.sample * s.init_noise_sigma or I.sample
    for k, st in ipairs(c.seq) do
      if st.scaled then H.close(s:scale_model_input(x, st.t), st.scaled, tl, "scale_model_input " .. k) end
      local o = c.cls == "EulerDiscreteScheduler" and {s_churn = c.s_churn, variance_noise = I.vnoise} or nil
      local prev, x0 = s:step(I.model, st.t, x, o)
      H.close(prev, st.prev, tl, "prev_sample " .. k)
      if st.x0 then H.close(x0, st.x0, tl, "pred_original_sample " .. k) end
      assert.are.equal(c.dtype, prev.dtype)
      x = prev
    end
    return
  end
  local o = {variance_noise = I.vnoise}
  if c.cls == "DDIMScheduler" then o.eta, o.use_clipped_model_output = c.eta, c.clipped end
  local prev, x0 = s:step(I.model * (c.model_scale or 1), c.t, I.sample, o)
  H.close(prev, c.prev, tl, "prev_sample")
  H.close(x0, c.x0, tl, "pred_original_sample")
  assert.are.equal(c.dtype, prev.dtype)
end

describe("flame.schedules step", function()
  for i, c in ipairs(fx.steps) do
    local name = string.format("%s %s %s %s%s #%d", c.cls, c.dtype, c.opts.prediction_type or "",
      c.opts.variance_type or c.opts.timestep_spacing or "", c.opts.thresholding and " thresholding" or "", i)
    it(name, function() run_step(c) end)
  end

  it("FlowMatch's pred_original_sample is x - sigma v, and v from get_velocity steps back to x0", function()
    local I = inputs("f64")
    local s = S.FlowMatchEulerDiscreteScheduler({shift = 3.0})
    s:set_timesteps(4)
    local t = s.timesteps[2]
    local xt = s:add_noise(I.x0, I.noise, t)
    s:step(I.model, s.timesteps[1], I.sample) -- the step index moves on to t
    local _, x0 = s:step(s:get_velocity(I.x0, I.noise, t), t, xt)
    H.close(x0, I.x0, {rtol = 1e-6, atol = 1e-6})
  end)

  it("DDIM with eta > 0 draws its noise from flame's seeded generator", function()
    local I = inputs("f64")
    local s = S.DDIMScheduler()
    s:set_timesteps(10)
    flame.manual_seed(7)
    local a = s:step(I.model, 901, I.sample, {eta = 1})
    flame.manual_seed(7)
    local n = flame.randn(I.sample.shape, {dtype = "f64", device = H.device})
    local b = s:step(I.model, 901, I.sample, {eta = 1, variance_noise = n})
    H.close(a, b, {rtol = 0, atol = 0})
    local c = s:step(I.model, 901, I.sample, {eta = 1})
    assert.is_false(flame.allclose(a, c))
  end)

  it("DDPM's t = 0 step adds no noise; a t > 0 step adds the variance noise", function()
    local I = inputs("f64")
    local s = S.DDPMScheduler({variance_type = "fixed_large"})
    local a = s:step(I.model, 0, I.sample, {variance_noise = I.vnoise})
    local b = s:step(I.model, 0, I.sample)
    H.close(a, b, {rtol = 0, atol = 0})
    local c = s:step(I.model, 10, I.sample, {variance_noise = I.vnoise * 0})
    local d = s:step(I.model, 10, I.sample, {variance_noise = I.vnoise})
    -- fixed_large's std is sqrt(1 - acp[t] / acp[t - 1]) in f32: beta_t up to that cancellation
    H.close(d - c, I.vnoise * math.sqrt(list(s.betas)[11]), {rtol = 1e-3, atol = 0})
  end)

  it("names the scheduler and method in step errors", function()
    local I = inputs("f64")
    local d = S.DDIMScheduler()
    H.errors(function() return d:step(I.model, 10, I.sample) end, "DDIMScheduler:step: the number of inference steps is not set: call set_timesteps first")
    d:set_timesteps(10)
    H.errors(function() return d:step(I.model, 1000, I.sample) end, "DDIMScheduler:step: timestep 1000 out of range [0, 999]")
    H.errors(function() return d:step(I.model, -1, I.sample) end, "DDIMScheduler:step: timestep -1 out of range [0, 999]")
    H.errors(function() return d:step(I.model, 10.5, I.sample) end, "DDIMScheduler:step: timestep must be an integer, got 10.5")
    H.errors(function() return d:step(I.model, 10, I.sample, {etta = 1}) end, "DDIMScheduler:step: unknown option 'etta'")
    H.errors(function() return d:step(I.model, 10, I.sample, {eta = -1}) end, "DDIMScheduler:step: eta must be a number >= 0")
    H.errors(function() return d:step(I.model:narrow(1, 1, 1), 10, I.sample) end, "DDIMScheduler:step: model_output of shape {1, 2, 3, 3} and sample of shape {2, 2, 3, 3} differ")
    H.errors(function() return d:step(I.model, 10, I.sample, {eta = 1, variance_noise = I.vnoise[1]}) end, "DDIMScheduler:step: variance_noise of shape {2, 3, 3}")
    H.errors(function() return d:step(nil, 10, I.sample) end, "DDIMScheduler:step: model_output must be a tensor")
    local p = S.DDPMScheduler()
    p:set_timesteps(nil, {timesteps = {900, 500}})
    H.errors(function() return p:step(I.model, 700, I.sample) end, "DDPMScheduler:step: timestep 700 is not one of the custom timesteps")
    local e = S.EulerDiscreteScheduler()
    e:set_timesteps(2)
    H.errors(function() return e:step(I.model, 998.5, I.sample) end, "EulerDiscreteScheduler:step: timestep 998.5 is not in the schedule")
    e:step(I.model, e.timesteps[1], I.sample)
    e:step(I.model, e.timesteps[2], I.sample)
    H.errors(function() return e:step(I.model, e.timesteps[2], I.sample) end, "EulerDiscreteScheduler:step: the schedule is finished")
    H.errors(function() return S.DDPMScheduler({prediction_type = "flow"}) end, "DDPMScheduler: unknown prediction_type 'flow' (known: epsilon, v_prediction, sample)")
    H.errors(function() return S.DDPMScheduler({variance_type = "learned"}) end, "DDPMScheduler: unknown variance_type 'learned'")
    H.errors(function() return S.EulerDiscreteScheduler({use_beta_sigmas = true}) end, "EulerDiscreteScheduler: use_beta_sigmas is not implemented")
    H.errors(function() return S.EulerDiscreteScheduler({use_karras_sigmas = true, use_exponential_sigmas = true}) end,
      "EulerDiscreteScheduler: only one of use_karras_sigmas and use_exponential_sigmas can be set")
    H.errors(function() return S.EulerDiscreteScheduler({use_karras_sigmas = true}):set_timesteps(nil, {timesteps = {900, 100}}) end,
      "EulerDiscreteScheduler:set_timesteps: custom timesteps cannot be combined with karras or exponential sigmas")
    H.errors(function() return S.FlowMatchEulerDiscreteScheduler({prediction_type = "epsilon"}) end, "FlowMatchEulerDiscreteScheduler: unknown option 'prediction_type'")
  end)
end)

-- A model that knows x0 answers each step exactly: every sampling loop must then end at x0 (up to rounding). This
-- ties add_noise, get_velocity, scale_model_input and step together for every scheduler and prediction type.
describe("flame.schedules sampling loops with an oracle model", function()
  local function oracle_eps(s, xt, t, x0)
    local a = list(s.alphas_cumprod)[t + 1]
    return (xt - x0 * math.sqrt(a)) / math.sqrt(1 - a)
  end
  for _, cls in ipairs({"DDPMScheduler", "DDIMScheduler"}) do
    for _, pred in ipairs({"epsilon", "v_prediction", "sample"}) do
      it(cls .. " " .. pred .. " ends at x0", function()
        local I = inputs("f64")
        local s = S[cls]({prediction_type = pred, clip_sample = false, timestep_spacing = "trailing"})
        s:set_timesteps(12)
        flame.manual_seed(3)
        local x = flame.randn(I.x0.shape, {dtype = "f64", device = H.device}) * s.init_noise_sigma
        for _, t in ipairs(s.timesteps) do
          local eps = oracle_eps(s, s:scale_model_input(x, t), t, I.x0)
          local out = pred == "epsilon" and eps or pred == "sample" and I.x0 or s:get_velocity(I.x0, eps, t)
          x = s:step(out, t, x)
        end
        H.close(x, I.x0, {rtol = 1e-4, atol = 1e-4})
      end)
    end
  end
  for _, pred in ipairs({"epsilon", "v_prediction", "sample"}) do
    it("EulerDiscreteScheduler " .. pred .. " ends at x0", function()
      local I = inputs("f64")
      local s = S.EulerDiscreteScheduler({prediction_type = pred, timestep_spacing = "trailing"})
      s:set_timesteps(12)
      local x = I.noise * s.init_noise_sigma + I.x0
      for i, t in ipairs(s.timesteps) do
        local sigma = s.sigmas[i]
        local eps = (x - I.x0) / sigma -- x = x0 + sigma eps in Euler's scaling
        s:scale_model_input(x, t)
        local out = pred == "epsilon" and eps or pred == "sample" and I.x0
          or (eps - I.x0 * sigma) / math.sqrt(sigma * sigma + 1)
        x = s:step(out, t, x)
      end
      H.close(x, I.x0, {rtol = 1e-5, atol = 1e-5})
    end)
  end
  it("FlowMatchEulerDiscreteScheduler ends at x0", function()
    local I = inputs("f64")
    local s = S.FlowMatchEulerDiscreteScheduler({shift = 3.0})
    s:set_timesteps(10)
    local x = I.noise
    for i, t in ipairs(s.timesteps) do
      x = s:step((x - I.x0) / s.sigmas[i], t, x) -- v = noise - x0 = (x_t - x0) / sigma
    end
    H.close(x, I.x0, {rtol = 1e-5, atol = 1e-5})
  end)
end)

describe("flame.schedules add_noise and get_velocity", function()
  for i, c in ipairs(fx.noising) do
    it(string.format("%s %s t={%s} #%d", c.cls, c.dtype, table.concat(c.t, ", "), i), function()
      local I = inputs(c.dtype)
      local s = make(c.cls, c.opts)
      if c.n then s:set_timesteps(c.n) end
      local t = math.type(c.t[1]) == "integer" and H.t(c.t) or H.t(c.t, {dtype = "f32"})
      H.close(s:add_noise(I.x0, I.noise, t), c.noisy, tol(c.dtype), "add_noise")
      if c.v then H.close(s:get_velocity(I.x0, I.noise, t), c.v, tol(c.dtype), "get_velocity") end
      -- one sample at a time with a number t gives the same rows
      for b = 1, 2 do
        local x0, noise = I.x0:narrow(1, b, 1), I.noise:narrow(1, b, 1)
        H.close(s:add_noise(x0, noise, c.t[b]), s:add_noise(I.x0, I.noise, t):narrow(1, b, 1), {rtol = 1e-12, atol = 0}, "number t")
      end
    end)
  end

  it("a one-element timestep tensor broadcasts over the batch", function()
    local I = inputs("f64")
    local s = S.DDPMScheduler()
    H.close(s:add_noise(I.x0, I.noise, H.t({500})), s:add_noise(I.x0, I.noise, 500), {rtol = 0, atol = 0})
    H.close(s:add_noise(I.x0, I.noise, H.t(500)), s:add_noise(I.x0, I.noise, H.t({500, 500})), {rtol = 0, atol = 0})
  end)

  it("Euler's get_velocity is the DDPM velocity at t's sigma", function()
    local I = inputs("f64")
    local e, d = S.EulerDiscreteScheduler(), S.DDPMScheduler()
    local t = H.t({0, 999, 500})
    local x0, noise = I.x0:narrow(1, 1, 1):expand(3, 2, 3, 3), I.noise:narrow(1, 1, 1):expand(3, 2, 3, 3)
    H.close(e:get_velocity(x0, noise, t:float()), d:get_velocity(x0, noise, t), {rtol = 1e-6, atol = 1e-7})
  end)

  it("works in f32 and bf16 on the sample's device and dtype", function()
    local I = inputs("f32")
    local s = S.DDIMScheduler()
    local y = s:add_noise(I.x0:bfloat16(), I.noise:bfloat16(), H.t({3, 700}))
    assert.are.equal("bf16", y.dtype)
    H.close(y:float(), s:add_noise(I.x0, I.noise, H.t({3, 700})), {rtol = 2e-2, atol = 2e-2})
  end)

  it("names bad timesteps", function()
    local I = inputs("f64")
    local s = S.DDPMScheduler()
    H.errors(function() return s:add_noise(I.x0, I.noise, 1000) end, "DDPMScheduler:add_noise: timestep 1000 out of range [0, 999]")
    H.errors(function() return s:add_noise(I.x0, I.noise, H.t({3, 1000})) end,
      H.device == "cpu" and "DDPMScheduler:add_noise: timestep 1000 out of range [0, 999]" or "out of range")
    H.errors(function() return s:get_velocity(I.x0, I.noise, H.t({3, -1})) end,
      H.device == "cpu" and "DDPMScheduler:get_velocity: timestep -1 out of range [0, 999]" or "out of range")
    H.errors(function() return s:add_noise(I.x0, I.noise, H.t({3.0, 4.0})) end, "DDPMScheduler:add_noise: per-sample timesteps must be an i64 or i32 tensor, got f32")
    H.errors(function() return s:add_noise(I.x0, I.noise, H.t({1, 2, 3})) end, "DDPMScheduler:add_noise: timesteps of shape {3} do not match a sample batch of shape {2, 2, 3, 3}")
    H.errors(function() return s:add_noise(I.x0, nil, 3) end, "DDPMScheduler:add_noise: noise must be a tensor")
    local e = S.EulerDiscreteScheduler()
    e:set_timesteps(10)
    if H.device == "cpu" then
      H.errors(function() return e:add_noise(I.x0, I.noise, H.t({999.0, 5.5}, {dtype = "f32"})) end, "EulerDiscreteScheduler:add_noise: a timestep is not in the schedule")
    else
      assert.is_true(e:add_noise(I.x0, I.noise, H.t({999.0, 5.5}, {dtype = "f32"}))[2]:isnan():all():item())
    end
    H.errors(function() return e:add_noise(I.x0, I.noise, 5.5) end, "EulerDiscreteScheduler:add_noise: timestep 5.5 is not in the schedule")
  end)
end)
