-- Times bench/gpu_cases.lua through flame on CUDA; prints one JSON line per case.
-- Usage: flame-lua bench/gpu.lua [bench/gpu_cases.lua]
local flame = require "flame"
local cases = dofile(arg[1] or "bench/gpu_cases.lua")

local median_time = dofile("bench/timing.lua")

for _, c in ipairs(cases) do
  flame.manual_seed(0)
  local x = flame.randn(c.shape, {dtype = c.dtype, device = "cuda"})
  local y = c.shape2 and flame.randn(c.shape2, {dtype = c.dtype, device = "cuda"})
  local fn
  if c.op == "clone" then fn = function() return x:clone() end
  elseif c.op == "sum" then fn = function() return x:sum() end
  elseif c.op == "mean" then fn = function() return x:mean(c.dims) end
  elseif c.op == "cast" then fn = function() return x:to(c.to) end
  elseif c.op == "badd" or c.op == "small_add" then y = y or flame.randn(c.shape, {device = "cuda"}); fn = function() return x + y end
  elseif c.op == "matmul" then fn = function() return x:matmul(y) end end
  local iters = c.host and 200 or (c.flops and 5 or 20)
  local t = median_time(fn, iters, c.host and 51 or 7, c.host)
  print(string.format('{"name": "%s", "flame_s": %.9g}', c.name, t))
  x, y = nil, nil
  collectgarbage()
  flame.cuda.empty_cache()
end
