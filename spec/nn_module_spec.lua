-- flame.nn modules: the Module base (registration, PyTorch names, state dicts, modes, to, zero_grad,
-- apply, repr), every layer's forward against flame.F, whole models against PyTorch 1.13 fixtures
-- (spec/fixtures/gen_nn_module.py: same weights loaded into both, same outputs, same names and reprs),
-- flame.nn.init's bounds and fan math, and the error messages.
local H = require "helper"
local flame = H.flame
local F = flame.F
local nn = flame.nn
local fx = require "fixtures.nn_module"

local function f64(data) return H.t(data, {dtype = "f64"}) end
local function rn(...)
  local shape = type(...) == "table" and ... or {...}
  return flame.randn(shape, {dtype = "f64", device = H.device})
end

-- A state dict of the fixture's nested tables as f64 tensors on the device under test.
local function sd_of(t)
  local sd = {}
  for k, v in pairs(t) do sd[k] = f64(v) end
  return sd
end

local function names(iter_fn)
  local out = {}
  for n in iter_fn do out[#out + 1] = n end
  return out
end

-- The structure of gen_nn_module.py's Net, written with flame.nn.
local Block = nn.Module:extend("Block")
function Block:__init()
  self.norm = nn.LayerNorm(8)
  self.attn = nn.MultiheadAttention(8, 2, {batch_first = true})
  self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU({approximate = "tanh"}), nn.Linear(16, 8))
end

local Net = nn.Module:extend("Net")
function Net:__init()
  self.embed = nn.Embedding(10, 8)
  self.blocks = nn.ModuleList({Block(), Block()})
  self.heads = nn.ModuleDict({a = nn.Linear(8, 3), b = nn.Linear(8, 2, {bias = false})})
  self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, {padding = 1}), nn.GroupNorm(2, 4), nn.SiLU(),
    nn.ConvTranspose2d(4, 2, 2, {stride = 2}), nn.ReLU(),
    nn.Upsample({scale_factor = 2, mode = "bilinear", align_corners = false}), nn.Identity(), nn.Flatten())
  self:register_buffer("scale", flame.tensor({0.5, 2.0}))
end
function Net:forward(ids, img)
  local h = self.embed(ids)
  local L = ids:size(2)
  local mask = flame.ones(L, L, {dtype = "bool", device = ids.device}):triu(1) -- true: not allowed
  for _, b in ipairs(self.blocks) do
    local x = b.norm(h)
    h = h + b.attn(x, x, x, {attn_mask = mask})
    h = h + b.mlp(h)
  end
  return self.heads.a(h), self.heads.b(h) * self.scale, self.conv(img)
end

-- PyTorch's repr with flame's two documented differences: MultiheadAttention's out_proj is a Linear,
-- and Flatten's dims are 1-based.
local function torch_repr(s)
  return (s:gsub("NonDynamicallyQuantizableLinear", "Linear"):gsub("Flatten%(start_dim=1,", "Flatten(start_dim=2,"))
end

