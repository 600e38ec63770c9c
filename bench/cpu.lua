-- CPU benchmarks for docs/performance.md: matmul through flame against the
-- direct cblas_sgemm numbers (bench/blas_direct), and the Lua-side cost of a
-- small add. Usage: flame-lua bench/cpu.lua <blas_direct output file>
local flame = require "flame"
local now = flame._now

local function median(fn, reps)
  local ts = {}
  for r = -3, reps do
    local t0 = now()
    fn()
    if r > 0 then ts[#ts + 1] = now() - t0 end
  end
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end

local direct = {}
for line in io.lines(arg[1]) do
  local m, n, k, t = line:match("(%d+) (%d+) (%d+) (%S+)")
  direct[#direct + 1] = {m = tonumber(m), n = tonumber(n), k = tonumber(k), t = tonumber(t)}
end

print("| op | shape | flame | OpenBLAS direct | flame / direct time |")
print("|---|---|---|---|---|")
for _, d in ipairs(direct) do
  local a, b = flame.rand(d.m, d.k), flame.rand(d.k, d.n)
  local flops = 2 * d.m * d.n * d.k
  local iters = flops >= 2e8 and 1 or math.floor(2e8 / flops) -- as bench/blas_direct.c
  local t = median(function() for _ = 1, iters do local c = a:matmul(b) end end, 20) / iters
  print(string.format("| matmul f32 | %dx%dx%d | %.1f us | %.1f us | %.3f |", d.m, d.n, d.k, t * 1e6, d.t * 1e6, t / d.t))
end

-- Lua-side cost of a small add: per call, averaged over a tight loop.
local x, y = flame.rand(64), flame.rand(64)
local n = 200000
local function loop() for _ = 1, n do local z = x + y end end
loop()
local t = median(loop, 5) / n
print(string.format("| add f32 (Lua call to return) | 64 | %.2f us/op | - | target < 2 us |", t * 1e6))
