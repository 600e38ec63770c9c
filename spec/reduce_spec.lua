-- Reductions: sum/mean/prod/var/std/max/min/argmax/argmin/norm/cumsum over one
-- dim, dim tables, negative dims, keepdim and all dims, against plain-Lua
-- references; 1-based indices; and finite-difference gradients.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local TIGHT = {atol = 1e-12, rtol = 1e-12}
local SHAPE = {2, 3, 4}
local X = R.distinct(SHAPE, -2, 2, 5) -- no ties anywhere
local XA = R.from(X)

-- The dims arguments to try, and what each means for a 3-D tensor.
local DIMS = {1, 2, 3, -1, -2, {1, 3}, {-1, -3}, {2, 3}, {1, 2, 3}}

local function dname(d)
  if d == nil then return "all dims" end
  if type(d) == "table" then return "dims {" .. table.concat(d, ",") .. "}" end
  return "dim " .. d
end

local REF = {
  sum = R.sum,
  mean = R.mean,
  prod = R.prod,
  amax = function(v) return v[R.argmax(v)] end,
  amin = function(v) return v[R.argmin(v)] end,
}

describe("sum, mean, prod, amax, amin", function()
  for _, op in ipairs({"sum", "mean", "prod", "amax", "amin"}) do
    for _, d in ipairs(DIMS) do
      it(op .. " over " .. dname(d) .. ", with and without keepdim", function()
        local t = H.t(X, F64)
        H.close(t[op](t, d), R.nest(R.reduce(XA, d, REF[op], false)), TIGHT, op)
        H.close(t[op](t, d, true), R.nest(R.reduce(XA, d, REF[op], true)), TIGHT, op .. " keepdim")
        H.close(H.t(X)[op](H.t(X), d), R.nest(R.reduce(XA, d, REF[op], false)), {atol = 1e-5, rtol = 1e-5}, op .. " f32")
      end)
    end

    it(op .. " over all dims gives a 0-dim tensor, or all-ones dims with keepdim", function()
      local t = H.t(X, F64)
      local all = t[op](t)
      assert.are.same({}, all.shape)
      H.close(all, REF[op](XA.data), TIGHT)
      local k = t[op](t, nil, true)
      assert.are.same({1, 1, 1}, k.shape)
      H.close(k, {{{REF[op](XA.data)}}}, TIGHT)
    end)
  end

  it("sum and prod of integers and bools count in i64", function()
    local i = H.t({{1, 2, 3}, {4, 5, 6}}, {dtype = "i32"})
    local s = i:sum(2)
    assert.are.equal("i64", s.dtype)
    assert.are.same({6, 15}, s:cpu():totable())
    assert.are.same({4, 10, 18}, i:prod(1):cpu():totable())
    assert.are.equal(720, i:prod():item())
    local b = H.t({true, false, true, true})
    assert.are.equal("i64", b:sum().dtype)
    assert.are.equal(3, b:sum():item())
  end)

  it("mean refuses integers", function()
    H.errors(function() return H.t({1, 2}):mean() end, "mean", "floating")
  end)

  it("reduce a transposed input in its logical order", function()
    local t = H.t(X, F64):transpose(1, 3) -- [4, 3, 2]
    local P = R.permute(XA, {3, 2, 1})
    H.close(t:sum(1), R.nest(R.reduce(P, 1, R.sum)), TIGHT)
    H.close(t:amax({2, 3}), R.nest(R.reduce(P, {2, 3}, REF.amax)), TIGHT)
    H.close(t:narrow(1, 2, 2):mean(-1), R.nest(R.reduce(R.fill({2, 3, 2}, function(c)
      return R.at(P, {c[1] + 1, c[2], c[3]}) end), -1, R.mean)), TIGHT)
  end)

  it("handle empty tensors and 0-dim tensors", function()
    local e = flame.zeros(0, 3, H.opts(F64))
    H.close(e:sum(), 0)
    H.close(e:sum(1), {0, 0, 0})
    H.close(e:prod(1), {1, 1, 1})
    assert.is_true(e:mean():item() ~= e:mean():item(), "mean of nothing is NaN")
    H.errors(function() return e:amax() end, "empty")
    local s = H.t(2.5, F64)
    H.close(s:sum(), 2.5)
    H.close(s:mean(), 2.5)
  end)

  it("refuse bad dims, naming the shape", function()
    H.errors(function() return H.t(X):sum(4) end, "dim 4", "[2, 3, 4]")
    H.errors(function() return H.t(X):sum(-4) end, "dim -4")
    H.errors(function() return H.t(X):sum(0) end, "1-based")
    H.errors(function() return H.t(X):sum({}) end, "dims")
  end)
end)

