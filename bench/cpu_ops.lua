-- flame's side of the CPU elementwise/reduction table (bench/cpu_numpy.sh).
-- Usage: flame-lua bench/cpu_ops.lua <threads>; prints one line per case:
-- "<case> <size> <median seconds>". The cases match bench/cpu_ops.py.
local flame = require "flame"
local now = flame._now
flame.set_num_threads(tonumber(arg[1]))
flame.manual_seed(0)

local function median(fn, reps)
  local ts = {}
  for r = -2, reps do
    local t0 = now()
    fn()
    if r > 0 then ts[#ts + 1] = now() - t0 end
  end
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end

for _, n in ipairs({1 << 20, 1 << 24}) do
  local reps = n > (1 << 20) and 10 or 40
  local x = flame.randn(n // 1024, 1024)
  local b = flame.randn(1024)
  local cases = {
    {"exp", function() return x:exp() end},
    {"tanh", function() return x:tanh() end},
    {"gelu", function() return x:gelu() end},
    {"add_broadcast", function() return x + b end},
    {"sum_all", function() return x:sum() end},
    {"sum_last", function() return x:sum(-1) end},
    {"chain5", function() return (x * 0.5 + 0.25):tanh() * x - 0.125 end},
  }
  for _, c in ipairs(cases) do
    print(string.format("%s %d %.6e", c[1], n, median(c[2], reps)))
  end
end
local s = flame.randn(4096, 1024)
print(string.format("softmax_rows %d %.6e", 4096 * 1024, median(function() return s:softmax(-1) end, 20)))
