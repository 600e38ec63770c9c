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
