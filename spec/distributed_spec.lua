-- flame.distributed on one machine without a second GPU: the launcher (flame-lua --nproc), the TCP rendezvous
-- over loopback, the bucket plan, DistributedSampler, world-1 collectives and DDP (on CUDA these go through NCCL
-- with one rank), and the error paths. The multi-GPU checks are scripts/gpu-dist.sh's, on the x2 machine.
local H = require "helper"
local flame = H.flame
local D = flame.distributed
local F = flame.F

local exe = os.getenv("FLAME_LUA") or "build/flame-lua"
local dev = H.device == "cuda" and "cuda:0" or "cpu"

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- Loopback ports the system picks free (bind to port 0), so concurrent runs of this file do not collide.
-- on_free_port(fn): fn(port) -> text, ...; run again on a new port when the text says the port was taken in the
-- moment between the pick and rank 0's listen.
local function on_free_port(fn)
  local res
  for _ = 1, 3 do
    res = table.pack(fn(D._free_port()))
    if not tostring(res[1]):find("Address already in use", 1, true) then break end
  end
  return table.unpack(res, 1, res.n)
end

describe("flame-lua --nproc (the launcher)", function()
  it("starts N ranks with the environment set, the parent's passed through, output prefixed", function()
    local s = script([[print(os.getenv("RANK") .. "/" .. os.getenv("WORLD_SIZE") .. " local " .. os.getenv("LOCAL_RANK")
      .. " " .. os.getenv("MASTER_ADDR") .. ":" .. os.getenv("MASTER_PORT") .. " " .. os.getenv("FLAME_SPEC_FOO")
      .. " " .. table.concat(arg, ","))
      io.stderr:write("to stderr\n")]])
    local out, code = run("FLAME_SPEC_FOO=bar " .. exe .. " --nproc 3 --master-port 4242 " .. s .. " x y")
    assert.equal(0, code)
    for r = 0, 2 do
      assert.truthy(out:find("[rank " .. r .. "] " .. r .. "/3 local " .. r .. " 127.0.0.1:4242 bar x,y", 1, true), out)
      assert.truthy(out:find("[rank " .. r .. "] to stderr", 1, true), out)
    end
    os.remove(s)
  end)

  it("numbers ranks across nodes like torchrun", function()
    local s = script([[print(os.getenv("RANK") .. "/" .. os.getenv("WORLD_SIZE") .. " node " .. os.getenv("NODE_RANK"))]])
    local out, code = run(exe .. " --nproc 2 --nnodes 3 --node-rank 1 --master-addr localhost " .. s)
    assert.equal(0, code)
    assert.truthy(out:find("[rank 2] 2/6 node 1", 1, true), out)
    assert.truthy(out:find("[rank 3] 3/6 node 1", 1, true), out)
    os.remove(s)
  end)

  it("stops every rank when one fails and returns its status", function()
    local s = script([[if os.getenv("RANK") == "1" then os.exit(7) end
      os.execute("sleep 60")
      print("should not get here")]])
    local t0 = os.time()
    local out, code = run(exe .. " --nproc 3 " .. s)
    assert.equal(7, code)
    assert.truthy(os.time() - t0 < 30, "the other ranks were not stopped")
    assert.truthy(out:find("rank 1 failed (exit 7): stopping the other ranks", 1, true), out)
    assert.falsy(out:find("should not get here", 1, true))
    os.remove(s)
  end)

  it("rejects bad options", function()
    local out, code = run(exe .. " --nproc 0 x.lua")
    assert.equal(2, code)
    assert.truthy(out:find("bad value for --nproc", 1, true), out)
    out, code = run(exe .. " --nproc 2 --frobnicate 1 x.lua")
    assert.truthy(out:find("unknown option --frobnicate", 1, true), out)
    out, code = run(exe .. " --nproc 2")
    assert.truthy(out:find("no script given", 1, true), out)
    out, code = run(exe .. " --nproc 2 --nnodes 2 --node-rank 2 x.lua")
    assert.truthy(out:find("--node-rank must be below --nnodes", 1, true), out)
  end)
end)

