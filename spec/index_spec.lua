-- Indexing: index_select, index_add_ (and its out-of-place index_add),
-- gather, scatter_add, masked_fill, with 1-based index tensors, repeated
-- indices, out-of-range errors, and finite-difference gradients.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local TIGHT = {atol = 1e-12, rtol = 1e-12}
local X = R.rand({3, 4, 2}, -1, 1, 1)
local XA = R.from(X)

-- Coordinates c with dim d replaced by k.
local function with(c, d, k)
  local cc = {table.unpack(c)}
  cc[d] = k
  return cc
end

describe("index_select", function()
  local function ref(a, d, idx)
    local shape = {table.unpack(a.shape)}
    shape[d] = #idx
    return R.fill(shape, function(c) return R.at(a, with(c, d, idx[c[d]])) end)
  end

  for _, d in ipairs({1, 2, 3, -1}) do
    it("picks 1-based indices along dim " .. d .. ", repeats included", function()
      local dd = d < 0 and d + 4 or d
      local idx = ({{3, 1, 3, 2}, {4, 4, 1}, {2, 1, 2}})[dd]
      local t = H.t(X, F64)
      H.close(t:index_select(d, H.t(idx)), R.nest(ref(XA, dd, idx)), TIGHT)
      H.close(t:index_select(d, H.t(idx, {dtype = "i32"})), R.nest(ref(XA, dd, idx)), TIGHT, "i32 index")
      H.close(flame.index_select(t, d, H.t(idx)), R.nest(ref(XA, dd, idx)), TIGHT)
    end)
  end

  it("hand values, an empty index, and a strided input", function()
    local t = H.t({{1, 2, 3}, {4, 5, 6}})
    assert.are.same({{3, 1}, {6, 4}}, t:index_select(2, H.t({3, 1})):cpu():totable())
    assert.are.same({{4, 5, 6}, {4, 5, 6}}, t:index_select(1, H.t({2, 2})):cpu():totable())
    assert.are.same({2, 0}, t:index_select(2, flame.zeros(0, H.opts({dtype = "i64"}))).shape)
    assert.are.same({{4, 1}, {6, 3}}, t:t():index_select(2, H.t({2, 1})):index_select(1, H.t({1, 3})):cpu():totable())
  end)

  it("refuses out-of-range, float and multi-dim indices", function()
    local t = H.t({{1, 2, 3}, {4, 5, 6}})
    H.errors(function() return t:index_select(2, H.t({4})) end, "index_select", "out of range")
    H.errors(function() return t:index_select(2, H.t({0})) end, "index_select", "out of range")
    H.errors(function() return t:index_select(1, H.t({-1})) end, "index_select")
    H.errors(function() return t:index_select(1, H.t({1.0})) end, "index")
    H.errors(function() return t:index_select(1, H.t({{1}})) end, "index_select", "1-D")
  end)

  it("has the right gradient, repeated indices accumulating", function()
    H.gradcheck(function(a) return a:index_select(1, H.t({3, 1, 3})) end, {H.t(X, F64)})
    H.gradcheck(function(a) return a:index_select(-1, H.t({2, 2, 1, 2})) end, {H.t(X, F64)})
    local a = H.t({1, 2, 3}, {dtype = "f64", requires_grad = true})
    a:index_select(1, H.t({3, 3, 1, 3})):sum():backward()
    H.close(a.grad, {1, 0, 3})
  end)
end)

