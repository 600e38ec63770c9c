-- flame.tensor from Lua tables (docs/performance.md), as bench/from_lua.sh runs
-- it beside numpy.array on the same data. Prints "case milliseconds" lines:
-- the median of 9 runs after 2 warm-ups.
local flame = require "flame"
local now = flame._now

local function median(fn)
  local ts = {}
  for r = -1, 9 do
    local t0 = now()
    fn()
    if r > 0 then ts[#ts + 1] = now() - t0 end
  end
  table.sort(ts)
  return ts[5] * 1e3
end

local n = 1000000
local floats, ints, rows = {}, {}, {}
for i = 1, n do floats[i], ints[i] = i * 0.5, i end
for i = 1, 1000 do
  local r = {}
  for j = 1, 1000 do r[j] = (i * 1000 + j) * 0.5 end
  rows[i] = r
end
print("floats_1M_f32", median(function() return flame.tensor(floats) end))
print("ints_1M_i64", median(function() return flame.tensor(ints) end))
print("rows_1000x1000_f32", median(function() return flame.tensor(rows) end))
