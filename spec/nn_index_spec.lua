-- flame.F index ops and losses: embedding, the deterministic scatter-add behind the backward of index_select,
-- embedding and gather, cross_entropy (fused), mse/l1/smooth_l1 and binary_cross_entropy_with_logits.
-- Values against PyTorch fixtures (spec/fixtures/gen_nn_index.py) and f64 references, f64 gradchecks, run-to-run
-- determinism, CPU-vs-CUDA parity (pending without a GPU) and the error messages.
local H = require "helper"
local flame = H.flame
local F = flame.F
local fx = dofile("spec/fixtures/nn_index.lua")
local has_cuda = flame.cuda.is_available()

local function t64(v) return H.t(v, {dtype = "f64"}) end
local function ids(v) return H.t(v, {dtype = "i64"}) end
local tol = {atol = 1e-10, rtol = 1e-9}

describe("cross_entropy", function()
  for k, c in ipairs(fx.ce.cases) do
    it("matches PyTorch, case " .. k, function()
      local x = t64(fx.ce.x); x.requires_grad = true
      local o = {}
      for key, v in pairs(c.opts) do o[key] = v end
      if c.weight then o.weight = t64(fx.ce.w) end
      local l = F.cross_entropy(x, ids(c.target), o)
      H.close(l, flame.tensor(c.loss, {dtype = "f64"}), tol)
      l:backward(flame.ones_like(l))
      H.close(x.grad, flame.tensor(c.grad, {dtype = "f64"}), tol)
    end)
  end

  it("matches PyTorch on spatial logits [N, C, d1, d2] with label smoothing", function()
    local x = t64(fx.ce_spatial.x); x.requires_grad = true
    local l = F.cross_entropy(x, ids(fx.ce_spatial.target), {label_smoothing = 0.1})
    H.close(l, flame.tensor(fx.ce_spatial.loss, {dtype = "f64"}), tol)
    l:backward()
    H.close(x.grad, flame.tensor(fx.ce_spatial.grad, {dtype = "f64"}), tol)
  end)

  it("matches PyTorch with probability targets, weight and label smoothing", function()
    local x = t64(fx.ce_probs.x); x.requires_grad = true
    local l = F.cross_entropy(x, t64(fx.ce_probs.p), {weight = t64(fx.ce_probs.w), label_smoothing = 0.2})
    H.close(l, flame.tensor(fx.ce_probs.loss, {dtype = "f64"}), tol)
    l:backward()
    H.close(x.grad, flame.tensor(fx.ce_probs.grad, {dtype = "f64"}), tol)
  end)

  it("equals -log_softmax picked at the target (f32), and takes the reduction as a string", function()
    local x = H.t(flame.randn(7, 9) * 4)
    local tg = ids({3, 9, 1, 1, 5, 2, 7})
    local ref = -x:log_softmax(2):gather(2, tg:view(7, 1)):view(7)
    H.close(F.cross_entropy(x, tg, "none"), ref, {atol = 1e-5})
    H.close(F.cross_entropy(x, tg, "sum"), ref:sum(), {atol = 1e-4})
    H.close(F.cross_entropy(x, tg, {reduction = "mean"}), ref:mean(), {atol = 1e-5})
    H.close(F.cross_entropy(x, tg:int()), ref:mean(), {atol = 1e-5})
  end)

  it("takes one sample: logits [C] with a 0-dim class or [C] probabilities", function()
    local x = H.t(flame.randn(6))
    local l = F.cross_entropy(x, ids(4), "none")
    assert.are.equal(0, l:dim())
    H.close(l, -x:log_softmax(1)[4], {atol = 1e-5})
    local p = x:softmax(1)
    H.close(F.cross_entropy(x, p), F.cross_entropy(x:view(1, 6), p:view(1, 6)), {atol = 1e-6})
  end)

  it("gives probability targets a gradient (as PyTorch)", function()
    H.gradcheck(function(x, p) return F.cross_entropy(x, p, {weight = t64({1, 2, 0.5}), label_smoothing = 0.2}) end,
      {flame.randn(4, 3), flame.rand(4, 3)})
    local x = t64(flame.randn(2, 3, 2))
    H.gradcheck(function(p) return F.cross_entropy(x, p, "none") end, {flame.rand(2, 3, 2)})
  end)

  it("is stable for large logits", function()
    local x = t64({{1000, 0, -1000}, {-1e4, 1e4, 0}})
    H.close(F.cross_entropy(x, ids({1, 2}), "none"), t64({0, 0}), {atol = 1e-12})
    H.close(F.cross_entropy(x, ids({3, 1}), "none"), t64({2000, 2e4}), {atol = 1e-9})
  end)

  it("passes gradchecks (weight, smoothing, ignore; spatial; probabilities)", function()
    local w = t64({0.5, 1.5, 1, 2})
    local tg = ids({1, 4, 2, 3, 4})
    H.gradcheck(function(x) return F.cross_entropy(x, tg, {weight = w, label_smoothing = 0.15, ignore_index = 2}) end,
      {flame.randn(5, 4)})
    H.gradcheck(function(x) return F.cross_entropy(x, ids({{1, 3}, {2, 2}}), {reduction = "none"}) end,
      {flame.randn(2, 3, 2)})
    local p = t64(flame.rand(3, 4))
    H.gradcheck(function(x) return F.cross_entropy(x, p, {label_smoothing = 0.3, reduction = "sum"}) end,
      {flame.randn(3, 4)})
  end)

  it("keeps bf16 and f16 logits' dtype, accumulating in f32", function()
    local x = flame.randn(16, 300) * 3
    local tg = H.t(flame.randint(1, 301, {16}))
    local ref = F.cross_entropy(H.t(x), tg)
    for _, dt in ipairs({"bf16", "f16"}) do
      local l = F.cross_entropy(H.t(x, {dtype = dt}), tg)
      assert.are.equal(dt, l.dtype)
      H.close(l:float(), ref, {atol = 0.05, rtol = 0.02})
    end
  end)

  it("reports out-of-range targets, 1-based", function()
    local x = H.t(flame.randn(3, 4))
    H.errors(function() return F.cross_entropy(x, ids({1, 5, 2})) end, "cross_entropy", " 5 out of range")
    H.errors(function() return F.cross_entropy(x, ids({1, 0, 2})) end, "cross_entropy", " 0 out of range")
    -- an ignored target may be anything, a valid class too
    H.close(F.cross_entropy(x, ids({1, 0, 2}), {ignore_index = 0}), F.cross_entropy(x:narrow(1, 1, 1), ids({1}), "none")
      :add(F.cross_entropy(x:narrow(1, 3, 1), ids({2}), "none")):sum() / 2, {atol = 1e-5})
  end)

  it("rejects bad arguments", function()
    local x = H.t(flame.randn(3, 4))
    H.errors(function() return F.cross_entropy(H.t(3.0), ids(1)) end, "cross_entropy", "[N, C]")
    H.errors(function() return F.cross_entropy(x, ids({{1, 2, 3}})) end, "cross_entropy", "class-index targets")
    H.errors(function() return F.cross_entropy(x, H.t({true, false, true}, {dtype = "bool"})) end, "cross_entropy",
      "class indices (i64 or i32)")
    H.errors(function() return F.cross_entropy(x, ids({1, 2, 3}), "avg") end, 'reduction must be "mean", "sum" or "none"')
    H.errors(function() return F.cross_entropy(x, ids({1, 2, 3}), {label_smoothing = 1.5}) end, "label_smoothing must be in [0, 1]")
    H.errors(function() return F.cross_entropy(x, ids({1, 2, 3}), {label_smoothing = -0.1}) end, "label_smoothing")
    H.errors(function() return F.cross_entropy(x, ids({1, 2, 3}), {weight = H.t({1, 2})}) end, "weight must be a float [C]")
    H.errors(function() return F.cross_entropy(x, ids({1, 2, 3}), {smoothing = 0.1}) end, "label_smoothing")
    H.errors(function() return F.cross_entropy(ids({{1, 2}}), ids({1})) end, "logits must be a float tensor")
  end)
end)

