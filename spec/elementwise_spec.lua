-- Elementwise ops: every unary and binary op of the API against plain-Lua math,
-- numbers on either side of the operators, add's alpha, both gelus, clamp with
-- one bound, maximum/minimum ties, where, lerp, comparisons, in-place forms,
-- non-contiguous operands, and finite-difference gradients (with broadcasting).
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local TIGHT = {atol = 1e-12, rtol = 1e-12}
local F32TOL = {atol = 1e-6, rtol = 1e-5}

local function tanh(x)
  if x > 20 then return 1 elseif x < -20 then return -1 end
  local e = math.exp(2 * x)
  return (e - 1) / (e + 1)
end
local function sigmoid(x) return 1 / (1 + math.exp(-x)) end
local K = math.sqrt(2 / math.pi)

-- name -> {reference, input range lo, hi}; the ranges keep clear of kinks
-- (relu, abs at 0) and of the domain edges (log, sqrt, rsqrt at 0).
local UNARY = {
  neg = {function(x) return -x end, -3, 3},
  exp = {math.exp, -3, 3},
  log = {math.log, 0.1, 4},
  sqrt = {math.sqrt, 0.1, 4},
  rsqrt = {function(x) return 1 / math.sqrt(x) end, 0.1, 4},
  abs = {math.abs, -3, 3},
  sin = {math.sin, -3, 3},
  cos = {math.cos, -3, 3},
  tanh = {tanh, -3, 3},
  sigmoid = {sigmoid, -6, 6},
  relu = {function(x) return x > 0 and x or 0 end, -3, 3},
  gelu = {function(x) return 0.5 * x * (1 + R.erf(x / math.sqrt(2))) end, -4, 4},
  silu = {function(x) return x * sigmoid(x) end, -5, 5},
}
local UNARY_NAMES = {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "silu"}
local function gelu_tanh(x) return 0.5 * x * (1 + tanh(K * (x + 0.044715 * x ^ 3))) end

-- Inputs in [lo, hi) that stay at least 1/64 away from 0 (the kinks).
local function inputs(shape, lo, hi, seed)
  local a = R.from(R.rand(shape, lo, hi, seed))
  for k, v in ipairs(a.data) do
    if math.abs(v) < 1 / 64 then a.data[k] = v < 0 and -0.25 or 0.25 end
  end
  return R.nest(a)
end

describe("H.gradcheck", function()
  it("passes a correct gradient and fails one that a hook doubles", function()
    local x = H.t(inputs({2, 3}, -1, 1, 3), F64)
    H.gradcheck(function(a) return a:exp() end, {x})
    local err = H.errors(function()
      H.gradcheck(function(a)
        local y = a:exp()
        if y.requires_grad then -- not in the no_grad numeric passes
          y:register_hook(function(g) return g * 2 end)
        end
        return y
      end, {x})
    end, "gradcheck", "analytic", "numeric")
    assert.truthy(err:find("input 1", 1, true))
  end)
end)

