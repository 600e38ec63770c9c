-- flame.F convolutions: conv1d/2d/3d and conv_transpose1d/2d/3d, forward and backward,
-- against a direct-loop f64 reference written here, PyTorch fixtures
-- (spec/fixtures/gen_conv.py), finite differences, across devices and paths.
local H = require "helper"
local flame = H.flame
local F = flame.F
local fixtures = dofile("spec/fixtures/conv.lua")

local has_cuda = flame.cuda.is_available()

local function fix(f, dtype) return flame.tensor(f.data, {dtype = dtype or "f64", device = H.device}):reshape(f.shape) end

-- ---- the direct-loop reference (plain Lua numbers, f64) ----
local function per_dim(v, nsp, default)
  if v == nil then v = default end
  if type(v) == "table" then return v end
  local r = {}
  for i = 1, nsp do r[i] = v end
  return r
end

-- y[n][co][o...] = b[co] + sum_{ci in group, k} x[n][ci][o*s - p + k*d] * w[co][ci - group start][k]
local function ref_conv(x, w, b, o)
  local xs, ws = x.shape, w.shape
  local nsp = #xs - 2
  local s, p, d = per_dim(o.stride, nsp, 1), per_dim(o.padding, nsp, 0), per_dim(o.dilation, nsp, 1)
  local g = o.groups or 1
  local xv, wv = H.flat(x:cpu():totable()), H.flat(w:cpu():totable())
  local bv = b and H.flat(b:cpu():totable())
  local N, C, CO = xs[1], xs[2], ws[1]
  local cg, og = C // g, CO // g
  local ins, ks, outs = {}, {}, {}
  for i = 1, 3 do ins[i], ks[i], outs[i] = 1, 1, 1 end
  local S, P, D = {1, 1, 1}, {0, 0, 0}, {1, 1, 1}
  for i = 1, nsp do
    local j = 3 - nsp + i
    ins[j], ks[j], S[j], P[j], D[j] = xs[2 + i], ws[2 + i], s[i], p[i], d[i]
    outs[j] = (ins[j] + 2 * P[j] - D[j] * (ks[j] - 1) - 1) // S[j] + 1
  end
  local out, oshape = {}, {N, CO}
  for i = 1, nsp do oshape[2 + i] = outs[3 - nsp + i] end
  for n = 0, N - 1 do for co = 0, CO - 1 do
    local grp = co // og
    for o0 = 0, outs[1] - 1 do for o1 = 0, outs[2] - 1 do for o2 = 0, outs[3] - 1 do
      local acc = bv and bv[co + 1] or 0
      for ci = 0, cg - 1 do
        local c = grp * cg + ci
        for k0 = 0, ks[1] - 1 do for k1 = 0, ks[2] - 1 do for k2 = 0, ks[3] - 1 do
          local i0, i1, i2 = o0 * S[1] - P[1] + k0 * D[1], o1 * S[2] - P[2] + k1 * D[2], o2 * S[3] - P[3] + k2 * D[3]
          if i0 >= 0 and i0 < ins[1] and i1 >= 0 and i1 < ins[2] and i2 >= 0 and i2 < ins[3] then
            local xi = (((n * C + c) * ins[1] + i0) * ins[2] + i1) * ins[3] + i2
            local wi = (((co * cg + ci) * ks[1] + k0) * ks[2] + k1) * ks[3] + k2
            acc = acc + xv[xi + 1] * wv[wi + 1]
          end
        end end end
      end
      out[#out + 1] = acc
    end end end
  end end
  return flame.tensor(out, {dtype = "f64"}):reshape(oshape)
end

describe("F.conv values against the direct-loop reference", function()
  local rn = function(...) flame.manual_seed(11); return flame.randn(...) end
  local cases = {
    {"conv1d", {3, 4, 11}, {6, 2, 3}, true, {stride = 2, padding = 2, dilation = 3, groups = 2}},
    {"conv2d", {2, 3, 6, 7}, {5, 3, 3, 2}, true, {stride = {1, 2}, padding = {1, 0}}},
    {"conv2d", {2, 3, 9, 8}, {4, 3, 2, 3}, false, {stride = {3, 2}, dilation = {2, 1}, padding = {2, 1}}},
    {"conv2d", {1, 6, 5, 5}, {6, 1, 3, 3}, true, {groups = 6, padding = 1}},           -- depthwise
    {"conv2d", {2, 4, 4, 4}, {6, 2, 1, 1}, true, {groups = 2}},                        -- pointwise, grouped
    {"conv2d", {3, 4, 3, 5}, {6, 4, 1, 1}, true, {}},                                  -- pointwise: no im2col
    {"conv2d", {3, 4, 3, 5}, {6, 4, 1, 1}, true, {stride = 2, padding = 1}},           -- 1x1 with im2col
    {"conv3d", {2, 2, 3, 4, 5}, {3, 2, 2, 3, 2}, true, {stride = {1, 2, 2}, padding = {1, 1, 0}, dilation = {1, 1, 2}}},
  }
  for _, c in ipairs(cases) do
    local fn, xs, ws, hasb, o = table.unpack(c)
    local name = string.format("%s x%s w%s", fn, table.concat(xs, "x"), table.concat(ws, "x"))
    it(name .. " in f64 and f32", function()
      local x, w = rn(xs, {dtype = "f64"}), rn(ws, {dtype = "f64"}) * 0.5
      local b = hasb and flame.linspace(-1, 1, ws[1], {dtype = "f64"}) or nil
      local want = ref_conv(x, w, b, o)
      local dev = function(t, dt) return t and t:to({dtype = dt, device = H.device}) end
      H.close(F[fn](dev(x, "f64"), dev(w, "f64"), dev(b, "f64"), o), want, {atol = 1e-12, rtol = 1e-12})
      H.close(F[fn](dev(x, "f32"), dev(w, "f32"), dev(b, "f32"), o), want, {atol = 1e-4, rtol = 1e-4})
    end)
  end

  it("non-contiguous inputs and an expanded upstream gradient give what contiguous ones give", function()
    local xc, wc = rn({2, 5, 6, 3}, {dtype = "f64"}), rn({3, 4, 2, 5}, {dtype = "f64"})
    local function grads(x, w)
      x, w = H.t(x:clone()), H.t(w:clone())
      x.requires_grad, w.requires_grad = true, true
      local y = F.conv2d(x:permute(1, 4, 2, 3), w:permute(2, 1, 3, 4), nil, {padding = {1, 2}, stride = {2, 1}})
      y:sum():backward() -- sum's gradient arrives expanded (stride 0)
      return y:detach(), x.grad, w.grad
    end
    local y1, gx1, gw1 = grads(xc, wc)
    local xp = xc:detach():permute(1, 4, 2, 3):contiguous()
    local wp = wc:detach():permute(2, 1, 3, 4):contiguous()
    H.close(y1, ref_conv(xp, wp, nil, {padding = {1, 2}, stride = {2, 1}}), {atol = 1e-12})
    local x, w = H.t(xp), H.t(wp)
    x.requires_grad, w.requires_grad = true, true
    F.conv2d(x, w, nil, {padding = {1, 2}, stride = {2, 1}}):sum():backward()
    H.close(gx1, x.grad:permute(1, 3, 4, 2), {atol = 1e-12})
    H.close(gw1, w.grad:permute(2, 1, 3, 4), {atol = 1e-12})
  end)

  it("an empty batch gives an empty result and zero weight and bias gradients", function()
    local x = flame.zeros(0, 3, 5, 5, H.opts({requires_grad = true}))
    local w, b = flame.ones(4, 3, 3, 3, H.opts({requires_grad = true})), flame.ones(4, H.opts({requires_grad = true}))
    local y = F.conv2d(x, w, b, {padding = 1})
    assert.are.same({0, 4, 5, 5}, y.shape)
    y:sum():backward()
    assert.are.same({0, 3, 5, 5}, x.grad.shape)
    assert.are.equal(0, w.grad:abs():sum():item())
    assert.are.equal(0, b.grad:abs():sum():item())
  end)

  it("takes the options table in the bias's place, and an unbatched input", function()
    local x, w = rn({3, 5, 5}, {dtype = "f64"}), rn({2, 3, 3, 3}, {dtype = "f64"})
    local want = ref_conv(x:unsqueeze(1), w, nil, {padding = 1}):squeeze(1)
    local y = F.conv2d(H.t(x), H.t(w), {padding = 1})
    assert.are.same({2, 5, 5}, y.shape)
    H.close(y, want, {atol = 1e-12})
  end)
end)

describe("F.conv values and gradients against PyTorch", function()
  for _, f in ipairs(fixtures) do
    for _, algo in ipairs({"auto", "gemm"}) do
      it(f.name .. " (" .. algo .. ")", function()
        local prev = F.conv_algo(algo)
        local x, w = fix(f.x), fix(f.w)
        local b = f.b and fix(f.b) or nil
        x.requires_grad, w.requires_grad = true, true
        if b then b.requires_grad = true end
        local ok, err = pcall(function()
          local y = F[f.fn](x, w, b, f.opts)
          H.close(y, fix(f.y), {atol = 1e-10, rtol = 1e-10}, "y")
          y:backward(fix(f.gy))
          H.close(x.grad, fix(f.gx), {atol = 1e-10, rtol = 1e-10}, "gx")
          H.close(w.grad, fix(f.gw), {atol = 1e-10, rtol = 1e-10}, "gw")
          if b then H.close(b.grad, fix(f.gb), {atol = 1e-10, rtol = 1e-10}, "gb") end
          assert.are.equal("ConvolutionBackward", y.grad_fn)
        end)
        F.conv_algo(prev)
        assert(ok, err)
      end)
    end
  end
end)

describe("F.conv gradcheck (f64 finite differences of x, w and b)", function()
  local function rn(...) flame.manual_seed(5); return flame.randn(...) end
  local cases = {
    {"conv1d stride 2 dilation 2 groups 2", "conv1d", {2, 4, 7}, {4, 2, 3}, {stride = 2, padding = 1, dilation = 2, groups = 2}},
    {"conv2d non-square, stride, padding, dilation, groups", "conv2d", {2, 4, 5, 4}, {4, 2, 3, 2},
      {stride = {2, 1}, padding = 1, dilation = {1, 2}, groups = 2}},
    {"conv2d depthwise", "conv2d", {1, 3, 5, 4}, {3, 1, 3, 3}, {groups = 3, padding = 1}},
    {"conv2d pointwise (no im2col)", "conv2d", {3, 3, 2, 4}, {2, 3, 1, 1}, {}},
    {"conv_transpose1d pointwise (no col2im)", "conv_transpose1d", {2, 3, 5}, {3, 2, 1}, {}},
    {"conv2d padding same, even kernel", "conv2d", {1, 2, 4, 5}, {2, 2, 2, 2}, {padding = "same"}},
    {"conv3d stride, padding", "conv3d", {1, 2, 3, 4, 3}, {2, 1, 2, 2, 2}, {stride = {1, 2, 1}, padding = {1, 0, 1}, groups = 2}},
    {"conv_transpose1d", "conv_transpose1d", {2, 2, 4}, {2, 3, 3}, {stride = 2, padding = 1, output_padding = 1}},
    {"conv_transpose2d stride, output_padding, groups, dilation", "conv_transpose2d", {1, 4, 3, 3}, {4, 1, 3, 2},
      {stride = 2, padding = 1, output_padding = {1, 0}, groups = 2, dilation = {1, 2}}},
    {"conv_transpose3d", "conv_transpose3d", {1, 2, 2, 2, 3}, {2, 1, 2, 2, 2}, {stride = {2, 1, 2}, padding = {0, 0, 1}}},
  }
  for _, c in ipairs(cases) do
    local name, fn, xs, ws, o = table.unpack(c)
    it(name, function()
      local cout = fn:find("transpose") and ws[2] * (o.groups or 1) or ws[1]
      local x, w, b = rn(xs, {dtype = "f64"}), rn(ws, {dtype = "f64"}), flame.linspace(-0.5, 0.5, cout, {dtype = "f64"})
      assert(H.gradcheck(function(xx, ww, bb) return F[fn](xx, ww, bb, o) end, {x, w, b}))
    end)
  end

  it("an unbatched input", function()
    local x, w = rn({2, 4, 3}, {dtype = "f64"}), rn({3, 2, 2, 2}, {dtype = "f64"})
    assert(H.gradcheck(function(xx, ww) return F.conv2d(xx, ww, nil, {padding = {1, 0}}) end, {x, w}))
  end)
end)

describe("F.conv chunks images under the workspace cap", function()
  -- f64, the gemm path: a tiny cap (one image per chunk) and one of 2.5 images
  -- (chunks of 2, 2, 1) must give what one chunk of the whole batch gives.
  local function run(fn, x, w, b, o)
    x, w, b = x:detach(), w:detach(), b:detach()
    x.requires_grad, w.requires_grad, b.requires_grad = true, true, true
    local y = F[fn](x, w, b, o)
    flame.manual_seed(3)
    y:backward(flame.randn(y.shape, {dtype = "f64", device = H.device}))
    return {y:detach(), x.grad, w.grad, b.grad}
  end
  local cases = {
    {"conv2d", {5, 4, 6, 5}, {6, 4, 3, 3}, {padding = 1}, 4 * 9 * 30 + 6 * 30},
    {"conv2d", {5, 4, 6, 5}, {6, 2, 3, 2}, {stride = {2, 1}, groups = 2}, 4 * 6 * 10 + 6 * 10},
    {"conv_transpose2d", {5, 4, 3, 3}, {4, 3, 2, 2}, {stride = 2, groups = 2}, 6 * 4 * 9 + 4 * 9},
    {"conv3d", {5, 2, 3, 3, 3}, {2, 2, 2, 2, 2}, {padding = 1}, 2 * 8 * 64 + 2 * 64},
  }
  for _, c in ipairs(cases) do
    local fn, xs, ws, o, per_image = table.unpack(c)
    it(fn .. " x" .. table.concat(xs, "x") .. " groups " .. (o.groups or 1), function()
      flame.manual_seed(9)
      local x, w = flame.randn(xs, H.opts({dtype = "f64"})), flame.randn(ws, H.opts({dtype = "f64"}))
      local cout = fn:find("transpose") and ws[2] * (o.groups or 1) or ws[1]
      local b = flame.randn(cout, H.opts({dtype = "f64"}))
      local prev_algo = F.conv_algo("gemm")
      local prev = F._conv_workspace(1 << 40)
      local ok, err = pcall(function()
        local whole = run(fn, x, w, b, o)
        for _, cap in ipairs({1, per_image * 8 * 5 // 2}) do
          F._conv_workspace(cap)
          local got = run(fn, x, w, b, o)
          for i = 1, 4 do H.close(got[i], whole[i], {atol = 1e-12, rtol = 1e-12}, "cap " .. cap .. " result " .. i) end
        end
      end)
      F._conv_workspace(prev)
      F.conv_algo(prev_algo)
      assert(ok, err)
    end)
  end

  it("_conv_workspace returns the previous cap (256 MiB by default)", function()
    local prev = F._conv_workspace(1234)
    assert.are.equal(1234, F._conv_workspace(prev))
    assert.are.equal(256 * 1024 * 1024, F._conv_workspace(0))
    F._conv_workspace(prev)
  end)
end)

-- ---- devices and paths ----
local parity_cases = {
  {"conv1d groups", "conv1d", {4, 8, 33}, {8, 4, 5}, {stride = 2, padding = 2, groups = 2}},
  {"conv2d", "conv2d", {3, 8, 12, 10}, {16, 8, 3, 3}, {padding = 1}},
  {"conv2d depthwise", "conv2d", {2, 16, 9, 9}, {16, 1, 3, 3}, {groups = 16, padding = 1, stride = 2}},
  {"conv3d", "conv3d", {2, 4, 5, 6, 7}, {6, 4, 3, 3, 3}, {padding = 1, dilation = {1, 1, 2}}},
  {"conv_transpose2d", "conv_transpose2d", {2, 8, 5, 6}, {8, 4, 3, 3}, {stride = 2, padding = 1, output_padding = 1, groups = 2}},
}

-- y and the gradients of x, w, b for a fixed upstream gradient, in f32 on the CPU.
local function fwd_bwd(fn, xs, ws, o, dtype, device)
  flame.manual_seed(21)
  local x, w = flame.randn(xs), flame.randn(ws) * 0.2
  local cout = fn:find("transpose") and ws[2] * (o.groups or 1) or ws[1]
  local b = flame.randn(cout)
  local args = {}
  for i, t in ipairs({x, w, b}) do
    args[i] = t:to({dtype = dtype, device = device}):detach()
    args[i].requires_grad = true
  end
  local y = F[fn](args[1], args[2], args[3], o)
  flame.manual_seed(22)
  local gy = flame.randn(y.shape):to({dtype = dtype, device = device})
  y:backward(gy)
  local r = {y}
  for i = 1, 3 do r[i + 1] = args[i].grad end
  for i = 1, 4 do r[i] = r[i]:detach():to({dtype = "f32", device = "cpu"}) end
  return r
end

-- |a - b| within tol of the reference's largest magnitude.
local function close_scaled(a, b, tol, msg)
  local scale = b:abs():max():item()
  H.close(a, b, {atol = tol * math.max(scale, 1), rtol = 0}, msg)
end

describe("F.conv CPU-vs-CUDA parity", function()
  local test = has_cuda and it or pending
  for _, c in ipairs(parity_cases) do
    local name, fn, xs, ws, o = table.unpack(c)
    for _, dt in ipairs({{"f32", 1e-5}, {"bf16", 3e-2}, {"f16", 4e-3}}) do
      test(name .. " " .. dt[1], function()
        local want = fwd_bwd(fn, xs, ws, o, "f32", "cpu")
        local got = fwd_bwd(fn, xs, ws, o, dt[1], "cuda")
        for i, what in ipairs({"y", "gx", "gw", "gb"}) do close_scaled(got[i], want[i], dt[2], name .. " " .. what) end
      end)
    end
  end
end)

-- The direct path exists where the backend has it (CUDA with cuDNN).
local function direct_available()
  if not has_cuda then return false end
  local prev = F.conv_algo("direct")
  local ok, err = pcall(F.conv2d, flame.ones(1, 1, 3, 3, {device = "cuda"}), flame.ones(1, 1, 3, 3, {device = "cuda"}))
  F.conv_algo(prev)
  if not ok and not tostring(err):find("no direct convolution path", 1, true) then error(err) end
  return ok
end

describe("F.conv gemm path against the direct path", function()
  local test = direct_available() and it or pending
  for _, c in ipairs(parity_cases) do
    local name, fn, xs, ws, o = table.unpack(c)
    for _, dt in ipairs({{"f32", 1e-4}, {"bf16", 3e-2}}) do -- the direct path may pick Winograd or FFT algorithms
      test(name .. " " .. dt[1], function()
        local prev = F.conv_algo("gemm")
        local ok, err = pcall(function()
          local g = fwd_bwd(fn, xs, ws, o, dt[1], "cuda")
          F.conv_algo("direct")
          local d = fwd_bwd(fn, xs, ws, o, dt[1], "cuda")
          for i, what in ipairs({"y", "gx", "gw", "gb"}) do close_scaled(d[i], g[i], dt[2], name .. " " .. what) end
        end)
        F.conv_algo(prev)
        assert(ok, err)
      end)
    end
  end
end)

-- cuDNN's two APIs behind the direct path (graph by default, FLAME_CUDNN_API=legacy at start-up; cuda/conv_cudnn_graph.cu): the
-- backend (graph) API against the legacy one on the same problems, and which one ran.
describe("F.conv through cuDNN's graph API against its legacy API", function()
  local test = direct_available() and it or pending
  for _, c in ipairs(parity_cases) do
    local name, fn, xs, ws, o = table.unpack(c)
    for _, dt in ipairs({{"f32", 1e-4}, {"bf16", 3e-2}}) do -- the two may pick different algorithms
      test(name .. " " .. dt[1], function()
        local prev, prev_api = F.conv_algo("direct"), F._cudnn_api("legacy")
        local ok, err = pcall(function()
          local l = fwd_bwd(fn, xs, ws, o, dt[1], "cuda")
          assert.are.equal("legacy", select(2, F._cudnn_api("graph")))
          local g = fwd_bwd(fn, xs, ws, o, dt[1], "cuda")
          -- a plain 2-d convolution has engines on the graph API; other keys may take the legacy one (decided once)
          if name == "conv2d" then assert.are.equal("graph", select(2, F._cudnn_api())) end
          for i, what in ipairs({"y", "gx", "gw", "gb"}) do close_scaled(g[i], l[i], dt[2], name .. " " .. what) end
        end)
        F.conv_algo(prev)
        F._cudnn_api(prev_api)
        assert(ok, err)
      end)
    end
  end
end)

describe("F._cudnn_api", function()
  it("sets the API process-wide and returns the previous one", function()
    local prev = F._cudnn_api("graph")
    assert.are.equal("graph", F._cudnn_api("legacy"))
    assert.are.equal("legacy", (F._cudnn_api()))
    F._cudnn_api(prev)
    H.errors(function() F._cudnn_api("frontend") end, "invalid option 'frontend'")
  end)
end)

describe("F.conv_algo", function()
  it("sets the path process-wide and returns the previous one", function()
    local prev = F.conv_algo("gemm")
    assert.are.equal("gemm", F.conv_algo("auto"))
    assert.are.equal("auto", F.conv_algo())
    F.conv_algo(prev)
    H.errors(function() F.conv_algo("fast") end, "invalid option 'fast'")
  end)

  if H.device == "cpu" then
    it("\"direct\" is an error for a case the device's direct path does not take", function()
      local prev = F.conv_algo("direct")
      local ok, err = pcall(F.conv2d, flame.ones(1, 1, 3, 3, {dtype = "f64"}), flame.ones(1, 1, 3, 3, {dtype = "f64"}))
      local ok2, err2 = pcall(F.conv2d, flame.ones(1, 1, 5, 5), flame.ones(1, 1, 3, 3), {stride = 2})
      F.conv_algo(prev)
      assert(not ok and not ok2)
      assert.truthy(tostring(err):find("conv2d: no direct convolution path on cpu for input f64[1, 1, 3, 3]", 1, true))
      assert.truthy(tostring(err2):find("it takes the forward of f32 2-D convolutions with stride 1", 1, true))
    end)
  end
end)

-- The CPU's direct convolution (src/cpu/cpu_conv_direct.c: f32, 2-D, stride 1) against the im2col + GEMM path:
-- rows narrower and wider than its 8- and 16-column steps, output channels that do not fill its blocks of 8 or 16,
-- kernels 1 to 7 with every padding, batches. Each runs with the free lists its buffers come from full of NaNs,
-- so that a float of the padded input it does not write shows; the narrow and short images (1 to 5 columns, 1 to 3
-- rows) take the exact copies its padding uses near the end of the input, the 16-column rows without padding its
-- runs with no zeros between them.
-- The free lists of small CPU blocks (src/core/small_alloc.c: 1 KiB classes up to 64 KiB), filled with NaN blocks.
local function dirty_small_blocks()
  local keep = {}
  for k = 1, 64 do
    for j = 1, 3 do keep[#keep + 1] = flame.full({k * 256}, 0 / 0) end
  end
  keep = nil
  collectgarbage()
  collectgarbage()
end
describe("F.conv2d: the CPU's direct path against the im2col path", function()
  local test = H.device == "cpu" and it or pending
  local cases = { -- n, cin, h, w, k, pad, cout
    {1, 1, 16, 16, 3, 1, 16}, {2, 16, 16, 16, 3, 1, 16}, {1, 48, 16, 16, 3, 1, 17}, {1, 32, 8, 8, 3, 1, 32},
    {1, 16, 16, 16, 3, 1, 1}, {1, 3, 7, 9, 3, 1, 5}, {2, 5, 13, 20, 5, 2, 11}, {1, 4, 6, 6, 3, 0, 9},
    {1, 8, 17, 33, 1, 0, 3}, {1, 2, 5, 5, 7, 3, 2}, {3, 6, 4, 19, 3, 2, 7}, {1, 7, 3, 40, 3, 1, 33},
    {1, 9, 3, 2, 3, 1, 8}, {2, 4, 4, 16, 1, 0, 8}, {1, 3, 5, 1, 3, 1, 4}, {1, 2, 2, 31, 5, 2, 9}, {2, 3, 1, 5, 1, 0, 2},
  }
  for _, c in ipairs(cases) do
    local n, cin, h, w, k, pad, cout = table.unpack(c)
    test(string.format("x [%d, %d, %d, %d], %dx%d kernel, padding %d, %d outputs", n, cin, h, w, k, k, pad, cout), function()
      flame.manual_seed(cin * 100 + cout)
      local x, wt, b = flame.randn(n, cin, h, w), flame.randn(cout, cin, k, k), flame.randn(cout)
      local prev = F.conv_algo("gemm")
      local want = F.conv2d(x, wt, b, {padding = pad})
      F.conv_algo("direct")
      dirty_small_blocks()
      local ok, got = pcall(F.conv2d, x, wt, b, {padding = pad})
      F.conv_algo(prev)
      assert(ok, got)
      assert.are.same(want.shape, got.shape)
      local err = (got - want):abs():max():item() / want:abs():max():item()
      assert(err < 1e-5, string.format("relative difference %.3g", err))
    end)
  end
end)

describe("F.conv errors", function()
  local function t(...) return flame.zeros({...}, H.opts()) end
  it("wrong ranks", function()
    H.errors(function() F.conv2d(t(2, 3), t(4, 3, 3, 3)) end, "conv2d: expected a 4-D input", "(or 3-D unbatched)", "[2, 3]")
    H.errors(function() F.conv2d(t(1, 3, 5, 5), t(4, 3, 3)) end, "conv2d: expected a 4-D weight", "[4, 3, 3]")
    H.errors(function() F.conv1d(t(1, 3, 5, 5), t(4, 3, 3)) end, "conv1d: expected a 3-D input")
    H.errors(function() F.conv3d(t(3, 5, 5), t(4, 3, 3, 3, 3)) end, "conv3d: expected a 5-D input")
  end)
  it("channels that groups do not divide, and weight in-channels", function()
    H.errors(function() F.conv2d(t(1, 6, 5, 5), t(4, 2, 3, 3), nil, {groups = 4}) end,
      "conv2d: input channels 6 (dim 2 of input", "not divisible by groups 4")
    H.errors(function() F.conv2d(t(1, 6, 5, 5), t(5, 2, 3, 3), nil, {groups = 3}) end,
      "conv2d: output channels 5 (dim 1 of weight", "not divisible by groups 3")
    H.errors(function() F.conv2d(t(1, 4, 5, 5), t(4, 3, 3, 3)) end,
      "conv2d: weight", "expects 3 input channels (3 per group x 1 groups)", "has 4")
    H.errors(function() F.conv2d(t(1, 4, 5, 5), t(4, 4, 3, 3), nil, {groups = 0}) end, "conv2d: groups must be positive, got 0")
    H.errors(function() F.conv_transpose2d(t(1, 4, 5, 5), t(3, 2, 3, 3)) end,
      "conv_transpose2d: weight", "expects 3 input channels (its dim 1)", "has 4")
  end)
  it("a kernel larger than the padded input", function()
    H.errors(function() F.conv2d(t(1, 1, 5, 2), t(1, 1, 3, 3)) end,
      "conv2d: the kernel (size 3, 3 with dilation) is larger than the padded input (size 2) at dim 4")
    H.errors(function() F.conv1d(t(1, 1, 5), t(1, 1, 3), nil, {dilation = 3}) end,
      "conv1d: the kernel (size 3, 7 with dilation) is larger than the padded input (size 5) at dim 3")
  end)
  it("bad stride, dilation, padding and output_padding values", function()
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {stride = {1, 0}}) end,
      "conv2d: stride must be positive, got 0 at spatial dim 2")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {dilation = 0}) end,
      "conv2d: dilation must be positive, got 0 at spatial dim 1")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {padding = -1}) end,
      "conv2d: padding must be non-negative, got -1")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {padding = "full"}) end,
      "conv2d: padding must be sizes, \"same\" or \"valid\", got \"full\"")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {padding = "same", stride = 2}) end,
      "conv2d: padding \"same\" is not supported for strided convolutions")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {stride = {1, 2, 3}}) end,
      "conv2d: stride must be a number or a table of 2 numbers, got a table of 3")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {strides = 1}) end, "strides")
    H.errors(function() F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {stride = 1.5}) end,
      "conv2d: stride must be an integer or a table of 2 integers, got number")
    H.errors(function() F.conv2d(t(1, 2, 5, 5), t(2, 1, 3, 3), nil, {groups = "2"}) end,
      "conv2d: groups must be an integer, got string")
    assert.are.same({1, 1, 2, 2}, F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {stride = 2.0}).shape)
    H.errors(function() F.conv_transpose2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {stride = 2, output_padding = 2}) end,
      "conv_transpose2d: output_padding 2 must be smaller than the stride 2 or the dilation 1 at spatial dim 1")
    H.errors(function() F.conv_transpose2d(t(1, 1, 5, 5), t(1, 1, 3, 3), nil, {padding = "same"}) end,
      "conv_transpose2d: padding must be sizes")
    H.errors(function() F.conv_transpose1d(t(1, 1, 1), t(1, 1, 1), nil, {padding = 1}) end,
      "conv_transpose1d: the output size -1 at dim 3 is not positive")
  end)
  it("bias shape, dtypes and devices", function()
    H.errors(function() F.conv2d(t(1, 2, 5, 5), t(4, 2, 3, 3), t(3)) end, "conv2d: expected a bias of shape [4]", "[3]")
    H.errors(function() F.conv2d(t(1, 2, 5, 5), t(4, 2, 3, 3), t(1, 4)) end, "conv2d: expected a bias of shape [4]")
    H.errors(function() F.conv2d(t(1, 2, 5, 5), t(4, 2, 3, 3):double()) end,
      "conv2d: expected input, weight and bias of one dtype", "f32[1, 2, 5, 5]", "f64[4, 2, 3, 3]")
    H.errors(function() F.conv2d(t(1, 2, 5, 5):int(), t(4, 2, 3, 3):int()) end, "conv2d: expected a float dtype")
    if has_cuda then
      H.errors(function() F.conv2d(t(1, 2, 5, 5):cuda(), t(4, 2, 3, 3):cpu()) end,
        "conv2d: expected all tensors on one device")
    end
  end)
end)