describe("nn.Module against PyTorch", function()
  it("names parameters, buffers and state dict keys as PyTorch, in its order", function()
    local net = Net()
    assert.are.same(fx.net.param_names, names(net:named_parameters()))
    assert.are.same(fx.net.buffer_names, names(net:named_buffers()))
    assert.are.same(fx.net.state_keys, net:state_dict_keys())
    local sd, n = net:state_dict(), 0
    for k in pairs(sd) do n = n + 1; assert.is_true(flame.is_tensor(sd[k])) end
    assert.are.equal(#fx.net.state_keys, n)
    assert.are.equal(fx.net.num_parameters, net:num_parameters())
    assert.are.equal(#fx.net.param_names, #net:parameters())
  end)

  it("prints as PyTorch's repr", function()
    assert.are.equal(torch_repr(fx.net.repr), tostring(Net()))
    assert.are.equal(torch_repr(fx.mha_kv.repr), tostring(nn.MultiheadAttention(6, 3, {kdim = 4, vdim = 5})))
    assert.are.equal(fx.conv.repr3, tostring(nn.Conv3d(2, 4, {2, 3, 1}, {stride = {1, 2, 1}, padding = {1, 0, 0},
      groups = 2})))
    assert.are.equal(fx.conv.repr1, tostring(nn.Conv1d(3, 6, 3, {stride = 2, padding = 2, dilation = 2, groups = 3,
      bias = false})))
    assert.are.equal(fx.conv.repr_t, tostring(nn.ConvTranspose2d(4, 2, 3, {stride = 2, padding = 1,
      output_padding = 1, bias = false})))
    local r = fx.reprs
    assert.are.equal(r.ln, tostring(nn.LayerNorm({4, 5}, {eps = 1e-6, elementwise_affine = false})))
    assert.are.equal(r.gn, tostring(nn.GroupNorm(3, 6, {affine = false})))
    assert.are.equal(r.drop, tostring(nn.Dropout(0.25)))
    assert.are.equal(r.up, tostring(nn.Upsample({size = {4, 6}, mode = "bilinear"})))
    assert.are.equal(r.emb, tostring(nn.Embedding(7, 3)))
    assert.are.equal(r.seq, tostring(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Identity()))))
  end)

  it("gives PyTorch's outputs with PyTorch's weights (embedding, attention, MLP, heads, conv stack)", function()
    local net = Net():to({dtype = "f64", device = H.device}):eval()
    local res = net:load_state_dict(sd_of(fx.net.state))
    assert.are.same({}, res.missing_keys)
    assert.are.same({}, res.unexpected_keys)
    local ya, yb, yc = net(H.t(fx.net.ids, {dtype = "i64"}), f64(fx.net.img))
    H.close(ya, fx.net.ya, {atol = 1e-10, rtol = 1e-9})
    H.close(yb, fx.net.yb, {atol = 1e-10, rtol = 1e-9})
    H.close(yc, fx.net.yc, {atol = 1e-10, rtol = 1e-9})
  end)

  it("MultiheadAttention with kdim/vdim, sequence-first, key_padding_mask and averaged weights", function()
    local c = fx.mha_kv
    local m = nn.MultiheadAttention(6, 3, {kdim = 4, vdim = 5, batch_first = false}):to({dtype = "f64",
      device = H.device})
    assert.are.same(c.state_keys, m:state_dict_keys())
    m:load_state_dict(sd_of(c.state))
    local out, w = m(f64(c.q), f64(c.k), f64(c.v), {key_padding_mask = H.t(c.kpm, {dtype = "bool"}),
      need_weights = true})
    H.close(out, c.out, {atol = 1e-10, rtol = 1e-9})
    H.close(w, c.weights, {atol = 1e-10, rtol = 1e-9})
    -- the fused path (no weights) gives the same output
    local out2, none = m(f64(c.q), f64(c.k), f64(c.v), {key_padding_mask = H.t(c.kpm, {dtype = "bool"})})
    assert.is_nil(none)
    H.close(out2, c.out, {atol = 1e-10, rtol = 1e-9})
  end)

  it("MultiheadAttention without bias, a float attn_mask and per-head weights", function()
    local c = fx.mha_float
    local m = nn.MultiheadAttention(4, 2, {bias = false}):to({dtype = "f64", device = H.device})
    assert.are.same(c.state_keys, m:state_dict_keys())
    m:load_state_dict(sd_of(c.state))
    local x = f64(c.x)
    local out, w = m(x, x, x, {attn_mask = f64(c.mask), need_weights = true, average_attn_weights = false})
    H.close(out, c.out, {atol = 1e-10, rtol = 1e-9})
    H.close(w, c.weights, {atol = 1e-10, rtol = 1e-9})
    H.close(m(x, x, x, {attn_mask = f64(c.mask)}), c.out, {atol = 1e-10, rtol = 1e-9})
  end)

  it("MultiheadAttention's dropout draws the attention mask whether or not it returns the weights", function()
    local m = nn.MultiheadAttention(4, 2, {dropout = 0.4}):to({dtype = "f64", device = H.device})
    local x = flame.randn(2, 5, 4):to({dtype = "f64", device = H.device})
    flame.manual_seed(12)
    local a = m(x, x, x)
    flame.manual_seed(12)
    local b = m(x, x, x, {need_weights = true})
    H.close(b, a, {atol = 1e-12})
    flame.manual_seed(13)
    assert((m(x, x, x) - a):abs():max():item() > 1e-6, "another seed, another mask")
    m:eval()
    H.close(m(x, x, x), m(x, x, x, {need_weights = true}), {atol = 1e-12})
  end)

  it("Conv1d and Conv3d with stride, padding, dilation and groups", function()
    local c = fx.conv
    local c3 = nn.Conv3d(2, 4, {2, 3, 1}, {stride = {1, 2, 1}, padding = {1, 0, 0}, groups = 2, dtype = "f64",
      device = H.device})
    local c1 = nn.Conv1d(3, 6, 3, {stride = 2, padding = 2, dilation = 2, groups = 3, bias = false, dtype = "f64",
      device = H.device})
    c3:load_state_dict(sd_of(c.c3))
    c1:load_state_dict(sd_of(c.c1))
    H.close(c3(f64(c.x3)), c.y3, {atol = 1e-10, rtol = 1e-9})
    H.close(c1(f64(c.x1)), c.y1, {atol = 1e-10, rtol = 1e-9})
  end)
end)

