-- The backend contract seen from Lua: scalars passed by value, operands of
-- different dtypes converted on load, and 1-based index tensors handed to
-- the kernels with their base. Runs on the device under test (FLAME_DEVICE).
local H = require "spec.helper"
local flame = H.flame

local function f64(data) return H.t(data, {dtype = "f64"}) end

describe("scalars by value", function()
  local x = {{-1.5, 0.25, 2.0}, {3.0, -0.5, 1.0}}
  local ops = {
    {"add", function(a, s) return a + s end, function(a, s) return a:add(H.t(s, {dtype = a.dtype})) end},
    {"sub", function(a, s) return a - s end, function(a, s) return a:sub(H.t(s, {dtype = a.dtype})) end},
    {"mul", function(a, s) return a * s end, function(a, s) return a:mul(H.t(s, {dtype = a.dtype})) end},
    {"div", function(a, s) return a / s end, function(a, s) return a:div(H.t(s, {dtype = a.dtype})) end},
  }

  it("match the same op with the scalar as a tensor, in both orders", function()
    for _, dt in ipairs({"f32", "f64", "f16", "bf16"}) do
      local a = H.t(x, {dtype = dt})
      for _, o in ipairs(ops) do
        local name, by_value, by_tensor = o[1], o[2], o[3]
        H.close(by_value(a, 3), by_tensor(a, {{3}}), {atol = 0, rtol = 0}, name .. " " .. dt)
        local rev = H.t({{3}}, {dtype = dt})
        local want = ({add = rev + a, sub = rev:sub(a), mul = rev:mul(a), div = rev:div(a)})[name]
        local got = ({add = 3 + a, sub = 3 - a, mul = 3 * a, div = 3 / a})[name]
        H.close(got, want, {atol = 0, rtol = 0}, "reversed " .. name .. " " .. dt)
        assert.are.equal(dt, got.dtype)
      end
    end
  end)

  it("keep a tensor's dtype for a Lua integer, compute in f32 for a fraction", function()
    local i = H.t({1, 2, 3}, {dtype = "i32"})
    assert.are.equal("i32", (i * 2).dtype)
    H.close(i * 2, {2, 4, 6})
    assert.are.equal("f32", (i * 2.5).dtype)
    assert.are.equal("f32", (i * 2.0).dtype) -- a Lua float, even integral, as a Python float in torch
    H.close(2.0 - i, {1, 0, -1})
    H.close(i * 2.5, {2.5, 5, 7.5})
    H.close(i:lt(2.5), {true, true, false})
    H.close(i:lt(2), {true, false, false})
    local b = H.t({true, false}, {dtype = "bool"})
    assert.are.equal("i64", (b + 1).dtype)
    H.close(b + 1, {2, 1})
  end)

  it("round the scalar once to the compute dtype", function()
    -- 1/3 rounds to 0.333984375 in bf16: compared unrounded (in f32) it would differ
    H.close(H.t({1 / 3}, {dtype = "bf16"}):eq(1 / 3), {true})
    H.close(H.t({1 / 3}, {dtype = "f16"}):eq(1 / 3), {true})
    H.close(H.t({1 / 3}, {dtype = "f32"}):eq(1 / 3), {true})
    H.close(H.t({1 / 3}, {dtype = "f64"}):eq(1 / 3), {true})
    H.close(H.t({1 / 3}, {dtype = "bf16"}):lt(1 / 3), {false})
  end)

  it("comparisons and the in-place forms", function()
    local a = H.t(x)
    H.close(a:gt(0.5), {{false, false, true}, {true, false, true}})
    H.close(a:eq(1), {{false, false, false}, {false, false, true}})
    local c = a:clone()
    c:mul_(2)
    H.close(c, a * 2)
    c:add_(-1)
    H.close(c, a * 2 - 1)
    H.errors(function() local i = H.t({1, 2}, {dtype = "i32"}); i:div_(2) end, "div_", "cannot be stored")
  end)

  it("differentiate in both orders (gradcheck)", function()
    local p = f64({{0.7, 1.3, 2.1}, {0.4, 1.9, 0.9}})
    local fns = {
      function(a) return a + 2 end, function(a) return 2 - a end, function(a) return a * -3 end,
      function(a) return a / 4 end, function(a) return 4 / a end, function(a) return a ^ 3 end,
      function(a) return a ^ 0.5 end, function(a) return a:pow(0) end, function(a) return a:maximum(1.0) end,
      function(a) return a:minimum(1.0) end,
    }
    for _, fn in ipairs(fns) do H.gradcheck(fn, {p}) end
    H.gradcheck(function(a) return flame.pow(2.5, a) end, {p})
  end)

  it("records no saved tensor for x * 2", function()
    local a = H.t({1.0, 2.0}, {requires_grad = true})
    local y = a * 2
    a:detach():add_(1) -- an in-place change of a after x * 2 does not spoil its gradient
    y:sum():backward()
    H.close(a.grad, {2, 2})
    assert.are.equal("MulBackward", y.grad_fn)
  end)
end)

