-- Views and shape ops: view/reshape (-1), permute, transpose, t, narrow,
-- select, squeeze/unsqueeze, expand, flatten, chunk, split, flip, cat, stack,
-- t[i] and t[i] = x, #t; storage sharing (writes through a view reach the
-- base); and finite-difference gradients for every one of them.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local EXACT = {atol = 0, rtol = 0}

-- 0, 1, 2, ... as a nested table of the given shape.
local function iota(shape)
  return R.nest(R.fill(shape, function(_, k) return k - 1 end))
end
local X = iota({2, 3, 4})
local XA = R.from(X)
local G = R.rand({2, 3, 4}, -1, 1, 3) -- gradcheck input

local function slice(a, dim, start, len)
  local shape = {table.unpack(a.shape)}
  shape[dim] = len
  return R.fill(shape, function(c)
    local cc = {table.unpack(c)}
    cc[dim] = c[dim] + start - 1
    return R.at(a, cc)
  end)
end

describe("shape metadata", function()
  it("size, stride, dim, numel and is_contiguous follow the view", function()
    local t = H.t(X, F64)
    assert.are.same({2, 3, 4}, t:size())
    assert.are.equal(3, t:size(2))
    assert.are.equal(4, t:size(-1))
    assert.are.same({12, 4, 1}, t:stride())
    assert.are.equal(4, t:stride(2))
    assert.are.equal(3, t:dim())
    assert.are.equal(24, t:numel())
    assert.is_true(t:is_contiguous())
    local p = t:permute(3, 1, 2)
    assert.are.same({1, 12, 4}, p:stride())
    assert.is_false(p:is_contiguous())
    assert.are.same({12, 4, 1}, t:narrow(3, 2, 2):stride(), "a narrow keeps the base's strides")
    assert.are.same({4, 0}, t[1]:narrow(2, 1, 1):expand(3, 5):stride())
    H.errors(function() return t:size(4) end, "dim 4")
  end)
end)

describe("view and reshape", function()
  it("keep the row-major order and share storage", function()
    local t = H.t(X, F64)
    local v = t:view(4, 6)
    assert.are.same({4, 6}, v.shape)
    H.close(v, R.nest(R.new({4, 6}, XA.data)), EXACT)
    local w = t:view({3, 8})
    assert.are.same({3, 8}, w.shape)
    v[1][1] = 100 -- writes through to t
    assert.are.equal(100, t[1][1][1]:item())
    assert.are.equal(100, w[1][1]:item())
  end)

  it("infer one -1", function()
    local t = H.t(X, F64)
    assert.are.same({6, 4}, t:view(-1, 4).shape)
    assert.are.same({2, 12}, t:reshape(2, -1).shape)
    assert.are.same({24}, t:reshape(-1).shape)
    assert.are.same({2, 3, 2, 2}, t:view({2, -1, 2, 2}).shape)
    H.close(t:reshape(-1), XA.data, EXACT)
    H.errors(function() return t:view(-1, -1) end, "-1")
    H.errors(function() return t:view(5, -1) end, "view", "[2, 3, 4]")
    H.errors(function() return t:reshape(7) end, "reshape")
  end)

  it("view refuses a non-viewable layout; reshape copies it", function()
    local t = H.t(X, F64):transpose(1, 3) -- [4, 3, 2], not contiguous
    H.errors(function() return t:view(24) end, "view", "reshape")
    local r = t:reshape(24)
    local P = R.permute(XA, {3, 2, 1})
    H.close(r, P.data, EXACT)
    -- a view-compatible strided case still shares storage
    local base = H.t(X, F64)
    local nr = base:narrow(3, 1, 2) -- [2, 3, 2]: last dim contiguous, rows strided
    local rv = nr:reshape(2, 3, 2, 1)
    rv:fill_(-1)
    assert.are.equal(-1, base[2][3][2]:item())
    assert.are.equal(XA.data[R.flat({2, 3, 4}, {2, 3, 3})], base[2][3][3]:item())
  end)

  it("have the right gradients", function()
    H.gradcheck(function(a) return a:view(4, 6) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:reshape(-1, 2) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:transpose(1, 2):reshape(6, 4) end, {H.t(G, F64)})
  end)
end)

