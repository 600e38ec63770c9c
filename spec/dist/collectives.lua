-- Run by scripts/gpu-dist.sh under the launcher (flame-lua --nproc 2 ...): every collective on every dtype against
-- its definition, with inputs that depend on the rank. Exits non-zero (naming the case) on the first mismatch.
local D = flame.distributed
D.init()
local r, W, dev = D.get_rank(), D.get_world_size(), D.device()

local function fail(msg) io.stderr:write("FAIL rank " .. r .. ": " .. msg .. "\n"); os.exit(1) end
local function same(got, want, what)
  if got.shape ~= want.shape and tostring(got.shape) ~= tostring(want.shape) or not flame.allclose(got:cpu():to("f64"), want:cpu():to("f64"), {rtol = 0, atol = 0}) then
    fail(what .. ": got " .. tostring(got:cpu()) .. " want " .. tostring(want:cpu()))
  end
end

-- the value rank q holds at element i (1-based): exact in every dtype
local function input(q, n, dt) return (flame.arange(1, n + 1, {dtype = "f64"}) * (q + 1) + q):to(dt):to(dev) end
local function over_ranks(n, dt, fn)
  local acc
  for q = 0, W - 1 do acc = fn(acc, input(q, n, dt):cpu():to("f64")) end
  return acc
end

for _, dt in ipairs({"f32", "f64", "f16", "bf16", "i32", "i64"}) do
  local n = 37
  local sum = over_ranks(n, dt, function(a, x) return a and a + x or x end)
  same(D.all_reduce(input(r, n, dt), "sum"), sum:to(dt), "all_reduce sum " .. dt)
  same(D.all_reduce(input(r, n, dt), "max"), over_ranks(n, dt, function(a, x) return a and a:maximum(x) or x end):to(dt), "max " .. dt)
  same(D.all_reduce(input(r, n, dt), "min"), over_ranks(n, dt, function(a, x) return a and a:minimum(x) or x end):to(dt), "min " .. dt)
  if dt == "f32" or dt == "f64" then same(D.all_reduce(input(r, n, dt), "avg"), (sum / W):to(dt), "avg " .. dt) end
  for src = 0, W - 1 do same(D.broadcast(input(r, n, dt), src), input(src, n, dt), "broadcast from " .. src .. " " .. dt) end
  local g = D.all_gather(input(r, n, dt))
  for q = 0, W - 1 do same(g[q + 1], input(q, n, dt), "all_gather block " .. q .. " " .. dt) end
  local big = input(r, n * W, dt)
  local want = over_ranks(n * W, dt, function(a, x) return a and a + x or x end):narrow(1, r * n + 1, n)
  same(D.reduce_scatter(big, "sum"), want:to(dt), "reduce_scatter " .. dt)
end
local b = flame.tensor({r == 0, r == 1, true}, {dtype = "bool"}):to(dev)
same(D.broadcast(b, W - 1), flame.tensor({W == 1, W == 2, true}, {dtype = "bool"}), "broadcast bool")
-- large: 64 MiB of f32 through one all_reduce
local n = 16 * 1024 * 1024
local t = flame.full({n}, r + 1, {device = dev})
D.all_reduce(t)
if t:sum():item() ~= n * W * (W + 1) / 2 then fail("large all_reduce") end
-- async_op: three reductions queued back to back, compute queued beside them, one wait; and a reduced temporary
-- dropped before the wait, whose block must not be handed to the zeros made right after (record-stream)
local parts, work = {}, nil
for k = 1, 3 do
  parts[k] = flame.full({n}, (r + 1) * k, {device = dev})
  _, work = D.all_reduce(parts[k], "sum", {async_op = true})
end
local tmp = flame.full({n}, 1, {device = dev})
D.all_reduce(tmp, "sum", {async_op = true})
tmp = nil
collectgarbage()
local z = flame.zeros({n}, {device = dev})
local side = (z + 1):sum()
work:wait()
for k = 1, 3 do
  if parts[k]:sum():item() ~= n * k * W * (W + 1) / 2 then fail("async all_reduce " .. k) end
end
D.barrier()
if z:abs():sum():item() ~= 0 or side:item() ~= n then fail("async all_reduce: a dropped tensor's block was reused") end
D.barrier()
print("collectives ok: rank " .. r .. " of " .. W)
D.destroy()
