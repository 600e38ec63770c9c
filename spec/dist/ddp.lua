-- Run by scripts/gpu-dist.sh under the launcher with 2 ranks: DDP keeps the ranks' parameters bit-identical,
-- 2 ranks x batch B track 1 rank x 2B (rank 0 trains that reference itself) within f32 reduction noise, and
-- ZeRO-1 AdamW tracks plain DDP + AdamW.
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
for i, p in ipairs(zmodel:parameters()) do
  local d = (p - net:parameters()[i]):abs():max():item()
  if d > 1e-5 then fail(string.format("ZeRO-1 parameter %d differs from DDP's by %g", i, d)) end
end
if r == 0 then
  local d = 0
  for i, p in ipairs(ref:parameters()) do d = math.max(d, (p - net:parameters()[i]):abs():max():item()) end
  print(string.format("ddp ok: 2 ranks x B vs 1 x 2B: loss rel diff max %.3g, param diff max %.3g", worst, d))
  if worst > 1e-5 or d > 1e-4 then fail("2 x B does not track 1 x 2B") end
end
D.barrier()
print("ddp ok: rank " .. r)
D.destroy()
