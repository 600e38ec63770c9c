-- DistributedDataParallel's host cost per step, at world 1 on the CPU: a model of many tiny parameters (depth x
-- Linear(8, 8): 2 x depth parameters, kernels of a few ns) so the step time is the host's work, trained plain and
-- wrapped in DDP; the difference is what DDP adds per step on the host (its hooks, copies and reductions).
--   flame-lua bench/ddp_host.lua [depth = 100] [old_ddp.lua]
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

-- seconds per step: the median of 7 loops of 50 steps, after 5 warm-up steps
local function time_steps(wrap, set_to_none)
  local net = model()
  local m = wrap and wrap(net) or net
  local opt = flame.optim.AdamW(m:parameters(), {lr = 1e-3})
  local function step()
    opt:zero_grad(set_to_none)
    F.mse_loss(m(x), y):backward()
    opt:step()
  end
  for _ = 1, 5 do step() end
  local ts = {}
  for r = 1, 7 do
    collectgarbage()
    local t0 = now()
    for _ = 1, 50 do step() end
    ts[r] = (now() - t0) / 50
  end
  table.sort(ts)
  return ts[4]
end

for _, none in ipairs({true, false}) do
  local plain = time_steps(nil, none)
  local ddp = time_steps(function(n) return New(n) end, none)
  local line = string.format("%d params, zero_grad(set_to_none = %s): plain %.1f us/step, DDP %.1f us (+%.1f us, %.2f us/param)",
    2 * depth, tostring(none), plain * 1e6, ddp * 1e6, (ddp - plain) * 1e6, (ddp - plain) * 1e6 / (2 * depth))
  if Old then
    local old = time_steps(function(n) return Old(n) end, none)
    line = line .. string.format("; old DDP %.1f us (+%.1f us, %.2f us/param)", old * 1e6, (old - plain) * 1e6,
      (old - plain) * 1e6 / (2 * depth))
  end
  print(line)
end
D.destroy()
