-- flame.F pooling, resizing and padding: avg/max/adaptive pools (1-3 d), interpolate, pad.
-- Values against PyTorch 1.13 fixtures (spec/fixtures/gen_pool.py) and hand-computed references,
-- finite-difference gradchecks for every op and mode, CPU-vs-CUDA parity, error messages.
local H = require "helper"
local flame = H.flame
local F = flame.F

local fixtures = dofile("spec/fixtures/pool_fixtures.lua")
local has_cuda = flame.cuda.is_available()

local function dev(t) return t:to({device = H.device}) end
-- w[k] = sin(0.7 k + 0.3) over the flat output index: the fixtures' upstream gradient
local function upstream(out)
  return (flame.arange(0, out:numel(), {dtype = "f64", device = H.device}) * 0.7 + 0.3):sin():view(out.shape):to(out.dtype)
end
local function call(c, x)
  local r, idx = c.call(F, x)
  return r, idx
end

describe("F pooling, interpolate and pad against PyTorch", function()
  for _, c in ipairs(fixtures) do
    for _, dt in ipairs({"f64", "f32"}) do
      local tol = dt == "f64" and {atol = 1e-12, rtol = 1e-12} or {atol = 2e-5, rtol = 2e-5}
      it(c.name .. " (" .. dt .. ")", function()
        local x = flame.tensor(c.x, {dtype = "f64", device = H.device}):view(c.shape):to(dt)
        x.requires_grad = true
        local out, idx = call(c, x)
        assert.are.same(c.out_shape, out.shape)
        assert.are.equal(dt, out.dtype)
        H.close(out, flame.tensor(c.out, {dtype = "f64"}):view(c.out_shape), tol, "output")
        if c.idx then
          assert.are.equal("i64", idx.dtype)
          assert.are.same(c.out_shape, idx.shape)
          H.close(idx, flame.tensor(c.idx, {dtype = "i64"}):view(c.out_shape), {atol = 0, rtol = 0}, "indices")
        end
        (out * upstream(out)):sum():backward()
        H.close(x.grad, flame.tensor(c.grad, {dtype = "f64"}):view(c.shape), tol, "grad")
      end)
    end
  end
end)