describe("mixed dtypes", function()
  it("convert on load: the result is the cast-then-op result", function()
    local pairs_ = {{"bf16", "f32"}, {"f16", "f32"}, {"f16", "bf16"}, {"i32", "f32"}, {"i64", "f64"}, {"bool", "f32"}, {"i32", "i64"}}
    local va, vb = {{1.5, -2.0, 3.0}, {0.0, 4.0, 1.0}}, {{0.5, 1.0, -2.0}}
    for _, p in ipairs(pairs_) do
      local a, b = H.t(va, {dtype = p[1]}), H.t(vb, {dtype = p[2]})
      local ct = flame.promote_types and flame.promote_types(p[1], p[2]) or (a + b).dtype
      for _, op in ipairs({"add", "sub", "mul", "maximum", "lt", "eq"}) do
        local got = a[op](a, b)
        local want = a:to({dtype = ct})[op](a:to({dtype = ct}), b:to({dtype = ct}))
        H.close(got, want, {atol = 0, rtol = 0}, op .. " " .. p[1] .. " " .. p[2])
        assert.are.equal(want.dtype, got.dtype)
      end
    end
  end)

  it("true division, logic and integer unary ops", function()
    local i = H.t({1, 2, 3}, {dtype = "i32"})
    H.close(i / H.t({2, 2, 2}, {dtype = "i64"}), {0.5, 1, 1.5})
    H.close(H.t({0.0, 2.5}):logical_and(H.t({1, 1}, {dtype = "i32"})), {false, true})
    local e = i:exp()
    assert.are.equal("f32", e.dtype)
    H.close(e, {math.exp(1), math.exp(2), math.exp(3)}, {rtol = 1e-6})
    H.close(i:sqrt(), {1, math.sqrt(2), math.sqrt(3)}, {rtol = 1e-6})
  end)

  it("in place into the wider dtype without a copy of the narrower", function()
    local a = H.t({1.0, 2.0, 3.0})
    a:add_(H.t({0.5, 0.5, 0.5}, {dtype = "bf16"}))
    H.close(a, {1.5, 2.5, 3.5})
    assert.are.equal("f32", a.dtype)
  end)

  it("give each input its own dtype's gradient", function()
    local a = H.t({1.0, 2.0}, {requires_grad = true})
    local b = H.t({3.0, 4.0}, {dtype = "bf16", requires_grad = true})
    local y = a * b
    assert.are.equal("f32", y.dtype)
    y:sum():backward()
    H.close(a.grad, {3, 4})
    H.close(b.grad, {1, 2})
    assert.are.equal("bf16", b.grad.dtype)
    H.gradcheck(function(p, q) return (p * q:to({dtype = "f32"})):to({dtype = "f64"}) end,
      {f64({0.5, 1.5}), f64({2.0, -1.0})}, {atol = 1e-3, rtol = 1e-3, eps = 1e-3})
  end)
end)

describe("index base", function()
  local t = H.t({{1, 2, 3}, {4, 5, 6}})
  it("takes i32 and i64 index tensors as they are, 1-based", function()
    for _, dt in ipairs({"i32", "i64"}) do
      H.close(t:index_select(1, H.t({2, 1}, {dtype = dt})), {{4, 5, 6}, {1, 2, 3}})
      H.close(t:gather(2, H.t({{3, 1}, {2, 2}}, {dtype = dt})), {{3, 1}, {5, 5}})
      H.close(flame.zeros(2, 3, H.opts()):scatter_add(2, H.t({{1, 1, 3}}, {dtype = dt}), H.t({{1, 2, 3}})),
        {{3, 0, 3}, {0, 0, 0}})
      H.close(flame.zeros(3, H.opts()):index_add_(1, H.t({3, 3}, {dtype = dt}), H.t({1.0, 2.0})), {0, 0, 3})
    end
  end)

  it("returns 1-based argmax and max indices", function()
    H.close(t:argmax(2), {3, 3})
    H.close(t:argmin(), 1)
    local _, i = t:max(1)
    H.close(i, {2, 2, 2})
    local g = H.t({{1.0, 5.0}, {7.0, 2.0}}, {requires_grad = true})
    local v = g:max(2)
    v:sum():backward()
    H.close(g.grad, {{0, 1}, {1, 0}}) -- the gradient goes to the 1-based index the kernel wrote
  end)

  it("quotes a bad index as the caller wrote it", function()
    H.errors(function() return t:index_select(1, H.t({3})) end, "index_select", "index 3 out of range", "size 2")
    H.errors(function() return t:index_select(1, H.t({0}, {dtype = "i32"})) end, "index 0 out of range")
    H.errors(function() return t:gather(2, H.t({{4}, {1}})) end, "gather", "index 4 out of range", "size 3")
  end)

  it("differentiates index_select and gather with 1-based indices (gradcheck)", function()
    local x = f64({{0.5, 1.5, 2.5}, {3.5, 4.5, 5.5}})
    H.gradcheck(function(a) return a:index_select(2, H.t({3, 1, 3})) end, {x})
    H.gradcheck(function(a) return a:gather(1, H.t({{2, 1, 2}})) end, {x})
  end)
end)
