-- flame.F.layer_norm, rms_norm and group_norm: values against PyTorch fixtures and f64 references composed
-- from flame ops, gradchecks of x, weight and bias, half dtypes, CPU-vs-CUDA parity and the error messages.
local H = require "helper"
local flame = H.flame
local F = flame.F

local function f64(t) return H.t(t, {dtype = "f64"}) end
local function rn(shape, dt) return flame.randn(shape, {dtype = dt or "f64", device = H.device}) end

-- References composed from flame ops (biased variance, as PyTorch).
local function ref_layer(x, nd, w, b, eps)
  local dims = {}
  for d = x:dim() - nd + 1, x:dim() do dims[#dims + 1] = d end
  local m = x:mean(dims, true)
  local v = ((x - m) ^ 2):mean(dims, true)
  local y = (x - m) / (v + (eps or 1e-5)):sqrt()
  if w then y = y * w end
  if b then y = y + b end
  return y
end

local function ref_rms(x, nd, w, eps)
  local dims = {}
  for d = x:dim() - nd + 1, x:dim() do dims[#dims + 1] = d end
  local y = x / ((x ^ 2):mean(dims, true) + (eps or 1e-5)):sqrt()
  return w and y * w or y
end

-- The per-channel affine of [N, C, *] as a broadcastable [C, 1, ..., 1].
local function chan(p, x)
  local shape = {x.shape[2]}
  for _ = 3, x:dim() do shape[#shape + 1] = 1 end
  return p:reshape(shape)
end

local function ref_group(x, groups, w, b, eps)
  local n = x.shape[1]
  local y = ref_layer(x:reshape(n, groups, -1), 1, nil, nil, eps):reshape(x.shape)
  if w then y = y * chan(w, x) end
  if b then y = y + chan(b, x) end
  return y
end

describe("norms", function()
  describe("PyTorch fixtures (f64)", function()
    local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "spec/"
    for _, c in ipairs(dofile(dir .. "fixtures/norm.lua")) do
      it(c.name .. ": values and the gradients of x, weight and bias", function()
        local x, w, b = f64(c.x), f64(c.w), f64(c.b)
        x.requires_grad, w.requires_grad, b.requires_grad = true, true, true
        local y
        if c.op == "layer_norm" then y = F.layer_norm(x, c.shape, w, b, c.eps)
        else y = F.group_norm(x, c.groups, w, b, c.eps) end
        H.close(y, c.y, {atol = 1e-12, rtol = 1e-10})
        y:backward(f64(c.g))
        H.close(x.grad, c.dx, {atol = 1e-12, rtol = 1e-9})
        H.close(w.grad, c.dw, {atol = 1e-12, rtol = 1e-9})
        H.close(b.grad, c.db, {atol = 1e-12, rtol = 1e-9})
      end)
    end
  end)

  describe("layer_norm", function()
    it("matches the f64 reference for normalized_shape of every rank, a number or a table", function()
      local x = rn({2, 3, 4, 5}) * 3 + 2
      for nd = 1, 4 do
        local shape = {}
        for d = 5 - nd, 4 do shape[#shape + 1] = x.shape[d] end
        local w, b = rn(shape), rn(shape)
        H.close(F.layer_norm(x, shape, w, b), ref_layer(x, nd, w, b), {atol = 1e-12}, "rank " .. nd)
        H.close(F.layer_norm(x, shape), ref_layer(x, nd), {atol = 1e-12}, "rank " .. nd .. " no affine")
      end
      local w = rn({5})
      H.close(F.layer_norm(x, 5, w, nil, 0.5), ref_layer(x, 1, w, nil, 0.5), {atol = 1e-12}, "number, weight only")
      H.close(F.layer_norm(x, x.shape), ref_layer(x, 4), {atol = 1e-12}, "a shape object")
    end)

    it("normalises f32 rows long and short, aligned or not", function()
      for _, n in ipairs({1, 3, 8, 100, 1024, 5000}) do
        local x = rn({6, n}) * 2 + 1
        local w, b = rn({n}), rn({n})
        local y = F.layer_norm(x:float(), {n}, w:float(), b:float())
        assert.are.equal("f32", y.dtype)
        H.close(y, ref_layer(x, 1, w, b), {atol = 2e-5, rtol = 1e-4}, "cols " .. n)
      end
    end)

    it("is the input when a row is constant (the variance is 0: (x - mean) = 0)", function()
      local x = H.t({{2, 2, 2}, {1, 2, 3}}, {dtype = "f32"})
      local y = F.layer_norm(x, {3})
      H.close(y[1], {0, 0, 0})
      H.close(y[2], {-1.2247357, 0, 1.2247357}, {atol = 1e-5})
    end)

    it("names its node and keeps the shape of an empty batch", function()
      local x = rn({3, 4})
      x.requires_grad = true
      assert.are.equal("NativeLayerNormBackward", F.layer_norm(x, {4}).grad_fn)
      local e = F.layer_norm(rn({0, 4}), {4}, rn({4}))
      assert.are.same({0, 4}, e.shape)
    end)

    it("passes gradcheck for x, weight and bias", function()
      H.gradcheck(function(x, w, b) return F.layer_norm(x, {4}, w, b) end, {rn({3, 4}), rn({4}), rn({4})})
      H.gradcheck(function(x, w, b) return F.layer_norm(x, {3, 2}, w, b, 0.01) end, {rn({2, 3, 2}), rn({3, 2}), rn({3, 2})})
      H.gradcheck(function(x) return F.layer_norm(x, {2, 3, 2}) end, {rn({2, 3, 2})})
      H.gradcheck(function(x, b) return F.layer_norm(x, {5}, nil, b) end, {rn({2, 5}), rn({5})})
    end)

    it("gives only the gradients asked for (weight alone)", function()
      local x, w = rn({4, 3}), rn({3})
      w.requires_grad = true
      local y = F.layer_norm(x, {3}, w)
      y:sum():backward()
      assert.is_nil(x.grad)
      H.close(w.grad, ref_layer(x, 1):sum(1), {atol = 1e-12})
    end)
  end)

  describe("rms_norm", function()
    it("matches the f64 reference, eps 1e-5 by default", function()
      local x = rn({3, 4, 6})
      local w = rn({4, 6})
      H.close(F.rms_norm(x, {4, 6}, w), ref_rms(x, 2, w), {atol = 1e-12})
      H.close(F.rms_norm(x, 6), ref_rms(x, 1), {atol = 1e-12})
      H.close(F.rms_norm(x, {6}, nil, 0.25), ref_rms(x, 1, nil, 0.25), {atol = 1e-12})
      local z = F.rms_norm(H.t({{0, 0}}, {dtype = "f64"}), {2}, nil, 0)
      assert.is_true(z[1][1]:item() ~= z[1][1]:item(), "0 / sqrt(0) is NaN, as PyTorch")
    end)

    it("passes gradcheck for x and weight", function()
      H.gradcheck(function(x, w) return F.rms_norm(x, {5}, w) end, {rn({3, 5}), rn({5})})
      H.gradcheck(function(x, w) return F.rms_norm(x, {2, 3}, w, 0.1) end, {rn({2, 2, 3}), rn({2, 3})})
      H.gradcheck(function(x) return F.rms_norm(x, {4}) end, {rn({2, 4})})
    end)

    it("names its node", function()
      local x = rn({2, 3})
      x.requires_grad = true
      assert.are.equal("RmsNormBackward", F.rms_norm(x, {3}).grad_fn)
    end)
  end)

  describe("group_norm", function()
    it("matches the f64 reference for every group count, with and without affine", function()
      local x = rn({2, 6, 3, 5}) * 2 - 1
      local w, b = rn({6}), rn({6})
      for _, g in ipairs({1, 2, 3, 6}) do
        H.close(F.group_norm(x, g, w, b), ref_group(x, g, w, b), {atol = 1e-12}, g .. " groups")
        H.close(F.group_norm(x, g), ref_group(x, g), {atol = 1e-12}, g .. " groups, no affine")
      end
      local x2 = rn({4, 6})
      H.close(F.group_norm(x2, 3, w, b, 0.1), ref_group(x2, 3, w, b, 0.1), {atol = 1e-12}, "[N, C]")
      local x3 = rn({2, 4, 7}):float()
      H.close(F.group_norm(x3, 2, w:narrow(1, 1, 4):float(), nil), ref_group(x3:double(), 2, w:narrow(1, 1, 4)),
        {atol = 2e-5, rtol = 1e-4}, "f32, odd spatial size")
    end)

    it("passes gradcheck for x, weight and bias", function()
      H.gradcheck(function(x, w, b) return F.group_norm(x, 2, w, b) end, {rn({2, 4, 3}), rn({4}), rn({4})})
      H.gradcheck(function(x, w, b) return F.group_norm(x, 3, w, b, 0.01) end, {rn({2, 3, 2, 2}), rn({3}), rn({3})})
      H.gradcheck(function(x, w, b) return F.group_norm(x, 2, w, b) end, {rn({3, 4}), rn({4}), rn({4})})
      H.gradcheck(function(x) return F.group_norm(x, 1) end, {rn({2, 3, 4})})
    end)

    it("names its node", function()
      local x = rn({2, 4, 3})
      x.requires_grad = true
      assert.are.equal("NativeGroupNormBackward", F.group_norm(x, 2).grad_fn)
    end)
  end)

  -- silu(group_norm(x)): one pass where the backend has norm_silu_forward and nothing needs a gradient (cpu), else
  -- the two ops. Against that composition: equal in f32 and f64 (the same arithmetic), one rounding apart in halves.
  describe("group_norm_silu", function()
    local function composed(x, g, w, b, eps) return F.group_norm(x, g, w, b, eps):silu() end
    it("equals group_norm then silu, for every dtype, with and without affine", function()
      local x = rn({2, 6, 5, 7}) * 3
      local w, b = rn({6}), rn({6})
      for _, dt in ipairs({"f64", "f32", "bf16", "f16"}) do
        local tol = ({f64 = {atol = 0}, f32 = {atol = 0}, bf16 = {atol = 4e-2, rtol = 1e-2},
          f16 = {atol = 4e-3, rtol = 2e-3}})[dt]
        local xd, wd, bd = x:to(dt), w:to(dt), b:to(dt)
        for _, g in ipairs({1, 3, 6}) do
          local y = F.group_norm_silu(xd, g, wd, bd)
          assert.are.equal(dt, y.dtype)
          H.close(y, composed(xd, g, wd, bd), tol, dt .. " " .. g .. " groups")
          H.close(F.group_norm_silu(xd, g), composed(xd, g), tol, dt .. " " .. g .. " groups, no affine")
        end
        H.close(F.group_norm_silu(xd:reshape(4, 3, 35), 3, wd:narrow(1, 1, 3), nil, 0.5),
          composed(xd:reshape(4, 3, 35), 3, wd:narrow(1, 1, 3), nil, 0.5), tol, dt .. " weight only, eps 0.5")
      end
    end)

    it("is GroupNorm:forward_silu", function()
      flame.manual_seed(3)
      local m = flame.nn.GroupNorm(2, 4):to(H.device):double()
      flame.no_grad(function() m.weight:copy_(rn({4})); m.bias:copy_(rn({4})) end)
      local x = rn({3, 4, 6})
      H.close(m:forward_silu(x), m(x):silu(), {atol = 0})
    end)

    it("passes gradcheck for x, weight and bias (through group_norm and silu), and names silu's node", function()
      H.gradcheck(function(x, w, b) return F.group_norm_silu(x, 2, w, b) end, {rn({2, 4, 3}), rn({4}), rn({4})})
      H.gradcheck(function(x) return F.group_norm_silu(x, 3, nil, nil, 0.01) end, {rn({2, 3, 2, 2})})
      local x = rn({2, 4, 3})
      x.requires_grad = true
      assert.are.equal("SiluBackward", F.group_norm_silu(x, 2).grad_fn)
      x.requires_grad = false
      assert.is_nil(F.group_norm_silu(x, 2).grad_fn)
    end)

    it("names itself in errors", function()
      H.errors(function() return F.group_norm_silu(rn({2, 3, 4}), 2) end,
        "group_norm_silu: groups 2 does not divide the 3 channels (dim 2) of input f64[2, 3, 4]")
      H.errors(function() return F.group_norm_silu(rn({3}), 1) end, "group_norm_silu: input f64[3]",
        "must have at least 2 dims [N, C, *]")
      H.errors(function() return F.group_norm_silu(rn({2, 3, 4}), 3, rn({4})) end, "group_norm_silu: weight f64[4]",
        "must have shape [3]")
      H.errors(function() return F.group_norm_silu(rn({2, 3, 4}), 1, nil, nil, -1) end, "group_norm_silu: eps must be")
      local x = rn({2, 3, 4})
      x.requires_grad = true -- the composed path names the op too
      H.errors(function() return F.group_norm_silu(x, 2) end, "group_norm_silu: groups 2 does not divide")
    end)
  end)

  describe("half dtypes", function()
    it("normalises bf16 and f16 with f32 accumulation, parameters of x's dtype or f32", function()
      local x = rn({4, 64}) * 4 + 3
      local w, b = rn({64}), rn({64})
      for _, dt in ipairs({"bf16", "f16"}) do
        local tol = {atol = dt == "bf16" and 3e-2 or 4e-3, rtol = dt == "bf16" and 2e-2 or 4e-3}
        local xh = x:to(dt)
        for _, pdt in ipairs({dt, "f32"}) do
          local wp, bp = w:to(pdt), b:to(pdt)
          wp.requires_grad, bp.requires_grad = true, true
          local y = F.layer_norm(xh, {64}, wp, bp)
          assert.are.equal(dt, y.dtype)
          H.close(y, ref_layer(xh:double(), 1, wp:detach():double(), bp:detach():double()), tol, dt .. " " .. pdt)
          y:backward(flame.ones_like(y))
          assert.are.equal(pdt, wp.grad.dtype)
          assert.are.equal(pdt, bp.grad.dtype)
          H.close(bp.grad, flame.full({64}, 4, {dtype = "f64"}), tol)
        end
        H.close(F.group_norm(xh:reshape(4, 8, 8), 4, w:narrow(1, 1, 8):float()),
          ref_group(xh:double():reshape(4, 8, 8), 4, w:narrow(1, 1, 8)), tol, dt .. " group_norm")
        H.close(F.rms_norm(xh, {64}, w:to(dt)), ref_rms(xh:double(), 1, w:to(dt):double()), tol, dt .. " rms_norm")
      end
    end)
  end)

  describe("errors", function()
    local x = rn({2, 3, 4})
    it("names a normalized_shape that is not x's trailing dims", function()
      H.errors(function() return F.layer_norm(x, {3}) end,
        "layer_norm: normalized_shape [3] does not match the trailing dims of input f64[2, 3, 4]")
      H.errors(function() return F.rms_norm(x, {2, 3, 4, 1}) end, "rms_norm: normalized_shape [2, 3, 4, 1]")
      H.errors(function() return F.layer_norm(x, {}) end, "layer_norm: normalized_shape must have at least one dim")
      H.errors(function() return F.layer_norm(x, 4.5) end, "normalized_shape must be an integer or a table of them")
      H.errors(function() return F.layer_norm(x, "4") end, "table expected")
    end)
    it("names groups that do not divide the channels", function()
      H.errors(function() return F.group_norm(x, 2) end,
        "group_norm: groups 2 does not divide the 3 channels (dim 2) of input f64[2, 3, 4]")
      H.errors(function() return F.group_norm(x, 0) end, "group_norm: groups 0 does not divide")
      H.errors(function() return F.group_norm(rn({3}), 1) end, "group_norm: input f64[3]", "must have at least 2 dims [N, C, *]")
      -- zero channels: any count divides them, so the row count is checked instead (found by the fuzzer)
      local empty = flame.zeros({2, 0, 3}, {dtype = "f64", device = H.device})
      H.errors(function() return F.group_norm(empty, 1 << 62) end, "group_norm: 4611686018427387904 groups of input f64[2, 0, 3]", "overflow the row count")
      assert.are.same({2, 0, 3}, F.group_norm(empty, 5).shape)
    end)
    it("names a weight or bias of the wrong shape", function()
      H.errors(function() return F.layer_norm(x, {4}, rn({3})) end,
        "layer_norm: weight f64[3]", "must have shape [4]")
      H.errors(function() return F.layer_norm(x, {3, 4}, nil, rn({4})) end, "layer_norm: bias f64[4]", "must have shape [3, 4]")
      H.errors(function() return F.group_norm(x, 3, rn({4})) end, "group_norm: weight f64[4]", "must have shape [3]")
      H.errors(function() return F.rms_norm(x, {4}, rn({1, 4})) end, "rms_norm: weight f64[1, 4]")
    end)
    it("names mismatched dtypes and devices", function()
      H.errors(function() return F.layer_norm(x, {4}, rn({4}, "f32")) end,
        "layer_norm: weight f32[4]", "must have the input's dtype")
      H.errors(function() return F.layer_norm(x:float(), {4}, rn({4}, "bf16")) end, "must have the input's dtype")
      H.errors(function() return F.layer_norm(flame.ones({2, 4}, {dtype = "i64", device = H.device}), {4}) end,
        "layer_norm: input i64[2, 4]", "must have a float dtype")
      local other = H.device == "cpu" and "cuda" or "cpu"
      if other == "cpu" or flame.cuda.is_available() then
        H.errors(function() return F.group_norm(x, 3, flame.ones({3}, {dtype = "f64", device = other})) end,
          "group_norm: weight", "is not on the input's device")
      end
    end)
    it("names a bad eps", function()
      H.errors(function() return F.layer_norm(x, {4}, nil, nil, -1) end, "layer_norm: eps must be a finite number >= 0, got -1")
      H.errors(function() return F.rms_norm(x, {4}, nil, 0 / 0) end, "rms_norm: eps must be a finite number >= 0")
      H.errors(function() return F.group_norm(x, 1, nil, nil, math.huge) end, "group_norm: eps must be")
    end)
  end)
end)

describe("norms, CPU vs CUDA", function()
  local test = flame.cuda.is_available() and it or pending
  -- op(x, w, b) on each device; x of dtype dt, w/b of pdt; forward and all gradients compared
  local function parity(name, shape, dt, pdt, op, pshape)
    test(name .. " " .. dt .. " (params " .. pdt .. ")", function()
      flame.manual_seed(3)
      local x = flame.randn(shape) * 2 + 0.5
      local w, b = flame.randn(pshape), flame.randn(pshape)
      local g = flame.randn(shape)
      local res = {}
      for _, dev in ipairs({"cpu", "cuda"}) do
        -- detached: :to() returns the tensor itself when nothing changes, so without it the CPU pass
        -- would make x, w, b require grad and the CUDA copies would be graph members without .grad
        local xd = x:to({dtype = dt, device = dev}):detach()
        local wd, bd = w:to({dtype = pdt, device = dev}):detach(), b:to({dtype = pdt, device = dev}):detach()
        xd.requires_grad, wd.requires_grad, bd.requires_grad = true, true, true
        local y = op(xd, wd, bd)
        y:backward(g:to({dtype = dt, device = dev}))
        res[dev] = {y, xd.grad, wd.grad, bd and bd.grad}
      end
      local half = dt ~= "f32"
      local tol = {atol = half and 6e-2 or 1e-4, rtol = half and 3e-2 or 1e-4}
      for k = 1, 4 do
        if res.cpu[k] then
          local scale = k >= 3 and math.sqrt(x:numel() / w:numel()) or 1 -- sums over many rows
          H.close(res.cuda[k]:double(), res.cpu[k]:double(), {atol = tol.atol * scale, rtol = tol.rtol}, name .. " output " .. k)
        end
      end
    end)
  end
  for _, dt in ipairs({"f32", "bf16", "f16"}) do
    local pdts = dt == "f32" and {"f32"} or {dt, "f32"}
    for _, pdt in ipairs(pdts) do
      parity("layer_norm [64, 1024]", {64, 1024}, dt, pdt, function(x, w, b) return F.layer_norm(x, {1024}, w, b) end, {1024})
      parity("layer_norm [7, 3, 33] (unaligned)", {7, 3, 33}, dt, pdt, function(x, w, b) return F.layer_norm(x, {3, 33}, w, b) end, {3, 33})
      parity("layer_norm [5, 9000] (block per row)", {5, 9000}, dt, pdt, function(x, w, b) return F.layer_norm(x, {9000}, w, b) end, {9000})
      parity("rms_norm [33, 256]", {33, 256}, dt, pdt, function(x, w) return F.rms_norm(x, {256}, w) end, {256})
      parity("group_norm [4, 32, 16, 16] 8 groups", {4, 32, 16, 16}, dt, pdt, function(x, w, b) return F.group_norm(x, 8, w, b) end, {32})
      parity("group_norm [3, 12, 5] 4 groups (unaligned)", {3, 12, 5}, dt, pdt, function(x, w, b) return F.group_norm(x, 4, w, b) end, {12})
      parity("group_norm [2, 6, 64, 64] 3 groups (block per row)", {2, 6, 64, 64}, dt, pdt, function(x, w, b) return F.group_norm(x, 3, w, b) end, {6})
      parity("group_norm [300, 16] 4 groups", {300, 16}, dt, pdt, function(x, w, b) return F.group_norm(x, 4, w, b) end, {16})
    end
  end
end)
