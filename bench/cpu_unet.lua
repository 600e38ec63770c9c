-- The diffusion UNet's CPU inference (docs/performance.md, "CPU inference: the diffusion UNet"), flame's side of
-- bench/cpu_unet.sh: examples/diffusion_lib.lua's "tiny" preset (16x16 images, 16 channels, ~180k parameters),
-- batch 1, class-conditional, eval mode without autograd.
--   flame-lua bench/cpu_unet.lua export DIR      -- the weights, inputs and flame's output as DIR/<name>.npy
--   flame-lua bench/cpu_unet.lua time THREADS    -- prints "flame THREADS <median ms> <min ms>"
-- The weights are the preset's initialisation with every parameter then redrawn (seed 0), so that no layer is
-- zero (the blocks' last convolutions and the attention's output projections start at zero) and the outputs of
-- the three engines can be compared. Timing: 10 warm-up forwards, then 15 samples of 20 forwards; per forward.
local lib = dofile("examples/diffusion_lib.lua")
local mode, arg2 = arg[1], arg[2]

local function model()
  flame.manual_seed(0)
  local net = lib.model(lib.PRESETS.tiny, 1, 10)
  flame.no_grad(function()
    for _, p in ipairs(net:parameters()) do p:copy_(flame.randn(p.shape) * 0.1) end
  end)
  net:eval()
  local x = flame.randn(1, 1, 16, 16)
  local t = flame.tensor({500.0})
  local y = flame.tensor({4}, {dtype = "i64"}) -- class 3 (1-based labels; the twin's are 0-based)
  return net, x, t, y
end

local net, x, t, y = model()
local function forward() return flame.no_grad(function() return net(x, t, y) end) end

if mode == "export" then
  assert(arg2, "usage: flame-lua bench/cpu_unet.lua export DIR")
  for k, v in pairs(net:state_dict()) do flame.save_npy(arg2 .. "/" .. k .. ".npy", v) end
  flame.save_npy(arg2 .. "/input.x.npy", x)
  flame.save_npy(arg2 .. "/input.t.npy", t)
  flame.save_npy(arg2 .. "/input.labels.npy", y - 1)
  flame.save_npy(arg2 .. "/output.npy", forward())
elseif mode == "time" then
  local threads = tonumber(arg2 or 1)
  flame.set_num_threads(threads)
  for _ = 1, 10 do forward() end
  local ts = {}
  for s = 1, tonumber(os.getenv("SAMPLES") or 15) do
    local t0 = flame._now()
    for _ = 1, 20 do forward() end
    ts[s] = (flame._now() - t0) / 20
  end
  table.sort(ts)
  print(string.format("flame %d %.4f %.4f", threads, ts[8] * 1e3, ts[1] * 1e3))
else
  error("usage: flame-lua bench/cpu_unet.lua export DIR | time THREADS")
end
