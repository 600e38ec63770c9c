-- flame's side of the CPU elementwise/reduction table (bench/cpu_numpy.sh).
-- Usage: flame-lua bench/cpu_ops.lua <threads>; prints one line per case:
-- "<case> <size> <seconds>", the fastest of the timed runs (the same method as
-- bench/cpu_ops.py; on a shared machine the fastest run is the one the other
-- load disturbed least). The cases match bench/cpu_ops.py.
local flame = require "flame"
local now = flame._now
flame.set_num_threads(tonumber(arg[1]))
flame.manual_seed(0)

local function fastest(fn, reps)
  local best = math.huge
  for r = -2, reps do
    local t0 = now()
    fn()
    local t = now() - t0
    if r > 0 and t < best then best = t end
  end
  return best
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
    collectgarbage() -- no garbage of the previous case is freed inside this one
    print(string.format("%s %d %.6e", c[1], n, fastest(c[2], reps)))
  end
end
local s = flame.randn(4096, 1024)
print(string.format("softmax_rows %d %.6e", 4096 * 1024, fastest(function() return s:softmax(-1) end, 20)))
