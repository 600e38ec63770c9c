-- flame.F: dropout, linear, softmax and the activations, and the reference attention
-- (scaled_dot_product_attention, flash_attention_varlen). Device-generic (FLAME_DEVICE=cuda).
local H = require "helper"
local flame = H.flame
local F = flame.F
local fixtures = require "fixtures.attention"

local has_cuda = flame.cuda.is_available()
local gpu_it = has_cuda and it or pending

local function rn(...) return flame.randn(...):to({device = H.device}) end
local function rn64(...) return flame.randn(...):to({dtype = "f64", device = H.device}) end

-- ---- the dropout keep rules written out in Lua (spec/ref.lua): specs that pin them ----
local R = require "ref"
local keep, keep8 = R.dropout_keep_word, R.dropout_keep_byte

-- ---- an f64 reference attention in Lua loops ----
-- q [B][Hq][Sq][D], k/v [B][Hk][Sk][*] (tables); opts: causal mode, scale, mask (a function
-- (b, h, i, j) -> true/false or a number added), drop (b, h, i, j) -> factor.
local function ref_attention(q, k, v, o)
  o = o or {}
  local B, Hq, Sq, D = #q, #q[1], #q[1][1], #q[1][1][1]
  local Hk, Sk, Dv = #k[1], #k[1][1], #v[1][1][1]
  local G = Hq // Hk
  local scale = o.scale or 1 / math.sqrt(D)
  local out = {}
  for b = 1, B do
    out[b] = {}
    for h = 1, Hq do
      out[b][h] = {}
      local hk = (h - 1) // G + 1
      for i = 1, Sq do
        local s, mx = {}, -math.huge
        for j = 1, Sk do
          local allowed = true
          if o.causal then
            local shift = o.causal == "bottom_right" and (Sk - Sq) or 0
            allowed = (j - 1) <= (i - 1) + shift
          end
          local x = 0
          for d = 1, D do x = x + q[b][h][i][d] * k[b][hk][j][d] end
          x = x * scale
          if o.mask then
            local m = o.mask(b, h, i, j)
            if m == false then allowed = false elseif type(m) == "number" then x = x + m end
          end
          s[j] = allowed and x or -math.huge
          if s[j] > mx then mx = s[j] end
        end
        local row = {}
        for d = 1, Dv do row[d] = 0 end
        if mx > -math.huge then
          local z = 0
          for j = 1, Sk do s[j] = math.exp(s[j] - mx); z = z + s[j] end
          for j = 1, Sk do
            local pj = s[j] / z * (o.drop and o.drop(b, h, i, j) or 1)
            for d = 1, Dv do row[d] = row[d] + pj * v[b][hk][j][d] end
          end
        end
        out[b][h][i] = row
      end
    end
  end
  return out
end

local function tab(t) return t:double():cpu():totable() end

