-- Specs of error reporting: one spec per class of bad input. Every error must
-- be a Lua error (pcall catches it, the process survives) whose message names
-- the operation and the shapes, dtypes or devices involved.
-- Runs on the device under test (FLAME_DEVICE, default cpu).
local H = require "helper"
local flame = H.flame

local function zeros(...)
  local args = {...}
  args[#args + 1] = H.opts()
  return flame.zeros(table.unpack(args))
end

describe("errors", function()
  it("shape mismatch names the op and both shapes", function()
    H.errors(function() return zeros(2, 3) + zeros(4, 5) end, "add", "[2, 3]", "[4, 5]", "broadcast")
    H.errors(function() return zeros(2, 3):mul(zeros(3, 2)) end, "mul", "[2, 3]", "[3, 2]")
    H.errors(function() return zeros(2, 3):matmul(zeros(4, 5)) end, "matmul", "[2, 3]", "[4, 5]")
    H.errors(function() return flame.matmul(zeros(2, 3), zeros(2, 3)) end, "matmul", "[2, 3]")
    H.errors(function() return flame.bmm(zeros(2, 3), zeros(2, 3)) end, "bmm", "3-D", "f32[2, 3]")
    H.errors(function() return flame.mm(zeros(2, 2, 2), zeros(2, 3)) end, "mm", "2-D", "f32[2, 2, 2]")
    H.errors(function() return flame.cat({zeros(2, 3), zeros(3, 4)}, 1) end, "cat", "f32[3, 4]", "f32[2, 3]")
    H.errors(function() return flame.stack({zeros(2, 3), zeros(3, 2)}) end, "stack", "f32[3, 2]", "f32[2, 3]")
    H.errors(function() return zeros(2, 3):copy_(zeros(4)) end, "copy_", "[4]", "[2, 3]")
    H.errors(function() return zeros(2, 3):reshape(7) end, "reshape", "[7]", "[2, 3]")
  end)

  it("a bad dim is rejected, and dim 0 is invalid since dims are 1-based", function()
    local t = zeros(2, 3)
    H.errors(function() return t:sum(5) end, "dim 5", "[2, 3]", "1..2")
    H.errors(function() return t:mean({1, 7}) end, "dim 7", "[2, 3]")
    H.errors(function() return t:sum(-3) end, "dim -3", "[2, 3]")
    for _, f in ipairs({
      function() return t:sum(0) end, function() return t:softmax(0) end, function() return t:select(0, 1) end,
      function() return t:transpose(0, 1) end, function() return t:cumsum(0) end, function() return t:size(0) end,
    }) do
      H.errors(f, "dim 0 is invalid", "1-based")
    end
    H.errors(function() return t:transpose(1, 5) end, "transpose", "f32[2, 3]")
    H.errors(function() return t:softmax(3) end, "softmax", "f32[2, 3]")
    H.errors(function() return t:cumsum(5) end, "cumsum", "f32[2, 3]")
    H.errors(function() return t:unsqueeze(5) end, "unsqueeze", "f32[2, 3]")
    H.errors(function() return t:max(3) end, "max", "f32[2, 3]")
    H.errors(function() return t:size(5) end, "dim 5", "[2, 3]")
    H.errors(function() return flame.cat({t, t}, 4) end, "cat", "f32[2, 3]")
    H.errors(function() return t:permute(1, 1) end, "permute", "repeated")
    H.errors(function() return t:permute(1) end, "permute", "expected 2 dims", "[2, 3]")
  end)

  it("a wrong dtype names the op and the dtype it got", function()
    local a, b = H.t({1.0, 2}), H.t({3.0, 4})
    H.errors(function() return flame.where(H.t({1, 0}), a, b) end, "where", "bool", "i64[2]")
    H.errors(function() return a:index_select(1, H.t({1.0})) end, "index", "i64", "f32[1]")
    H.errors(function() return a:gather(1, H.t({1.5})) end, "index", "f32[1]")
    H.errors(function() return H.t({1, 2}):mean() end, "mean", "floating-point", "i64[2]")
    H.errors(function() return H.t({1, 2}):var() end, "var", "i64[2]")
    H.errors(function() return a:masked_fill(a, 1) end, "masked_fill", "bool", "f32[2]")
    H.errors(function() return a:logical_not() end, "logical_not", "bool", "f32[2]")
    H.errors(function() return flame.zeros(2, {dtype = "f8"}) end, "unknown dtype", "'f8'", "f32")
    H.errors(function() return flame.tensor({1.0}, {dtype = "float128"}) end, "unknown dtype", "float128")
    H.errors(function() return a:to("f8") end, "to", "'f8'", "dtype", "device")
    H.errors(function() return flame.zeros(2, {dtype = 3}) end, "dtype")
  end)

  it("a non-numeric table entry names its position", function()
    H.errors(function() return flame.tensor({1, "a"}) end, "flame.tensor", "element [2]", "string", "number")
    H.errors(function() return flame.tensor({{1, 2}, {3, "x"}}) end, "flame.tensor", "element [2][2]", "string")
    H.errors(function() return flame.tensor({1, print}) end, "element [2]", "function")
    H.errors(function() return flame.tensor({1, {2}}) end, "element [2]", "table", "number")
    H.errors(function() return flame.tensor({1, true}) end, "flame.tensor", "booleans and numbers")
    H.errors(function() return flame.tensor("abc") end, "flame.tensor", "string")
    H.errors(function() return flame.tensor() end, "flame.tensor", "no value")
  end)

  it("a ragged nested table names where it is ragged", function()
    H.errors(function() return flame.tensor({{1, 2}, {3}}) end, "flame.tensor", "ragged", "[2]", "expected 2", "got 1")
    H.errors(function() return flame.tensor({{1, 2}, 3}) end, "flame.tensor", "element [2]", "number", "expected a table")
    H.errors(function() return flame.tensor({{{1}, {2}}, {{3}, {4, 5}}}) end, "ragged", "[2][2]")
    H.errors(function() return flame.tensor({{{{{{{{{1}}}}}}}}}) end, "flame.tensor", "deeper than 8")
  end)

  it("backward twice without retain_graph says to retain the graph", function()
    local x = H.t({1.0, 2}, {requires_grad = true})
    local l = (x * x):sum()
    l:backward()
    H.errors(function() l:backward() end, "backward", "second time", "SumBackward", "retain_graph")
  end)

  it("an out-of-range index is an error for every indexing op", function()
    local t = zeros(2, 3)
    H.errors(function() return t:index_select(1, H.t({3})) end, "index_select", "out of range", "size 2")
    H.errors(function() return t:index_select(1, H.t({0})) end, "index_select", "out of range")
    H.errors(function() return t:index_select(2, H.t({-1})) end, "index_select", "out of range")
    H.errors(function() return t:gather(2, H.t({{4}, {1}})) end, "gather", "out of range", "size 3")
    H.errors(function() return t:scatter_add(1, H.t({{3, 1, 1}}), flame.ones(1, 3, H.opts())) end, "scatter_add", "out of range")
    H.errors(function() return t:index_add_(1, H.t({3}), flame.ones(1, 3, H.opts())) end, "index_add_", "out of range")
    H.errors(function() return t:select(1, 3) end, "select", "out of range", "f32[2, 3]")
    H.errors(function() return t:select(1, 0) end, "index 0 is invalid", "1-based")
    H.errors(function() return t[5] end, "select", "out of range", "f32[2, 3]")
    H.errors(function() return t[-3] end, "select", "out of range", "f32[2, 3]")
    H.errors(function() return t[0] end, "index 0 is invalid")
    H.errors(function() t[3] = 1 end, "select", "out of range")
    H.errors(function() return t:narrow(2, 2, 5) end, "narrow", "out of bounds", "f32[2, 3]")
    H.errors(function() return t:narrow(1, 0, 1) end, "narrow", "start 0", "1-based")
    H.errors(function() return H.t({1.0, 2}):item() end, "item", "one element", "f32[2]")
  end)

  it("mixing devices names both, or creating a cuda tensor without CUDA says so", function()
    local c = flame.zeros(2, 3)
    if flame.cuda.is_available() then
      local g = flame.zeros(2, 3, {device = "cuda"})
      H.errors(function() return c + g end, "add", "cpu", "cuda:0")
      H.errors(function() return g:matmul(flame.zeros(3, 2)) end, "matmul", "cpu", "cuda:0")
      H.errors(function() return flame.where(flame.ones(2, 3, {dtype = "bool"}), c, g) end, "where", "cpu", "cuda:0")
      H.errors(function() return g:index_select(1, flame.tensor({1})) end, "index_select", "cpu", "cuda:0")
      H.errors(function() return flame.cat({c, g}) end, "cat", "cpu", "cuda:0")
      local n = flame.cuda.device_count()
      H.errors(function() return flame.zeros(1, {device = "cuda:" .. n}) end, "cuda:" .. n, "does not exist")
    else
      for _, f in ipairs({
        function() return flame.zeros(2, 3, {device = "cuda"}) end,
        function() return flame.tensor({1.0}, {device = "cuda:0"}) end,
        function() return c:cuda() end,
        function() return c:to("cuda") end,
        function() return flame.cuda.memory_stats() end,
      }) do
        local err = H.errors(f, "cuda")
        assert(err:find("not available", 1, true) or err:find("not built", 1, true), "unclear message: " .. err)
      end
    end
  end)

  it("a bad device name lists the valid ones", function()
    H.errors(function() return flame.zeros(2, {device = "tpu"}) end, "bad device", "'tpu'", "cpu", "cuda:N")
    H.errors(function() return flame.zeros(2, {device = "cuda:x"}) end, "bad device", "'cuda:x'")
    H.errors(function() return flame.zeros(2, {device = "cuda:-1"}) end, "bad device", "'cuda:-1'")
    H.errors(function() return flame.memory_stats("gpu") end, "bad device", "'gpu'")
    H.errors(function() return H.t({1.0}):to("tpu") end, "to", "'tpu'", "device")
  end)

  it("view of a non-contiguous tensor suggests reshape", function()
    local t = zeros(2, 3):t()
    H.errors(function() return t:view(6) end, "view", "f32[3, 2]", "contiguous", "reshape")
    assert.are.same({6}, t:reshape(6).shape)
  end)

  it("expand to an incompatible shape names both shapes", function()
    H.errors(function() return zeros(2, 3):expand(4, 5) end, "expand", "[2, 3]", "[4, 5]")
    H.errors(function() return zeros(2, 3):expand(3) end, "expand", "[2, 3]", "[3]", "fewer dims")
    H.errors(function() return zeros(2, 3):expand(-2, 3) end, "expand", "[-2, 3]")
  end)

  it("reshape and view allow one -1 only", function()
    H.errors(function() return zeros(2, 3):reshape(-1, -1) end, "reshape", "one dim can be -1", "[-1, -1]")
    H.errors(function() return zeros(2, 3):view(-1, -1) end, "view", "-1")
    H.errors(function() return zeros(2, 3):view(4, -1) end, "view", "[4, -1]", "[2, 3]")
  end)

  it("negative sizes are rejected", function()
    H.errors(function() return zeros(-1, 3) end, "negative size", "-1")
    H.errors(function() return flame.zeros({2, -3}) end, "negative size", "-3")
    H.errors(function() return flame.ones({-2}, H.opts()) end, "negative size")
    H.errors(function() return flame.full({-1}, 1.0) end, "negative size")
    H.errors(function() return flame.randn(-4) end, "negative size")
    H.errors(function() return zeros(2, 3):reshape(3, -3) end, "reshape", "[3, -3]")
    H.errors(function() return flame.eye(-1) end, "eye", "-1")
    H.errors(function() return flame.linspace(0, 1, -2) end, "linspace", "-2")
  end)

  it("sizes whose byte count overflows are rejected, not wrapped", function()
    H.errors(function() return flame.zeros(2 ^ 62) end, "too large", "[4611686018427387904]")
    H.errors(function() return flame.zeros(2 ^ 40, 2 ^ 40) end, "too large")
    H.errors(function() return flame.zeros(0, 2 ^ 62, 2 ^ 62) end, "too large")
    H.errors(function() return flame.full({2 ^ 61}, 1.0, {dtype = "f64"}) end, "too large")
  end)

  it("wrong argument types name the argument and what was expected", function()
    local t = zeros(2)
    H.errors(function() return flame.matmul("x", t) end, "matmul", "flame tensor expected", "string")
    H.errors(function() return t:matmul(3) end, "matmul", "flame tensor expected", "number")
    H.errors(function() return t:add("x") end, "add", "expected a tensor or a number", "string")
    H.errors(function() return t + {} end, "add", "table")
    H.errors(function() return "x" - t end, "sub", "string")
    H.errors(function() return flame.where("x", t, t) end, "where", "flame tensor expected")
    H.errors(function() return t:index_select(1, "x") end, "index_select", "flame tensor expected")
    H.errors(function() return flame.cat({t, "x"}) end, "list of tensors", "element 2", "string")
    H.errors(function() return flame.cat("x") end, "cat", "table expected")
    H.errors(function() return t:sum("x") end, "sum", "string")
    H.errors(function() return flame.zeros("a") end, "shape", "integer sizes", "string")
    H.errors(function() return flame.zeros(2.5) end, "shape", "integer sizes")
    H.errors(function() return t.sum(nil) end, "sum", "flame tensor expected", "nil")
    H.errors(function() return t:backward("x") end, "gradient tensor or options table", "string")
    H.errors(function() return flame.no_grad(5) end, "no_grad", "function expected")
    H.errors(function() t.foo = 1 end, "cannot set field", "foo")
    H.errors(function() t[1] = "x" end, "number expected", "string")
    H.errors(function() return flame.where(flame.ones(2, {dtype = "bool"}), 0, nil) end, "where", "flame tensor or number")
    H.errors(function() return t:lerp(1, "w") end, "lerp", "flame tensor or number")
  end)

  it("failed calls leave nothing allocated behind", function()
    collectgarbage()
    collectgarbage()
    local before = flame.memory_stats("cpu").allocated
    for _ = 1, 20 do
      local t = flame.zeros(256, 256)
      pcall(function() t[1] = "x" end)
      pcall(function() return t:add(0, "x") end)
      pcall(function() return t:add_(0, "x") end)
      pcall(function() return t:lerp(1, "w") end)
      pcall(function() return flame.where(flame.ones(2, {dtype = "bool"}), 0, nil) end)
      pcall(function() return t:index_select(1, flame.tensor({9})) end)
      pcall(function() return t + flame.zeros(3) end)
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, flame.memory_stats("cpu").allocated)
  end)

  it("a sweep of bad arguments over every method raises Lua errors only", function()
    local bad = {
      function() return nil end, function() return "x" end, function() return {} end, function() return 0 end,
      function() return -1 end, function() return 99 end, function() return 2 ^ 62 end, function() return 0 / 0 end,
      function() return true end, function() return zeros(0) end, function() return zeros(2, 3) end,
      function() return H.t({1, 2}) end, function() return zeros(3, 2):t() end, function() return H.t(3.0) end,
      function() return {9, 9, 9, 9, 9, 9, 9, 9, 9} end,
    }
    local subjects = {
      function() return zeros(2, 3) end, function() return H.t(1.5) end, function() return zeros(0, 3) end,
      function() return H.t({1, 2, 3}) end, function() return flame.zeros(2, 3, H.opts({requires_grad = true})) end,
      function() return H.t({true, false}) end,
    }
    local names = {}
    for name in pairs(flame._tensor_methods) do names[#names + 1] = name end
    table.sort(names)
    local calls = 0
    for _, name in ipairs(names) do
      local m = flame._tensor_methods[name]
      for _, s in ipairs(subjects) do
        for _, a in ipairs(bad) do
          for _, b in ipairs({bad[1], bad[4], bad[11], bad[2]}) do
            local ok, err = pcall(m, s(), a(), b())
            calls = calls + 1
            if not ok then assert(type(err) == "string", name .. ": non-string error " .. tostring(err)) end
          end
        end
      end
    end
    assert(calls > 1000)
    collectgarbage()
  end)

  -- Messages count dims and indices as the Lua caller does: from 1, with
  -- negative ones from the end. On CUDA, kernels report bad indices at the next
  -- synchronising call without the dim, so the dim is asserted on the CPU.
  describe("number dims and indices from 1", function()
    local t = zeros(2, 3)
    local on_cpu = H.device == "cpu"
    local function index_error(fn, op, index, dim, size)
      local frags = {"index " .. index .. " out of range", "size " .. size}
      if on_cpu then frags[#frags + 1] = op .. ": index " .. index .. " out of range for dim " .. dim .. " of size " .. size end
      return H.errors(fn, table.unpack(frags))
    end

    it("t[i], select and narrow", function()
      H.errors(function() return flame.randn(3, H.opts())[4] end, "select: index 4 out of range for dim 1 of size 3")
      H.errors(function() return t[3] end, "index 3 out of range for dim 1 of size 2", "f32[2, 3]")
      H.errors(function() return t[-3] end, "index -3 out of range for dim 1 of size 2")
      H.errors(function() t[3] = 1 end, "index 3 out of range for dim 1 of size 2")
      H.errors(function() return t:select(2, 4) end, "select: index 4 out of range for dim 2 of size 3")
      H.errors(function() return t:select(2, -4) end, "select: index -4 out of range for dim 2 of size 3")
      H.errors(function() return t:narrow(2, 2, 5) end, "narrow: start 2 with length 5 is out of bounds for dim 2 of size 3")
      H.errors(function() return t:narrow(1, 3, 1) end, "narrow: start 3 with length 1 is out of bounds for dim 1 of size 2")
    end)

    it("dims of views: transpose, permute, squeeze, unsqueeze, flatten, flip", function()
      H.errors(function() return t:transpose(1, 3) end, "transpose", "dim 3 out of range", "expected 1..2 or -2..-1")
      H.errors(function() return t:permute(1, 1) end, "permute: dim 1 repeated")
      H.errors(function() return t:permute(2, -1) end, "permute: dim 2 repeated")
      H.errors(function() return t:squeeze(3) end, "squeeze", "dim 3 out of range", "1..2")
      H.errors(function() return t:unsqueeze(4) end, "unsqueeze", "dim 4 out of range", "1..3")
      H.errors(function() return zeros(2, 3, 4):flatten(3, 2) end, "flatten: start dim 3 is after end dim 2")
      H.errors(function() return t:flip(2, 2) end, "flip: dim 2 repeated")
      H.errors(function() return t:expand(4, 3) end, "expand", "(dim 1: 2 to 4")
      H.errors(function() return zeros(3, 2):expand(2, 3, 5) end, "expand", "(dim 3: 2 to 5", "[2, 3, 5]")
    end)

    it("cat and stack number their elements and dims from 1", function()
      H.errors(function() return flame.cat({t, zeros(3, 4)}, 1) end, "cat: element 2", "does not match element 1", "outside dim 1")
      H.errors(function() return flame.cat({t, t, zeros(2, 4)}, 1) end, "cat: element 3")
      H.errors(function() return flame.cat({zeros(2), zeros()}, 1) end, "cat: element 2")
      H.errors(function() return flame.cat({H.t(1.0), H.t(2.0)}) end, "cat: zero-dimensional tensor (element 1)")
      H.errors(function() return flame.stack({t, t, zeros(3, 2)}) end, "stack: element 3", "differs in shape from element 1")
      H.errors(function() return flame.cat({t, t}, 3) end, "cat", "dim 3 out of range")
      H.errors(function() return flame.stack({t, t}, 4) end, "stack", "dim 4 out of range", "1..3")
    end)

    it("index ops: gather, index_select, scatter_add, index_add", function()
      index_error(function() return t:gather(2, H.t({{4}, {1}})) end, "gather", 4, 2, 3)
      index_error(function() return t:gather(2, H.t({{0}, {1}})) end, "gather", 0, 2, 3)
      index_error(function() return t:index_select(1, H.t({3})) end, "index_select", 3, 1, 2)
      index_error(function() return t:index_select(2, H.t({-1})) end, "index_select", -1, 2, 3)
      index_error(function() return t:scatter_add(1, H.t({{3, 1, 1}}), flame.ones(1, 3, H.opts())) end, "scatter_add", 3, 1, 2)
      index_error(function() return t:index_add_(2, H.t({4}), flame.ones(2, 1, H.opts())) end, "index_add_", 4, 2, 3)
      H.errors(function() return t:gather(1, H.t({{1, 1, 1, 1}})) end, "gather", "does not fit input", "along dim 1")
      H.errors(function() return t:index_add_(2, H.t({1}), flame.ones(2, 2, H.opts())) end, "index_add_", "along dim 2")
    end)

    it("broadcasting names the dim of the result, counted from 1", function()
      H.errors(function() return zeros(2, 3) + zeros(4, 5) end, "add", "(dim 1: 2 vs 4)")
      H.errors(function() return zeros(3) * zeros(2, 4) end, "mul", "(dim 2: 3 vs 4)")
      H.errors(function() return zeros(2, 1, 3):sub(zeros(5, 2)) end, "sub", "(dim 3: 3 vs 2)")
      H.errors(function() return flame.where(zeros(2, 3):eq(0), zeros(2, 3), zeros(4)) end, "where", "dim 2")
    end)

    it("softmax, reductions and cumsum name the bad dim as written", function()
      H.errors(function() return t:softmax(3) end, "softmax", "dim 3 out of range", "1..2 or -2..-1")
      H.errors(function() return t:log_softmax(-3) end, "log_softmax", "dim -3 out of range")
      H.errors(function() return t:sum(3) end, "dim 3 out of range")
      H.errors(function() return t:mean({1, 4}) end, "dim 4 out of range")
      H.errors(function() return t:amax(-5) end, "dim -5 out of range")
      H.errors(function() return t:max(3) end, "max", "dim 3 out of range")
      H.errors(function() return t:argmin(3) end, "argmin", "dim 3 out of range")
      H.errors(function() return t:cumsum(3) end, "cumsum", "dim 3 out of range")
      H.errors(function() return t:var(4) end, "var", "dim 4 out of range")
      H.errors(function() return t:norm(2, 3) end, "norm", "dim 3 out of range")
      H.errors(function() return t:size(3) end, "dim 3 out of range")
    end)

    it("autograd.grad numbers its inputs from 1", function()
      local a = H.t({1.0, 2}, {requires_grad = true})
      local b = H.t({1.0, 2})
      H.errors(function() return flame.autograd.grad((a * 2):sum(), {a, b}) end, "input 2", "does not require grad")
    end)

    it("no message reaching Lua counts from 0", function()
      local calls = {
        function() return t[3] end, function() return t:select(2, 4) end, function() return t:narrow(2, 2, 5) end,
        function() return t:gather(2, H.t({{4}, {1}})) end, function() return zeros(2, 3) + zeros(4, 5) end,
        function() return flame.cat({t, zeros(3, 4)}, 1) end, function() return t:permute(1, 1) end,
        function() return t:transpose(1, 3) end, function() return t:index_select(1, H.t({0})) end,
      }
      for _, f in ipairs(calls) do
        local err = H.errors(f)
        assert(not err:find("0-based", 1, true), "a 0-based message: " .. err)
        assert(not err:find("dim 0", 1, true), "a dim counted from 0: " .. err)
      end
    end)
  end)

  it("a tensor released by a to-be-closed variable is an error to use, not a crash", function()
    local kept
    do
      local t <close> = zeros(2)
      kept = t
    end
    H.errors(function() return kept:sum() end, "already released")
    H.errors(function() return kept:numel() end, "already released")
    H.errors(function() return tostring(kept) end, "already released")
  end)
end)
