-- Creation ops and in-place fills: flame.tensor and its dtype inference,
-- zeros/ones/empty/full, arange/linspace/eye, the random creators and their
-- determinism, *_like, and fill_/zero_/uniform_/normal_/copy_.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local function same_shape(t, shape)
  assert.are.same(shape, t.shape)
end

-- Sample statistics in plain Lua.
local function stats(t)
  local v = R.of(t:double()).data
  local m = R.mean(v)
  return m, math.sqrt(R.var(v, 1)), v
end

describe("flame.tensor", function()
  it("makes 0-dim tensors from numbers and booleans, inferring the dtype", function()
    local i = H.t(3)
    assert.are.equal("i64", i.dtype)
    same_shape(i, {})
    assert.are.equal(0, i:dim())
    assert.are.equal(3, i:item())
    assert.are.equal("integer", math.type(i:item()))
    local f = H.t(2.5)
    assert.are.equal("f32", f.dtype)
    assert.are.equal(2.5, f:item())
    local b = H.t(true)
    assert.are.equal("bool", b.dtype)
    assert.are.equal(true, b:item())
    assert.are.equal(H.device, i.device:match("^[a-z]+"))
  end)

  it("reads nested tables row-major and gives them back with totable", function()
    local data = {{{1, 2, 3}, {4, 5, 6}}, {{7, 8, 9}, {10, 11, 12}}}
    local t = H.t(data)
    same_shape(t, {2, 2, 3})
    assert.are.equal(12, t:numel())
    assert.are.same(data, t:cpu():totable())
    assert.are.equal(8, t[2][1][2]:item())
  end)

  it("infers i64 for integers, f32 when any number is a float, bool for booleans", function()
    assert.are.equal("i64", H.t({1, 2, 3}).dtype)
    assert.are.equal("f32", H.t({1, 2.5, 3}).dtype)
    assert.are.equal("f32", H.t({{1, 2}, {3, 4.0}}).dtype) -- 4.0 is a Lua float
    assert.are.equal("bool", H.t({true, false}).dtype)
    assert.are.same({true, false}, H.t({true, false}):cpu():totable())
    local e = H.t({})
    assert.are.equal("f32", e.dtype)
    same_shape(e, {0})
  end)

  it("takes an explicit dtype and requires_grad from the options", function()
    local t = H.t({1, 2}, {dtype = "f64"})
    assert.are.equal("f64", t.dtype)
    assert.are.same({1.0, 2.0}, t:cpu():totable())
    local g = H.t({1.5, 2}, {dtype = "f64", requires_grad = true})
    assert.is_true(g.requires_grad)
    assert.is_true(g.is_leaf)
    local i = H.t({1.9, -1.9}, {dtype = "i32"})
    assert.are.same({1, -1}, i:cpu():totable()) -- truncation toward zero
  end)

  it("refuses ragged tables, mixed booleans and numbers, and non-numbers", function()
    H.errors(function() return flame.tensor({{1, 2}, {3}}, H.opts()) end, "ragged")
    H.errors(function() return flame.tensor({1, true}, H.opts()) end, "mixes booleans and numbers")
    H.errors(function() return flame.tensor({1, "x"}, H.opts()) end, "expected a number")
  end)

  it("copies a tensor argument rather than sharing its storage", function()
    local a = H.t({1.0, 2.0})
    local b = flame.tensor(a)
    b:fill_(7)
    H.close(a, {1, 2})
    H.close(b, {7, 7})
  end)
end)