describe("regression losses and binary_cross_entropy_with_logits", function()
  local r = fx.reg
  it("match PyTorch", function()
    local a, b = t64(r.a), t64(r.b)
    H.close(F.mse_loss(a, b), flame.tensor(r.mse, {dtype = "f64"}), tol)
    H.close(F.l1_loss(a, b, "sum"), flame.tensor(r.l1, {dtype = "f64"}), tol)
    H.close(F.l1_loss(a, b, {reduction = "sum"}), flame.tensor(r.l1, {dtype = "f64"}), tol)
    H.close(F.smooth_l1_loss(a, b, {beta = 0.5, reduction = "none"}), flame.tensor(r.sl1, {dtype = "f64"}), tol)
    H.close(F.smooth_l1_loss(a, b), flame.tensor(r.sl1_mean, {dtype = "f64"}), tol)
    H.close(F.smooth_l1_loss(a, b, {beta = 0}), F.l1_loss(a, b), tol)
    local c = fx.bce
    local x = t64(c.x); x.requires_grad = true
    local l = F.binary_cross_entropy_with_logits(x, t64(c.y), {weight = t64(c.w), pos_weight = t64(c.pw)})
    H.close(l, flame.tensor(c.loss, {dtype = "f64"}), tol)
    l:backward()
    H.close(x.grad, flame.tensor(c.grad, {dtype = "f64"}), tol)
    H.close(F.binary_cross_entropy_with_logits(t64(c.x), t64(c.y), "none"), flame.tensor(c.none, {dtype = "f64"}), tol)
  end)

  it("binary_cross_entropy_with_logits is stable and has the exact gradient at 0", function()
    local x = t64({-800, 0, 800}); x.requires_grad = true
    local y = t64({1, 0.25, 0})
    local l = F.binary_cross_entropy_with_logits(x, y, "none")
    H.close(l, t64({800, math.log(2), 800}), {atol = 1e-9})
    l:sum():backward()
    H.close(x.grad, t64({-1, 0.25, 1}), {atol = 1e-12}) -- sigmoid(x) - y
  end)

  it("pass gradchecks in every tensor argument", function()
    local a, b = flame.randn(3, 4), flame.randn(3, 4)
    H.gradcheck(function(p, q) return F.mse_loss(p, q, "none") end, {a, b})
    H.gradcheck(function(p, q) return F.l1_loss(p, q) end, {a, b})
    H.gradcheck(function(p, q) return F.smooth_l1_loss(p, q, {beta = 0.7, reduction = "sum"}) end, {a, b})
    H.gradcheck(function(x, y, w, pw)
      return F.binary_cross_entropy_with_logits(x, y, {weight = w, pos_weight = pw, reduction = "none"})
    end, {a * 2, flame.rand(3, 4), flame.rand(3, 4), flame.rand(4) + 0.5})
  end)

  it("reject bad arguments", function()
    local a = H.t(flame.randn(2, 3))
    H.errors(function() return F.mse_loss(a, H.t(flame.randn(3, 2))) end, "mse_loss", "same shape")
    H.errors(function() return F.l1_loss(a, a, "avg") end, "l1_loss", 'reduction must be "mean", "sum" or "none"')
    H.errors(function() return F.smooth_l1_loss(a, a, {beta = -1}) end, "beta must be a non-negative number")
    H.errors(function() return F.binary_cross_entropy_with_logits(a, a, {pos_wieght = a}) end, "unknown option 'pos_wieght'")
    H.errors(function() return F.mse_loss(a, 3) end, "mse_loss: expected two tensors")
  end)
end)

