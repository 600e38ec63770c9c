-- DistributedDataParallel's host cost per step, at world 1 on the CPU: a model of many tiny parameters (depth x
-- Linear(8, 8): 2 x depth parameters, kernels of a few ns) so the step time is the host's work, trained plain and
-- wrapped in DDP; the difference is what DDP adds per step on the host (its hooks, copies and reductions).
--   flame-lua bench/ddp_host.lua [depth = 100] [old_ddp.lua]
-- Also prints the ops each variant dispatches a step (flame.profile's call counts).
-- old_ddp.lua: another nn_ddp.lua (e.g. `git show main:lua/flame/nn_ddp.lua > /tmp/old.lua`) timed beside it.
local F = flame.F
local D = flame.distributed
local depth = tonumber(arg and arg[1]) or 100
local old_path = arg and arg[2]
local now = flame._now

D.init({device = "cpu", world_size = 1, rank = 0})
local New = flame.nn.DistributedDataParallel
local Old
if old_path then
  assert(loadfile(old_path))(flame)
  Old = flame.nn.DistributedDataParallel
  flame.nn.DistributedDataParallel = New
end

local function model()
  flame.manual_seed(1)
  local layers = {}
  for i = 1, depth do layers[i] = flame.nn.Linear(8, 8) end
  return flame.nn.Sequential(table.unpack(layers))
end
local x, y = flame.randn(2, 8), flame.randn(2, 8)

-- A step of one variant: (model, optimizer) -> fn running zero_grad + forward + backward + AdamW.
local function stepper(wrap, set_to_none)
  local net = model()
  local m = wrap and wrap(net) or net
  local opt = flame.optim.AdamW(m:parameters(), {lr = 1e-3})
  return function()
    opt:zero_grad(set_to_none)
    F.mse_loss(m(x), y):backward()
    opt:step()
  end
end

-- seconds per step of each variant: the variants take turns (the machine's load drifts alike for all), 15 loops of
-- 30 steps each after 5 warm-up steps, and the fastest loop counts (noise only adds time)
local function time_steps(steps)
  local best = {}
  for i, f in ipairs(steps) do
    for _ = 1, 5 do f() end
    best[i] = math.huge
  end
  for _ = 1, 15 do
    for i, f in ipairs(steps) do
      collectgarbage()
      local t0 = now()
      for _ = 1, 30 do f() end
      best[i] = math.min(best[i], (now() - t0) / 30)
    end
  end
  return best
end

for _, none in ipairs({true, false}) do
  local steps = {stepper(nil, none), stepper(function(n) return New(n) end, none)}
  if Old then steps[3] = stepper(function(n) return Old(n) end, none) end
  local t = time_steps(steps)
  local plain, ddp = t[1], t[2]
  local line = string.format("%d params, zero_grad(set_to_none = %s): plain %.1f us/step, DDP %.1f us (+%.1f us, %.2f us/param)",
    2 * depth, tostring(none), plain * 1e6, ddp * 1e6, (ddp - plain) * 1e6, (ddp - plain) * 1e6 / (2 * depth))
  if Old then
    local old = t[3]
    line = line .. string.format("; old DDP %.1f us (+%.1f us, %.2f us/param)", old * 1e6, (old - plain) * 1e6,
      (old - plain) * 1e6 / (2 * depth))
  end
  -- the ops each step dispatches (on a GPU each is a launch or more: there the count is the cost)
  local function ops(f)
    local n = 0
    for _, e in ipairs(flame.profile(f, {device = "cpu"})) do n = n + e.calls end
    return n
  end
  print(line .. string.format("; ops a step: plain %d, DDP %d", ops(steps[1]), ops(steps[2])))
end
D.destroy()
