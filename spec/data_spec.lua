-- flame.data (IDX reading, datasets, DataLoader, collate) and flame.progress's output without a terminal.
local H = require "spec.helper"
local flame = H.flame
local tmp = os.tmpname()
os.remove(tmp)
local function tmpfile(name) return tmp .. "_" .. name end
local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local function idx(code, dims, fmt, values) -- a hand-made IDX file's bytes
  local s = string.char(0, 0, code, #dims)
  for _, d in ipairs(dims) do s = s .. string.pack(">I4", d) end
  for _, v in ipairs(values) do s = s .. string.pack(fmt, v) end
  return s
end
local function ints(t) -- totable with integers
  local out = {}
  for k, v in ipairs(H.flat(t:cpu():totable())) do out[k] = math.tointeger(v) or v end
  return out
end

describe("data.read_idx", function()
  it("reads every element type, dims from the header", function()
    local cases = {
      {0x08, "B", {0, 7, 255, 128}, "i64"}, {0x09, "b", {-128, -1, 0, 127}, "i64"},
      {0x0B, ">i2", {-30000, -1, 2, 30000}, "i64"}, {0x0C, ">i4", {-2147483648, -5, 0, 2147483647}, "i64"},
      {0x0D, ">f", {-1.5, 0, 0.25, 3e38}, "f32"}, {0x0E, ">d", {-1.5, 0, 1e-300, 1e300}, "f64"},
    }
    for _, c in ipairs(cases) do
      local p = tmpfile("t.idx")
      write(p, idx(c[1], {2, 2}, c[2], c[3]))
      local t = flame.data.read_idx(p)
      os.remove(p)
      assert.are.same({2, 2}, t.shape)
      assert.are.equal(c[4], t.dtype)
      local want = {}
      for k, v in ipairs(c[3]) do want[k] = c[4] == "f32" and string.unpack("f", string.pack("f", v)) or v end
      assert.are.same(want, ints(t))
    end
  end)

  it("converts to the dtype asked for", function()
    local p = tmpfile("d.idx")
    write(p, idx(0x08, {3}, "B", {1, 2, 255}))
    for _, dt in ipairs({"f32", "f64", "i32", "i64"}) do
      local t = flame.data.read_idx(p, {dtype = dt})
      assert.are.equal(dt, t.dtype)
      assert.are.same({1, 2, 255}, ints(t))
    end
    os.remove(p)
  end)

  it("reads gzip files (zlib)", function()
    local t = flame.data.read_idx("spec/fixtures/idx/u8_2x3x4.idx.gz")
    assert.are.same({2, 3, 4}, t.shape)
    local want = {}
    for k = 1, 24 do want[k] = k - 1 end
    assert.are.same(want, ints(t))
    assert.are.same({-5, 0, 70000}, ints(flame.data.read_idx("spec/fixtures/idx/i32_3.idx.gz")))
  end)

  it("reads a zero-size dim", function()
    local p = tmpfile("z.idx")
    write(p, idx(0x08, {0, 3}, "B", {}))
    assert.are.same({0, 3}, flame.data.read_idx(p).shape)
    os.remove(p)
  end)

  it("errors", function()
    local p = tmpfile("e.idx")
    write(p, string.char(1, 0, 8, 1) .. string.pack(">I4", 1) .. "x")
    H.errors(function() flame.data.read_idx(p) end,
             "read_idx: " .. p .. " is not an IDX file (bad magic: the first two bytes are 0x01 0x00, not 0)")
    write(p, string.char(0, 0, 0x0A, 1) .. string.pack(">I4", 1) .. "x")
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. ": unknown element type 0x0a")
    write(p, string.char(0, 0, 8, 0))
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. ": 0 dims (1 to 8 are supported)")
    write(p, string.char(0, 0, 8, 9))
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. ": 9 dims (1 to 8 are supported)")
    write(p, string.char(0, 0))
    H.errors(function() flame.data.read_idx(p) end,
             "read_idx: " .. p .. " is truncated: the header needs 4 bytes, got 2 (end of file)")
    write(p, string.char(0, 0, 8, 2) .. string.pack(">I4", 3))
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. " is truncated: the dims needs 8 bytes, got 4")
    write(p, idx(0x0C, {3}, ">i4", {1, 2}))
    H.errors(function() flame.data.read_idx(p) end,
             "read_idx: " .. p .. " is truncated: the data (3 elements) needs 12 bytes, got 8")
    write(p, idx(0x08, {2}, "B", {1, 2, 3}))
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. " has bytes after the 2 elements its header declares")
    write(p, idx(0x08, {65536, 65536, 65536}, "B", {}))
    H.errors(function() flame.data.read_idx(p) end, "read_idx: " .. p .. ": dims too large (more than 2^40 elements)")
    write(p, idx(0x08, {1}, "B", {1}))
    H.errors(function() flame.data.read_idx(p, {dtype = "bool"}) end, "read_idx: dtype must be f32, f64, i32 or i64, got 'bool'")
    H.errors(function() flame.data.read_idx(p, {dtyp = "f32"}) end, "unknown option 'dtyp'")
    os.remove(p)
    H.errors(function() flame.data.read_idx("/nonexistent.idx") end, "read_idx: cannot open /nonexistent.idx")
    H.errors(function() flame.data.read_idx("spec/fixtures/idx/truncated.idx.gz") end,
             "read_idx: spec/fixtures/idx/truncated.idx.gz is truncated: the data (24 elements) needs 24 bytes, got 20")
  end)
