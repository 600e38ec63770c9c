-- The host time of one small convolution call on CUDA: cuDNN's legacy API against its backend (graph) API
-- (F._cudnn_api; cuda/conv_cudnn_graph.cu), at examples/train.lua's UNet shapes (bench/conv_host_cases.txt).
--   flame-lua bench/conv_host.lua [--calls N] [--samples N] [--apis legacy,graph] [--dtypes bf16,f32] [--table]
--     [--device cpu]   (a dry run of the script on the CPU: f32, the CPU's paths, no cuDNN)
-- Host time: call to return, the median of --samples samples of --calls calls, synchronised between samples so the
-- launch queue never fills (bench/gpu_overhead.lua's method); wall: the same loop with the synchronisation inside
-- the clock (the device's time per call when it is the slower side). Passes: "fwd", the forward without autograd;
-- "fwd+bwd", the forward recorded, then flame.autograd.grad for dx and dw (no .grad accumulation). One JSON line a
-- row (bench/conv_host_ratio.py joins them with bench/conv_host_torch.py's); --table prints a table instead.
-- "ran" is the API that ran the row's last convolution: "legacy" under graph means the key had no graph engine.
local flame = require "flame"
local F = flame.F
local now = flame._now

local o = {calls = 20, samples = 31, apis = "legacy,graph", dtypes = "bf16,f32", device = "cuda"}
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-(.*)$")
  if k == "table" then o.table = true
  elseif k and o[k] ~= nil then o[k] = arg[i + 1]; i = i + 1
  else error("conv_host.lua: unknown argument " .. arg[i]) end
  i = i + 1
end
o.calls, o.samples = assert(tonumber(o.calls)), assert(tonumber(o.samples))
local function sync() if o.device ~= "cpu" then flame.cuda.synchronize() end end
local function list(s) local r = {} for w in s:gmatch("[^,]+") do r[#r + 1] = w end return r end

local function cases()
  local r = {}
  for line in io.lines("bench/conv_host_cases.txt") do
    local name, rest = line:match("^(%S+)%s+(.*)$")
    if name and not name:find("^#") then
      local v = list(rest:gsub("%s+", ","))
      for j = 1, 7 do v[j] = tonumber(v[j]) end
      r[#r + 1] = {name = name, n = v[1], cin = v[2], cout = v[3], size = v[4], k = v[5], pad = v[6], stride = v[7]}
    end
  end
  return r
end

-- Medians of host and wall time per call, in us.
local function measure(fn)
  fn(); fn(); sync() -- builds the plans (cuDNN's measured search is host-blocking, once per key)
  local host, wall = {}, {}
  for s = 1, o.samples do
    sync()
    local t0 = now()
    for _ = 1, o.calls do fn() end
    local t1 = now()
    sync()
    local t2 = now()
    host[s], wall[s] = (t1 - t0) / o.calls * 1e6, (t2 - t0) / o.calls * 1e6
  end
  table.sort(host); table.sort(wall)
  local m = (o.samples + 1) // 2
  return host[m], wall[m]
end

local prev_algo, prev_api = F.conv_algo(o.device == "cpu" and "auto" or "direct"), F._cudnn_api()
local rows = {}
for _, c in ipairs(cases()) do
  for _, dt in ipairs(list(o.dtypes)) do
    flame.manual_seed(1)
    local dev = {dtype = dt, device = o.device}
    local x, w = flame.randn(c.n, c.cin, c.size, c.size, dev), flame.randn(c.cout, c.cin, c.k, c.k, dev) * 0.05
    local opts = {padding = c.pad, stride = c.stride}
    local gy = F.conv2d(x, w, nil, opts):clone()
    local xg, wg = x:detach(), w:detach()
    xg.requires_grad, wg.requires_grad = true, true
    local passes = {
      {"fwd", function() return F.conv2d(x, w, nil, opts) end},
      {"fwd+bwd", function() return flame.autograd.grad(F.conv2d(xg, wg, nil, opts), {xg, wg}, gy) end},
    }
    for _, p in ipairs(passes) do
      for _, api in ipairs(list(o.apis)) do
        F._cudnn_api(api)
        local host, wall = measure(p[2])
        local ran = select(2, F._cudnn_api()) or "none"
        rows[#rows + 1] = {case = c.name, dtype = dt, pass = p[1], api = api, host_us = host, wall_us = wall, ran = ran}
      end
    end
  end
end
F.conv_algo(prev_algo)
F._cudnn_api(prev_api)

if o.table then
  print("| case | dtype | pass | api (ran) | host us | wall us |")
  print("|---|---|---|---|---|---|")
  for _, r in ipairs(rows) do
    print(string.format("| %s | %s | %s | %s (%s) | %.1f | %.1f |", r.case, r.dtype, r.pass, r.api, r.ran, r.host_us,
      r.wall_us))
  end
else
  for _, r in ipairs(rows) do
    print(string.format('{"side": "flame", "case": "%s", "dtype": "%s", "pass": "%s", "api": "%s", "ran": "%s", ' ..
      '"host_us": %.3f, "wall_us": %.3f}', r.case, r.dtype, r.pass, r.api, r.ran, r.host_us, r.wall_us))
  end
end
