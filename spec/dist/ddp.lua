-- Run by scripts/gpu-dist.sh under the launcher with 2 ranks: DDP keeps the ranks' parameters bit-identical and
-- reduces every bucket from a gradient hook, 2 ranks x batch B track 1 rank x 2B (rank 0 trains that reference
-- itself) within f32 reduction noise, ZeRO-1 AdamW tracks plain DDP + AdamW (with DDP's averaged gradients, and
-- reducing the gradients itself without DDP), and gradient accumulation under no_sync tracks the one-batch step;
-- the .grads (views of the buckets) are the averages of the ranks' local gradients, a parameter unused on one rank
-- included.
local D, F = flame.distributed, flame.F
D.init()
local r, W, dev = D.get_rank(), D.get_world_size(), D.device()
local function fail(msg) io.stderr:write("FAIL rank " .. r .. ": " .. msg .. "\n"); os.exit(1) end

local function model()
  flame.manual_seed(1234 + r) -- different on purpose: DDP must broadcast rank 0's
  return flame.nn.Sequential(flame.nn.Linear(32, 256), flame.nn.GELU(), flame.nn.Linear(256, 256), flame.nn.GELU(),
    flame.nn.Linear(256, 8)):to(dev)
end
local B, steps = 16, 20
local function batch(i) -- the global batch of step i, 2B rows; rank q trains rows q*B+1 .. (q+1)*B
  flame.manual_seed(9000 + i)
  return flame.randn(W * B, 32):to(dev), flame.randn(W * B, 8):to(dev)
end

local net = model()
local ddp = flame.nn.DistributedDataParallel(net, {bucket_cap_mb = 0.1})
local opt = flame.optim.AdamW(ddp:parameters(), {lr = 1e-3})
local zmodel = model()
local zddp = flame.nn.DistributedDataParallel(zmodel, {bucket_cap_mb = 0.1})
local zopt = flame.optim.AdamW(zmodel, {lr = 1e-3, zero = true, reduce_grads = false})
-- ZeRO-1 without DDP: it reduce-scatters the local gradients itself (from rank 0's start, as DDP's broadcast gives)
local zr = model()
flame.no_grad(function() for _, p in ipairs(zr:parameters()) do D.broadcast(p, 0) end end)
local zropt = flame.optim.AdamW(zr, {lr = 1e-3, zero = true})
-- two half batches a step, the first under no_sync (each loss halved: the gradient of the mean over B)
local acc = model()
local accd = flame.nn.DistributedDataParallel(acc, {bucket_cap_mb = 0.1})
local accopt = flame.optim.AdamW(acc:parameters(), {lr = 1e-3})
local ref, ropt
if r == 0 then
  ref = model()
  flame.no_grad(function() for i, p in ipairs(ref:parameters()) do p:copy_(net:parameters()[i]) end end)
  ropt = flame.optim.AdamW(ref:parameters(), {lr = 1e-3})
end
local worst = 0
for i = 1, steps do
  local x, y = batch(i)
  local xs, ys = x:narrow(1, r * B + 1, B), y:narrow(1, r * B + 1, B)
  opt:zero_grad()
  local loss = F.mse_loss(ddp(xs), ys)
  loss:backward()
  opt:step()
  zopt:zero_grad()
  F.mse_loss(zddp(xs), ys):backward()
  zopt:step()
  zropt:zero_grad()
  F.mse_loss(zr(xs), ys):backward()
  zropt:step()
  accopt:zero_grad()
  local h = B // 2
  accd:no_sync(function() (F.mse_loss(accd(xs:narrow(1, 1, h)), ys:narrow(1, 1, h)) * 0.5):backward() end)
  ;(F.mse_loss(accd(xs:narrow(1, h + 1, h)), ys:narrow(1, h + 1, h)) * 0.5):backward()
  accopt:step()
  local mean_loss = D.all_reduce(loss:detach():clone(), "avg"):item()
  if r == 0 then
    ropt:zero_grad()
    local l = F.mse_loss(ref(x), y)
    l:backward()
    ropt:step()
    worst = math.max(worst, math.abs(l:item() - mean_loss) / math.abs(l:item()))
  end
