-- Specs of the Lua surface's conveniences: options checked by name, extra
-- arguments refused, shape objects, tensors mixing with Lua values, and
-- flame.tensor from Lua tables. Runs on the device under test (FLAME_DEVICE).
local H = require "helper"
local flame = H.flame

describe("options", function()
  it("an unknown key is an error that suggests the closest one", function()
    H.errors(function() return flame.zeros(2, {dtyp = "f64"}) end, "zeros: unknown option 'dtyp' (did you mean 'dtype'?)")
    H.errors(function() return flame.ones(2, 2, {devise = H.device}) end, "ones: unknown option 'devise' (did you mean 'device'?)")
    H.errors(function() return flame.randn(2, {requires_gard = true}) end, "did you mean 'requires_grad'?")
    H.errors(function() return flame.tensor({1.0}, {dtype = "f32", grad = true}) end, "tensor: unknown option 'grad'",
      "options: dtype, device, requires_grad")
    H.errors(function() return flame.full({2}, 1, {dtpye = "f64"}) end, "full: unknown option 'dtpye'", "'dtype'")
    H.errors(function() return flame.zeros_like(flame.zeros(2), {dtyp = "f64"}) end, "zeros_like: unknown option 'dtyp'")
    H.errors(function() return flame.arange(0, 4, {dtyp = "f64"}) end, "arange: unknown option 'dtyp'")
    H.errors(function() return flame.eye(2, {dtyp = "f64"}) end, "eye: unknown option 'dtyp'")
    H.errors(function() return flame.zeros(2):to({dtype = "f64", requires_grad = true}) end, "to: unknown option 'requires_grad'")
  end)

  it("method options are checked the same way", function()
    local x = H.t({{1.0, 2}, {3, 4}}, {requires_grad = true})
    H.errors(function() return x:var(1, {keepdims = true}) end, "var: unknown option 'keepdims' (did you mean 'keepdim'?)")
    H.errors(function() return x:std(1, {corection = 0}) end, "std: unknown option 'corection' (did you mean 'correction'?)")
    H.errors(function() x:sum():backward({retain = true}) end, "backward: unknown option 'retain'", "retain_graph")
    H.errors(function() return flame.autograd.grad(x:sum(), {x}, {retian_graph = true}) end, "unknown option 'retian_graph'")
    H.errors(function() return flame.tensor({1.0}, {[true] = "f64"}) end, "tensor: options are named", "boolean key")
  end)

  it("known keys still work", function()
    local t = flame.zeros(2, H.opts({dtype = "f64", requires_grad = true}))
    assert.are.equal("f64", t.dtype)
    assert.is_true(t.requires_grad)
    local x = H.t({{1.0, 2}, {3, 5}})
    H.close(x:var(2, {correction = 0, keepdim = true}), {{0.25}, {1}})
  end)

  it("options tables are read raw: their metamethods never run", function()
    local ran = 0
    local mt = {__index = function() ran = ran + 1; return "f64" end, __pairs = function() ran = ran + 1; return next, {}, nil end}
    local t = flame.zeros(2, setmetatable({device = H.device}, mt))
    assert.are.equal("f32", t.dtype) -- dtype came only from __index, which is not read
    local l = flame.zeros_like(t, setmetatable({}, mt))
    assert.are.equal("f32", l.dtype)
    H.t({1.0}, {requires_grad = true}):sum():backward(setmetatable({}, mt))
    assert.are.equal(0, ran)
  end)
end)