describe("the rendezvous over loopback", function()
  it("hands rank 0's blob to every rank", function()
    local s = script([[local D = flame.distributed
      local r = tonumber(os.getenv("RANK"))
      local b = D._rendezvous("127.0.0.1", tonumber(os.getenv("MASTER_PORT")), r, 4, r == 0 and "secret-id-0123" or nil, 20, 14)
      print("got " .. b)]])
    local out, code = on_free_port(function(p) return run(exe .. " --nproc 4 --master-port " .. p .. " " .. s) end)
    assert.equal(0, code, out)
    for r = 0, 3 do assert.truthy(out:find("[rank " .. r .. "] got secret-id-0123", 1, true), out) end
    os.remove(s)
  end)

  it("names the ranks that never came", function()
    local err, ok = on_free_port(function(p)
      local ok_, err_ = pcall(D._rendezvous, "127.0.0.1", p, 0, 3, "x", 1, 1)
      return err_, ok_
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("rank 0 waited at 127.0.0.1:%d+ for ranks that never came: 1, 2"), err)
  end)

  it("reports ranks that disagree on the world size, and a rank 0 that is not there", function()
    local s = script([[local D = flame.distributed
      local r = tonumber(os.getenv("RANK"))
      local ok, err = pcall(D._rendezvous, "127.0.0.1", tonumber(os.getenv("MASTER_PORT")), r, r == 0 and 2 or 3, "abcd", 5, 4)
      print(ok and "ok" or err)]])
    local out = on_free_port(function(p) return run(exe .. " --nproc 2 --master-port " .. p .. " " .. s) end)
    assert.truthy(out:find("rank 1 says WORLD_SIZE 3, rank 0 has 2", 1, true), out)
    os.remove(s)
    local ok, err = pcall(D._rendezvous, "127.0.0.1", D._free_port(), 1, 2, nil, 0.5, 4) -- nobody listens there
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot reach rank 0 at 127.0.0.1:", 1, true), err)
    H.errors(function() D._rendezvous("127.0.0.1", 70000, 0, 2, "x", 1, 1) end, "MASTER_PORT 70000 is not a port")
    H.errors(function() D._rendezvous("127.0.0.1", 1234, 3, 2, "x", 1, 1) end, "RANK 3 must be in 0..WORLD_SIZE-1")
  end)

  it("finds free ports", function()
    local p = D._free_port()
    assert.truthy(math.type(p) == "integer" and p > 0 and p < 65536, p)
    -- free: rank 0 of a one-peer job can listen there (and names the peer that never came)
    local ok, err = pcall(D._rendezvous, "127.0.0.1", p, 0, 2, "x", 0.2, 1)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("ranks that never came: 1", 1, true), err)
  end)
end)

describe("the bucket plan", function()
  it("fills buckets up to the cap, splits at device or dtype changes, gives a big param its own", function()
    local plan = D._bucket_plan({{10, 4, "a"}, {10, 4, "a"}, {10, 4, "a"}, {100, 4, "a"}, {5, 4, "a"}, {5, 2, "b"},
                                 {5, 2, "b"}}, 80)
    assert.same({{1, 2}, {3}, {4}, {5}, {6, 7}}, plan)
    assert.same({}, D._bucket_plan({}, 10))
  end)
end)

