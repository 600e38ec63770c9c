-- Optimizer cases for bench/nn.lua (names match bench/nn/optim.py): one step of the fused multi-tensor kernels over
-- 100 tensors totalling 100M parameters (sizes alternating 1.5M and 0.5M), grads set once before timing.
local N, BIG, SMALL = 100, 1500000, 500000

local function params(flame, dt)
  local ps = {}
  for i = 1, N do
    local p = flame.randn(i % 2 == 1 and BIG or SMALL, {dtype = dt, device = "cuda"})
    p.requires_grad = true
    p.grad = flame.randn(p:numel(), {dtype = dt, device = "cuda"})
    ps[i] = p
  end
  return ps
end

return {
  {name = "adamw step f32 100 tensors 100M", target = 1.0, setup = function(flame)
    local opt = flame.optim.AdamW(params(flame, "f32"), {lr = 1e-3, weight_decay = 1e-2})
    return function() opt:step() end
  end},
  {name = "adamw step bf16 100 tensors 100M", setup = function(flame)
    local opt = flame.optim.AdamW(params(flame, "bf16"), {lr = 1e-3, weight_decay = 1e-2})
    return function() opt:step() end
  end},
  {name = "clip_grad_norm f32 100 tensors 100M", setup = function(flame)
    local ps = params(flame, "f32")
    return function() flame.optim.clip_grad_norm(ps, 1e9) end
  end},
}