describe("extra arguments", function()
  it("are errors naming the function and the position", function()
    H.errors(function() return flame.randn({2, 3}, 4) end, "randn: unexpected argument #2 (a number")
    H.errors(function() return flame.zeros({2, 3}, 4, {}) end, "zeros: unexpected argument #2")
    H.errors(function() return flame.tensor({1}, {}, 3) end, "tensor: unexpected argument #3")
    H.errors(function() return flame.full({2}, 1, {}, 5) end, "full: unexpected argument #4")
    H.errors(function() return flame.cat({flame.zeros(2)}, 1, 2) end, "cat: unexpected argument #3")
    H.errors(function() return flame.manual_seed(1, 2) end, "manual_seed: unexpected argument #2")
    H.errors(function() return flame.is_grad_enabled(true) end, "is_grad_enabled: unexpected argument #1 (a boolean")
    H.errors(function() return flame.zeros_like(flame.zeros(2), {}, 3) end, "zeros_like: unexpected argument #3")
  end)

  it("count from the first argument after self in method calls", function()
    local x = flame.zeros(2, 3, H.opts())
    local _, err = pcall(function() local r = x:sum(1, true, 5) return r end)
    assert.truthy(err:find("sum: unexpected argument #3 (a number", 1, true), err)
    _, err = pcall(function() local r = x:exp(2) return r end)
    assert.truthy(err:find("exp: unexpected argument #1", 1, true), err)
    H.errors(function() return x:view({6}, 1) end, "view: unexpected argument #2")
    H.errors(function() return x:expand(x, 2) end, "unexpected argument")
    H.errors(function() return x:permute({2, 1}, 3) end, "unexpected argument")
    H.errors(function() return x:transpose(1, 2, 3) end, "transpose: unexpected argument")
    H.errors(function() return x:add(x, 1, 2) end, "add: unexpected argument")
  end)

  it("trailing nils read as absent", function()
    local x = flame.zeros(2, 3, H.opts())
    assert.are.equal(6, x:numel(nil))
    assert.is_true(x:sum(nil, nil).shape == {})
    assert.are.equal("f32", flame.tensor({1.0}, nil, nil).dtype)
  end)

  it("every method refuses a pile of extra arguments", function()
    local x = flame.zeros(2, 2, H.opts())
    local junk = {}
    for i = 1, 12 do junk[i] = 7 end
    for name, m in pairs(flame._tensor_methods) do
      local ok, err = pcall(m, x, table.unpack(junk))
      assert(not ok, name .. " accepted 12 extra arguments")
      assert(type(err) == "string", name)
    end
  end)
end)