describe("F pooling values", function()
  local x = dev(flame.arange(1, 17):view(1, 1, 4, 4):double())

  it("max_pool2d and avg_pool2d of a ramp", function()
    H.close(F.max_pool2d(x, 2), {{{{6, 8}, {14, 16}}}})
    H.close(F.avg_pool2d(x, 2), {{{{3.5, 5.5}, {11.5, 13.5}}}})
    -- k3 s2 p1: the corner window holds 1, 2, 5, 6 and counts the padding (divisor 9)
    H.close(F.avg_pool2d(x, 3, {stride = 2, padding = 1}), {{{{14 / 9, 30 / 9}, {57 / 9, 99 / 9}}}})
    H.close(F.avg_pool2d(x, 3, {stride = 2, padding = 1, count_include_pad = false}), {{{{14 / 4, 30 / 6}, {57 / 6, 99 / 9}}}})
  end)

  it("max_pool2d against a composed reference (view + amax) and its indices are 1-based", function()
    flame.manual_seed(3)
    local y = dev(flame.randn(2, 3, 6, 8, {dtype = "f64"}))
    local v, i = F.max_pool2d(y, 2, {return_indices = true})
    H.close(v, y:view(2, 3, 3, 2, 4, 2):amax({4, 6}))
    -- the index is a flat position in the 6x8 plane: gathering with it gives the values back
    local flat = y:view(2, 3, 48)
    H.close(flat:gather(3, i:view(2, 3, 12)):view(2, 3, 3, 4), v)
    assert.is_true(i:min():item() >= 1 and i:max():item() <= 48)
  end)

  it("avg_pool2d k2 equals the mean of the 2x2 blocks", function()
    flame.manual_seed(4)
    local y = dev(flame.randn(2, 3, 6, 8, {dtype = "f64"}))
    H.close(F.avg_pool2d(y, 2), y:view(2, 3, 3, 2, 4, 2):mean({4, 6}), {atol = 1e-14})
  end)

  it("adaptive_avg_pool2d to 1 is the mean over the plane; to the input size is the identity", function()
    flame.manual_seed(5)
    local y = dev(flame.randn(2, 3, 5, 7, {dtype = "f64"}))
    H.close(F.adaptive_avg_pool2d(y, 1), y:mean({3, 4}, true), {atol = 1e-14})
    H.close(F.adaptive_avg_pool2d(y, {5, 7}), y, {atol = 0, rtol = 0})
    H.close(F.adaptive_avg_pool2d(y, {nil, nil}), y, {atol = 0, rtol = 0})
  end)

  it("max pooling takes the first of equal maxima, and a NaN wins, as PyTorch", function()
    local t = dev(flame.tensor({{{{1, 3, 3, 0}}}}, {dtype = "f64"}))
    local v, i = F.max_pool2d(t, {1, 4}, {return_indices = true})
    H.close(v, {{{{3}}}}); H.close(i, {{{{2}}}})
    local n = dev(flame.tensor({{{{1, 0 / 0, 3, 2}}}}, {dtype = "f64"}))
    local w, j = F.max_pool2d(n, {1, 4}, {return_indices = true})
    assert.is_true(w:item() ~= w:item()); H.close(j, {{{{2}}}})
    local m = dev(flame.full({1, 1, 1, 3}, -1 / 0, {dtype = "f64"}))
    local mv, mi = F.max_pool2d(m, {1, 3}, {return_indices = true})
    assert.are.equal(-1 / 0, mv:item()); H.close(mi, {{{{1}}}})
  end)

  it("max_pool2d backward sends each gradient to the argmax only (repeated argmax accumulates)", function()
    local t = dev(flame.tensor({{{{0, 1, 0, 0}, {0, 9, 0, 0}, {0, 0, 0, 0}}}}, {dtype = "f64"}))
    t.requires_grad = true
    -- k2 stride 1: the 9 is the max of four windows
    F.max_pool2d(t, 2, {stride = 1}):sum():backward()
    H.close(t.grad, {{{{0, 0, 1, 0}, {0, 4, 1, 0}, {0, 0, 0, 0}}}})
  end)

  it("non-contiguous inputs, an empty batch, and the grad_fn names", function()
    flame.manual_seed(6)
    local y = dev(flame.randn(2, 3, 8, 6, {dtype = "f64"}))
    local yt = y:transpose(3, 4)
    H.close(F.max_pool2d(yt, 2), F.max_pool2d(yt:contiguous(), 2))
    H.close(F.interpolate(yt, {scale_factor = 2, mode = "bilinear"}), F.interpolate(yt:contiguous(), {scale_factor = 2, mode = "bilinear"}))
    H.close(F.pad(yt, {1, 2, 2, 1}, {mode = "reflect"}), F.pad(yt:contiguous(), {1, 2, 2, 1}, {mode = "reflect"}))
    H.close(F.pad(yt, {1, -2, 2, 1}, {value = 3}), F.pad(yt:contiguous(), {1, -2, 2, 1}, {value = 3}))
    local e = dev(flame.randn(0, 3, 8, 6))
    assert.are.same({0, 3, 4, 3}, F.max_pool2d(e, 2).shape)
    assert.are.same({0, 3, 16, 12}, F.interpolate(e, {scale_factor = 2}).shape)
    y.requires_grad = true
    assert.are.equal("MaxPoolBackward", F.max_pool2d(y, 2).grad_fn)
    assert.are.equal("AvgPoolBackward", F.avg_pool2d(y, 2).grad_fn)
    assert.are.equal("AdaptiveAvgPoolBackward", F.adaptive_avg_pool2d(y, 2).grad_fn)
    assert.are.equal("UpsampleBilinear2DBackward", F.interpolate(y, {size = 3, mode = "bilinear"}).grad_fn)
    assert.are.equal("UpsampleNearest2DBackward", F.interpolate(y, {size = 3}).grad_fn)
    assert.are.equal("ReflectionPad2DBackward", F.pad(y, {1, 1, 1, 1}, {mode = "reflect"}).grad_fn)
    assert.are.equal("ReplicationPad1DBackward", F.pad(y[1], {1, 1}, {mode = "replicate"}).grad_fn)
    assert.are.equal("ConstantPadNdBackward", F.pad(y, {1, 1}).grad_fn)
  end)

  it("constant pad of any dims and dtypes; reflect and replicate of integer tensors copy exactly", function()
    local i = dev(flame.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "i64"}))
    H.close(F.pad(i, {1, 0, 0, 1}, {value = 9}), {{9, 1, 2, 3}, {9, 4, 5, 6}, {9, 9, 9, 9}})
    assert.are.equal("i64", F.pad(i, {1, 1}).dtype)
    H.close(F.pad(i, {2, 1}, {mode = "reflect"}), {{3, 2, 1, 2, 3, 2}, {6, 5, 4, 5, 6, 5}})
    H.close(F.pad(i, {1, 2}, {mode = "replicate"}), {{1, 1, 2, 3, 3, 3}, {4, 4, 5, 6, 6, 6}})
    local big = dev(flame.tensor({{9007199254740993}}, {dtype = "i64"}))
    assert.are.equal(9007199254740993, F.pad(big, {1, 1}, {mode = "replicate"})[1][3]:item())
    local b = dev(flame.tensor({true, false}))
    H.close(F.pad(b:view(1, 2), {1, 1}, {mode = "reflect"}), {{false, true, false, true}})
    local five = dev(flame.ones(1, 2, 1, 1, 1, {dtype = "f64"}))
    assert.are.same({3, 2, 1, 3, 1}, F.pad(five, {0, 0, 1, 1, 0, 0, 0, 0, 1, 1}).shape)
  end)

  it("interpolate: nearest 2x repeats pixels; bilinear with align_corners keeps the corners", function()
    local t = dev(flame.tensor({{{{1, 2}, {3, 4}}}}, {dtype = "f64"}))
    H.close(F.interpolate(t, {scale_factor = 2}), {{{{1, 1, 2, 2}, {1, 1, 2, 2}, {3, 3, 4, 4}, {3, 3, 4, 4}}}})
    local b = F.interpolate(t, {size = 3, mode = "bilinear", align_corners = true})
    H.close(b, {{{{1, 1.5, 2}, {2, 2.5, 3}, {3, 3.5, 4}}}})
    local c = F.interpolate(t, {size = 4, mode = "bilinear"})
    H.close(c[1][1][1], {1, 1.25, 1.75, 2})
  end)

  it("interpolate: nearest on f32 (a gather of its own) picks the pixels the f64 path picks", function()
    flame.manual_seed(3)
    for _, c in ipairs({{{2, 3, 8, 8}, {scale_factor = 2}}, {{1, 2, 9, 11}, {scale_factor = 1.7}},
                        {{1, 1, 7, 5}, {size = {3, 4}}}, {{1, 2, 3, 2, 3}, {size = {4, 3, 5}}}}) do
      local x = dev(flame.randn(c[1], {dtype = "f64"}))
      local want = F.interpolate(x, c[2]):float()
      local got = F.interpolate(x:float(), c[2])
      assert.are.same(want.shape, got.shape)
      assert.are.equal(0, (got - want):abs():max():item())
    end
  end)

  it("f16 and bf16 against f32 (f32 accumulation)", function()
    flame.manual_seed(8)
    local y = dev(flame.randn(2, 3, 9, 10))
    local ops = {
      function(t) return F.max_pool2d(t, 3, {stride = 2, padding = 1}) end,
      function(t) return F.avg_pool2d(t, 3, {stride = 2, padding = 1}) end,
      function(t) return F.adaptive_avg_pool2d(t, {4, 3}) end,
      function(t) return F.interpolate(t, {scale_factor = 2, mode = "bilinear"}) end,
      function(t) return F.interpolate(t, {scale_factor = 1.5}) end,
      function(t) return F.pad(t, {2, 3, 1, 2}, {mode = "reflect"}) end,
      function(t) return F.pad(t, {2, 3, 1, 2}, {mode = "replicate"}) end,
    }
    for k, op in ipairs(ops) do
      local ref = op(y)
      for _, dt in ipairs({"f16", "bf16"}) do
        local h = y:to(dt)
        h.requires_grad = true
        local r = op(h)
        assert.are.equal(dt, r.dtype)
        H.close(r:float(), ref, {atol = 2e-2, rtol = 2e-2}, "op " .. k .. " " .. dt)
        r:sum():backward()
        assert.are.equal(dt, h.grad.dtype)
      end
    end
  end)