describe("zeros, ones, empty, full", function()
  it("take a shape as numbers or as one table, with options", function()
    for _, make in ipairs({
      function(o) return flame.zeros(2, 3, o) end,
      function(o) return flame.zeros({2, 3}, o) end,
    }) do
      local t = make(H.opts({dtype = "f64"}))
      same_shape(t, {2, 3})
      assert.are.equal("f64", t.dtype)
      H.close(t, {{0, 0, 0}, {0, 0, 0}}, {atol = 0, rtol = 0})
    end
    local o = flame.ones({3}, H.opts({dtype = "i32"}))
    assert.are.equal("i32", o.dtype)
    assert.are.same({1, 1, 1}, o:cpu():totable())
    local b = flame.ones(2, H.opts({dtype = "bool"}))
    assert.are.same({true, true}, b:cpu():totable())
    local e = flame.empty(4, 5, H.opts())
    same_shape(e, {4, 5})
    assert.are.equal("f32", e.dtype)
  end)

  it("make 0-dim tensors from an empty shape and empty tensors from a zero size", function()
    local s = flame.zeros({}, H.opts())
    same_shape(s, {})
    assert.are.equal(0, s:item())
    local z = flame.ones(0, 3, H.opts())
    same_shape(z, {0, 3})
    assert.are.equal(0, z:numel())
  end)

  it("full infers the dtype from the value unless told", function()
    local f = flame.full({2, 2}, 1.5, H.opts())
    assert.are.equal("f32", f.dtype)
    H.close(f, {{1.5, 1.5}, {1.5, 1.5}})
    assert.are.equal("i64", flame.full({2}, 7, H.opts()).dtype)
    assert.are.same({7, 7}, flame.full({2}, 7, H.opts()):cpu():totable())
    assert.are.same({true}, flame.full({1}, true, H.opts()):cpu():totable())
    local d = flame.full({3}, -2, H.opts({dtype = "f64"}))
    assert.are.equal("f64", d.dtype)
    H.close(d, {-2, -2, -2})
  end)

  it("refuse negative sizes", function()
    H.errors(function() return flame.zeros(2, -1, H.opts()) end, "negative")
  end)
end)

