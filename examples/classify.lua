-- A Fashion-MNIST classifier (examples/classifier_net.lua: a small CNN) trained with flame; examples/score.lua
-- scores the diffusion model's samples with it. The images are in the form examples/train.lua feeds its UNet
-- (padded to 32x32, [-1, 1]).
--   flame-lua examples/classify.lua --device cuda          -- 5 epochs at batch 256 (target: >= 90% test accuracy)
--   flame-lua examples/classify.lua --epochs 2 --batch 128 --limit 8000   -- a CPU run of some minutes on 2 cores
--                                                          -- (84% test accuracy; the whole set takes ~30 min/epoch)
--   flame-lua examples/classify.lua --help                 -- every option
-- Writes the weights (safetensors; metadata: the test accuracy) to --out.
local flame = require "flame"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local lib = dofile(here .. "/diffusion_lib.lua")
local Net = dofile(here .. "/classifier_net.lua")

local USAGE = [[
usage: flame-lua examples/classify.lua [options]
  --device cpu|cuda[:N]   where to train (default: cuda when available, else cpu)
  --epochs N              passes over the training set (5)
  --batch N               batch size (256)
  --lr X                  peak learning rate of AdamW (warmup + cosine) (0.002)
  --seed N                random seed (0)
  --out FILE              the weights (out/classifier.safetensors)
  --data DIR              the Fashion-MNIST IDX files ($FLAME_DATASETS/fashion-mnist, /usr/share/datasets/fashion-mnist)
  --limit N               only the first N training and N test images (smoke tests)
  --help                  this text]]

local C = lib.cli("classify.lua", USAGE)
local opt = C.parse(arg or {}, {device = C.device_name, epochs = C.posint, batch = C.posint, lr = C.number,
  seed = C.nonneg_int, out = C.str, data = C.str, limit = C.posint})
local device = C.device(opt)
local epochs, batch, lr = opt.epochs or 5, opt.batch or 256, opt.lr or 2e-3
local out_path = opt.out or "out/classifier.safetensors"
flame.manual_seed(opt.seed or 0)

local function load(train)
  local x, y = lib.fashion_mnist(32, device, {root = opt.data, train = train})
  if opt.limit and opt.limit < x:size(1) then x, y = x:narrow(1, 1, opt.limit), y:narrow(1, 1, opt.limit) end
  return x, y
end
local ok, xtr, ytr = pcall(load, true)
if not ok then C.fail(xtr) end
local xte, yte = load(false)
local N = xtr:size(1)
if batch > N then C.usage_error(string.format("--batch %d is larger than the data set (%d images)", batch, N)) end

local model = Net():to(device)
local params = model:parameters()
local steps_per_epoch = N // batch
local total = epochs * steps_per_epoch
local optimizer = flame.optim.AdamW(params, {lr = lr, weight_decay = 0.05})
local sched = flame.optim.lr_scheduler.cosine_with_warmup(optimizer,
  {warmup_steps = math.max(1, total // 20), total_steps = total})

-- Test accuracy: the share of argmax == label, in batches, in eval mode (no dropout).
local function accuracy(x, y)
  local right = 0
  model:eval()
  flame.no_grad(function()
    for i = 1, x:size(1), 1000 do
      local n = math.min(1000, x:size(1) - i + 1)
      right = right + model(x:narrow(1, i, n)):argmax(2):eq(y:narrow(1, i, n)):sum():item()
    end
  end)
  model:train()
  return right / x:size(1)
end

print(string.format("classify.lua: %d parameters on %s, %d training images, %d epochs of %d steps at batch %d",
  model:num_parameters(), device, N, epochs, steps_per_epoch, batch))
local bar = flame.progress(total, {desc = "classify"})
local acc
for epoch = 1, epochs do
  local perm = flame.randperm(N, {dtype = "i64", device = device})
  local loss
  for s = 1, steps_per_epoch do
    local idx = perm:narrow(1, (s - 1) * batch + 1, batch)
    loss = flame.F.cross_entropy(model(xtr:index_select(1, idx)), ytr:index_select(1, idx))
    optimizer:zero_grad()
    loss:backward()
    optimizer:step()
    sched:step()
    bar:update(1, {loss = loss})
  end
  acc = accuracy(xte, yte)
  bar:print(string.format("epoch %d  loss %.4f  test accuracy %.4f", epoch, loss:item(), acc))
end
bar:close()

os.execute("mkdir -p '" .. (out_path:match("^(.*)/[^/]*$") or "."):gsub("'", "'\\''") .. "'")
flame.save(out_path, model:state_dict(), {format = "flame-classifier-1", test_accuracy = string.format("%.4f", acc)})
print(string.format("test accuracy %.4f (%d test images); weights: %s", acc, xte:size(1), out_path))