end)

describe("F pooling on CPU threads", function()
  it("forward and backward are bit-identical at 1 and 4 threads (planes dealt to threads)", function()
    flame.manual_seed(1)
    local x = flame.randn(4, 64, 40, 40)
    x.requires_grad = true
    local function run()
      local y = F.interpolate(F.max_pool2d(x, 3, {stride = 2, padding = 1}), {scale_factor = 2.5, mode = "bilinear"})
      y = F.avg_pool2d(F.pad(y, {3, 3, 3, 3}, {mode = "reflect"}), 2)
      return y, flame.autograd.grad((y * y):sum(), {x})[1]
    end
    local n = flame.get_num_threads and flame.get_num_threads() or 1
    flame.set_num_threads(1)
    local y1, g1 = run()
    flame.set_num_threads(4)
    local y4, g4 = run()
    flame.set_num_threads(n)
    H.close(y4, y1, {atol = 0, rtol = 0})
    H.close(g4, g1, {atol = 0, rtol = 0})
  end)
end)

describe("F pooling gradients (f64 finite differences)", function()
  local function rn(...) flame.manual_seed(11); return flame.randn(...) end
  local cases = {
    {"max_pool2d k3 s2 p1", rn(1, 2, 5, 6), function(x) return F.max_pool2d(x, 3, {stride = 2, padding = 1}) end},
    {"max_pool2d ceil, dilation", rn(1, 2, 7, 6), function(x) return F.max_pool2d(x, 2, {stride = 2, padding = 1, dilation = 2, ceil_mode = true}) end},
    {"max_pool1d", rn(2, 2, 9), function(x) return F.max_pool1d(x, 3, {stride = 2, ceil_mode = true}) end},
    {"max_pool3d", rn(1, 1, 4, 4, 5), function(x) return F.max_pool3d(x, 2, {stride = {1, 2, 2}, padding = 1}) end},
    {"avg_pool2d with pad count", rn(1, 2, 5, 6), function(x) return F.avg_pool2d(x, 3, {stride = 2, padding = 1, ceil_mode = true}) end},
    {"avg_pool2d without pad count", rn(1, 2, 5, 6), function(x) return F.avg_pool2d(x, {3, 2}, {stride = {2, 1}, padding = {1, 1}, count_include_pad = false}) end},
    {"avg_pool1d", rn(2, 2, 9), function(x) return F.avg_pool1d(x, 4, {stride = 3, padding = 2}) end},
    {"avg_pool3d", rn(1, 1, 4, 5, 4), function(x) return F.avg_pool3d(x, 2, {stride = 1, padding = 1, count_include_pad = false}) end},
    {"adaptive_avg_pool2d", rn(1, 2, 5, 7), function(x) return F.adaptive_avg_pool2d(x, {3, 4}) end},
    {"adaptive_avg_pool1d", rn(2, 2, 7), function(x) return F.adaptive_avg_pool1d(x, 5) end},
    {"adaptive_avg_pool3d", rn(1, 1, 3, 4, 5), function(x) return F.adaptive_avg_pool3d(x, {2, 3, 2}) end},
    {"nearest 1.7", rn(1, 2, 4, 3), function(x) return F.interpolate(x, {scale_factor = 1.7}) end},
    {"nearest down", rn(1, 1, 7, 5), function(x) return F.interpolate(x, {size = {3, 4}}) end},
    {"nearest 1-d and 3-d", rn(1, 2, 3, 2, 3), function(x) return F.interpolate(x, {size = {4, 3, 5}}) end},
    {"bilinear", rn(1, 2, 4, 5), function(x) return F.interpolate(x, {scale_factor = 1.6, mode = "bilinear"}) end},
    {"bilinear align_corners", rn(1, 2, 4, 5), function(x) return F.interpolate(x, {size = {7, 3}, mode = "bilinear", align_corners = true}) end},
    {"bilinear down", rn(1, 1, 7, 8), function(x) return F.interpolate(x, {size = {3, 5}, mode = "bilinear"}) end},
    {"linear", rn(2, 2, 5), function(x) return F.interpolate(x, {scale_factor = 2.5, mode = "linear"}) end},
    {"trilinear", rn(1, 1, 3, 3, 4), function(x) return F.interpolate(x, {size = {4, 5, 3}, mode = "trilinear", align_corners = true}) end},
    {"pad constant", rn(2, 3, 4), function(x) return F.pad(x, {1, -1, 2, 0}, {value = 2}) end},
    {"pad reflect 2-d", rn(1, 2, 4, 5), function(x) return F.pad(x, {2, 4, 3, 1}, {mode = "reflect"}) end},
    {"pad reflect 1-d, 3-d", rn(1, 2, 3, 3, 4), function(x) return F.pad(x, {1, 2, 2, 0, 1, 2}, {mode = "reflect"}) end},
    {"pad replicate", rn(2, 3, 4), function(x) return F.pad(x, {3, 2, -1, 2}, {mode = "replicate"}) end},
    {"pad replicate 1-d", rn(2, 4), function(x) return F.pad(x, {3, 5}, {mode = "replicate"}) end},
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.is_true(H.gradcheck(c[3], {c[2]})) end)
  end
end)

