-- flame.optim: SGD / Adam / AdamW against PyTorch 1.13's trajectories (spec/fixtures/gen_optim.py), param groups,
-- skipped params, state_dict round trips, clip_grad_norm, EMA, the LR schedulers, errors, and CPU-vs-CUDA parity of
-- the fused multi-tensor kernels (pending without a GPU).
local H = require "helper"
local flame = H.flame
local optim = flame.optim
local fx = require "fixtures.optim"

local has_cuda = flame.cuda.is_available()

local function f64(data) return H.t(data, {dtype = "f64"}) end

-- Fresh leaf params of a fixture case, in dtype (default f64) on the device under test.
local function make_params(c, dtype)
  local ps = {}
  for i, v in ipairs(c.init) do ps[i] = H.t(v, {dtype = dtype or "f64", requires_grad = true}) end
  return ps
end

local function make_opt(c, ps)
  local ctor = optim[c.class]
  if #c.groups == 1 and not c.groups[1].idx then return ctor(ps, c.groups[1].opts) end
  local groups = {}
  for gi, g in ipairs(c.groups) do
    local list = {}
    for k, i in ipairs(g.idx) do list[k] = ps[i] end
    local e = {params = list}
    for k, v in pairs(g.opts) do e[k] = v end
    groups[gi] = e
  end
  return ctor(groups)
end

-- Sets the grads of step s (nil where the fixture has none) and steps.
local function set_grads(c, ps, s, dtype)
  for i, p in ipairs(ps) do
    local g = c.grads[s][i]
    p.grad = g and H.t(g, {dtype = dtype or "f64"}) or nil
  end
end

local function run_case(c, steps, dtype, tol)
  local ps = make_params(c, dtype)
  local opt = make_opt(c, ps)
  for s = 1, steps do
    set_grads(c, ps, s, dtype)
    opt:step()
    for i, p in ipairs(ps) do H.close(p:detach():to("f64"), f64(c.params[s][i]), tol, ("step %d param %d"):format(s, i)) end
  end
  return ps, opt
end