describe("embedding", function()
  local e = fx.emb
  it("matches PyTorch, padding_idx included (1-based)", function()
    local w = t64(e.w); w.requires_grad = true
    local out = F.embedding(ids(e.ids), w, {padding_idx = e.padding_idx})
    H.close(out, flame.tensor(e.out, {dtype = "f64"}), tol)
    out:backward(t64(e.g))
    H.close(w.grad, flame.tensor(e.grad, {dtype = "f64"}), tol)
    local w2 = t64(e.w); w2.requires_grad = true
    F.embedding(ids(e.ids):int(), w2, {padding_idx = e.padding_idx - 6}):backward(t64(e.g)) -- -3 is row 3 of 5
    H.close(w2.grad, flame.tensor(e.grad, {dtype = "f64"}), tol)
  end)

  it("passes a gradcheck, ids of any shape", function()
    local id = ids({{{1, 4}, {4, 4}}, {{2, 1}, {3, 4}}})
    H.gradcheck(function(w) return F.embedding(id, w) end, {flame.randn(4, 3)})
    H.gradcheck(function(w) return F.embedding(ids(2), w, {padding_idx = 1}) end, {flame.randn(4, 3)})
  end)

  it("reports out-of-range ids and bad arguments", function()
    local w = H.t(flame.randn(5, 3))
    H.errors(function() return F.embedding(ids({1, 6}), w) end, " 6 out of range")
    H.errors(function() return F.embedding(ids({0}), w) end, " 0 out of range")
    H.errors(function() return F.embedding(ids({1}), H.t(flame.randn(5))) end, "embedding: weight must be 2-D")
    H.errors(function() return F.embedding(H.t({1.0}), w) end, "embedding: ids must be an i64 or i32 tensor")
    H.errors(function() return F.embedding(ids({1}), w, {padding_idx = 6}) end, "padding_idx 6 out of range")
    H.errors(function() return F.embedding(ids({1}), w, {padding = 1}) end, "padding_idx")
  end)
end)