describe("permute, transpose and t", function()
  it("permute moves dims, with negative dims, as numbers or a table", function()
    local t = H.t(X, F64)
    local p = t:permute(3, 1, 2)
    assert.are.same({4, 2, 3}, p.shape)
    H.close(p, R.nest(R.permute(XA, {3, 1, 2})), EXACT)
    H.close(t:permute({-1, -3, -2}), R.nest(R.permute(XA, {3, 1, 2})), EXACT)
    assert.is_false(p:is_contiguous())
    H.errors(function() return t:permute(1, 2) end, "permute")
    H.errors(function() return t:permute(1, 1, 2) end, "permute")
  end)

  it("transpose swaps two dims; t swaps a matrix and leaves vectors", function()
    local t = H.t(X, F64)
    H.close(t:transpose(1, 3), R.nest(R.permute(XA, {3, 2, 1})), EXACT)
    H.close(t:transpose(-1, 2), R.nest(R.permute(XA, {1, 3, 2})), EXACT)
    local m = H.t({{1, 2, 3}, {4, 5, 6}})
    assert.are.same({{1, 4}, {2, 5}, {3, 6}}, m:t():cpu():totable())
    assert.are.same({3, 2}, m:t().shape)
    assert.are.same({1, 3}, m:t():stride())
    assert.are.same({1, 2, 3}, H.t({1, 2, 3}):t():cpu():totable())
    H.errors(function() return t:t() end, "t")
  end)

  it("share storage with the base", function()
    local t = H.t({{1, 2, 3}, {4, 5, 6}}, F64)
    t:t()[3][1] = 30 -- element (1, 3) of t
    t:permute(2, 1):narrow(1, 1, 1):fill_(0) -- column 1 of t
    H.close(t, {{0, 2, 30}, {0, 5, 6}}, EXACT)
  end)

  it("have the right gradients", function()
    H.gradcheck(function(a) return a:permute(3, 1, 2) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:permute(-2, -1, -3) * a:permute(2, 3, 1) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:transpose(1, 3) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:t() end, {H.t(R.rand({3, 4}, -1, 1, 4), F64)})
    H.gradcheck(function(a) return a:t() * 2 end, {H.t(R.rand({5}, -1, 1, 5), F64)})
  end)
end)

describe("narrow and select", function()
  it("narrow takes a 1-based start and a length", function()
    local t = H.t(X, F64)
    H.close(t:narrow(3, 2, 2), R.nest(slice(XA, 3, 2, 2)), EXACT)
    H.close(t:narrow(1, 2, 1), R.nest(slice(XA, 1, 2, 1)), EXACT)
    H.close(t:narrow(-2, 1, 3), R.nest(slice(XA, 2, 1, 3)), EXACT)
    assert.are.same({2, 3, 0}, t:narrow(3, 5, 0).shape)
    H.errors(function() return t:narrow(3, 4, 2) end, "narrow")
    H.errors(function() return t:narrow(3, 0, 1) end, "narrow", "1-based")
  end)

  it("select drops the dim; negative indices count from the end", function()
    local t = H.t(X, F64)
    local s = t:select(2, 3)
    assert.are.same({2, 4}, s.shape)
    H.close(s, R.nest(R.fill({2, 4}, function(c) return R.at(XA, {c[1], 3, c[2]}) end)), EXACT)
    H.close(t:select(-1, -1), R.nest(R.fill({2, 3}, function(c) return R.at(XA, {c[1], c[2], 4}) end)), EXACT)
    H.close(t:select(1, 2):select(1, 1), {12, 13, 14, 15}, EXACT)
    H.errors(function() return t:select(2, 4) end, "select")
    H.errors(function() return t:select(2, 0) end, "1-based")
    H.errors(function() return t:select(2, -4) end, "select")
  end)

  it("share storage with the base", function()
    local t = H.t(X, F64)
    t:narrow(3, 2, 2):mul_(-1)
    t:select(1, 2):select(2, 4):fill_(99) -- t[2][:, 4]
    local want = R.fill({2, 3, 4}, function(c, k)
      local v = XA.data[k]
      if c[3] == 2 or c[3] == 3 then v = -v end
      if c[1] == 2 and c[3] == 4 then v = 99 end
      return v
    end)
    H.close(t, R.nest(want), EXACT)
  end)

  it("have the right gradients", function()
    H.gradcheck(function(a) return a:narrow(3, 2, 2) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:narrow(1, 2, 1):narrow(-1, 1, 3) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:select(2, 3) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:select(-1, -2) + a:select(-1, 1) end, {H.t(G, F64)})
  end)
end)