-- drop(ones(5, 7), p) after manual_seed(42) against rule(42, 0, i, p) for every element i, for each p of ps.
local function check_mask(drop, rule, ps)
  for _, p in ipairs(ps) do
    flame.manual_seed(42)
    local y = tab(drop(flame.ones(5, 7, {device = H.device, dtype = "f64"}), p))
    for i = 0, 34 do
      local expect = rule(42, 0, i, p) and 1 / (1 - p) or 0
      local got = y[i // 7 + 1][i % 7 + 1]
      assert(math.abs(got - expect) < 1e-12, string.format("p %g element %d: %g vs %g", p, i, got, expect))
    end
  end
end

describe("F.dropout", function()
  it("training = false and p = 0 return x itself, without a kernel", function()
    local x = rn(3, 4)
    assert.is_true(rawequal(F.dropout(x, 0.5, false), x))
    assert.is_true(rawequal(F.dropout(x, 0), x))
    assert.is_true(rawequal(F.dropout(x, 0, true), x))
  end)

  it("p = 1 gives zeros (also where x is inf), and zero gradients", function()
    local x = H.t({{1, math.huge}, {-2, 3}})
    x.requires_grad = true
    local y = F.dropout(x, 1)
    H.close(y, {{0, 0}, {0, 0}})
    y:sum():backward()
    H.close(x.grad, {{0, 0}, {0, 0}})
  end)

  it("draws the mask of the Philox keep rule: element i keeps iff bits(word i%4 of block offset+i/4) >= p 2^24", function()
    check_mask(F.dropout, keep, {0.1, 0.5, 0.77})
  end)

  it("reserves counters, so successive calls differ; the same seed repeats the mask", function()
    flame.manual_seed(5)
    local x = flame.ones(64, {device = H.device})
    local a, b = F.dropout(x, 0.5), F.dropout(x, 0.5)
    assert.is_false(a:eq(b):all():item())
    flame.manual_seed(5)
    H.close(F.dropout(x, 0.5), a, {atol = 0, rtol = 0})
    -- the second call's counters start after the first's 64 / 4 blocks
    flame.manual_seed(5)
    local y = tab(F.dropout(flame.ones(64, {device = H.device, dtype = "f64"}), 0.5))
    y = tab(F.dropout(flame.ones(64, {device = H.device, dtype = "f64"}), 0.5))
    for i = 0, 63 do assert.are.equal(keep(5, 16, i, 0.5) and 2 or 0, y[i + 1]) end
  end)

  it("keeps close to 1 - p of a large tensor (fixed seed)", function()
    for _, p in ipairs({0.1, 0.5, 0.9}) do
      flame.manual_seed(11)
      local n = 1 << 20
      local y = F.dropout(flame.ones(n, {device = H.device}), p)
      local frac = y:ne(0):float():mean():item()
      -- the binomial std is sqrt(p (1 - p) / n) <= 5e-4: 10 of them
      assert(math.abs(frac - (1 - p)) < 5e-3, string.format("p %g: kept %g", p, frac))
      H.close(y:sum(), n * frac / (1 - p), {rtol = 1e-5})
    end
  end)

  -- (both rules: F.dropout's and the attention byte rule's F._attention_dropout share the kernels)
  it("does not depend on the CPU thread count", function()
    for _, drop in ipairs({F.dropout, F._attention_dropout}) do
      local x = flame.randn(300, 1000)
      local n0 = flame.get_num_threads()
      flame.set_num_threads(1)
      flame.manual_seed(2)
      local a = drop(x, 0.5)
      flame.set_num_threads(4)
      flame.manual_seed(2)
      local b = drop(x, 0.5)
      flame.set_num_threads(n0)
      assert.is_true(a:eq(b):all():item())
    end
  end)

  it("indexes elements in row-major order whatever the strides", function()
    for _, drop in ipairs({F.dropout, F._attention_dropout}) do
      local x = rn(6, 5):t()
      flame.manual_seed(9)
      local a = drop(x, 0.3)
      flame.manual_seed(9)
      local b = drop(x:contiguous(), 0.3)
      H.close(a, b, {atol = 0, rtol = 0})
    end
  end)

  it("backward applies the same mask to the gradient (never stored)", function()
    local x = flame.ones(8, 9, {device = H.device, dtype = "f64"})
    x.requires_grad = true
    flame.manual_seed(3)
    local y = F.dropout(x, 0.4)
    assert.are.equal("NativeDropoutBackward", y.grad_fn)
    local g = rn64(8, 9)
    y:backward(g)
    H.close(x.grad, y:detach() * g, {atol = 1e-14})
  end)

  it("gradcheck with a fixed seed", function()
    H.gradcheck(function(x)
      flame.manual_seed(21)
      return F.dropout(x, 0.35)
    end, {flame.randn(4, 6)})
  end)

  it("errors: p outside [0, 1], NaN, an integer tensor, a bad training flag", function()
    local x = rn(2, 2)
    H.errors(function() return F.dropout(x, 1.5) end, "dropout: p must be in [0, 1], got 1.5")
    H.errors(function() return F.dropout(x, -0.1, false) end, "dropout: p must be in [0, 1], got -0.1")
    H.errors(function() return F.dropout(x, 0 / 0) end, "dropout: p must be in [0, 1]")
    H.errors(function() return F.dropout(flame.ones(3, {dtype = "i64", device = H.device}), 0.5) end,
      "dropout: expected a floating-point tensor, got i64[3]")
    H.errors(function() return F.dropout(x, 0.5, "yes") end, "boolean expected")
  end)
end)

describe("F._attention_dropout (the attention-dropout byte rule)", function()
  local AD = F._attention_dropout

  it("draws the byte rule's mask: element i keeps iff byte i%16 of block offset+i/16 < round((1-p) 256)", function()
    -- 35 elements: three blocks, the last partial; p 0.77 rounds t = 58.88 up, 0.1 rounds 230.4 down
    check_mask(AD, keep8, {0.1, 0.5, 0.77, 0.999})
    -- not F.dropout's mask (the rules differ)
    flame.manual_seed(42)
    local a = AD(flame.ones(64, {device = H.device}), 0.5)
    flame.manual_seed(42)
    assert.is_false(a:eq(F.dropout(flame.ones(64, {device = H.device}), 0.5)):all():item())
  end)

  it("reserves ceil(n / 16) counters: the next call starts after them", function()
    flame.manual_seed(5)
    AD(flame.ones(35, {device = H.device}), 0.5) -- 3 blocks
    local y = tab(AD(flame.ones(40, {device = H.device, dtype = "f64"}), 0.5))
    for i = 0, 39 do assert.are.equal(keep8(5, 3, i, 0.5) and 2 or 0, y[i + 1]) end
    flame.manual_seed(5)
    AD(flame.ones(32, {device = H.device}), 0.5) -- exactly 2 blocks
    y = tab(AD(flame.ones(40, {device = H.device, dtype = "f64"}), 0.5))
    for i = 0, 39 do assert.are.equal(keep8(5, 2, i, 0.5) and 2 or 0, y[i + 1]) end
  end)

  it("keeps t / 256 of a large tensor, kept values scaled by exactly 1 / (1 - p) (fixed seed)", function()
    -- p 0.0025: t = 255, so the keep fraction 0.99609 differs from 1 - p = 0.9975 by 14 binomial stds
    for _, p in ipairs({0.0025, 0.1, 0.3, 0.5, 0.9}) do
      flame.manual_seed(11)
      local n = 1 << 20
      local y = AD(flame.ones(n, {device = H.device, dtype = "f64"}), p)
      local kept = y:ne(0)
      local frac = kept:double():mean():item()
      local t = R.dropout_byte_threshold(p)
      local want = t / 256
      -- the binomial std is sqrt(want (1 - want) / n) <= 5e-4: 10 of them, and at most 6e-4 for p 0.0025
      local tol = p < 0.01 and 6e-4 or 5e-3
      assert(math.abs(frac - want) < tol, string.format("p %g: kept %g, t / 256 = %g", p, frac, want))
      -- every kept value is 1 / (1 - p), every other 0
      local s = 1 / (1 - p)
      assert.are.equal(0, (y - kept:double() * s):abs():max():item())
    end
  end)

  it("p = 0 returns x itself; p below 1/512 rounds t to 256 and keeps everything", function()
    local x = rn(3, 4)
    assert.is_true(rawequal(AD(x, 0), x))
    flame.manual_seed(1)
    local y = AD(flame.ones(4096, {device = H.device, dtype = "f64"}), 0.001)
    assert.are.equal(4096, y:ne(0):double():sum():item())
    H.close(y, flame.ones(4096, {device = H.device, dtype = "f64"}) / 0.999, {atol = 1e-15})
  end)

  it("p = 1 drops everything (also where x is inf), with zero gradients", function()
    local x = H.t({{1, math.huge}, {-2, 3}})
    x.requires_grad = true
    local y = AD(x, 1)
    H.close(y, {{0, 0}, {0, 0}})
    y:sum():backward()
    H.close(x.grad, {{0, 0}, {0, 0}})
  end)

  it("backward applies the same mask to the gradient; gradcheck with a fixed seed", function()
    local x = flame.ones(8, 9, {device = H.device, dtype = "f64"})
    x.requires_grad = true
    flame.manual_seed(3)
    local y = AD(x, 0.4)
    assert.are.equal("NativeDropoutBackward", y.grad_fn)
    local g = rn64(8, 9)
    y:backward(g)
    H.close(x.grad, y:detach() * g, {atol = 1e-14})
    H.gradcheck(function(z)
      flame.manual_seed(21)
      return AD(z, 0.35)
    end, {flame.randn(4, 6)})
  end)

  it("errors: p outside [0, 1] or NaN, an integer tensor", function()
    local x = rn(2, 2)
    H.errors(function() return AD(x, 1.5) end, "attention_dropout: p must be in [0, 1], got 1.5")
    H.errors(function() return AD(x, 0 / 0) end, "attention_dropout: p must be in [0, 1]")
    H.errors(function() return AD(flame.ones(3, {dtype = "i64", device = H.device}), 0.5) end,
      "attention_dropout: expected a floating-point tensor, got i64[3]")
  end)
end)

describe("F.linear", function()
  it("is x w^T + b over leading dims, one node LinearBackward", function()
    local x, w, b = rn64(2, 3, 4), rn64(5, 4), rn64(5)
    local y = F.linear(x, w, b)
    H.close(y, x:matmul(w:t()) + b, {atol = 1e-12})
    H.close(F.linear(x, w), x:matmul(w:t()), {atol = 1e-12})
    x.requires_grad = true
    assert.are.equal("LinearBackward", F.linear(x, w, b).grad_fn)
  end)

  it("gradcheck of x, w and b, and without a bias", function()
    H.gradcheck(function(x, w, b) return F.linear(x, w, b) end, {flame.randn(3, 4), flame.randn(2, 4), flame.randn(2)})
    H.gradcheck(function(x, w) return F.linear(x, w) end, {flame.randn(2, 2, 3), flame.randn(4, 3)})
  end)

  it("errors: mismatched in-features, a bias of the wrong size, a 1-D weight", function()
    H.errors(function() return F.linear(rn(2, 3), rn(4, 5)) end, "linear: expected x [..., in], weight [out, in]",
      "x f32[2, 3]", "weight f32[4, 5]")
    H.errors(function() return F.linear(rn(2, 3), rn(4, 3), rn(3)) end, "bias f32[3]")
    H.errors(function() return F.linear(rn(2, 3), rn(3)) end, "linear: expected")
  end)
end)

describe("F softmax and activations", function()
  it("softmax, log_softmax, relu, silu, sigmoid, tanh, gelu are the methods' values", function()
    local x = rn64(3, 5)
    H.close(F.softmax(x, 2), x:softmax(2), {atol = 0, rtol = 0})
    H.close(F.log_softmax(x, 1), x:log_softmax(1), {atol = 0, rtol = 0})
    H.close(F.relu(x), x:relu(), {atol = 0, rtol = 0})
    H.close(F.silu(x), x:silu(), {atol = 0, rtol = 0})
    H.close(F.sigmoid(x), x:sigmoid(), {atol = 0, rtol = 0})
    H.close(F.tanh(x), x:tanh(), {atol = 0, rtol = 0})
    H.close(F.gelu(x), x:gelu(), {atol = 0, rtol = 0})
    H.close(F.gelu(x, {approximate = "tanh"}), x:gelu("tanh"), {atol = 0, rtol = 0})
  end)

  it("softmax and log_softmax backward (the fused last-dim kernel and the composed one): gradchecks", function()
    local x = flame.randn(3, 4, 5)
    for _, d in ipairs({3, -1, 2}) do
      H.gradcheck(function(t) return F.softmax(t, d) end, {x})
      H.gradcheck(function(t) return F.log_softmax(t, d) end, {x})
    end
    -- a non-contiguous upstream gradient
    local t = rn64(4, 6)
    t.requires_grad = true
    local y = F.softmax(t, 2)
    local g = rn64(6, 4):t()
    local gx = flame.autograd.grad(y, {t}, {g})[1]
    H.close(gx, y:detach() * (g - (g * y:detach()):sum(2, true)), {atol = 1e-14})
  end)

  it("leaky_relu, elu, softplus, mish against their formulas", function()
    local xs = {-30, -2.5, -0.5, 0.25, 1, 3, 25}
    local x = H.t(xs, {dtype = "f64"})
    local function map(f) local r = {} for i, v in ipairs(xs) do r[i] = f(v) end return r end
    local function sp(v, beta, thr)
      beta, thr = beta or 1, thr or 20
      if v * beta > thr then return v end
      return math.log(1 + math.exp(v * beta)) / beta
    end
    H.close(F.leaky_relu(x), map(function(v) return v > 0 and v or 0.01 * v end), {atol = 1e-15})
    H.close(F.leaky_relu(x, 0.2), map(function(v) return v > 0 and v or 0.2 * v end), {atol = 1e-15})
    H.close(F.elu(x), map(function(v) return v > 0 and v or math.exp(v) - 1 end), {atol = 1e-15})
    H.close(F.elu(x, 0.5), map(function(v) return v > 0 and v or 0.5 * (math.exp(v) - 1) end), {atol = 1e-15})
    H.close(F.softplus(x), map(function(v) return sp(v) end), {atol = 1e-15, rtol = 1e-12})
    H.close(F.softplus(x, 2, 5), map(function(v) return sp(v, 2, 5) end), {atol = 1e-15, rtol = 1e-12})
    H.close(F.mish(x), map(function(v) return v * math.tanh(sp(v)) end), {atol = 1e-14, rtol = 1e-12})
  end)

  it("elu's backward has no NaN where exp would overflow", function()
    local x = H.t({1000, -1}, {dtype = "f32"})
    x.requires_grad = true
    F.elu(x):sum():backward()
    H.close(x.grad, {1, math.exp(-1)}, {rtol = 1e-6})
  end)

  it("gradchecks of the compositions", function()
    local x = flame.tensor({-2.5, -0.7, 0.3, 1.2, 2.2})
    H.gradcheck(function(t) return F.leaky_relu(t, 0.1) end, {x})
    H.gradcheck(function(t) return F.elu(t, 0.7) end, {x})
    H.gradcheck(function(t) return F.softplus(t, 1.5) end, {x})
    H.gradcheck(function(t) return F.mish(t) end, {x})
  end)

  it("errors: unknown options and extra arguments", function()
    H.errors(function() return F.gelu(rn(2), {approx = "tanh"}) end, "gelu: unknown option 'approx'")
    H.errors(function() return F.gelu(rn(2), {approximate = "erf"}) end, 'approximate must be "none" or "tanh"')
    H.errors(function() return F.relu(rn(2), 3) end, "relu: unexpected argument #2")
    H.errors(function() return F.leaky_relu(3) end, "leaky_relu: x must be a tensor, got number")
  end)
end)

local SDPA = F.scaled_dot_product_attention

describe("F.scaled_dot_product_attention", function()
  local function check(qs, ks, vs, opts, ref_opts, tol)
    local q, k, v = rn64(table.unpack(qs)), rn64(table.unpack(ks)), rn64(table.unpack(vs))
    local out = SDPA(q, k, v, opts)
    H.close(out, ref_attention(tab(q), tab(k), tab(v), ref_opts), tol or {atol = 1e-12, rtol = 1e-10})
  end

  it("matches an f64 loop reference: plain, scale, GQA", function()
    check({2, 3, 4, 5}, {2, 3, 6, 5}, {2, 3, 6, 3})
    check({1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}, {scale = 0.3}, {scale = 0.3})
    check({2, 6, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 2}) -- 3 query heads per k/v head
    check({1, 4, 2, 3}, {1, 1, 3, 3}, {1, 1, 3, 3}) -- multi-query
  end)

  it("causal: true is top-left; top_left and bottom_right with Sq ~= Sk", function()
    for _, sh in ipairs({{3, 5}, {5, 3}, {4, 4}}) do
      local sq, sk = sh[1], sh[2]
      check({1, 2, sq, 3}, {1, 2, sk, 3}, {1, 2, sk, 2}, {causal = true}, {causal = "top_left"})
      check({1, 2, sq, 3}, {1, 2, sk, 3}, {1, 2, sk, 2}, {causal = "top_left"}, {causal = "top_left"})
      check({1, 4, sq, 3}, {1, 2, sk, 3}, {1, 2, sk, 2}, {causal = "bottom_right"}, {causal = "bottom_right"})
    end
  end)

  it("bool masks (true = attend) and float masks (added), broadcast, combined with causal", function()
    local bm = H.t({{true, false, true, true}, {false, true, true, false}, {true, true, false, true}})
    check({2, 2, 3, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}, {attn_mask = bm},
      {mask = function(_, _, i, j) return bm[i][j]:item() end})
    local fm = rn64(2, 1, 3, 4)
    local fmt = tab(fm)
    check({2, 2, 3, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}, {attn_mask = fm, causal = "bottom_right"},
      {causal = "bottom_right", mask = function(b, _, i, j) return fmt[b][1][i][j] end})
    local bm4 = flame.rand(2, 2, 3, 4):gt(0.3):to({device = H.device})
    local bt = bm4:cpu():totable()
    check({2, 2, 3, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}, {attn_mask = bm4, causal = true},
      {causal = "top_left", mask = function(b, h, i, j) return bt[b][h][i][j] end})
  end)

  it("masks of any strides; a NaN score propagates to its row only where it is allowed", function()
    local q, k, v = rn64(1, 2, 4, 3), rn64(1, 2, 4, 3), rn64(1, 2, 4, 3)
    local m = flame.rand(4, 4):gt(0.4):to({device = H.device})
    H.close(SDPA(q, k, v, {attn_mask = m:t()}), SDPA(q, k, v, {attn_mask = m:t():contiguous()}), {atol = 0, rtol = 0})
    local kn = k:clone()
    kn[1][1][2][1] = 0 / 0 -- key 2 of head 1 is NaN: every score of that key is NaN
    local allow = H.t({{true, false, true, true}, {true, true, true, true}, {true, false, false, false},
      {false, true, false, false}})
    local out = tab(SDPA(q, kn, v, {attn_mask = allow}))
    for i = 1, 4 do
      local nan = out[1][1][i][1] ~= out[1][1][i][1]
      assert.are.equal(allow[i][2]:item(), nan) -- NaN exactly in the rows that attend to key 2
      assert.is_true(out[1][2][i][1] == out[1][2][i][1]) -- head 2 is untouched
    end
  end)

  it("matches PyTorch 1.13 fixtures (values and gradients of q, k, v)", function()
    for name, c in pairs(fixtures) do
      local q, k, v = H.t(c.q, {dtype = "f64"}), H.t(c.k, {dtype = "f64"}), H.t(c.v, {dtype = "f64"})
      for _, t in ipairs({q, k, v}) do t.requires_grad = true end
      local opts = {causal = c.opts.causal, scale = c.opts.scale}
      if c.mask then opts.attn_mask = H.t(c.mask, c.mask_dtype == "f64" and {dtype = "f64"} or nil) end
      local out = SDPA(q, k, v, opts)
      H.close(out, c.out, {atol = 1e-12, rtol = 1e-10}, name)
      local g = flame.autograd.grad((out * H.t(c.proj, {dtype = "f64"})):sum(), {q, k, v})
      H.close(g[1], c.dq, {atol = 1e-12, rtol = 1e-10}, name .. " dq")
      H.close(g[2], c.dk, {atol = 1e-12, rtol = 1e-10}, name .. " dk")
      H.close(g[3], c.dv, {atol = 1e-12, rtol = 1e-10}, name .. " dv")
    end
  end)

  it("GQA equals SDPA over k/v heads repeated, values and gradients", function()
    local q, k, v = rn64(2, 6, 4, 3), rn64(2, 2, 5, 3), rn64(2, 2, 5, 4)
    local rep = function(t) return t:unsqueeze(3):expand(2, 2, 3, 5, t.shape[4]):reshape(2, 6, 5, t.shape[4]) end
    for _, c in ipairs({false, true, "bottom_right"}) do
      for _, t in ipairs({q, k, v}) do t.requires_grad = true end
      local a = SDPA(q, k, v, {causal = c})
      local b = SDPA(q, rep(k), rep(v), {causal = c})
      H.close(a, b, {atol = 1e-13})
      local proj = rn64(2, 6, 4, 4)
      local ga = flame.autograd.grad((a * proj):sum(), {q, k, v})
      local gb = flame.autograd.grad((b * proj):sum(), {q, k, v})
      for i = 1, 3 do H.close(ga[i], gb[i], {atol = 1e-12}) end
    end
  end)

  it("GQA repeats no k/v: the forward allocates only q * scale, the scores, the probabilities and the output", function()
    local function allocs() return flame.memory_stats("cpu").num_allocs end
    local q, k, v = flame.randn(2, 8, 16, 4), flame.randn(2, 2, 16, 4), flame.randn(2, 2, 16, 4)
    local rep = function(t) return t:unsqueeze(3):expand(2, 2, 4, 16, 4):reshape(2, 8, 16, 4) end
    local kr, vr = rep(k), rep(v)
    local n0 = allocs()
    SDPA(q, k, v)
    local n1 = allocs()
    SDPA(q, kr, vr)
    local n2 = allocs()
    assert.are.equal(4, n1 - n0)
    assert.are.equal(4, n2 - n1)
  end)

  it("a fully masked row gives output 0 and zero gradients, never NaN", function()
    local q, k, v = rn64(1, 2, 3, 4), rn64(1, 2, 4, 4), rn64(1, 2, 4, 4)
    for _, t in ipairs({q, k, v}) do t.requires_grad = true end
    local m = H.t({{true, true, false, false}, {false, false, false, false}, {false, true, false, true}})
    local fm = H.t({{0, 0, 0, 0}, {-math.huge, -math.huge, -math.huge, -math.huge}, {0, 1, 2, 3}}, {dtype = "f64"})
    for _, opts in ipairs({{attn_mask = m}, {attn_mask = fm}}) do
      local out = SDPA(q, k, v, opts)
      H.close(out:select(3, 2), flame.zeros(1, 2, 4, {dtype = "f64"}), {atol = 0, rtol = 0})
      local g = flame.autograd.grad(out:sum(), {q, k, v})
      assert.is_false(g[1]:isnan():any():item() or g[2]:isnan():any():item() or g[3]:isnan():any():item())
      H.close(g[1]:select(3, 2), flame.zeros(1, 2, 4, {dtype = "f64"}), {atol = 0, rtol = 0})
    end
    -- bottom-right with Sq > Sk: the first Sq - Sk rows see no key
    local q2 = rn64(1, 1, 5, 2)
    q2.requires_grad = true
    local out = SDPA(q2, rn64(1, 1, 2, 2), rn64(1, 1, 2, 3), {causal = "bottom_right"})
    H.close(out:narrow(3, 1, 3), flame.zeros(1, 1, 3, 3, {dtype = "f64"}), {atol = 0, rtol = 0})
    local g = flame.autograd.grad(out:sum(), {q2})[1]
    H.close(g:narrow(3, 1, 3), flame.zeros(1, 1, 3, 2, {dtype = "f64"}), {atol = 0, rtol = 0})
    assert.is_false(g:isnan():any():item())
  end)

  it("the masked softmax's causal shift at the integer extremes: every key, or none (no overflow of i + shift)", function()
    local s = rn64(2, 3, 4)
    local all = flame.F._masked_softmax(s, nil, math.maxinteger)
    H.close(all, s:softmax(-1), {atol = 1e-15, rtol = 1e-12})
    H.close(flame.F._masked_softmax(s, nil, 4), all, {atol = 0, rtol = 0})
    local none = flame.F._masked_softmax(s, nil, math.mininteger)
    H.close(none, flame.zeros(2, 3, 4, {dtype = "f64", device = H.device}), {atol = 0, rtol = 0})
    H.close(flame.F._masked_softmax(s, nil, -3), none, {atol = 0, rtol = 0})
  end)

  it("gradcheck of q, k and v (plain, GQA causal bottom-right, bool mask with a dead row) and of a float mask", function()
    H.gradcheck(function(q, k, v) return SDPA(q, k, v) end,
      {flame.randn(1, 2, 3, 2), flame.randn(1, 2, 4, 2), flame.randn(1, 2, 4, 2)})
    H.gradcheck(function(q, k, v) return SDPA(q, k, v, {causal = "bottom_right", scale = 0.8}) end,
      {flame.randn(1, 4, 3, 2), flame.randn(1, 2, 4, 2), flame.randn(1, 2, 4, 3)})
    H.gradcheck(function(q, k, v, m) return SDPA(q, k, v, {attn_mask = m}) end,
      {flame.randn(1, 1, 3, 2), flame.randn(1, 1, 4, 2), flame.randn(1, 1, 4, 2), flame.randn(3, 4)})
    local bm = flame.tensor({{true, false, true, true}, {false, false, false, false}, {true, true, false, true}})
    H.gradcheck(function(q, k, v) return SDPA(q, k, v, {attn_mask = bm:to({device = H.device}), causal = "bottom_right"}) end,
      {flame.randn(1, 2, 3, 2), flame.randn(1, 2, 4, 2), flame.randn(1, 2, 4, 2)})
  end)

  it("dropout: the byte rule's mask over [B, Hq, Sq, Sk], element ((b Hq + h) Sq + q) Sk + k", function()
    local q, k, v = rn64(2, 4, 3, 2), rn64(2, 2, 5, 2), rn64(2, 2, 5, 3)
    local p = 0.4
    flame.manual_seed(77)
    local out = SDPA(q, k, v, {dropout_p = p, causal = true})
    local drop = function(b, h, i, j)
      local idx = (((b - 1) * 4 + (h - 1)) * 3 + (i - 1)) * 5 + (j - 1)
      return keep8(77, 0, idx, p) and 1 / (1 - p) or 0
    end
    H.close(out, ref_attention(tab(q), tab(k), tab(v), {causal = "top_left", drop = drop}), {atol = 1e-12})
    -- one reservation of ceil(2 4 3 5 / 16) = 8 blocks: the next mask starts at block 8
    local after = tab(F._attention_dropout(flame.ones(20, {device = H.device, dtype = "f64"}), 0.5))
    for i = 0, 19 do assert.are.equal(keep8(77, 8, i, 0.5) and 2 or 0, after[i + 1]) end
    -- training = false or dropout_p = 0: no dropout, no counters reserved
    flame.manual_seed(77)
    H.close(SDPA(q, k, v, {dropout_p = p, training = false}), SDPA(q, k, v), {atol = 0, rtol = 0})
    local a = F.dropout(flame.ones(4, {device = H.device}), 0.5)
    flame.manual_seed(77)
    SDPA(q, k, v, {dropout_p = 0})
    H.close(F.dropout(flame.ones(4, {device = H.device}), 0.5), a, {atol = 0, rtol = 0})
  end)

  it("dropout gradcheck with a fixed seed", function()
    H.gradcheck(function(q, k, v)
      flame.manual_seed(8)
      return SDPA(q, k, v, {dropout_p = 0.3})
    end, {flame.randn(1, 2, 3, 2), flame.randn(1, 1, 3, 2), flame.randn(1, 1, 3, 2)})
  end)

  it("empty sequences give an empty or zero result", function()
    local out = SDPA(rn(1, 2, 0, 3), rn(1, 2, 4, 3), rn(1, 2, 4, 5))
    assert.are.same({1, 2, 0, 5}, out.shape)
    H.close(SDPA(rn(1, 2, 3, 3), rn(1, 2, 0, 3), rn(1, 2, 0, 5)), flame.zeros(1, 2, 3, 5))
  end)

  it("errors, with 1-based dims", function()
    local q, k, v = rn(1, 2, 3, 4), rn(1, 2, 5, 4), rn(1, 2, 5, 4)
    H.errors(function() return SDPA(rn(2, 3, 4), k, v) end,
      "scaled_dot_product_attention: q must be 4-D [batch, heads, seq, head_dim], got f32[2, 3, 4]")
    H.errors(function() return SDPA(q, rn(1, 2, 5, 3), v) end, "q and k must have one head_dim (dim 4)")
    H.errors(function() return SDPA(q, k, rn(1, 2, 4, 4)) end, "k and v must have the same heads and seq (dims 2, 3)")
    H.errors(function() return SDPA(q, rn(2, 2, 5, 4), rn(2, 2, 5, 4)) end, "one batch size (dim 1)")
    H.errors(function() return SDPA(rn(1, 3, 3, 4), k, v) end, "the k/v heads (2) must divide the q heads (3) (dim 2)")
    H.errors(function() return SDPA(q, k:double(), v) end, "q and k must have one dtype")
    H.errors(function() return SDPA(q:long(), k, v) end, "q must be a floating-point tensor, got i64[1, 2, 3, 4]")
    H.errors(function() return SDPA(q, k, v, {attn_mask = rn(3, 4)}) end,
      "attn_mask f32[3, 4]", "does not broadcast to [batch, q heads, seq_q, seq_k] = [1, 2, 3, 5]")
    H.errors(function() return SDPA(q, k, v, {attn_mask = flame.ones(3, 5, {dtype = "i64", device = H.device})}) end,
      "attn_mask must be bool (true = attend) or floating-point (added)")
    H.errors(function() return SDPA(q, k, v, {causal = "top"}) end, 'causal must be a boolean, "top_left" or "bottom_right"')
    H.errors(function() return SDPA(q, k, v, {dropout_p = 2}) end, "dropout_p must be a number in [0, 1], got 2")
    H.errors(function() return SDPA(q, k, v, {mask = 1}) end, "unknown option 'mask'")
    H.errors(function() return SDPA(q, k) end, "v must be a tensor, got nil")
    if has_cuda then
      local other = H.device == "cpu" and "cuda" or "cpu"
      H.errors(function() return SDPA(q, k:to({device = other}), v) end, "q and k must be on one device")
      H.errors(function() return SDPA(q, k, v, {attn_mask = flame.ones(3, 5, {dtype = "bool", device = other})}) end,
        "attn_mask must be on q's device")
    end
  end)
end)

local VARLEN = F.flash_attention_varlen

describe("F.flash_attention_varlen", function()
  local function i32(t) return H.t(t, {dtype = "i32"}) end
  -- per-sequence SDPA over the packed rows, concatenated
  local function per_sequence(q, k, v, cq, ck, opts)
    local outs = {}
    for b = 1, #cq - 1 do
      local lq, lk = cq[b + 1] - cq[b], ck[b + 1] - ck[b]
      if lq > 0 then
        local function part(t, s, n) return t:narrow(1, s + 1, n):transpose(1, 2):unsqueeze(1) end
        local o = SDPA(part(q, cq[b], lq), part(k, ck[b], lk), part(v, ck[b], lk), opts)
        outs[#outs + 1] = o:squeeze(1):transpose(1, 2)
      end
    end
    return flame.cat(outs, 1)
  end

  it("equals per-sequence SDPA; causal = true is bottom-right; GQA", function()
    local cq, ck = {0, 3, 4, 8}, {0, 5, 7, 9}
    local q, k, v = rn64(8, 4, 3), rn64(9, 2, 3), rn64(9, 2, 2)
    H.close(VARLEN(q, k, v, i32(cq), i32(ck), 4, 5), per_sequence(q, k, v, cq, ck), {atol = 1e-13})
    H.close(VARLEN(q, k, v, i32(cq), i32(ck), 4, 5, {causal = true}),
      per_sequence(q, k, v, cq, ck, {causal = "bottom_right"}), {atol = 1e-13})
    H.close(VARLEN(q, k, v, i32(cq), i32(ck), 4, 5, {causal = "top_left", scale = 0.5}),
      per_sequence(q, k, v, cq, ck, {causal = "top_left", scale = 0.5}), {atol = 1e-13})
  end)

  it("gradcheck of q, k and v", function()
    local cq, ck = i32({0, 2, 5}), i32({0, 3, 4})
    H.gradcheck(function(q, k, v) return VARLEN(q, k, v, cq, ck, 3, 3, {causal = true}) end,
      {flame.randn(5, 2, 2), flame.randn(4, 1, 2), flame.randn(4, 1, 2)})
  end)

  it("dropout: the byte rule at element ((b H + h) max_seqlen_q + q) max_seqlen_k + k of one reservation", function()
    local cq, ck = {0, 2, 5}, {0, 4, 6}
    local q, k, v = rn64(5, 2, 3), rn64(6, 2, 3), rn64(6, 2, 2)
    local p, mq, mk = 0.5, 3, 4
    flame.manual_seed(13)
    local out = tab(VARLEN(q, k, v, i32(cq), i32(ck), mq, mk, {dropout_p = p}))
    for b = 1, 2 do
      local lq, lk = cq[b + 1] - cq[b], ck[b + 1] - ck[b]
      local function part(t, s, n) return {tab(t:narrow(1, s + 1, n):transpose(1, 2))} end
      local ref = ref_attention(part(q, cq[b], lq), part(k, ck[b], lk), part(v, ck[b], lk), {
        drop = function(_, h, i, j)
          return keep8(13, 0, (((b - 1) * 2 + (h - 1)) * mq + (i - 1)) * mk + (j - 1), p) and 2 or 0
        end})
      for h = 1, 2 do
        for i = 1, lq do
          for d = 1, 2 do
            local got, want = out[cq[b] + i][h][d], ref[1][h][i][d]
            assert(math.abs(got - want) < 1e-12, string.format("seq %d head %d row %d: %g vs %g", b, h, i, got, want))
          end
        end
      end
    end
  end)

  it("empty sequences and a sequence without keys", function()
    local q, k, v = rn64(3, 1, 2), rn64(2, 1, 2), rn64(2, 1, 2)
    local out = VARLEN(q, k, v, i32({0, 0, 2, 3}), i32({0, 1, 2, 2}), 2, 1)
    assert.are.same({3, 1, 2}, out.shape)
    H.close(out:narrow(1, 3, 1), flame.zeros(1, 1, 2, {dtype = "f64"}), {atol = 0, rtol = 0})
  end)

  it("errors: cu_seqlens, max_seqlen, shapes, heads, dtypes, devices", function()
    local q, k, v = rn(5, 2, 4), rn(6, 2, 4), rn(6, 2, 4)
    local cq, ck = i32({0, 2, 5}), i32({0, 3, 6})
    local function call(...) local a = {q, k, v, cq, ck, 3, 3} for i, x in pairs({...}) do a[i] = x end
      return function() return VARLEN(table.unpack(a, 1, 7)) end end
    H.errors(call(nil, nil, nil, i32({0, 3, 2})), "cu_seqlens_q must not decrease, but entry 3 (2) < entry 2 (3)")
    H.errors(call(nil, nil, nil, i32({1, 2, 5})), "cu_seqlens_q must start at 0, got 1")
    H.errors(call(nil, nil, nil, nil, i32({0, 3, 5})), "the last entry of cu_seqlens_k (5) must equal the number of k tokens (6)")
    H.errors(call(nil, nil, nil, H.t({0, 2, 5})), "cu_seqlens_q must be an i32 tensor, got i64[3]")
    H.errors(call(nil, nil, nil, i32({{0, 2, 5}})), "cu_seqlens_q must be 1-D [batch + 1], got i32[1, 3]")
    H.errors(call(nil, nil, nil, nil, nil, 2), "sequence 2 of cu_seqlens_q has length 3 > max_seqlen 2")
    H.errors(call(nil, nil, nil, nil, nil, 1.5), "max_seqlen_q must be a non-negative integer, got 1.5")
    H.errors(call(nil, nil, nil, nil, i32({0, 6}), nil, 6), "cu_seqlens_q and cu_seqlens_k must have one length, got 3 and 2")
    H.errors(call(rn(5, 2, 4, 1)), "q must be 3-D [total_tokens, heads, head_dim], got f32[5, 2, 4, 1]")
    H.errors(call(nil, rn(6, 2, 3)), "q and k must have one head_dim (dim 3)")
    H.errors(call(nil, nil, rn(6, 1, 4)), "k and v must have the same tokens and heads (dims 1, 2)")
    H.errors(call(rn(5, 3, 4)), "the k/v heads (2) must divide the q heads (3) (dim 2)")
    H.errors(call(nil, k:double()), "q and k must have one dtype")
    if H.device == "cpu" and has_cuda then
      H.errors(call(nil, nil, nil, cq:cuda()), "cu_seqlens_q must be on q's device")
    end
  end)
end)

describe("CPU vs CUDA parity (attention family)", function()
  local function both(fn, inputs, dtype, tol)
    local cpu, gpu = {}, {}
    for i, x in ipairs(inputs) do
      cpu[i] = x:to({dtype = dtype}):detach()
      gpu[i] = x:to({dtype = dtype, device = "cuda"}):detach()
      cpu[i].requires_grad, gpu[i].requires_grad = true, true
    end
    flame.manual_seed(99)
    local a = fn(table.unpack(cpu))
    flame.manual_seed(99)
    local b = fn(table.unpack(gpu))
    H.close(b:float():cpu(), a:float(), tol)
    local g = flame.randn(a.shape)
    local ga = flame.autograd.grad((a:float() * g):sum(), cpu)
    local gb = flame.autograd.grad((b:float() * g:cuda()):sum(), gpu)
    for i = 1, #cpu do H.close(gb[i]:float():cpu(), ga[i]:float(), tol) end
  end

  gpu_it("dropout draws the same mask on both devices, every dtype", function()
    for _, drop in ipairs({F.dropout, F._attention_dropout}) do -- the word rule and the attention byte rule
      for _, dt in ipairs({"f32", "f64"}) do
        both(function(x) return drop(x, 0.3) end, {flame.randn(37, 29)}, dt, {atol = 0, rtol = 0})
      end
      for _, dt in ipairs({"bf16", "f16"}) do -- the same mask: the zeros coincide; values round alike
        flame.manual_seed(4)
        local a = drop(flame.ones(1000, {dtype = dt}), 0.5)
        flame.manual_seed(4)
        local b = drop(flame.ones(1000, {dtype = dt, device = "cuda"}), 0.5)
        H.close(b:float():cpu(), a:float(), {atol = 0, rtol = 0})
      end
    end
  end)

  gpu_it("SDPA f32, bf16, f16 (causal, GQA, masks, dropout) and varlen", function()
    local q, k, v = flame.randn(2, 4, 5, 8), flame.randn(2, 2, 7, 8), flame.randn(2, 2, 7, 8)
    local mask = flame.rand(5, 7):gt(0.2)
    local tol = {f32 = {atol = 1e-4, rtol = 1e-4}, bf16 = {atol = 5e-2, rtol = 5e-2}, f16 = {atol = 2e-2, rtol = 2e-2}}
    for _, dt in ipairs({"f32", "bf16", "f16"}) do
      both(function(a, b, c) return SDPA(a, b, c, {causal = "bottom_right"}) end, {q, k, v}, dt, tol[dt])
      both(function(a, b, c) return SDPA(a, b, c, {attn_mask = mask:to({device = a.device}), dropout_p = 0.25}) end,
        {q, k, v}, dt, tol[dt])
      local cq = flame.tensor({0, 4, 9}, {dtype = "i32"})
      local ck = flame.tensor({0, 6, 10}, {dtype = "i32"})
      both(function(a, b, c)
        return VARLEN(a, b, c, cq:to({device = a.device}), ck:to({device = a.device}), 5, 6, {causal = true, dropout_p = 0.2})
      end, {flame.randn(9, 4, 8), flame.randn(10, 2, 8), flame.randn(10, 2, 8)}, dt, tol[dt])
    end
  end)

  gpu_it("the bf16/f16 results on CUDA are close to f32", function()
    local q, k, v = flame.randn(1, 2, 16, 16):cuda(), flame.randn(1, 2, 16, 16):cuda(), flame.randn(1, 2, 16, 16):cuda()
    local ref = SDPA(q, k, v, {causal = true})
    for _, dt in ipairs({"bf16", "f16"}) do
      local o = SDPA(q:to({dtype = dt}), k:to({dtype = dt}), v:to({dtype = dt}), {causal = true})
      H.close(o:float(), ref, {atol = 3e-2, rtol = 3e-2}, dt)
    end
  end)
end)
