-- DistributedDataParallel at world size 2 without NCCL or a second device: each rank is a replica of the model in
-- this process, its DDP built against a stand-in for flame.distributed (fake_world, through the DDP._dist seam).
-- Collectives pair up by issue order, as NCCL's do: the k-th collective of every rank is one operation, run when
-- the last rank issues it, on what each rank's tensor held when it was issued (a device stream reads it then).
-- Ranks that issue different collectives at one position fail there (NCCL would reduce one rank's bucket with
-- another's, or hang), and a tensor written between its collective's issue and the end of it fails (on a device
-- that write races the reduction). The same checks on two GPUs are spec/dist/ddp.lua's (scripts/gpu-dist.sh).
local H = require "helper"
local flame = H.flame
local F = flame.F
local DDP = flame.nn.DistributedDataParallel
local dev = H.device == "cuda" and "cuda:0" or "cpu"

local function fake_world(n)
  local world = {n = n, calls = {}}
  for r = 0, n - 1 do world.calls[r] = {} end
  local function what(c) return string.format("%s(%s) of %d %s", c.kind, tostring(c.arg), c.t:numel(), c.t.dtype) end
  local function untouched(c, r, when)
    if not flame.allclose(c.t, c.snap, {rtol = 0, atol = 0}) then
      error(string.format("fake world: rank %d's collective %d, %s, was written %s", r, c.k, what(c), when), 0)
    end
  end
  -- collective k is in from every rank: one operation, its result written to every rank's tensor
  local function run(k)
    local c0 = world.calls[0][k]
    for r = 1, n - 1 do
      local c = world.calls[r][k]
      if c.kind ~= c0.kind or c.arg ~= c0.arg or c.t:numel() ~= c0.t:numel() or c.t.dtype ~= c0.t.dtype then
        error(string.format("fake world: collective %d differs between ranks: rank 0 issued %s, rank %d %s", k,
          what(c0), r, what(c)), 0)
      end
    end
    local out
    if c0.kind == "broadcast" then
      out = world.calls[c0.arg][k].snap
    else
      out = c0.snap
      for r = 1, n - 1 do out = out + world.calls[r][k].snap end
      if c0.arg == "avg" then out = out / n end
    end
    for r = 0, n - 1 do
      local c = world.calls[r][k]
      untouched(c, r, "before the last rank issued it")
      flame.no_grad(function() c.t:copy_(out:reshape(c.t.shape)) end)
      c.done = true
    end
  end
  local function issue(r, kind, t, arg)
    local list = world.calls[r]
    local c = {kind = kind, t = t, arg = arg, snap = t:detach():clone(), k = #list + 1}
    list[c.k] = c
    for q = 0, n - 1 do if #world.calls[q] < c.k then return c end end
    run(c.k)
    return c
  end
  -- rank r's flame.distributed: what DDP calls, the rest the real module's (the bucket plan, _bind_grads)
  function world.rank(r)
    local d = setmetatable({}, {__index = flame.distributed})
    function d.is_initialized() return true end
    function d.get_rank() return r end
    function d.get_world_size() return n end
    function d.broadcast(t, src) issue(r, "broadcast", t, src); return t end
    function d.all_reduce(t, op, opts)
      local c = issue(r, "all_reduce", t, op or "sum")
      if not (opts and opts.async_op) then return t end
      return t, {wait = function() if not c.done then untouched(c, r, "before its wait") end end}
    end
    return d
  end
  -- every collective issued so far met the other ranks'; returns how many each rank issued
  function world.settled()
    for r = 0, n - 1 do
      for _, c in ipairs(world.calls[r]) do
        if not c.done then error(string.format("fake world: rank %d's collective %d, %s, never met the other ranks'",
          r, c.k, what(c)), 0) end
      end
    end
    return #world.calls[0]
  end
  -- DDP(make(r), opts) for every rank, each against its rank of this world
  function world.ddp(make, opts)
    local ddps, mods = {}, {}
    for r = 0, n - 1 do
      mods[r] = make(r)
      DDP._dist = world.rank(r)
      local ok, d = pcall(DDP, mods[r], opts)
      DDP._dist = flame.distributed
      assert(ok, d)
      ddps[r] = d
    end
    return ddps, mods
  end
  return world
end

describe("the fake world of DDP's two-rank specs", function()
  it("pairs collectives by issue order and averages what each rank's tensor held when issued", function()
    local w = fake_world(2)
    local d0, d1 = w.rank(0), w.rank(1)
    local a, b = flame.tensor({1, 2}):to(dev), flame.tensor({3, 6}):to(dev)
    local _, work = d0.all_reduce(a, "avg", {async_op = true})
    work:wait()
    H.close(a, flame.tensor({1, 2}), {atol = 0, rtol = 0}) -- not yet: rank 1 has not issued it
    d1.all_reduce(b, "avg")
    H.close(a, flame.tensor({2, 4}), {atol = 0, rtol = 0})
    H.close(b, flame.tensor({2, 4}), {atol = 0, rtol = 0})
    d1.broadcast(b, 0) -- rank 1 first this time: rank 0's value when rank 0 issues it
    a:fill_(7)
    d0.broadcast(a, 0)
    H.close(b, flame.full({2}, 7), {atol = 0, rtol = 0})
    assert.equal(2, w.settled())
  end)

  it("fails on collectives that differ between ranks, a tensor written while reduced, one never met", function()
    local w = fake_world(2)
    w.rank(0).all_reduce(flame.ones(3):to(dev), "avg")
    H.errors(function() w.rank(1).all_reduce(flame.ones(4):to(dev), "avg") end,
      "fake world: collective 1 differs between ranks: rank 0 issued all_reduce(avg) of 3 f32, rank 1 all_reduce(avg) of 4 f32")
    w = fake_world(2)
    local a = flame.ones(2):to(dev)
    local _, work = w.rank(0).all_reduce(a, "avg", {async_op = true})
    a:add_(1)
    H.errors(function() work:wait() end, "fake world: rank 0's collective 1, all_reduce(avg) of 2 f32, was written before its wait")
    H.errors(function() w.rank(1).all_reduce(flame.ones(2):to(dev), "avg") end, "was written before the last rank issued it")
    w = fake_world(2)
    w.rank(1).broadcast(flame.ones(2):to(dev), 0)
    H.errors(function() w.settled() end, "fake world: rank 1's collective 1, broadcast(0) of 2 f32, never met the other ranks'")
  end)
end)

describe("DistributedDataParallel on two ranks", function()
  local function mlp(seed)
    flame.manual_seed(seed)
    return flame.nn.Sequential(flame.nn.Linear(4, 16), flame.nn.Tanh(), flame.nn.Linear(16, 16), flame.nn.Tanh(),
      flame.nn.Linear(16, 3)):to(dev)
  end
  -- 0.0005 MB: buckets {last bias, last weight, middle bias}, {middle weight}, {first bias, first weight}
  local CAP = 0.0005
  -- rank r's loss on rows i .. i + 2 of step s's batch; `unused` names a bias rank 1 leaves out
  local function loss(m, r, s, i, unused)
    flame.manual_seed(700 + 10 * s + r)
    local x, y = flame.randn(6, 4):to(dev), flame.randn(6, 3):to(dev)
    x, y = x:narrow(1, i, 3), y:narrow(1, i, 3)
    local h = r == 1 and unused == "first" and x:matmul(m[1].weight:t()) or m[1](x)
    h = m[4](m[3](m[2](h)))
    local out = r == 1 and unused == "last" and h:matmul(m[5].weight:t()) or m[5](h)
    return F.mse_loss(out, y)
  end
  local function views_of(ddp)
    for _, b in ipairs(ddp._ddp.buckets) do
      for j, p in ipairs(b.params) do assert.is_true(p.grad:is_set_to(b.views[j]), "a .grad is not its bucket slot") end
    end
  end
  -- each rank's local gradients of step s (two half batches accumulated), from a plain model
  local function local_grads(ref, s, unused)
    local out = {}
    for r = 0, 1 do
      for _, p in ipairs(ref:parameters()) do p.grad = nil end
      loss(ref, r, s, 1, unused):backward()
      loss(ref, r, s, 4, unused):backward()
      out[r] = {}
      for k, p in ipairs(ref:parameters()) do out[r][k] = p.grad and p.grad:clone() or flame.zeros_like(p) end
    end
    return out
  end

  for _, unused in ipairs({"last", "first", "none"}) do
    for _, none in ipairs({false, true}) do
      local case = string.format("the %s bias used on rank 0 only, zero_grad(%s)", unused, tostring(none))
      if unused == "none" then case = "every parameter used, zero_grad(" .. tostring(none) .. ")" end
      it("averages the local gradients into the bucket views after no_sync then sync: " .. case, function()
        local w = fake_world(2)
        local ddps, mods = w.ddp(mlp, {bucket_cap_mb = CAP})
        assert.equal(3, #ddps[0]:bucket_info())
        local ref = mlp(0) -- rank 0's start, which the construction broadcast
        for k, p in ipairs(ref:parameters()) do
          for r = 0, 1 do H.close(mods[r]:parameters()[k], p, {atol = 0, rtol = 0}, "broadcast, param " .. k) end
        end
        local opts = {}
        for r = 0, 1 do opts[r] = flame.optim.SGD(mods[r]:parameters(), {lr = 0.1}) end
        local ropt = flame.optim.SGD(ref:parameters(), {lr = 0.1})
        for s = 1, 3 do
          for r = 0, 1 do
            opts[r]:zero_grad(none)
            ddps[r]:no_sync(function() loss(mods[r], r, s, 1, unused):backward() end)
          end
          -- the synced backwards: rank 0's collectives meet rank 1's as rank 1 issues them
          for r = 0, 1 do loss(mods[r], r, s, 4, unused):backward() end
          assert.equal(6 + 3 * s, w.settled()) -- the 6 parameters' broadcasts, then 3 buckets a step
          local g = local_grads(ref, s, unused)
          for k, p in ipairs(ref:parameters()) do
            local avg = (g[0][k] + g[1][k]) / 2
            for r = 0, 1 do
              H.close(mods[r]:parameters()[k].grad, avg, {atol = 1e-6, rtol = 1e-6},
                string.format("step %d, rank %d: grad %d", s, r, k))
            end
            p.grad = avg
          end
          for r = 0, 1 do views_of(ddps[r]); opts[r]:step() end
          ropt:step()
        end
        for k, p in ipairs(ref:parameters()) do
          H.close(mods[1]:parameters()[k], mods[0]:parameters()[k], {atol = 0, rtol = 0}, "ranks differ: param " .. k)
          H.close(mods[0]:parameters()[k], p, {atol = 1e-6, rtol = 1e-6}, "param " .. k)
        end
        local st0, st1 = ddps[0]._ddp, ddps[1]._ddp
        assert.equal(9, st0.reductions); assert.equal(9, st1.reductions) -- every bucket once a synced step
        if unused == "none" then assert.equal(9, st0.early); assert.equal(9, st1.early) end -- all from the hooks
      end)
    end
  end

  it("reduces every bucket in bucket order on every rank, overlapped or not, a bias unused on rank 1 or not", function()
    for _, overlap in ipairs({true, false}) do
      local w = fake_world(2)
      local ddps, mods = w.ddp(mlp, {bucket_cap_mb = CAP, overlap = overlap})
      for s = 1, 2 do
        for r = 0, 1 do
          flame.manual_seed(900 + 10 * s + r)
          for _, p in ipairs(mods[r]:parameters()) do p.grad = nil end
          local x = flame.randn(5, 4):to(dev)
          -- step 2 on rank 1: the last bias (in the first bucket) gets no gradient
          local out = (s == 2 and r == 1) and mods[r][4](mods[r][3](mods[r][2](mods[r][1](x)))):matmul(mods[r][5].weight:t())
            or ddps[r](x)
          out:sum():backward()
        end
      end
      assert.equal(6 + 6, w.settled()) -- the 6 parameters' broadcasts, 3 buckets a step
      local per = {}
      for i, b in ipairs(ddps[0]:bucket_info()) do per[i] = b.numel end
      for r = 0, 1 do
        local sizes = {}
        for k = 7, #w.calls[r] do sizes[#sizes + 1] = w.calls[r][k].t:numel() end
        assert.same({per[1], per[2], per[3], per[1], per[2], per[3]}, sizes)
      end
      -- rank 1's step 2 waited for the end of its backward: the first bucket was not full before
      assert.same({6, 3}, {ddps[0]._ddp.early, ddps[1]._ddp.early})
    end
  end)
end)