describe("index_add_ and index_add", function()
  local function ref(a, d, idx, src, alpha)
    local r = R.new(a.shape, {table.unpack(a.data)})
    for k, v in ipairs(src.data) do
      local c = R.coords(src.shape, k)
      local f = R.flat(r.shape, with(c, d, idx[c[d]]))
      r.data[f] = r.data[f] + alpha * v
    end
    return r
  end

  for _, d in ipairs({1, 2, -1}) do
    it("adds the source slices at 1-based indices along dim " .. d .. ", with alpha", function()
      local dd = d < 0 and d + 4 or d
      local idx = ({{1, 3, 1, 1, 2}, {4, 2, 4}, nil})[dd] or {2, 2, 1}
      local sshape = {table.unpack(XA.shape)}
      sshape[dd] = #idx
      local src = R.rand(sshape, -1, 1, 10 + dd)
      local t = H.t(X, F64)
      assert.are.equal(t, t:index_add_(d, H.t(idx), H.t(src, F64)))
      H.close(t, R.nest(ref(XA, dd, idx, R.from(src), 1)), TIGHT)
      t = H.t(X, F64)
      t:index_add_(d, H.t(idx, {dtype = "i32"}), H.t(src, F64), -2.5)
      H.close(t, R.nest(ref(XA, dd, idx, R.from(src), -2.5)), TIGHT, "alpha")
      local o = H.t(X, F64)
      local r = o:index_add(d, H.t(idx), H.t(src, F64), 0.5)
      H.close(r, R.nest(ref(XA, dd, idx, R.from(src), 0.5)), TIGHT, "out of place")
      H.close(o, X, TIGHT, "index_add leaves self alone")
    end)
  end

  it("hand values: repeated indices accumulate", function()
    local t = flame.zeros(3, 2, H.opts(F64))
    t:index_add_(1, H.t({1, 3, 1}), H.t({{1, 2}, {3, 4}, {5, 6}}, F64))
    H.close(t, {{6, 8}, {0, 0}, {3, 4}})
    local i = H.t({10, 20, 30})
    i:index_add_(1, H.t({2, 2}), H.t({1, 2}))
    assert.are.same({10, 23, 30}, i:cpu():totable())
  end)

  it("writes through a view into its base", function()
    local base = flame.zeros(2, 3, H.opts(F64))
    base:t():index_add_(1, H.t({3, 1}), H.t({{1, 2}, {3, 4}}, F64)) -- rows of the transpose: columns of base
    H.close(base, {{3, 0, 1}, {4, 0, 2}})
  end)

  it("refuses out-of-range indices and a source that does not fit", function()
    local t = flame.zeros(3, 2, H.opts(F64))
    H.errors(function() t:index_add_(1, H.t({4}), H.t({{1, 2}}, F64)) end, "index_add_", "out of range")
    H.errors(function() t:index_add_(1, H.t({0}), H.t({{1, 2}}, F64)) end, "index_add_", "out of range")
    H.errors(function() t:index_add_(1, H.t({1, 2}), H.t({{1, 2}}, F64)) end, "index_add_")
    H.errors(function() t:index_add_(2, H.t({1}), H.t({{1, 2}}, F64)) end, "index_add_")
    H.close(t, {{0, 0}, {0, 0}, {0, 0}}, TIGHT, "a refused index_add_ writes nothing")
  end)

  it("index_add has the right gradient in self and source", function()
    local src = H.t(R.rand({3, 5, 2}, -1, 1, 20), F64)
    H.gradcheck(function(a, s) return a:index_add(2, H.t({4, 1, 4, 2, 4}), s) end, {H.t(X, F64), src})
    H.gradcheck(function(a, s) return a:index_add(1, H.t({3, 3}), s, -1.5) end, {H.t(X, F64), H.t(R.rand({2, 4, 2}, -1, 1, 21), F64)})
  end)
end)

describe("gather", function()
  local function ref(a, d, idx)
    return R.fill(idx.shape, function(c) return R.at(a, with(c, d, R.at(idx, c))) end)
  end

  for _, d in ipairs({1, 2, 3, -1}) do
    it("out[c] = x[c with dim " .. d .. " replaced by index[c]]", function()
      local dd = d < 0 and d + 4 or d
      local ishape = {2, 3, 2}
      ishape[dd] = 3
      local idx = R.fill(ishape, function(_, k) return (k * 7) % XA.shape[dd] + 1 end)
      local t = H.t(X, F64)
      H.close(t:gather(d, H.t(R.nest(idx))), R.nest(ref(XA, dd, idx)), TIGHT)
      H.close(t:gather(d, H.t(R.nest(idx), {dtype = "i32"})), R.nest(ref(XA, dd, idx)), TIGHT, "i32")
    end)
  end

  it("hand values", function()
    local t = H.t({{1, 2}, {3, 4}})
    assert.are.same({{1, 1}, {4, 3}}, t:gather(2, H.t({{1, 1}, {2, 1}})):cpu():totable())
    assert.are.same({{3, 2}}, t:gather(1, H.t({{2, 1}})):cpu():totable())
    assert.are.same({{3}, {2}}, t:t():gather(2, H.t({{2}, {1}})):cpu():totable()) -- t:t() is {{1, 3}, {2, 4}}
  end)

  it("refuses out-of-range indices and indices of another rank", function()
    local t = H.t({{1, 2}, {3, 4}})
    H.errors(function() return t:gather(2, H.t({{3, 1}})) end, "gather", "out of range")
    H.errors(function() return t:gather(2, H.t({{0, 1}})) end, "gather", "out of range")
    H.errors(function() return t:gather(2, H.t({1, 1})) end, "gather")
    H.errors(function() return t:gather(1, H.t({{1, 1, 1}})) end, "gather")
  end)

  it("has the right gradient, repeated indices accumulating", function()
    local idx = H.t({{{1, 2}, {3, 3}}, {{3, 1}, {1, 1}}}) -- [2, 2, 2] picks along dim 1 of [3, 4, 2]
    H.gradcheck(function(a) return a:gather(1, idx) end, {H.t(X, F64)})
    H.gradcheck(function(a) return a:gather(2, H.t({{{4, 4}}, {{1, 2}}, {{2, 3}}})) end, {H.t(X, F64)})
    local a = H.t({{1, 2}, {3, 4}}, {dtype = "f64", requires_grad = true})
    a:gather(2, H.t({{2, 2, 2}, {1, 2, 1}})):sum():backward()
    H.close(a.grad, {{0, 3}, {2, 1}})
  end)
end)

