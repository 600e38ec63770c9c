-- A random API fuzzer for the Lua surface: random calls of every flame
-- function and tensor method (found at run time, so new ones are fuzzed too)
-- with random arguments, each under pcall. It must never crash; run it under
-- the sanitizer build (scripts/sanitize) so memory errors, undefined behaviour
-- and leaks are reported too.
--
--   flame-lua tests/fuzz/fuzz.lua [seed] [calls] [seconds]
--
-- The same seed makes the same calls (every call is printed with FUZZ_TRACE=1,
-- to find the one that crashed). Arguments are drawn from a pool of values that
-- the calls' own results refill: tensors of every dtype and odd shapes (0-size,
-- 0-dim, expanded, transposed, narrowed), closed tensors, numbers at the edges
-- (huge, negative, NaN, inf, maxinteger), strings, nil, tables with
-- metatables whose __index runs code, and functions (hooks) that release
-- tensors, collect garbage, raise errors or return junk. Finalizers that do
-- the same run from inside allocations.
local flame = flame or require "flame"

local seed = tonumber(arg and arg[1]) or os.time()
local budget = tonumber(arg and arg[2]) or 100000
local seconds = tonumber(arg and arg[3]) or math.huge
local trace = os.getenv("FUZZ_TRACE") == "1"
math.randomseed(seed)
local R = math.random

