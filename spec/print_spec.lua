-- tostring(t) against PyTorch 1.13's repr (spec/fixtures/gen_print.py): line wrapping at the line width, the
-- summary of large tensors (threshold, edgeitems), under flame.set_printoptions; its defaults and errors.
local H = require "helper"
local flame = H.flame
local fx = require "fixtures.print"

-- The fixture's values (gen_print.py's build) on the device under test.
local function build(case)
  local n = 1
  for _, s in ipairs(case.shape) do n = n * s end
  local k = flame.arange(0, n)
  local t
  if case.kind == "frac" then
    t = k:float() / n + 1
  elseif case.kind == "int" then
    t = k
  else
    t = k:float()
  end
  return H.t(t:reshape(case.shape))
end

-- PyTorch prints no dtype for f32 and i64 and no shape; flame prints both, and the device.
local function torch_like(s)
  return (s:gsub(", dtype=[^)]*%)$", ")"))
end

describe("tostring of tensors", function()
  after_each(function() flame.set_printoptions({linewidth = false, threshold = false, edgeitems = false}) end)

  for _, case in ipairs(fx) do
    it("matches PyTorch: " .. case.name, function()
      flame.set_printoptions({linewidth = case.linewidth, threshold = case.threshold, edgeitems = case.edgeitems})
      assert.are.equal(case.repr, torch_like(tostring(build(case))))
    end)
  end

  it("defaults to PyTorch's options and returns the previous ones", function()
    local old = flame.set_printoptions({linewidth = 50})
    assert.are.same({linewidth = 80, threshold = 1000, edgeitems = 3}, old)
    local cur = flame.set_printoptions({})
    assert.are.same({linewidth = 50, threshold = 1000, edgeitems = 3}, cur)
    flame.set_printoptions({linewidth = false})
    assert.are.same({linewidth = 80, threshold = 1000, edgeitems = 3}, flame.set_printoptions())
  end)

  it("still names dtype, device and shape after the values", function()
    flame.set_printoptions({threshold = 4})
    local s = tostring(H.t(flame.zeros(2, 3)))
    assert.truthy(s:find("%], dtype=f32, device=" .. H.device:gsub("%p", "%%%0") .. "[:%d]*, shape=%[2, 3%]%)$"), s)
  end)

  it("rejects bad options", function()
    H.errors(function() flame.set_printoptions({linewidth = 0}) end,
      "set_printoptions: linewidth must be an integer in [1, 1048576] (or false for the default), got 0")
    H.errors(function() flame.set_printoptions({edgeitems = 257}) end,
      "set_printoptions: edgeitems must be an integer in [1, 256] (or false for the default), got 257")
    H.errors(function() flame.set_printoptions({threshold = 1.5}) end,
      "set_printoptions: threshold must be an integer in [0, 9223372036854775807] (or false for the default), got 1.5")
    H.errors(function() flame.set_printoptions({linewdth = 3}) end, "unknown option 'linewdth' (did you mean 'linewidth'?)")
  end)
end)
