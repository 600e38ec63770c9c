-- Smoke specs of examples/classify.lua and examples/score.lua through the flame-lua binary ($FLAME_LUA) on the
-- CPU: a classifier trained on 64 images, a two-step tiny checkpoint of examples/train.lua, scored on 20 samples
-- of 2 sampler steps; the outputs' form, the saved weights, and bad options named. Needs Fashion-MNIST (pending
-- without it). The values of the Fréchet distance are spec/frechet_spec.lua's.
local H = require "helper"
local flame = H.flame

local E = require "example_run"
local shquote = E.shquote

-- examples/<script> on the CPU.
local function run(script, args)
  local a = {"--device", "cpu"}
  for _, x in ipairs(args) do a[#a + 1] = x end
  return E.run(script, a)
end

describe("examples/classify.lua and examples/score.lua", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
  end)
  after_each(function() os.execute("rm -rf " .. shquote(dir)) end)

  local spec = E.specs(it, pending)

  spec("trains a classifier, saves it, and scores a tiny checkpoint with it", function()
    local cls = dir .. "/c/classifier.safetensors"
    local out, err, status = run("classify.lua", {"--epochs", "1", "--batch", "32", "--limit", "64", "--out", cls})
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("64 training images, 1 epochs of 2 steps at batch 32"), out)
    local acc = tonumber(out:match("test accuracy (%d%.%d+) %(64 test images%); weights: "))
    assert.is_truthy(acc and acc >= 0 and acc <= 1, out)
    local weights, meta = flame.load(cls)
    assert.are.equal("flame-classifier-1", meta.format)
    assert.are.equal(string.format("%.4f", acc), meta.test_accuracy)
    local Net = dofile("examples/classifier_net.lua")
    local net = Net()
    net:load_state_dict(weights) -- strict: every name and shape of the model
    assert.are.same({3, 128}, net:features(flame.zeros(3, 1, 32, 32)).shape)
    assert.are.same({3, 10}, net(flame.zeros(3, 1, 32, 32)).shape)

    out, err, status = run("train.lua", {"--preset", "tiny", "--batch", "8", "--steps", "2", "--sample-steps", "1",
      "--per-class", "1", "--out", dir .. "/t"})
    assert.are.equal(0, status, err)
    out, err, status = run("score.lua", {"--checkpoint", dir .. "/t/checkpoint.safetensors", "--classifier", cls,
      "--n", "20", "--batch", "10", "--sample-steps", "2", "--cfg-scale", "3"})
    assert.are.equal(0, status, err)
    assert.is_truthy(out:match("tiny preset, step 2%), 20 samples, euler 2 steps, guidance 3"), out)
    local json = out:match('\n({"score": 1, [^\n]*})\n?$')
    assert.is_truthy(json, out)
    local function field(k) return tonumber(json:match('"' .. k .. '": ([%d%.e%-]+)')) end
    assert.are.equal(20, field("n"))
    assert.are.equal(2, field("step"))
    for _, k in ipairs({"accuracy", "real_accuracy"}) do
      local v = field(k)
      assert.is_truthy(v and v >= 0 and v <= 1 and (v * 20) % 1 < 1e-6, k .. " in " .. json) -- a share of 20
    end
    for _, k in ipairs({"frechet", "frechet_floor"}) do
      local v = field(k)
      assert.is_truthy(v and v > 0 and v < math.huge, k .. " in " .. json)
    end
    assert.are.equal(acc, field("classifier_test_accuracy"))
  end)

  spec("names bad options and unreadable files", function()
    local cases = {
      {"classify.lua", {"--epochs", "0"}, "%-%-epochs expects a positive integer, got '0'"},
      {"classify.lua", {"--lmit", "3"}, "unknown option '%-%-lmit'"},
      {"score.lua", {"--n", "15"}, "%-%-n must be a multiple of 10 %(N/10 samples per class%), got 15"},
      {"score.lua", {"--sampler", "plms"}, "%-%-sampler expects one of ddim, euler, got 'plms'"},
      {"score.lua", {"--checkpoint", dir .. "/none.safetensors"}, "%-%-checkpoint: cannot read " ..
        (dir .. "/none.safetensors"):gsub("%p", "%%%0")},
    }
    for _, c in ipairs(cases) do
      local _, err, status = run(c[1], c[2])
      assert.are.equal(2, status, table.concat(c[2], " ") .. ": " .. err)
      assert.is_truthy(err:match("^" .. c[1]:gsub("%.", "%%.") .. ": " .. c[3]), err)
    end
  end, false)
end)