-- The backward of index_select, embedding and gather adds many rows into few: on CUDA a sort and ordered segment
-- sums, so two runs give the same bits (atomics would not).
describe("deterministic scatter-add", function()
  local function grads(dt)
    flame.manual_seed(3)
    local src = H.t(flame.randn(50, 64), {dtype = dt})
    local idx = H.t(flame.randint(1, 6, {5000})) -- 5000 rows into 5 destinations: long segments
    local g = H.t(flame.randn(5000, 64), {dtype = dt})
    local gi = H.t(flame.randint(1, 51, {300, 64}))
    local si = H.t(flame.randint(1, 6, {300, 64}))
    local out = {}
    for run = 1, 2 do
      local s = src:detach(); s.requires_grad = true
      s:index_select(1, idx):backward(g)
      local w = src:detach(); w.requires_grad = true
      F.embedding(idx:view(50, 100), w):backward(g:view(50, 100, 64))
      local x = src:detach(); x.requires_grad = true
      x:gather(1, gi):backward(g:narrow(1, 1, 300))
      out[run] = {s.grad, w.grad, x.grad, src:index_add(1, idx, g), src:narrow(1, 1, 5):scatter_add(1, si, g:narrow(1, 1, 300))}
    end
    return out
  end
  for _, dt in ipairs({"f32", "bf16", "f64"}) do
    it("gives bit-identical gradients run to run (" .. dt .. ")", function()
      local o = grads(dt)
      for k = 1, #o[1] do
        assert.is_true(o[1][k]:eq(o[2][k]):all():item(), "result " .. k .. " differs between runs")
      end
    end)
  end

  it("sums repeated indices in any dim (f64 reference)", function()
    local x = flame.randn(3, 4, 5, {dtype = "f64"})
    local idx = {2, 2, 1, 2, 4, 2}
    local src = flame.randn(3, 6, 5, {dtype = "f64"})
    local ref = x:clone()
    for i, v in ipairs(idx) do ref:narrow(2, v, 1):add_(src:narrow(2, i, 1)) end
    H.close(H.t(x):index_add(2, ids(idx), H.t(src)), ref, tol)
    local s = H.t(flame.randn(3, 4, 5, {dtype = "f64"})); s.requires_grad = true
    local g = H.t(flame.randn(3, 6, 5, {dtype = "f64"}))
    s:index_select(2, ids(idx)):backward(g)
    local gref = flame.zeros(3, 4, 5, {dtype = "f64"})
    for i, v in ipairs(idx) do gref:narrow(2, v, 1):add_(g:cpu():narrow(2, i, 1)) end
    H.close(s.grad, gref, tol)
    H.gradcheck(function(a) return a:index_select(3, ids({5, 1, 5, 5})) end, {flame.randn(2, 3, 5)})
    H.gradcheck(function(a) return a:gather(2, ids({{1, 1, 3}, {2, 2, 2}})) end, {flame.randn(2, 3)})
  end)

  it("reports out-of-range indices in the backward's kernels too", function()
    local x = H.t(flame.randn(4, 3))
    H.errors(function() return x:index_add(1, ids({1, 5}), H.t(flame.randn(2, 3))) end, "index_add", " 5 out of range")
    H.errors(function() return x:scatter_add(1, ids({{1, 0, 2}}), x) end, "scatter_add", " 0 out of range")
  end)
end)

