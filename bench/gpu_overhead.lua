-- Where the host time of a small CUDA op goes: allocation alone, a kernel
-- launch alone (in-place fill), and the whole op; a scalar op (x * 2) passes
-- the scalar by value, so it should cost what the tensor add costs. Call-to-return, median of
-- 51 samples of 200 calls, never filling the launch queue.
local flame = require "flame"
local now, sync = flame._now, flame.cuda.synchronize

local function host_time(fn)
  fn(); sync()
  local ts = {}
  for _ = 1, 51 do
    sync()
    local t0 = now()
    for _ = 1, 200 do fn() end
    ts[#ts + 1] = (now() - t0) / 200
    sync()
  end
  table.sort(ts)
  return ts[26]
end

local x, y = flame.randn(64, {device = "cuda"}), flame.randn(64, {device = "cuda"})
local c = flame.randn(64)
local rows = {
  {"cpu add (binding + front-end, no device)", function() return c + c end},
  {"cuda empty (allocation only)", function() return flame.empty(64, {device = "cuda"}) end},
  {"cuda fill_ (one launch, no allocation)", function() return x:fill_(1) end},
  {"cuda add_ (one launch, no allocation)", function() return x:add_(y) end},
  {"cuda add (allocation + launch)", function() return x + y end},
  {"cuda x * 2 (scalar by value: allocation + one launch)", function() return x * 2 end},
  {"cuda mul_(2) (scalar by value: one launch, no allocation)", function() return x:mul_(2) end},
}
for _, r in ipairs(rows) do print(string.format("| %s | %.2f us |", r[1], host_time(r[2]) * 1e6)) end
