-- Linear algebra and softmax: matmul in every rank combination (1-D, 2-D,
-- batched with broadcast batch dims, transposed and strided operands), bmm, mm,
-- softmax/log_softmax along each dim with large inputs, against plain-Lua
-- references, and finite-difference gradients.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local F64 = {dtype = "f64"}
local TIGHT = {atol = 1e-12, rtol = 1e-12}

-- Reference matmul with NumPy/torch semantics for any ranks >= 1.
local function matmul(a, b)
  local A, B = a, b
  if #a.shape == 1 then A = R.new({1, a.shape[1]}, a.data) end
  if #b.shape == 1 then B = R.new({b.shape[1], 1}, b.data) end
  local na, nb = #A.shape, #B.shape
  local M, K, N = A.shape[na - 1], A.shape[na], B.shape[nb]
  assert(B.shape[nb - 1] == K, "reference: inner dims differ")
  local ba, bb = {table.unpack(A.shape, 1, na - 2)}, {table.unpack(B.shape, 1, nb - 2)}
  local batch = R.bshape(ba, bb)
  local oshape = {table.unpack(batch)}
  oshape[#oshape + 1] = M
  oshape[#oshape + 1] = N
  local out = R.fill(oshape, function(c)
    local nbt = #batch
    local s = 0
    for k = 1, K do
      local ca, cb = {}, {}
      for d = 1, na - 2 do
        local v = c[d + nbt - (na - 2)]
        ca[d] = ba[d] == 1 and 1 or v
      end
      for d = 1, nb - 2 do
        local v = c[d + nbt - (nb - 2)]
        cb[d] = bb[d] == 1 and 1 or v
      end
      ca[#ca + 1], ca[#ca + 2] = c[nbt + 1], k
      cb[#cb + 1], cb[#cb + 2] = k, c[nbt + 2]
      s = s + R.at(A, ca) * R.at(B, cb)
    end
    return s
  end)
  -- drop the dims a 1-D operand gained
  local shape = {}
  for d = 1, #oshape do
    local drop = (#a.shape == 1 and d == #oshape - 1) or (#b.shape == 1 and d == #oshape)
    if not drop then shape[#shape + 1] = oshape[d] end
  end
  return R.new(shape, out.data)
end

local CASES = {
  {"1-D . 1-D", {4}, {4}, {}},
  {"1-D . 2-D", {3}, {3, 5}, {5}},
  {"2-D . 1-D", {2, 3}, {3}, {2}},
  {"2-D . 2-D", {2, 3}, {3, 4}, {2, 4}},
  {"3-D . 2-D", {2, 3, 4}, {4, 5}, {2, 3, 5}},
  {"2-D . 3-D", {3, 4}, {2, 4, 2}, {2, 3, 2}},
  {"1-D . 3-D", {4}, {2, 4, 3}, {2, 3}},
  {"3-D . 1-D", {2, 3, 4}, {4}, {2, 3}},
  {"3-D . 3-D", {2, 2, 3}, {2, 3, 2}, {2, 2, 2}},
  {"broadcast batch dims", {2, 1, 3, 4}, {3, 4, 2}, {2, 3, 3, 2}},
  {"broadcast both batch dims", {2, 1, 2, 3}, {1, 3, 3, 2}, {2, 3, 2, 2}},
}

describe("matmul", function()
  for i, c in ipairs(CASES) do
    local name, sa, sb, so = table.unpack(c)
    it(name .. " " .. table.concat(sa, "x") .. " @ " .. table.concat(sb, "x"), function()
      local a, b = R.rand(sa, -1, 1, 10 + i), R.rand(sb, -1, 1, 30 + i)
      local want = matmul(R.from(a), R.from(b))
      assert.are.same(so, want.shape) -- the reference agrees with the expected shape
      local r = H.t(a, F64):matmul(H.t(b, F64))
      assert.are.same(so, r.shape)
      H.close(r, R.nest(want), TIGHT)
      H.close(flame.matmul(H.t(a, F64), H.t(b, F64)), R.nest(want), TIGHT)
      H.close(H.t(a):matmul(H.t(b)), R.nest(want), {atol = 1e-5, rtol = 1e-5}, "f32")
    end)

    it(name .. " has the right gradient", function()
      H.gradcheck(function(p, q) return p:matmul(q) end, {H.t(R.rand(sa, -1, 1, 50 + i), F64), H.t(R.rand(sb, -1, 1, 70 + i), F64)})
    end)
  end

  it("a hand-computed product", function()
    H.close(H.t({{1, 2}, {3, 4}}, F64):matmul(H.t({{5, 6}, {7, 8}}, F64)), {{19, 22}, {43, 50}})
    H.close(H.t({1, 2, 3}, F64):matmul(H.t({4, 5, 6}, F64)), 32)
    local i = H.t({{1, 2}, {3, 4}}):matmul(H.t({{5, 6}, {7, 8}}))
    assert.are.equal("i64", i.dtype)
    assert.are.same({{19, 22}, {43, 50}}, i:cpu():totable())
  end)

  it("takes transposed, narrowed and expanded operands", function()
    local a, b = R.rand({4, 3}, -1, 1, 91), R.rand({5, 4}, -1, 1, 92)
    local A, B = R.from(a), R.from(b)
    local At, Bt = R.permute(A, {2, 1}), R.permute(B, {2, 1})
    local ta, tb = H.t(a, F64):t(), H.t(b, F64):t() -- [3, 4] and [4, 5], both strided
    assert.is_false(ta:is_contiguous())
    H.close(ta:matmul(tb), R.nest(R.mm(At, Bt)), TIGHT)
    H.close(ta:matmul(H.t(R.nest(Bt), F64)), R.nest(R.mm(At, Bt)), TIGHT)
    H.close(H.t(R.nest(At), F64):matmul(tb), R.nest(R.mm(At, Bt)), TIGHT)
    -- a column slice: rows stride 5, not contiguous
    local wide = R.rand({4, 5}, -1, 1, 93)
    local W = R.from(wide)
    local sl = H.t(wide, F64):narrow(2, 2, 3) -- [4, 3]
    local S = R.fill({4, 3}, function(c) return R.at(W, {c[1], c[2] + 1}) end)
    H.close(ta:matmul(sl), R.nest(R.mm(At, S)), TIGHT)
    -- an expanded batch (stride 0) against a real batch
    local e = H.t(R.nest(At), F64):unsqueeze(1):expand(2, 3, 4)
    local bb = R.rand({2, 4, 2}, -1, 1, 94)
    H.close(e:matmul(H.t(bb, F64)), R.nest(matmul(R.new({1, 3, 4}, At.data), R.from(bb))), TIGHT)
    -- a transposed batch of matrices
    local tb3 = H.t(R.rand({2, 2, 4}, -1, 1, 95), F64):transpose(2, 3) -- [2, 4, 2]
    H.close(H.t(R.nest(At), F64):matmul(tb3), R.nest(matmul(At, R.permute(R.from(R.rand({2, 2, 4}, -1, 1, 95)), {1, 3, 2}))), TIGHT)
  end)

  it("gradients through transposed operands", function()
    H.gradcheck(function(p, q) return p:t():matmul(q:t()) end, {H.t(R.rand({4, 3}, -1, 1, 96), F64), H.t(R.rand({5, 4}, -1, 1, 97), F64)})
    H.gradcheck(function(p, q) return p:matmul(q:transpose(-1, -2)) end, {H.t(R.rand({2, 3, 4}, -1, 1, 98), F64), H.t(R.rand({2, 2, 4}, -1, 1, 99), F64)})
  end)

  it("computes f16 and bf16 in their dtype", function()
    local a, b = {{1, 2}, {3, 4}}, {{0.5, -1}, {0.25, 2}}
    for _, dt in ipairs({"f16", "bf16"}) do
      local r = H.t(a, {dtype = dt}):matmul(H.t(b, {dtype = dt}))
      assert.are.equal(dt, r.dtype)
      H.close(r, {{1, 3}, {2.5, 5}})
    end
  end)

  it("refuses mismatched inner dims and 0-dim operands, naming the shapes", function()
    H.errors(function() return H.t({{1, 2}}):matmul(H.t({{1, 2}})) end, "matmul", "[1, 2]")
    H.errors(function() return H.t(R.rand({2, 3, 4})):matmul(H.t(R.rand({3, 3, 2}))) end, "matmul")
    H.errors(function() return H.t(1.0):matmul(H.t({1.0})) end, "matmul")
  end)
end)

describe("bmm and mm", function()
  it("bmm multiplies batches of matrices", function()
    local a, b = R.rand({3, 2, 4}, -1, 1, 101), R.rand({3, 4, 5}, -1, 1, 102)
    local want = R.nest(matmul(R.from(a), R.from(b)))
    H.close(flame.bmm(H.t(a, F64), H.t(b, F64)), want, TIGHT)
    H.close(H.t(a, F64):bmm(H.t(b, F64)), want, TIGHT)
    H.gradcheck(function(p, q) return flame.bmm(p, q) end, {H.t(a, F64), H.t(b, F64)})
    H.gradcheck(function(p, q) return flame.bmm(p:transpose(2, 3), q) end, {H.t(R.rand({3, 4, 2}, -1, 1, 103), F64), H.t(b, F64)})
  end)

  it("bmm refuses other ranks and differing batches", function()
    H.errors(function() return flame.bmm(H.t(R.rand({2, 3})), H.t(R.rand({3, 2}))) end, "bmm")
    H.errors(function() return flame.bmm(H.t(R.rand({2, 2, 3})), H.t(R.rand({3, 3, 2}))) end, "bmm")
  end)

  it("mm multiplies two matrices", function()
    local a, b = R.rand({3, 4}, -1, 1, 111), R.rand({4, 2}, -1, 1, 112)
    local want = R.nest(R.mm(R.from(a), R.from(b)))
    H.close(H.t(a, F64):mm(H.t(b, F64)), want, TIGHT)
    H.close(flame.mm(H.t(a, F64), H.t(b, F64)), want, TIGHT)
    H.gradcheck(function(p, q) return p:mm(q) end, {H.t(a, F64), H.t(b, F64)})
    H.errors(function() return H.t(R.rand({4})):mm(H.t(b)) end, "mm")
    H.errors(function() return H.t(R.rand({2, 3, 4})):mm(H.t(b)) end, "mm")
  end)
end)

describe("softmax and log_softmax", function()
  local X = R.rand({2, 3, 4}, -3, 3, 121)
  local XA = R.from(X)
  local function ref(a, d, log)
    d = d < 0 and d + #a.shape + 1 or d
    return R.fill(a.shape, function(c)
      local m = -math.huge
      for k = 1, a.shape[d] do
        local cc = {table.unpack(c)}
        cc[d] = k
        m = math.max(m, R.at(a, cc))
      end
      local s = 0
      for k = 1, a.shape[d] do
        local cc = {table.unpack(c)}
        cc[d] = k
        s = s + math.exp(R.at(a, cc) - m)
      end
      local v = R.at(a, c) - m
      return log and v - math.log(s) or math.exp(v) / s
    end)
  end

  for _, d in ipairs({1, 2, 3, -1, -2}) do
    it("along dim " .. d .. " match the reference, and softmax sums to 1", function()
      local t = H.t(X, F64)
      H.close(t:softmax(d), R.nest(ref(XA, d)), TIGHT)
      H.close(t:log_softmax(d), R.nest(ref(XA, d, true)), TIGHT)
      H.close(flame.softmax(t, d), R.nest(ref(XA, d)), TIGHT)
      H.close(H.t(X):softmax(d), R.nest(ref(XA, d)), {atol = 1e-6, rtol = 1e-5}, "f32")
      local sums = t:softmax(d):sum(d)
      H.close(sums, flame.ones(sums.shape, H.opts(F64)), TIGHT)
    end)

    it("along dim " .. d .. " have the right gradients", function()
      H.gradcheck(function(a) return a:softmax(d) end, {H.t(X, F64)})
      H.gradcheck(function(a) return a:log_softmax(d) end, {H.t(X, F64)})
    end)
  end

  it("stay finite and exact for large-magnitude inputs", function()
    for _, dt in ipairs({"f32", "f64"}) do
      local big = H.t({{1000, 1001, 1002}, {-1000, -1001, -1002}, {1e4, 0, -1e4}}, {dtype = dt})
      local e2, e1 = math.exp(-2), math.exp(-1)
      local z = 1 + e1 + e2
      local want = {{e2 / z, e1 / z, 1 / z}, {1 / z, e1 / z, e2 / z}, {1, 0, 0}}
      H.close(big:softmax(2), want, {atol = 1e-7, rtol = 1e-6}, dt)
      local lz = math.log(z)
      H.close(big:log_softmax(2), {{-2 - lz, -1 - lz, -lz}, {-lz, -1 - lz, -2 - lz}, {0, -1e4, -2e4}},
        {atol = 1e-4, rtol = 1e-6}, dt .. " log")
    end
    H.gradcheck(function(a) return a:softmax(-1) end, {H.t({{1000, 1001, 1002}, {-1000, -999.5, -1001}}, F64)})
    H.gradcheck(function(a) return a:log_softmax(1) end, {H.t({{500, -500}, {501, -499}}, F64)})
  end)

  it("give a uniform row for equal inputs and handle -inf", function()
    H.close(H.t({{5, 5, 5, 5}}):softmax(2), {{0.25, 0.25, 0.25, 0.25}})
    H.close(H.t({0, -math.huge, 0}, F64):softmax(1), {0.5, 0, 0.5})
    H.close(H.t({0, -math.huge}, F64):log_softmax(1), {0, -math.huge})
  end)

  it("read a transposed input in its logical order", function()
    local t = H.t(X, F64):transpose(1, 3) -- [4, 3, 2]
    local P = R.permute(XA, {3, 2, 1})
    H.close(t:softmax(3), R.nest(ref(P, 3)), TIGHT)
    H.close(t:log_softmax(1), R.nest(ref(P, 1, true)), TIGHT)
    H.gradcheck(function(a) return a:transpose(1, 3):softmax(2) end, {H.t(X, F64)})
  end)

  it("compute integers in f32", function()
    local s = H.t({1, 2, 3}):softmax(1)
    assert.are.equal("f32", s.dtype)
    H.close(s, R.nest(ref(R.from({1, 2, 3}), 1)), {atol = 1e-6})
  end)
end)
