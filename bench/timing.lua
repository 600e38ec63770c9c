-- The flame side's clock, shared by bench/gpu.lua and bench/nn.lua (the
-- PyTorch side's twin is bench/torch_timing.py): device time per call, the
-- median over reps of a synchronised loop of iters calls after one warm-up.
-- For host cases (the cost of a call from Lua to its return), the loop is
-- short enough never to fill the launch queue and the clock stops before
-- synchronising. device: the one to synchronise (default cuda:0; a rank of bench/dist.lua passes its own).
local flame = require "flame"
local now = flame._now

return function(fn, iters, reps, host, device)
  local function sync() flame.cuda.synchronize(device) end
  fn(); sync()
  local ts = {}
  for _ = 1, reps do
    sync()
    local t0 = now()
    for _ = 1, iters do fn() end
    if not host then sync() end
    ts[#ts + 1] = (now() - t0) / iters
    if host then sync() end
  end
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end
