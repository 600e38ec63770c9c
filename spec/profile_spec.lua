-- flame.profile: the op profiler splits a step into its forward ops and backward node/op pairs, counts calls,
-- and leaves the profiler off afterwards (also after an error).
local H = require "helper"
local flame = H.flame

describe("flame.profile", function()
  it("charges forward ops and backward nodes by name, with call counts and shares", function()
    local w = flame.randn(8, 4):to(H.device)
    w.requires_grad = true
    local x = flame.randn(3, 4):to(H.device)
    local r = flame.profile(function()
      for _ = 1, 3 do flame.F.linear(x, w):relu():sum():backward() end
    end, {device = H.device})
    local by = {}
    for _, e in ipairs(r) do by[e.name] = e end
    assert.truthy(by["linear"], "no forward linear row")
    assert.equal(3, by["linear"].calls)
    assert.truthy(by["relu"])
    assert.truthy(by["ReluBackward/relu_backward"], "no backward row under its node")
    assert.equal(3, by["ReluBackward/relu_backward"].calls)
    local share = 0
    for i, e in ipairs(r) do
      share = share + e.share
      if i > 1 then assert.truthy(r[i - 1].seconds >= e.seconds, "rows sorted by time") end
    end
    assert.truthy(math.abs(share - 1) < 1e-9)
    local out = {}
    r:print(3, {write = function(_, s) out[#out + 1] = s end})
    assert.truthy(table.concat(out):find("total", 1, true))
  end)

  it("is off after the call, and after an error", function()
    local r = flame.profile(function() end)
    assert.equal(0, #r)
    H.errors(function() flame.profile(function() error("inside") end) end, "inside")
    local r2 = flame.profile(function() return flame.ones(2) + 1 end, {device = H.device})
    assert.equal(1, #r2 >= 1 and 1 or 0)
    H.errors(function() flame.profile(3) end, "profile: expected a function, got number")
  end)
end)