describe("nn layers against flame.F", function()
  local o = H.opts({dtype = "f64"})
  it("Linear, convolutions and transposed convolutions", function()
    local x = rn(3, 4)
    local l = nn.Linear(4, 5, o)
    H.close(l(x), F.linear(x, l.weight, l.bias))
    assert.are.same({5, 4}, l.weight.shape)
    local nb = nn.Linear(4, 5, {bias = false, dtype = "f64", device = H.device})
    assert.is_nil(nb.bias)
    H.close(nb(x), x:matmul(nb.weight:t()))
    local c = nn.Conv2d(4, 6, {3, 2}, {stride = 2, padding = {1, 0}, dilation = {1, 2}, groups = 2, dtype = "f64",
      device = H.device})
    assert.are.same({6, 2, 3, 2}, c.weight.shape)
    local xi = rn(2, 4, 7, 8)
    H.close(c(xi), F.conv2d(xi, c.weight, c.bias, {stride = 2, padding = {1, 0}, dilation = {1, 2}, groups = 2}))
    for nd = 1, 3 do
      local ct = nn["ConvTranspose" .. nd .. "d"](4, 6, 2, {stride = 2, groups = 2, dtype = "f64", device = H.device})
      local w = {4, 3}
      for _ = 1, nd do w[#w + 1] = 2 end
      assert.are.same(w, ct.weight.shape)
      local shape = {1, 4}
      for _ = 1, nd do shape[#shape + 1] = 3 end
      local xt = rn(shape)
      H.close(ct(xt), F["conv_transpose" .. nd .. "d"](xt, ct.weight, ct.bias, {stride = 2, groups = 2}))
    end
  end)

  it("norms, embedding and activations", function()
    local x = rn(2, 4, 3, 3)
    local ln = nn.LayerNorm({3, 3}, o)
    ln.weight.requires_grad = false
    flame.no_grad(function() ln.weight:normal_(); ln.bias:normal_() end)
    H.close(ln(x), F.layer_norm(x, {3, 3}, ln.weight, ln.bias, 1e-5))
    local gn = nn.GroupNorm(2, 4, {eps = 1e-3, dtype = "f64", device = H.device})
    H.close(gn(x), F.group_norm(x, 2, gn.weight, gn.bias, 1e-3))
    local rms = nn.RMSNorm(3, o)
    H.close(rms(x), F.rms_norm(x, {3}, rms.weight, 2.220446049250313e-16))
    local rms2 = nn.RMSNorm({3, 3}, {eps = 1e-2, elementwise_affine = false})
    assert.is_nil(rms2.weight)
    H.close(rms2(x), F.rms_norm(x, {3, 3}, nil, 1e-2))
    local e = nn.Embedding(5, 3, o)
    local ids = H.t({{1, 5}, {2, 2}}, {dtype = "i64"})
    H.close(e(ids), F.embedding(ids, e.weight))
    H.close(nn.ReLU()(x), x:relu())
    H.close(nn.GELU()(x), x:gelu())
    H.close(nn.GELU({approximate = "tanh"})(x), x:gelu("tanh"))
    H.close(nn.SiLU()(x), x:silu())
    H.close(nn.Identity()(x), x)
    assert.are.same({2, 36}, nn.Flatten()(x).shape)
    assert.are.same({2, 4, 9}, nn.Flatten(3)(x).shape)
    H.close(nn.Upsample({scale_factor = 2})(x), F.interpolate(x, {scale_factor = 2}))
    H.close(nn.Upsample({size = {4, 5}, mode = "bilinear", align_corners = true})(x),
      F.interpolate(x, {size = {4, 5}, mode = "bilinear", align_corners = true}))
  end)

  it("Dropout follows train() and eval()", function()
    local d = nn.Dropout(0.5)
    local x = flame.ones(1000, {dtype = "f64", device = H.device})
    assert.is_true(d.training)
    local y = d(x)
    local zeros = y:eq(0):sum():item()
    assert.is_true(zeros > 350 and zeros < 650, "dropped " .. zeros)
    H.close(y:sum(), (1000 - zeros) * 2)
    local s = nn.Sequential(nn.Linear(2, 2), d)
    assert.are.equal(s, s:eval())
    assert.is_false(d.training)
    assert.is_false(s.training)
    H.close(d(x), x)
    s:train()
    assert.is_true(d.training)
    s:train(false)
    assert.is_false(d.training)
  end)

  it("gradients reach every parameter", function()
    local m = nn.Sequential(nn.Linear(3, 4, o), nn.GELU(), nn.LayerNorm(4, o), nn.Linear(4, 2, o))
    m(rn(5, 3)):pow(2):sum():backward()
    for n, p in m:named_parameters() do assert.is_not_nil(p.grad, n) end
    m:zero_grad()
    for n, p in m:named_parameters() do assert.is_nil(p.grad, n) end
    local mha = nn.MultiheadAttention(4, 2, o)
    local x = rn(2, 3, 4)
    mha(x, x, x, {is_causal = true}):sum():backward()
    for n, p in mha:named_parameters() do assert.is_not_nil(p.grad, n) end
  end)

  it("gradcheck through modules: input and parameters (Linear, Conv2d, LayerNorm, MultiheadAttention)", function()
    local lin = nn.Linear(3, 2, o)
    H.gradcheck(function(x, w, b) return F.linear(x, w, b) end, {rn(4, 3), lin.weight, lin.bias})
    H.gradcheck(function(x) return lin(x) end, {rn(4, 3)})
    local c = nn.Conv2d(2, 2, 2, {padding = 1, dtype = "f64", device = H.device})
    H.gradcheck(function(x) return c(x) end, {rn(1, 2, 3, 3)})
    local ln = nn.LayerNorm(4, o)
    H.gradcheck(function(x) return ln(x) end, {rn(2, 4)})
    local mha = nn.MultiheadAttention(4, 2, o)
    H.gradcheck(function(q, kv) return mha(q, kv, kv, {is_causal = true}) end, {rn(1, 3, 4), rn(1, 3, 4)})
    -- the parameters' gradients equal those of the attention composed by hand from the same tensors
    local x = rn(2, 3, 4)
    local W, b = mha.in_proj_weight, mha.in_proj_bias
    local function proj(i) return F.linear(x, W:narrow(1, i * 4 + 1, 4), b:narrow(1, i * 4 + 1, 4))
      :reshape(2, 3, 2, 2):transpose(2, 3) end
    local ref = F.linear(F.scaled_dot_product_attention(proj(0), proj(1), proj(2)):transpose(2, 3):reshape(2, 3, 4),
      mha.out_proj.weight, mha.out_proj.bias)
    local params = {W, b, mha.out_proj.weight, mha.out_proj.bias}
    local gref = flame.autograd.grad((ref * ref):sum(), params)
    local y = mha(x, x, x)
    local gm = flame.autograd.grad((y * y):sum(), params)
    for i = 1, 4 do H.close(gm[i], gref[i], {atol = 1e-12}) end
  end)

  -- Self-attention (one tensor as query, key and value) projects once, [B, L, 3E], and splits it: the same output
  -- and gradients as three projections (key and value other tensors with the same values).
  it("MultiheadAttention: self-attention's one in-projection equals three", function()
    flame.manual_seed(11)
    local m = nn.MultiheadAttention(8, 2, {dtype = "f64", device = H.device})
    flame.no_grad(function() m.in_proj_bias:copy_(flame.randn(24, {dtype = "f64", device = H.device})) end)
    local x = rn(2, 5, 8)
    local y1 = m(x, x, x)
    local g1 = flame.autograd.grad((y1 * y1):sum(), {m.in_proj_weight, m.in_proj_bias})
    local y3 = m(x, x:clone(), x:clone())
    local g3 = flame.autograd.grad((y3 * y3):sum(), {m.in_proj_weight, m.in_proj_bias})
    H.close(y1, y3, {atol = 1e-12})
    for i = 1, 2 do H.close(g1[i], g3[i], {atol = 1e-12}) end
  end)

  it("half dtypes: construction and forward keep the dtype", function()
    for _, dt in ipairs({"bf16", "f16"}) do
      local m = nn.Sequential(nn.Linear(4, 8, {dtype = dt, device = H.device}), nn.LayerNorm(8, {dtype = dt,
        device = H.device}), nn.GELU())
      local mha = nn.MultiheadAttention(8, 2, {dtype = dt, device = H.device})
      local x = flame.randn(2, 3, 4, {dtype = dt, device = H.device})
      local y = mha(m(x))
      assert.are.equal(dt, y.dtype)
      local ref = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.GELU()):to({device = H.device})
      ref:load_state_dict(m:state_dict())
      H.close(m(x), ref(x:float()), {atol = 0.05, rtol = 0.05})
    end
  end)

  it("MultiheadAttention: is_causal equals a causal mask, unbatched input, sdpa equals the composed path", function()
    local m = nn.MultiheadAttention(8, 4, o)
    local x = rn(2, 5, 8)
    local mask = flame.ones(5, 5, {dtype = "bool", device = H.device}):triu(1)
    local a = m(x, x, x, {is_causal = true})
    H.close(a, m(x, x, x, {attn_mask = mask}), {atol = 1e-12})
    H.close(a, m(x, x, x, {is_causal = true, need_weights = true}), {atol = 1e-12})
    local u = m(x[1], x[1], x[1])
    H.close(u, m(x, x, x)[1], {atol = 1e-12})
    local y, w = m(x, x, x, {need_weights = true})
    assert.are.same({2, 5, 5}, w.shape)
    H.close(w:sum(-1), flame.ones(2, 5, {dtype = "f64"}), {atol = 1e-12})
    -- reference: the projections composed by hand
    local E = 8
    local W, b = m.in_proj_weight, m.in_proj_bias
    local function proj(i) return F.linear(x, W:narrow(1, i * E + 1, E), b:narrow(1, i * E + 1, E))
      :reshape(2, 5, 4, 2):transpose(2, 3) end
    local ref = F.scaled_dot_product_attention(proj(0), proj(1), proj(2)):transpose(2, 3):reshape(2, 5, 8)
    H.close(y, m.out_proj(ref), {atol = 1e-12})
  end)
end)

describe("nn.Module base", function()
  -- Module classes call forward through their own __call (nn_base.lua), and Linear, GroupNorm and the convolutions
  -- read their fields without __index (nn_layers.lua): what a script changes on an instance still counts.
  it("calls an instance's own forward, a forward defined after extend, and keeps a class's own __call", function()
    local A = nn.Module:extend("A")
    local a = A()
    H.errors(function() a(1) end, "A: forward is not implemented")
    function A:forward(x) return x + 1 end
    assert.are.equal(2, a(1))
    a.forward = function(_, x) return x * 10 end
    assert.are.equal(10, a(1))
    a.forward = nil
    assert.are.equal(2, a(1))
    local B = A:extend("B")
    assert.are.equal(2, B()(1))
    function B:forward(x) return x + 2 end
    assert.are.equal(3, B()(1))
    assert.are.equal(2, a(1))
    function B.__call(_, x) return "own " .. x end
    local C = B:extend("C")
    assert.are.equal("own 1", C()(1))
  end)

  it("Linear, GroupNorm and Conv2d follow fields reassigned or edited in place after a forward", function()
    local o = H.opts({dtype = "f64"})
    local x = rn(1, 4, 6, 6)
    local c = nn.Conv2d(4, 4, 3, {padding = 1, dtype = "f64", device = H.device})
    H.close(c(x), F.conv2d(x, c.weight, c.bias, {padding = 1}))
    c.padding[2] = 0 -- in place
    H.close(c(x), F.conv2d(x, c.weight, c.bias, {padding = {1, 0}}))
    c.stride = {2, 1}
    H.close(c(x), F.conv2d(x, c.weight, c.bias, {stride = {2, 1}, padding = {1, 0}}))
    c.stride[1], c.dilation[2] = 1, 2
    H.close(c(x), F.conv2d(x, c.weight, c.bias, {padding = {1, 0}, dilation = {1, 2}}))
    c.padding, c.dilation = "same", {1, 1}
    H.close(c(x), F.conv2d(x, c.weight, c.bias, {padding = "same"}))
    c.bias = nil
    H.close(c(x), F.conv2d(x, c.weight, nil, {padding = "same"}))
    c.weight = nn.Parameter(rn(4, 2, 3, 3))
    c.groups = 2
    H.close(c(x), F.conv2d(x, c.weight, nil, {padding = "same", groups = 2}))
    c.padding_mode, c._reversed_padding_repeated_twice = "reflect", {1, 1, 1, 1}
    H.close(c(x), F.conv2d(F.pad(x, {1, 1, 1, 1}, {mode = "reflect"}), c.weight, nil, {groups = 2}))
    c.padding_mode, c.groups = "zeros", 1.5
    H.errors(function() c(x) end, "conv2d: groups must be an integer")
    c.groups, c.stride = 2, {1, 0.5}
    H.errors(function() c(x) end, "conv2d: stride")
    local l = nn.Linear(3, 2, o)
    local v = rn(2, 3)
    l.bias = nil
    H.close(l(v), F.linear(v, l.weight))
    local g = nn.GroupNorm(2, 4, o)
    H.close(g(x), F.group_norm(x, 2, g.weight, g.bias, 1e-5))
    g.eps, g.num_groups = 0.5, 4
    H.close(g:forward_silu(x), F.group_norm(x, 4, g.weight, g.bias, 0.5):silu())
    g.weight, g.bias = nil, nil
    H.close(g(x), F.group_norm(x, 4, nil, nil, 0.5))
  end)

  it("registers by assignment and by register_*; reassignment moves a name between kinds", function()
    local M = nn.Module:extend("M")
    function M:__init()
      self.w = nn.Parameter(flame.randn(2, 2))
      self.plain = flame.randn(2)      -- not a parameter: no requires_grad
      self.n = 3
      self:register_buffer("running", flame.zeros(2))
      self:register_buffer("tmp", flame.zeros(1), false)
      self.sub = nn.Linear(2, 2)
    end
    function M:forward(x) return self.sub(x) * self.n end
    local m = M()
    assert.are.same({"w", "sub.weight", "sub.bias"}, names(m:named_parameters()))
    assert.are.same({"running", "tmp"}, names(m:named_buffers()))
    assert.are.same({"w", "running", "sub.weight", "sub.bias"}, m:state_dict_keys())
    assert.are.equal(3, m.n)
    assert.is_true(flame.is_tensor(m.plain))
    assert.are.same({2, 2}, m(flame.randn(3, 2)):size(2) == 2 and {2, 2} or {})
    -- a parameter name only takes parameters (or nil)
    H.errors(function() m.w = flame.randn(2, 2) end, "M: cannot assign a tensor that is not a parameter as parameter 'w'")
    m.w = nil
    assert.are.same({"sub.weight", "sub.bias"}, names(m:named_parameters()))
    m.w = nn.Parameter(flame.zeros(1))
    assert.are.same({"w", "sub.weight", "sub.bias"}, names(m:named_parameters()))
    -- a buffer name takes a new tensor
    m.running = flame.ones(2)
    H.close(m.running, {1, 1})
    H.errors(function() m.running = 5 end, "cannot assign a number as buffer 'running'")
    -- a plain attribute becomes a submodule, then a parameter
    m.n = nn.ReLU()
    assert.are.equal(2, #m:children())
    m.n = nn.Parameter(flame.zeros(3))
    assert.are.equal(1, #m:children())
    assert.are.same({"w", "n", "sub.weight", "sub.bias"}, names(m:named_parameters()))
    -- a parameter assigned to a buffer's name becomes a parameter, as in PyTorch
    m.running = nn.Parameter(flame.ones(2))
    assert.are.same({"tmp"}, names(m:named_buffers()))
    -- subclasses of layers
    local Scaled = nn.Linear:extend("Scaled")
    function Scaled:__init(i, o, s) nn.Linear.__init(self, i, o); self.s = s end
    function Scaled:forward(x) return nn.Linear.forward(self, x) * self.s end
    local sc = Scaled(2, 3, 2)
    local x = flame.randn(4, 2)
    H.close(sc(x), F.linear(x, sc.weight, sc.bias) * 2)
    assert.are.equal("Scaled(in_features=2, out_features=3, bias=True)", tostring(sc))
    assert.are.same({"weight", "bias"}, names(sc:named_parameters()))
    -- a shared parameter or module appears once
    local s = nn.Sequential(m.sub, m.sub)
    assert.are.equal(2, #s:parameters())
  end)

  it("containers: 1-based access to children named from 0, append, ModuleDict order", function()
    local a, b = nn.Linear(2, 3), nn.ReLU()
    local s = nn.Sequential(a, b)
    assert.are.equal(a, s[1])
    assert.are.equal(b, s[2])
    assert.are.equal(b, s[-1])
    assert.are.equal(a, s["0"])
    assert.is_nil(s[3])
    assert.are.equal(2, #s)
    s:append(nn.Linear(3, 1))
    assert.are.same({"0.weight", "0.bias", "2.weight", "2.bias"}, names(s:named_parameters()))
    local n = 0
    for i, m in ipairs(s) do n = n + 1; assert.are.equal(s[i], m) end
    assert.are.equal(3, n)
    assert.are.same({1, 1}, s(flame.randn(1, 2)).shape)
    assert.are.same({4, 1}, nn.Sequential({nn.Linear(2, 1)})(flame.randn(4, 2)).shape)
    local l = nn.ModuleList()
    l:append(nn.Linear(1, 1))
    l[2] = nn.Linear(1, 2)
    assert.are.same({"0.weight", "0.bias", "1.weight", "1.bias"}, names(l:named_parameters()))
    H.errors(function() l[5] = nn.ReLU() end, "ModuleList: index 5 out of range for 2 modules")
    H.errors(function() l:forward(1) end, "ModuleList: has no forward")
    local d = nn.ModuleDict({{"z", nn.Linear(1, 1)}, {"a", nn.Linear(1, 1, {bias = false})}})
    assert.are.same({"z.weight", "z.bias", "a.weight"}, names(d:named_parameters()))
    assert.are.same({"z", "a"}, d:keys())
    local d2 = nn.ModuleDict({y = nn.ReLU(), x = nn.ReLU()})
    assert.are.same({"x", "y"}, d2:keys())
    assert.are.same({"", "x", "y"}, names(d2:named_modules()))
    H.errors(function() nn.Sequential(nn.ReLU(), 3) end, "Sequential: argument #2 is not a module")
  end)

  it("state_dict detaches, load_state_dict copies and reports keys; strict errors name them", function()
    local m = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
    local sd = m:state_dict()
    assert.is_false(sd["0.weight"].requires_grad)
    local m2 = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
    local w2 = m2[1].weight
    m2:load_state_dict(sd)
    assert.are.equal(w2, m2[1].weight) -- copied into the same parameter
    H.close(m2[1].weight, m[1].weight, {atol = 0})
    assert.is_true(m2[1].weight.requires_grad)
    local partial = {["0.weight"] = sd["0.weight"], extra = flame.zeros(1)}
    H.errors(function() m2:load_state_dict(partial) end,
      'load_state_dict: error(s) in loading the state dict for Sequential: missing keys: "0.bias", "1.bias", ' ..
      '"1.weight"; unexpected keys: "extra"')
    local r = m2:load_state_dict(partial, {strict = false})
    assert.are.same({"0.bias", "1.bias", "1.weight"}, r.missing_keys)
    assert.are.same({"extra"}, r.unexpected_keys)
    H.errors(function() m2:load_state_dict({["0.weight"] = flame.zeros(3, 3)}, {strict = false}) end,
      'size mismatch for "0.weight": the checkpoint has [3, 3], the model [3, 2]')
    H.errors(function() m2:load_state_dict({["0.weight"] = 1}, {strict = false}) end, '"0.weight" is a number, not a tensor')
    H.errors(function() m2:load_state_dict(sd, {strict = false, strcit = true}) end, "unknown option 'strcit'")
    -- a failed load copies nothing
    local before = m2[1].bias:clone()
    pcall(function() m2:load_state_dict({["0.bias"] = flame.ones(3), ["0.weight"] = flame.zeros(1)}, {strict = false}) end)
    H.close(m2[1].bias, before, {atol = 0})
    -- loading converts dtype
    local m3 = nn.Linear(2, 3, {dtype = "f64"})
    m3:load_state_dict({weight = flame.ones(3, 2), bias = flame.zeros(3)})
    assert.are.equal("f64", m3.weight.dtype)
  end)

  it("to() converts parameters and buffers in place on the module", function()
    local m = nn.Sequential(nn.Linear(2, 3), nn.Embedding(4, 2))
    m:register_buffer("ids", flame.tensor({1, 2}, {dtype = "i64"}))
    local w = m[1].weight
    assert.are.equal(m, m:to("f32"))
    assert.are.equal(w, m[1].weight) -- nothing to convert: the same tensor
    m[1].weight.grad = flame.ones(3, 2)
    m:to("f64")
    assert.are_not.equal(w, m[1].weight)
    assert.are.equal("f64", m[1].weight.dtype)
    assert.is_true(m[1].weight.requires_grad and m[1].weight.is_leaf)
    assert.are.equal("f64", m[1].weight.grad.dtype)
    assert.are.equal("i64", m.ids.dtype) -- integer buffers keep their dtype
    m:to({device = H.device, dtype = "f32"})
    assert.are.equal(H.device, m[2].weight.device:sub(1, #H.device))
    assert.are.equal(H.device, m.ids.device:sub(1, #H.device))
    assert.are.equal("f32", m[2].weight.dtype)
    m:double()
    assert.are.equal("f64", m[2].weight.dtype)
    H.errors(function() m:to("i32") end, "to: a module's dtype must be a float dtype, got i32")
    H.errors(function() m:to({dtyp = "f32"}) end, "to: unknown option 'dtyp'")
    H.errors(function() m:to("f8") end, "to: 'f8' is neither a dtype (f32, f64, f16, bf16, ...) nor a device")
  end)

  it("apply visits children first, then the module; modules() and children() list them", function()
    local inner = nn.Sequential(nn.ReLU())
    local m = nn.Sequential(nn.Linear(1, 1), inner)
    local seen = {}
    m:apply(function(x) seen[#seen + 1] = tostring(x):match("^%w+") end)
    assert.are.same({"Linear", "ReLU", "Sequential", "Sequential"}, seen)
    assert.are.equal(4, #m:modules())
    assert.are.equal(2, #m:children())
    m:apply(function(x) if x.weight then nn.init.constant_(x.weight, 0.5) end end)
    H.close(m[1].weight, {{0.5}})
  end)

  it("requires_grad_ and num_parameters", function()
    local m = nn.Linear(3, 2)
    assert.are.equal(8, m:num_parameters())
    m:requires_grad_(false)
    assert.is_false(m.weight.requires_grad)
    assert.are.equal(0, m:num_parameters({trainable_only = true}))
    assert.are.equal(2, #m:parameters()) -- frozen parameters stay parameters, as in PyTorch
  end)

  it("errors: forward not defined, bad constructor arguments, unknown options", function()
    local E = nn.Module:extend("Empty")
    H.errors(function() E()(1) end, "Empty: forward is not implemented")
    H.errors(function() nn.Linear(0, 2) end, "Linear: in_features must be a positive integer, got 0")
    H.errors(function() nn.Linear(2, 2, {biass = false}) end, "Linear: unknown option 'biass'")
    H.errors(function() nn.Conv2d(3, 4, 3, {groups = 2}) end, "Conv2d: in_channels (3) must be divisible by groups (2)")
    H.errors(function() nn.Conv2d(4, 4, {3, 3, 3}) end, "Conv2d: kernel_size must be a number or a table of 2 numbers")
    H.errors(function() nn.GroupNorm(3, 4) end, "GroupNorm: num_channels (4) must be divisible by num_groups (3)")
    H.errors(function() nn.Dropout(1.5) end, "Dropout: dropout probability has to be between 0 and 1, but got 1.5")
    H.errors(function() nn.GELU({approximate = "fast"}) end, "GELU: approximate must be 'none' or 'tanh'")
    H.errors(function() nn.Upsample({}) end, "Upsample: give exactly one of size and scale_factor")
    H.errors(function() nn.MultiheadAttention(6, 4) end, "MultiheadAttention: embed_dim (6) must be divisible by num_heads (4)")
    local m = nn.MultiheadAttention(4, 2)
    H.errors(function() m(flame.randn(2, 3, 5), flame.randn(2, 3, 5), flame.randn(2, 3, 5)) end,
      "MultiheadAttention: query's last dim must be embed_dim = 4, got 5")
    H.errors(function() m(flame.randn(2, 3, 4), nil, nil, {attn_mask = flame.zeros(2, 2)}) end,
      "a 2-D attn_mask must be [3, 3] (L, S), got [2, 2]")
    H.errors(function() m(flame.randn(2, 3, 4), nil, nil, {need_weight = true}) end,
      "MultiheadAttention.forward: unknown option 'need_weight'")
    -- self-attention (one tensor as query, key and value) checks query once: the same messages
    local kv = nn.MultiheadAttention(6, 3, {kdim = 4, vdim = 5})
    local x6 = flame.randn(2, 3, 6)
    H.errors(function() kv(x6, x6, x6) end,
      "MultiheadAttention: key's and value's last dims must be kdim = 4 and vdim = 5, got 6 and 6")
    H.errors(function() kv(x6) end, "key's and value's last dims must be kdim = 4 and vdim = 5, got 6 and 6")
    H.errors(function() m(flame.randn(2, 3, 4), flame.randn(3, 4), flame.randn(3, 4)) end,
      "MultiheadAttention: query, key and value must have the same number of dims, got 3, 2 and 2")
    H.errors(function() m(flame.randn(2, 3, 4), flame.randn(1, 3, 4), flame.randn(1, 3, 4)) end,
      "MultiheadAttention: key and value must match query's batch and each other's length")
    H.errors(function() m(flame.randn(2, 3, 4, 1)) end, "MultiheadAttention: query must be 2-D (unbatched) or 3-D, got 4 dims")
    H.errors(function() nn.Module:extend(3) end, "Module:extend: expected a class name")
    H.errors(function() nn.Linear(2, 2):register_buffer("a.b", flame.zeros(1)) end, "without '.'")
    H.errors(function() nn.Parameter(3) end, "Parameter: expected a tensor, got number")
  end)
end)

describe("nn.init", function()
  local init = nn.init
  it("computes fans and gains as PyTorch", function()
    local fi, fo = init.calculate_fan_in_and_fan_out(flame.empty(6, 4, 3, 2))
    assert.are.same({24, 36}, {fi, fo})
    fi, fo = init.calculate_fan_in_and_fan_out(flame.empty(5, 7))
    assert.are.same({7, 5}, {fi, fo})
    H.errors(function() init.calculate_fan_in_and_fan_out(flame.empty(5)) end,
      "fan in and fan out can not be computed for a tensor with fewer than 2 dims")
    assert.are.equal(1, init.calculate_gain("linear"))
    assert.are.equal(1, init.calculate_gain("conv2d"))
    assert.are.equal(5 / 3, init.calculate_gain("tanh"))
    assert.are.equal(math.sqrt(2), init.calculate_gain("relu"))
    assert.are.equal(math.sqrt(2 / (1 + 0.01 ^ 2)), init.calculate_gain("leaky_relu"))
    assert.are.equal(math.sqrt(2 / 6), init.calculate_gain("leaky_relu", math.sqrt(5)))
    assert.are.equal(0.75, init.calculate_gain("selu"))
    H.errors(function() init.calculate_gain("swish") end, "calculate_gain: unsupported nonlinearity swish")
  end)

  -- max |x| close to the bound from below (uniform), and the standard deviation of the draws
  local function stats(t)
    t = t:double()
    return t:abs():max():item(), t:std():item(), t:mean():item()
  end

  it("fills within PyTorch's bounds and with its spreads, from flame's seeded generator", function()
    local w = flame.empty(200, 100, {device = H.device})
    local b = math.sqrt(3) * math.sqrt(2 / 300)
    local m, s = stats(init.xavier_uniform_(w))
    assert.is_true(m <= b and m > 0.99 * b, "xavier_uniform max " .. m)
    m, s = stats(init.xavier_normal_(w, {gain = 2}))
    assert.is_true(math.abs(s - 2 * math.sqrt(2 / 300)) < 0.03 * s, "xavier_normal std " .. s)
    m = stats(init.kaiming_uniform_(w, {a = math.sqrt(5)}))
    assert.is_true(m <= 0.1 and m > 0.099, "kaiming_uniform(a=sqrt 5) max " .. m) -- 1 / sqrt(100)
    m = stats(init.kaiming_uniform_(w, {mode = "fan_out", nonlinearity = "relu"}))
    local bo = math.sqrt(3) * math.sqrt(2) / math.sqrt(200)
    assert.is_true(m <= bo and m > 0.99 * bo, "kaiming_uniform fan_out max " .. m)
    m, s = stats(init.kaiming_normal_(w, 0, "fan_in", "relu"))
    assert.is_true(math.abs(s - math.sqrt(2 / 100)) < 0.03 * s, "kaiming_normal std " .. s)
    local mean
    m, s, mean = stats(init.normal_(w, 3, 0.5))
    assert.is_true(math.abs(mean - 3) < 0.02 and math.abs(s - 0.5) < 0.02)
    m, s, mean = stats(init.uniform_(w, -0.25, 0.25))
    assert.is_true(m <= 0.25 and m > 0.249)
    H.close(init.constant_(flame.empty(2), 1.5), {1.5, 1.5})
    H.close(init.zeros_(flame.ones(2)), {0, 0})
    H.close(init.ones_(flame.zeros(2)), {1, 1})
    flame.manual_seed(5)
    local a = init.kaiming_uniform_(flame.empty(4, 4))
    flame.manual_seed(5)
    H.close(init.kaiming_uniform_(flame.empty(4, 4)), a, {atol = 0})
    H.errors(function() init.kaiming_uniform_(w, {mode = "fan_avg"}) end, "kaiming_uniform_: mode fan_avg not supported")
    H.errors(function() init.uniform_(w, {lo = 1}) end, "uniform_: unknown option 'lo'")
  end)

  it("trunc_normal_ stays within [a, b] with the truncated spread", function()
    local t = init.trunc_normal_(flame.empty(20000, {device = H.device}), {std = 1, a = -1, b = 1})
    local m, s, mean = stats(t)
    assert.is_true(m <= 1)
    -- std of a standard normal truncated to [-1, 1]: 0.5379
    assert.is_true(math.abs(s - 0.5379) < 0.01, "std " .. s)
    assert.is_true(math.abs(mean) < 0.02)
    local u = init.trunc_normal_(flame.empty(1000, {dtype = "f64", device = H.device}), 2, 0.1, 1.95, 2.2)
    assert.is_true(u:min():item() >= 1.95 and u:max():item() <= 2.2)
    H.errors(function() init.trunc_normal_(flame.empty(2), 0, 1, 1, -1) end, "trunc_normal_: needs a < b")
  end)

  it("default module initialisation: Linear/Conv bounds, zero MHA biases, unit norms, normal embeddings", function()
    local l = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    local mw = l.weight:abs():max():item()
    assert.is_true(mw <= bound and mw > 0.99 * bound)
    local mb = l.bias:abs():max():item()
    assert.is_true(mb <= bound and mb > 0.9 * bound)
    local c = nn.Conv2d(8, 16, 3, {groups = 2}) -- fan_in = 4 * 9
    mw = c.weight:abs():max():item()
    assert.is_true(mw <= 1 / 6 and mw > 0.98 / 6)
    local ct = nn.ConvTranspose2d(8, 16, 3, {groups = 2}) -- weight [8, 8, 3, 3]: fan_in = 8 * 9
    mw = ct.weight:abs():max():item()
    assert.is_true(mw <= 1 / math.sqrt(72) and mw > 0.98 / math.sqrt(72))
    local mha = nn.MultiheadAttention(64, 4)
    assert.are.equal(0, mha.in_proj_bias:abs():max():item())
    assert.are.equal(0, mha.out_proj.bias:abs():max():item())
    local xb = math.sqrt(6 / (64 + 192))
    mw = mha.in_proj_weight:abs():max():item()
    assert.is_true(mw <= xb and mw > 0.99 * xb)
    local ln = nn.LayerNorm(4)
    H.close(ln.weight, {1, 1, 1, 1})
    H.close(ln.bias, {0, 0, 0, 0})
    local e = nn.Embedding(1000, 20)
    local s = e.weight:std():item()
    assert.is_true(math.abs(s - 1) < 0.03)
    local d = nn.Linear(2, 2, {dtype = "f64", device = H.device})
    assert.are.equal("f64", d.weight.dtype)
    assert.is_true(d.weight.is_leaf and d.weight.requires_grad)
  end)
end)

describe("flame.utils.checkpoint", function()
  local checkpoint = flame.utils.checkpoint
  local o = H.opts({dtype = "f64"})

  -- Gradients of sum(sin(f(x))) for x and every parameter of m, and the output.
  local function grads(m, f, x)
    m:zero_grad()
    x = x:detach()
    x.requires_grad = true
    local y = f(x)
    y:sin():sum():backward()
    local g = {x = x.grad}
    for n, p in m:named_parameters() do g[n] = p.grad end
    return y, g
  end

  it("gives the same outputs and gradients as the plain forward, dropout included", function()
    local m = nn.Sequential(nn.Linear(4, 8, o), nn.GELU(), nn.Dropout(0.3), nn.LayerNorm(8, o), nn.Linear(8, 4, o))
    local x = rn(3, 4)
    flame.manual_seed(11)
    local y1, g1 = grads(m, function(t) return m(t * 2) end, x)
    flame.manual_seed(11)
    local y2, g2 = grads(m, function(t) return checkpoint(m, t * 2) end, x)
    assert.are.equal("CheckpointBackward", y2.grad_fn)
    H.close(y2, y1, {atol = 0})
    for k, g in pairs(g1) do H.close(g2[k], g, {atol = 1e-14}, k) end
    -- the generator continues as after the plain forward: the next draw is the same
    flame.manual_seed(11)
    grads(m, function(t) return m(t * 2) end, x)
    local r1 = flame.rand(3):totable()
    flame.manual_seed(11)
    grads(m, function(t) return checkpoint(m, t * 2) end, x)
    assert.are.same(r1, flame.rand(3):totable())
  end)

  it("reaches the parameters when no argument needs a gradient; several outputs and non-tensor arguments", function()
    local l = nn.Linear(3, 2, o)
    local x = rn(4, 3)
    local a, b, s = checkpoint(function(t, k) return l(t) * k, l(t):sum(), "tag" end, x, 3)
    assert.are.equal("tag", s)
    ;(a:sum() + b):backward()
    local gw, gb = l.weight.grad:clone(), l.bias.grad:clone()
    l:zero_grad()
    ;(l(x) * 3):sum():add(l(x):sum()):backward()
    H.close(gw, l.weight.grad, {atol = 1e-12})
    H.close(gb, l.bias.grad, {atol = 1e-12})
  end)

  it("nests, and passes through under no_grad", function()
    local l1, l2 = nn.Linear(3, 3, o), nn.Linear(3, 3, o)
    local x = rn(2, 3)
    local function inner(t) return l2(t):tanh() end
    local function outer(t) return checkpoint(inner, l1(t):relu()) end
    local _, g1 = grads(l1, function(t) return inner(l1(t):relu()) end, x)
    local gl2 = l2.weight.grad:clone()
    l2:zero_grad()
    local _, g2 = grads(l1, function(t) return checkpoint(outer, t) end, x)
    for k, g in pairs(g1) do H.close(g2[k], g, {atol = 1e-12}, k) end
    H.close(l2.weight.grad, gl2, {atol = 1e-12})
    local y = flame.no_grad(function() return checkpoint(inner, x) end)
    assert.is_nil(y.grad_fn)
  end)

  it("errors: a parameter also used outside, a failing recomputation, a bad function", function()
    local l = nn.Linear(2, 2, o)
    local x = rn(1, 2)
    H.errors(function() (checkpoint(l, x):sum() + l.weight:sum()):backward() end,
      "CheckpointBackward: backward function failed", "a nested backward pass (flame.utils.checkpoint's " ..
      "recomputation) reaches AccumulateGrad, which the outer pass also uses")
    local calls = 0
    local y = checkpoint(function(t)
      calls = calls + 1
      if calls > 1 then error("boom") end
      return l(t)
    end, x)
    H.errors(function() y:sum():backward() end, "checkpoint: recomputing the forward failed", "boom")
    H.errors(function() checkpoint(3, x) end, "checkpoint: expected a function or a callable (a module), got number")
    -- a backward from a hook is still refused
    local t = flame.randn(2, {requires_grad = true})
    local u = t * 2
    u:register_hook(function()
      flame.set_grad_enabled(true)
      local z = (t * 3):sum()
      flame.set_grad_enabled(false)
      z:backward()
    end)
    H.errors(function() u:sum():backward() end, "cannot start a backward pass from a hook of another one")
  end)
end)
