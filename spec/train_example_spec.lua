-- Specs of examples/train.lua through the flame-lua binary ($FLAME_LUA): a few steps of the tiny preset on the CPU
-- write a checkpoint and a sample grid; a run stopped half way and resumed ends with the same checkpoint, byte for
-- byte, as an uninterrupted one; bad options are errors that name them. Needs Fashion-MNIST (pending without it).
local H = require "helper"
local flame = H.flame

local E = require "example_run"
local exe, exists, slurp, shquote = E.exe, E.exists, E.slurp, E.shquote

local function train(args) return E.run("train.lua", args) end

-- Few steps, a small grid with few sampling steps: the whole file takes some seconds.
local FAST = {"--device", "cpu", "--preset", "tiny", "--batch", "8", "--sample-steps", "2", "--per-class", "1"}
local function args(...)
  local a = {}
  for _, x in ipairs(FAST) do a[#a + 1] = x end
  for _, x in ipairs({...}) do a[#a + 1] = x end
  return a
end

describe("examples/train.lua", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
  end)
  after_each(function() os.execute("rm -rf " .. shquote(dir)) end)

  local spec = E.specs(it, pending)

  spec("trains a few steps, writes a checkpoint and a PNG grid, and resumes bit-exactly", function()
    local out, err, status = train(args("--steps", "4", "--seed", "7", "--out", dir .. "/full"))
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("tiny preset on cpu"), out)
    assert.is_truthy(out:match("step +4  loss %d"), out)
    assert.is_truthy(out:match("samples: " .. dir:gsub("%p", "%%%0") .. "/full/samples%.png"), out)
    local png = slurp(dir .. "/full/samples.png")
    assert.are.equal("\137PNG", png:sub(1, 4))
    local grid = flame.image.load(dir .. "/full/samples.png")
    assert.are.same({3, 10 * 18 + 2, 18 + 2}, grid.shape) -- one row per class, one 16x16 sample each, padding 2
    local st = flame.utils.load_training_state(dir .. "/full/checkpoint.safetensors")
    assert.are.equal(4, st.step)
    assert.are.equal(8, st.run.batch)

    -- Stopped after step 2 (a checkpoint, no grid), then resumed to step 4: the same checkpoint, byte for byte.
    out, err, status = train(args("--steps", "4", "--seed", "7", "--out", dir .. "/part", "--stop-at", "2"))
    assert.are.equal(0, status, err)
    assert.is_falsy(exists(dir .. "/part/samples.png"))
    assert.are.equal(2, flame.utils.load_training_state(dir .. "/part/checkpoint.safetensors").step)
    out, err, status = train(args("--out", dir .. "/part", "--resume"))
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("resumed at step 2"), out)
    assert.is_true(slurp(dir .. "/full/checkpoint.safetensors") == slurp(dir .. "/part/checkpoint.safetensors"),
      "the resumed run's checkpoint differs from the uninterrupted run's")
    assert.is_true(png == slurp(dir .. "/part/samples.png"))

    -- A resumed run keeps the checkpoint's run options.
    out, err, status = train(args("--out", dir .. "/part", "--resume", "--batch", "16"))
    assert.are.equal(2, status)
    assert.is_truthy(err:match("%-%-resume: %-%-batch 16 differs from the checkpoint's 8"), err)
  end)

  -- --ddp through the launcher with one rank on the CPU (the CPU has no collectives; scripts/gpu-dist.sh runs two
  -- GPUs): the DDP-wrapped model, the DistributedSampler order, rank 0's files, a bit-exact resume, and a plain
  -- run's checkpoint resumed under --ddp.
  spec("trains with --ddp through the launcher, resumes bit-exactly, and takes a plain checkpoint", function()
    local launch = {"--nproc", "1"}
    local out, err, status = E.run("train.lua", args("--ddp", "--steps", "4", "--seed", "7", "--out", dir .. "/full"),
      launch)
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("%[rank 0%] ddp: 1 rank x batch 8, rank 0 on cpu"), out)
    assert.is_truthy(out:match("%[rank 0%] step +4  loss %d"), out)
    assert.is_truthy(out:match("%[rank 0%] throughput: [%d.]+ images/s %(1 rank x batch 8, steps 2%.%.4"), out)
    local st = flame.utils.load_training_state(dir .. "/full/checkpoint.safetensors")
    assert.are.equal(4, st.step)
    assert.are.same({epoch = 0, seen = 32, world = 1, sampler = "distributed"}, st.data)
    local png = slurp(dir .. "/full/samples.png")

    out, err, status = E.run("train.lua", args("--ddp", "--steps", "4", "--seed", "7", "--out", dir .. "/part",
      "--stop-at", "2"), launch)
    assert.are.equal(0, status, err)
    out, err, status = E.run("train.lua", args("--ddp", "--out", dir .. "/part", "--resume"), launch)
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("resumed at step 2"), out)
    assert.is_true(slurp(dir .. "/full/checkpoint.safetensors") == slurp(dir .. "/part/checkpoint.safetensors"),
      "the resumed --ddp run's checkpoint differs from the uninterrupted one's")
    assert.is_true(png == slurp(dir .. "/part/samples.png"))

    -- a plain run's checkpoint (its data order has no sampler) continues under --ddp from its position
    out, err, status = train(args("--steps", "4", "--seed", "7", "--out", dir .. "/plain", "--stop-at", "2"))
    assert.are.equal(0, status, err)
    out, err, status = E.run("train.lua", args("--ddp", "--out", dir .. "/plain", "--resume"), launch)
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("resumed at step 2"), out)
    st = flame.utils.load_training_state(dir .. "/plain/checkpoint.safetensors")
    assert.are.same({4, 1, 32}, {st.step, st.data.epoch, st.data.seen})

    _, err, status = train(args("--ddp", "yes"))
    assert.are.equal(2, status)
    assert.is_truthy(err:match("^train%.lua: %-%-ddp takes no value, got 'yes'"), err)
  end)

  spec("trains on a folder of images (--data), unconditional with one subfolder", function()
    assert(os.execute("mkdir -p " .. shquote(dir .. "/imgs/all")))
    flame.manual_seed(0)
    for i = 1, 8 do
      flame.image.save(string.format("%s/imgs/all/%d.png", dir, i), flame.rand(3, 20, 24))
    end
    local out, err, status = train({"--device", "cpu", "--preset", "tiny", "--batch", "4", "--steps", "2",
      "--sample-steps", "2", "--data", dir .. "/imgs", "--out", dir .. "/o"})
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("8 images of 16x16, unconditional"), out)
    assert.are.same({3, 8 * 18 + 2, 8 * 18 + 2}, flame.image.load(dir .. "/o/samples.png").shape)
  end, false)

  spec("names bad options, bad values and a missing checkpoint", function()
    local cases = {
      {{"--stpes", "3"}, "unknown option '%-%-stpes'"},
      {{"--steps", "-3"}, "%-%-steps expects a positive integer, got '%-3'"},
      {{"--steps"}, "%-%-steps needs a value"},
      {{"--lr", "fast"}, "%-%-lr expects a number, got 'fast'"},
      {{"--sampler", "plms"}, "%-%-sampler expects one of ddim, euler, got 'plms'"},
      {{"--preset", "huge"}, "%-%-preset expects one of tiny, default, got 'huge'"},
      {{"--device", "tpu"}, "%-%-device expects cpu, cuda or cuda:N, got 'tpu'"},
      {{"--sample-steps", "80"}, "%-%-sample%-steps is at most 50, got 80"},
      {{"--resume", dir .. "/nothing.safetensors"}, "%-%-resume: cannot read " .. (dir .. "/nothing.safetensors"):gsub("%p", "%%%0")},
      {{"--data", dir .. "/none"}, "ImageFolder: cannot list " .. (dir .. "/none"):gsub("%p", "%%%0"), 1},
    }
    for _, c in ipairs(cases) do
      local _, err, status = train(c[1])
      assert.are.equal(c[3] or 2, status, table.concat(c[1], " ") .. ": " .. err)
      assert.is_truthy(err:match("^train%.lua: " .. c[2]), err)
    end
  end, false)
