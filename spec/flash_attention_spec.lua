-- The fused attention (cuda/flash_attention.cu, issue 10) behind F.scaled_dot_product_attention and
-- F.flash_attention_varlen: checked against the reference attention computed in f32 from the same bf16/f16
-- inputs (the reference is itself checked against f64 loops in nn_attention_spec.lua). The fused cases need a
-- CUDA device (pending without one); F.sdpa_backend's answers and the argument errors are device-generic.
local H = require "helper"
local flame = H.flame
local F = flame.F

local cuda = flame.cuda.is_available()
local test = cuda and it or pending
local SDPA, VARLEN = F.scaled_dot_product_attention, F.flash_attention_varlen

-- max |a - b| <= tol * max |b| (+ a floor for all-zero b), and no NaN: a bf16-sized relative error.
local function near(a, b, tol, what)
  local err = (a:float() - b:float()):abs():max():item()
  local mag = b:float():abs():max():item()
  assert(err == err, what .. ": NaN in the fused result")
  assert(err <= tol * mag + 1e-3, string.format("%s: max error %.4g vs max magnitude %.4g (tol %g)", what, err, mag, tol))
end

local function randn_on(shape, dtype) return flame.randn(shape):to({dtype = dtype, device = "cuda"}) end

-- Runs fn on leaves of dtype (the fused path) and on their f32 copies (the reference), with the generator at the
-- same state for both (so dropout draws the same mask), and compares the output and the gradients of q, k, v.
local function compare(fn, shapes, o)
  o = o or {}
  local dt = o.dtype or "bf16"
  local fx, rx = {}, {}
  for i, s in ipairs(shapes) do
    local base = randn_on(s, dt)
    fx[i] = base:detach()
    rx[i] = base:float():detach()
    fx[i].requires_grad, rx[i].requires_grad = true, true
  end
  flame.manual_seed(o.seed or 11)
  local fo = fn(table.unpack(fx))
  flame.manual_seed(o.seed or 11)
  local ro = fn(table.unpack(rx))
  assert.are.equal("FlashAttentionBackward", fo.grad_fn)
  assert.are.equal(dt, fo.dtype)
  near(fo, ro, o.tol or 0.02, (o.what or "") .. " out")
  local proj = randn_on(ro.shape, "f32")
  local fg = flame.autograd.grad((fo:float() * proj):sum(), fx)
  local rg = flame.autograd.grad((ro * proj):sum(), rx)
  for i, name in ipairs({"dq", "dk", "dv"}) do near(fg[i], rg[i], o.gtol or 0.04, (o.what or "") .. " " .. name) end
  return fo, ro, fg, rg
end