end
-- bit-identical across ranks
for i, p in ipairs(net:parameters()) do
  local g = D.all_gather(p:detach():contiguous())
  for q = 2, W do if not flame.allclose(g[1], g[q], {rtol = 0, atol = 0}) then fail("parameter " .. i .. " differs between ranks") end end
end
local function track(m, what, tol)
  for i, p in ipairs(m:parameters()) do
    local d = (p - net:parameters()[i]):abs():max():item()
    if d > tol then fail(string.format("%s: parameter %d differs from DDP's by %g", what, i, d)) end
  end
end
track(zmodel, "ZeRO-1 after DDP", 1e-5)
track(zr, "ZeRO-1 reducing its gradients", 1e-5)
track(acc, "no_sync accumulation", 1e-4)
local st = ddp._ddp
if st.early ~= st.reductions or st.reductions ~= steps * #ddp:bucket_info() then
  fail(string.format("%d bucket all-reduces, %d from hooks: expected %d, all from hooks", st.reductions, st.early,
    steps * #ddp:bucket_info()))
end
if accd._ddp.reductions ~= steps * #accd:bucket_info() then fail("no_sync steps reduced gradients") end
if r == 0 then
  local d = 0
  for i, p in ipairs(ref:parameters()) do d = math.max(d, (p - net:parameters()[i]):abs():max():item()) end
  print(string.format("ddp ok: %d ranks x B vs 1 x %dB: loss rel diff max %.3g, param diff max %.3g", W, W, worst,
    d))
  if worst > 1e-5 or d > 1e-4 then fail("2 x B does not track 1 x 2B") end
end
-- The .grads are views of the buckets: under zero_grad(false) and no_sync, with the last bias used on rank 0 only
-- (rank 1's slot enters as zeros), each .grad is the average of the ranks' local gradients, computed here apart.
do
  local vm = model()
  local vd = flame.nn.DistributedDataParallel(vm, {bucket_cap_mb = 0.05})
  local lone = model() -- the same start: rank 0's weights
  flame.no_grad(function() for i, p in ipairs(lone:parameters()) do p:copy_(vm:parameters()[i]) end end)
  local vopt = flame.optim.SGD(vm:parameters(), {lr = 1e-2})
  local lopt = flame.optim.SGD(lone:parameters(), {lr = 1e-2})
  local function loss(m, x)
    local h = m[4](m[3](m[2](m[1](x))))
    if r == 0 then return m[5](h):sum() end
    return h:matmul(m[5].weight:t()):sum() -- no bias
  end
  for i = 1, 3 do
    local x = batch(100 + i):narrow(1, r * B + 1, B)
    vopt:zero_grad(false); lopt:zero_grad(false)
    vd:no_sync(function() loss(vm, x:narrow(1, 1, B // 2)):backward() end)
    loss(vm, x:narrow(1, B // 2 + 1, B // 2)):backward()
    loss(lone, x:narrow(1, 1, B // 2)):backward()
    loss(lone, x:narrow(1, B // 2 + 1, B // 2)):backward()
    for k, p in ipairs(lone:parameters()) do
      if p.grad == nil then p.grad = flame.zeros_like(p) end
      D.all_reduce(p.grad, "avg")
      local d = (vm:parameters()[k].grad - p.grad):abs():max():item()
      if d > 1e-6 then fail(string.format("views step %d: grad %d differs from the averaged local one by %g", i, k, d)) end
    end
    for _, b in ipairs(vd._ddp.buckets) do
      for j, p in ipairs(b.params) do
        if not p.grad:is_set_to(b.views[j]) then fail("views: a .grad is not its bucket slot") end
      end
    end
    vopt:step(); lopt:step()
  end
end
D.barrier()
print("ddp ok: rank " .. r)
D.destroy()
