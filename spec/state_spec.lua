-- Specs of flame.save_state / flame.load_state: nested Lua state (tensors, numbers, strings, booleans, tables) in
-- one safetensors file, read back as it was (floats exactly, integers as integers), and the errors.
local H = require "helper"
local flame = H.flame

local path
before_each(function() path = os.tmpname() end)
after_each(function() os.remove(path) end)

local function is_negzero(x) return x == 0 and 1 / x < 0 end

describe("flame.save_state and flame.load_state", function()
  it("round-trip a nested tree: tensors on the device, integers, exact floats, strings, booleans, empty tables", function()
    local w = flame.randn(3, 4, H.opts())
    local tree = {step = 42, big = math.maxinteger, lr = 0.1, third = 1 / 3, tiny = 5e-324, nz = -0.0,
      inf = math.huge, ninf = -math.huge, nan = 0 / 0, name = "a b/c: d", empty_s = "", on = true, off = false,
      none = {}, model = {["down.0.conv.weight"] = w}, list = {10, 2.5, "x", {t = flame.arange(0, 5, 1, H.opts({dtype = "i64"}))}}}
    flame.save_state(path, tree)
    local back = flame.load_state(path, {device = H.device})
    assert.are.equal(42, back.step)
    assert.are.equal("integer", math.type(back.step))
    assert.are.equal(math.maxinteger, back.big)
    assert.are.equal(0.1, back.lr)
    assert.are.equal("float", math.type(back.lr))
    assert.are.equal(1 / 3, back.third)
    assert.are.equal(5e-324, back.tiny)
    assert.is_true(is_negzero(back.nz))
    assert.are.equal(math.huge, back.inf)
    assert.are.equal(-math.huge, back.ninf)
    assert.is_true(back.nan ~= back.nan)
    assert.are.equal("a b/c: d", back.name)
    assert.are.equal("", back.empty_s)
    assert.is_true(back.on)
    assert.is_false(back.off)
    assert.are.same({}, back.none)
    local w2 = back.model["down.0.conv.weight"]
    assert.are.equal(H.device, w2.device)
    assert.is_true(flame.allclose(w2, w, {rtol = 0, atol = 0}))
    assert.are.equal(10, back.list[1])
    assert.are.equal(2.5, back.list[2])
    assert.are.equal("x", back.list[3])
    assert.are.same({0, 1, 2, 3, 4}, back.list[4].t:totable())
    assert.are.equal("i64", back.list[4].t.dtype)
  end)

  it("round-trip an optimizer's, an LR scheduler's and an EMA's state dicts: training continues identically", function()
    local function setup()
      flame.manual_seed(1)
      local p = flame.nn.Parameter(flame.randn(5, H.opts()))
      local opt = flame.optim.AdamW({p}, {lr = 0.01})
      local sched = flame.optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = 2, total_steps = 6})
      local ema = flame.optim.EMA({p}, 0.9, {warmup = true})
      local function step()
        p.grad = (p * p):sum():detach() * 0 + p:detach() * 0.5
        opt:step(); sched:step(); ema:update()
      end
      return p, opt, sched, ema, step
    end
    local p1, _, _, ema1, step1 = setup()
    for _ = 1, 5 do step1() end
    local p2, opt2, sched2, ema2, step2 = setup()
    for _ = 1, 2 do step2() end
    flame.save_state(path, {opt = opt2:state_dict(), sched = sched2:state_dict(), ema = ema2:state_dict(), p = p2})
    local p3, opt3, sched3, ema3, step3 = setup()
    local st = flame.load_state(path, {device = H.device})
    flame.no_grad(function() p3:copy_(st.p) end)
    opt3:load_state_dict(st.opt); sched3:load_state_dict(st.sched); ema3:load_state_dict(st.ema)
    for _ = 1, 3 do step3() end
    assert.are.same(p1:totable(), p3:totable())
    assert.are.same(ema1.shadow_params[1]:totable(), ema3.shadow_params[1]:totable())
  end)

  it("are errors for keys with '/' or all digits, unsaveable values, cycles and non-tables", function()
    assert.has_error(function() flame.save_state(path, {["a/b"] = 1}) end,
      "save_state: key 'a/b' at '' must be a string without '/' (not all digits) or a positive integer")
    assert.has_error(function() flame.save_state(path, {x = {["12"] = 1}}) end,
      "save_state: key '12' at 'x' must be a string without '/' (not all digits) or a positive integer")
    assert.has_error(function() flame.save_state(path, {x = {[0] = 1}}) end,
      "save_state: key 0 at 'x' must be a string without '/' (not all digits) or a positive integer")
    assert.has_error(function() flame.save_state(path, {f = print}) end,
      "save_state: 'f' is a function (tensors, numbers, strings, booleans and tables are saved)")
    local c = {}
    c.self = c
    assert.has_error(function() flame.save_state(path, {c = c}) end,
      "save_state: the table at 'c/self' is reached twice (a cycle or a shared table)")
    assert.has_error(function() flame.save_state(path, 3) end, "save_state: expected a table to save, got a number")
  end)

  it("is an error for metadata that save_state does not write", function()
    flame.save(path, {t = flame.zeros(1)}, {step = "12"})
    assert.has_error(function() flame.load_state(path) end,
      "load_state: metadata 'step' = '12' is not a value save_state writes")
    flame.save(path, {["t/x"] = flame.zeros(1)}, {t = "i:1"})
    assert.has_error(function() flame.load_state(path) end, "load_state: 't/x' lies under a value, not a table")
    flame.save(path, {["t/x"] = flame.zeros(1)}, {["t/x"] = "i:1"})
    assert.has_error(function() flame.load_state(path) end, "load_state: 't/x' is both a value and a table")
  end)
end)
