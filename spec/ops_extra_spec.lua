-- The everyday extras: sort/argsort/topk (stable, NaN last, 1-based indices),
-- randperm, tril/triu, all/any, floor/ceil/round/trunc, logsumexp,
-- isnan/isinf/nan_to_num, isclose/allclose, tile, roll, einsum, F.one_hot and
-- flame.timer, against plain-Lua references, with f64 gradient checks.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local TIGHT = {atol = 1e-12, rtol = 1e-12}
local NAN, INF = 0 / 0, math.huge

-- Plain-Lua stable sort of a list: the 1-based order, NaN largest, -0 == +0.
local function order_of(v, descending)
  local idx = {}
  for i = 1, #v do idx[i] = i end
  local function key(x) return x ~= x and math.huge * 2 or x end -- NaN above inf
  local function before(a, b)
    local ka, kb = v[a], v[b]
    local na, nb = ka ~= ka, kb ~= kb
    if na or nb then
      if na and nb then return a < b end
      if descending then return na else return nb end
    end
    if key(ka) == key(kb) then return a < b end
    if descending then return ka > kb else return ka < kb end
  end
  table.sort(idx, before) -- ties broken by position: a stable order
  return idx
end

-- Reference sort of a nested table along dim d (values and 1-based indices).
local function ref_sort(x, d, descending)
  local a = R.from(x)
  local vals = R.new(a.shape, {})
  local inds = R.new(a.shape, {})
  local n = a.shape[d]
  R.fill(R.reduce(a, d, function() return 0 end, true).shape, function(c)
    local row = {}
    for k = 1, n do
      local cc = {table.unpack(c)}
      cc[d] = k
      row[k] = R.at(a, cc)
    end
    local o = order_of(row, descending)
    for k = 1, n do
      local cc = {table.unpack(c)}
      cc[d] = k
      vals.data[R.flat(a.shape, cc)] = row[o[k]]
      inds.data[R.flat(a.shape, cc)] = o[k]
    end
    return 0
  end)
  return R.nest(vals), R.nest(inds)
end

