-- Scores a diffusion checkpoint of examples/train.lua with the classifier of examples/classify.lua:
--   * conditional accuracy: the classifier's argmax is the requested class, over N class-conditional samples
--     (N/10 per class) from the EMA weights, with train.lua's sampler (examples/diffusion_lib.lua);
--   * the Fréchet distance between the classifier's penultimate features of the samples and of N real test
--     images (an FID whose feature net we trained ourselves), and its floor: the same distance between those N
--     test images and N other held-out ones (the test split's next N; the training split when 2N > 10000).
-- Samples of a preset smaller than 32x32 (tiny: 16x16) are scaled up to the classifier's 32x32 (nearest), and
-- the real images take the same path (averaged down to the preset's size as train.lua trains on them, then up).
--   flame-lua examples/score.lua --device cuda                     -- out/train/checkpoint.safetensors, N = 1000
--   flame-lua examples/score.lua --checkpoint F --classifier G --n 200 --cfg-scale 3
-- Prints the scores, then one JSON line (for scripts) starting with {"score": .
local flame = require "flame"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local lib = dofile(here .. "/diffusion_lib.lua")
local Net = dofile(here .. "/classifier_net.lua")
local frechet = dofile(here .. "/frechet.lua")

local USAGE = [[
usage: flame-lua examples/score.lua [options]
  --checkpoint FILE       a checkpoint of examples/train.lua (out/train/checkpoint.safetensors)
  --classifier FILE       weights of examples/classify.lua (out/classifier.safetensors)
  --device cpu|cuda[:N]   where to sample (default: cuda when available, else cpu)
  --n N                   samples, a multiple of 10: N/10 per class (1000)
  --cfg-scale X           classifier-free guidance scale (1.5)
  --sampler ddim|euler    sampler (euler)
  --sample-steps N        sampler steps, at most 50 (the checkpoint preset's)
  --batch N               samples per sampling call (1000 on cuda, 100 on cpu)
  --amp bf16|off          autocast while sampling (bf16 on cuda, off on cpu)
  --seed N                sampling seed (0)
  --data DIR              the Fashion-MNIST IDX files ($FLAME_DATASETS/fashion-mnist, /usr/share/datasets/fashion-mnist)
  --help                  this text]]

local C = lib.cli("score.lua", USAGE)
local opt = C.parse(arg or {}, {checkpoint = C.str, classifier = C.str, device = C.device_name, n = C.posint,
  ["cfg-scale"] = C.number, sampler = C.choice({"ddim", "euler"}), ["sample-steps"] = C.posint, batch = C.posint,
  amp = C.choice({"bf16", "off"}), seed = C.nonneg_int, data = C.str})
local device = C.device(opt)
local N = opt.n or 1000
if N % 10 ~= 0 then C.usage_error("--n must be a multiple of 10 (N/10 samples per class), got " .. N) end
if N > 10000 then C.usage_error("--n is at most 10000 (the test split), got " .. N) end
local ckpt_path = opt.checkpoint or "out/train/checkpoint.safetensors"
local cls_path = opt.classifier or "out/classifier.safetensors"
local amp = opt.amp or (device == "cpu" and "off" or "bf16")
if amp == "bf16" and not flame.autocast then amp = "off" end

-- The diffusion model with its EMA weights.
local ok, st = pcall(flame.utils.load_training_state, ckpt_path, nil, {device = device})
if not ok then C.usage_error("--checkpoint: cannot read " .. ckpt_path .. ": " .. tostring(st)) end
if st.format ~= "flame-train-1" or type(st.run) ~= "table" then
  C.usage_error("--checkpoint: " .. ckpt_path .. " is not a checkpoint of examples/train.lua")
end
if st.run.data then C.usage_error("--checkpoint: " .. ckpt_path .. " was trained on --data " .. st.run.data ..
  ", not Fashion-MNIST: the classifier cannot score it") end
local P = lib.PRESETS[st.run.preset]
local model = lib.model(P, 1, 10):to(device)
local ema = flame.optim.EMA(model:parameters(), P.ema_decay)
ok = pcall(function()
  model:load_state_dict(st.model)
  ema:load_state_dict(st.ema)
end)
if not ok then C.usage_error("--checkpoint: " .. ckpt_path .. " does not hold a " .. st.run.preset .. " preset model") end
ema:copy_to()
local steps = opt["sample-steps"] or P.sample_steps
if steps > 50 then C.usage_error("--sample-steps is at most 50, got " .. steps) end

-- The classifier.
local classifier = Net():to(device)
local ok2, weights, meta = pcall(flame.load, cls_path, {device = device})
if not ok2 then C.usage_error("--classifier: cannot read " .. cls_path .. ": " .. tostring(weights)) end
if not pcall(classifier.load_state_dict, classifier, weights) then
  C.usage_error("--classifier: " .. cls_path .. " is not a model of examples/classify.lua")
end
classifier:eval()

-- Images at the preset's size -> the classifier's 32x32.
local function to32(x)
  x = x:clamp(-1, 1)
  if x:size(3) == 32 then return x end
  return flame.F.interpolate(x, {size = {32, 32}, mode = "nearest"})
end

-- Logits and penultimate features of x, in batches.
local function classify(x)
  local logits, feats = {}, {}
  flame.no_grad(function()
    for i = 1, x:size(1), 500 do
      local f = classifier:features(to32(x:narrow(1, i, math.min(500, x:size(1) - i + 1))))
      feats[#feats + 1], logits[#logits + 1] = f, classifier.head(f)
    end
  end)
  return flame.cat(logits, 1), flame.cat(feats, 1)
end

-- The real images: N test images for the reference, N other held-out ones for the floor.
local okd, test_x, test_y = pcall(lib.fashion_mnist, P.image_size, device, {root = opt.data, train = false})
if not okd then C.fail(test_x) end
flame.manual_seed(opt.seed or 0)
local perm = flame.randperm(test_x:size(1), {dtype = "i64", device = device})
local ref_idx = perm:narrow(1, 1, N)
local ref_x, ref_y = test_x:index_select(1, ref_idx), test_y:index_select(1, ref_idx)
local floor_x
if 2 * N <= test_x:size(1) then
  floor_x = test_x:index_select(1, perm:narrow(1, N + 1, N))
else
  local train_x = lib.fashion_mnist(P.image_size, device, {root = opt.data})
  floor_x = train_x:index_select(1, flame.randperm(train_x:size(1), {dtype = "i64", device = device}):narrow(1, 1, N))
end

-- The samples: N/10 per class, in sampling calls of --batch.
local batch = math.min(opt.batch or (device == "cpu" and 100 or 1000), N)
local labels = flame.arange(1, 11, 1, {dtype = "i64", device = device}):unsqueeze(2):expand(10, N // 10):reshape(N)
local so = {sampler = opt.sampler or lib.DEFAULT_SAMPLER, steps = steps, cfg_scale = opt["cfg-scale"] or lib.DEFAULT_CFG_SCALE, amp = amp,
            num_classes = 10, channels = 1, image_size = P.image_size, device = device}
print(string.format("score.lua: %s (%s preset, step %d), %d samples, %s %d steps, guidance %g, amp %s, on %s",
  ckpt_path, st.run.preset, st.step, N, so.sampler, steps, so.cfg_scale, amp, device))
local bar = flame.progress(N, {desc = "sample"})
local t0 = flame.timer()
local parts = {}
for i = 1, N, batch do
  local n = math.min(batch, N - i + 1)
  parts[#parts + 1] = lib.sample(model, labels:narrow(1, i, n), n, so)
  bar:update(n)
end
local samples = flame.cat(parts, 1)
samples:sum():item() -- wait for the device before reading the clock
local sample_s = flame.timer() - t0
bar:close()

local s_logits, s_feat = classify(samples)
local r_logits, r_feat = classify(ref_x)
local _, f_feat = classify(floor_x)
local acc = s_logits:argmax(2):eq(labels):float():mean():item()
local real_acc = r_logits:argmax(2):eq(ref_y):float():mean():item()
local ref_stats = frechet.stats(r_feat)
local fd = frechet.distance(ref_stats, frechet.stats(s_feat))
local fd_floor = frechet.distance(ref_stats, frechet.stats(f_feat))

print(string.format("conditional accuracy %.4f (the classifier on %d real test images at this size: %.4f)", acc, N,
  real_acc))
print(string.format("Fréchet distance %.4f (floor, real held-out vs real test: %.4f); sampling %.2f s", fd, fd_floor,
  sample_s))
print(string.format('{"score": 1, "checkpoint": %q, "preset": %q, "step": %d, "n": %d, "sampler": %q, "steps": %d, ' ..
  '"cfg_scale": %.17g, "accuracy": %.6f, "real_accuracy": %.6f, "frechet": %.6f, "frechet_floor": %.6f, ' ..
  '"sample_s": %.3f, "classifier_test_accuracy": %s}', ckpt_path, st.run.preset, st.step, N, so.sampler, steps,
  so.cfg_scale, acc, real_acc, fd, fd_floor, sample_s, meta and meta.test_accuracy or "null"))