describe("F pooling on CUDA against the CPU", function()
  local test = has_cuda and it or pending
  local function rn(...) flame.manual_seed(21); return flame.randn(...) end
  local ops = {
    {"max_pool2d", rn(2, 3, 17, 19), function(t) return F.max_pool2d(t, 3, {stride = 2, padding = 1, ceil_mode = true}) end},
    {"max_pool3d dilation", rn(1, 2, 7, 8, 9), function(t) return F.max_pool3d(t, 3, {stride = 2, padding = 1, dilation = 2}) end},
    {"avg_pool2d", rn(2, 3, 17, 19), function(t) return F.avg_pool2d(t, 3, {stride = 2, padding = 1, count_include_pad = false}) end},
    {"avg_pool1d", rn(2, 3, 33), function(t) return F.avg_pool1d(t, 4, {stride = 3, padding = 2, ceil_mode = true}) end},
    {"adaptive_avg_pool2d", rn(2, 3, 17, 19), function(t) return F.adaptive_avg_pool2d(t, {5, 7}) end},
    {"adaptive_avg_pool3d", rn(1, 2, 7, 8, 9), function(t) return F.adaptive_avg_pool3d(t, {3, 5, 4}) end},
    {"nearest", rn(2, 3, 9, 11), function(t) return F.interpolate(t, {scale_factor = 1.7}) end},
    {"nearest 3-d", rn(1, 2, 4, 5, 6), function(t) return F.interpolate(t, {size = {7, 3, 9}}) end},
    {"bilinear", rn(2, 3, 9, 11), function(t) return F.interpolate(t, {scale_factor = 2, mode = "bilinear"}) end},
    {"bilinear align_corners", rn(2, 3, 9, 11), function(t) return F.interpolate(t, {size = {20, 7}, mode = "bilinear", align_corners = true}) end},
    {"linear", rn(2, 3, 13), function(t) return F.interpolate(t, {scale_factor = 2.3, mode = "linear"}) end},
    {"trilinear", rn(1, 2, 4, 5, 6), function(t) return F.interpolate(t, {size = {7, 3, 9}, mode = "trilinear"}) end},
    {"pad reflect", rn(2, 3, 9, 11), function(t) return F.pad(t, {3, 2, 4, 1}, {mode = "reflect"}) end},
    {"pad replicate 3-d", rn(1, 2, 4, 5, 6), function(t) return F.pad(t, {3, 2, 4, 1, 2, 2}, {mode = "replicate"}) end},
    {"pad constant", rn(2, 3, 9, 11), function(t) return F.pad(t, {3, -2, 4, 1}, {value = 0.5}) end},
    -- the bench shapes scaled down: each takes a 2-d fast path of the CUDA kernels (cuda/resample_fast.cuh)
    {"max_pool2d k2", rn(2, 3, 16, 16), function(t) return F.max_pool2d(t, 2) end},
    {"max_pool2d k3s2p1", rn(2, 3, 16, 16), function(t) return F.max_pool2d(t, 3, {stride = 2, padding = 1}) end},
    {"max_pool1d k3s2p1", rn(2, 3, 33), function(t) return F.max_pool1d(t, 3, {stride = 2, padding = 1}) end},
    {"avg_pool2d k2", rn(2, 3, 16, 16), function(t) return F.avg_pool2d(t, 2) end},
    {"avg_pool2d k3s2p1", rn(2, 3, 16, 16), function(t) return F.avg_pool2d(t, 3, {stride = 2, padding = 1}) end},
    {"adaptive_avg_pool2d to 7", rn(2, 3, 16, 16), function(t) return F.adaptive_avg_pool2d(t, 7) end},
    {"adaptive_avg_pool1d", rn(2, 3, 16), function(t) return F.adaptive_avg_pool1d(t, 5) end},
    {"nearest 2x", rn(2, 3, 16, 16), function(t) return F.interpolate(t, {scale_factor = 2}) end},
    {"nearest 3x", rn(2, 3, 16, 16), function(t) return F.interpolate(t, {scale_factor = 3}) end},
    {"nearest size 2x by 3x", rn(2, 3, 16, 16), function(t) return F.interpolate(t, {size = {32, 48}}) end},
    {"nearest 1-d 3x", rn(2, 3, 13), function(t) return F.interpolate(t, {scale_factor = 3}) end},
    {"pad reflect 1", rn(2, 3, 16, 16), function(t) return F.pad(t, {1, 1, 1, 1}, {mode = "reflect"}) end},
    {"pad replicate 2-d", rn(2, 3, 16, 16), function(t) return F.pad(t, {2, -1, 3, 1}, {mode = "replicate"}) end},
    {"pad reflect 1-d", rn(2, 3, 13), function(t) return F.pad(t, {4, 2}, {mode = "reflect"}) end},
  }
  for _, c in ipairs(ops) do
    for _, dt in ipairs({"f32", "bf16", "f16"}) do
      local tol = dt == "f32" and {atol = 1e-5, rtol = 1e-5} or {atol = 3e-2, rtol = 3e-2}
      test(c[1] .. " " .. dt .. " agrees, forward and backward", function()
        -- detached: to() returns the tensor itself when nothing changes (f32 on the CPU)
        local xc = c[2]:to(dt):detach(); local xg = c[2]:to({dtype = dt, device = "cuda"}):detach()
        xc.requires_grad = true; xg.requires_grad = true
        local rc, rg = c[3](xc), c[3](xg)
        assert.are.equal("cuda:0", rg.device); assert.are.equal(dt, rg.dtype)
        H.close(rg:cpu():float(), rc:float(), tol, c[1] .. " output")
        flame.manual_seed(5)
        local w = flame.randn(rc.shape);
        (rc * w:to(dt)):sum():backward(); (rg * w:to({dtype = dt, device = "cuda"})):sum():backward()
        H.close(xg.grad:cpu():float(), xc.grad:float(), tol, c[1] .. " grad")
      end)
    end
  end

  test("the backward passes are deterministic on CUDA (bit-identical runs)", function()
    local x = rn(4, 8, 33, 35):cuda()
    x.requires_grad = true
    local function grads()
      local y = F.interpolate(F.max_pool2d(x, 3, {stride = 2, padding = 1}), {scale_factor = 2.5, mode = "bilinear"})
      y = F.avg_pool2d(F.pad(y, {3, 3, 3, 3}, {mode = "reflect"}), 2)
      return flame.autograd.grad(y:sum() * 1.7 + (y * y):sum(), {x})[1]:cpu()
    end
    local a, b = grads(), grads()
    H.close(a, b, {atol = 0, rtol = 0})
  end)

  test("max pool indices agree with the CPU's", function()
    local x = rn(2, 3, 17, 19)
    local _, ic = F.max_pool2d(x, 3, {stride = 2, padding = 1, return_indices = true})
    local _, ig = F.max_pool2d(x:cuda(), 3, {stride = 2, padding = 1, return_indices = true})
    H.close(ig:cpu(), ic, {atol = 0, rtol = 0})
  end)

  test("an integer input is refused on CUDA too, naming the op", function()
    H.errors(function() return F.max_pool2d(flame.ones(1, 1, 4, 4, {dtype = "i32", device = "cuda"}), 2) end,
      "max_pool2d", "float")
  end)
end)