describe("unary ops", function()
  for _, name in ipairs(UNARY_NAMES) do
    local ref, lo, hi = table.unpack(UNARY[name])
    it(name .. " matches the reference in f64 and f32, as a method and a function", function()
      local x = inputs({3, 4}, lo, hi, #name)
      local want = R.nest(R.map(R.from(x), ref))
      H.close(H.t(x, F64)[name](H.t(x, F64)), want, TIGHT, name .. " f64")
      H.close(H.t(x)[name](H.t(x)), want, F32TOL, name .. " f32")
      H.close(flame[name](H.t(x, F64)), want, TIGHT, "flame." .. name)
      assert.are.equal("f64", H.t(x, F64)[name](H.t(x, F64)).dtype)
    end)

    it(name .. " has the right gradient", function()
      H.gradcheck(function(a) return a[name](a) end, {H.t(inputs({2, 3}, lo, hi, 5), F64)})
    end)

    if name ~= "gelu" then it(name .. "_ works in place and returns the tensor", function()
      local x = inputs({2, 3}, lo, hi, 9)
      local t = H.t(x, F64)
      assert.are.equal(t, t[name .. "_"](t))
      H.close(t, R.nest(R.map(R.from(x), ref)), TIGHT)
    end) end -- (like torch, gelu has no in-place form)
  end

  it("compute in the storage dtype for f16 and bf16", function()
    local x = {-1.5, -0.25, 0.5, 2}
    local h = H.t(x, {dtype = "f16"}):exp()
    assert.are.equal("f16", h.dtype)
    H.close(h, R.nest(R.map(R.from(x), math.exp)), {atol = 0, rtol = 2 ^ -10}) -- within one f16 ulp
    local b = H.t(x, {dtype = "bf16"}):sigmoid()
    assert.are.equal("bf16", b.dtype)
    H.close(b, R.nest(R.map(R.from(x), sigmoid)), {atol = 0, rtol = 2 ^ -7}) -- within one bf16 ulp
  end)

  it("keep integers for neg, abs and relu", function()
    local t = H.t({-3, 0, 2})
    assert.are.same({3, 0, -2}, t:neg():cpu():totable())
    assert.are.same({3, 0, 2}, t:abs():cpu():totable())
    assert.are.same({0, 0, 2}, t:relu():cpu():totable())
    assert.are.same({-1, 0, 1}, t:sign():cpu():totable())
    assert.are.equal("i64", t:relu().dtype)
    H.close(H.t({-2.5, 0, 0.5}, F64):sign(), {-1, 0, 1})
    H.gradcheck(function(a) return a:sign() * a end, {H.t({-2.5, 1, 0.5}, F64)}) -- sign's own gradient is 0
  end)

  it("handle the special values", function()
    local t = H.t({0, -1, math.huge, -math.huge}, F64)
    H.close(t:log(), {-math.huge, 0 / 0, math.huge, 0 / 0})
    H.close(t:exp(), {1, math.exp(-1), math.huge, 0})
    H.close(t:sigmoid(), {0.5, sigmoid(-1), 1, 0})
    H.close(t:tanh(), {0, tanh(-1), 1, -1})
    H.close(H.t({4, 0}, F64):rsqrt(), {0.5, math.huge})
  end)
end)

describe("gelu", function()
  local x = {{-4, -2.5, -1, -0.5}, {0.25, 1, 2, 3.5}}
  it("approximate = 'none' (the default) uses erf", function()
    local want = R.nest(R.map(R.from(x), UNARY.gelu[1]))
    H.close(H.t(x, F64):gelu(), want, TIGHT)
    H.close(H.t(x, F64):gelu("none"), want, TIGHT)
    -- hand values: gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = 0.8413447460685429
    H.close(H.t({1.0}, F64):gelu(), {0.8413447460685429}, TIGHT)
  end)

  it("approximate = 'tanh' uses the tanh formula", function()
    H.close(H.t(x, F64):gelu("tanh"), R.nest(R.map(R.from(x), gelu_tanh)), TIGHT)
    -- the two differ, by at most about 5e-4 on this range
    local d = (H.t(x, F64):gelu("tanh") - H.t(x, F64):gelu()):abs():max():item()
    assert(d > 1e-5 and d < 1e-3, "gelu tanh vs erf difference " .. d)
  end)

  it("has the right gradient for both", function()
    H.gradcheck(function(a) return a:gelu() end, {H.t(x, F64)})
    H.gradcheck(function(a) return a:gelu("tanh") end, {H.t(x, F64)})
  end)

  it("refuses another approximation", function()
    H.errors(function() return H.t(x):gelu("fast") end, "gelu", "fast")
  end)
end)

describe("clamp", function()
  local x = {{-2.5, -1, -0.25}, {0.4, 1.5, 3}}
  local function ref(lo, hi)
    return R.nest(R.map(R.from(x), function(v)
      if lo and v < lo then v = lo end
      if hi and v > hi then v = hi end
      return v
    end))
  end

  it("clamps with both bounds, min only and max only", function()
    H.close(H.t(x):clamp(-1.5, 1), ref(-1.5, 1))
    H.close(H.t(x):clamp(0), ref(0, nil))
    H.close(H.t(x):clamp(nil, 0.5), ref(nil, 0.5))
    H.close(H.t(x):clamp(), x)
  end)

  it("clamp_ works in place", function()
    local t = H.t(x)
    assert.are.equal(t, t:clamp_(-1, 1))
    H.close(t, ref(-1, 1))
    t = H.t(x)
    t:clamp_(nil, 0)
    H.close(t, ref(nil, 0))
  end)

  it("keeps integer tensors integer, rounding the bounds inward", function()
    local t = H.t({-3, -1, 0, 2, 5}):clamp(-1.5, 2.5)
    assert.are.equal("i64", t.dtype)
    assert.are.same({-1, -1, 0, 2, 2}, t:cpu():totable())
  end)

  it("passes the gradient only inside the bounds", function()
    local p = H.t(x, F64) -- no element sits on a bound
    H.gradcheck(function(a) return a:clamp(-1.5, 1) end, {p})
    H.gradcheck(function(a) return a:clamp(0) end, {p})
    H.gradcheck(function(a) return a:clamp(nil, 0.5) end, {p})
    local a = H.t(x, {dtype = "f64", requires_grad = true})
    a:clamp(-1.5, 1):sum():backward()
    H.close(a.grad, {{0, 1, 1}, {1, 0, 0}})
  end)

  it("refuses min > max", function()
    H.errors(function() return H.t(x):clamp(2, 1) end, "clamp")
  end)
end)

describe("binary ops", function()
  local BIN = {
    add = function(a, b) return a + b end,
    sub = function(a, b) return a - b end,
    mul = function(a, b) return a * b end,
    div = function(a, b) return a / b end,
    pow = function(a, b) return a ^ b end,
    maximum = function(a, b) return math.max(a, b) end,
    minimum = function(a, b) return math.min(a, b) end,
  }
  local a = R.rand({3, 4}, 0.25, 2, 1)
  local b = R.rand({3, 4}, -1.5, 1.5, 2)

  for _, name in ipairs({"add", "sub", "mul", "div", "pow", "maximum", "minimum"}) do
    it(name .. " of same-shape tensors matches the reference, f64 and f32", function()
      local want = R.nest(R.zip(BIN[name], R.from(a), R.from(b)))
      H.close(H.t(a, F64)[name](H.t(a, F64), H.t(b, F64)), want, TIGHT)
      H.close(H.t(a)[name](H.t(a), H.t(b)), want, F32TOL)
      H.close(flame[name](H.t(a, F64), H.t(b, F64)), want, TIGHT)
    end)

    it(name .. " broadcasts", function()
      local col, row = R.rand({3, 1}, 0.5, 2, 3), R.rand({4}, -1, 1, 4)
      H.close(H.t(col, F64)[name](H.t(col, F64), H.t(row, F64)), R.nest(R.zip(BIN[name], R.from(col), R.from(row))), TIGHT)
      H.close(H.t(col, F64)[name](H.t(col, F64), 1.5), R.nest(R.zip(BIN[name], R.from(col), 1.5)), TIGHT)
    end)
  end

  it("operators take a number on either side", function()
    local x = R.rand({2, 3}, 0.5, 2, 7)
    local t = H.t(x, F64)
    local X = R.from(x)
    local function z(f) return R.nest(R.map(X, f)) end
    H.close(t + 2, z(function(v) return v + 2 end), TIGHT)
    H.close(2 + t, z(function(v) return 2 + v end), TIGHT)
    H.close(t - 2, z(function(v) return v - 2 end), TIGHT)
    H.close(2 - t, z(function(v) return 2 - v end), TIGHT)
    H.close(t * 3, z(function(v) return v * 3 end), TIGHT)
    H.close(3 * t, z(function(v) return 3 * v end), TIGHT)
    H.close(t / 4, z(function(v) return v / 4 end), TIGHT)
    H.close(4 / t, z(function(v) return 4 / v end), TIGHT)
    H.close(t ^ 2, z(function(v) return v ^ 2 end), TIGHT)
    H.close(2 ^ t, z(function(v) return 2 ^ v end), TIGHT)
    H.close(t ^ 0.5, z(math.sqrt), TIGHT)
    H.close(-t, z(function(v) return -v end), TIGHT)
    H.close(t + t * t, z(function(v) return v + v * v end), TIGHT)
    H.close(t:sub(1.5), z(function(v) return v - 1.5 end), TIGHT)
    H.close(t:mul(-2), z(function(v) return v * -2 end), TIGHT)
    H.close(t:div(8), z(function(v) return v / 8 end), TIGHT)
    H.close(t:pow(3), z(function(v) return v ^ 3 end), TIGHT)
  end)

  it("integer operators stay integer, except true division", function()
    local t = H.t({{7, -7}, {2, 0}})
    assert.are.same({{8, -6}, {3, 1}}, (t + 1):cpu():totable())
    assert.are.same({{-5, 9}, {0, 2}}, (2 - t):cpu():totable())
    assert.are.same({{49, 49}, {4, 0}}, (t ^ 2):cpu():totable())
    assert.are.same({{128, 1 / 128}, {4, 1}}, (2 ^ t:double()):cpu():totable())
    local q = t / 2
    assert.are.equal("f32", q.dtype)
    H.close(q, {{3.5, -3.5}, {1, 0}})
  end)

  it("add takes alpha: self + alpha * other", function()
    local x, y = R.rand({2, 3}, -1, 1, 11), R.rand({3}, -1, 1, 12)
    H.close(H.t(x, F64):add(H.t(y, F64), 2.5), R.nest(R.zip(function(p, q) return p + 2.5 * q end, R.from(x), R.from(y))), TIGHT)
    H.close(H.t(x, F64):add(3, -2), R.nest(R.zip(function(p) return p - 6 end, R.from(x))), TIGHT)
    H.gradcheck(function(p, q) return p:add(q, -1.5) end, {H.t(x, F64), H.t(y, F64)})
    local t = H.t(x, F64)
    assert.are.equal(t, t:add_(H.t(y, F64), 2))
    H.close(t, R.nest(R.zip(function(p, q) return p + 2 * q end, R.from(x), R.from(y))), TIGHT)
  end)

  it("maximum and minimum with ties give the common value and split the gradient", function()
    local a = H.t({1, 2, 3, 4}, {dtype = "f64", requires_grad = true})
    local b = H.t({4, 2, 1, 4}, {dtype = "f64", requires_grad = true})
    local mx, mn = a:maximum(b), a:minimum(b)
    H.close(mx, {4, 2, 3, 4})
    H.close(mn, {1, 2, 1, 4})
    mx:sum():backward()
    H.close(a.grad, {0, 0.5, 1, 0.5})
    H.close(b.grad, {1, 0.5, 0, 0.5})
    local c = H.t({1, 2, 3, 4}, {dtype = "f64", requires_grad = true})
    local d = H.t({4, 2, 1, 4}, {dtype = "f64", requires_grad = true})
    c:minimum(d):sum():backward()
    H.close(c.grad, {1, 0.5, 0, 0.5})
    H.close(d.grad, {0, 0.5, 1, 0.5})
    -- max(u) with a tensor is the elementwise maximum too
    H.close(H.t({1, 5}):max(H.t({3, 2})), {3, 5})
    H.close(H.t({1, 5}):min(H.t({3, 2})), {1, 2})
  end)

  it("maximum and minimum propagate NaN from either side", function()
    local n = 0 / 0
    H.close(H.t({n, 1, 2}, F64):maximum(H.t({1, n, 1}, F64)), {n, n, 2})
    H.close(H.t({n, 1, 2}, F64):minimum(H.t({1, n, 1}, F64)), {n, n, 1})
  end)

  it("refuse shapes that do not broadcast, naming both", function()
    H.errors(function() return H.t({1, 2, 3}) + H.t({1, 2}) end, "add", "[3]", "[2]")
  end)
end)

describe("where", function()
  local cond = {{true, false, true, false}, {false, false, true, true}, {true, true, false, false}}
  local x, y = R.rand({3, 4}, -1, 1, 21), R.rand({3, 4}, -1, 1, 22)
  local function pick(c, p, q) if c then return p end return q end

  it("picks from a where cond holds, else from b", function()
    H.close(flame.where(H.t(cond), H.t(x, F64), H.t(y, F64)), R.nest(R.zip(pick, R.from(cond), R.from(x), R.from(y))), TIGHT)
  end)

  it("takes numbers on either side and broadcasts all three", function()
    H.close(flame.where(H.t(cond), H.t(x, F64), 0), R.nest(R.zip(pick, R.from(cond), R.from(x), 0)), TIGHT)
    H.close(flame.where(H.t(cond), -1, H.t(y, F64)), R.nest(R.zip(pick, R.from(cond), -1, R.from(y))), TIGHT)
    local c = {{true}, {false}, {true}}
    local r = {1.5, 2.5, 3.5, 4.5}
    H.close(flame.where(H.t(c), H.t(r, F64), H.t({{-1}, {-2}, {-3}}, F64)),
      {{1.5, 2.5, 3.5, 4.5}, {-2, -2, -2, -2}, {1.5, 2.5, 3.5, 4.5}})
  end)

  it("takes two numbers, on the condition's device", function()
    local c = H.t({true, false, true})
    local r = flame.where(c, 1, 0)
    assert.are.equal("i64", r.dtype)
    assert.are.equal(c.device, r.device)
    assert.are.same({1, 0, 1}, r:cpu():totable())
    local f = flame.where(c, 2.5, -1)
    assert.are.equal("f32", f.dtype)
    H.close(f, {2.5, -1, 2.5})
  end)

  it("needs a bool condition", function()
    H.errors(function() return flame.where(H.t({1, 0}), H.t({1, 2}), H.t({3, 4})) end, "where", "bool")
  end)

  it("sends the gradient to the chosen side", function()
    H.gradcheck(function(p, q) return flame.where(H.t(cond), p, q) end, {H.t(x, F64), H.t(y, F64)})
  end)
end)

describe("lerp", function()
  local a, b = R.rand({2, 3}, -1, 1, 31), R.rand({2, 3}, -1, 1, 32)
  local w = R.rand({2, 3}, 0, 1, 33)
  local function lerp(p, q, v) return p + v * (q - p) end

  it("interpolates with a number or a tensor weight", function()
    H.close(H.t(a, F64):lerp(H.t(b, F64), 0.25), R.nest(R.zip(lerp, R.from(a), R.from(b), 0.25)), TIGHT)
    H.close(H.t(a, F64):lerp(H.t(b, F64), H.t(w, F64)), R.nest(R.zip(lerp, R.from(a), R.from(b), R.from(w))), TIGHT)
    H.close(H.t(a, F64):lerp(H.t(b, F64), 0), a, TIGHT)
    H.close(H.t(a, F64):lerp(H.t(b, F64), 1), b, TIGHT)
    H.close(flame.lerp(H.t(a, F64), H.t(b, F64), 0.5), R.nest(R.zip(lerp, R.from(a), R.from(b), 0.5)), TIGHT)
  end)

  it("has the right gradient in all three arguments", function()
    H.gradcheck(function(p, q, v) return p:lerp(q, v) end, {H.t(a, F64), H.t(b, F64), H.t(w, F64)})
    H.gradcheck(function(p, q) return p:lerp(q, 0.3) end, {H.t(a, F64), H.t(b, F64)})
  end)
end)

describe("comparisons", function()
  local a = {{1, 2, 3}, {4, 5, 6}}
  local b = {{3, 2, 1}, {4, 0, 7}}
  local CMP = {
    eq = function(p, q) return p == q end, ne = function(p, q) return p ~= q end,
    lt = function(p, q) return p < q end, le = function(p, q) return p <= q end,
    gt = function(p, q) return p > q end, ge = function(p, q) return p >= q end,
  }
  for _, name in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
    it(name .. " returns a bool tensor, against a tensor, a number and a broadcast row", function()
      local r = H.t(a)[name](H.t(a), H.t(b))
      assert.are.equal("bool", r.dtype)
      assert.are.same(R.nest(R.zip(CMP[name], R.from(a), R.from(b))), r:cpu():totable())
      assert.are.same(R.nest(R.zip(CMP[name], R.from(a), 4)), H.t(a)[name](H.t(a), 4):cpu():totable())
      assert.are.same(R.nest(R.zip(CMP[name], R.from(a), R.from({2, 5, 3}))),
        H.t(a, F64)[name](H.t(a, F64), H.t({2, 5, 3}, {dtype = "f32"})):cpu():totable())
      local half = H.t({1.5, 2, 2.5})
      assert.are.same(R.nest(R.zip(CMP[name], R.from({1.5, 2, 2.5}), 2)), half[name](half, 2):cpu():totable())
    end)
  end

  it("treat NaN as unequal to everything", function()
    local n = H.t({0 / 0, 1})
    assert.are.same({false, true}, n:eq(n):cpu():totable())
    assert.are.same({true, false}, n:ne(n):cpu():totable())
    assert.are.same({false, false}, n:lt(0):cpu():totable())
  end)

  it("t == u is identity, not elementwise", function()
    local t = H.t({1, 2})
    local u = t
    assert.is_true(t == u)
    assert.is_false(t == t:clone())
    assert.is_false(t == H.t({1, 2}))
  end)

  it("logical ops combine bool tensors", function()
    local p, q = H.t({true, true, false, false}), H.t({true, false, true, false})
    assert.are.same({true, false, false, false}, p:logical_and(q):cpu():totable())
    assert.are.same({true, true, true, false}, p:logical_or(q):cpu():totable())
    assert.are.same({false, false, true, true}, p:logical_not():cpu():totable())
  end)
end)

describe("in-place binary ops", function()
  local x, y = R.rand({2, 3}, 0.5, 2, 41), R.rand({2, 3}, 0.5, 2, 42)
  local BIN = {
    add_ = function(p, q) return p + q end, sub_ = function(p, q) return p - q end,
    mul_ = function(p, q) return p * q end, div_ = function(p, q) return p / q end,
    pow_ = function(p, q) return p ^ q end,
    maximum_ = function(p, q) return math.max(p, q) end, minimum_ = function(p, q) return math.min(p, q) end,
  }
  for _, name in ipairs({"add_", "sub_", "mul_", "div_", "pow_", "maximum_", "minimum_"}) do
    it(name .. " writes into self and returns it, with a tensor, a broadcast row and a number", function()
      local t = H.t(x, F64)
      assert.are.equal(t, t[name](t, H.t(y, F64)))
      H.close(t, R.nest(R.zip(BIN[name], R.from(x), R.from(y))), TIGHT)
      t = H.t(x, F64)
      t[name](t, H.t({1.5, 0.75, 1.25}, F64))
      H.close(t, R.nest(R.zip(BIN[name], R.from(x), R.from({1.5, 0.75, 1.25}))), TIGHT)
      t = H.t(x, F64)
      t[name](t, 1.5)
      H.close(t, R.nest(R.zip(BIN[name], R.from(x), 1.5)), TIGHT)
    end)
  end

  it("write through a view into its base", function()
    local base = H.t({{1, 2, 3}, {4, 5, 6}}, F64)
    base:narrow(2, 2, 2):mul_(10)
    base:t()[1]:add_(100) -- column 1
    H.close(base, {{101, 20, 30}, {104, 50, 60}})
  end)

  it("read an overlapping source before overwriting it", function()
    local t = H.t({{1, 2}, {3, 4}}, F64)
    t:add_(t:t())
    H.close(t, {{2, 5}, {5, 8}})
    local v = H.t({1, 2, 3, 4}, F64)
    v:narrow(1, 2, 3):add_(v:narrow(1, 1, 3))
    H.close(v, {1, 3, 5, 7})
    local s = H.t({1, 2, 3}, F64)
    s:mul_(s) -- the same elements in the same order: fine in place
    H.close(s, {1, 4, 9})
  end)

  it("refuse a source that does not broadcast to self, and results self cannot hold", function()
    local t = H.t({1, 2, 3}, F64)
    H.errors(function() t:add_(H.t({{1}, {2}}, F64)) end, "add")
    local i = H.t({1, 2, 3})
    H.errors(function() i:add_(0.5) end, "add_", "i64")
    H.errors(function() i:div_(2) end, "div_", "i64")
    i:add_(H.t({1, 1, 1}, {dtype = "i32"}))
    assert.are.same({2, 3, 4}, i:cpu():totable())
  end)

  it("refuse to modify a leaf that requires grad", function()
    local t = H.t({1, 2}, {dtype = "f64", requires_grad = true})
    H.errors(function() t:add_(1) end, "add", "leaf")
    H.errors(function() t:exp_() end, "exp", "leaf")
  end)
end)

describe("non-contiguous operands", function()
  local base = R.rand({4, 3}, 0.25, 2, 51)
  local B = R.from(base)

  it("unary ops read transposed, narrowed and expanded inputs in logical order", function()
    local tt = H.t(base, F64):t()
    assert.is_false(tt:is_contiguous())
    local T = R.permute(B, {2, 1})
    H.close(tt:exp(), R.nest(R.map(T, math.exp)), TIGHT)
    local nr = H.t(base, F64):narrow(2, 2, 2)
    local N = R.fill({4, 2}, function(c) return R.at(B, {c[1], c[2] + 1}) end)
    H.close(nr:sqrt(), R.nest(R.map(N, math.sqrt)), TIGHT)
    local ex = H.t({{0.5}, {1}, {1.5}}, F64):expand(3, 4)
    H.close(ex:log(), R.nest(R.fill({3, 4}, function(c) return math.log(c[1] * 0.5) end)), TIGHT)
    H.close(tt:sigmoid(), R.nest(R.map(T, sigmoid)), TIGHT)
  end)

  it("binary ops mix transposed, narrowed and expanded operands", function()
    local tt = H.t(base, F64):t() -- [3, 4]
    local T = R.permute(B, {2, 1})
    local other = R.rand({3, 4}, -1, 1, 52)
    H.close(tt + H.t(other, F64), R.nest(R.zip(function(p, q) return p + q end, T, R.from(other))), TIGHT)
    local row = H.t({{1, 2, 3, 4}}, F64):expand(3, 4)
    H.close(tt * row, R.nest(R.zip(function(p, q) return p * q end, T, R.from({1, 2, 3, 4}))), TIGHT)
    local nr = H.t(other, F64):narrow(2, 2, 2) -- [3, 2]
    local N = R.fill({3, 2}, function(c) return R.at(R.from(other), {c[1], c[2] + 1}) end)
    H.close(nr:div(tt:narrow(2, 1, 2)), R.nest(R.zip(function(p, q) return p / q end, N,
      R.fill({3, 2}, function(c) return R.at(T, c) end))), TIGHT)
    H.close(tt:maximum(H.t(other, F64):t():t()), R.nest(R.zip(math.max, T, R.from(other))), TIGHT)
  end)

  it("gradients flow back through non-contiguous operands", function()
    H.gradcheck(function(p, q) return p:t() * q:narrow(1, 2, 3) end, {H.t(base, F64), H.t(R.rand({4, 4}, -1, 1, 53), F64)})
    H.gradcheck(function(p) return p:t():exp() + p:t():narrow(2, 1, 1):expand(3, 4) end, {H.t(base, F64)})
  end)
end)

describe("broadcast gradients", function()
  local PAIRS = {{{3, 1}, {1, 4}}, {{2, 3, 4}, {4}}, {{1}, {2, 3}}, {{5, 1, 3}, {1, 4, 1}}}
  -- inputs per op: away from division by zero, from non-positive bases, and
  -- from ties (b sits half a grid step off a's grid)
  local OPS = {
    add = {function(p, q) return p + q end, {-1, 1}, {-1, 1}},
    sub = {function(p, q) return p - q end, {-1, 1}, {-1, 1}},
    mul = {function(p, q) return p * q end, {-1, 1}, {-1, 1}},
    div = {function(p, q) return p / q end, {-1, 1}, {0.5, 2}},
    pow = {function(p, q) return p ^ q end, {0.5, 2}, {-1.5, 1.5}},
    maximum = {function(p, q) return p:maximum(q) end, {-1, 1}, {-1, 1}, 1 / 512},
    minimum = {function(p, q) return p:minimum(q) end, {-1, 1}, {-1, 1}, 1 / 512},
    lerp = {function(p, q) return p:lerp(q, 0.3) end, {-1, 1}, {-1, 1}},
  }
  for _, name in ipairs({"add", "sub", "mul", "div", "pow", "maximum", "minimum", "lerp"}) do
    local f, ra, rb, off = table.unpack(OPS[name])
    for i, pair in ipairs(PAIRS) do
      local sa, sb = pair[1], pair[2]
      it(name .. " " .. table.concat(sa, "x") .. " with " .. table.concat(sb, "x"), function()
        local a = H.t(R.rand(sa, ra[1], ra[2], 60 + i), F64)
        local b = H.t(R.nest(R.map(R.from(R.rand(sb, rb[1], rb[2], 70 + i)), function(v) return v + (off or 0) end)), F64)
        H.gradcheck(f, {a, b})
        H.gradcheck(function(p, q) return f(q, p) end, {a, b}) -- and the other way round
      end)
    end
  end

  for i, pair in ipairs(PAIRS) do
    local sa, sb = pair[1], pair[2]
    it("where " .. table.concat(sa, "x") .. " with " .. table.concat(sb, "x"), function()
      local shape = R.bshape(sa, sb)
      local cond = H.t(R.nest(R.fill(shape, function(_, k) return k % 3 ~= 0 end)))
      local a, b = H.t(R.rand(sa, -1, 1, 80 + i), F64), H.t(R.rand(sb, -1, 1, 90 + i), F64)
      H.gradcheck(function(p, q) return flame.where(cond, p, q) end, {a, b})
    end)

    it("lerp with a broadcast weight " .. table.concat(sa, "x") .. " with " .. table.concat(sb, "x"), function()
      local a, b = H.t(R.rand(sa, -1, 1, 100 + i), F64), H.t(R.rand(sb, -1, 1, 110 + i), F64)
      local w = H.t(R.rand({1}, 0, 1, 120 + i), F64)
      H.gradcheck(function(p, q, v) return p:lerp(q, v) end, {a, b, w})
    end)
  end

  it("numbers on either side of the operators", function()
    local x = H.t(R.rand({2, 3}, 0.5, 2, 130), F64)
    H.gradcheck(function(p) return 2 - p end, {x})
    H.gradcheck(function(p) return 3 / p end, {x})
    H.gradcheck(function(p) return 1.5 ^ p end, {x})
    H.gradcheck(function(p) return p ^ 3 end, {x})
    H.gradcheck(function(p) return p ^ -0.5 end, {x})
    H.gradcheck(function(p) return 2 * p + 1 end, {x})
    H.gradcheck(function(p) return -p / 4 - 2 end, {x})
  end)
end)
