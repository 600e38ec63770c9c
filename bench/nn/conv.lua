-- Convolution cases (issue 7): the default path (cuDNN where the backend has it),
-- then the same cases forced onto the im2col + GEMM path, reported without a target.
local function conv_case(name, target, fn, xs, ws, dtype, opts, backward, algo)
  return {name = name, target = target, setup = function(flame)
    local F = flame.F
    local o = {dtype = dtype, device = "cuda"}
    local x = flame.randn(xs, o)
    local w = (flame.randn(ws, {device = "cuda"}) * 0.05):to(dtype)
    local b = flame.zeros(ws[1], o)
    local gy
    if backward then
      x.requires_grad, w.requires_grad, b.requires_grad = true, true, true
      gy = F[fn](x:detach(), w:detach(), b:detach(), opts):detach()
      gy = flame.randn(gy.shape, o)
    end
    return function()
      local prev = algo and F.conv_algo(algo)
      local y = F[fn](x, w, b, opts)
      if backward then y:backward(gy) end
      if algo then F.conv_algo(prev) end
    end
  end}
end

local cases = {}
local specs = {
  {"conv2d fwd+bwd bf16 [32,128,64,64] k3 pad1", 0.8, "conv2d", {32, 128, 64, 64}, {128, 128, 3, 3}, "bf16", {padding = 1}, true},
  {"conv2d fwd+bwd f32 [32,128,64,64] k3 pad1", 0.8, "conv2d", {32, 128, 64, 64}, {128, 128, 3, 3}, "f32", {padding = 1}, true},
  {"conv2d fwd depthwise f32 [32,256,64,64] k3 pad1", 0.8, "conv2d", {32, 256, 64, 64}, {256, 1, 3, 3}, "f32",
    {padding = 1, groups = 256}, false},
  {"conv3d fwd+bwd bf16 [4,64,16,64,64] k3 pad1", 0.7, "conv3d", {4, 64, 16, 64, 64}, {64, 64, 3, 3, 3}, "bf16",
    {padding = 1}, true},
  -- the UNet sampler's convolutions (bench/nn/unet.lua's sample case: batch 2000, 96 and 192 channels)
  {"conv2d fwd bf16 [2000,96,32,32] k3 pad1", 1.0, "conv2d", {2000, 96, 32, 32}, {96, 96, 3, 3}, "bf16", {padding = 1}, false},
  {"conv2d fwd bf16 [2000,192,16,16] k3 pad1", 1.0, "conv2d", {2000, 192, 16, 16}, {192, 192, 3, 3}, "bf16", {padding = 1},
    false},
}
for _, s in ipairs(specs) do
  local name, target, fn, xs, ws, dt, o, bw = table.unpack(s)
  cases[#cases + 1] = conv_case(name, target, fn, xs, ws, dt, o, bw, nil)
end
for _, s in ipairs(specs) do
  local name, _, fn, xs, ws, dt, o, bw = table.unpack(s)
  cases[#cases + 1] = conv_case(name .. " (gemm path)", nil, fn, xs, ws, dt, o, bw, "gemm")
end
return cases