-- ---- the API, found at run time ----
local functions, methods = {}, {}
local function collect(tbl, prefix, seen)
  for k, v in pairs(tbl) do
    -- clocks: not seeded; writers (every *save*: flame.save, save_npy, image.save and _save_png, utils.
    -- save_training_state): they would create files named by random strings (the file formats have their own
    -- fuzzer, tests/fuzz/safetensors_fuzz.c); flame.distributed: its rendezvous listens and connects on the network
    -- with timeouts (spec/distributed_spec.lua covers its errors)
    if type(v) == "function" and k ~= "manual_seed" and k ~= "_now" and k ~= "timer"
       and not k:find("save", 1, true) and prefix ~= "flame.distributed." then
      functions[#functions + 1] = {prefix .. k, v}
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      collect(v, prefix .. k .. ".", seen)
    end
  end
end
collect(flame, "flame.", {[flame._tensor_methods] = true})
for k, v in pairs(debug.getregistry()["flame.methods"]) do methods[#methods + 1] = {k, v} end
local meta = debug.getmetatable(flame.zeros(1)) -- protected: getmetatable gives its name
for _, k in ipairs {"__add", "__sub", "__mul", "__div", "__pow", "__unm", "__len", "__eq", "__tostring", "__index",
                    "__newindex", "__close", "__concat", "__lt", "__le"} do
  if meta[k] then methods[#methods + 1] = {k, meta[k]} end
end
table.sort(functions, function(a, b) return a[1] < b[1] end) -- pairs order is not seeded
-- Thread counts above 4 are clamped: each thread of a 1000-thread team has its own stack and, under ASan, fake
-- stacks, which grew a CI run to 24 GB and the OOM killer ended it (the argument checks still see every value)
for _, f in ipairs(functions) do
  if f[1] == "flame.set_num_threads" then
    local set = f[2]
    f[2] = function(n, ...) return set(math.type(n) == "integer" and n > 4 and 4 or n, ...) end
  end
end
table.sort(methods, function(a, b) return a[1] < b[1] end)

local function pick(t) return t[R(#t)] end

-- ---- values ----
local dtypes = {"f32", "f64", "f16", "bf16", "i32", "i64", "bool"}
local strings = {"f32", "f64", "f16", "bf16", "i32", "i64", "bool", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:-1",
                 "cuda:99999999999", "cpu:1", "", "x", "dtype", "device", "shape", "grad", "requires_grad",
                 "retain_graph", "keepdim", "correction", "unbiased", string.rep("a", 300), "%s%d%n"}
local edge_numbers = {0, 1, -1, 2, 3, -2, 0.5, -0.5, 1e308, -1e308, math.huge, -math.huge, 0 / 0, math.maxinteger,
                      math.mininteger, math.maxinteger - 1, 1 << 62, 1 << 31, -(1 << 31), 1 << 32, 2 ^ 53, 2 ^ 63,
                      -2 ^ 63, 1e-310, 7, 8, 9}

local pool = {}   -- tensors and other values made so far (results come back in)
local POOL = 48
local LARGE = 4096 -- a view may be huge for free; an op over 2^34 elements just takes long: keep those out
local MEMORY_BUDGET = 2 * 2 ^ 30 -- live tensor bytes (see the end of the call loop)
local function remember(v)
  if v == nil then return end
  if flame.is_tensor(v) and v:numel() > LARGE then return end
  if #pool < POOL then pool[#pool + 1] = v else pool[R(POOL)] = v end
end

local function small() return R(0, 4) end
local function number()
  local r = R(10)
  if r <= 4 then return R(-3, 5) end
  if r <= 6 then return pick(edge_numbers) end
  if r <= 8 then return (R() - 0.5) * 10 end
  return R(-100, 100)
end

local function shape_table()
  local n = R(0, 4)
  local s = {}
  for i = 1, n do s[i] = small() end
  if R(20) == 1 then s[R(math.max(n, 1))] = pick(edge_numbers) end
  return s
end

local value -- forward

local function release(t) -- the explicit release the binding offers (a to-be-closed tensor)
  if flame.is_tensor(t) then pcall(meta.__close, t) end
end

local function random_action()
  local r = R(8)
  if r == 1 then release(pool[R(#pool)])
  elseif r == 2 then collectgarbage(R(2) == 1 and "step" or "collect")
  elseif r == 3 then error(R(2) == 1 and {} or "fuzz: deliberate error")
  elseif r == 4 then pool[R(#pool)] = nil
  elseif r == 5 then local ok, v = pcall(pick(functions)[2], value(), value()); remember(v)
  end
  return value(0)
end

local function tricky_table()
  local t = R(2) == 1 and shape_table() or {}
  setmetatable(t, {
    __index = function(_, k) return random_action() end,
    __len = function() return random_action() end,
    __newindex = function() random_action() end,
  })
  return t
end

local function options()
  local o = {}
  if R(2) == 1 then o.dtype = R(5) == 1 and pick(strings) or pick(dtypes) end
  if R(3) == 1 then o.device = R(3) == 1 and pick(strings) or "cpu" end
  if R(3) == 1 then o.requires_grad = R(2) == 1 end
  if R(5) == 1 then o.retain_graph = true end
  if R(5) == 1 then o.keepdim = R(2) == 1 end
  if R(8) == 1 then o[pick(strings)] = value(0) end
  if R(6) == 1 then return setmetatable(o, getmetatable(tricky_table())) end
  return o
end

local function make_tensor()
  local dt = pick(dtypes)
  local shape = {}
  for i = 1, R(0, 3) do shape[i] = R(0, 3) end
  local ok, t = pcall(flame.randn, shape, {dtype = (dt == "f32" or dt == "f64" or dt == "f16" or dt == "bf16") and dt or "f32"})
  if not ok then return nil end
  if dt ~= t.dtype then t = t:to(dt) end
  local r = R(10)
  if r == 1 and t:dim() >= 2 then t = t:transpose(1, 2)
  elseif r == 2 and t:dim() >= 1 and t:size(1) == 1 then t = t:expand(R(0, 3), table.unpack(t:size(), 2))
  elseif r == 3 and t:dim() >= 1 and t:size(1) > 0 then t = t:narrow(1, R(t:size(1)), 1)
  elseif r == 4 then t = t:unsqueeze(1):expand(2, table.unpack(t:size()))
  elseif r == 5 and t.dtype == "f32" or t.dtype == "f64" then pcall(t.requires_grad_, t)
  elseif r == 6 then release(t)
  end
  return t
end

local function hook_fn()
  return function(g)
    local r = R(6)
    if r == 1 then return random_action() end
    if r == 2 then return g end
    if r == 3 then return value(0) end
    if r == 4 then release(g) end
    return nil
  end
end

local function tensor_list()
  local l = {}
  for i = 1, R(0, 3) do l[i] = R(4) == 1 and value(0) or (pool[R(math.max(#pool, 1))] or make_tensor()) end
  return l
end

function value(depth)
  depth = depth or 1
  local r = R(100)
  if r <= 30 then
    local v = pool[R(math.max(#pool, 1))]
    if v ~= nil then return v end
    return make_tensor()
  elseif r <= 40 then return make_tensor()
  elseif r <= 65 then return R(-2, 4)
  elseif r <= 72 then return pick(edge_numbers)
  elseif r <= 77 then return number()
  elseif r <= 80 then return pick(strings)
  elseif r <= 83 then return nil
  elseif r <= 85 then return R(2) == 1
  elseif r <= 88 then return shape_table()
  elseif r <= 90 then return depth > 0 and tensor_list() or {}
  elseif r <= 94 then return depth > 0 and options() or {}
  elseif r <= 97 then return depth > 0 and tricky_table() or {}
  else return hook_fn()
  end
end

-- Finalizers that run from inside allocations (the GC steps on tensor bytes).
-- When they run depends on Lua's heap layout, which varies from run to run
-- (string hashes are seeded per state): what they do is drawn when they are
-- planted, so they never consume the seeded stream at a varying time.
-- Once the run is over they do nothing: finalizers still pending run inside
-- lua_close, and Lua does not finalize what they create there (objects made
-- while the state closes get no __gc), so a tensor a finalizer made then would
-- be reported as a leak that no script can cause while its state is open.
local finished = false
local function plant_finalizer()
  local victim, fn = R(POOL), pick(functions)[2]
  local a1, a2 = pool[R(math.max(#pool, 1))], pool[R(math.max(#pool, 1))]
  if R(2) == 1 then
    setmetatable({}, {__gc = function() if not finished then release(pool and pool[victim]) end end})
  else
    setmetatable({}, {__gc = function() if not finished then pcall(fn, a1, a2) end end})
  end
end

local function describe(v)
  if debug.getmetatable(v) == meta then -- is_tensor is false for a released one
    local ok, s = pcall(function() return v.dtype .. "[" .. table.concat(v:size(), ",") .. "]" end)
    return ok and s or "tensor(closed)"
  end
  if type(v) == "string" then return string.format("%q", v:sub(1, 20)) end
  return tostring(v):gsub("0x%x+", "")
end

local function check_message(name, err)
  if type(err) == "string" and (err:find("(null)", 1, true) or err == "") then
    io.stderr:write(string.format("fuzz: unclear message from %s: %q\n", name, err))
    os.exit(3)
  end
end

local tally = os.getenv("FUZZ_ERRORS") == "1" and {} or nil -- which errors the calls ran into
-- The fuzzer learns from type errors ("bad argument #2 ... (number expected")
-- which kind of value each argument of each function wants, and mostly gives
-- that kind afterwards, so calls get past the type checks into the ops.
local wanted = {}
local makers = {
  ["flame tensor"] = function() return pool[R(math.max(#pool, 1))] or make_tensor() end,
  number = function() return R(3) == 1 and number() or R(-2, 4) end,
  integer = function() return R(3) == 1 and pick(edge_numbers) or R(-2, 4) end,
  table = function() return R(2) == 1 and shape_table() or (R(2) == 1 and tensor_list() or options()) end,
  string = function() return pick(strings) end,
  ["function"] = function() return hook_fn() end,
}
makers["flame tensor or number"] = function() return R(2) == 1 and makers.number() or makers["flame tensor"]() end
local arity = {} -- name -> {min, max} learnt from "got no value" and "unexpected argument #N"
local function learn(name, err)
  if type(err) ~= "string" then return end
  local a = arity[name] or {0, math.huge}
  arity[name] = a
  local extra = tonumber(err:match("unexpected argument #(%d+)"))
  if extra and extra - 1 < a[2] then a[2] = extra - 1 end
  local missing = tonumber(err:match("bad argument #(%d+) to '[^']*' %([%w ]- expected, got no value"))
  if missing and missing > a[1] then a[1] = missing end
  local pos, kind = err:match("bad argument #(%d+) to '[^']*' %(([%w ]-) expected")
  if pos and makers[kind] then
    wanted[name] = wanted[name] or {}
    wanted[name][tonumber(pos)] = kind
  end
end
local function arg_for(name, pos)
  local w = wanted[name] and wanted[name][pos]
  if w and R(5) > 1 then return makers[w]() end
  return value()
end

local calls, failures, t0 = 0, 0, os.clock()
while calls < budget and os.clock() - t0 < seconds do
  local name, fn, args, first = nil, nil, {}, 1
  if R(3) == 1 then
    local f = pick(functions)
    name, fn = f[1], f[2]
  else
    local m = pick(methods)
    name, fn = m[1], m[2]
    args[1] = R(12) == 1 and value() or (pool[R(math.max(#pool, 1))] or make_tensor())
    first = 2
  end
  local nargs = first - 1 + R(0, 4) -- mostly within the arity learnt so far
  local a = arity[name]
  if a and R(8) > 1 then nargs = math.max(math.min(nargs, a[2]), math.min(a[1], a[2])) end
  for i = first, nargs do args[i] = arg_for(name, i) end
  if R(50) == 1 then plant_finalizer() end
  if trace then
    local d = {}
    for i = 1, nargs do d[i] = describe(args[i]) end
    io.stderr:write(string.format("%d %s(%s)\n", calls + 1, name, table.concat(d, ", ")))
  end
  local ok, res, res2 = pcall(fn, table.unpack(args, 1, nargs))
  calls = calls + 1
  if ok then
    remember(res)
    remember(res2)
    if flame.is_tensor(res) and R(4) == 1 and res:numel() <= LARGE then -- print and read back what came out
      pcall(tostring, res)
      pcall(function() return res:totable() end)
    end
  else
    failures = failures + 1
    check_message(name, res)
    learn(name, res)
    if tally then
      local k = tostring(res):gsub("^[^:]*:%d+: ", ""):gsub("%d+", "N"):sub(1, 60)
      tally[k] = (tally[k] or 0) + 1
    end
  end
  -- The pool keeps only small tensors, but a small one can hold large ones through its graph (a max over a 256 MB
  -- materialised view saves its input): 48 of them pinned 24 GB in one CI run, and the OOM killer ended it. Past
  -- a budget of live tensor bytes the pool starts afresh, so memory stays bounded whatever the sequence. The same
  -- for Lua's heap: a pooled scheduler can hold a table of 2^24 timesteps.
  if flame.memory_stats().allocated > MEMORY_BUDGET or collectgarbage("count") > MEMORY_BUDGET / 1024 then
    pool = {}
    collectgarbage()
  end
  if calls % 1000 == 0 then
    if R(4) == 1 then pool = {} end -- fresh values now and then
    flame.set_grad_enabled(true)
  end
end
if tally then
  local keys = {}
  for k in pairs(tally) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tally[a] > tally[b] end)
  for i = 1, math.min(#keys, 25) do io.stderr:write(string.format("%6d %s\n", tally[keys[i]], keys[i])) end
end
pool = nil
collectgarbage() -- finalizers planted during the run run here, while the state is open
collectgarbage()
finished = true
print(string.format("fuzz: seed %d: %d calls (%d raised errors), no crash", seed, calls, failures))
