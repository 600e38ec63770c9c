-- Pooling, resizing and padding cases of bench/nn.lua (same names as bench/nn/pool.py).
-- The issue sets no targets for these; fwd+bwd cases run the forward and the backward
-- (autograd.grad with a fixed upstream gradient) inside the timed function.
local function fwd_bwd(name, dtype, fn)
  return {
    name = name,
    setup = function(flame)
      local x = flame.randn(32, 128, 64, 64, {dtype = dtype, device = "cuda"})
      x.requires_grad = true
      local g = flame.randn(fn(flame.F, x).shape, {dtype = dtype, device = "cuda"})
      return function() return flame.autograd.grad(fn(flame.F, x), {x}, {g}) end
    end,
  }
end

return {
  fwd_bwd("max_pool2d fwd+bwd f32 [32,128,64,64] k2", "f32", function(F, x) return F.max_pool2d(x, 2) end),
  fwd_bwd("max_pool2d fwd+bwd f32 [32,128,64,64] k3s2p1", "f32",
    function(F, x) return F.max_pool2d(x, 3, {stride = 2, padding = 1}) end),
  fwd_bwd("avg_pool2d fwd+bwd f32 [32,128,64,64] k2", "f32", function(F, x) return F.avg_pool2d(x, 2) end),
  fwd_bwd("avg_pool2d fwd+bwd f32 [32,128,64,64] k3s2p1", "f32",
    function(F, x) return F.avg_pool2d(x, 3, {stride = 2, padding = 1}) end),
  fwd_bwd("max_pool2d fwd+bwd bf16 [32,128,64,64] k3s2p1", "bf16",
    function(F, x) return F.max_pool2d(x, 3, {stride = 2, padding = 1}) end),
  fwd_bwd("bilinear 2x fwd+bwd f32 [32,128,64,64]", "f32",
    function(F, x) return F.interpolate(x, {scale_factor = 2, mode = "bilinear"}) end),
  fwd_bwd("bilinear 2x fwd+bwd bf16 [32,128,64,64]", "bf16",
    function(F, x) return F.interpolate(x, {scale_factor = 2, mode = "bilinear"}) end),
  fwd_bwd("nearest 2x fwd+bwd f32 [32,128,64,64]", "f32", function(F, x) return F.interpolate(x, {scale_factor = 2}) end),
  fwd_bwd("reflect pad 1 fwd+bwd f32 [32,128,64,64]", "f32",
    function(F, x) return F.pad(x, {1, 1, 1, 1}, {mode = "reflect"}) end),
  fwd_bwd("adaptive_avg_pool2d 7 fwd+bwd f32 [32,128,64,64]", "f32", function(F, x) return F.adaptive_avg_pool2d(x, 7) end),
}
