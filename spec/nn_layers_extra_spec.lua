-- Embedding's padding_idx and max_norm, the convolutions' padding_mode (reflect, replicate, circular) and string
-- padding ("same", "valid"), and F.pad's circular mode, against PyTorch 1.13 in f64
-- (spec/fixtures/gen_nn_layers_extra.py: the weights and inputs are in the fixture, so both sides compute
-- with the same numbers), plus their reprs and error messages.
local H = require "helper"
local flame = H.flame
local F = flame.F
local nn = flame.nn
local fx = require "fixtures.nn_layers_extra"

local function f64(data) return H.t(data, {dtype = "f64"}) end
local TOL = {atol = 1e-10, rtol = 1e-10}

-- Puts the fixture's weight (and bias) into a module, keeping it a leaf.
local function load(m, w, b)
  flame.no_grad(function()
    m.weight:copy_(f64(w))
    if b then m.bias:copy_(f64(b)) end
  end)
end

describe("nn.Embedding padding_idx and max_norm", function()
  for i, c in ipairs(fx.embedding) do
    it(string.format("case %d (padding_idx %s, max_norm %s, norm_type %s) equals PyTorch's", i,
      tostring(c.padding_idx), tostring(c.max_norm), tostring(c.norm_type)), function()
      local e = nn.Embedding(6, 4, {padding_idx = c.padding_idx, max_norm = c.max_norm, norm_type = c.norm_type,
        dtype = "f64", device = H.device})
      load(e, c.w0)
      local y = e(H.t(c.ids, {dtype = "i64"}))
      H.close(y, c.y, TOL, "output")
      H.close(e.weight, c.w1, TOL, "renormalised weight")
      y:backward(f64(c.g))
      H.close(e.weight.grad, c.grad, TOL, "weight gradient")
      local want = c.repr:gsub("padding_idx=(%d+)", function(n) return "padding_idx=" .. (tonumber(n) + 1) end)
      assert.are.equal(want, tostring(e))
    end)
  end

  it("zeroes the padding row at construction, negative padding_idx counting from the end", function()
    local e = nn.Embedding(5, 3, {padding_idx = -2, device = H.device})
    assert.are.equal(4, e.padding_idx)
    H.close(e.weight[4], {0, 0, 0})
    assert.is_true(e.weight[3]:abs():sum():item() > 0)
  end)

  it("renorms through F.embedding too, leaving unreferenced rows bit-identical", function()
    local w = f64({{3, 4}, {0.3, 0.4}, {6, 8}})
    local y = F.embedding(H.t({1, 1, 2}, {dtype = "i64"}), w, {max_norm = 1})
    H.close(y, {{0.6, 0.8}, {0.6, 0.8}, {0.3, 0.4}}, {atol = 1e-6, rtol = 0})
    H.close(w[3], {6, 8}, {atol = 0, rtol = 0})
  end)

  it("rejects bad options", function()
    H.errors(function() return nn.Embedding(5, 3, {padding_idx = 0}) end,
      "Embedding: padding_idx must be in 1..5 or -5..-1 (1-based), got 0")
    H.errors(function() return nn.Embedding(5, 3, {padding_idx = 6}) end, "padding_idx must be in 1..5")
    H.errors(function() return nn.Embedding(5, 3, {max_norm = "1"}) end, "Embedding: max_norm must be a number")
    H.errors(function() return nn.Embedding(5, 3, {sparse = true}) end, "Embedding: unknown option 'sparse'")
    local w = f64({{1, 2}})
    local ids = H.t({1}, {dtype = "i64"})
    H.errors(function() return F.embedding(ids, w, {max_norm = -1}) end,
      "embedding: max_norm must be a non-negative number, got -1")
    H.errors(function() return F.embedding(ids, w, {max_norm = 1, norm_type = 0}) end,
      "embedding: norm_type must be a positive number, got 0")
  end)

  if H.device == "cpu" then -- on CUDA a bad id is reported by the kernel at the next sync
    it("names embedding when an id is out of range for the renorm", function()
      H.errors(function() return F.embedding(H.t({3}, {dtype = "i64"}), f64({{1, 2}}), {max_norm = 1}) end,
        "embedding (max_norm): ", "out of range")
    end)
  end
end)

describe("nn.Conv padding_mode and string padding", function()
  for i, c in ipairs(fx.conv) do
    it(string.format("case %d: %s", i, c.repr), function()
      local o = {dtype = "f64", device = H.device}
      for k, v in pairs(c.opts) do o[k] = v end
      local m = nn["Conv" .. c.nd .. "d"](c.cin, c.cout, c.k, o)
      load(m, c.weight, c.bias)
      local x = f64(c.x)
      x.requires_grad = true
      local y = m(x)
      H.close(y, c.y, TOL, "output")
      y:backward(f64(c.g))
      H.close(x.grad, c.gx, TOL, "input gradient")
      H.close(m.weight.grad, c.gw, TOL, "weight gradient")
      if c.gb then H.close(m.bias.grad, c.gb, TOL, "bias gradient") end
      assert.are.equal(c.repr, tostring(m))
    end)
  end

  it("rejects what PyTorch rejects", function()
    H.errors(function() return nn.Conv2d(2, 2, 3, {padding_mode = "wrap"}) end,
      "Conv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got wrap")
    H.errors(function() return nn.Conv1d(2, 2, 3, {padding = "same", stride = 2}) end,
      "Conv1d: padding='same' is not supported for strided convolutions")
    H.errors(function() return nn.Conv2d(2, 2, 3, {padding = "full"}) end,
      "Conv2d: padding must be sizes, 'same' or 'valid', got 'full'")
    H.errors(function() return nn.ConvTranspose2d(2, 2, 3, {padding_mode = "reflect"}) end,
      "ConvTranspose2d: only 'zeros' padding_mode is supported, got 'reflect'")
    H.errors(function() return nn.ConvTranspose1d(2, 2, 3, {padding = "same"}) end,
      "ConvTranspose1d: padding must be sizes, got 'same'")
  end)
end)

describe("F.pad circular", function()
  it("equals PyTorch's, forward and backward", function()
    local c = fx.pad_circular
    local x = f64(c.x)
    x.requires_grad = true
    local y = F.pad(x, c.pads, {mode = "circular"})
    H.close(y, c.y, TOL)
    y:backward(f64(c.g))
    H.close(x.grad, c.gx, TOL)
  end)

  it("rejects padding that wraps more than once, a value, and unknown modes", function()
    local x = H.t({{1, 2, 3}})
    H.errors(function() return F.pad(x, {4, 0}, {mode = "circular"}) end,
      "pad: circular padding 4 of dim 2 of i64[1, 3] must be in 0..3")
    H.errors(function() return F.pad(x, {-1, 0}, {mode = "circular"}) end, "circular padding -1 of dim 2")
    H.errors(function() return F.pad(x, {1, 0}, {mode = "circular", value = 2}) end,
      "pad: value is only for mode 'constant'")
    H.errors(function() return F.pad(x, {1}, {mode = "circular"}) end, "pad: circular padding needs an even number")
    H.errors(function() return F.pad(x, {1, 1, 1, 1, 1, 1}, {mode = "circular"}) end,
      "pad: 6 padding values for a 2-D tensor i64[1, 3]")
    H.errors(function() return F.pad(x, {1, 1}, {mode = "wrap"}) end,
      "pad: unknown mode 'wrap' (modes: constant, reflect, replicate, circular)")
  end)
end)