describe("flame.optim against PyTorch 1.13", function()
  local names = {}
  for name in pairs(fx.optim) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    it(name .. " (f64, every step)", function()
      run_case(fx.optim[name], #fx.optim[name].params, "f64", {atol = 1e-12, rtol = 1e-10})
    end)
    it(name .. " (f32)", function()
      run_case(fx.optim[name], #fx.optim[name].params, "f32", {atol = 2e-5, rtol = 2e-5})
    end)
  end

  it("moves a parameter (a test that can fail: one step changes every updated value)", function()
    local c = fx.optim.adam
    local ps = make_params(c)
    local before = ps[1]:detach():clone()
    local opt = make_opt(c, ps)
    set_grads(c, ps, 1)
    opt:step()
    assert.is_true((ps[1]:detach() - before):abs():min():item() > 1e-4)
  end)

  it("skips parameters without a gradient and keeps no state for them", function()
    local c = fx.optim.adam_skip
    local ps, opt = run_case(c, 1, "f64", {atol = 1e-12, rtol = 1e-10})
    assert.is_nil(opt.state[ps[3]])
    assert.are.equal(1, opt.state[ps[1]].step)
    local sd = opt:state_dict()
    assert.is_nil(sd.state[3])
    assert.is_not_nil(sd.state[1].exp_avg)
  end)

  it("bf16 and f16 params keep f32 state and follow the f64 trajectory loosely", function()
    for _, dt in ipairs({"bf16", "f16"}) do
      local c = fx.optim.adamw
      local ps = make_params(c, dt)
      local opt = make_opt(c, ps)
      for s = 1, 2 do
        set_grads(c, ps, s, dt)
        opt:step()
      end
      assert.are.equal("f32", opt.state[ps[1]].exp_avg.dtype)
      assert.are.equal(dt, ps[1].dtype)
      for i, p in ipairs(ps) do H.close(p:detach():to("f64"), f64(c.params[2][i]), {atol = 2e-2, rtol = 2e-2}) end
    end
  end)
end)

describe("optimizer state_dict", function()
  for _, name in ipairs({"sgd_momentum", "sgd_nesterov", "adam_amsgrad", "adamw", "adam_groups", "adam_skip"}) do
    it(name .. ": save after 2 steps, load into a fresh optimizer, continue: identical to uninterrupted", function()
      local c = fx.optim[name]
      local ps = make_params(c)
      local opt = make_opt(c, ps)
      for s = 1, 2 do set_grads(c, ps, s); opt:step() end
      local sd = opt:state_dict()
      -- a fresh model and optimizer with the saved weights
      local ps2 = {}
      for i, p in ipairs(ps) do ps2[i] = p:detach():clone(); ps2[i].requires_grad = true end
      local opt2 = make_opt(c, ps2)
      opt2:load_state_dict(sd)
      for s = 3, #c.params do
        set_grads(c, ps, s); opt:step()
        set_grads(c, ps2, s); opt2:step()
      end
      for i = 1, #ps do
        H.close(ps[i]:detach(), ps2[i]:detach(), {atol = 0, rtol = 0}, "param " .. i)
        H.close(ps2[i]:detach(), f64(c.params[#c.params][i]), {atol = 1e-12, rtol = 1e-10})
      end
    end)
  end

  it("has PyTorch's layout: state by parameter position, param_groups with their options", function()
    local c = fx.optim.adam_groups
    local ps = make_params(c)
    local opt = make_opt(c, ps)
    set_grads(c, ps, 1)
    opt:step()
    local sd = opt:state_dict()
    assert.are.same({1, 2}, sd.param_groups[1].params)
    assert.are.same({3}, sd.param_groups[2].params)
    assert.are.equal(0.1, sd.param_groups[2].lr)
    assert.are.same({0.9, 0.999}, sd.param_groups[1].betas)
    -- group 1 holds ps[1], ps[3]: position 2 is ps[3]
    assert.is_true(flame.is_tensor(sd.state[2].exp_avg_sq))
    assert.are.equal(1, sd.state[2].step)
    assert.are.same(ps[3].shape, sd.state[2].exp_avg.shape)
  end)

  it("rejects a mismatched state_dict", function()
    local ps = {flame.zeros(3, {requires_grad = true}), flame.zeros(2, {requires_grad = true})}
    local opt = optim.Adam(ps)
    H.errors(function() opt:load_state_dict({state = {}, param_groups = {{params = {1}}, {params = {2}}}}) end,
      "2 parameter groups", "has 1")
    H.errors(function() opt:load_state_dict({state = {}, param_groups = {{params = {1}}}}) end,
      "param group 1 has 1 parameters", "optimizer's has 2")
    H.errors(function() opt:load_state_dict({state = {[5] = {step = 1}}, param_groups = {{params = {1, 2}}}}) end,
      "state for parameter 5")
    H.errors(function()
      opt:load_state_dict({state = {[1] = {step = 1, exp_avg = flame.zeros(7)}}, param_groups = {{params = {1, 2}}}})
    end, "has 7 elements")
    H.errors(function() opt:load_state_dict(42) end, "expected a table")
  end)
end)

describe("zero_grad", function()
  it("sets grads to nil, or zeroes them with set_to_none = false", function()
    local p = H.t({1, 2}, {dtype = "f32", requires_grad = true})
    local opt = optim.SGD({p}, {lr = 0.1})
    p.grad = H.t({3, 4}, {dtype = "f32"})
    opt:zero_grad(false)
    H.close(p.grad, {0, 0})
    opt:zero_grad()
    assert.is_nil(p.grad)
  end)
end)

describe("clip_grad_norm", function()
  for name, c in pairs(fx.clip) do
    it(name .. " matches torch.nn.utils.clip_grad_norm_", function()
      local ps = {}
      for i, g in ipairs(c.grads) do
        ps[i] = H.t(g, {dtype = "f64", requires_grad = true}):detach()
        ps[i].requires_grad = true
        ps[i].grad = f64(g)
      end
      local nt = c.norm_type == math.huge and "inf" or c.norm_type
      local total = optim.clip_grad_norm(ps, c.max_norm, {norm_type = nt})
      assert.are.equal(0, total:dim())
      H.close(total, {c.norm}, {atol = 1e-12, rtol = 1e-12})
      for i, p in ipairs(ps) do H.close(p.grad, f64(c.clipped[i]), {atol = 1e-12, rtol = 1e-12}) end
    end)
  end

  it("matches the definition in f32 over many tensors of odd sizes, skipping params without grad", function()
    flame.manual_seed(3)
    local ps, sq = {}, 0
    for i = 1, 23 do
      local p = flame.zeros(i * 37 % 101 + 1, {device = H.device, requires_grad = true})
      if i % 5 ~= 0 then
        p.grad = flame.randn(p:numel(), {device = H.device})
        sq = sq + (p.grad:double() ^ 2):sum():item()
      end
      ps[i] = p
    end
    local before = {}
    for i, p in ipairs(ps) do before[i] = p.grad and p.grad:clone() end
    local total = optim.clip_grad_norm(ps, 1.0)
    local norm = math.sqrt(sq)
    H.close(total, {norm}, {rtol = 1e-5})
    local coef = math.min(1, 1.0 / (norm + 1e-6))
    for i, p in ipairs(ps) do
      if before[i] then H.close(p.grad, before[i] * coef, {atol = 1e-6, rtol = 1e-5}) else assert.is_nil(p.grad) end
    end
  end)

  it("makes a strided gradient contiguous and scales it", function()
    local p = H.t({{1.0, 2.0}, {3.0, 4.0}}, {dtype = "f64", requires_grad = true})
    p.grad = H.t({{3.0, 0.0}, {4.0, 0.0}}, {dtype = "f64"}):t()
    assert.is_false(p.grad:is_contiguous())
    local total = optim.clip_grad_norm({p}, 1.0)
    H.close(total, {5.0}, {atol = 1e-12})
    H.close(p.grad, {{3 / (5 + 1e-6), 4 / (5 + 1e-6)}, {0, 0}}, {atol = 1e-12})
  end)

  it("returns 0 without any gradient; rejects bad arguments", function()
    local p = H.t({1, 2}, {dtype = "f32", requires_grad = true})
    assert.are.equal(0, optim.clip_grad_norm({p}, 1.0):item())
    H.errors(function() optim.clip_grad_norm({p}, "x") end, "max_norm must be a number")
    H.errors(function() optim.clip_grad_norm({p}, 1.0, {norm_type = -1}) end, "norm_type")
    H.errors(function() optim.clip_grad_norm({p, 3}, 1.0) end, "entry 2 is a number")
  end)
end)

describe("EMA", function()
  it("follows its definition, with and without warmup; store/restore and copy_to", function()
    local p = H.t({1.0, 2.0, -3.0}, {dtype = "f64", requires_grad = true})
    local q = H.t({{0.5}}, {dtype = "f64", requires_grad = true})
    local ema = optim.EMA({p, q}, 0.9)
    local ref = {1.0, 2.0, -3.0}
    local ema_w = optim.EMA({p, q}, 0.9, {warmup = true})
    local ref_w = {1.0, 2.0, -3.0}
    local vals = {{2.0, 0.0, 1.0}, {4.0, 4.0, 4.0}, {-1.0, 3.0, 0.5}}
    for step, v in ipairs(vals) do
      flame.no_grad(function() p:copy_(f64(v)) end)
      ema:update()
      ema_w:update()
      local dw = step == 1 and 0.0 or math.min(0.9, step / (9 + step)) -- (1 + t) / (10 + t), t = step - 1
      for k = 1, 3 do
        ref[k] = ref[k] - 0.1 * (ref[k] - v[k])
        ref_w[k] = ref_w[k] - (1 - dw) * (ref_w[k] - v[k])
      end
      H.close(ema.shadow_params[1], ref, {atol = 1e-14})
      H.close(ema_w.shadow_params[1], ref_w, {atol = 1e-14})
    end
    ema:store()
    ema:copy_to()
    H.close(p, ref, {atol = 1e-14})
    ema:restore()
    H.close(p, vals[3])
    -- state_dict round trip
    local e2 = optim.EMA({p, q}, 0.5)
    e2:load_state_dict(ema:state_dict())
    assert.are.equal(0.9, e2.decay)
    assert.are.equal(3, e2.optimization_step)
    H.close(e2.shadow_params[1], ref, {atol = 1e-14})
    H.errors(function() optim.EMA({p}, 1.5) end, "decay must be in [0, 1]")
    H.errors(function() e2:load_state_dict({shadow_params = {p}}) end, "got 1 parameters, the EMA holds 2")
    H.errors(function() e2:restore() end, "nothing stored")
  end)

  it("accepts a module (anything with :parameters())", function()
    local w = H.t({1.0, 1.0}, {requires_grad = true})
    local model = {parameters = function() return {w} end}
    local ema = optim.EMA(model, 0.5)
    flame.no_grad(function() w:fill_(3) end)
    ema:update()
    H.close(ema.shadow_params[1], {2, 2})
  end)
end)

describe("lr_scheduler against PyTorch 1.13 (and diffusers' schedules)", function()
  local function two_groups()
    local p1, p2 = flame.zeros(1, {requires_grad = true}), flame.zeros(1, {requires_grad = true})
    return optim.SGD({{params = {p1}, lr = 0.1}, {params = {p2}, lr = 0.02}}, {lr = 0.1})
  end
  local makers = {
    StepLR = function(o, c) return optim.lr_scheduler.StepLR(o, c.opts) end,
    LinearLR = function(o, c) return optim.lr_scheduler.LinearLR(o, c.opts) end,
    ConstantLR = function(o, c) return optim.lr_scheduler.ConstantLR(o, c.opts) end,
    LambdaLR = function(o) return optim.lr_scheduler.LambdaLR(o, function(e) return 0.95 ^ e end) end,
    cosine_with_warmup = function(o, c) return optim.lr_scheduler.cosine_with_warmup(o, c.opts) end,
    linear_with_warmup = function(o, c) return optim.lr_scheduler.linear_with_warmup(o, c.opts) end,
    constant_with_warmup = function(o, c) return optim.lr_scheduler.constant_with_warmup(o, c.opts) end,
  }
  for name, make in pairs(makers) do
    it(name, function()
      local c = fx.sched[name]
      local opt = two_groups()
      local s = make(opt, c)
      for k, want in ipairs(c.lrs) do
        if k > 1 then opt:step(); s:step() end
        local got = s:get_last_lr()
        H.close(got, want, {atol = 1e-15, rtol = 1e-12}, name .. " step " .. (k - 1))
        assert.are.equal(got[1], opt.param_groups[1].lr)
      end
    end)
  end

  it("state_dict round trip continues the sequence", function()
    local c = fx.sched.cosine_with_warmup
    local opt = two_groups()
    local s = optim.lr_scheduler.cosine_with_warmup(opt, c.opts)
    for _ = 1, 4 do s:step() end
    local opt2 = two_groups()
    local s2 = optim.lr_scheduler.cosine_with_warmup(opt2, c.opts)
    s2:load_state_dict(s:state_dict())
    for k = 6, #c.lrs do
      s:step(); s2:step()
      H.close(s2:get_last_lr(), c.lrs[k], {atol = 1e-15, rtol = 1e-12})
    end
  end)

  it("constant keeps the lr; cosine min_lr floors it", function()
    local opt = two_groups()
    local s = optim.lr_scheduler.constant(opt)
    for _ = 1, 3 do s:step() end
    assert.are.same({0.1, 0.02}, s:get_last_lr())
    opt = two_groups()
    s = optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = 0, total_steps = 4, min_lr = 0.01})
    for _ = 1, 4 do s:step() end
    H.close(s:get_last_lr(), {0.01, 0.01}, {atol = 1e-15})
  end)

  it("rejects bad options", function()
    H.errors(function() optim.lr_scheduler.StepLR(two_groups(), {gamma = 0.5}) end, "StepLR: invalid step_size")
    H.errors(function() optim.lr_scheduler.StepLR(two_groups(), {step_size = 2, gama = 0.5}) end, "unknown option 'gama'")
    H.errors(function() optim.lr_scheduler.LambdaLR(two_groups(), 3) end, "lr_lambda 1 is a number")
    H.errors(function() optim.lr_scheduler.cosine_with_warmup(two_groups(), {warmup_steps = 2}) end, "invalid total_steps")
    H.errors(function() optim.lr_scheduler.constant({}) end, "expected an optimizer")
  end)
end)

describe("optimizer errors", function()
  local p = flame.zeros(2, {requires_grad = true})
  it("checks hyper-parameters as PyTorch does", function()
    H.errors(function() optim.SGD({p}, {lr = -1}) end, "SGD: invalid learning rate: -1")
    H.errors(function() optim.SGD({p}, {}) end, "SGD: lr is required")
    H.errors(function() optim.SGD({p}, {lr = 0.1, momentum = -0.5}) end, "invalid momentum value")
    H.errors(function() optim.SGD({p}, {lr = 0.1, nesterov = true}) end, "nesterov momentum requires a momentum")
    H.errors(function() optim.Adam({p}, {betas = {1.0, 0.999}}) end, "Adam: invalid beta parameter at index 1: 1")
    H.errors(function() optim.AdamW({p}, {betas = {0.9, -0.1}}) end, "AdamW: invalid beta parameter at index 2")
    H.errors(function() optim.Adam({p}, {eps = -1}) end, "invalid epsilon value")
    H.errors(function() optim.Adam({p}, {weight_decay = -1}) end, "invalid weight_decay value")
    H.errors(function() optim.Adam({p}, {lr = 0.1, bogus = 1}) end, "unknown option 'bogus'")
    assert.is_not_nil(optim.AdamW({p}, {fused = true, foreach = false})) -- PyTorch's switches: accepted, ignored
  end)
  it("checks the params", function()
    H.errors(function() optim.Adam({}) end, "empty parameter list")
    H.errors(function() optim.Adam(p) end, "params must be a list")
    H.errors(function() optim.Adam({p, "x"}) end, "entry 2 is a string, not a tensor")
    H.errors(function() optim.Adam({{params = {p}}, {params = {p}}}) end, "more than one parameter group")
    H.errors(function() optim.Adam({flame.zeros(2, {dtype = "i64"})}) end, "not a floating-point tensor")
    H.errors(function() optim.Adam({{params = {p}, lrr = 1}}) end, "unknown option 'lrr'")
  end)
  it("the kernel entry checks dtypes, shapes, devices and layouts", function()
    local q, z = flame.zeros(3), flame.zeros(3)
    local function step(t)
      t.kind = t.kind or "adam"
      t.params = t.params or {q}
      t.grads = t.grads or {z}
      t.buf1, t.buf2, t.steps = t.buf1 or {flame.zeros(3)}, t.buf2 or {flame.zeros(3)}, t.steps or {1}
      return optim._step(t)
    end
    H.errors(function() step{grads = {flame.zeros(3, {dtype = "f64"})}} end, "adam: gradient 1", "must be f32")
    H.errors(function() step{grads = {flame.zeros(4)}} end, "gradient 1", "does not match its parameter")
    H.errors(function() step{buf2 = {flame.zeros(3, {dtype = "f64"})}} end, "exp_avg_sq 1", "must be f32")
    H.errors(function() step{params = {flame.zeros(3, 2):t()}, grads = {flame.zeros(2, 3)}} end, "must be contiguous")
    H.errors(function() step{steps = {0}} end, "step 0 of parameter 1")
    H.errors(function() step{beta1 = 1} end, "invalid beta1")
    H.errors(function() step{amsgrad = true} end, "max_exp_avg_sq 1 is missing")
    H.errors(function() step{kind = "sgd", momentum = 0.9, buf1 = {flame.zeros(2)}} end, "momentum buffer 1")
    H.errors(function() optim._norm({flame.zeros(2), flame.zeros(2, {dtype = "f64"})}, 2) end,
      "tensor 2", "another dtype")
  end)
end)

describe("fused optimizer kernels: CPU vs CUDA", function()
  local test = has_cuda and it or pending
  local sizes = {1, 3, 65535, 65536, 65537, 130000, 7, 100003, 2, 255, 4097}
  local function build(dtype, device)
    flame.manual_seed(11)
    local ps = {}
    for i, n in ipairs(sizes) do
      local p = flame.randn(n):to({dtype = dtype, device = device})
      p.requires_grad = true
      ps[i] = p
    end
    return ps
  end
  local function grads(ps, step)
    flame.manual_seed(100 + step)
    for i, p in ipairs(ps) do
      if not (i == 4 and step == 2) then p.grad = flame.randn(sizes[i]):to({dtype = p.dtype, device = p.device}) else p.grad = nil end
    end
  end
  local function compare(make, dtype, tol)
    local a, b = build(dtype, "cpu"), build(dtype, "cuda")
    local oa, ob = make(a), make(b)
    for step = 1, 3 do
      grads(a, step); grads(b, step)
      oa:step(); ob:step()
    end
    for i = 1, #a do H.close(b[i]:detach():cpu():float(), a[i]:detach():float(), tol, "tensor " .. i) end
  end
  for _, dt in ipairs({"f32", "bf16", "f16"}) do
    local tol = dt == "f32" and {atol = 1e-5, rtol = 1e-5} or {atol = 1e-2, rtol = 1e-2}
    test("AdamW amsgrad " .. dt, function()
      compare(function(ps) return optim.AdamW(ps, {lr = 1e-2, weight_decay = 0.1, amsgrad = true}) end, dt, tol)
    end)
    test("Adam " .. dt, function() compare(function(ps) return optim.Adam(ps, {lr = 1e-2, weight_decay = 0.01}) end, dt, tol) end)
    test("SGD nesterov " .. dt, function()
      compare(function(ps) return optim.SGD(ps, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01}) end, dt, tol)
    end)
  end
  test("clip_grad_norm (2 and inf) and EMA", function()
    for _, nt in ipairs({2, "inf", 1}) do
      local a, b = build("f32", "cpu"), build("f32", "cuda")
      grads(a, 1); grads(b, 1)
      local na = optim.clip_grad_norm(a, 0.5, {norm_type = nt})
      local nb = optim.clip_grad_norm(b, 0.5, {norm_type = nt})
      assert.are.equal("cuda", nb.device:sub(1, 4))
      H.close(nb:cpu(), na, {rtol = 1e-5})
      for i = 1, #a do H.close(b[i].grad:cpu(), a[i].grad, {atol = 1e-6, rtol = 1e-5}) end
    end
    local a, b = build("bf16", "cpu"), build("bf16", "cuda")
    local ea, eb = optim.EMA(a, 0.9), optim.EMA(b, 0.9)
    for i = 1, #a do
      flame.no_grad(function() a[i]:mul_(0.5); b[i]:mul_(0.5) end)
    end
    ea:update(); eb:update()
    for i = 1, #a do H.close(eb.shadow_params[i]:cpu():float(), ea.shadow_params[i]:float(), {atol = 1e-2}) end
  end)
end)

describe("a training loop", function()
  it("AdamW + cosine warmup + clip + EMA fit a linear map", function()
    flame.manual_seed(5)
    local x = flame.randn(64, 4, {device = H.device})
    local w_true = flame.randn(3, 4, {device = H.device})
    local y = flame.F.linear(x, w_true)
    local w = flame.zeros(3, 4, {device = H.device, requires_grad = true})
    local b = flame.zeros(3, {device = H.device, requires_grad = true})
    local opt = optim.AdamW({w, b}, {lr = 0.1, weight_decay = 0})
    local sched = optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = 5, total_steps = 200})
    local ema = optim.EMA({w, b}, 0.9)
    local first
    for _ = 1, 200 do
      opt:zero_grad()
      local loss = (flame.F.linear(x, w, b) - y):pow(2):mean()
      first = first or loss:item()
      loss:backward()
      optim.clip_grad_norm({w, b}, 10.0)
      opt:step()
      sched:step()
      ema:update()
    end
    local final = (flame.F.linear(x, w, b) - y):pow(2):mean():item()
    assert.is_true(final < first * 1e-3, ("loss %g -> %g"):format(first, final))
    H.close(ema.shadow_params[1], w:detach(), {atol = 1e-2})
  end)
end)