-- Sums over leading dims of f32 (the innermost kept dim contiguous: a column
-- reduction, which the CPU does by rows into per-column accumulators) against
-- f64 sums in plain Lua, on odd sizes: column tails, several 16-row groups,
-- more columns than one block (1024), a transposed view, keepdim.
describe("column sums and means of f32", function()
  local function check(x, dims, op, keepdim, atol, rtol)
    local ref = R.reduce(R.of(x), dims, op == "sum" and R.sum or R.mean, keepdim)
    H.close(x[op](x, dims, keepdim), R.nest(ref), {atol = atol, rtol = rtol or 1e-6}, op .. " over " .. dname(dims))
  end

  it("sum over dim 1 of [37, 19] and [300, 601], mean of [3, 1030] over dim 1", function()
    flame.manual_seed(11)
    check(flame.randn(37, 19, H.opts()), 1, "sum", false, 1e-5)
    check(flame.randn(300, 601, H.opts()), 1, "sum", true, 1e-4)
    check(flame.randn(3, 1030, H.opts()), 1, "mean", false, 1e-6)
  end)

  it("mean over dims {1, 3} of [3, 5, 7, 9] and sum over {1, 2} of [2, 21, 1030]", function()
    flame.manual_seed(12)
    check(flame.randn(3, 5, 7, 9, H.opts()), {1, 3}, "mean", false, 1e-6)
    check(flame.randn(3, 5, 7, 9, H.opts()), {1, 3}, "sum", true, 1e-5)
    check(flame.randn(2, 21, 1030, H.opts()), {1, 2}, "sum", false, 1e-5)
  end)

  it("sum over dim 2 of a transposed [19, 37], whose dim 1 is the contiguous one", function()
    flame.manual_seed(13)
    check(flame.randn(19, 37, H.opts()):t(), 2, "sum", false, 1e-5)
  end)

  it("sum over dim 1 of [5000, 9]: many 16-row groups, f32 rounding confined to each", function()
    flame.manual_seed(14)
    local x = flame.randn(5000, 9, H.opts()) + 100 -- a large common part: f32 over all rows would lose it
    -- The sums are ~5e5, where one f32 ulp is 0.031. The CPU's blocked sum rounds once more than
    -- the f64 sum: 1.5 ulp. CUDA accumulates in f32 (as PyTorch does; 4.1 ulp seen on the H200):
    -- 1e-6 relative. A plain f32 running sum is off by units to tens.
    check(x, 1, "sum", false, H.device == "cpu" and 0.05 or 0.5, 0)
  end)
end)

