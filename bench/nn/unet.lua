-- The diffusion UNet of issue 9 (names match bench/nn/unet.py): examples/unet.lua's default preset (32x32, 96
-- channels, mults {1, 2, 2}, 2 res blocks a level, attention at 16x16 and 8x8, dropout 0.1, 10 classes, ~15M
-- parameters) against its PyTorch twin bench/unet_torch.py.
--   train step: examples/train.lua's step at batch 128: noise and t drawn, x_t and the v target from the DDPM
--     scheduler (cosine betas), label dropout 0.1, the forward under bf16 autocast, MSE on the f32 output,
--     backward, clip_grad_norm 1.0, AdamW (no EMA or LR schedule on either side). Fixed x0 and labels.
--   sample: 1000 class-conditional images in 50 DDIM steps with guidance 2 (the conditional and null halves in one
--     batch of 2000), bf16 autocast: examples/diffusion_lib.lua's sample, as train.lua and score.lua run it.
local here = "examples/"
local lib = dofile(here .. "diffusion_lib.lua")

local function model(flame, dev)
  return lib.model(lib.PRESETS.default, 1, 10):to(dev or "cuda")
end

-- o (bench/dist.lua's DDP cases): device (default "cuda"), wrap(model) -> what the forward runs through, no_sync
-- (the forward and backward inside the wrapper's no_sync: DDP's hooks without its communication)
local function train_step(flame, o)
  o = o or {}
  local F = flame.F
  local dev = o.device or "cuda"
  local net = model(flame, dev)
  local fwd = o.wrap and o.wrap(net) or net
  local params = net:parameters()
  local opt = flame.optim.AdamW(params, {lr = 5e-4, weight_decay = 0.01})
  local sched = flame.schedules.DDPMScheduler({num_train_timesteps = 1000, beta_schedule = "squaredcos_cap_v2",
    prediction_type = "v_prediction"})
  local B = 128
  local x0 = flame.rand(B, 1, 32, 32, {device = dev}) * 2 - 1
  local y = flame.randint(1, 11, {B}, {dtype = "i64", device = dev})
  local null = flame.full({B}, 11, {dtype = "i64", device = dev})
  return function()
    local noise = flame.randn(x0.shape, {device = dev})
    local t = flame.randint(0, 1000, {B}, {dtype = "i64", device = dev})
    local xt = sched:add_noise(x0, noise, t)
    local target = sched:get_velocity(x0, noise, t)
    local yd = flame.where(flame.rand({B}, {device = dev}):lt(0.1), null, y)
    opt:zero_grad()
    local function pass()
      local pred = flame.autocast("bf16", function() return fwd(xt, t:float(), yd) end)
      F.mse_loss(pred:float(), target):backward()
    end
    if o.no_sync then fwd:no_sync(pass) else pass() end
    flame.optim.clip_grad_norm(params, 1.0)
    opt:step()
  end
end

local function sample(flame)
  local net = model(flame)
  local ids = flame.arange(1, 11, 1, {dtype = "i64", device = "cuda"}):unsqueeze(2):expand(10, 100):reshape(1000)
  local o = {sampler = "ddim", steps = 50, cfg_scale = 2.0, amp = "bf16", num_classes = 10, channels = 1,
             image_size = 32, device = "cuda"}
  return function() lib.sample(net, ids, 1000, o) end
end

-- flops from the model's count of multiply-adds per image forward (convs, linears, attention matmuls): a training
-- step ~3x the forward, sampling 50 forwards of 2000 images.
local macs = lib.model(lib.PRESETS.default, 1, 10):macs()

return {
  train_step = train_step, -- for bench/dist.lua
  {name = "unet train step bf16 autocast b128 32x32 (default preset)", target = 1.0, iters = 10, reps = 5,
   flops = 6 * macs * 128, setup = train_step},
  {name = "unet sample 1000 images 50 ddim steps cfg bf16 (default preset)", target = 1.0, iters = 1, reps = 3,
   flops = 2 * macs * 2000 * 50, setup = sample},
}
