-- Specs of tensor memory under Lua's collector: a tensor userdata is a few
-- bytes to Lua while its storage may be megabytes, so the binding paces the
-- collector by tensor bytes. Loops of large temporaries must stay bounded, and
-- dropping the last Lua reference must give the memory back.
-- These use CPU memory statistics, so they run on cpu whatever FLAME_DEVICE says.
local H = require "helper"
local flame = H.flame

local MB = 1024 * 1024
local BOUND = 64 * MB

local function stats() return flame.memory_stats("cpu") end
local function settle()
  collectgarbage()
  collectgarbage()
  return stats().allocated
end

-- Runs n iterations of 1 MB temporaries (every tenth with an autograd graph
-- and a backward pass), dropping everything each time; returns the highest
-- allocation seen above the starting point.
local function churn(n)
  local base = stats().allocated
  local high = 0
  for i = 1, n do
    local a = flame.empty(256, 1024) -- 1 MB
    if i % 10 == 0 then
      local w = flame.ones(256, 1024, {requires_grad = true})
      local loss = (a:fill_(0.5) * w):sum()
      loss:backward()
      assert(w.grad:numel() == 256 * 1024)
    elseif i % 10 == 5 then
      local b = a:fill_(1) + 1 -- another 1 MB from an op
      local c = b:view(-1)
      assert(c:numel() == 256 * 1024)
    end
    local now = stats().allocated - base
    if now > high then high = now end
  end
  return high
end

describe("memory", function()
  before_each(function() settle() end)

  it("stays bounded over 10,000 iterations of 1 MB temporaries", function()
    local base = settle()
    local peak_before = stats().peak
    local high = churn(10000)
    assert(high < BOUND, string.format("allocated grew to %.1f MB above the baseline", high / MB))
    local peak = stats().peak
    assert(peak <= math.max(peak_before, base + BOUND),
      string.format("peak reached %.1f MB (baseline %.1f MB)", peak / MB, base / MB))
    assert.are.equal(base, settle())
  end)

  it("stays bounded even when a script switches the collector to generational mode", function()
    collectgarbage("generational")
    local ok, high = pcall(churn, 3000)
    collectgarbage("incremental")
    assert(ok, high)
    assert(high < 2 * BOUND, string.format("allocated grew to %.1f MB above the baseline", high / MB))
  end)

  -- The regression of session 15: pacing by an incremental step per megabyte ran a whole cycle (in proportion to
  -- Lua's heap) for every large allocation once a step outgrew the heap, hundreds a training step. A full collection
  -- is due when the tensor bytes allocated since the last reach those then live (at least 32 MB).
  it("runs a collection per live-sized batch of tensor bytes, not one per large allocation", function()
    local live = {}
    for i = 1, 12 do live[i] = flame.empty(1024, 1024) end -- 48 MB live
    settle()
    local cycles, armed = 0, true
    local function arm() setmetatable({}, {__gc = function() cycles = cycles + 1; if armed then arm() end end}) end
    arm()
    local base = stats().allocated
    local high = 0
    for _ = 1, 96 do -- 384 MB of 4 MB temporaries: about 4 collections are due (one per 48 MB + what is live then)
      local t = flame.empty(1024, 1024)
      high = math.max(high, stats().allocated - base)
      t = nil
    end
    armed = false
    assert(cycles >= 2, string.format("%d collections over 384 MB of temporaries (memory grew to %.0f MB)", cycles,
      high / MB))
    assert(cycles <= 16, string.format("%d collections over 96 allocations of 4 MB: the pacing collects per allocation",
      cycles))
    assert(high <= 2 * 52 * MB, string.format("garbage grew to %.1f MB above the live 48 MB", high / MB))
    live = nil
  end)

  it("gives memory back when tensors were reachable only from a dropped table", function()
    local base = settle()
    local allocs_before = stats().num_allocs - stats().num_frees
    do
      local bag = {list = {}, nested = {deeper = {}}}
      bag.self = bag -- a Lua-side cycle
      for i = 1, 16 do
        bag.list[i] = flame.full({256, 1024}, i)
      end
      local x = flame.randn({256, 1024}, {requires_grad = true})
      local y = x * 2 -- a non-leaf holding a graph with saved tensors
      y:retain_grad()
      local loss = (y * y):sum()
      loss:backward({retain_graph = true})
      bag.nested.deeper.graph = {x = x, y = y, loss = loss, grad = x.grad}
      bag.nested.view = bag.list[1]:narrow(1, 1, 8) -- a view keeps its storage
      bag.list[1] = nil
      bag.fn = function() return bag.list[2] end -- a closure over the table
      assert(stats().allocated - base >= 20 * MB)
    end
    collectgarbage()
    assert.are.equal(base, stats().allocated)
    assert.are.equal(allocs_before, stats().num_allocs - stats().num_frees)
  end)

  it("releases a hook's closure, and what it captures, when the hooked tensor dies", function()
    local base = settle()
    do
      local captured = flame.ones(256, 1024)
      local x = flame.zeros(256, 1024, {requires_grad = true})
      x:register_hook(function(g) return g * captured end)
      ;(x * 1):sum():backward()
      assert.are.equal(1, x.grad[1][1]:item())
    end
    -- one cycle frees x (and its hook's registry reference), the next the closure's captures
    assert.are.equal(base, settle())
  end)

  it("frees a tensor whose hook captures it (the closure lives in the tensor's user value, seen by the collector)", function()
    local base = settle()
    do
      local x = flame.zeros(256, 1024, {requires_grad = true})
      x:register_hook(function(g) return g + x:detach() end)
      ;(x * 1):sum():backward()
      assert.are.equal(1, x.grad[1][1]:item())
    end
    assert.are.equal(base, settle())
  end)

  it("frees a tensor that was its own gradient (backward(y) with retain_grad, a hook returning its tensor)", function()
    local base = settle()
    do
      local x = flame.randn(256, 1024, {requires_grad = true})
      local y = x:sin()
      y:retain_grad()
      y:backward(y) -- y.grad holds y's values, not y itself: no cycle y -> grad -> y
      assert.are.equal(y[1][1]:item(), y.grad[1][1]:item())
      local z = x:cos()
      z:register_hook(function() return z end)
      z:sum():backward()
    end
    assert.are.equal(base, settle())
  end)

  it("keeps a non-leaf's hook running after its variable is collected, while the graph needs it", function()
    local x = flame.ones(3, {requires_grad = true})
    local seen = 0
    local y = x * 2
    y:register_hook(function(g) seen = seen + g:sum():item() end)
    local loss = y:sum()
    y = nil
    settle()
    loss:backward()
    assert.are.equal(3, seen)
  end)

  it("frees a 10,000-node graph and its saved tensors when the output is dropped", function()
    local base = settle()
    do
      local x = flame.ones(64, 64, {requires_grad = true})
      local h = x
      for _ = 1, 10000 do h = h * x end -- MulBackward saves both operands
      assert(stats().allocated - base > 10000 * 64 * 64 * 4 / 2)
    end
    assert.are.equal(base, settle())
  end)
end)