describe("F.sdpa_backend", function()
  it("says reference off CUDA, for f32, for unsupported head dims and with an attn_mask", function()
    local q, k, v = flame.randn(1, 2, 5, 64), flame.randn(1, 2, 5, 64), flame.randn(1, 2, 5, 64)
    assert.are.equal("reference", F.sdpa_backend(q, k, v))
    assert.are.equal("reference", F.sdpa_backend(q:to({dtype = "bf16"}), k:to({dtype = "bf16"}), v:to({dtype = "bf16"})))
    H.errors(function() F.sdpa_backend(q, k, v, {nonsense = 1}) end, "sdpa_backend: unknown option 'nonsense'")
  end)

  test("says flash for bf16/f16 on CUDA with head dims 32, 64, 96, 128, causal or not, and varlen", function()
    for _, dt in ipairs({"bf16", "f16"}) do
      for _, d in ipairs({32, 64, 96, 128}) do
        local q, k, v = randn_on({1, 2, 5, d}, dt), randn_on({1, 2, 7, d}, dt), randn_on({1, 2, 7, d}, dt)
        assert.are.equal("flash", F.sdpa_backend(q, k, v))
        assert.are.equal("flash", F.sdpa_backend(q, k, v, {causal = true, dropout_p = 0.1}))
      end
    end
    local q, k, v = randn_on({9, 4, 64}, "bf16"), randn_on({10, 2, 64}, "bf16"), randn_on({10, 2, 64}, "bf16")
    assert.are.equal("flash", F.sdpa_backend(q, k, v))
  end)

  test("says reference on CUDA for f32, head dim 48 or 256, different v head dim, attn_mask, empty", function()
    local function b(sq, dq, dv, dt, opts)
      return F.sdpa_backend(randn_on({1, 2, sq, dq}, dt), randn_on({1, 2, 7, dq}, dt), randn_on({1, 2, 7, dv}, dt), opts)
    end
    assert.are.equal("reference", b(5, 64, 64, "f32"))
    assert.are.equal("reference", b(5, 48, 48, "bf16"))
    assert.are.equal("reference", b(5, 256, 256, "bf16"))
    assert.are.equal("reference", b(5, 64, 32, "bf16"))
    assert.are.equal("reference", b(0, 64, 64, "bf16"))
    local mask = flame.ones(5, 7, {dtype = "bool", device = "cuda"})
    assert.are.equal("reference", b(5, 64, 64, "bf16", {attn_mask = mask}))
  end)

  -- FLAME_FLASH_FWD=sm90 or sm90sync (bench/flash_sm90_check.sh, on the H200) selects one of the Hopper forwards
  -- for head dims 64 and 128; this spec then assumes an sm_90 device, so that the fused cases below really run it.
  test("names the fused forward kernel: sm90 or sm90sync where FLAME_FLASH_FWD selects it, else fa2", function()
    local env = os.getenv("FLAME_FLASH_FWD")
    local hopper = (env == "sm90" or env == "sm90sync") and env or nil
    for _, d in ipairs({32, 64, 96, 128}) do
      local q = randn_on({1, 2, 5, d}, "bf16")
      local path, kernel = F.sdpa_backend(q, q, q, {causal = true})
      assert.are.equal("flash", path)
      assert.are.equal((hopper and (d == 64 or d == 128)) and hopper or "fa2", kernel, "head dim " .. d)
    end
    assert.is_nil(select(2, F.sdpa_backend(randn_on({1, 2, 5, 64}, "f32"), randn_on({1, 2, 5, 64}, "f32"),
      randn_on({1, 2, 5, 64}, "f32"))))
  end)

  test("follows autocast: f32 inputs under bf16 autocast take the fused path", function()
    local q = randn_on({1, 2, 5, 64}, "f32")
    flame.autocast("bf16", function()
      assert.are.equal("flash", F.sdpa_backend(q, q, q))
      assert.are.equal("FlashAttentionBackward", SDPA(q:detach():requires_grad_(), q, q).grad_fn)
    end)
  end)
end)

