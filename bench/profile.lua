-- Where a training step's time goes, with flame.profile (a syncing op profiler: read the shares, not the totals).
--   flame-lua bench/profile.lua block   -- the pre-norm transformer block of bench/nn/train.lua (bf16 autocast)
--   flame-lua bench/profile.lua unet    -- examples/train.lua's default UNet step (batch 128, 32x32, bf16 autocast)
--   flame-lua bench/profile.lua sample  -- one guided sampling forward of that UNet (batch 2000, no grad, bf16 autocast)
local what = arg[1] or "block"
local F = flame.F
local step
if what == "sample" then
  local lib = dofile("examples/diffusion_lib.lua")
  flame.manual_seed(0)
  local model = lib.model(lib.PRESETS.default, 1, 10):to("cuda")
  model:eval()
  local x, t = flame.randn(2000, 1, 32, 32):cuda(), flame.full({2000}, 500):cuda()
  local y = flame.randint(1, 12, {2000}):cuda()
  step = function() flame.no_grad(function() return lib.forward(model, "bf16", x, t, y):float() end) end
elseif what == "unet" then
  local unet = dofile("examples/unet.lua")
  flame.manual_seed(0)
  local model = unet.UNet({in_channels = 1, channels = 96, mults = {1, 2, 2}, num_res_blocks = 2, attn_res = {16, 8},
                           dropout = 0.1, num_classes = 10}):to("cuda")
  local opt = flame.optim.AdamW(model:parameters(), {lr = 1e-4})
  local x, v = flame.randn(128, 1, 32, 32):cuda(), flame.randn(128, 1, 32, 32):cuda()
  local t = flame.randint(0, 1000, {128}):cuda()
  local y = flame.randint(1, 12, {128}):cuda()
  step = function()
    opt:zero_grad()
    local out = flame.autocast("bf16", function() return model(x, t, y) end)
    F.mse_loss(out:float(), v):backward()
    flame.optim.clip_grad_norm(model:parameters(), 1.0)
    opt:step()
  end
else
  for _, c in ipairs(dofile("bench/nn/train.lua")) do
    if c.name:find("transformer", 1, true) then step = c.setup(flame) end
  end
end
for _ = 1, 3 do step() end
flame.cuda.synchronize()
local t0 = flame.timer()
for _ = 1, 5 do step() end
flame.cuda.synchronize()
print(string.format("%s: %.2f ms per step without the profiler", what, (flame.timer() - t0) / 5 * 1e3))
local r = flame.profile(function() for _ = 1, 3 do step() end end, {device = "cuda"})
r:print(30)