describe("var and std", function()
  local function var(c) return function(v) return R.var(v, c) end end
  local function std(c) return function(v) return math.sqrt(R.var(v, c)) end end

  for _, d in ipairs({1, -1, {1, 3}, {2, 3}}) do
    it("over " .. dname(d) .. " with correction 1 (default), 0 and 2", function()
      local t = H.t(X, F64)
      H.close(t:var(d), R.nest(R.reduce(XA, d, var(1))), TIGHT)
      H.close(t:std(d), R.nest(R.reduce(XA, d, std(1))), TIGHT)
      for _, c in ipairs({0, 1, 2}) do
        H.close(t:var(d, {correction = c}), R.nest(R.reduce(XA, d, var(c))), TIGHT, "var correction " .. c)
        H.close(t:std(d, {correction = c}), R.nest(R.reduce(XA, d, std(c))), TIGHT, "std correction " .. c)
        H.close(t:var(d, {correction = c, keepdim = true}), R.nest(R.reduce(XA, d, var(c), true)), TIGHT)
      end
    end)
  end

  it("over all dims, and with unbiased = false", function()
    local t = H.t(X, F64)
    H.close(t:var(), R.var(XA.data, 1), TIGHT)
    H.close(t:std(nil, {correction = 0}), math.sqrt(R.var(XA.data, 0)), TIGHT)
    H.close(t:var(2, {unbiased = false}), R.nest(R.reduce(XA, 2, var(0))), TIGHT)
    H.close(t:std(2, true), R.nest(R.reduce(XA, 2, std(1), true)), TIGHT)
  end)

  it("hand values: var{1,2,3,4} = 5/3, with correction 0: 5/4", function()
    H.close(H.t({1, 2, 3, 4}, F64):var(), 5 / 3, TIGHT)
    H.close(H.t({1, 2, 3, 4}, F64):var(1, {correction = 0}), 1.25, TIGHT)
    H.close(H.t({1, 2, 3, 4}, F64):std(), math.sqrt(5 / 3), TIGHT)
  end)

  it("divide by zero when the correction leaves no degrees of freedom, as torch", function()
    local v = H.t({3.0}, F64):var()
    assert.is_true(v:item() ~= v:item(), "0/0 is NaN")
    H.close(H.t({1, 2}, F64):var(1, {correction = 2}), math.huge)
    H.close(H.t({1, 2}, F64):var(1, {correction = 3}), math.huge)
  end)
end)

describe("max and min", function()
  for _, d in ipairs({1, 2, 3, -1, -3}) do
    it("with dim " .. d .. " give values and 1-based indices", function()
      local t = H.t(X, F64)
      for _, op in ipairs({"max", "min"}) do
        local arg = op == "max" and R.argmax or R.argmin
        local v, i = t[op](t, d)
        H.close(v, R.nest(R.reduce(XA, d, function(g) return g[arg(g)] end)), TIGHT, op .. " values")
        assert.are.equal("i64", i.dtype)
        assert.are.same(R.nest(R.reduce(XA, d, arg)), i:cpu():totable(), op .. " indices")
        local vk, ik = t[op](t, d, true)
        H.close(vk, R.nest(R.reduce(XA, d, function(g) return g[arg(g)] end, true)), TIGHT)
        assert.are.same(R.nest(R.reduce(XA, d, arg, true)), ik:cpu():totable())
        -- the indices pick the values out again
        H.close(t:gather(d, ik), vk, TIGHT)
      end
    end)
  end

  it("without a dim give the 0-dim extreme", function()
    local t = H.t(X, F64)
    local m = t:max()
    assert.are.same({}, m.shape)
    H.close(m, XA.data[R.argmax(XA.data)])
    H.close(t:min(), XA.data[R.argmin(XA.data)])
  end)

  it("return the first index among ties", function()
    local t = H.t({{3, 1, 3}, {2, 2, 0}}, F64)
    local v, i = t:max(2)
    H.close(v, {3, 2})
    assert.are.same({1, 1}, i:cpu():totable())
    local _, j = t:min(1)
    assert.are.same({2, 1, 2}, j:cpu():totable())
    assert.are.equal(1, t:argmax():item())
    assert.are.same({1, 1}, t:argmax(2):cpu():totable())
  end)

  it("propagate NaN", function()
    local n = 0 / 0
    local t = H.t({{1, n, 3}, {4, 5, 6}}, F64)
    local v, i = t:max(2)
    H.close(v, {n, 6})
    assert.are.same({2, 3}, i:cpu():totable())
    H.close(t:min(2), {n, 4})
    assert.is_true(t:max():item() ~= t:max():item())
  end)

  it("work on integers", function()
    local t = H.t({{5, -2, 7}, {0, 9, 1}})
    local v, i = t:max(1)
    assert.are.equal("i64", v.dtype)
    assert.are.same({5, 9, 7}, v:cpu():totable())
    assert.are.same({1, 2, 1}, i:cpu():totable())
    assert.are.equal(-2, t:min():item())
  end)
end)

