-- Specs of the CPU thread count (flame.set_num_threads / get_num_threads).
-- The tensors are CPU tensors whatever FLAME_DEVICE says: threads are the CPU
-- backend's. Large enough to be split over threads.
local H = require "helper"
local flame = H.flame

-- Bit-for-bit equal (no NaNs here).
local function same(a, b) return a:ne(b):sum():item() == 0 end

describe("CPU threads", function()
  local saved
  before_each(function() saved = flame.get_num_threads() end)
  after_each(function() flame.set_num_threads(saved) end)

  it("set_num_threads sets what get_num_threads reports", function()
    flame.set_num_threads(1)
    assert.equals(1, flame.get_num_threads())
    flame.set_num_threads(3)
    assert.equals(3, flame.get_num_threads())
  end)

  it("a thread count outside [1, 1024] is an error naming the call", function()
    H.errors(function() flame.set_num_threads(0) end, "set_num_threads", "[1, 1024]", "got 0")
    H.errors(function() flame.set_num_threads(-2) end, "set_num_threads")
    H.errors(function() flame.set_num_threads(5000) end, "set_num_threads", "5000")
  end)

  it("elementwise results, argmax, softmax and column sums do not depend on the thread count", function()
    flame.manual_seed(3)
    local x = flame.randn(512, 1024)
    local y = flame.randn(1024)
    local function run()
      local mx, at = x:max(-1)
      return {x:gelu(), x:tanh(), x * y + 1, x:argmax(), x:softmax(-1), mx, at, x:sum(1), x:view(8, 64, 1024):mean({1, 2})}
    end
    flame.set_num_threads(1)
    local one = run()
    flame.set_num_threads(4)
    local four = run()
    for i = 1, #one do
      assert.is_true(same(one[i], four[i]), "result " .. i .. " differs between 1 and 4 threads")
    end
  end)

  it("sums agree across thread counts up to float reassociation", function()
    flame.manual_seed(4)
    local x = flame.randn(4096, 512)
    flame.set_num_threads(1)
    local s1, m1 = x:sum():item(), x:var():item()
    flame.set_num_threads(4)
    local s4, m4 = x:sum():item(), x:var():item()
    assert.is_true(math.abs(s1 - s4) <= 1e-3 + 1e-6 * math.abs(s1))
    assert.is_true(math.abs(m1 - m4) <= 1e-6 * math.abs(m1))
  end)
end)