describe("fused scaled_dot_product_attention", function()
  test("equals the f32 reference, forward and gradients, on odd shapes, bf16 and f16, d 32/64/96/128", function()
    flame.manual_seed(1)
    local cases = {
      {2, 4, 4, 77, 77, 64}, {3, 2, 2, 33, 130, 128}, {1, 3, 3, 200, 65, 64}, {2, 2, 2, 1, 9, 32},
      {1, 2, 2, 129, 128, 96}, {1, 1, 1, 64, 64, 128},
    }
    for _, c in ipairs(cases) do
      local B, Hq, Hk, Sq, Sk, D = table.unpack(c)
      for _, dt in ipairs({"bf16", "f16"}) do
        local what = string.format("%s [%d,%d,%d,%d,%d,%d]", dt, B, Hq, Hk, Sq, Sk, D)
        compare(SDPA, {{B, Hq, Sq, D}, {B, Hk, Sk, D}, {B, Hk, Sk, D}}, {dtype = dt, what = what})
      end
    end
  end)

  -- The kernels compile each tile's body twice (cuda/flash_attention.cu): a general copy for the tiles that need a
  -- mask and an interior copy with none. Interior tiles exist only on long enough sequences: a forward tile is 128
  -- queries by 64 keys, a backward one 128 keys by 64 queries (the cases above reach the backward's interior copy
  -- only at d96). Causal 256 x 256 has interior tiles below the diagonal in both.
  test("interior tiles (no mask): full and causal, d 64 and 128, the forward's and backward's interior copies", function()
    flame.manual_seed(12)
    for _, c in ipairs({{1, 2, 2, 128, 256, 64, false}, {1, 2, 1, 192, 128, 128, false}, {1, 2, 2, 256, 256, 64, true},
      {1, 1, 1, 256, 256, 128, true}}) do
      local B, Hq, Hk, Sq, Sk, D, causal = table.unpack(c)
      compare(function(q, k, v) return SDPA(q, k, v, {causal = causal}) end,
        {{B, Hq, Sq, D}, {B, Hk, Sk, D}, {B, Hk, Sk, D}},
        {what = string.format("interior [%d,%d,%d,%d,%d,%d] causal %s", B, Hq, Hk, Sq, Sk, D, tostring(causal))})
    end
  end)

  test("causal top-left and bottom-right, Sq < Sk and Sq > Sk, with a scale", function()
    flame.manual_seed(2)
    for _, mode in ipairs({true, "top_left", "bottom_right"}) do
      for _, s in ipairs({{70, 150}, {150, 70}, {64, 64}, {1, 100}}) do
        compare(function(q, k, v) return SDPA(q, k, v, {causal = mode, scale = 0.2}) end,
          {{2, 2, s[1], 64}, {2, 2, s[2], 64}, {2, 2, s[2], 64}},
          {what = string.format("causal %s %dx%d", tostring(mode), s[1], s[2])})
      end
    end
  end)

  test("GQA and MQA: shared k/v heads, their gradients summed", function()
    flame.manual_seed(3)
    for _, hk in ipairs({1, 2, 4}) do
      compare(function(q, k, v) return SDPA(q, k, v, {causal = true}) end, {{2, 8, 90, 64}, {2, hk, 90, 64}, {2, hk, 90, 64}},
        {what = "GQA Hk=" .. hk})
      compare(SDPA, {{1, 8, 33, 128}, {1, hk, 97, 128}, {1, hk, 97, 128}}, {what = "GQA d128 Hk=" .. hk})
    end
  end)

  -- Sequences over several of the Hopper forward's tiles (128 query rows of two warpgroups, 128-key tiles): key
  -- tiles beyond the first, a last partial one, the causal diagonal crossing tiles, query tiles past the first.
  test("longer sequences: several 128-row and 128-key tiles, causal both ways, GQA, d 64/128, bf16 and f16", function()
    flame.manual_seed(12)
    for _, dt in ipairs({"bf16", "f16"}) do
      for _, d in ipairs({64, 128}) do
        for _, mode in ipairs({false, "top_left", "bottom_right"}) do
          compare(function(q, k, v) return SDPA(q, k, v, {causal = mode}) end,
            {{1, 2, 300, d}, {1, 2, 520, d}, {1, 2, 520, d}},
            {dtype = dt, what = string.format("%s d%d causal %s 300x520", dt, d, tostring(mode))})
        end
      end
      compare(function(q, k, v) return SDPA(q, k, v, {causal = "bottom_right"}) end,
        {{2, 4, 517, 128}, {2, 1, 260, 128}, {2, 1, 260, 128}}, {dtype = dt, what = dt .. " GQA 517x260 bottom_right"})
    end
    compare(function(q, k, v) return SDPA(q, k, v, {dropout_p = 0.15, causal = true}) end,
      {{1, 2, 384, 128}, {1, 2, 384, 128}, {1, 2, 384, 128}}, {what = "dropout 384 (aligned)", seed = 13})
    compare(function(q, k, v) return SDPA(q, k, v, {dropout_p = 0.15}) end,
      {{2, 2, 140, 64}, {2, 2, 333, 64}, {2, 2, 333, 64}}, {what = "dropout 140x333", seed = 14})
  end)

  test("dropout: the same seed draws the reference's mask (causal, GQA too), training = false drops nothing", function()
    flame.manual_seed(4)
    local fo = compare(function(q, k, v) return SDPA(q, k, v, {dropout_p = 0.2}) end,
      {{2, 4, 77, 64}, {2, 4, 100, 64}, {2, 4, 100, 64}}, {what = "dropout", seed = 5})
    compare(function(q, k, v) return SDPA(q, k, v, {dropout_p = 0.5, causal = "bottom_right"}) end,
      {{1, 4, 130, 128}, {1, 2, 70, 128}, {1, 2, 70, 128}}, {what = "dropout causal GQA", seed = 6})
    -- Sk % 16 == 0: every run of 16 keys is one Philox block (the kernels' aligned case), two key tiles
    compare(function(q, k, v) return SDPA(q, k, v, {dropout_p = 0.1, causal = true}) end,
      {{2, 4, 192, 64}, {2, 2, 256, 64}, {2, 2, 256, 64}}, {what = "dropout Sk % 16 == 0", seed = 7})
    -- a different seed gives a different output (the mask is applied at all)
    local q, k, v = randn_on({1, 2, 40, 64}, "bf16"), randn_on({1, 2, 40, 64}, "bf16"), randn_on({1, 2, 40, 64}, "bf16")
    flame.manual_seed(1)
    local a = SDPA(q, k, v, {dropout_p = 0.3})
    flame.manual_seed(2)
    local b = SDPA(q, k, v, {dropout_p = 0.3})
    assert.is_true((a:float() - b:float()):abs():max():item() > 0.05)
    local plain = SDPA(q, k, v)
    H.close(SDPA(q, k, v, {dropout_p = 0.3, training = false}):float():cpu(), plain:float():cpu(), {atol = 0, rtol = 0})
    assert.is_truthy(fo)
  end)

  -- The fused kernels' keep bits read out exactly: q = 0 makes every probability 1 / Sk, and v = the first Sk rows
  -- of the identity puts key j's dropped-out probability in output column j, so out[b, h, i, j] != 0 iff the mask
  -- keeps (b, h, i, j); with dO = the first Sq rows of the identity, dV[b, h, j, i] = Z[i, j] likewise reads the
  -- backward's bits. Both against the byte rule re-derived in Lua from the Philox stream (spec/ref.lua). Sk % 16 == 0
  -- (one Philox block per 16 keys) and not (runs straddling blocks), one and two key tiles, MT = 2 query tiles.
  test("dropout: the forward's and the backward's keep bits are the byte rule's, element for element", function()
    local R = require "ref"
    for _, c in ipairs({{Sq = 64, Sk = 64, D = 64}, {Sq = 130, Sk = 128, D = 128}, {Sq = 64, Sk = 40, D = 64},
      {Sq = 100, Sk = 100, D = 128}, {Sq = 77, Sk = 112, D = 128}}) do
      local B, Hh, p, seed = 2, 2, 0.3, 31
      local eye = flame.eye(c.D, {device = "cuda"})
      local q = flame.zeros({B, Hh, c.Sq, c.D}, {dtype = "bf16", device = "cuda"})
      local v = (flame.zeros({B, Hh, c.Sk, c.D}, {device = "cuda"}) + eye:narrow(1, 1, c.Sk)):to({dtype = "bf16"})
      v.requires_grad = true
      flame.manual_seed(seed)
      local k = flame.zeros({B, Hh, c.Sk, c.D}, {dtype = "bf16", device = "cuda"})
      local out = SDPA(q, k, v, {dropout_p = p})
      assert.are.equal("flash", F.sdpa_backend(q, k, v, {dropout_p = p}))
      local dO = eye:narrow(1, 1, math.min(c.Sq, c.D))
      if c.Sq > c.D then dO = flame.cat({dO, flame.zeros({c.Sq - c.D, c.D}, {device = "cuda"})}, 1) end
      local dv = flame.autograd.grad((out:float() * dO):sum(), {v})[1]
      local o, g = out:float():cpu():totable(), dv:float():cpu():totable()
      local bad = 0
      for b = 1, B do
        for h = 1, Hh do
          for i = 1, c.Sq do
            for j = 1, c.Sk do
              local idx = (((b - 1) * Hh + (h - 1)) * c.Sq + (i - 1)) * c.Sk + (j - 1)
              local want = R.dropout_keep_byte(seed, 0, idx, p)
              if (o[b][h][i][j] ~= 0) ~= want then bad = bad + 1 end
              if i <= c.D and (g[b][h][j][i] ~= 0) ~= want then bad = bad + 1 end
            end
          end
        end
      end
      assert(bad == 0, string.format("Sq %d Sk %d D %d: %d keep bits differ from the byte rule", c.Sq, c.Sk, c.D, bad))
    end
  end)

  test("fully masked rows (bottom-right causal, Sq > Sk) give output 0, zero gradients and no NaN", function()
    flame.manual_seed(5)
    local fo, _, fg = compare(function(q, k, v) return SDPA(q, k, v, {causal = "bottom_right"}) end,
      {{1, 2, 100, 64}, {1, 2, 40, 64}, {1, 2, 40, 64}}, {what = "masked rows"})
    -- rows 0 .. 59 (1-based 1 .. 60) have no allowed key
    local dead = fo:narrow(3, 1, 60):float()
    assert.are.equal(0, dead:abs():max():item())
    assert.are.equal(0, fg[1]:narrow(3, 1, 60):float():abs():max():item())
    for i = 1, 3 do
      local g = fg[i]:float()
      assert.is_true(g:eq(g):all():item(), "NaN in a gradient")
    end
  end)

  test("strided q/k/v (views of one fused qkv projection) need no copy by the caller", function()
    flame.manual_seed(6)
    local qkv = randn_on({2, 50, 3, 4, 64}, "bf16") -- [B, S, 3, H, D]
    local function views(t) return t:select(3, 1):transpose(2, 3), t:select(3, 2):transpose(2, 3), t:select(3, 3):transpose(2, 3) end
    local q, k, v = views(qkv)
    local o = SDPA(q, k, v, {causal = true})
    local r = SDPA(q:float(), k:float(), v:float(), {causal = true})
    near(o, r, 0.02, "strided")
  end)
end)

-- Sequence lengths for the varlen cases: many short and a few long, some empty.
local function cu_of(lens)
  local c = {0}
  for i, l in ipairs(lens) do c[i + 1] = c[i] + l end
  return flame.tensor(c, {dtype = "i32", device = "cuda"}), c
end
local function maxof(lens)
  local m = 0
  for _, l in ipairs(lens) do m = math.max(m, l) end
  return m
end

describe("fused flash_attention_varlen", function()
  local lq = {1, 3, 17, 64, 65, 130, 5, 2, 300, 7, 0, 33}
  local lk = {2, 3, 15, 64, 70, 129, 5, 9, 250, 7, 4, 33}

  test("equals the reference (per sequence), forward and gradients, causal both ways, GQA", function()
    flame.manual_seed(7)
    local cq, tq = cu_of(lq)
    local ck, tk = cu_of(lk)
    local mq, mk = maxof(lq), maxof(lk)
    for _, causal in ipairs({false, true, "top_left"}) do
      for _, hk in ipairs({4, 2}) do
        compare(function(q, k, v) return VARLEN(q, k, v, cq, ck, mq, mk, {causal = causal}) end,
          {{tq[#tq], 4, 64}, {tk[#tk], hk, 64}, {tk[#tk], hk, 64}}, {what = "varlen causal " .. tostring(causal) .. " Hk " .. hk})
      end
    end
    compare(function(q, k, v) return VARLEN(q, k, v, cq, ck, mq + 5, mk + 70, {causal = true}) end,
      {{tq[#tq], 2, 128}, {tk[#tk], 2, 128}, {tk[#tk], 2, 128}}, {what = "varlen d128, loose max_seqlen"})
  end)

  test("with dropout: the reference's mask over [nseq, H, max_seqlen_q, max_seqlen_k]", function()
    flame.manual_seed(8)
    local cq, tq = cu_of(lq)
    local ck, tk = cu_of(lk)
    compare(function(q, k, v) return VARLEN(q, k, v, cq, ck, maxof(lq), maxof(lk), {causal = true, dropout_p = 0.25}) end,
      {{tq[#tq], 4, 64}, {tk[#tk], 2, 64}, {tk[#tk], 2, 64}}, {what = "varlen dropout", seed = 9})
    -- max_seqlen_k a multiple of 16 (loose): the aligned case of the [nseq, H, max_q, max_k] index
    compare(function(q, k, v) return VARLEN(q, k, v, cq, ck, maxof(lq), 256, {dropout_p = 0.25}) end,
      {{tq[#tq], 4, 64}, {tk[#tk], 4, 64}, {tk[#tk], 4, 64}}, {what = "varlen dropout max_k 256", seed = 10})
  end)

  test("equals a loop of dense calls, one per sequence", function()
    flame.manual_seed(9)
    local cq, tq = cu_of(lq)
    local ck, tk = cu_of(lk)
    local q, k, v = randn_on({tq[#tq], 4, 64}, "bf16"), randn_on({tk[#tk], 4, 64}, "bf16"), randn_on({tk[#tk], 4, 64}, "bf16")
    local o = VARLEN(q, k, v, cq, ck, maxof(lq), maxof(lk), {causal = true})
    for b = 1, #lq do
      if lq[b] > 0 then
        local function part(t, s, n) return t:narrow(1, s + 1, n):transpose(1, 2):unsqueeze(1):float() end
        local ob = o:narrow(1, tq[b] + 1, lq[b]):transpose(1, 2):unsqueeze(1)
        local rb = SDPA(part(q, tq[b], lq[b]), part(k, tk[b], lk[b]), part(v, tk[b], lk[b]), {causal = "bottom_right"})
        near(ob, rb, 0.02, "sequence " .. b)
      end
    end
  end)
end)

describe("fused attention memory", function()
  test("a 16k sequence forward + backward stays O(S): the peak grows by far less than one S x S matrix", function()
    local exe = os.getenv("FLAME_LUA") or "build/flame-lua"
    -- a child process: its allocator's peak starts from nothing, so the peak measures this call alone
    local script = [[
      local flame = require "flame"
      local F = flame.F
      local S = 16384
      local q = flame.randn(1, 4, S, 64, {device = "cuda"}):to({dtype = "bf16"}):requires_grad_()
      local k = flame.randn(1, 4, S, 64, {device = "cuda"}):to({dtype = "bf16"}):requires_grad_()
      local v = flame.randn(1, 4, S, 64, {device = "cuda"}):to({dtype = "bf16"}):requires_grad_()
      flame.cuda.synchronize()
      local base = flame.cuda.memory_stats().allocated
      local o = F.scaled_dot_product_attention(q, k, v, {causal = true})
      o:sum():backward()
      flame.cuda.synchronize()
      local s = flame.cuda.memory_stats()
      local g = q.grad:float()
      print(string.format("PEAK %d BASE %d FINITE %s BACKEND %s", s.peak - base, base, tostring(g:eq(g):all():item()),
        F.sdpa_backend(q, k, v)))
    ]]
    local p = assert(io.popen("'" .. exe .. "' -e '" .. script:gsub("'", "'\\''") .. "' 2>&1", "r"))
    local out = p:read("*a")
    p:close()
    local peak = tonumber(out:match("PEAK (%d+)"))
    assert(peak, "the child printed: " .. out)
    assert.is_truthy(out:find("FINITE true", 1, true), out)
    assert.is_truthy(out:find("BACKEND flash", 1, true), out)
    -- one S x S bf16 score matrix per head is 2 GiB here; the fused path needs O(S) (tens of MiB)
    assert(peak < 256 * 2 ^ 20, string.format("peak grew by %.1f MiB", peak / 2 ^ 20))
  end)
end)

describe("attention argument errors (fused and reference alike)", function()
  local dev = cuda and "cuda" or H.device
  local dt = cuda and "bf16" or "f32"
  local function r(...) return flame.randn(...):to({dtype = dt, device = dev}) end
  local function cu(t, dtype) return flame.tensor(t, {dtype = dtype or "i32", device = dev}) end

  it("bad cu_seqlens: decreasing, wrong last entry, wrong dtype, wrong length, too long for max_seqlen", function()
    local q, k, v = r(9, 4, 64), r(10, 2, 64), r(10, 2, 64)
    local ck = cu({0, 6, 10})
    H.errors(function() VARLEN(q, k, v, cu({0, 5, 4, 9}), cu({0, 6, 8, 10}), 5, 6) end,
      "cu_seqlens_q must not decrease, but entry 3 (4) < entry 2 (5)")
    H.errors(function() VARLEN(q, k, v, cu({0, 4, 8}), ck, 5, 6) end,
      "the last entry of cu_seqlens_q (8) must equal the number of q tokens (9)")
    H.errors(function() VARLEN(q, k, v, cu({0, 4, 9}, "i64"), ck, 5, 6) end, "cu_seqlens_q must be an i32 tensor")
    H.errors(function() VARLEN(q, k, v, cu({0, 4, 9}), cu({0, 3, 6, 10}), 5, 6) end,
      "cu_seqlens_q and cu_seqlens_k must have one length, got 3 and 4")
    H.errors(function() VARLEN(q, k, v, cu({0, 4, 9}), ck, 4, 6) end,
      "sequence 2 of cu_seqlens_q has length 5 > max_seqlen 4")
    H.errors(function() VARLEN(q, k, v, cu({0, 4, 9}), ck, 5, 5) end,
      "sequence 1 of cu_seqlens_k has length 6 > max_seqlen 5")
  end)

  test("cu_seqlens on another device than q", function()
    local q, k, v = r(9, 4, 64), r(10, 2, 64), r(10, 2, 64)
    H.errors(function() VARLEN(q, k, v, flame.tensor({0, 4, 9}, {dtype = "i32"}), cu({0, 6, 10}), 5, 6) end,
      "cu_seqlens_q must be on q's device")
  end)

  it("mismatched head dims and heads that GQA cannot divide", function()
    H.errors(function() SDPA(r(1, 4, 5, 64), r(1, 4, 5, 32), r(1, 4, 5, 32)) end, "q and k must have one head_dim")
    H.errors(function() SDPA(r(1, 6, 5, 64), r(1, 4, 5, 64), r(1, 4, 5, 64)) end,
      "the k/v heads (4) must divide the q heads (6)")
    H.errors(function() VARLEN(r(9, 4, 64), r(10, 2, 32), r(10, 2, 32), cu({0, 4, 9}), cu({0, 6, 10}), 5, 6) end,
      "q and k must have one head_dim")
    H.errors(function() VARLEN(r(9, 3, 64), r(10, 2, 64), r(10, 2, 64), cu({0, 4, 9}), cu({0, 6, 10}), 5, 6) end,
      "the k/v heads (2) must divide the q heads (3)")
  end)

  it("the fused entry itself refuses what it cannot run (never a CPU fallback) and bad arguments", function()
    local q = flame.randn(1, 2, 5, 64, {dtype = "f32"})
    H.errors(function() F._flash_attention(q, q, q, nil, nil, 0, 0, 0.125, 0, 0) end,
      "scaled_dot_product_attention: no fused attention for q f32[1, 2, 5, 64] on cpu")
    H.errors(function() F._flash_attention(q, q, q, nil, nil, 0, 0, 0.125, 3, 0) end, "causal must be 0, 1 or 2, got 3")
    H.errors(function() F._flash_attention(q, q, q, nil, nil, 0, 0, 0.125, 0, 1.5) end, "dropout_p must be in [0, 1], got 1.5")
    H.errors(function() F._flash_attention(q, flame.randn(1, 3, 5, 64), q, nil, nil, 0, 0, 0.125, 0, 0) end,
      "k and v must have one shape")
    local q3 = flame.randn(9, 2, 64)
    H.errors(function() F._flash_attention(q3, q3, q3, flame.tensor({0, 9}, {dtype = "i32"}), nil, 9, 9, 0.125, 0, 0) end,
      "cu_seqlens_q and cu_seqlens_k must both be given")
    H.errors(function()
      F._flash_attention(q3, q3, q3, flame.tensor({0, 9}, {dtype = "i64"}), flame.tensor({0, 9}, {dtype = "i32"}), 9, 9,
        0.125, 0, 0)
    end, "cu_seqlens_q must be an i32 tensor [batch + 1]")
  end)
end)