describe("argmax and argmin", function()
  it("without a dim give the 1-based index into the flattened tensor", function()
    local t = H.t(X, F64)
    assert.are.equal(R.argmax(XA.data), t:argmax():item())
    assert.are.equal(R.argmin(XA.data), t:argmin():item())
    assert.are.equal(3, H.t({{0, 1, 9}, {2, 3, 4}}):argmax():item())
    assert.are.equal(4, H.t({{0, 1, 9}, {-2, 3, 4}}):argmin():item())
  end)

  for _, d in ipairs({1, 2, 3, -1, -2}) do
    it("with dim " .. d .. " and keepdim", function()
      local t = H.t(X, F64)
      assert.are.same(R.nest(R.reduce(XA, d, R.argmax)), t:argmax(d):cpu():totable())
      assert.are.same(R.nest(R.reduce(XA, d, R.argmin)), t:argmin(d):cpu():totable())
      assert.are.same(R.nest(R.reduce(XA, d, R.argmax, true)), t:argmax(d, true):cpu():totable())
      assert.are.equal("i64", t:argmin(d).dtype)
    end)
  end
end)

describe("norm", function()
  local function pnorm(p)
    return function(v)
      if p == math.huge then
        local m = 0
        for _, x in ipairs(v) do m = math.max(m, math.abs(x)) end
        return m
      end
      local s = 0
      for _, x in ipairs(v) do s = s + math.abs(x) ^ p end
      return s ^ (1 / p)
    end
  end

  for _, d in ipairs({1, -1, {1, 3}, {2, 3}}) do
    it("p = 1, 2, inf and 3 over " .. dname(d), function()
      local t = H.t(X, F64)
      H.close(t:norm(1, d), R.nest(R.reduce(XA, d, pnorm(1))), TIGHT, "p=1")
      H.close(t:norm(2, d), R.nest(R.reduce(XA, d, pnorm(2))), TIGHT, "p=2")
      H.close(t:norm(nil, d), R.nest(R.reduce(XA, d, pnorm(2))), TIGHT, "p default")
      H.close(t:norm("inf", d), R.nest(R.reduce(XA, d, pnorm(math.huge))), TIGHT, "p=inf")
      H.close(t:norm(math.huge, d), R.nest(R.reduce(XA, d, pnorm(math.huge))), TIGHT, "p=math.huge")
      H.close(t:norm(3, d), R.nest(R.reduce(XA, d, pnorm(3))), TIGHT, "p=3")
      H.close(t:norm(2, d, true), R.nest(R.reduce(XA, d, pnorm(2), true)), TIGHT, "keepdim")
    end)
  end

  it("over all dims, and hand values", function()
    local t = H.t(X, F64)
    H.close(t:norm(), pnorm(2)(XA.data), TIGHT)
    H.close(t:norm("fro"), pnorm(2)(XA.data), TIGHT)
    H.close(t:norm(1), pnorm(1)(XA.data), TIGHT)
    H.close(H.t({3, -4}, F64):norm(), 5, TIGHT)
    H.close(H.t({3, -4}, F64):norm(1), 7, TIGHT)
    H.close(H.t({3, -4}, F64):norm("inf"), 4, TIGHT)
  end)

  it("refuses p <= 0 and unknown names", function()
    H.errors(function() return H.t({1.0}):norm(0) end, "norm")
    H.errors(function() return H.t({1.0}):norm("nuc") end, "norm", "nuc")
  end)
end)

describe("cumsum", function()
  local function ref(a, d)
    d = d < 0 and d + #a.shape + 1 or d
    return R.fill(a.shape, function(c)
      local s = 0
      for k = 1, c[d] do
        local cc = {table.unpack(c)}
        cc[d] = k
        s = s + R.at(a, cc)
      end
      return s
    end)
  end

  for _, d in ipairs({1, 2, 3, -1, -2}) do
    it("along dim " .. d, function()
      H.close(H.t(X, F64):cumsum(d), R.nest(ref(XA, d)), TIGHT)
      H.close(H.t(X, F64):transpose(1, 3):cumsum(d), R.nest(ref(R.permute(XA, {3, 2, 1}), d)), TIGHT, "transposed")
    end)
  end

  it("of integers and bools counts in i64", function()
    local c = H.t({{1, 2, 3}, {4, 5, 6}}, {dtype = "i32"}):cumsum(2)
    assert.are.equal("i64", c.dtype)
    assert.are.same({{1, 3, 6}, {4, 9, 15}}, c:cpu():totable())
    assert.are.same({1, 1, 2}, H.t({true, false, true}):cumsum(1):cpu():totable())
  end)
end)

