-- flame.optim.GradScaler: PyTorch's dynamic loss scaling. With a power-of-two scale, scaling the loss and
-- unscaling the gradients are exact, so a scaled run must give bit-identical parameters to an unscaled one;
-- a step with an inf or NaN gradient is skipped and the scale backed off; clean steps grow it.
local H = require "helper"
local flame = H.flame
local F = flame.F

local function model()
  flame.manual_seed(3)
  local m = flame.nn.Sequential(flame.nn.Linear(4, 8), flame.nn.GELU(), flame.nn.Linear(8, 2))
  return m:to(H.device)
end
local function batch(i)
  flame.manual_seed(100 + i)
  return flame.randn(5, 4):to(H.device), flame.randn(5, 2):to(H.device)
end

describe("flame.optim.GradScaler", function()
  it("gives the same parameters as unscaled training (power-of-two scales are exact)", function()
    local m1, m2 = model(), model()
    local o1 = flame.optim.AdamW(m1:parameters(), {lr = 1e-2})
    local o2 = flame.optim.AdamW(m2:parameters(), {lr = 1e-2})
    local scaler = flame.optim.GradScaler({init_scale = 1024.0, growth_interval = 2})
    for i = 1, 5 do
      local x, y = batch(i)
      o1:zero_grad()
      F.mse_loss(m1(x), y):backward()
      o1:step()
      o2:zero_grad()
      scaler:scale(F.mse_loss(m2(x), y)):backward()
      scaler:step(o2)
      scaler:update()
    end
    assert.equal(1024.0 * 4, scaler:get_scale()) -- grew after steps 2 and 4
    local p1, p2 = m1:parameters(), m2:parameters()
    for i = 1, #p1 do H.close(p2[i], p1[i], {atol = 0, rtol = 0}, "param " .. i) end
  end)

  it("skips a step with an inf or NaN gradient and backs the scale off", function()
    for _, bad in ipairs({math.huge, 0 / 0}) do
      local m = model()
      local opt = flame.optim.SGD(m:parameters(), {lr = 0.1})
      local scaler = flame.optim.GradScaler({init_scale = 8.0})
      local before = m:parameters()[1]:clone()
      local x, y = batch(1)
      scaler:scale(F.mse_loss(m(x), y)):backward()
      local g = m:parameters()[3].grad
      g:fill_(bad)
      assert.is_nil(scaler:step(opt))
      scaler:update()
      H.close(m:parameters()[1], before, {atol = 0, rtol = 0}, "skipped step")
      assert.equal(4.0, scaler:get_scale())
      assert.equal(0, scaler:state_dict()._growth_tracker)
    end
  end)

  it("unscale_ divides the gradients once, so that clipping sees true norms", function()
    local m = model()
    local opt = flame.optim.SGD(m:parameters(), {lr = 0.1})
    local scaler = flame.optim.GradScaler({init_scale = 256.0})
    local x, y = batch(2)
    F.mse_loss(m(x), y):backward()
    local want = {}
    for i, p in ipairs(m:parameters()) do want[i] = p.grad:clone(); p.grad = nil end
    scaler:scale(F.mse_loss(m(x), y)):backward()
    scaler:unscale_(opt)
    for i, p in ipairs(m:parameters()) do H.close(p.grad, want[i], {atol = 0, rtol = 0}, "grad " .. i) end
    scaler:step(opt) -- does not unscale again
    scaler:update()
    assert.equal(256.0, scaler:get_scale())
  end)

  it("scales tables of losses and passes everything through when disabled", function()
    local scaler = flame.optim.GradScaler({init_scale = 4.0})
    local t = scaler:scale({a = flame.tensor(1.5), b = {flame.tensor(2.0)}})
    assert.equal(6.0, t.a:item())
    assert.equal(8.0, t.b[1]:item())
    local off = flame.optim.GradScaler({enabled = false})
    local l = flame.tensor(3.0)
    assert.is_true(rawequal(off:scale(l), l))
    assert.equal(1.0, off:get_scale())
    assert.same({}, off:state_dict())
    local m = model()
    local opt = flame.optim.SGD(m:parameters(), {lr = 0.1})
    assert.equal("loss", off:step(setmetatable({}, {__index = {step = function() return "loss" end}})))
    assert.is_nil(off:update())
    assert.truthy(opt)
  end)

  it("round-trips its state_dict", function()
    local a = flame.optim.GradScaler({init_scale = 32.0, growth_interval = 7})
    local sd = a:state_dict()
    assert.same({scale = 32.0, growth_factor = 2.0, backoff_factor = 0.5, growth_interval = 7, _growth_tracker = 0}, sd)
    local b = flame.optim.GradScaler()
    b:load_state_dict(sd)
    assert.same(sd, b:state_dict())
  end)

  it("rejects misuse with clear errors", function()
    local m = model()
    local opt = flame.optim.SGD(m:parameters(), {lr = 0.1})
    local s = flame.optim.GradScaler()
    local x, y = batch(3)
    s:scale(F.mse_loss(m(x), y)):backward()
    s:unscale_(opt)
    H.errors(function() s:unscale_(opt) end, "GradScaler:unscale_: already called on this optimizer since the last update()")
    s:step(opt)
    H.errors(function() s:step(opt) end, "GradScaler:step: already called on this optimizer since the last update()")
    H.errors(function() s:unscale_(opt) end, "GradScaler:unscale_: called after step()")
    s:update()
    H.errors(function() s:update() end, "GradScaler:update: no inf checks were recorded")
    H.errors(function() s:step({}) end, "GradScaler: expected an optimizer")
    H.errors(function() flame.optim.GradScaler({init_scale = -1.0}) end, "GradScaler: init_scale must be > 0")
    H.errors(function() flame.optim.GradScaler({growth_interval = 1.5}) end, "GradScaler: growth_interval must be a positive integer, got 1.5")
    H.errors(function() flame.optim.GradScaler({bogus = 1}) end, "GradScaler: unknown option 'bogus'")
    H.errors(function() flame.optim.GradScaler({backoff_factor = 1.0}) end, "GradScaler: backoff_factor must be in (0, 1)")
    H.errors(function() s:load_state_dict({}) end, "GradScaler:load_state_dict: the state dict is empty")
    H.errors(function() s:scale(3) end, "GradScaler:scale: expected a tensor or a table of tensors, got number")
    local p = flame.randn(3):to(H.device):half()
    p.requires_grad = true
    p.grad = flame.ones(3):to(H.device):half()
    local o16 = flame.optim.SGD({p}, {lr = 0.1})
    H.errors(function() s:step(o16) end, "attempting to unscale f16 gradients")
  end)
end)