describe("F pooling errors", function()
  local x = dev(flame.randn(1, 2, 5, 5))
  it("wrong ranks", function()
    H.errors(function() return F.max_pool2d(dev(flame.randn(5, 5)), 2) end, "max_pool2d: expected a 3-d or 4-d (batched) input, got f32[5, 5]")
    H.errors(function() return F.avg_pool1d(x, 2) end, "avg_pool1d: expected a 2-d or 3-d (batched) input")
    H.errors(function() return F.adaptive_avg_pool3d(x[1], 2) end, "adaptive_avg_pool3d: expected a 4-d or 5-d")
    H.errors(function() return F.interpolate(dev(flame.randn(2, 3)), {size = 3}) end, "interpolate: expected a 3-d, 4-d or 5-d input")
    H.errors(function() return F.interpolate(x, {size = 3, mode = "linear"}) end, "interpolate: mode 'linear' needs a 3-d input, got 4-d")
    H.errors(function() return F.interpolate(x, {size = 3, mode = "trilinear"}) end, "mode 'trilinear' needs a 5-d input")
    H.errors(function() return F.pad(dev(flame.randn(5, 5)), {1, 1, 1, 1}, {mode = "reflect"}) end,
      "pad: reflect padding of the last 2 dims needs a 3-d or 4-d input, got f32[5, 5]")
    H.errors(function() return F.pad(dev(flame.randn(5)), {1, 1, 1, 1}) end, "pad: 4 padding values pad 2 dims, more than the 1 of f32[5]")
  end)
  it("kernels larger than the padded input", function()
    H.errors(function() return F.max_pool2d(x, 7) end, "max_pool2d: kernel 7 (dilation 1) is larger than the padded input 5")
    H.errors(function() return F.avg_pool2d(x, {2, 8}, {padding = {0, 1}}) end, "avg_pool2d: kernel 8", "padded input 7")
    H.errors(function() return F.max_pool2d(x, 3, {dilation = 3}) end, "kernel 3 (dilation 3) is larger")
  end)
  it("padding more than half the kernel", function()
    H.errors(function() return F.max_pool2d(x, 2, {padding = 2}) end, "max_pool2d: padding 2 should be at least 0 and at most half of the kernel size 2")
    H.errors(function() return F.avg_pool2d(x, 3, {padding = -1}) end, "padding -1 should be at least 0")
  end)
  it("zero and negative sizes", function()
    H.errors(function() return F.max_pool2d(x, 0) end, "max_pool2d: kernel size must be positive, got 0")
    -- huge sizes are refused before the output-size arithmetic could overflow (found by the fuzzer)
    H.errors(function() return F.max_pool2d(x, math.maxinteger - 1, {stride = math.maxinteger - 4}) end,
      "max_pool2d: kernel size, stride, padding and dilation must be below 2^31")
    H.errors(function() return F.avg_pool2d(x, 2, {stride = 0}) end, "avg_pool2d: stride must be positive, got 0")
    H.errors(function() return F.max_pool2d(x, 2, {dilation = {1, 0}}) end, "dilation must be positive, got 0")
    H.errors(function() return F.adaptive_avg_pool2d(x, {0, 2}) end, "adaptive_avg_pool2d: output size must be positive")
    H.errors(function() return F.adaptive_avg_pool2d(x, -3) end, "adaptive_avg_pool2d: output_size must be positive, got -3")
    H.errors(function() return F.interpolate(x, {size = {0, 3}}) end, "interpolate: output size must be positive, got 0 for dim 3")
    H.errors(function() return F.interpolate(x, {scale_factor = 0.1}) end, "interpolate: output size must be positive, got 0")
    H.errors(function() return F.interpolate(x, {scale_factor = -2}) end, "scale_factor must be positive and finite, got -2")
    H.errors(function() return F.max_pool2d(dev(flame.randn(1, 0, 4, 4)), 2) end, "expected non-empty sizes except the batch", "dim 2 is 0")
    H.errors(function() return F.pad(x, {-3, -3}) end, "pad: dim 4 of f32[1, 2, 5, 5]", "padded by -3 and -3 gives a negative size")
    H.errors(function() return F.pad(x, {1, 2, 3}) end, "pad: the padding length must be even, got 3")
    H.errors(function() return F.max_pool2d(x, {2, 2, 2}) end, "kernel_size needs 2 sizes, got 3")
  end)
  it("unknown modes and options, size and scale_factor both or neither", function()
    H.errors(function() return F.interpolate(x, {size = 3, mode = "bicubic"}) end,
      "interpolate: unknown mode 'bicubic' (modes: nearest, linear, bilinear, trilinear)")
    H.errors(function() return F.pad(x, {1, 1}, {mode = "wrap"}) end, "pad: unknown mode 'wrap' (modes: constant, reflect, replicate, circular)")
    H.errors(function() return F.interpolate(x, {size = 3, scale_factor = 2}) end, "interpolate: only one of size and scale_factor may be given")
    H.errors(function() return F.interpolate(x, {mode = "bilinear"}) end, "interpolate: either size or scale_factor must be given")
    H.errors(function() return F.interpolate(x, {size = 3, align_corners = true}) end, "align_corners can only be set with the interpolating modes")
    H.errors(function() return F.max_pool2d(x, 2, {strides = 2}) end, "unknown option 'strides' (did you mean 'stride'?)")
    H.errors(function() return F.pad(x, {1, 1}, {mode = "reflect", value = 2}) end, "pad: value is only for mode 'constant'")
  end)
  it("reflect padding as large as the dim", function()
    H.errors(function() return F.pad(x, {5, 0, 0, 0}, {mode = "reflect"}) end,
      "pad: reflect padding (5, 0) must be less than the size 5 of dim 4 of f32[1, 2, 5, 5]")
    H.errors(function() return F.pad(x, {0, 0, 1, 6}, {mode = "reflect"}) end, "reflect padding (1, 6) must be less than the size 5 of dim 3")
    H.errors(function() return F.pad(x, {1, 1, 1, 1, 1, 1, 1, 1}, {mode = "replicate"}) end, "pad: replicate padding takes 2, 4 or 6 values")
  end)
  it("integer inputs to the pools and interpolate", function()
    local i = dev(flame.ones(1, 1, 4, 4, {dtype = "i64"}))
    H.errors(function() return F.avg_pool2d(i, 2) end, "avg_pool2d: expected a float tensor, got i64[1, 1, 4, 4]")
    H.errors(function() return F.interpolate(i, {size = 2}) end, "interpolate: expected a float tensor")
  end)
end)