describe("index ops and losses on CPU and CUDA", function()
  local test = has_cuda and it or pending
  local cases = {
    {"embedding", function(w) return F.embedding(flame.tensor({{1, 7, 7}, {3, 1, 7}}, {device = w.device}), w, {padding_idx = 3}) end,
      function() return {flame.randn(8, 16)} end},
    {"index_select dim 2", function(x) return x:index_select(2, flame.tensor({4, 4, 1, 2, 4}, {device = x.device})) end,
      function() return {flame.randn(3, 4, 6)} end},
    {"gather", function(x) return x:gather(1, flame.tensor({{2, 2, 1}, {1, 2, 2}}, {device = x.device})) end,
      function() return {flame.randn(2, 3)} end},
    {"cross_entropy", function(x) return F.cross_entropy(x, flame.tensor({1, 40, 3, 40, 5}, {device = x.device}),
      {label_smoothing = 0.1, ignore_index = 3, weight = flame.linspace(0.5, 2, 40, {device = x.device, dtype = x.dtype})}) end,
      function() return {flame.randn(5, 40) * 3} end},
    {"cross_entropy probabilities", function(x) return F.cross_entropy(x, (x * 0.5):softmax(2):detach(), "sum") end,
      function() return {flame.randn(6, 24)} end},
  }
  for _, c in ipairs(cases) do
    for _, dt in ipairs({"f32", "bf16", "f16"}) do
      test(c[1] .. " agrees (" .. dt .. ")", function()
        local tl = dt == "f32" and {atol = 1e-5, rtol = 1e-4} or {atol = 0.05, rtol = 0.02}
        local ins = c[3]()
        local cpu, gpu = {}, {}
        for k, v in ipairs(ins) do
          cpu[k] = v:to(dt == "f32" and "f32" or "f32"):detach(); cpu[k].requires_grad = true
          gpu[k] = v:to({dtype = dt, device = "cuda"}):detach(); gpu[k].requires_grad = true
        end
        local rc, rg = c[2](table.unpack(cpu)), c[2](table.unpack(gpu))
        assert.are.equal(dt, rg.dtype)
        H.close(rg:float():cpu(), rc, tl)
        rc:sum():backward(); rg:float():sum():backward()
        for k = 1, #cpu do H.close(gpu[k].grad:float():cpu(), cpu[k].grad, tl) end
      end)
    end
  end

  test("mismatched devices are an error", function()
    local w = flame.randn(4, 3, {device = "cuda"})
    H.errors(function() return F.embedding(flame.tensor({1}), w) end, "embedding", "one device")
    H.errors(function() return F.cross_entropy(w, flame.tensor({1, 2, 3, 1})) end, "cross_entropy", "one device")
  end)
end)