describe("shapes", function()
  local x = flame.zeros(2, 3, H.opts())

  it("print as {2, 3}", function()
    assert.are.equal("{2, 3}", tostring(x.shape))
    assert.are.equal("{}", tostring(H.t(1.0).shape))
    assert.are.equal("{0}", tostring(flame.zeros(0).shape))
    assert.are.equal("shape {2, 3}", "shape " .. x.shape)
    assert.are.equal("{2, 3}", tostring(x:size()))
  end)

  it("index, # and iterate like a table", function()
    local s = x.shape
    assert.are.equal(2, #s)
    assert.are.equal(2, s[1])
    assert.are.equal(3, s[2])
    assert.are.equal(3, s[-1])
    assert.is_nil(s[3])
    assert.is_nil(s[0])
    local seen = {}
    for i, v in ipairs(s) do seen[i] = v end
    assert.are.same({2, 3}, seen)
    local keys = {}
    for k, v in pairs(s) do keys[k] = v end
    assert.are.same({2, 3}, keys)
    assert.are.same({2, 3}, {table.unpack(s)})
    assert.are.equal(6, s:numel())
    assert.are.equal(1, H.t(1.0).shape:numel())
    assert.are.equal(3, x:size(2))
  end)

  it("compare with == to shapes and to plain tables of the same sizes", function()
    assert.is_true(x.shape == flame.ones(2, 3).shape)
    assert.is_true(x.shape == {2, 3})
    assert.is_true({2, 3} == x.shape)
    assert.is_false(x.shape == {3, 2})
    assert.is_false(x.shape == {2, 3, 1})
    assert.is_false(x.shape == flame.zeros(2).shape)
    assert.is_true(H.t(1.0).shape == {})
    assert.is_false(x.shape == "{2, 3}")
  end)

  it("compare strictly in assert.are.same (spec/helper.lua)", function()
    assert.are.same({2, 3}, x.shape)
    assert.are.same({{2, 3}}, {x.shape})
    assert.has_error(function() assert.are.same({2}, x.shape) end)
    assert.has_error(function() assert.are.same({2, 3, 1}, x.shape) end)
    assert.has_error(function() assert.are.same({}, x.shape) end)
    assert.has_error(function() assert.are.same(x.shape, {3, 2}) end)
  end)

  it("are immutable", function()
    H.errors(function() x.shape[1] = 5 end, "shape", "immutable")
    H.errors(function() x.shape.foo = 5 end, "immutable")
    H.errors(function() setmetatable(x.shape, nil) end, "protected metatable")
    assert.are.equal(2, x.shape[1])
  end)

  it("are accepted wherever a shape is", function()
    local s = x.shape
    assert.is_true(flame.zeros(s).shape == s)
    assert.is_true(flame.ones(s, H.opts({dtype = "f64"})).shape == s)
    assert.is_true(flame.randn(s).shape == s)
    assert.is_true(flame.full(s, 2).shape == s)
    assert.is_true(flame.randint(0, 5, s).shape == s)
    assert.is_true(flame.arange(6):view(s).shape == s)
    assert.is_true(flame.arange(6):reshape(s).shape == s)
    assert.is_true(flame.zeros(1, 3):expand(s).shape == s)
    assert.is_true(flame.zeros(3, 2):permute(flame.zeros(2, 1).shape).shape == {2, 3})
    H.close(flame.tensor(s), {2, 3})
    H.errors(function() return flame.zeros(2, s) end, "shape", "integer sizes", "table")
  end)
end)

describe("tensors with Lua values", function()
  local loss = H.t(0.25)

  it("a one-element tensor compares with numbers", function()
    assert.is_true(loss < 1)
    assert.is_false(1 < loss)
    assert.is_true(loss <= 0.25)
    assert.is_true(0.25 <= loss)
    assert.is_true(loss > 0)
    assert.is_false(loss >= 0.5)
    assert.is_true(loss <= H.t({0.5}))
    assert.is_true(H.t({{3}}) > loss)
    assert.is_true(H.t(2) < 3) -- integers compare exactly
    assert.is_true(H.t(9007199254740993) > 9007199254740992)
  end)

  it("a tensor of several elements in < is an error pointing to :lt", function()
    H.errors(function() return H.t({1.0, 2}) < 1 end, "compare", "[2]", "one element", ":lt")
    H.errors(function() return 1 <= H.t({1.0, 2}) end, ":le")
    H.errors(function() return loss < "x" end, "compare", "string")
    H.errors(function() return H.t(true) < 1 end, "compare", "boolean")
  end)

  it("concatenates and prints as tostring does", function()
    local s = tostring(loss)
    assert.truthy(s:find("tensor(0.2500", 1, true), s)
    assert.are.equal("loss " .. s, "loss " .. loss)
    assert.are.equal(s .. " end", loss .. " end")
    assert.are.equal(s .. "1", loss .. 1)
    assert.are.equal("0.250", string.format("%.3f", loss:item()))
  end)
end)

describe("flame.tensor from Lua tables", function()
  it("keeps integers exact and infers the dtype", function()
    local t = flame.tensor({1, 9007199254740993, -3})
    assert.are.equal("i64", t.dtype)
    assert.are.same({1, 9007199254740993, -3}, t:totable())
    assert.are.equal("f32", flame.tensor({1, 2.5}).dtype)
    assert.are.equal("f32", flame.tensor({2.5, 1}).dtype)
    assert.are.same({1, 2.5, 3}, flame.tensor({1, 2.5, 3}, {dtype = "f64"}):totable())
    assert.are.same({{true, false}, {false, true}}, flame.tensor({{true, false}, {false, true}}):totable())
    assert.are.equal("i32", flame.tensor({{1, 2}}, {dtype = "i32"}).dtype)
  end)

  it("reads deep and wide nesting in row-major order", function()
    local n = {}
    local k = 0
    for i = 1, 3 do
      n[i] = {}
      for j = 1, 4 do
        n[i][j] = {}
        for l = 1, 2 do k = k + 1; n[i][j][l] = k end
      end
    end
    local t = flame.tensor(n, H.opts())
    assert.is_true(t.shape == {3, 4, 2})
    H.close(t:reshape(-1), flame.arange(1, 25))
    local one = flame.tensor({{{{{{{{5}}}}}}}})
    assert.are.equal(8, one.ndim)
    assert.are.equal(5, one:item())
  end)

  it("refuses ragged or mixed input with the element's position", function()
    H.errors(function() return flame.tensor({{1, 2}, {3}}) end, "ragged table at [2]", "expected 2 entries, got 1")
    H.errors(function() return flame.tensor({{1}, {2, 3}}) end, "ragged table at [2]", "expected 1 entries, got 2")
    H.errors(function() return flame.tensor({{}, {1}}) end, "ragged table at [2]", "expected 0")
    H.errors(function() return flame.tensor({{{1, 2}}, {{3, 4}, {5, 6}}}) end, "ragged table at [2]")
    H.errors(function() return flame.tensor({1, 2, nil, 4}) end, "element [3]", "nil")
    H.errors(function() return flame.tensor({{1, 2}, {3, {4}}}) end, "element [2][2] is a table, expected a number")
    H.errors(function() return flame.tensor({{1.5, 2}, {3, true}}) end, "mixes booleans and numbers")
    H.errors(function() return flame.tensor({true, 1}) end, "mixes booleans and numbers")
  end)

  it("an empty nested table is an empty tensor of that shape", function()
    assert.is_true(flame.tensor({}).shape == {0})
    assert.is_true(flame.tensor({{}, {}}).shape == {2, 0})
    assert.are.equal("f32", flame.tensor({}).dtype)
  end)
end)