describe("arange", function()
  local function ref(start, stop, step)
    local out, v, i = {}, start, 0
    while (step > 0 and v < stop) or (step < 0 and v > stop) do
      out[#out + 1] = v
      i = i + 1
      v = start + i * step
    end
    return out
  end

  it("is half-open with integer arguments, and i64", function()
    local t = flame.arange(5, H.opts())
    assert.are.equal("i64", t.dtype)
    assert.are.same({0, 1, 2, 3, 4}, t:cpu():totable())
    assert.are.same({2, 3, 4}, flame.arange(2, 5, H.opts()):cpu():totable())
    assert.are.same({0, 3, 6, 9}, flame.arange(0, 10, 3, H.opts()):cpu():totable())
    assert.are.same({0, 3, 6}, flame.arange(0, 9, 3, H.opts()):cpu():totable()) -- 9 excluded
    assert.are.same({5, 3, 1}, flame.arange(5, 0, -2, H.opts()):cpu():totable())
    same_shape(flame.arange(3, 3, H.opts()), {0})
    same_shape(flame.arange(5, 0, H.opts()), {0})
  end)

  it("takes float steps (f32 by default) and stays half-open", function()
    local cases = {{0, 1, 0.25}, {1, 2.5, 0.5}, {0, 1, 0.1}, {5, 0, -1.5}, {-1, 1, 0.3}, {0.5, 3, 1}}
    for _, c in ipairs(cases) do
      local t = flame.arange(c[1], c[2], c[3], H.opts())
      assert.are.equal("f32", t.dtype)
      H.close(t, ref(c[1], c[2], c[3]), {atol = 1e-6}, "arange" .. table.concat(c, ","))
    end
    local d = flame.arange(0, 1, 0.1, H.opts({dtype = "f64"}))
    assert.are.equal(10, d:numel())
    H.close(d, ref(0, 1, 0.1), {atol = 1e-15, rtol = 0})
    assert.are.equal(4, flame.arange(1, 2.5, 0.4, H.opts()):numel()) -- 1, 1.4, 1.8, 2.2
  end)

  it("refuses a zero step", function()
    H.errors(function() return flame.arange(0, 1, 0, H.opts()) end, "arange", "step")
  end)
end)

describe("linspace", function()
  it("spaces n points evenly, both ends included", function()
    local cases = {{0, 1, 5}, {-1, 1, 3}, {2, -3, 6}, {0, 0.3, 4}, {-1.1, 2.7, 9}, {0, 1, 7}}
    for _, c in ipairs(cases) do
      local a, b, n = c[1], c[2], c[3]
      local want = {}
      for i = 0, n - 1 do want[i + 1] = a + (b - a) * i / (n - 1) end
      local t = flame.linspace(a, b, n, H.opts({dtype = "f64"}))
      H.close(t, want, {atol = 1e-14, rtol = 0})
      assert.are.equal(a, t[1]:item())
      assert.are.equal(b, t[n]:item(), "linspace must end exactly at b")
      H.close(flame.linspace(a, b, n, H.opts()), want, {atol = 1e-6})
    end
  end)

  it("ends exactly at b for any endpoints", function()
    local x = 17
    local function u()
      x = (1103515245 * x + 12345) % 2147483648
      return x / 2147483648
    end
    for _ = 1, 300 do
      local a, b, n = u() * 20 - 10, u() * 20 - 10, 2 + math.floor(u() * 40)
      local t = flame.linspace(a, b, n, H.opts({dtype = "f64"}))
      assert.are.equal(a, t[1]:item())
      assert(t[n]:item() == b, string.format("linspace(%.17g, %.17g, %d) ends at %.17g", a, b, n, t[n]:item()))
      local mid = t[n // 2 + 1]:item()
      assert(math.abs(mid - (a + (b - a) * (n // 2) / (n - 1))) < 1e-13)
    end
  end)

  it("handles one and zero points", function()
    H.close(flame.linspace(3, 7, 1, H.opts()), {3})
    same_shape(flame.linspace(3, 7, 0, H.opts()), {0})
    H.errors(function() return flame.linspace(0, 1, -1, H.opts()) end, "linspace")
  end)
end)

describe("eye", function()
  it("is the identity, square or rectangular, in any dtype", function()
    H.close(flame.eye(3, H.opts()), {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, {atol = 0, rtol = 0})
    H.close(flame.eye(2, 4, H.opts()), {{1, 0, 0, 0}, {0, 1, 0, 0}}, {atol = 0, rtol = 0})
    H.close(flame.eye(3, 2, H.opts()), {{1, 0}, {0, 1}, {0, 0}}, {atol = 0, rtol = 0})
    local i = flame.eye(2, H.opts({dtype = "i64"}))
    assert.are.equal("i64", i.dtype)
    assert.are.same({{1, 0}, {0, 1}}, i:cpu():totable())
    same_shape(flame.eye(0, H.opts()), {0, 0})
  end)
end)

describe("rand and randn", function()
  it("give the requested shape and dtype", function()
    for _, dt in ipairs({"f32", "f64", "f16", "bf16"}) do
      local r = flame.rand(3, 4, H.opts({dtype = dt}))
      same_shape(r, {3, 4})
      assert.are.equal(dt, r.dtype)
      local n = flame.randn({2, 5}, H.opts({dtype = dt}))
      same_shape(n, {2, 5})
      assert.are.equal(dt, n.dtype)
    end
    H.errors(function() return flame.rand(2, H.opts({dtype = "i64"})) end, "rand", "floating")
  end)

  it("rand stays in [0, 1) in every float dtype", function()
    flame.manual_seed(11)
    for _, dt in ipairs({"f32", "f64", "f16", "bf16"}) do
      local v = R.of(flame.rand(20000, H.opts({dtype = dt}))).data
      for k = 1, #v do
        assert(v[k] >= 0 and v[k] < 1, dt .. " rand gave " .. v[k] .. " at " .. k)
      end
    end
  end)

  it("same seed, same numbers; another seed or the next call, other numbers", function()
    flame.manual_seed(42)
    local a, b = flame.rand(50, H.opts()), flame.randn(50, H.opts())
    flame.manual_seed(42)
    local a2, b2 = flame.rand(50, H.opts()), flame.randn(50, H.opts())
    H.close(a2, a, {atol = 0, rtol = 0})
    H.close(b2, b, {atol = 0, rtol = 0})
    local a3 = flame.rand(50, H.opts())
    assert.is_false(pcall(H.close, a3, a, {atol = 0, rtol = 0}))
    flame.manual_seed(43)
    assert.is_false(pcall(H.close, flame.rand(50, H.opts()), a, {atol = 0, rtol = 0}))
    -- the same stream whatever the dtype: f64 holds the f32 values exactly
    flame.manual_seed(42)
    H.close(flame.rand(50, H.opts({dtype = "f64"})), a:double(), {atol = 0, rtol = 0})
  end)

  it("have the right moments on a large sample", function()
    flame.manual_seed(7)
    local m, s, v = stats(flame.rand(100000, H.opts()))
    assert(math.abs(m - 0.5) < 0.01, "rand mean " .. m)
    assert(math.abs(s - math.sqrt(1 / 12)) < 0.01, "rand std " .. s)
    local below = 0
    for _, x in ipairs(v) do if x < 0.25 then below = below + 1 end end
    assert(math.abs(below / #v - 0.25) < 0.01, "rand quartile " .. below / #v)
    m, s, v = stats(flame.randn(100000, H.opts()))
    assert(math.abs(m) < 0.02, "randn mean " .. m)
    assert(math.abs(s - 1) < 0.02, "randn std " .. s)
    local within = 0
    for _, x in ipairs(v) do if math.abs(x) < 1 then within = within + 1 end end
    assert(math.abs(within / #v - 0.6827) < 0.01, "randn P(|x|<1) " .. within / #v)
  end)
end)

describe("randint", function()
  it("is half-open [low, high), i64 by default, and hits every value", function()
    flame.manual_seed(3)
    local t = flame.randint(-3, 4, {2000}, H.opts())
    assert.are.equal("i64", t.dtype)
    same_shape(t, {2000})
    local seen = {}
    for _, v in ipairs(R.of(t).data) do
      assert(math.type(v) == "integer" and v >= -3 and v < 4, "randint gave " .. tostring(v))
      seen[v] = (seen[v] or 0) + 1
    end
    for v = -3, 3 do
      assert(seen[v] and math.abs(seen[v] / 2000 - 1 / 7) < 0.04, "value " .. v .. " seen " .. tostring(seen[v]))
    end
  end)

  it("is deterministic under manual_seed and honours the dtype", function()
    flame.manual_seed(9)
    local a = flame.randint(0, 100, {3, 4}, H.opts())
    flame.manual_seed(9)
    local b = flame.randint(0, 100, {3, 4}, H.opts({dtype = "i32"}))
    assert.are.equal("i32", b.dtype)
    same_shape(b, {3, 4})
    assert.are.same(a:cpu():totable(), b:cpu():totable())
    H.errors(function() return flame.randint(5, 5, {2}, H.opts()) end, "randint", "low < high")
  end)
end)

describe("*_like", function()
  it("copy shape, dtype and device, and take overrides", function()
    local base = flame.zeros(2, 3, H.opts({dtype = "f64"}))
    local z = flame.zeros_like(base)
    same_shape(z, {2, 3})
    assert.are.equal("f64", z.dtype)
    assert.are.equal(base.device, z.device)
    H.close(flame.ones_like(base), {{1, 1, 1}, {1, 1, 1}})
    local o = flame.ones_like(base, {dtype = "i32"})
    assert.are.equal("i32", o.dtype)
    assert.are.same({{1, 1, 1}, {1, 1, 1}}, o:cpu():totable())
    same_shape(flame.empty_like(base), {2, 3})
    local f = flame.full_like(base, 2.5)
    assert.are.equal("f64", f.dtype)
    H.close(f, {{2.5, 2.5, 2.5}, {2.5, 2.5, 2.5}})
    local r = flame.rand_like(base)
    assert.are.equal("f64", r.dtype)
    for _, v in ipairs(R.of(r).data) do assert(v >= 0 and v < 1) end
    local n = flame.randn_like(base, {dtype = "f32"})
    assert.are.equal("f32", n.dtype)
    same_shape(n, {2, 3})
    assert.is_false(z.requires_grad)
  end)

  it("follow the seed like rand and randn", function()
    local base = flame.empty(4, 4, H.opts())
    flame.manual_seed(5)
    local a = flame.rand_like(base)
    flame.manual_seed(5)
    H.close(flame.rand(4, 4, H.opts()), a, {atol = 0, rtol = 0})
  end)
end)

describe("in-place fills", function()
  it("fill_ and zero_ write every element and return the tensor itself", function()
    local t = flame.empty(2, 3, H.opts())
    assert.are.equal(t, t:fill_(3.5))
    H.close(t, {{3.5, 3.5, 3.5}, {3.5, 3.5, 3.5}})
    assert.are.equal(t, t:zero_())
    H.close(t, {{0, 0, 0}, {0, 0, 0}})
    local i = flame.zeros(3, H.opts({dtype = "i32"})):fill_(-4)
    assert.are.same({-4, -4, -4}, i:cpu():totable())
  end)

  it("fill_ on a strided view touches only the view", function()
    local t = flame.zeros(3, 4, H.opts())
    t:narrow(2, 2, 2):fill_(1)
    t:t()[4]:fill_(2) -- column 4 through a transposed view
    H.close(t, {{0, 1, 1, 2}, {0, 1, 1, 2}, {0, 1, 1, 2}})
  end)

  it("uniform_ draws within [lo, hi) with the right mean; normal_ has the right moments", function()
    flame.manual_seed(21)
    local u = flame.empty(50000, H.opts()):uniform_(-2, 6)
    local m, s, v = stats(u)
    for _, x in ipairs(v) do assert(x >= -2 and x < 6, "uniform_ gave " .. x) end
    assert(math.abs(m - 2) < 0.05, "uniform_ mean " .. m)
    assert(math.abs(s - 8 / math.sqrt(12)) < 0.05, "uniform_ std " .. s)
    local d = flame.empty(1000, H.opts()):uniform_()
    for _, x in ipairs(R.of(d).data) do assert(x >= 0 and x < 1) end
    local n = flame.empty(50000, H.opts({dtype = "f64"})):normal_(3, 0.5)
    m, s = stats(n)
    assert(math.abs(m - 3) < 0.01, "normal_ mean " .. m)
    assert(math.abs(s - 0.5) < 0.01, "normal_ std " .. s)
  end)

  it("uniform_ and normal_ follow the seed, also into a strided target", function()
    flame.manual_seed(8)
    local a = flame.empty(4, 3, H.opts()):uniform_()
    flame.manual_seed(8)
    local b = flame.empty(3, 4, H.opts()):t():uniform_() -- a non-contiguous 4x3 view
    assert.is_false(b:is_contiguous())
    H.close(b, a, {atol = 0, rtol = 0})
    flame.manual_seed(8)
    local c = flame.empty(4, 3, H.opts()):normal_()
    flame.manual_seed(8)
    H.close(flame.randn(4, 3, H.opts()), c, {atol = 0, rtol = 0})
  end)

  it("uniform_ and normal_ refuse integer tensors", function()
    H.errors(function() return flame.zeros(3, H.opts({dtype = "i64"})):uniform_() end, "uniform_", "floating")
    H.errors(function() return flame.zeros(3, H.opts({dtype = "i32"})):normal_() end, "normal_", "floating")
  end)

  it("copy_ copies with broadcasting and casting, into views too", function()
    local t = flame.zeros(2, 3, H.opts())
    assert.are.equal(t, t:copy_(H.t({{1, 2, 3}, {4, 5, 6}}, {dtype = "f64"})))
    H.close(t, {{1, 2, 3}, {4, 5, 6}})
    t:copy_(H.t({7, 8, 9}, {dtype = "i64"})) -- a row broadcast over both rows
    H.close(t, {{7, 8, 9}, {7, 8, 9}})
    t:copy_(H.t({{1}, {2}}))
    H.close(t, {{1, 1, 1}, {2, 2, 2}})
    t:copy_(5)
    H.close(t, {{5, 5, 5}, {5, 5, 5}})
    t:narrow(2, 2, 2):copy_(H.t({{1, 2}, {3, 4}}):t())
    H.close(t, {{5, 1, 3}, {5, 2, 4}})
    local i = flame.zeros(2, H.opts({dtype = "i32"})):copy_(H.t({2.7, -2.7}))
    assert.are.same({2, -2}, i:cpu():totable())
    H.errors(function() return t:copy_(H.t({1, 2})) end, "copy_")
  end)

  it("copy_ from an overlapping view of itself reads the old values", function()
    local t = H.t({{1, 2}, {3, 4}})
    t:copy_(t:t())
    H.close(t, {{1, 3}, {2, 4}})
    local v = H.t({1, 2, 3, 4, 5})
    v:narrow(1, 2, 4):copy_(v:narrow(1, 1, 4)) -- a shift by one
    H.close(v, {1, 1, 2, 3, 4})
  end)
end)
