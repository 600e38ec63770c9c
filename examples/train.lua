-- A class-conditional diffusion model trained on Fashion-MNIST (or a folder of your images), sampled with
-- classifier-free guidance.
--   flame-lua examples/train.lua                       -- the CPU "tiny" preset: a couple of minutes on 2 cores
--   flame-lua examples/train.lua --device cuda         -- the "default" preset, meant for one H200
--   flame-lua examples/train.lua --help                -- every option
-- The model (examples/unet.lua) predicts v (v-prediction DDPM, cosine "squaredcos_cap_v2" betas); noise, targets
-- and sampling come from flame.schedules (DDIM or Euler). Training: AdamW, warmup + cosine LR, EMA of the weights,
-- gradient clipping, bf16 autocast on CUDA. Written under --out: checkpoint.safetensors every --ckpt-every steps
-- and at the end (model, EMA, optimizer, LR schedule, step, generator and data order: --resume continues
-- bit-exactly), samples-<step>.png every --sample-every steps and samples.png at the end, from the EMA weights:
-- one row per class. examples/score.lua scores a checkpoint (conditional accuracy, Fréchet distance) with the
-- classifier of examples/classify.lua. --ddp trains on several GPUs through the launcher (examples/ddp_lib.lua):
--   flame-lua --nproc 2 examples/train.lua --ddp      -- --batch images per GPU a step; rank 0 writes the files
local flame = require "flame"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local lib = dofile(here .. "/diffusion_lib.lua")
local ddp_lib = dofile(here .. "/ddp_lib.lua")
local PRESETS, NUM_TRAIN_TIMESTEPS = lib.PRESETS, lib.NUM_TRAIN_TIMESTEPS
local LABEL_DROPOUT = 0.1 -- the share of training labels replaced by the null class (for guidance)
local GRAD_CLIP = 1.0

---------------------------------------------------------------------------------------------------- options