describe("reduction gradients", function()
  local x = H.t(X, F64)
  local pos = H.t(R.nest(R.map(XA, function(v) return v < 0 and v - 0.5 or v + 0.5 end)), F64) -- |x| >= 0.5

  for _, d in ipairs({1, -1, {1, 3}}) do
    it("sum, mean, prod over " .. dname(d), function()
      H.gradcheck(function(a) return a:sum(d) end, {x})
      H.gradcheck(function(a) return a:sum(d, true) end, {x})
      H.gradcheck(function(a) return a:mean(d) end, {x})
      H.gradcheck(function(a) return a:mean(d, true) end, {x})
      H.gradcheck(function(a) return a:prod(d) end, {pos})
    end)

    it("var and std over " .. dname(d) .. " with corrections 0, 1, 2", function()
      for _, c in ipairs({0, 1, 2}) do
        if not (c == 2 and d == 1) then -- dim 1 has 2 elements: correction 2 divides by zero
          H.gradcheck(function(a) return a:var(d, {correction = c}) end, {x})
          H.gradcheck(function(a) return a:std(d, {correction = c, keepdim = true}) end, {x})
        end
      end
    end)

    it("norm p = 1, 2, inf, 3 over " .. dname(d), function()
      for _, p in ipairs({1, 2, "inf", 3}) do
        H.gradcheck(function(a) return a:norm(p, d) end, {pos})
      end
    end)
  end

  it("over all dims", function()
    H.gradcheck(function(a) return a:sum() end, {x})
    H.gradcheck(function(a) return a:mean() end, {x})
    H.gradcheck(function(a) return a:prod() end, {H.t(R.rand({2, 3}, 0.5, 1.5, 3), F64)})
    H.gradcheck(function(a) return a:var() end, {x})
    H.gradcheck(function(a) return a:std() end, {x})
    H.gradcheck(function(a) return a:norm() end, {x})
    H.gradcheck(function(a) return a:max() end, {x})
    H.gradcheck(function(a) return a:min() end, {x})
  end)

  for _, d in ipairs({1, 2, -1}) do
    it("max and min values along dim " .. d .. ", and amax/amin", function()
      H.gradcheck(function(a) return (a:max(d)) end, {x})
      H.gradcheck(function(a) return (a:min(d, true)) end, {x})
      H.gradcheck(function(a) return a:amax(d) end, {x})
      H.gradcheck(function(a) return a:amin({d, 3}) end, {x})
    end)

    it("cumsum along dim " .. d, function()
      H.gradcheck(function(a) return a:cumsum(d) end, {x})
    end)
  end

  it("prod with zeros: the product of the others, exactly", function()
    -- a group with one zero passes it the product of the rest; with two zeros, nothing
    local a = H.t({{0, 2, 3}, {0, 0, 5}, {1, 2, 4}}, {dtype = "f64", requires_grad = true})
    a:prod(2):sum():backward()
    H.close(a.grad, {{6, 0, 0}, {0, 0, 0}, {8, 4, 2}}, TIGHT)
    local b = H.t({0, 2, 3, -1}, {dtype = "f64", requires_grad = true})
    b:prod():backward()
    H.close(b.grad, {-6, 0, 0, 0}, TIGHT)
    -- prod is multilinear, so central differences at a zero are exact
    H.gradcheck(function(p) return p:prod(2) end, {H.t({{0, 2, 3}, {0, 0, 5}, {1.5, -2, 0.5}}, F64)})
    H.gradcheck(function(p) return p:prod({1, 2}, true) end, {H.t({{0, 2}, {3, 0.5}}, F64)})
  end)

  it("max without a dim shares the gradient among ties", function()
    local a = H.t({1, 3, 3, 2}, {dtype = "f64", requires_grad = true})
    a:max():backward()
    H.close(a.grad, {0, 0.5, 0.5, 0})
  end)

  it("through a transposed input", function()
    H.gradcheck(function(a) return a:transpose(1, 3):sum({1, 2}) end, {x})
    H.gradcheck(function(a) return a:t():var(1) end, {H.t(R.rand({3, 4}, -1, 1, 9), F64)})
  end)
end)
