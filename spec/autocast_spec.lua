-- flame.autocast: which ops run in the autocast dtype (matmul, linear, convolutions, attention), which in f32
-- (softmax, norms, losses), that f64 and integers are left alone, that gradients reach f32 parameters in f32,
-- and that the mode is restored on every exit. Each value is compared with the same computation written with
-- explicit casts, which must be bit-identical.
local H = require "helper"
local flame = H.flame
local F = flame.F

local function randn(...) return flame.randn(...):to(H.device) end
local function leaf(t) t.requires_grad = true; return t end
local function same(a, b, msg)
  assert(a.dtype == b.dtype, (msg or "") .. ": dtype " .. a.dtype .. " vs " .. b.dtype)
  H.close(a:to("f64"), b:to("f64"), {atol = 0, rtol = 0}, msg)
end

describe("flame.autocast", function()
  before_each(function() flame.manual_seed(7) end)

  for _, dt in ipairs({"bf16", "f16"}) do
    it("runs matmul, mm, bmm and linear in " .. dt .. " and keeps the parameters' gradients f32", function()
      local x, w, b = leaf(randn(5, 8)), leaf(randn(6, 8)), leaf(randn(6))
      local y = flame.autocast(dt, F.linear, x, w, b)
      same(y, F.linear(x:to(dt), w:to(dt), b:to(dt)), "linear")
      local a3, b3 = randn(2, 3, 4), randn(2, 4, 5)
      same(flame.autocast(dt, function() return a3:matmul(b3) end), a3:to(dt):matmul(b3:to(dt)), "matmul")
      same(flame.autocast(dt, flame.bmm, a3, b3), flame.bmm(a3:to(dt), b3:to(dt)), "bmm")
      same(flame.autocast(dt, flame.mm, x, w:t()), flame.mm(x:to(dt), w:t():to(dt)), "mm")
      y:float():sum():backward()
      assert.equal("f32", w.grad.dtype)
      assert.equal("f32", b.grad.dtype)
      local gw = w.grad:clone()
      w.grad = nil
      F.linear(x:to(dt), w:to(dt), b:to(dt)):float():sum():backward()
      same(gw, w.grad, "linear weight gradient")
    end)
  end

  it("calls a module directly", function()
    local m = flame.nn.Linear(3, 2):to(H.device)
    local x = randn(4, 3)
    same(flame.autocast("bf16", m, x), F.linear(x:to("bf16"), m.weight:to("bf16"), m.bias:to("bf16")), "module")
  end)

  it("runs the convolutions in bf16", function()
    local x, w, b = randn(2, 3, 7, 7), leaf(randn(4, 3, 3, 3)), leaf(randn(4))
    local y = flame.autocast("bf16", F.conv2d, x, w, b, {padding = 1})
    same(y, F.conv2d(x:to("bf16"), w:to("bf16"), b:to("bf16"), {padding = 1}), "conv2d")
    local xt, wt = randn(1, 3, 5), randn(3, 2, 3)
    same(flame.autocast("bf16", F.conv_transpose1d, xt, wt), F.conv_transpose1d(xt:to("bf16"), wt:to("bf16")),
      "conv_transpose1d")
    y:float():sum():backward()
    assert.equal("f32", w.grad.dtype)
  end)

  it("runs attention in bf16", function()
    local q, k, v = randn(1, 2, 5, 4), randn(1, 2, 6, 4), randn(1, 2, 6, 4)
    local y = flame.autocast("bf16", F.scaled_dot_product_attention, q, k, v)
    same(y, F.scaled_dot_product_attention(q:to("bf16"), k:to("bf16"), v:to("bf16")), "sdpa")
  end)

  it("runs softmax, the norms, cross_entropy, logsumexp and the losses in f32", function()
    local h = randn(4, 6):to("bf16")
    local f = h:float()
    local target, probs = f * 0.5, f:sigmoid()
    local cases = {
      {"softmax", function(t) return F.softmax(t, -1) end},
      {"log_softmax", function(t) return F.log_softmax(t, -1) end},
      {"layer_norm", function(t) return F.layer_norm(t, {6}) end},
      {"rms_norm", function(t) return F.rms_norm(t, {6}) end},
      {"group_norm", function(t) return F.group_norm(t, 2) end},
      {"logsumexp", function(t) return t:logsumexp(2) end},
      {"cross_entropy", function(t) return F.cross_entropy(t, flame.tensor({1, 2, 3, 4}, {dtype = "i64"}):to(H.device)) end},
      {"mse_loss", function(t) return F.mse_loss(t, target) end},
      {"l1_loss", function(t) return F.l1_loss(t, target) end},
      {"smooth_l1_loss", function(t) return F.smooth_l1_loss(t, target) end},
      {"binary_cross_entropy_with_logits", function(t) return F.binary_cross_entropy_with_logits(t, probs) end},
    }
    for _, c in ipairs(cases) do
      local got = flame.autocast("bf16", c[2], h)
      local want = c[2](f)
      assert.equal("f32", got.dtype, c[1])
      same(got, want, c[1])
    end
  end)

  it("leaves f64 and integer tensors alone, and other ops in their own dtype", function()
    local x, w = randn(3, 4):double(), randn(5, 4):double()
    assert.equal("f64", flame.autocast("bf16", F.linear, x, w).dtype)
    assert.equal("f64", flame.autocast("bf16", F.softmax, x, -1).dtype)
    local i = flame.tensor({{1, 2}, {3, 4}}, {dtype = "i64"}):to(H.device)
    assert.equal("i64", flame.autocast("bf16", function() return i:matmul(i) end).dtype)
    local g = flame.autocast("bf16", F.gelu, randn(3))
    assert.equal("f32", g.dtype)
  end)

  it("restores the mode after a return, an error, a nested switch and a closed scope", function()
    assert.is_nil(flame.get_autocast_dtype())
    local inner
    flame.autocast("bf16", function()
      assert.equal("bf16", flame.get_autocast_dtype())
      flame.autocast(false, function() inner = F.linear(randn(2, 3), randn(4, 3)) end)
      assert.equal("bf16", flame.get_autocast_dtype())
    end)
    assert.equal("f32", inner.dtype)
    assert.is_nil(flame.get_autocast_dtype())
    local ok, err = pcall(flame.autocast, "f16", function() error("inside") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("inside", 1, true))
    assert.is_nil(flame.get_autocast_dtype())
    do
      local ac <close> = flame.autocast("bf16")
      assert.equal("bf16", F.linear(randn(2, 3), randn(4, 3)).dtype)
    end
    assert.is_nil(flame.get_autocast_dtype())
  end)

  it("computes the backward in the forward's dtypes even when called inside autocast", function()
    local x, w = randn(2, 3), leaf(randn(4, 3))
    flame.autocast("bf16", function() F.softmax(F.linear(x, w), -1):sum():backward() end)
    assert.equal("f32", w.grad.dtype)
    local g = w.grad:clone()
    w.grad = nil
    F.softmax(F.linear(x:to("bf16"), w:to("bf16")):float(), -1):sum():backward()
    same(g, w.grad, "weight gradient")
  end)

  it("recomputes a checkpointed block under the autocast of its forward", function()
    local w = leaf(randn(6, 6))
    local x = leaf(randn(3, 6))
    local function block(t) return F.gelu(F.linear(t, w)) end
    local y1 = flame.autocast("bf16", block, x)
    y1:float():sum():backward()
    local gw, gx = w.grad:clone(), x.grad:clone()
    w.grad, x.grad = nil, nil
    local y2 = flame.autocast("bf16", flame.utils.checkpoint, block, x)
    same(y2, y1, "checkpointed output")
    y2:float():sum():backward()
    same(w.grad, gw, "checkpointed weight gradient")
    same(x.grad, gx, "checkpointed input gradient")
  end)

  it("rejects bad arguments with clear errors", function()
    H.errors(function() flame.autocast("f32", function() end) end, "autocast: dtype must be \"bf16\" or \"f16\"", "\"f32\"")
    H.errors(function() flame.autocast(16, function() end) end, "autocast: dtype must be", "number")
    H.errors(function() flame.autocast("bf16", 3) end, "autocast: argument 2 must be a function or a callable (a module), got number")
    assert.is_nil(flame.get_autocast_dtype())
  end)
end)