describe("binding gradients to bucket slots (_bind_grads, one multi-tensor copy)", function()
  -- sizes around the multi-tensor kernel's chunk edges (65536 elements), and one odd layout
  local sizes = {1, 7, 65535, 65536, 65537, 130001}
  local function setup(dtype)
    flame.manual_seed(5)
    local ps, views, total = {}, {}, 0
    for i, n in ipairs(sizes) do total = total + n end
    local flat = flame.full({total + 3}, 99, {dtype = dtype, device = dev})
    local off = 1
    for i, n in ipairs(sizes) do
      ps[i] = flame.randn(n, {dtype = dtype, device = dev})
      ps[i].requires_grad = true
      views[i] = flat:narrow(1, off, n)
      off = off + n
    end
    return ps, views, flat
  end
  for _, dt in ipairs({"f32", "f64", "bf16", "f16"}) do
    it("copies fresh gradients in, zeros missing ones, leaves bound ones, " .. dt, function()
      local ps, views = setup(dt)
      local want = {}
      for i, p in ipairs(ps) do
        if i == 2 then p.grad = nil -- no gradient: its slot becomes zeros
        elseif i == 5 then p.grad = flame.randn(sizes[i] * 2, {dtype = dt, device = dev}):view(2, -1):t()
          :contiguous():t():reshape(-1):narrow(1, 1, sizes[i]) -- a fresh gradient of another storage
        else p.grad = flame.randn(sizes[i], {dtype = dt, device = dev}) end
        want[i] = p.grad and p.grad:clone() or flame.zeros(sizes[i], {dtype = dt, device = dev})
      end
      D._bind_grads(ps, views)
      for i, p in ipairs(ps) do
        assert.is_true(p.grad:is_set_to(views[i]), "param " .. i .. " is bound to its slot")
        H.close(views[i]:double(), want[i]:double(), {atol = 0, rtol = 0}, "slot " .. i)
      end
      -- bound: a second call copies nothing; the engine accumulates into the slot in place
      views[3]:fill_(4)
      D._bind_grads(ps, views)
      H.close(ps[3].grad:double(), flame.full({sizes[3]}, 4, {dtype = "f64"}), {atol = 0}, "untouched")
    end)
  end
  it("a strided gradient and the padding between slots", function()
    local ps, views, flat = setup("f32")
    local g = flame.randn(sizes[4], 2, {device = dev}):select(2, 1) -- stride 2
    ps[4].grad = g
    D._bind_grads({ps[4]}, {views[4]})
    H.close(views[4], g, {atol = 0, rtol = 0})
    H.close(flat:narrow(1, flat:numel() - 2, 3), flame.full({3}, 99, {device = dev}), {atol = 0}, "past the slots")
  end)
  it("errors name the pair", function()
    local ps, views = setup("f32")
    ps[1].grad = flame.zeros(sizes[1], {device = dev})
    local v64 = flame.zeros(sizes[1], {dtype = "f64", device = dev})
    H.errors(function() D._bind_grads({ps[1]}, {v64}) end, "multi_copy: source 1", "must be f64")
    H.errors(function() D._bind_grads({ps[1]}, {flame.zeros(2, {device = dev})}) end, "source 1",
      "does not match its target")
    ps[2].grad = flame.zeros(sizes[2], {device = dev})
    H.errors(function() D._bind_grads({ps[1], ps[2]}, {views[1], flame.zeros(sizes[2], 2, {device = dev}):select(2, 1)})
      end, "multi_copy: target 2", "must be contiguous")
    H.errors(function() D._bind_grads({ps[1], ps[2]}, {views[1]}) end, "2 parameters for 1 views")
  end)
end)

