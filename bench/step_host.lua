-- The host cost of examples/train.lua's training step, measured on the CPU with negligible compute (issue 12: on
-- the H200 that step is host-bound, so the cost per op and the ops per step are what bound it).
--   flame-lua bench/step_host.lua [--amp bf16|off] [--channels N] [--reps N] [--profile] [--device cuda]
--     [--size S] [--batch B]
-- The step is train.lua's: the batch (index_select), loss_of (noise, timesteps, add_noise, get_velocity, label
-- dropout, the forward under autocast, mse_loss), zero_grad, backward, clip_grad_norm, AdamW, the LR scheduler and
-- the EMA update. The model is the default preset's UNet structure (mults {1, 2, 2}, 2 res blocks a level, attention
-- at the 2nd and 3rd levels, dropout 0.1, 10 classes) on 8x8 images at batch 1, 8 channels (96 on the GPU:
-- the op count does not depend on it) and f32, so that almost all the time is the host's. Prints ms per step (the
-- median of --reps timed runs of 5 steps, with the min and max), the ops dispatched per step (flame.profile's call
-- counts) and us per op; --profile adds the op table. --device cuda runs the same step on the GPU: there the profile's
-- syncs charge each op its host path, launch and (tiny) kernel, so its rows say which op classes cost the most per
-- call; --size and --batch set the images (defaults 8 and 1).
local flame = require "flame"
local F = flame.F

local o = {amp = "bf16", channels = 8, reps = 15, device = "cpu", size = 8, batch = 1}
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--profile" then o.profile = true
  elseif a == "--amp" or a == "--device" then
    o[a:sub(3)] = arg[i + 1]; i = i + 1
  elseif a == "--channels" or a == "--reps" or a == "--size" or a == "--batch" then
    o[a:sub(3)] = assert(tonumber(arg[i + 1]), a .. " needs a number"); i = i + 1
  else error("step_host.lua: unknown argument " .. a) end
  i = i + 1
end
if o.amp == "off" then o.amp = nil end
flame.set_num_threads(1) -- the host path is single-threaded; one thread keeps the other core's jobs out of it

local lib = dofile("examples/diffusion_lib.lua")
local P = lib.PRESETS.default
local SIZE, BATCH, DEV = o.size, o.batch, {device = o.device}
local N = math.max(16, BATCH) -- the data set the batches are drawn from
flame.manual_seed(0)
local model = lib.unet.UNet({in_channels = 1, channels = o.channels, mults = P.mults,
  num_res_blocks = P.num_res_blocks, attn_res = {SIZE // 2, SIZE // 4}, -- the levels {16, 8} are at 32x32
  num_classes = 10, image_size = SIZE, dropout = P.dropout})
model:to(o.device)
local params = model:parameters()
local opt = flame.optim.AdamW(params, {lr = P.lr, weight_decay = 0.01})
local sched = flame.optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = P.warmup, total_steps = P.steps})
local ema = flame.optim.EMA(params, P.ema_decay, {warmup = true})
local noise_sched = flame.schedules.DDPMScheduler({num_train_timesteps = lib.NUM_TRAIN_TIMESTEPS,
  beta_schedule = "squaredcos_cap_v2", prediction_type = "v_prediction"})
local images = flame.randn(N, 1, SIZE, SIZE, DEV)
local labels = flame.randint(1, 11, {N}, {dtype = "i64", device = o.device})

local function step()
  local idx = flame.randperm(N, {dtype = "i64", device = o.device}):narrow(1, 1, BATCH)
  local x0, y = images:index_select(1, idx), labels:index_select(1, idx)
  local noise = flame.randn(x0.shape, DEV)
  local t = flame.randint(0, lib.NUM_TRAIN_TIMESTEPS, {BATCH}, {dtype = "i64", device = o.device})
  local xt = noise_sched:add_noise(x0, noise, t)
  local target = noise_sched:get_velocity(x0, noise, t)
  local drop = flame.rand({BATCH}, DEV):lt(0.1)
  y = flame.where(drop, flame.full({BATCH}, 11, {dtype = "i64", device = o.device}), y)
  local pred = lib.forward(model, o.amp, xt, t:float(), y)
  local loss = F.mse_loss(pred:float(), target)
  opt:zero_grad()
  loss:backward()
  flame.optim.clip_grad_norm(params, 1.0)
  opt:step()
  sched:step()
  ema:update()
  return loss
end

local sync = o.device == "cuda" and flame.cuda.synchronize or function() end
for _ = 1, 5 do step() end
sync()
local ts = {}
for r = 1, o.reps do
  collectgarbage("step")
  local t0 = flame.timer()
  for _ = 1, 5 do step() end
  sync()
  ts[r] = (flame.timer() - t0) / 5
end
table.sort(ts)
local ms = ts[(#ts + 1) // 2] * 1e3

local rep = flame.profile(function() for _ = 1, 3 do step() end end, {device = o.device})
local calls = 0
for _, e in ipairs(rep) do calls = calls + e.calls end
local ops = calls / 3
print(string.format("step_host: %s, amp %s, %d channels, %dx%d batch %d: %.3f ms per step (min %.3f, max %.3f), " ..
  "%.0f ops per step, %.2f us per op", o.device, o.amp or "off", o.channels, SIZE, SIZE, BATCH, ms, ts[1] * 1e3,
  ts[#ts] * 1e3, ops, ms * 1e3 / ops))
if o.profile then rep:print(60) end
