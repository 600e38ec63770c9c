-- Nothing a script does may crash the process: one spec per crash class that
-- the fuzzer (tests/fuzz/fuzz.lua) and a by-hand attack found, each asserting
-- the clear error that replaced it. scripts/sanitize runs these under ASan and
-- UBSan, where the old behaviour was a memory error, undefined behaviour or a leak.
local H = require "helper"
local flame = H.flame

local maxint, minint = math.maxinteger, math.mininteger
local function close(t) debug.getmetatable(t).__close(t) end -- what a <close> variable does (the metatable is protected)

describe("safety: shape arithmetic", function()
  it("narrow with a length that overflows start + length is an error", function()
    local x = flame.zeros(3, H.opts())
    H.errors(function() return x:narrow(1, 2, maxint) end, "narrow", "out of bounds", tostring(maxint))
    H.errors(function() return x:narrow(1, maxint, 1) end, "narrow", "out of bounds")
  end)

  it("expand to a size whose byte count overflows is an error naming expand", function()
    local x = flame.zeros(1, H.opts())
    H.errors(function() return x:expand(1 << 62) end, "expand:", "too large", "4611686018427387904")
    H.errors(function() return flame.zeros(1, 1, H.opts()):expand(1 << 32, 1 << 32) end, "expand:", "too large")
  end)

  it("a view or reshape of zero elements to a shape whose other sizes overflow is an error", function()
    local x = flame.zeros(0, H.opts())
    H.errors(function() return x:view(0, (1 << 62) - 1, 4) end, "view:", "too large", "4611686018427387903")
    H.errors(function() return x:reshape(2, 0, (1 << 62) - 1, 4) end, "reshape:", "too large")
  end)

  it("CPU arange in an integer dtype past its range stores what a cast of the f64 value stores", function()
    local a = flame.arange(2.0 ^ 63 - 2048, 2.0 ^ 63 + 2048, 1024, {dtype = "i64"}):totable()
    local cast = flame.tensor({2.0 ^ 63}, {dtype = "f64"}):to("i64"):totable()[1]
    assert.are.same({maxint - 2047, maxint - 1023, cast, cast}, a)
    local b = flame.arange(3e9, 3e9 + 2, 1, {dtype = "i32"})
    assert.are.equal(flame.tensor({3e9}, {dtype = "f64"}):to("i32"):totable()[1], b:totable()[1])
  end)

  it("an expanded view too large for a table prints summarised and refuses totable", function()
    local x = flame.zeros(1, H.opts({dtype = "bool"})):expand(1 << 62) -- 2^62 one-byte elements fit int64
    local s = tostring(x)
    assert(s:find("false, false, false,  ..., false, false, false", 1, true), s)
    assert(s:find("shape=[4611686018427387904]", 1, true), s)
    H.errors(function() return x:totable() end, "totable", "too many elements")
  end)

  it("an element count that wraps to 0 is an error, not a sum of 0", function()
    H.errors(function() return flame.zeros(1 << 32, 1 << 32, H.opts()) end, "too large")
    H.errors(function() return flame.zeros(0, H.opts()):view(1 << 32, 1 << 32) end, "view", "too large")
    H.errors(function() return flame.zeros(0, H.opts()):reshape(1 << 32, 1 << 32, -1) end, "reshape", "too large")
  end)

  it("cat whose sizes add up past int64 is an error; chunk by a huge count is one piece", function()
    local b = flame.zeros(1, H.opts({dtype = "bool"})):expand(1 << 62)
    H.errors(function() return flame.cat({b, b}) end, "cat:", "add up to more than int64")
    local x = flame.arange(0, 5, H.opts())
    local pieces = x:chunk(maxint)
    assert.are.equal(5, #pieces) -- pieces of size 1, as torch.chunk does for a count above the size
  end)

  it("arange with more elements than int64 counts is an error", function()
    H.errors(function() return flame.arange(0, 1e300, 1e-300, H.opts()) end, "arange", "too many elements")
    H.errors(function() return flame.arange(-math.huge, math.huge, 1, H.opts()) end, "arange")
  end)

  it("a huge negative size is named as written", function()
    H.errors(function() return flame.zeros(-(1 << 62), H.opts()) end, "negative size -4611686018427387904")
  end)
end)

describe("safety: undefined behaviour", function()
  it("prints i64 extremes exactly", function()
    assert.are.equal("tensor(9223372036854775807, dtype=i64, device=" .. H.device .. (H.device == "cuda" and ":0" or "") .. ")",
      tostring(flame.tensor(maxint, H.opts())))
    local s = tostring(flame.tensor({1, minint}, H.opts()))
    assert(s:find("-9223372036854775808", 1, true), s)
    assert.are.equal(maxint, flame.tensor(maxint, H.opts()):item())
  end)

  it("randint beyond the dtype's range is an error", function()
    H.errors(function() return flame.randint(0, 1 << 40, {3}, H.opts({dtype = "i32"})) end,
      "randint", "beyond what i32 holds")
    H.errors(function() return flame.randint(minint, 0, {3}, H.opts({dtype = "i64"})) end, "randint", "i64")
    local r = flame.randint(-(1 << 31), (1 << 31) - 1, {1000}, H.opts({dtype = "i32"}))
    assert(r:min():item() >= -(1 << 31) and r:max():item() < (1 << 31) - 1)
    assert(r:min():item() < 0 and r:max():item() > 0) -- both halves of the range are drawn
  end)

  it("an in-place write through an expanded view is an error, as in PyTorch", function()
    local x = flame.zeros(1, H.opts()):expand(3)
    H.errors(function() return x:add_(1) end, "add_", "expanded view", "clone it first")
    H.errors(function() return x:fill_(1) end, "fill_", "expanded view")
    H.errors(function() return x:copy_(flame.ones(3, H.opts())) end, "copy_", "expanded view")
    H.errors(function() return x:exp_() end, "expanded view")
    H.close(x:clone():add_(1), {1, 1, 1}) -- the clone is writable
    local y = flame.zeros(3, 1, H.opts()):expand(3, 1) -- a size-1 dim does not overlap
    H.close(y:add_(2), {{2}, {2}, {2}})
  end)

  it("an empty tensor on a device that does not exist is an error", function()
    H.errors(function() return flame.zeros(0, {device = "cuda:7"}) end, "cuda:7")
    H.errors(function() return flame.empty({0, 3}, {device = "cuda:7"}) end, "cuda:7")
  end)

  it("a device ordinal beyond int range is an error naming it as written", function()
    H.errors(function() return flame.zeros(2, {device = "cuda:99999999999"}) end,
      "cuda:99999999999", "out of range")
    H.errors(function() return flame.zeros(2):cuda(99999999999) end, "device ordinal 99999999999 out of range")
    H.errors(function() return flame.cuda.synchronize(-1) end, "device ordinal -1 out of range")
  end)
end)

describe("safety: Lua code inside an op", function()
  it("a hook that releases the output and the graph mid-backward does not free them under the engine", function()
    local x = flame.ones(3, H.opts({requires_grad = true}))
    local y = x * 2
    local loss = (y * y):sum()
    y:register_hook(function(g)
      close(loss)
      close(y)
      collectgarbage()
      return nil
    end)
    loss:backward()
    H.close(x.grad, {8, 8, 8})
  end)

  it("a hook that releases the leaf it flows into drops that gradient", function()
    local x = flame.ones(3, H.opts({requires_grad = true}))
    local keep = x:detach()
    local loss = (x * 3):sum()
    x:register_hook(function(g) close(x) end)
    loss:backward()
    H.errors(function() return x.grad end, "already released")
    H.close(keep, {1, 1, 1})
  end)

  it("an options table's __index is not run (options are read raw), so it cannot release the operand", function()
    local s = flame.ones(2, 2, H.opts())
    local opts = setmetatable({}, {__index = function() close(s); collectgarbage() end})
    H.close(flame.zeros_like(s, opts), {{0, 0}, {0, 0}})
    H.close(s, {{1, 1}, {1, 1}})
  end)

  it("a finalizer that releases an operand during an allocation is safe", function()
    for _ = 1, 20 do
      local a = flame.ones(256, 1024, H.opts())
      setmetatable({}, {__gc = function() close(a) end})
      local ok, r = pcall(function() return a + a end) -- the allocation steps the collector
      if ok then assert.are.equal(2, r[1][1]:item()) end
    end
  end)

  it("a backward pass started from a hook of another one is an error", function()
    local x = flame.ones(2, H.opts({requires_grad = true}))
    local other = (x * 5):sum()
    local y = x * 2
    y:register_hook(function(g) other:backward() end)
    H.errors(function() return y:sum():backward() end, "hook", "cannot start a backward pass")
  end)
end)

describe("safety: leaks and cycles", function()
  local function allocated() collectgarbage(); collectgarbage(); return flame.memory_stats("cpu").allocated end

  it("x.grad = x is an error (it would make a reference cycle)", function()
    local x = flame.zeros(2)
    H.errors(function() x.grad = x end, "grad", "reference cycle")
    local y = flame.zeros(2)
    x.grad = y
    H.errors(function() y.grad = x end, "reference cycle")
    x.grad = nil
    y.grad = x -- no cycle any more
    H.close(y.grad, {0, 0})
  end)

  it("where and lerp free their temporaries when a later argument fails", function()
    local c = flame.tensor({true, false})
    local a = flame.zeros(2)
    local base = allocated()
    for _ = 1, 50 do
      H.errors(function() return flame.where(c, 1, "x") end, "where")
      H.errors(function() return flame.where(c, 1.5, flame.zeros(3)) end)
      H.errors(function() return a:lerp(2, {}) end)
      H.errors(function() return a:lerp(flame.zeros(5), 0.5) end)
    end
    assert.are.equal(base, allocated())
  end)
end)

describe("safety: messages", function()
  it("a hook raising a non-string error says what it raised", function()
    local x = flame.zeros(2, H.opts({requires_grad = true}))
    x:register_hook(function() error({}) end)
    local err = H.errors(function() (x * 2):sum():backward() end, "hook failed", "table value")
    assert(not err:find("(null)", 1, true), err)
  end)
end)

describe("safety: tostring", function()
  it("fetches only the shown elements of a large tensor", function()
    local x = flame.zeros(1024, 1024, H.opts()) -- 1M elements: a full copy would be 8 MB of doubles
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    local s = tostring(x)
    local grew = collectgarbage("count") - before
    collectgarbage("restart")
    assert(s:find("shape=[1024, 1024]", 1, true), s)
    assert(grew < 256, string.format("tostring allocated %.0f KB of Lua memory", grew))
  end)

  it("prints the first and last items of every summarised dim (PyTorch's layout: two spaces before ...)", function()
    local x = flame.arange(0, 2000, H.opts({dtype = "i64"})):view(2, 1000)
    assert.are.equal(
      "tensor([[   0,    1,    2,  ...,  997,  998,  999],\n" ..
      "        [1000, 1001, 1002,  ..., 1997, 1998, 1999]], dtype=i64, device=" .. tostring(x.device) .. ", shape=[2, 1000])",
      tostring(x))
    local y = flame.arange(0, 7 * 8 * 20, H.opts({dtype = "f64"})):view(7, 8, 20):transpose(1, 3) -- [20, 8, 7]
    local s = tostring(y)
    -- y[1][1] = {0, 160, ..., 960} cut to its 3 first and 3 last; y[20][8][7] = 6 * 160 + 7 * 20 + 19
    assert(s:find("^tensor%(%[%[%[%s*0%.,%s*160%.,%s*320%.,%s*%.%.%.,%s*640%.,%s*800%.,%s*960%.%]"), s)
    assert(s:find("1119.]]], dtype=f64", 1, true), s)
  end)
end)