describe("scatter_add", function()
  local function ref(a, d, idx, src)
    local r = R.new(a.shape, {table.unpack(a.data)})
    for k = 1, R.numel(idx.shape) do
      local c = R.coords(idx.shape, k)
      local f = R.flat(r.shape, with(c, d, idx.data[k]))
      r.data[f] = r.data[f] + R.at(src, c)
    end
    return r
  end

  for _, d in ipairs({1, 2, 3, -1}) do
    it("adds src[c] at x[c with dim " .. d .. " replaced by index[c]], out of place", function()
      local dd = d < 0 and d + 4 or d
      local ishape = {2, 3, 2}
      ishape[dd] = 4
      local idx = R.fill(ishape, function(_, k) return (k * 5) % XA.shape[dd] + 1 end)
      local src = R.from(R.rand({4, 4, 4}, -1, 1, 30 + dd)) -- larger than the index: only its leading block is used
      local t = H.t(X, F64)
      local r = t:scatter_add(d, H.t(R.nest(idx)), H.t(R.nest(src), F64))
      H.close(r, R.nest(ref(XA, dd, idx, src)), TIGHT)
      H.close(t, X, TIGHT, "scatter_add leaves self alone")
    end)
  end

  it("hand values: collisions accumulate", function()
    local z = flame.zeros(2, 3, H.opts(F64))
    local r = z:scatter_add(2, H.t({{1, 3, 1}, {2, 2, 2}}), H.t({{1, 2, 3}, {4, 5, 6}}, F64))
    H.close(r, {{4, 0, 2}, {0, 15, 0}})
    local r1 = z:scatter_add(1, H.t({{2, 1, 2}}), H.t({{1, 2, 3}}, F64))
    H.close(r1, {{0, 2, 0}, {1, 0, 3}})
  end)

  it("refuses out-of-range indices and an index larger than the source", function()
    local z = flame.zeros(2, 3, H.opts(F64))
    H.errors(function() return z:scatter_add(2, H.t({{4}}), H.t({{1}}, F64)) end, "scatter_add", "out of range")
    H.errors(function() return z:scatter_add(2, H.t({{0}}), H.t({{1}}, F64)) end, "scatter_add", "out of range")
    H.errors(function() return z:scatter_add(2, H.t({{1, 2}}), H.t({{1}}, F64)) end, "scatter_add")
  end)

  it("has the right gradient in self and source", function()
    local idx = H.t({{{1, 2}, {3, 3}, {1, 1}}, {{3, 1}, {2, 2}, {2, 3}}}) -- [2, 3, 2] along dim 1 of [3, 4, 2]
    H.gradcheck(function(a, s) return a:scatter_add(1, idx, s) end, {H.t(X, F64), H.t(R.rand({2, 3, 2}, -1, 1, 40), F64)})
    H.gradcheck(function(a, s) return a:scatter_add(2, H.t({{{4, 4}}, {{1, 2}}, {{2, 3}}}), s) end,
      {H.t(X, F64), H.t(R.rand({3, 2, 2}, -1, 1, 41), F64)}) -- a source larger than the index
  end)
end)

describe("masked_fill", function()
  it("fills where the mask is true, broadcasting the mask", function()
    local t = H.t(X, F64)
    local mask = R.fill({4, 1}, function(c) return c[1] % 2 == 0 end)
    local r = t:masked_fill(H.t(R.nest(mask)), -7)
    H.close(r, R.nest(R.fill(XA.shape, function(c, k) return c[2] % 2 == 0 and -7 or XA.data[k] end)), TIGHT)
    H.close(t, X, TIGHT, "masked_fill leaves self alone")
    local i = H.t({{1, 2}, {3, 4}}):masked_fill(H.t({{true, false}, {false, true}}), 0)
    assert.are.equal("i64", i.dtype)
    assert.are.same({{0, 2}, {3, 0}}, i:cpu():totable())
    H.close(H.t({1, 2, 3}):masked_fill(H.t({false, true, false}), -math.huge), {1, -math.huge, 3})
  end)

  it("needs a bool mask that broadcasts", function()
    H.errors(function() return H.t({1.0, 2.0}):masked_fill(H.t({1, 0}), 0) end, "masked_fill", "bool")
    H.errors(function() return H.t({1.0, 2.0}):masked_fill(H.t({true, false, true}), 0) end, "masked_fill")
  end)

  it("has the right gradient: none where filled", function()
    local mask = H.t(R.nest(R.fill({3, 4, 2}, function(_, k) return k % 3 == 0 end)))
    H.gradcheck(function(a) return a:masked_fill(mask, 2) end, {H.t(X, F64)})
    H.gradcheck(function(a) return a:masked_fill(H.t({{true}, {false}, {true}, {false}}), 0) end, {H.t(X, F64)})
  end)
end)