describe("DistributedSampler", function()
  local ds = flame.data.TensorDataset(flame.arange(1, 11))

  it("splits one permutation over the ranks, padded to equal counts", function()
    local seen = {}
    for r = 0, 2 do
      local s = flame.data.DistributedSampler(ds, {num_replicas = 3, rank = r, seed = 5})
      assert.equal(4, #s)
      for _, i in ipairs(s:indices():totable()) do seen[#seen + 1] = i end
    end
    table.sort(seen)
    local count = {}
    for _, i in ipairs(seen) do count[i] = (count[i] or 0) + 1 end
    for i = 1, 10 do assert.truthy(count[i] and count[i] >= 1, "index " .. i .. " missing") end
    assert.equal(12, #seen)
  end)

  it("takes every num_replicas-th index in order without shuffle, and drops the tail with drop_last", function()
    local s = flame.data.DistributedSampler(ds, {num_replicas = 3, rank = 1, shuffle = false})
    assert.same({2, 5, 8, 1}, s:indices():totable())
    s = flame.data.DistributedSampler(ds, {num_replicas = 3, rank = 2, shuffle = false, drop_last = true})
    assert.same({3, 6, 9}, s:indices():totable())
  end)

  it("reshuffles per epoch, reproducibly, without moving the global generator", function()
    local s = flame.data.DistributedSampler(ds, {num_replicas = 2, rank = 0})
    flame.manual_seed(1)
    local before = flame.rand(3):totable()
    flame.manual_seed(1)
    local a = s:indices():totable()
    s:set_epoch(1)
    local b = s:indices():totable()
    s:set_epoch(0)
    assert.same(a, s:indices():totable())
    assert.are_not.same(a, b)
    assert.same(before, flame.rand(3):totable())
  end)

  it("feeds a DataLoader", function()
    local s = flame.data.DistributedSampler(ds, {num_replicas = 2, rank = 1, shuffle = false})
    local loader = flame.data.DataLoader(ds, {batch_size = 2, sampler = s})
    assert.equal(3, #loader)
    local got = {}
    for b in loader:iter() do for _, v in ipairs(b[1]:totable()) do got[#got + 1] = v end end
    assert.same({2, 4, 6, 8, 10}, got)
    H.errors(function() flame.data.DataLoader(ds, {sampler = s, shuffle = true}) end, "sampler and shuffle are mutually exclusive")
    H.errors(function() flame.data.DistributedSampler(ds, {num_replicas = 2, rank = 2}) end, "rank 2 must be in 0..1")
  end)
end)

describe("flame.autograd.queue_callback", function()
  it("runs queued functions once, in order, after the outermost backward returns", function()
    local w = flame.ones(3, {requires_grad = true})
    local seen = {}
    w:register_hook(function(g)
      flame.autograd.queue_callback(function() seen[#seen + 1] = "a:" .. tostring(w.grad ~= nil) end)
      flame.autograd.queue_callback(function() seen[#seen + 1] = "b" end)
    end)
    assert.same({}, seen)
    ;(w * 2):sum():backward()
    assert.same({"a:true", "b"}, seen) -- after .grad was stored
    ;(w * 2):sum():backward()
    assert.same({"a:true", "b", "a:true", "b"}, seen)
    H.errors(function() flame.autograd.queue_callback(3) end, "function expected")
  end)
end)

describe("collectives and DDP with one rank", function()
  before_each(function() D.destroy() end)
  after_each(function() D.destroy() end)

  it("needs init, and init once", function()
    H.errors(function() D.all_reduce(flame.ones(2)) end, "distributed.all_reduce: call distributed.init() first")
    H.errors(function() flame.nn.DistributedDataParallel(flame.nn.Linear(2, 2)) end, "call flame.distributed.init() first")
    D.init({device = dev, world_size = 1, rank = 0})
    H.errors(function() D.init({device = dev}) end, "distributed.init: already initialized")
    H.errors(function() D.init({bogus = 1}) end, "distributed.init: unknown option 'bogus'")
  end)

  it("runs every collective as its definition gives for one rank", function()
    D.init({device = dev, world_size = 1, rank = 0})
    assert.equal(0, D.get_rank())
    assert.equal(1, D.get_world_size())
    local t = flame.tensor({1.5, -2, 3}):to(dev)
    for _, op in ipairs({"sum", "avg", "max", "min"}) do H.close(D.all_reduce(t:clone(), op), t, {atol = 0, rtol = 0}) end
    H.close(D.broadcast(t:clone(), 0), t, {atol = 0, rtol = 0})
    H.close(D.all_gather(t), t:view(1, 3), {atol = 0, rtol = 0})
    H.close(D.reduce_scatter(t, "sum"), t, {atol = 0, rtol = 0})
    local same, work = D.all_reduce(t:clone(), "sum", {async_op = true})
    work:wait()
    H.close(same, t, {atol = 0, rtol = 0})
    assert.equal(t, D.all_reduce(t, "sum", {async_op = false}))
    D.barrier()
    H.errors(function() D.all_reduce(t, "sum", {async = true}) end, "distributed.all_reduce: unknown option 'async'")
    H.errors(function() D.all_reduce(t, "sum", true) end, "distributed.all_reduce: options must be a table, got boolean")
    H.errors(function() D.broadcast(t, 1) end, "broadcast: src rank 1 must be in 0..0")
    H.errors(function() D.all_reduce(t, "prod") end, "invalid option 'prod'")
    H.errors(function() D.all_reduce(flame.randn(2, 3):to(dev):t()) end, "must be contiguous")
    H.errors(function() D.all_reduce(flame.ones(2, {dtype = "i64"}):to(dev), "avg") end, "avg needs a float tensor")
    if dev ~= "cpu" then H.errors(function() D.all_reduce(flame.ones(2)) end, "is not on the communicator's device") end
  end)

  it("refuses more than one rank on the CPU", function()
    if dev ~= "cpu" then return end
    H.errors(function() D._comm("cpu", "", 0, 2) end, "cpu has no collectives (NCCL is for cuda); only WORLD_SIZE 1 runs there, got 2")
  end)

  it("trains exactly like the plain model, with buckets, and accumulates under no_sync", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local function model()
      flame.manual_seed(11)
      return flame.nn.Sequential(flame.nn.Linear(4, 16), flame.nn.GELU(), flame.nn.Linear(16, 3)):to(dev)
    end
    local plain, wrapped = model(), model()
    local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.0002})
    assert.truthy(#ddp:bucket_info() >= 2)
    local o1 = flame.optim.AdamW(plain:parameters(), {lr = 1e-2})
    local o2 = flame.optim.AdamW(ddp:parameters(), {lr = 1e-2})
    for step = 1, 3 do
      flame.manual_seed(100 + step)
      local x, y = flame.randn(8, 4):to(dev), flame.randn(8, 3):to(dev)
      o1:zero_grad(); o2:zero_grad()
      F.mse_loss(plain(x:narrow(1, 1, 4)), y:narrow(1, 1, 4)):backward()
      F.mse_loss(plain(x:narrow(1, 5, 4)), y:narrow(1, 5, 4)):backward()
      ddp:no_sync(function() F.mse_loss(ddp(x:narrow(1, 1, 4)), y:narrow(1, 1, 4)):backward() end)
      F.mse_loss(ddp(x:narrow(1, 5, 4)), y:narrow(1, 5, 4)):backward()
      o1:step(); o2:step()
    end
    local p1, p2 = plain:parameters(), wrapped:parameters()
    for i = 1, #p1 do H.close(p2[i], p1[i], {atol = 0, rtol = 0}, "param " .. i) end
    local nb = #ddp:bucket_info()
    assert.equal(3 * nb, ddp._ddp.reductions) -- one all-reduce per bucket per synced step, none under no_sync
    assert.equal(3 * nb, ddp._ddp.early)      -- every one launched from a gradient hook, during the backward
    local sd = ddp:state_dict()
    assert.truthy(sd["module.0.weight"], "PyTorch's names: module.<index from 0>")
  end)

  it("with overlap = false and with a parameter left out of a step, still trains like the plain model", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local function model()
      flame.manual_seed(13)
      return flame.nn.Sequential(flame.nn.Linear(4, 8), flame.nn.Tanh(), flame.nn.Linear(8, 2)):to(dev)
    end
    local plain, wrapped = model(), model()
    local ddp = flame.nn.DistributedDataParallel(wrapped, {overlap = false, bucket_cap_mb = 0.0001})
    local o1 = flame.optim.SGD(plain:parameters(), {lr = 0.1})
    local o2 = flame.optim.SGD(ddp:parameters(), {lr = 0.1})
    for step = 1, 2 do
      flame.manual_seed(300 + step)
      local x = flame.randn(5, 4):to(dev)
      o1:zero_grad(); o2:zero_grad()
      -- step 2 leaves the last layer's bias out: DDP reduces its bucket after the backward, with a zero there
      local function loss(m) return step == 1 and m(x):sum() or (m[3].weight:matmul(m[2](m[1](x)):t())):sum() end
      loss(plain):backward()
      local l2 = step == 1 and ddp(x):sum() or loss(ddp.module)
      l2:backward()
      o1:step(); o2:step()
    end
    local p1, p2 = plain:parameters(), wrapped:parameters()
    for i = 1, #p1 do H.close(p2[i], p1[i], {atol = 1e-6, rtol = 1e-6}, "param " .. i) end
    local nb = #ddp:bucket_info()
    assert.equal(2 * nb, ddp._ddp.reductions)
    -- step 2: the bias's bucket, the first, never filled: it and the later ones (buckets are reduced in order, the
    -- same on every rank) are reduced after the backward
    assert.equal(nb, ddp._ddp.early)
    H.close(wrapped[3].bias.grad, flame.zeros(2):to(dev), {atol = 0, rtol = 0})
  end)

  -- gradient_as_bucket_view: the .grads are views of the buckets, the backward accumulates into them
  local function mlp(seed)
    flame.manual_seed(seed)
    return flame.nn.Sequential(flame.nn.Linear(4, 8), flame.nn.Tanh(), flame.nn.Linear(8, 8), flame.nn.Tanh(),
      flame.nn.Linear(8, 2)):to(dev)
  end
  local function same_params(a, b, what)
    local pa, pb = a:parameters(), b:parameters()
    for i = 1, #pa do H.close(pb[i], pa[i], {atol = 0, rtol = 0}, what .. ": param " .. i) end
  end
  local function views_of(ddp)
    local n = 0
    for _, b in ipairs(ddp._ddp.buckets) do
      for j, p in ipairs(b.params) do
        assert.is_true(p.grad:is_set_to(b.views[j]), "a .grad is not its bucket slot")
        n = n + 1
      end
    end
    return n
  end

  it("keeps every .grad a view of its bucket, under zero_grad to none or to zeros, no_sync and retain_graph", function()
    D.init({device = dev, world_size = 1, rank = 0})
    for _, none in ipairs({true, false}) do
      local plain, wrapped = mlp(21), mlp(21)
      local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.0002})
      assert.truthy(#ddp:bucket_info() >= 2)
      local o1 = flame.optim.AdamW(plain:parameters(), {lr = 1e-2})
      local o2 = flame.optim.AdamW(ddp:parameters(), {lr = 1e-2})
      for step = 1, 4 do
        flame.manual_seed(400 + step)
        local x, y = flame.randn(9, 4):to(dev), flame.randn(9, 2):to(dev)
        o1:zero_grad(none); o2:zero_grad(none)
        for _, m in ipairs({plain, ddp}) do
          local function part(i) return F.mse_loss(m(x:narrow(1, i, 3)), y:narrow(1, i, 3)) end
          if m == ddp then
            ddp:no_sync(function() part(1):backward() end) -- two accumulating backwards without communication
            ddp:no_sync(function() part(4):backward() end)
          else
            part(1):backward(); part(4):backward()
          end
          local l = part(7)
          l:backward({retain_graph = step % 2 == 0})
          if step % 2 == 0 then (l * 0.5):backward() end -- a second synced backward over the same graph
        end
        H.close(flame.optim.clip_grad_norm(ddp:parameters(), 0.5), flame.optim.clip_grad_norm(plain:parameters(), 0.5),
          {atol = 0, rtol = 0})
        o1:step(); o2:step()
        assert.equal(#wrapped:parameters(), views_of(ddp))
      end
      same_params(plain, wrapped, "set_to_none " .. tostring(none))
      assert.equal(6 * #ddp:bucket_info(), ddp._ddp.reductions) -- 4 steps, 2 of them with two synced backwards
    end
  end)

  it("runs a synced step with the kernels of plain training: no gradient copied in or out", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local plain, wrapped = mlp(22), mlp(22)
    local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.0001})
    local x = flame.randn(3, 4):to(dev)
    local function kernels(m)
      local o = flame.optim.AdamW(m:parameters())
      o:zero_grad(false); m(x):sum():backward(); o:step() -- binds the .grads to the buckets (one copy each)
      local counts = {}
      for _, e in ipairs(flame.profile(function() o:zero_grad(false); m(x):sum():backward(); o:step() end)) do
        counts[e.name] = e.calls
      end
      return counts
    end
    assert.same(kernels(plain), kernels(ddp))
  end)

  it("reduces a parameter without a gradient this step with the .grad it has, as plain training keeps it", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local plain, wrapped = mlp(23), mlp(23)
    local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.0001})
    local x = flame.randn(5, 4):to(dev)
    local function no_bias(m) return m[5].weight:matmul(m[4](m[3](m[2](m[1](x)))):t()):sum() end
    ddp(x):sum():backward(); plain(x):sum():backward()
    no_bias(wrapped):backward(); no_bias(plain):backward() -- no zero_grad: the bias keeps step 1's gradient
    local pa, pb = plain:parameters(), wrapped:parameters()
    for i = 1, #pa do H.close(pb[i].grad, pa[i].grad, {atol = 0, rtol = 0}, "grad " .. i) end
    wrapped[5].bias.grad = nil -- none: its slot enters the reduction as zeros
    no_bias(wrapped):backward()
    H.close(wrapped[5].bias.grad, flame.zeros(2):to(dev), {atol = 0, rtol = 0})
  end)

  it("trains a parameter shared by two modules like the plain model", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local function model()
      flame.manual_seed(24)
      local lin = flame.nn.Linear(4, 4)
      return flame.nn.Sequential(lin, flame.nn.Tanh(), lin, flame.nn.Tanh(), flame.nn.Linear(4, 1)):to(dev)
    end
    local plain, wrapped = model(), model()
    local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.00005})
    local o1, o2 = flame.optim.SGD(plain:parameters(), {lr = 0.1}), flame.optim.SGD(ddp:parameters(), {lr = 0.1})
    for step = 1, 3 do
      flame.manual_seed(500 + step)
      local x = flame.randn(6, 4):to(dev)
      o1:zero_grad(); o2:zero_grad()
      plain(x):sum():backward(); ddp(x):sum():backward()
      o1:step(); o2:step()
    end
    same_params(plain, wrapped, "shared")
    assert.equal(4, views_of(ddp))
  end)

  it("trains checkpointed blocks like the plain model (each gradient arrives in a recomputation's backward)", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local function run(m, params)
      local o = flame.optim.AdamW(params, {lr = 1e-2})
      for step = 1, 2 do
        flame.manual_seed(600 + step)
        local x = flame.randn(4, 4):to(dev)
        o:zero_grad()
        local h = flame.utils.checkpoint(m[1], x)
        h = flame.utils.checkpoint(m[3], m[2](h))
        m[5](m[4](h)):sum():backward()
        o:step()
      end
    end
    local plain, wrapped = mlp(26), mlp(26)
    local ddp = flame.nn.DistributedDataParallel(wrapped, {bucket_cap_mb = 0.0001})
    run(plain, plain:parameters())
    run(wrapped, ddp:parameters())
    same_params(plain, wrapped, "checkpointed")
    assert.equal(2 * #ddp:bucket_info(), ddp._ddp.reductions)
    assert.equal(6, views_of(ddp))
  end)

  it("reduces a bucket once its last gradient is in, never writing it after", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local ddp = flame.nn.DistributedDataParallel(mlp(25), {bucket_cap_mb = 0.0001})
    local real, snaps = D.all_reduce, {}
    D.all_reduce = function(t, ...) -- what each reduction reads when launched
      snaps[#snaps + 1] = {t, t:clone()}
      return real(t, ...)
    end
    local ok, err = pcall(function() ddp(flame.randn(3, 4):to(dev)):sum():backward() end)
    D.all_reduce = real
    assert(ok, err)
    assert.equal(#ddp:bucket_info(), #snaps)
    for i, s in ipairs(snaps) do H.close(s[1], s[2], {atol = 0, rtol = 0}, "bucket " .. i) end -- avg over 1 rank
  end)

  it("refuses a parameter whose gradient arrives twice in one backward (two checkpointed segments)", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local block = flame.nn.Linear(4, 4):to(dev)
    local ddp = flame.nn.DistributedDataParallel(block)
    local x = flame.randn(2, 4):to(dev)
    H.errors(function() flame.utils.checkpoint(ddp, flame.utils.checkpoint(ddp, x)):sum():backward() end,
      "DistributedDataParallel: a parameter of shape 4 got its gradient twice in one backward")
    ddp:no_sync(function() flame.utils.checkpoint(ddp, flame.utils.checkpoint(ddp, x)):sum():backward() end)
    local before = ddp._ddp.reductions
    block.weight.grad, block.bias.grad = nil, nil
    ddp(x):sum():backward() -- the failed backward left no step half done
    assert.equal(before + 1, ddp._ddp.reductions)
    H.close(block.bias.grad, flame.full({4}, 2):to(dev), {atol = 0, rtol = 0})
  end)

  it("ZeRO-1 AdamW gives plain AdamW's parameters and a state that reloads", function()
    D.init({device = dev, world_size = 1, rank = 0})
    local function model()
      flame.manual_seed(12)
      return flame.nn.Sequential(flame.nn.Linear(5, 7), flame.nn.GELU(), flame.nn.Linear(7, 2)):to(dev)
    end
    local a, b = model(), model()
    local oa = flame.optim.AdamW(a:parameters(), {lr = 1e-2, weight_decay = 0.1})
    local ob = flame.optim.AdamW(b, {lr = 1e-2, weight_decay = 0.1, zero = true})
    local function step(m, o, i)
      flame.manual_seed(200 + i)
      local x, y = flame.randn(6, 5):to(dev), flame.randn(6, 2):to(dev)
      o:zero_grad()
      F.mse_loss(m(x), y):backward()
      o:step()
    end
    for i = 1, 3 do step(a, oa, i); step(b, ob, i) end
    local pa, pb = a:parameters(), b:parameters()
    for i = 1, #pa do H.close(pb[i], pa[i], {atol = 0, rtol = 0}, "param " .. i) end
    local sd = ob:state_dict()
    assert.equal(3, sd.step)
    assert.equal(5 * 7 + 7 + 7 * 2 + 2, sd.exp_avg:numel())
    local oc = flame.optim.AdamW(b, {lr = 1e-2, weight_decay = 0.1, zero = true}):load_state_dict(sd)
    for i = 4, 5 do step(a, oa, i); step(b, oc, i) end
    for i = 1, #pa do H.close(pb[i], pa[i], {atol = 0, rtol = 0}, "resumed param " .. i) end
    H.errors(function() oc:load_state_dict(oa:state_dict()) end, "expected a ZeRO state dict")
    assert.truthy(flame.optim.AdamW(a:parameters(), {zero = false}))
  end)
end)