describe("sort and argsort", function()
  -- ties everywhere (values 0..3), so stability decides the indices
  local X = R.nest(R.fill({3, 4, 5}, function(c) return (c[1] * 7 + c[2] * 3 + c[3] * 5) % 4 end))

  for _, d in ipairs({1, 2, 3, -1}) do
    for _, desc in ipairs({false, true}) do
      it(string.format("sorts along dim %d %s, stably, with 1-based indices", d, desc and "descending" or "ascending"), function()
        local v, i = H.t(X, F64):sort(d, {descending = desc})
        local rv, ri = ref_sort(X, d < 0 and 3 + 1 + d or d, desc)
        H.close(v, rv, TIGHT)
        assert.are.same(ri, i:cpu():totable())
        assert.are.equal("i64", i.dtype)
        assert.are.same(ri, H.t(X, F64):argsort(d, {descending = desc}):cpu():totable())
      end)
    end
  end

  it("keeps equal elements in their order in both directions", function()
    local x = H.t({2, 1, 2, 1, 2})
    local _, i = x:sort()
    assert.are.same({2, 4, 1, 3, 5}, i:cpu():totable())
    _, i = x:sort(1, {descending = true})
    assert.are.same({1, 3, 5, 2, 4}, i:cpu():totable())
  end)

  it("puts NaN last ascending and first descending, and -0 equal to +0", function()
    local x = H.t({3, NAN, -INF, 0.0, -0.0, INF, NAN, 1})
    local v, i = x:sort()
    H.close(v, {-INF, 0, 0, 1, 3, INF, NAN, NAN})
    assert.are.same({3, 4, 5, 8, 1, 6, 2, 7}, i:cpu():totable())
    v, i = x:sort(1, {descending = true})
    H.close(v, {NAN, NAN, INF, 3, 1, 0, 0, -INF})
    assert.are.same({2, 7, 6, 1, 8, 4, 5, 3}, i:cpu():totable())
  end)

  it("sorts every dtype by value, i64 beyond 2^53 included", function()
    local big = 1 << 60
    local v = H.t({big + 3, -big, big + 1, 5}):sort()
    assert.are.same({-big, 5, big + 1, big + 3}, v:cpu():totable())
    for _, dt in ipairs({"f32", "f16", "bf16", "i32"}) do
      local s, i = H.t({3, -1, 2, -7}, {dtype = dt}):sort(1, {descending = true})
      assert.are.equal(dt, s.dtype)
      H.close(s:double(), {3, 2, -1, -7})
      assert.are.same({1, 3, 2, 4}, i:cpu():totable())
    end
    local b, bi = H.t({true, false, true, false}):sort()
    assert.are.same({false, false, true, true}, b:cpu():totable())
    assert.are.same({2, 4, 1, 3}, bi:cpu():totable())
  end)

  it("sorts long rows stably, specials included, in every float and int dtype", function()
    local v = {}
    local specials = {NAN, INF, -INF, 0.0, -0.0}
    for k = 1, 500 do v[k] = k % 50 == 0 and specials[k // 50 % 5 + 1] or ((k * 37) % 23 - 11) / 4 end
    for _, dt in ipairs({"f64", "f32", "f16", "bf16"}) do
      for _, desc in ipairs({false, true}) do
        local _, i = H.t(v, {dtype = dt}):sort(1, {descending = desc})
        assert.are.same(order_of(v, desc), i:cpu():totable(), dt)
      end
    end
    local iv = {}
    for k = 1, 400 do iv[k] = ((k * 7919) % 601 - 300) * (k % 3 == 0 and 1000003 or 1) end
    for _, dt in ipairs({"i64", "i32"}) do
      local s, i = H.t(iv, {dtype = dt}):sort(1, {descending = true})
      local o = order_of(iv, true)
      assert.are.same(o, i:cpu():totable(), dt)
      assert.are.equal(iv[o[1]], s[1]:item())
    end
  end)

  it("sorts many rows (threaded on the CPU) as it sorts each row alone", function()
    flame.manual_seed(3)
    local x = flame.randint(-50, 50, {64, 512}, H.opts())
    local v, i = x:sort(2, {descending = true})
    for _, r in ipairs({1, 17, 33, 64}) do
      local rv, ri = x[r]:sort(1, {descending = true})
      assert.are.same(rv:cpu():totable(), v[r]:cpu():totable())
      assert.are.same(ri:cpu():totable(), i[r]:cpu():totable())
    end
    assert.is_true(v:narrow(2, 1, 511):ge(v:narrow(2, 2, 511)):all():item())
  end)

  it("sorts a transposed input in its logical order", function()
    local x = H.t({{4, 1}, {2, 3}, {0, 5}}, F64):t() -- {{4, 2, 0}, {1, 3, 5}}
    local v, i = x:sort(2)
    H.close(v, {{0, 2, 4}, {1, 3, 5}}, TIGHT)
    assert.are.same({{3, 2, 1}, {1, 2, 3}}, i:cpu():totable())
  end)

  it("handles 0-dim tensors and empty dims", function()
    local v, i = H.t(5.0):sort()
    assert.are.same({}, v.shape)
    H.close(v, 5)
    assert.are.equal(1, i:item())
    local e = flame.zeros(0, 3, H.opts())
    v, i = e:sort(1)
    assert.are.same({0, 3}, v.shape)
    assert.are.same({0, 3}, i.shape)
    v, i = e:sort(2)
    assert.are.same({0, 3}, v.shape)
  end)

  it("records SortBackward on the values only", function()
    local x = H.t({3, 1, 2}, F64)
    x.requires_grad = true
    local v, i = x:sort()
    assert.are.equal("SortBackward", v.grad_fn)
    assert.is_nil(i.grad_fn)
    assert.are.equal("FloorBackward", x:floor().grad_fn)
  end)

  it("has the gradient of a permutation", function()
    H.gradcheck(function(x) return (x:sort(2)) end, {H.t(R.distinct({3, 4}, -2, 2, 3))})
    H.gradcheck(function(x) return (x:sort(1, {descending = true})) end, {H.t(R.distinct({3, 4}, -2, 2, 4))})
  end)

  it("rejects a bad dim and bad options", function()
    H.errors(function() return H.t({1, 2}):sort(2) end, "dim 2 out of range")
    H.errors(function() return H.t({1, 2}):sort(1, true) end, "sort: expected an options table, got a boolean")
    H.errors(function() return H.t({1, 2}):sort(1, {decending = true}) end, "unknown option 'decending'", "descending")
    H.errors(function() return H.t({1, 2}):topk(1, 1, {}, 5) end, "topk: unexpected argument #4")
  end)
end)

describe("topk", function()
  local X = {{1, 5, 3, 5, 2}, {9, 0, 9, 4, 9}}

  it("gives the k largest in order, ties by position, with 1-based indices", function()
    local v, i = H.t(X, F64):topk(3)
    H.close(v, {{5, 5, 3}, {9, 9, 9}}, TIGHT)
    assert.are.same({{2, 4, 3}, {1, 3, 5}}, i:cpu():totable())
  end)

  it("gives the k smallest with largest = false, along any dim", function()
    local v, i = H.t(X, F64):topk(2, 2, {largest = false})
    H.close(v, {{1, 2}, {0, 4}}, TIGHT)
    assert.are.same({{1, 5}, {2, 4}}, i:cpu():totable())
    v, i = H.t(X, F64):topk(1, 1)
    H.close(v, {{9, 5, 9, 5, 9}}, TIGHT)
    assert.are.same({{2, 1, 2, 1, 2}}, i:cpu():totable())
  end)

  it("allows k = 0 and k = size", function()
    local v = H.t(X):topk(0)
    assert.are.same({2, 0}, v.shape)
    v = H.t(X):topk(5)
    assert.are.same({2, 5}, v.shape)
  end)

  it("refuses k outside 0..size with a 1-based dim", function()
    H.errors(function() return H.t(X):topk(6) end, "topk", "k = 6", "dim 2 of size 5")
    H.errors(function() return H.t(X):topk(-1, 1) end, "topk", "k = -1", "dim 1 of size 2")
  end)

  it("sends the gradient to the chosen elements", function()
    H.gradcheck(function(x) return (x:topk(2)) end, {H.t(R.distinct({3, 5}, -2, 2, 6))})
  end)
end)

describe("randperm", function()
  local function is_perm(t, n)
    local seen = {}
    for _, v in ipairs(t) do
      if v < 1 or v > n or seen[v] then return false end
      seen[v] = true
    end
    return #t == n
  end

  it("is a permutation of 1..n, reproducible from the seed", function()
    flame.manual_seed(42)
    local a = flame.randperm(200, H.opts()):cpu():totable()
    flame.manual_seed(42)
    local b = flame.randperm(200, H.opts()):cpu():totable()
    assert.is_true(is_perm(a, 200))
    assert.are.same(a, b)
    local identity = true
    for k = 1, 200 do identity = identity and a[k] == k end
    assert.is_false(identity)
  end)

  it("gives the same permutation on the CPU and on the device under test", function()
    flame.manual_seed(7)
    local d = flame.randperm(1000, H.opts()):cpu():totable()
    flame.manual_seed(7)
    assert.are.same(flame.randperm(1000):totable(), d)
  end)

  it("indexes with 1-based index ops, takes dtypes, and allows n = 0", function()
    local x = H.t({10, 20, 30, 40})
    local p = flame.randperm(4, H.opts())
    local s = x:index_select(1, p):cpu():totable()
    table.sort(s)
    assert.are.same({10, 20, 30, 40}, s)
    assert.are.equal("i32", flame.randperm(3, H.opts({dtype = "i32"})).dtype)
    assert.are.same({0}, flame.randperm(0, H.opts()).shape)
  end)

  it("refuses a negative n and bool", function()
    H.errors(function() return flame.randperm(-1) end, "randperm", "non-negative", "-1")
    H.errors(function() return flame.randperm(3, {dtype = "bool"}) end, "randperm", "bool")
    H.errors(function() return flame.randperm(3, {dtype = "f32", requires_grad = true}) end, "randperm",
      "with requires_grad")
  end)
end)

describe("tril and triu", function()
  local X = R.rand({2, 3, 4}, -1, 1, 11)
  local function ref(lower, k)
    return R.nest(R.fill({2, 3, 4}, function(c)
      local keep = lower and (c[3] - c[2] <= k) or (not lower and c[3] - c[2] >= k)
      return keep and R.at(R.from(X), c) or 0
    end))
  end

  for _, k in ipairs({-1, 0, 1, 2, 5}) do
    it("keeps the triangle from diagonal " .. k .. " of batched matrices", function()
      H.close(H.t(X, F64):tril(k), ref(true, k), TIGHT)
      H.close(H.t(X, F64):triu(k), ref(false, k), TIGHT)
    end)
  end

  it("defaults to the main diagonal and keeps the dtype", function()
    local t = H.t({{1, 2}, {3, 4}})
    assert.are.same({{1, 0}, {3, 4}}, t:tril():cpu():totable())
    assert.are.same({{1, 2}, {0, 4}}, t:triu():cpu():totable())
    assert.are.equal("i64", t:tril().dtype)
  end)

  it("is differentiable", function()
    H.gradcheck(function(x) return x:tril(-1) end, {H.t(X)})
    H.gradcheck(function(x) return x:triu(1) end, {H.t(X)})
  end)

  it("needs at least 2 dims", function()
    H.errors(function() return H.t({1, 2}):tril() end, "tril", "at least 2 dims", "[2]")
  end)
end)

describe("all and any", function()
  it("reduce over dims, with keepdim", function()
    local t = H.t({{1, 0, 2}, {3, 4, 5}})
    assert.are.same({false, true}, t:all(2):cpu():totable())
    assert.are.same({true, false, true}, t:all(1):cpu():totable())
    assert.are.same({{true}, {true}}, t:any(2, true):cpu():totable())
    assert.is_false(t:all():item())
    assert.is_true(t:any():item())
    assert.are.equal("bool", t:all().dtype)
  end)

  it("count NaN as true, and empty reductions as all-true / any-false", function()
    local t = H.t({NAN, 0.0})
    assert.are.same({true}, t:narrow(1, 1, 1):all(1, true):cpu():totable())
    assert.are.same({false}, H.t({0.0, 0.0}):any(1, true):cpu():totable())
    local e = flame.zeros(0, 2, H.opts())
    assert.are.same({true, true}, e:all(1):cpu():totable())
    assert.are.same({false, false}, e:any(1):cpu():totable())
  end)

  it("take bool tensors", function()
    local b = H.t({{true, false}, {true, true}})
    assert.are.same({true, false}, b:all(1):cpu():totable())
    assert.are.same({true, true}, b:any(2):cpu():totable())
  end)
end)

describe("floor, ceil, round, trunc", function()
  local V = {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -1.7, 1.2, 3.5}
  local REF = {
    floor = {-3, -2, -1, 0, 1, 2, -2, 1, 3},
    ceil = {-2, -1, 0, 1, 2, 3, -1, 2, 4},
    round = {-2, -2, 0, 0, 2, 2, -2, 1, 4}, -- half to even
    trunc = {-2, -1, 0, 0, 1, 2, -1, 1, 3},
  }
  for _, op in ipairs({"floor", "ceil", "round", "trunc"}) do
    it(op .. " matches the reference in f64, f32, f16 and bf16", function()
      for _, dt in ipairs({"f64", "f32", "f16", "bf16"}) do
        local r = H.t(V, {dtype = dt})[op](H.t(V, {dtype = dt}))
        assert.are.equal(dt, r.dtype)
        H.close(r:double(), REF[op], TIGHT, op .. " " .. dt)
      end
    end)

    it(op .. " passes integers through unchanged and has a zero gradient", function()
      local big = (1 << 60) + 1
      local i = H.t({big, -3})
      local r = i[op](i)
      assert.are.equal("i64", r.dtype)
      assert.are.same({big, -3}, r:cpu():totable())
      H.gradcheck(function(x) return x[op](x) end, {H.t({-1.7, 0.3, 2.2})})
    end)
  end

  it("keep NaN and infinities, and work in place", function()
    H.close(H.t({NAN, INF, -INF}):round(), {NAN, INF, -INF})
    local t = H.t({1.5, -1.5})
    t:floor_()
    H.close(t, {1, -2})
  end)
end)

describe("logsumexp", function()
  local X = R.rand({2, 3, 4}, -3, 3, 21)
  local function lse(v)
    local m = -math.huge
    for _, x in ipairs(v) do m = math.max(m, x) end
    local s = 0
    for _, x in ipairs(v) do s = s + math.exp(x - m) end
    return m + math.log(s)
  end

  for _, d in ipairs({1, 3, -1, {1, 2}}) do
    it("matches the f64 reference over " .. (type(d) == "table" and "{1, 2}" or "dim " .. d), function()
      H.close(H.t(X, F64):logsumexp(d), R.nest(R.reduce(R.from(X), d, lse, false)), TIGHT)
      H.close(H.t(X, F64):logsumexp(d, true), R.nest(R.reduce(R.from(X), d, lse, true)), TIGHT)
    end)
  end

  it("does not overflow, and handles infinities and empty reductions", function()
    H.close(H.t({{1000, 1000}, {-1000, -1000}}):logsumexp(2), {1000 + math.log(2), -1000 + math.log(2)}, {atol = 1e-3})
    H.close(H.t({-INF, -INF}):logsumexp(1), -INF)
    H.close(H.t({INF, 1}):logsumexp(1), INF)
    H.close(flame.zeros(2, 0, H.opts()):logsumexp(2), {-INF, -INF})
    assert.are.equal("f32", H.t({1, 2}):logsumexp(1).dtype)
  end)

  it("is differentiable", function()
    H.gradcheck(function(x) return x:logsumexp(2) end, {H.t(X)})
    H.gradcheck(function(x) return x:logsumexp({1, 3}, true) end, {H.t(X)})
  end)
end)

describe("isnan, isinf, nan_to_num", function()
  local V = {1, NAN, INF, -INF, -0.5}

  it("test each element", function()
    assert.are.same({false, true, false, false, false}, H.t(V):isnan():cpu():totable())
    assert.are.same({false, false, true, true, false}, H.t(V):isinf():cpu():totable())
    assert.are.same({false, false}, H.t({1, 2}):isnan():cpu():totable())
    assert.are.same({false, false}, H.t({1, 2}):isinf():cpu():totable())
  end)

  it("replace NaN and infinities, by default with 0 and the dtype's extremes", function()
    H.close(H.t(V, F64):nan_to_num(), {1, 0, 1.7976931348623157e308, -1.7976931348623157e308, -0.5}, TIGHT)
    H.close(H.t(V):nan_to_num(), {1, 0, 3.4028234663852886e38, -3.4028234663852886e38, -0.5}, {rtol = 1e-6})
    H.close(H.t(V, {dtype = "f16"}):nan_to_num():double(), {1, 0, 65504, -65504, -0.5})
    H.close(H.t(V, F64):nan_to_num(7, 8, -9), {1, 7, 8, -9, -0.5}, TIGHT)
    assert.are.same({1, 2}, H.t({1, 2}):nan_to_num():cpu():totable())
  end)

  it("pass the gradient where the input was finite", function()
    H.gradcheck(function(x) return x:nan_to_num() end, {H.t({0.5, -2, 3})})
    local x = H.t(V, F64)
    x.requires_grad = true
    local g = flame.autograd.grad(x:nan_to_num():sum(), x)
    H.close(g, {1, 0, 0, 0, 1}, TIGHT)
  end)
end)

describe("isclose and allclose", function()
  it("compare with rtol and atol", function()
    local a, b = H.t({1, 2, 100}, F64), H.t({1 + 1e-9, 2.1, 100.0001}, F64)
    assert.are.same({true, false, true}, a:isclose(b):cpu():totable())
    assert.are.same({true, true, true}, a:isclose(b, {atol = 0.2}):cpu():totable())
    assert.are.same({true, false, false}, a:isclose(b, {rtol = 0, atol = 1e-6}):cpu():totable())
    assert.is_false(flame.allclose(a, b))
    assert.is_true(flame.allclose(a, b, {rtol = 0.1}))
  end)

  it("treat equal infinities as close and NaN only with equal_nan", function()
    local a, b = H.t({INF, -INF, NAN, INF}), H.t({INF, -INF, NAN, -INF})
    assert.are.same({true, true, false, false}, a:isclose(b):cpu():totable())
    assert.are.same({true, true, true, false}, a:isclose(b, {equal_nan = true}):cpu():totable())
    assert.is_true(flame.allclose(H.t({NAN}), H.t({NAN}), {equal_nan = true}))
  end)

  it("broadcast, and take a number", function()
    assert.are.same({{true, false}}, H.t({{1, 2}}):isclose(H.t({1})):cpu():totable())
    assert.are.same({true, false}, H.t({3, 4}):isclose(3):cpu():totable())
  end)

  it("refuse negative tolerances and unbroadcastable shapes", function()
    H.errors(function() return H.t({1}):isclose(H.t({1}), {rtol = -1}) end, "isclose", "non-negative")
    H.errors(function() return H.t({1}):isclose(H.t({1}), {atol = "big"}) end, "isclose: option atol must be a number, got string")
    H.errors(function() return flame.allclose(H.t({1, 2}), H.t({1, 2, 3})) end, "allclose", "[2]", "[3]")
  end)
end)

describe("tile", function()
  it("repeats along each dim, aligning the repetitions with the trailing dims", function()
    local t = H.t({{1, 2}, {3, 4}})
    assert.are.same({{1, 2, 1, 2}, {3, 4, 3, 4}, {1, 2, 1, 2}, {3, 4, 3, 4}}, t:tile(2, 2):cpu():totable())
    assert.are.same({{1, 2, 1, 2, 1, 2}, {3, 4, 3, 4, 3, 4}}, t:tile(3):cpu():totable())
    assert.are.same({{{1, 2}, {3, 4}}, {{1, 2}, {3, 4}}}, t:tile({2, 1, 1}):cpu():totable())
    assert.are.same({2, 0}, t:tile(1, 0).shape)
  end)

  it("is differentiable", function()
    H.gradcheck(function(x) return x:tile(2, 3) end, {H.t(R.rand({2, 3}, -1, 1, 5))})
  end)

  it("refuses negative or non-integer repetitions", function()
    H.errors(function() return H.t({1}):tile(-1) end, "tile", "negative")
    H.errors(function() return H.t({1}):tile(1.5) end, "tile", "integers")
  end)
end)

describe("roll", function()
  it("shifts along dims with wrap-around", function()
    local t = flame.arange(1, 7, H.opts()):view(2, 3)
    assert.are.same({{3, 1, 2}, {6, 4, 5}}, t:roll(1, 2):cpu():totable())
    assert.are.same({{2, 3, 1}, {5, 6, 4}}, t:roll(-1, -1):cpu():totable())
    assert.are.same({{5, 6, 4}, {2, 3, 1}}, t:roll({1, -1}, {1, 2}):cpu():totable())
    assert.are.same({{1, 2, 3}, {4, 5, 6}}, t:roll(3, 2):cpu():totable())
  end)

  it("rolls the flattened tensor without dims", function()
    local t = flame.arange(1, 7, H.opts()):view(2, 3)
    assert.are.same({{5, 6, 1}, {2, 3, 4}}, t:roll(2):cpu():totable())
  end)

  it("is differentiable", function()
    H.gradcheck(function(x) return x:roll({2, 1}, {1, 2}) end, {H.t(R.rand({3, 2}, -1, 1, 6))})
  end)

  it("needs one dim per shift", function()
    H.errors(function() return H.t({{1, 2}}):roll({1, 2}, 1) end, "roll", "2 shifts but 1 dims")
    H.errors(function() return H.t({{1, 2}}):roll({1, 2}) end, "roll", "without dims, expected one shift, got 2")
    H.errors(function() return H.t({{1, 2}}):roll(1.5, 1) end, "roll", "shifts must be integers")
    H.errors(function() return H.t({{1, 2}}):roll(1, 1, 2) end, "roll: unexpected argument #3 (a number")
  end)
end)

describe("einsum", function()
  local A = R.rand({2, 3}, -1, 1, 31)
  local B = R.rand({3, 4}, -1, 1, 32)
  local S = R.rand({3, 3}, -1, 1, 33)

  it("computes matmul, transpose, outer products and sums", function()
    local a, b = H.t(A, F64), H.t(B, F64)
    H.close(flame.einsum("ij,jk->ik", a, b), R.nest(R.mm(R.from(A), R.from(B))), TIGHT)
    H.close(flame.einsum("ij -> ji", a), a:t(), TIGHT)
    H.close(flame.einsum("ij->", a), a:sum(), TIGHT)
    H.close(flame.einsum("ij->j", a), a:sum(1), TIGHT)
    local u, v = H.t({1, 2}, F64), H.t({3, 4, 5}, F64)
    H.close(flame.einsum("i,j->ij", u, v), {{3, 4, 5}, {6, 8, 10}}, TIGHT)
    H.close(flame.einsum("i,i->", u, u), 5, TIGHT)
  end)

  it("computes traces and diagonals", function()
    local s = H.t(S, F64)
    local tr = S[1][1] + S[2][2] + S[3][3]
    H.close(flame.einsum("ii->", s), tr, TIGHT)
    H.close(flame.einsum("ii", s), tr, TIGHT)
    H.close(flame.einsum("ii->i", s), {S[1][1], S[2][2], S[3][3]}, TIGHT)
  end)

  it("contracts batches, chains and broadcast '...' dims", function()
    local x, y = H.t(R.rand({2, 3, 4}, -1, 1, 34), F64), H.t(R.rand({2, 4, 5}, -1, 1, 35), F64)
    H.close(flame.einsum("bij,bjk->bik", x, y), flame.bmm(x, y), TIGHT)
    local p, q = H.t(R.rand({3, 1, 2, 4}, -1, 1, 36), F64), H.t(R.rand({5, 4, 2}, -1, 1, 37), F64)
    H.close(flame.einsum("...ij,...jk->...ik", p, q), flame.matmul(p, q), TIGHT)
    local a, b = H.t(A, F64), H.t(B, F64)
    local c = H.t(R.rand({4, 2}, -1, 1, 38), F64)
    H.close(flame.einsum("ij,jk,kl->il", a, b, c), a:matmul(b):matmul(c), TIGHT)
    H.close(flame.einsum("ij,jk", a, b), a:matmul(b), TIGHT) -- implicit output: i, k
  end)

  it("is differentiable", function()
    H.gradcheck(function(x, y) return flame.einsum("bij,bjk->bik", x, y) end,
      {H.t(R.rand({2, 2, 3}, -1, 1, 39)), H.t(R.rand({2, 3, 2}, -1, 1, 40))})
    H.gradcheck(function(x) return flame.einsum("ii->i", x) end, {H.t(S)})
  end)

  it("reports bad equations", function()
    local a = H.t(A)
    H.errors(function() return flame.einsum("ij,jk->ik", a) end, "einsum", "2 operands but 1")
    H.errors(function() return flame.einsum("ij,jk->ik", a, a) end, "einsum", "label j", "size 3", "2")
    H.errors(function() return flame.einsum("i1->i", a) end, "einsum", "invalid character '1'")
    H.errors(function() return flame.einsum("ijk->i", a) end, "einsum", "operand 1 has 2 dims")
    H.errors(function() return flame.einsum("ij->z", a) end, "einsum", "output label z appears in no operand")
    H.errors(function() return flame.einsum("ij->ii", a) end, "einsum", "output label i appears twice")
    H.errors(function() return flame.einsum("...i...->i", a) end, "einsum", "more than one '...'")
    H.errors(function() return flame.einsum("ii->i", a) end, "einsum", "label i has sizes 2 and 3")
    H.errors(function() return flame.einsum("...i,...i->i", H.t({{1, 2}, {3, 4}}), H.t({{1, 2}, {3, 4}, {5, 6}})) end,
      "einsum", "'...' has size")
    H.errors(function() return flame.einsum("i,i", a:reshape(-1), 3) end, "einsum", "operand 2 is a number")
    H.errors(function() return flame.einsum(a, a) end, "einsum", "expected an equation string")
  end)
end)

describe("F.one_hot", function()
  it("encodes 1-based class ids as i64 0/1 rows", function()
    local r = flame.F.one_hot(H.t({1, 3, 2}), 4)
    assert.are.equal("i64", r.dtype)
    assert.are.equal(H.device, r.device:match("^%a+"))
    assert.are.same({{1, 0, 0, 0}, {0, 0, 1, 0}, {0, 1, 0, 0}}, r:cpu():totable())
    assert.are.same({{{1, 0}}, {{0, 1}}}, flame.nn.functional.one_hot(H.t({{1}, {2}})):cpu():totable())
  end)

  it("refuses ids out of range, and non-integer ids", function()
    H.errors(function() return flame.F.one_hot(H.t({0, 1}), 3) end, "one_hot", "class index 0", "1..3", "1-based")
    H.errors(function() return flame.F.one_hot(H.t({4}), 3) end, "one_hot", "class index 4")
    H.errors(function() return flame.F.one_hot(H.t({1.0}), 3) end, "one_hot", "i64 or i32")
    H.errors(function() return flame.F.one_hot(H.t({1}), 2.5) end, "one_hot", "num_classes must be an integer")
    H.errors(function() return flame.F.one_hot(H.t({1}), -2) end, "one_hot", "non-negative, got -2")
    H.errors(function() return flame.F.one_hot(H.t({1}), 2, {}) end, "one_hot: unexpected argument #3 (a table")
    H.errors(function() return flame.F.one_hot(flame.zeros(0, H.opts({dtype = "i64"}))) end, "one_hot", "empty ids")
    assert.are.same({0, 3}, flame.F.one_hot(flame.zeros(0, H.opts({dtype = "i64"})), 3).shape)
  end)
end)

describe("flame.timer", function()
  it("is a monotonic clock in seconds", function()
    local a = flame.timer()
    local b = flame.timer()
    assert.are.equal("number", type(a))
    assert.is_true(b >= a)
  end)
end)
