-- Specs of the example UNet (examples/unet.lua): output shapes for conditional and unconditional models, the same
-- output with and without autograd, the timestep embedding's values, its errors, and that a few AdamW steps on one
-- fixed batch lower the loss.
local H = require "helper"
local flame = H.flame
local unet = dofile("examples/unet.lua")

local TINY = {in_channels = 1, channels = 8, mults = {1, 2}, num_res_blocks = 1, attn_res = {4}, num_classes = 3,
              image_size = 8, groups = 4, head_dim = 8}
local function with(over)
  local o = {}
  for k, v in pairs(TINY) do o[k] = v end
  for k, v in pairs(over or {}) do o[k] = v end
  return o
end

describe("examples/unet.lua", function()
  it("maps [B, C, H, W] to [B, C, H, W] for several depths, widths and channel counts", function()
    flame.manual_seed(0)
    for _, o in ipairs({with(), with({in_channels = 3, mults = {1, 2, 2}, num_res_blocks = 2, attn_res = {4, 2}}),
                        with({channels = 12, mults = {1}, attn_res = {}})}) do
      local net = unet.UNet(o):to(H.device)
      local x = flame.randn(2, o.in_channels, 8, 8, H.opts())
      local y = net(x, flame.tensor({0, 999}, H.opts()), flame.tensor({1, 4}, H.opts({dtype = "i64"})))
      assert.are.same({2, o.in_channels, 8, 8}, y.shape)
      assert.is_true(net:macs() > 0)
    end
  end)

  it("gives the same output without autograd (its residual blocks' adds in place) as with it", function()
    flame.manual_seed(1)
    local o = with({in_channels = 3, num_res_blocks = 2}) -- blocks with and without a skip convolution
    local net = unet.UNet(o):to(H.device)
    flame.no_grad(function()
      for _, p in ipairs(net:parameters()) do p:copy_(flame.randn(p.shape, H.opts()) * 0.2) end
    end)
    net:eval()
    local x = flame.randn(2, 3, 8, 8, H.opts())
    local t, y = flame.tensor({3, 700}, H.opts()), flame.tensor({1, 4}, H.opts({dtype = "i64"}))
    local with_grad = net(x, t, y)
    assert.is_not_nil(with_grad.grad_fn)
    local without = flame.no_grad(function() return net(x, t, y) end)
    assert.is_nil(without.grad_fn)
    assert.is_true(with_grad:abs():max():item() > 0.1)
    assert.are.equal(0, (with_grad - without):abs():max():item())
  end)

  it("is unconditional with num_classes = 0 (no class embedding, labels not needed)", function()
    local net = unet.UNet(with({num_classes = 0})):to(H.device)
    assert.is_nil(net.class_emb)
    assert.are.same({3, 1, 8, 8}, net(flame.randn(3, 1, 8, 8, H.opts()), flame.zeros(3, H.opts())).shape)
  end)

  it("starts as zero (zero-initialised output convs) and depends on t and the class once its weights move", function()
    flame.manual_seed(2)
    local net = unet.UNet(with()):to(H.device)
    local x = flame.randn(2, 1, 8, 8, H.opts())
    local out = net(x, flame.tensor({5, 5}, H.opts()), flame.tensor({1, 1}, H.opts({dtype = "i64"})))
    assert.are.equal(0, out:abs():max():item())
    flame.no_grad(function()
      for _, p in ipairs(net:parameters()) do p:add_(flame.randn(p.shape, H.opts()) * 0.1) end
    end)
    local a = net(x, flame.tensor({5, 5}, H.opts()), flame.tensor({1, 1}, H.opts({dtype = "i64"})))
    local b = net(x, flame.tensor({500, 5}, H.opts()), flame.tensor({1, 2}, H.opts({dtype = "i64"})))
    assert.is_true((a[1] - b[1]):abs():max():item() > 1e-6) -- another timestep
    assert.is_true((a[2] - b[2]):abs():max():item() > 1e-6) -- another class
  end)

  it("embeds timesteps as [cos(t w_k), sin(t w_k)], w_k = 10000^(-k / half)", function()
    local e = unet.timestep_embedding(flame.tensor({0, 1, 250, 999}, H.opts({dtype = "f64"})), 6)
    assert.are.same({4, 6}, e.shape)
    local want = {}
    for i, t in ipairs({0, 1, 250, 999}) do
      want[i] = {}
      for k = 0, 2 do
        local w = 10000 ^ (-k / 3)
        want[i][k + 1], want[i][k + 4] = math.cos(t * w), math.sin(t * w)
      end
    end
    H.close(e, want, {atol = 2e-4, rtol = 0}) -- computed in f32
  end)

  it("rejects an image size its levels cannot halve, and unknown options", function()
    assert.has_error(function() unet.UNet(with({image_size = 6, mults = {1, 2, 2}})) end,
      "UNet: image_size 6 is not divisible by 2^2 (3 levels)")
    assert.has_error(function() unet.UNet(with({chanels = 3})) end, "UNet: unknown option 'chanels'")
  end)

  it("lowers the loss on one fixed batch in a few AdamW steps", function()
    flame.manual_seed(3)
    local net = unet.UNet(with()):to(H.device)
    local x = flame.randn(4, 1, 8, 8, H.opts())
    local t = flame.tensor({10, 200, 500, 900}, H.opts())
    local y = flame.tensor({1, 2, 3, 4}, H.opts({dtype = "i64"}))
    local target = flame.randn(4, 1, 8, 8, H.opts())
    local opt = flame.optim.AdamW(net, {lr = 3e-3})
    local losses = {}
    for i = 1, 15 do
      local loss = flame.F.mse_loss(net(x, t, y), target)
      opt:zero_grad()
      loss:backward()
      opt:step()
      losses[i] = loss:item()
    end
    assert.is_true(losses[15] < 0.8 * losses[1], string.format("loss %.4f -> %.4f", losses[1], losses[15]))
  end)
end)