describe("t[i], t[i] = x and #t", function()
  it("t[i] is select(1, i), also negative, and chains", function()
    local t = H.t(X, F64)
    assert.are.same({3, 4}, t[2].shape)
    H.close(t[2], R.nest(R.fill({3, 4}, function(c) return R.at(XA, {2, c[1], c[2]}) end)), EXACT)
    assert.are.equal(23, t[-1][-1][-1]:item())
    assert.are.equal(6, t[1][2][3]:item())
    H.errors(function() return t[3] end, "select")
    H.errors(function() return t[0] end, "1-based")
  end)

  it("t[i] = x copies a tensor (broadcast) or a number into the slice", function()
    local t = flame.zeros(3, 2, H.opts(F64))
    t[1] = H.t({1, 2}, F64)
    t[2] = 7
    t[-1] = H.t({5}, F64)
    H.close(t, {{1, 2}, {7, 7}, {5, 5}}, EXACT)
    t[1][2] = -1
    H.close(t, {{1, -1}, {7, 7}, {5, 5}}, EXACT)
    t[3] = t[1] -- a row of the same tensor
    H.close(t, {{1, -1}, {7, 7}, {1, -1}}, EXACT)
    H.errors(function() t[4] = 1 end, "select")
    H.errors(function() t[1] = H.t({1, 2, 3}, F64) end, "copy_")
  end)

  it("#t is the size of dim 1", function()
    assert.are.equal(2, #H.t(X))
    assert.are.equal(5, #flame.zeros(5, 2, H.opts()))
    assert.are.equal(0, #flame.zeros(0, H.opts()))
    H.errors(function() return #H.t(3.0) end, "0-dim")
  end)

  it("t[i] has the right gradient", function()
    H.gradcheck(function(a) return a[2] end, {H.t(G, F64)})
    H.gradcheck(function(a) return a[1][-1] * a[2][1] end, {H.t(G, F64)})
  end)
end)

describe("squeeze and unsqueeze", function()
  it("squeeze() drops every size-1 dim; squeeze(d) only that one if it is 1", function()
    local t = H.t(iota({1, 3, 1, 2}), F64)
    assert.are.same({3, 2}, t:squeeze().shape)
    assert.are.same({3, 1, 2}, t:squeeze(1).shape)
    assert.are.same({1, 3, 2}, t:squeeze(-2).shape)
    assert.are.same({1, 3, 1, 2}, t:squeeze(2).shape) -- size 3: unchanged
    H.close(t:squeeze(), iota({3, 2}), EXACT)
    assert.are.same({}, H.t({{5}}):squeeze().shape)
  end)

  it("unsqueeze inserts a size-1 dim, negative dims counting in the result", function()
    local t = H.t(iota({3, 2}), F64)
    assert.are.same({1, 3, 2}, t:unsqueeze(1).shape)
    assert.are.same({3, 1, 2}, t:unsqueeze(2).shape)
    assert.are.same({3, 2, 1}, t:unsqueeze(3).shape)
    assert.are.same({3, 2, 1}, t:unsqueeze(-1).shape)
    assert.are.same({3, 1, 2}, t:unsqueeze(-2).shape)
    H.close(t:unsqueeze(2), {{{0, 1}}, {{2, 3}}, {{4, 5}}}, EXACT)
    H.errors(function() return t:unsqueeze(4) end, "unsqueeze")
  end)

  it("share storage", function()
    local t = H.t(iota({3, 2}), F64)
    t:unsqueeze(1)[1][2]:fill_(-5)
    t:unsqueeze(3):squeeze()[3][1] = -6
    H.close(t, {{0, 1}, {-5, -5}, {-6, 5}}, EXACT)
  end)

  it("have the right gradients", function()
    H.gradcheck(function(a) return a:squeeze() end, {H.t(R.rand({1, 3, 1, 2}, -1, 1, 6), F64)})
    H.gradcheck(function(a) return a:squeeze(3) end, {H.t(R.rand({1, 3, 1, 2}, -1, 1, 7), F64)})
    H.gradcheck(function(a) return a:unsqueeze(2) end, {H.t(R.rand({3, 2}, -1, 1, 8), F64)})
    H.gradcheck(function(a) return a:unsqueeze(-1) * a:unsqueeze(1):transpose(1, 2) end, {H.t(R.rand({3, 2}, -1, 1, 9), F64)})
  end)
end)

describe("expand", function()
  it("repeats size-1 dims and adds leading dims without copying", function()
    local t = H.t({{1}, {2}, {3}}, F64)
    local e = t:expand(3, 4)
    assert.are.same({3, 4}, e.shape)
    assert.are.same({1, 0}, e:stride())
    H.close(e, {{1, 1, 1, 1}, {2, 2, 2, 2}, {3, 3, 3, 3}}, EXACT)
    local f = t:expand({2, 3, 2})
    assert.are.same({2, 3, 2}, f.shape)
    H.close(f, {{{1, 1}, {2, 2}, {3, 3}}, {{1, 1}, {2, 2}, {3, 3}}}, EXACT)
    assert.are.same({3, 5}, t:expand(-1, 5).shape) -- -1 keeps the size
    assert.are.same({2, 3, 4}, H.t({1, 2, 3, 4}):expand_as(H.t(X)).shape)
    t[2][1] = 20
    assert.are.equal(20, e[2][4]:item(), "an expansion reads its base")
    H.errors(function() return t:expand(4, 4) end, "expand", "[3, 1]")
    H.errors(function() return t:expand(4) end, "expand")
  end)

  it("sums the gradient over the expanded dims", function()
    H.gradcheck(function(a) return a:expand(3, 4) end, {H.t(R.rand({3, 1}, -1, 1, 10), F64)})
    H.gradcheck(function(a) return a:expand(2, 3, 4) end, {H.t(R.rand({1, 4}, -1, 1, 11), F64)})
    H.gradcheck(function(a) return a:expand(2, -1, 3) end, {H.t(R.rand({1, 2, 1}, -1, 1, 12), F64)})
  end)
end)

describe("clone, contiguous and detach", function()
  it("clone and contiguous copy a strided tensor into row-major storage", function()
    local t = H.t(X, F64):transpose(1, 3)
    local c = t:contiguous()
    assert.is_true(c:is_contiguous())
    H.close(c, R.nest(R.permute(XA, {3, 2, 1})), EXACT)
    c:fill_(0)
    assert.are.equal(1, t[2][1][1]:item(), "contiguous of a strided tensor copies")
    local k = H.t(X, F64):clone()
    k:fill_(0)
    H.close(H.t(X, F64), X, EXACT)
    local u = H.t(X, F64)
    assert.are.equal(u, u:contiguous(), "contiguous of a contiguous tensor is the tensor")
  end)

  it("detach shares storage and ends the graph", function()
    local a = H.t({1, 2}, {dtype = "f64", requires_grad = true})
    local d = (a * 2):detach()
    assert.is_false(d.requires_grad)
    local v = H.t({1, 2}, F64)
    v:detach():fill_(5)
    H.close(v, {5, 5}, EXACT)
  end)

  it("clone and contiguous have the right gradients", function()
    H.gradcheck(function(a) return a:clone() end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:transpose(1, 2):contiguous() end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:expand_as(flame.empty(3, 2, 3, 4, H.opts(F64))) end, {H.t(G, F64)})
  end)
end)

describe("flatten", function()
  it("merges dims start..stop (all by default)", function()
    local t = H.t(X, F64)
    assert.are.same({24}, t:flatten().shape)
    assert.are.same({6, 4}, t:flatten(1, 2).shape)
    assert.are.same({2, 12}, t:flatten(2).shape)
    assert.are.same({2, 12}, t:flatten(-2, -1).shape)
    assert.are.same({2, 3, 4}, t:flatten(2, 2).shape)
    H.close(t:flatten(), XA.data, EXACT)
    H.close(t:transpose(1, 2):flatten(1, 2), R.nest(R.new({6, 4}, R.permute(XA, {2, 1, 3}).data)), EXACT)
    assert.are.same({1}, H.t(3.0):flatten().shape)
    H.errors(function() return t:flatten(3, 1) end, "flatten")
  end)

  it("has the right gradient", function()
    H.gradcheck(function(a) return a:flatten() end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:transpose(1, 3):flatten(2) end, {H.t(G, F64)})
  end)
end)

describe("chunk and split", function()
  local function sizes(list)
    local s = {}
    for i, p in ipairs(list) do s[i] = p.shape end
    return s
  end

  it("chunk(n, dim) cuts ceil(size / n) pieces", function()
    local t = H.t(iota({5, 2}), F64)
    assert.are.same({{2, 2}, {2, 2}, {1, 2}}, sizes(t:chunk(3)))
    assert.are.same({{3, 2}, {2, 2}}, sizes(t:chunk(2, 1)))
    assert.are.same({{5, 1}, {5, 1}}, sizes(t:chunk(2, 2)))
    assert.are.same({{5, 1}, {5, 1}}, sizes(t:chunk(5, -1)))
    assert.are.same({{2, 2}, {2, 2}, {1, 2}}, sizes(H.t(iota({5, 2})):chunk(4))) -- as torch: 3 pieces
    local c = t:chunk(3)
    H.close(c[2], {{4, 5}, {6, 7}}, EXACT)
    H.close(c[3], {{8, 9}}, EXACT)
    H.errors(function() return t:chunk(0) end, "chunk")
  end)

  it("split(size, dim) cuts pieces of that size, the last one shorter", function()
    local t = H.t(iota({2, 7}), F64)
    assert.are.same({{2, 3}, {2, 3}, {2, 1}}, sizes(t:split(3, 2)))
    assert.are.same({{2, 7}}, sizes(t:split(7, 2)))
    assert.are.same({{2, 7}}, sizes(t:split(10, -1)))
    assert.are.same({{1, 7}, {1, 7}}, sizes(t:split(1)))
    H.close(t:split(3, 2)[3], {{6}, {13}}, EXACT)
  end)

  it("pieces are views of the input", function()
    local t = H.t(iota({4, 2}), F64)
    t:chunk(2)[2]:fill_(0)
    t:split(1, 2)[1]:add_(100)
    H.close(t, {{100, 1}, {102, 3}, {100, 0}, {100, 0}}, EXACT)
  end)

  it("pieces have the right gradients", function()
    H.gradcheck(function(a) local p = a:chunk(3, 1) return p[1] * p[3]:expand(2, 2) + p[2] end, {H.t(R.rand({5, 2}, -1, 1, 13), F64)})
    H.gradcheck(function(a) local p = a:split(2, -1) return flame.cat({p[3], p[1], p[2]}, 2) end, {H.t(R.rand({2, 5}, -1, 1, 14), F64)})
  end)
end)

describe("flip", function()
  local function flipped(a, dims)
    local set = {}
    for _, d in ipairs(dims) do set[d < 0 and d + #a.shape + 1 or d] = true end
    return R.fill(a.shape, function(c)
      local cc = {}
      for d, v in ipairs(c) do cc[d] = set[d] and a.shape[d] - v + 1 or v end
      return R.at(a, cc)
    end)
  end

  it("reverses the given dims, as a table or as numbers, into a new tensor", function()
    local t = H.t(X, F64)
    H.close(t:flip({1}), R.nest(flipped(XA, {1})), EXACT)
    H.close(t:flip({3}), R.nest(flipped(XA, {3})), EXACT)
    H.close(t:flip({1, -1}), R.nest(flipped(XA, {1, 3})), EXACT)
    H.close(t:flip(2, 3), R.nest(flipped(XA, {2, 3})), EXACT)
    H.close(t:transpose(1, 3):flip({2}), R.nest(flipped(R.permute(XA, {3, 2, 1}), {2})), EXACT)
    local f = t:flip({1})
    f:fill_(0)
    assert.are.equal(1, t[1][1][2]:item(), "flip copies")
    H.errors(function() return t:flip({1, 1}) end, "flip")
  end)

  it("has the right gradient", function()
    H.gradcheck(function(a) return a:flip({1, 3}) end, {H.t(G, F64)})
    H.gradcheck(function(a) return a:t():flip(1) end, {H.t(R.rand({3, 4}, -1, 1, 15), F64)})
  end)
end)

describe("cat and stack", function()
  local A, B = iota({2, 3}), R.nest(R.map(R.from(iota({2, 3})), function(v) return v + 10 end))

  it("cat joins along an existing dim, negative dims too", function()
    H.close(flame.cat({H.t(A), H.t(B)}), {{0, 1, 2}, {3, 4, 5}, {10, 11, 12}, {13, 14, 15}}, EXACT)
    H.close(flame.cat({H.t(A), H.t(B)}, 1), {{0, 1, 2}, {3, 4, 5}, {10, 11, 12}, {13, 14, 15}}, EXACT)
    H.close(flame.cat({H.t(A), H.t(B)}, 2), {{0, 1, 2, 10, 11, 12}, {3, 4, 5, 13, 14, 15}}, EXACT)
    H.close(flame.cat({H.t(A), H.t({{7}, {8}}), H.t(B)}, -1), {{0, 1, 2, 7, 10, 11, 12}, {3, 4, 5, 8, 13, 14, 15}}, EXACT)
    H.close(flame.cat({H.t(A)}, 1), A, EXACT)
    H.close(flame.cat({H.t(A):t(), H.t(B):t()}, 2), {{0, 3, 10, 13}, {1, 4, 11, 14}, {2, 5, 12, 15}}, EXACT)
    local p = flame.cat({H.t(A), H.t(B, F64)}, 1)
    assert.are.equal("f64", p.dtype)
  end)

  it("cat refuses mismatched shapes, 0-dim tensors and an empty list", function()
    H.errors(function() return flame.cat({H.t(A), H.t({1, 2})}, 1) end, "cat")
    H.errors(function() return flame.cat({H.t(A), H.t(iota({2, 4}))}, 1) end, "cat")
    H.errors(function() return flame.cat({H.t(1.0)}) end, "cat")
    H.errors(function() return flame.cat({}) end, "cat")
  end)

  it("stack joins along a new dim, at any position", function()
    local s = flame.stack({H.t(A), H.t(B)})
    assert.are.same({2, 2, 3}, s.shape)
    H.close(s, {A, B}, EXACT)
    local s2 = flame.stack({H.t(A), H.t(B)}, 2)
    assert.are.same({2, 2, 3}, s2.shape)
    H.close(s2, {{{0, 1, 2}, {10, 11, 12}}, {{3, 4, 5}, {13, 14, 15}}}, EXACT)
    local s3 = flame.stack({H.t(A), H.t(B)}, 3)
    assert.are.same({2, 3, 2}, s3.shape)
    H.close(s3, {{{0, 10}, {1, 11}, {2, 12}}, {{3, 13}, {4, 14}, {5, 15}}}, EXACT)
    H.close(flame.stack({H.t(A), H.t(B)}, -1), s3, EXACT)
    H.errors(function() return flame.stack({H.t(A), H.t(iota({3, 2}))}) end, "stack")
  end)

  it("have the right gradients", function()
    local a, b, c = H.t(R.rand({2, 3}, -1, 1, 16), F64), H.t(R.rand({2, 2}, -1, 1, 17), F64), H.t(R.rand({2, 1}, -1, 1, 18), F64)
    H.gradcheck(function(p, q, r) return flame.cat({p, q, r}, 2) end, {a, b, c})
    H.gradcheck(function(p, q) return flame.cat({p, q, p}, -1) end, {a, b})
    H.gradcheck(function(p, q) return flame.cat({p:t(), q:t()}, 1) end, {a, b})
    H.gradcheck(function(p, q) return flame.cat({p, q:t()}, 1) end, {H.t(R.rand({2, 2}, -1, 1, 19), F64), b})
    for _, d in ipairs({1, 2, 3, -1}) do
      H.gradcheck(function(p, q) return flame.stack({p, q, p * q}, d) end, {a, H.t(R.rand({2, 3}, -1, 1, 20), F64)})
    end
  end)

  it("gradients flow to inputs of another dtype in their own dtype", function()
    local a = H.t(A, {dtype = "f64", requires_grad = true})
    local b = H.t(B, {dtype = "f32", requires_grad = true})
    flame.cat({a, b}, 1):sum():backward()
    assert.are.equal("f64", a.grad.dtype)
    assert.are.equal("f32", b.grad.dtype)
    H.close(b.grad, {{1, 1, 1}, {1, 1, 1}})
  end)
end)
