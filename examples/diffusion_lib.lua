-- What examples/train.lua, examples/score.lua and examples/classify.lua share: the command-line parsing, the
-- presets of the diffusion model, the Fashion-MNIST tensors in the form the models see ([-1, 1], padded to
-- 32x32), the model's forward under autocast and the guided sampler.
--   local lib = dofile(here .. "/diffusion_lib.lua")
local flame = require "flame"

local M = {}
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
M.unet = dofile(here .. "/unet.lua")

M.PRESETS = {
  -- 16x16 images (Fashion-MNIST padded to 32x32, then halved), ~180k parameters: about 0.3 s a step on 2 cores, so
  -- 500 steps take 2 min 40 s (at 200 the samples were still noise-flecked blobs; at 500 rows of garments).
  tiny = {image_size = 16, channels = 16, mults = {1, 2}, num_res_blocks = 1, attn_res = {8}, dropout = 0,
          batch = 32, steps = 500, lr = 2e-3, warmup = 20, ema_decay = 0.99, sample_steps = 20, per_class = 6,
          sample_every = 0, ckpt_every = 250},
  -- 32x32, ~15M parameters, ~3.5 GMACs per image forward: ~2.7 TFLOP per step of 128 (fwd + bwd = 3x fwd).
  default = {image_size = 32, channels = 96, mults = {1, 2, 2}, num_res_blocks = 2, attn_res = {16, 8}, dropout = 0.1,
             batch = 128, steps = 6000, lr = 5e-4, warmup = 200, ema_decay = 0.999, sample_steps = 50, per_class = 10,
             sample_every = 2000, ckpt_every = 2000},
}
M.NUM_TRAIN_TIMESTEPS = 1000
-- The sampling defaults of train.lua's grids and score.lua, chosen by score.lua on the H200 (default preset, 6000
-- steps): Euler at guidance 1.5 gave 96.6% conditional accuracy and a Fréchet distance of 14.2 (floor 5.9). DDIM
-- clips its x0 prediction to [-1, 1] (diffusers' clip_sample), which saturates guided v-predictions: 88.6% and 9.7
-- unguided, but 60% and 96 at guidance 2.
M.DEFAULT_SAMPLER, M.DEFAULT_CFG_SCALE = "euler", 1.5

-- The UNet of preset P (a PRESETS entry) for images of in_channels and num_classes classes (0: unconditional).
function M.model(P, in_channels, num_classes)
  return M.unet.UNet({in_channels = in_channels, channels = P.channels, mults = P.mults,
    num_res_blocks = P.num_res_blocks, attn_res = P.attn_res, num_classes = num_classes, image_size = P.image_size,
    dropout = P.dropout})
end

---------------------------------------------------------------------------------------------------- options

-- cli(script, usage): option parsing for examples/<script>. Usage errors print "<script>: msg" and the --help hint
-- and exit 2; fail(msg) (not about the options) exits 1. The value checkers take (option name, text).
function M.cli(script, usage)
  local C = {}
  function C.usage_error(msg)
    io.stderr:write(script, ": ", msg, "\n(flame-lua examples/", script, " --help lists the options)\n")
    os.exit(2)
  end
  function C.fail(msg)
    io.stderr:write(script, ": ", (tostring(msg):gsub("^[^:]*:%d+: ", "")), "\n")
    os.exit(1)
  end
  function C.posint(name, v)
    local n = math.tointeger(tonumber(v))
    if not n or n < 1 then C.usage_error(string.format("--%s expects a positive integer, got '%s'", name, tostring(v))) end
    return n
  end
  function C.nonneg_int(name, v)
    local n = math.tointeger(tonumber(v))
    if not n or n < 0 then C.usage_error(string.format("--%s expects an integer >= 0, got '%s'", name, tostring(v))) end
    return n
  end
  function C.number(name, v)
    local x = tonumber(v)
    if not x or x ~= x then C.usage_error(string.format("--%s expects a number, got '%s'", name, tostring(v))) end
    return x + 0.0
  end
  function C.choice(list)
    return function(name, v)
      for _, c in ipairs(list) do if v == c then return v end end
      C.usage_error(string.format("--%s expects one of %s, got '%s'", name, table.concat(list, ", "), tostring(v)))
    end
  end
  function C.str(_, v) return v end
  function C.device_name(name, v)
    if v == "cpu" or v == "cuda" or (type(v) == "string" and v:match("^cuda:%d+$")) then return v end
    C.usage_error(string.format("--%s expects cpu, cuda or cuda:N, got '%s'", name, tostring(v)))
  end

  -- parse(argv, options, optional): options maps a name to its checker; `optional` names options whose value may
  -- be left out (true then; e.g. --resume [FILE]).
  function C.parse(argv, options, optional)
    optional = optional or {}
    local o, i = {}, 1
    while argv[i] do
      local a = argv[i]
      local name = a:match("^%-%-([%w%-]+)$")
      if a == "--help" or a == "-h" then print(usage) os.exit(0)
      elseif name and optional[name] then
        local nxt = argv[i + 1]
        if nxt and not nxt:match("^%-%-") then o[name] = nxt; i = i + 2 else o[name] = true; i = i + 1 end
      elseif name and options[name] then
        if argv[i + 1] == nil then C.usage_error("--" .. name .. " needs a value") end
        o[name] = options[name](name, argv[i + 1])
        i = i + 2
      else
        local known = {}
        for k in pairs(options) do known[#known + 1] = "--" .. k end
        table.sort(known)
        for k in pairs(optional) do known[#known + 1] = "--" .. k end
        known[#known + 1] = "--help"
        C.usage_error(string.format("unknown option '%s' (known: %s)", a, table.concat(known, " ")))
      end
    end
    return o
  end

  -- The device: --device, or cuda when there is one; a cuda device without CUDA is a usage error.
  function C.device(opt)
    local device = opt.device or (flame.cuda.is_available() and "cuda" or "cpu")
    if device ~= "cpu" and not flame.cuda.is_available() then C.usage_error("--device " .. device .. ": no CUDA device here") end
    return device
  end
  return C
end

---------------------------------------------------------------------------------------------------- data

-- Fashion-MNIST as the models see it: [N, 1, size, size] in [-1, 1] on `device` (28x28 padded to 32x32 with the
-- background value, then averaged down to `size`), the labels (1-based, i64) and the class names. root: the
-- folder of the IDX files (nil: $FLAME_DATASETS/fashion-mnist, then /usr/share/datasets/fashion-mnist); train:
-- the training split (true) or the test split.
function M.fashion_mnist(size, device, opts)
  opts = opts or {}
  local ds = flame.data.FashionMNIST(opts.root, {train = opts.train ~= false})
  local x = flame.F.pad(ds.images, {2, 2, 2, 2})
  if size ~= 32 then x = flame.F.adaptive_avg_pool2d(x, size) end
  return x:mul(2):sub(1):to(device), ds.labels:to(device), ds.classes
end

---------------------------------------------------------------------------------------------------- sampling

-- The model's forward, under bf16 autocast when amp == "bf16" (matmuls, convs and attention in bf16; norms,
-- softmax and the loss stay f32).
function M.forward(model, amp, x, t, y)
  if amp == "bf16" then return flame.autocast("bf16", function() return model(x, t, y) end) end
  return model(x, t, y)
end

-- The sampling scheduler ("ddim" or "euler") matching the training schedule (cosine betas, v-prediction), with
-- trailing timesteps (they start at the last training timestep: pure noise).
function M.sampler(name)
  local o = {num_train_timesteps = M.NUM_TRAIN_TIMESTEPS, beta_schedule = "squaredcos_cap_v2",
             prediction_type = "v_prediction", timestep_spacing = "trailing"}
  if name == "ddim" then
    o.set_alpha_to_one = false
    return flame.schedules.DDIMScheduler(o)
  end
  return flame.schedules.EulerDiscreteScheduler(o)
end

-- sample(model, class_ids, n, o): n images from `model` (in eval mode during the loop) for the classes
-- `class_ids` (an i64 tensor of n, or nil when unconditional), guided by o.cfg_scale:
-- v = v_null + s (v_class - v_null), the conditional and null halves in one batch. o: sampler ("ddim"|"euler"),
-- steps, cfg_scale, amp, num_classes, channels, image_size, device. The noise comes from the global generator.
function M.sample(model, class_ids, n, o)
  local S = M.sampler(o.sampler)
  S:set_timesteps(o.steps)
  local x = flame.randn(n, o.channels, o.image_size, o.image_size, {device = o.device}) * S.init_noise_sigma
  local guided = class_ids ~= nil and o.cfg_scale ~= 1
  local ids = class_ids
  if guided then ids = flame.cat({class_ids, flame.full({n}, o.num_classes + 1, {dtype = "i64", device = o.device})}, 1) end
  local ts = S.timesteps
  ts = flame.is_tensor(ts) and ts:totable() or ts
  model:eval()
  flame.no_grad(function()
    for _, t in ipairs(ts) do
      local xin = S:scale_model_input(x, t)
      local m = guided and flame.cat({xin, xin}, 1) or xin
      local tt = flame.full({m:size(1)}, t, {device = o.device})
      local v = M.forward(model, o.amp, m, tt, ids):float()
      if guided then
        local vc, vu = v:narrow(1, 1, n), v:narrow(1, n + 1, n)
        v = vu + (vc - vu) * o.cfg_scale
      end
      x = S:step(v, t, x)
    end
  end)
  model:train()
  return x
end

return M