end)

describe("data.FashionMNIST", function()
  local dirs = {}
  if os.getenv("FLAME_DATASETS") then dirs[1] = os.getenv("FLAME_DATASETS") .. "/fashion-mnist" end
  dirs[#dirs + 1] = "/usr/share/datasets/fashion-mnist"
  local present = false
  for _, d in ipairs(dirs) do
    local f = io.open(d .. "/t10k-labels-idx1-ubyte.gz", "rb")
    if f then f:close() present = true end
  end
  local test = present and it or pending
  test("loads the test split: [N, 1, 28, 28] f32 in [0, 1], 1-based labels", function()
    local ds = flame.data.FashionMNIST(nil, {train = false})
    assert.are.equal(10000, #ds)
    assert.are.same({10000, 1, 28, 28}, ds.images.shape)
    assert.are.equal("f32", ds.images.dtype)
    assert.are.equal(0, ds.images:min():item())
    assert.are.equal(1, ds.images:max():item())
    assert.are.equal(1, ds.labels:min():item())
    assert.are.equal(10, ds.labels:max():item())
    -- each class has 1000 test images
    assert.are.same({1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000},
                    ints(ds.labels:eq(flame.arange(1, 11):view(10, 1)):sum(2)))
    local b = flame.data.DataLoader(ds, {batch_size = 64}):iter()()
    assert.are.same({64, 1, 28, 28}, b[1].shape)
    assert.are.same({64}, b[2].shape)
  end)
  it("names the folders it searched when the files are missing", function()
    H.errors(function() flame.data.FashionMNIST("/nonexistent") end,
             "FashionMNIST: no train-images-idx3-ubyte(.gz) in /nonexistent (install Debian's dataset-fashion-mnist")
    H.errors(function() flame.data.FashionMNIST(nil, {tran = true}) end, "FashionMNIST: unknown option 'tran'")
  end)
end)

describe("data.Dataset", function()
  local Squares = flame.data.Dataset:extend("Squares")
  function Squares:__init(n) self.n = n end
  function Squares:__len() return self.n end
  function Squares:get(i) return {x = flame.tensor({i, i * i}, {device = H.device}), y = i} end

  it("a subclass is a dataset for the DataLoader", function()
    local ds = Squares(5)
    assert.are.equal(5, #ds)
    assert.are.equal("Squares(5 samples)", tostring(ds))
    local batches = {}
    for b in flame.data.DataLoader(ds, {batch_size = 2}):iter() do batches[#batches + 1] = b end
    assert.are.equal(3, #batches)
    H.close(batches[2].x, {{3, 9}, {4, 16}})
    H.close(batches[3].y, {5})
  end)

  it("names what a subclass did not define", function()
    local Empty = flame.data.Dataset:extend("Empty")
    H.errors(function() return #Empty() end, "Empty: __len is not implemented (define Empty:__len)")
    H.errors(function() return Empty():get(1) end, "Empty: get(i) is not implemented (define Empty:get)")
    H.errors(function() return flame.data.Dataset:extend(3) end, "Dataset:extend: expected a class name")
  end)
end)

describe("data.TensorDataset and DataLoader", function()
  local x = flame.arange(1, 21, {device = H.device}):float():view(10, 2)
  local y = flame.arange(1, 11, {device = H.device})
  local ds = flame.data.TensorDataset(x, y)

  it("TensorDataset samples along dim 1", function()
    assert.are.equal(10, #ds)
    local s = ds:get(3)
    assert.are.same({5, 6}, ints(s[1]))
    assert.are.same({3}, ints(s[2]))
  end)

  it("batches in order, the last batch short unless drop_last", function()
    local L = flame.data.DataLoader(ds, {batch_size = 4})
    assert.are.equal(3, #L)
    local got = {}
    for i, b in L:enumerate() do
      got[i] = ints(b[2])
      assert.are.equal(b[2].shape[1], b[1].shape[1])
    end
    assert.are.same({{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10}}, got)
    local D = flame.data.DataLoader(ds, {batch_size = 4, drop_last = true})
    assert.are.equal(2, #D)
    local n = 0
    for b in D:iter() do n = n + 1 assert.are.equal(4, b[1].shape[1]) end
    assert.are.equal(2, n)
    assert.are.equal(10, #flame.data.DataLoader(ds))
  end)

  it("shuffles from flame's seeded randperm: reproducible, a permutation, new each pass", function()
    local function order(L)
      local o = {}
      for b in L:iter() do for _, v in ipairs(ints(b[2])) do o[#o + 1] = v end end
      return o
    end
    local L = flame.data.DataLoader(ds, {batch_size = 3, shuffle = true})
    flame.manual_seed(7)
    local a1, a2 = order(L), order(L)
    flame.manual_seed(7)
    local b1, b2 = order(L), order(L)
    assert.are.same(a1, b1)
    assert.are.same(a2, b2)
    assert.are_not.same(a1, a2)
    flame.manual_seed(7)
    assert.are.same(ints(flame.randperm(10)), a1)
    local sorted = {table.unpack(a1)}
    table.sort(sorted)
    assert.are.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, sorted)
    -- rows stay paired with their labels
    for b in L:iter() do H.close(b[1]:select(2, 2), (b[2] * 2):float(), {atol = 0, rtol = 0}) end
  end)

  it("the get path (a plain Dataset) gives the same batches as get_batch", function()
    local plain = setmetatable({}, {__len = function() return #ds end, __index = {get = function(_, i) return ds:get(i) end}})
    local A = flame.data.DataLoader(plain, {batch_size = 4, shuffle = true})
    local B = flame.data.DataLoader(ds, {batch_size = 4, shuffle = true})
    flame.manual_seed(3)
    local ia = A:iter()
    flame.manual_seed(3)
    local ib = B:iter()
    for _ = 1, 3 do
      local a, b = ia(), ib()
      H.close(a[1], b[1], {atol = 0, rtol = 0})
      assert.are.same(ints(b[2]), ints(a[2]))
    end
    assert.is_nil(ia())
  end)

  it("moves batches to the device option", function()
    local L = flame.data.DataLoader(flame.data.TensorDataset(x:cpu()), {batch_size = 5, device = H.device})
    local b = L:iter()()
    assert.are.equal(x.device, b[1].device)
  end)

  it("takes a custom collate", function()
    local L = flame.data.DataLoader(ds, {batch_size = 3, collate = function(samples) return #samples end})
    local got = {}
    for b in L:iter() do got[#got + 1] = b end
    assert.are.same({3, 3, 3, 1}, got)
  end)

  it("errors", function()
    H.errors(function() flame.data.DataLoader({}) end, "DataLoader: the dataset must be a table with __len and get(i)")
    H.errors(function() flame.data.DataLoader(ds, {batch_size = 0}) end, "DataLoader: batch_size must be a positive integer, got 0")
    H.errors(function() flame.data.DataLoader(ds, {batch_size = 2.5}) end, "DataLoader: batch_size must be a positive integer, got 2.5")
    H.errors(function() flame.data.DataLoader(ds, {collate = 3}) end, "DataLoader: collate must be a function, got a number")
    H.errors(function() flame.data.DataLoader(ds, {batchsize = 3}) end, "DataLoader: unknown option 'batchsize'")
    H.errors(function() flame.data.DataLoader(ds, 3) end, "DataLoader: options must be a table, got number")
    H.errors(function() flame.data.TensorDataset() end, "TensorDataset: needs at least one tensor")
    H.errors(function() flame.data.TensorDataset(x, 3) end, "TensorDataset: argument 2 is a number, not a tensor")
    H.errors(function() flame.data.TensorDataset(x, flame.zeros(3)) end,
             "TensorDataset: tensor 2 has 3 samples (dim 1), tensor 1 has 10")
    H.errors(function() flame.data.TensorDataset(flame.tensor(1)) end, "TensorDataset: tensor 1 is 0-dim")
    H.errors(function() ds:get(11) end, "TensorDataset: index 11 out of range 1..10")
  end)
end)

describe("data.default_collate", function()
  local collate = flame.data.default_collate
  it("stacks tensors, turns numbers and booleans into tensors, keeps strings, recurses into tables", function()
    local b = collate({
      {img = flame.zeros(2, 3), label = 1, w = 0.5, ok = true, name = "a", pair = {flame.ones(1), 7}},
      {img = flame.ones(2, 3), label = 2, w = 1.5, ok = false, name = "b", pair = {flame.zeros(1), 8}},
    })
    assert.are.same({2, 2, 3}, b.img.shape)
    assert.are.equal(1, b.img[2]:min():item())
    assert.are.equal("i64", b.label.dtype)
    assert.are.same({1, 2}, ints(b.label))
    assert.are.equal("f64", b.w.dtype) -- PyTorch's default_collate: Python floats -> float64
    assert.are.same({0.5, 1.5}, ints(b.w))
    assert.are.equal("bool", b.ok.dtype)
    assert.are.same({"a", "b"}, b.name)
    assert.are.same({2, 1}, b.pair[1].shape)
    assert.are.same({7, 8}, ints(b.pair[2]))
  end)
  it("errors", function()
    H.errors(function() collate({flame.zeros(2), flame.zeros(3)}) end,
             "DataLoader: collate: sample 2 has shape [3], sample 1 has [2] (stack needs equal shapes)")
    H.errors(function() collate({{a = 1}, {a = "x"}}) end, "DataLoader: collate: sample 2.a is a string, sample 1 a number")
    H.errors(function() collate({{a = 1}, {b = 1}}) end, "DataLoader: collate: sample 2 has no field a (sample 1 has)")
    H.errors(function() collate({print, print}) end, "DataLoader: collate: cannot batch a function (sample 1)")
  end)
end)

describe("data.ImageFolder", function()
  it("labels class subfolders 1.. in sorted order and loads resized images", function()
    local root = tmpfile("folder")
    assert(os.execute("mkdir -p '" .. root .. "/dog' '" .. root .. "/cat' '" .. root .. "/empty'"))
    flame.image.save(root .. "/dog/b.png", flame.ones(3, 4, 4))
    flame.image.save(root .. "/dog/a.PNG", flame.zeros(1, 8, 8))
    flame.image.save(root .. "/cat/x.png", flame.full({3, 2, 6}, 0.5))
    write(root .. "/cat/notes.txt", "not an image")
    local ds = flame.data.ImageFolder(root, {size = 4})
    assert.are.same({"cat", "dog", "empty"}, ds.classes)
    assert.are.equal(3, #ds)
    local s = ds:get(2) -- dog/a.PNG: gray, made RGB, 8x8 -> 4x4
    assert.are.same({3, 4, 4}, s[1].shape)
    assert.are.equal(2, s[2])
    assert.are.equal(1, ds:get(1)[2])
    local b = flame.data.DataLoader(ds, {batch_size = 3}):iter()()
    assert.are.same({3, 3, 4, 4}, b[1].shape)
    assert.are.same({1, 2, 2}, ints(b[2]))
    H.errors(function() ds:get(4) end, "ImageFolder: index 4 out of range 1..3")
    assert(os.execute("rm -r '" .. root .. "'"))
    H.errors(function() flame.data.ImageFolder(root) end, "ImageFolder: cannot list " .. root)
    H.errors(function() flame.data.ImageFolder(3) end, "ImageFolder: root must be a folder path, got a number")
  end)
end)

describe("progress", function()
  local function run(total, steps, opts)
    local f = io.tmpfile()
    local t = 0
    opts = opts or {}
    opts.file, opts.clock = f, function() return t end
    if opts.tty == nil then opts.tty = false end
    local bar = flame.progress(total, opts)
    for i = 1, steps do
      t = t + 0.25
      bar:update(1, {loss = flame.tensor(1 / i), lr = 0.001, tag = "x"})
    end
    bar:close()
    bar:close()
    f:seek("set")
    local s = f:read("a")
    f:close()
    return s
  end

  it("prints a plain line per tenth without a terminal, and no duplicate at close", function()
    local s = run(20, 20, {desc = "train", width = 10})
    local lines = {}
    for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(10, #lines)
    assert.are.equal("train  10% [#         ] 2/20 [00:00<00:04, 4.00 it/s] loss=0.5 lr=0.001 tag=x", lines[1])
    assert.are.equal("train 100% [##########] 20/20 [00:05<00:00, 4.00 it/s] loss=0.05 lr=0.001 tag=x", lines[10])
    assert.is_nil(s:find("\r", 1, true))
  end)

  it("prints by interval as well, and a final line at close when the total was not reached", function()
    local s = run(1000, 12, {interval = 1, width = 4})
    local lines = {}
    for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
    -- at t = 1, 2, 3 (every 4 steps) and at close (12 steps = t 3: already drawn, so no extra line)
    assert.are.equal(3, #lines)
    assert.are.equal("  0% [    ] 4/1000 [00:01<04:09, 4.00 it/s] loss=0.25 lr=0.001 tag=x", lines[1])
    local s2 = run(1000, 5, {interval = 1, width = 4})
    local n = 0
    for l in s2:gmatch("[^\n]+") do n = n + 1 end
    assert.are.equal(2, n) -- t = 1 and the close at 5 steps
  end)

  it("counts without a total", function()
    local s = run(nil, 3)
    assert.are.equal("3 [00:00, 4.00 it/s] loss=0.3333 lr=0.001 tag=x\n", s)
  end)

  it("redraws in place on a terminal", function()
    local s = run(4, 4, {tty = true, interval = 0})
    assert.are.equal(4 + 1, select(2, s:gsub("\r", "")))
    assert.truthy(s:find("\r100%% %[#+%] 4/4 %[00:01<00:00, 4.00 it/s%] loss=0.25 lr=0.001 tag=x\27%[K\n$"))
  end)

  it("errors", function()
    H.errors(function() flame.progress(-1) end, "progress: total must be a non-negative integer or nil, got -1")
    H.errors(function() flame.progress(3, {width = 0}) end, "progress: width must be a positive integer, got 0")
    H.errors(function() flame.progress(3, {interval = -1}) end, "progress: interval must be a non-negative number")
    H.errors(function() flame.progress(3, {file = 3}) end, "progress: file must be an open Lua file")
    H.errors(function() flame.progress(3, {dsec = "x"}) end, "progress: unknown option 'dsec'")
    local bar = flame.progress(3, {file = io.tmpfile(), tty = false})
    H.errors(function() bar:update(-1) end, "progress: update needs a non-negative integer, got -1")
    H.errors(function() bar:update(1, 5) end, "progress: fields must be a table, got a number")
    bar:close()
    H.errors(function() bar:update(1) end, "progress: update after close")
  end)
end)