local USAGE = [[
usage: flame-lua examples/train.lua [options]
  --device cpu|cuda[:N]   where to train (default: cuda when available, else cpu)
  --preset tiny|default   model and schedule sizes (default: default on cuda, tiny on cpu)
  --steps N               training steps (preset)
  --batch N               batch size (preset)
  --lr X                  peak learning rate (preset)
  --seed N                random seed (0)
  --out DIR               output folder (out/train)
  --data DIR              train on DIR/<class>/*.png|jpg instead of Fashion-MNIST (one subfolder: unconditional)
  --channels N            image channels for --data (3)
  --sampler ddim|euler    sampler for the sample grids (euler)
  --sample-steps N        sampler steps, at most 50 (preset)
  --cfg-scale X           classifier-free guidance scale (1.5)
  --per-class N           samples per class in a grid (preset)
  --sample-every N        a grid every N steps, 0 for none but the last (preset)
  --ckpt-every N          a checkpoint every N steps (preset)
  --resume [FILE]         continue from FILE (default: OUT/checkpoint.safetensors)
  --stop-at N             stop after step N, writing a checkpoint, as an interrupted run would
  --amp bf16|off          autocast (bf16 on cuda, off on cpu)
  --ddp                   data-parallel over the ranks of flame-lua --nproc N (--batch per rank)
  --help                  this text]]

local C = lib.cli("train.lua", USAGE)
local usage_error, fail = C.usage_error, C.fail
local posint, nonneg_int, number, choice, str, device_name = C.posint, C.nonneg_int, C.number, C.choice, C.str,
  C.device_name

local OPTIONS = {device = device_name, preset = choice({"tiny", "default"}), steps = posint, batch = posint,
  lr = number, seed = nonneg_int, out = str, data = str, channels = posint, sampler = choice({"ddim", "euler"}),
  ["sample-steps"] = posint, ["cfg-scale"] = number, ["per-class"] = posint, ["sample-every"] = nonneg_int,
  ["ckpt-every"] = nonneg_int, ["stop-at"] = posint, amp = choice({"bf16", "off"})}
-- Options that define the training run: a resumed run takes them from the checkpoint.
local RUN_KEYS = {"preset", "steps", "batch", "lr", "seed", "data", "channels"}

local opt = C.parse(arg or {}, OPTIONS, {resume = true, ddp = true})
local device = C.device(opt)
local dist = opt.ddp and ddp_lib.init(opt, C) -- nil without --ddp
if dist then device = dist.device end
local main = not dist or dist.main -- the rank that prints and writes files
local print = main and print or function() end
local out_dir = opt.out or "out/train"
local ckpt_path = out_dir .. "/checkpoint.safetensors"

-- A resumed run reads its run-defining options from the checkpoint; giving a different value is an error.
local resume_path
if opt.resume then
  local path = opt.resume == true and ckpt_path or opt.resume
  local ok, st = pcall(flame.utils.load_training_state, path, nil, {device = device})
  if not ok then usage_error("--resume: cannot read " .. path .. ": " .. tostring(st)) end
  if type(st.run) ~= "table" or st.format ~= "flame-train-1" then
    usage_error("--resume: " .. path .. " is not a checkpoint of examples/train.lua")
  end
  for _, k in ipairs(RUN_KEYS) do
    if opt[k] ~= nil and opt[k] ~= st.run[k] then
      usage_error(string.format("--resume: --%s %s differs from the checkpoint's %s", k, tostring(opt[k]),
        tostring(st.run[k])))
    end
    opt[k] = st.run[k]
  end
  resume_path = path
end

local preset_name = opt.preset or (device == "cpu" and "tiny" or "default")
local P = PRESETS[preset_name]
local run = {preset = preset_name, steps = opt.steps or P.steps, batch = opt.batch or P.batch, lr = opt.lr or P.lr,
             seed = opt.seed or 0, data = opt.data, channels = opt.data and (opt.channels or 3) or nil}
local cfg = {sampler = opt.sampler or lib.DEFAULT_SAMPLER, sample_steps = opt["sample-steps"] or P.sample_steps,
             cfg_scale = opt["cfg-scale"] or lib.DEFAULT_CFG_SCALE, per_class = opt["per-class"] or P.per_class,
             sample_every = opt["sample-every"] or P.sample_every, ckpt_every = opt["ckpt-every"] or P.ckpt_every,
             stop_at = opt["stop-at"], amp = opt.amp or (device == "cpu" and "off" or "bf16")}
if cfg.sample_steps > 50 then usage_error("--sample-steps is at most 50, got " .. cfg.sample_steps) end
if cfg.amp == "bf16" and not flame.autocast then
  io.stderr:write("train.lua: note: this build has no flame.autocast; training in f32\n")
  cfg.amp = "off"
end
flame.manual_seed(run.seed)

---------------------------------------------------------------------------------------------------- data

-- The whole training set as one tensor on the device, in [-1, 1], and its labels (1-based; none when
-- unconditional). Fashion-MNIST is padded from 28x28 to 32x32 (with the background value) and averaged down to
-- the preset's size; --data images are resized by flame.image.load.
local function load_data()
  local size = P.image_size
  if run.data then
    local ds = flame.data.ImageFolder(run.data, {size = size, channels = run.channels})
    if #ds == 0 then usage_error("--data " .. run.data .. ": no .png/.jpg/.jpeg images in its subfolders") end
    local xs, ys = {}, {}
    for i = 1, #ds do
      local s = ds:get(i)
      xs[i], ys[i] = s[1], s[2]
    end
    local x = flame.stack(xs, 1)
    local classes = #ds.classes > 1 and ds.classes or {}
    return x:mul(2):sub(1):to(device), flame.tensor(ys, {dtype = "i64", device = device}), classes
  end
  return lib.fashion_mnist(size, device)
end

local ok, images, labels, classes = pcall(load_data)
if not ok then fail(images) end
local num_classes, N = #classes, images:size(1)

-- The data order: one permutation per epoch from the global generator, consumed batch by batch. Its state (the
-- permutation and the position) is part of the checkpoint, so a resumed run sees the batches the uninterrupted
-- run would have (flame.data.DataLoader reshuffles inside its iterator and cannot be resumed mid-epoch).
local order = {perm = nil, pos = 0, epoch = 0}
local function next_batch(bs)
  if order.perm == nil or order.pos + bs > N then
    order.perm = flame.randperm(N, {dtype = "i64", device = device})
    order.pos, order.epoch = 0, order.epoch + 1
  end
  local idx = order.perm:narrow(1, order.pos + 1, bs)
  order.pos = order.pos + bs
  return images:index_select(1, idx), labels:index_select(1, idx)
end
if run.batch > N then usage_error(string.format("--batch %d is larger than the data set (%d images)", run.batch, N)) end
local dist_order -- --ddp: this rank's DistributedSampler share of each epoch
if dist then
  local why
  dist_order, why = dist:order(N, run.batch, run.seed)
  if not dist_order then usage_error(why) end
  next_batch = function()
    local idx = dist_order.next()
    return images:index_select(1, idx), labels:index_select(1, idx)
  end
end

---------------------------------------------------------------------------------------------------- model

local model = lib.model(P, images:size(2), num_classes):to(device)
local params = model:parameters()
local opt_ = flame.optim.AdamW(params, {lr = run.lr, weight_decay = 0.01})
local sched = flame.optim.lr_scheduler.cosine_with_warmup(opt_, {warmup_steps = P.warmup, total_steps = run.steps})
local ema = flame.optim.EMA(params, P.ema_decay, {warmup = true})
local noise_sched = flame.schedules.DDPMScheduler({num_train_timesteps = NUM_TRAIN_TIMESTEPS,
  beta_schedule = "squaredcos_cap_v2", prediction_type = "v_prediction"})

local step = 0

-- The checkpoint: flame.utils.save_training_state saves the objects' state dicts, the plain values and the
-- generator's state; loading gives each object its entry back and restores the generator.
local function objects() return {model = model, optimizer = opt_, lr_scheduler = sched, ema = ema} end

local function save_checkpoint()
  if not main then return end
  local st = objects()
  st.format, st.run, st.step = "flame-train-1", run, step
  st.data = dist_order and dist_order.state() or {perm = order.perm, pos = order.pos, epoch = order.epoch}
  flame.utils.save_training_state(ckpt_path, st)
end

local function resume(path)
  local st = flame.utils.load_training_state(path, objects(), {device = device})
  step = st.step
  if dist_order then dist_order.load(st.data)
  else order.perm, order.pos, order.epoch = st.data.perm, st.data.pos, st.data.epoch end
end

---------------------------------------------------------------------------------------------------- sampling

local net = dist and dist:wrap(model) or model -- what the training forward runs
local function forward(x, t, y) return lib.forward(net, cfg.amp, x, t, y) end

-- n images of the given classes (an i64 tensor, or nil when unconditional) with the current weights.
local function sample(class_ids, n)
  return lib.sample(model, class_ids, n, {sampler = cfg.sampler, steps = cfg.sample_steps, cfg_scale = cfg.cfg_scale,
    amp = cfg.amp, num_classes = num_classes, channels = images:size(2), image_size = P.image_size, device = device})
end

-- A grid from the EMA weights: one row per class (per_class columns), or 8x8 when unconditional. The sampling
-- noise comes from its own seed and the generator is put back after, so grids do not change the training run.
local function write_grid(path)
  local seed, offset = flame.autograd._rng_state()
  flame.manual_seed(run.seed + 1)
  ema:store()
  ema:copy_to()
  local x, nrow
  if num_classes > 0 then
    local k = cfg.per_class
    local rows = math.min(num_classes, 10)
    local ids = flame.arange(1, rows + 1, 1, {dtype = "i64", device = device}):unsqueeze(2):expand(rows, k):reshape(rows * k)
    x, nrow = sample(ids, rows * k), k
  else
    x, nrow = sample(nil, 64), 8
  end
  ema:restore()
  flame.autograd._set_rng_state(seed, offset)
  flame.image.save(path, flame.image.grid(x:clamp(-1, 1), {nrow = nrow}), {range = "-1,1"})
  return path
end

---------------------------------------------------------------------------------------------------- training

-- One step: x0 from the data, t uniform over the training timesteps, x_t = add_noise(x0, noise, t), the model
-- predicts v = get_velocity(x0, noise, t); labels are replaced by the null class with probability LABEL_DROPOUT.
local function loss_of(x0, y)
  local B = x0:size(1)
  local noise = flame.randn(x0.shape, {device = device})
  local t = flame.randint(0, NUM_TRAIN_TIMESTEPS, {B}, {dtype = "i64", device = device})
  local xt = noise_sched:add_noise(x0, noise, t)
  local target = noise_sched:get_velocity(x0, noise, t)
  if num_classes > 0 then
    local drop = flame.rand({B}, {device = device}):lt(LABEL_DROPOUT)
    y = flame.where(drop, flame.full({B}, num_classes + 1, {dtype = "i64", device = device}), y)
  else
    y = nil
  end
  local pred = forward(xt, t:float(), y)
  return flame.F.mse_loss(pred:float(), target)
end

local function mkdir(path) os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "'") end
mkdir(out_dir)

if resume_path then resume(resume_path) end
if dist then dist:seed_ranks() end
local macs = model:macs()
print(string.format("train.lua: %s preset on %s: %.2fM parameters, %.3f GMACs per image forward " ..
  "(~%.1f GFLOP per step of %d), %d images of %dx%d, %s, %s, amp %s%s", preset_name, device,
  model:num_parameters() / 1e6, macs / 1e9, 6 * macs * run.batch / 1e9, run.batch, N, P.image_size, P.image_size,
  num_classes > 0 and (num_classes .. " classes") or "unconditional", run.data or "Fashion-MNIST", cfg.amp,
  step > 0 and (", resumed at step " .. step) or ""))
if dist then print(string.format("ddp: %d rank%s x batch %d, rank 0 on %s", dist.world, dist.world > 1 and "s" or "",
  run.batch, device)) end

local last = math.min(run.steps, cfg.stop_at or run.steps)
local bar = dist and dist:progress(last - step, {desc = "train"}) or flame.progress(last - step, {desc = "train"})
local meter = ddp_lib.throughput(device, dist and dist.world or 1, run.batch, step, last)
local first_loss, loss
local log_every = math.max(1, run.steps // 10)
while step < last do
  local host0 = flame.timer()
  local x0, y = next_batch(run.batch)
  loss = loss_of(x0, y)
  opt_:zero_grad()
  loss:backward()
  local gnorm = flame.optim.clip_grad_norm(params, GRAD_CLIP)
  opt_:step()
  sched:step()
  ema:update()
  step = step + 1
  meter.step(step, flame.timer() - host0)
  first_loss = first_loss or loss:item()
  bar:update(1, {loss = loss, lr = sched:get_last_lr()[1]})
  if step % log_every == 0 or step == 1 then
    local shown = dist and dist:mean(loss) or loss -- with --ddp: the mean over the ranks
    bar:print(string.format("step %5d  loss %.4f  grad-norm %.3f  lr %.3g", step, shown:item(), gnorm:item(),
      sched:get_last_lr()[1]))
  end
  if cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0 and step < last then save_checkpoint() end
  if main and cfg.sample_every > 0 and step % cfg.sample_every == 0 and step < run.steps then
    bar:print("samples: " .. write_grid(string.format("%s/samples-%06d.png", out_dir, step)))
  end
end
bar:close()
if meter.line() then print(meter.line()) end
save_checkpoint()
print(string.format("checkpoint: %s (step %d%s)", ckpt_path, step,
  first_loss and string.format(", loss %.4f at the first step of this run, %.4f at the last", first_loss,
  loss:item()) or ""))
if main and (step >= run.steps or not cfg.stop_at) then
  print("samples: " .. write_grid(out_dir .. "/samples.png"))
end
if dist then dist:finish(model) end