end)

-- examples/ddp_lib.lua without a process group: each rank's batches, the data position a checkpoint keeps and its
-- resume under another world size, the ranks' random streams.
describe("examples/ddp_lib.lua", function()
  local L = dofile("examples/ddp_lib.lua")
  local sized = setmetatable({}, {__len = function() return 10 end})
  local function sampler_idx(world, rank, epoch)
    local s = flame.data.DistributedSampler(sized, {num_replicas = world, rank = rank, seed = 5})
    s:set_epoch(epoch)
    return s:indices()
  end

  it("gives each rank its DistributedSampler share, batch by batch, a new permutation per epoch", function()
    for rank = 0, 1 do
      local o = L.context(rank, 2, "cpu"):order(10, 2, 5)
      local want = sampler_idx(2, rank, 0)
      assert.are.same(want:narrow(1, 1, 2):totable(), o.next():totable())
      assert.are.same(want:narrow(1, 3, 2):totable(), o.next():totable())
      -- 5 indices a rank: the fifth cannot make a batch of 2, so the next batch opens epoch 1
      assert.are.same(sampler_idx(2, rank, 1):narrow(1, 1, 2):totable(), o.next():totable())
      assert.are.same({epoch = 1, seen = 4, world = 2, sampler = "distributed"}, o.state())
    end
    local _, err = L.context(0, 4, "cpu"):order(10, 4, 0)
    assert.are.equal("--batch 4 is larger than a rank's share of the data set (3 of 10 images over 4 ranks)", err)
  end)

  it("resumes the epoch at the images all ranks saw, under another world size", function()
    local o2 = L.context(1, 2, "cpu"):order(10, 2, 5)
    o2.next()
    local st = o2.state() -- 2 ranks x 2 images: the epoch's first 4 positions are seen
    assert.are.same({epoch = 0, seen = 4, world = 2, sampler = "distributed"}, st)
    local o1 = L.context(0, 1, "cpu"):order(10, 2, 5)
    o1.load(st)
    assert.are.same(sampler_idx(1, 0, 0):narrow(1, 5, 2):totable(), o1.next():totable())
    -- 3 seen is not a whole step of 2 ranks: rounded up to 2 each
    local o3 = L.context(1, 2, "cpu"):order(10, 1, 5)
    o3.load({epoch = 0, seen = 3})
    assert.are.same(sampler_idx(2, 1, 0):narrow(1, 3, 1):totable(), o3.next():totable())
  end)

  it("gives every rank but 0 its own random stream, with the counter kept", function()
    local draws = {}
    for rank = 0, 2 do
      flame.manual_seed(3)
      flame.rand(5)
      local seed, offset = flame.autograd._rng_state()
      L.context(rank, 3, "cpu"):seed_ranks()
      local s2, o2 = flame.autograd._rng_state()
      assert.are.equal(offset, o2)
      if rank == 0 then assert.are.equal(seed, s2) end
      draws[rank + 1] = flame.rand(4):totable()
    end
    assert.are_not.same(draws[1], draws[2])
    assert.are_not.same(draws[2], draws[3])
    flame.manual_seed(3)
    flame.rand(5)
    assert.are.same(draws[1], flame.rand(4):totable())
  end)
end)
