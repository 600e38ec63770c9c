-- Specs of the safetensors checkpoints (flame.save, flame.load): round trips of every dtype on the device under
-- test, the bytes of Python's safetensors (fixtures by spec/fixtures/gen_io.py), atomic replacement, and one
-- spec per rule the reader enforces, with its message.
local H = require "helper"
local flame = H.flame

local FIX = "spec/fixtures/io/"
local dir -- a fresh directory per spec

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end
local function listing()
  local p = io.popen("ls -a '" .. dir .. "'")
  local names = {}
  for l in p:lines() do if l ~= "." and l ~= ".." then names[#names + 1] = l end end
  p:close()
  table.sort(names)
  return table.concat(names, " ")
end
-- A file from a header (JSON text) and the data bytes after it.
local function st(json, data) return string.pack("<I8", #json) .. json .. (data or "") end

before_each(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
end)
after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

local function is_negzero(x) return x == 0 and 1 / x < 0 end

describe("flame.save and flame.load", function()
  it("round-trip every dtype with its values, shape and dtype, on the device", function()
    local ts = {
      f32 = H.t({{1.5, -2.25, 3e38}, {0, 1e-40, -7}}, {dtype = "f32"}),
      f64 = H.t({1 / 3, -1e-310, 2 ^ 60}, {dtype = "f64"}),
      f16 = H.t({65504, -0.5, 6e-8}, {dtype = "f16"}),
      bf16 = H.t({{1, -2}, {3.5, 1e38}}, {dtype = "bf16"}),
      i32 = H.t({-2147483648, 2147483647, 5}, {dtype = "i32"}),
      i64 = H.t({math.mininteger, math.maxinteger, -1}, {dtype = "i64"}),
      bool = H.t({true, false, true}, {dtype = "bool"}),
    }
    local path = dir .. "/all.safetensors"
    flame.save(path, ts)
    local back, meta = flame.load(path, {device = H.device})
    assert.are.same({}, meta)
    local n = 0
    for name, t in pairs(ts) do
      local b = back[name]
      assert.are.equal(t.dtype, b.dtype)
      assert.are.equal(H.device, b.device:match("^%a+"))
      assert.is_false(b.requires_grad)
      H.close(b, t, {atol = 0, rtol = 0}, name)
      n = n + 1
    end
    for _ in pairs(back) do n = n - 1 end
    assert.are.equal(0, n)
  end)

  it("keep NaN, infinities and -0 (in every float dtype), empty and 0-dim tensors", function()
    local nan, inf = 0 / 0, math.huge
    local path = dir .. "/odd.safetensors"
    local ts = {}
    for _, dt in ipairs({"f32", "f64", "f16", "bf16"}) do ts[dt] = H.t({nan, inf, -inf, -0.0, 1}, {dtype = dt}) end
    ts.empty = flame.zeros(0, 3, H.opts({dtype = "i64"}))
    ts.empty2 = flame.zeros(2, 0, H.opts({dtype = "bool"}))
    ts.scalar = H.t(2.5, {dtype = "f64"})
    flame.save(path, ts)
    local back = flame.load(path, {device = H.device})
    for _, dt in ipairs({"f32", "f64", "f16", "bf16"}) do
      local v = back[dt]:cpu():totable()
      assert.is_true(v[1] ~= v[1], dt)
      assert.are.same({inf, -inf}, {v[2], v[3]})
      assert.is_true(is_negzero(v[4]), dt .. " -0")
    end
    assert.are.same({0, 3}, {back.empty.shape[1], back.empty.shape[2]})
    assert.are.equal("i64", back.empty.dtype)
    assert.are.equal(0, back.empty2:numel())
    assert.are.equal(0, back.scalar:dim())
    assert.are.equal(2.5, back.scalar:item())
  end)

  it("write non-contiguous tensors (transposed, narrowed, expanded) as their elements in row-major order", function()
    local a = H.t({{1, 2, 3}, {4, 5, 6}}, {dtype = "f32"})
    local ts = {t = a:t(), n = a:narrow(2, 2, 2), e = H.t({{1, 2, 3}}, {dtype = "i32"}):expand(3, 3),
                p = flame.arange(24, H.opts({dtype = "f64"})):reshape(2, 3, 4):permute(3, 1, 2)}
    assert.is_false(ts.t:is_contiguous())
    local path = dir .. "/views.safetensors"
    flame.save(path, ts)
    local back = flame.load(path, {device = H.device})
    for k, t in pairs(ts) do
      assert.is_true(back[k]:is_contiguous())
      H.close(back[k], t:contiguous(), {atol = 0, rtol = 0}, k)
    end
  end)

  it("take any UTF-8 names: long ones, non-ASCII, quotes, backslashes, control bytes and NUL", function()
    local names = {string.rep("layer.", 2000) .. "w", "café.β", 'q"uo\\te', "tab\tnew\nline\1", "nul\0byte", ""}
    local ts = {}
    for i, name in ipairs(names) do ts[name] = H.t({i}, {dtype = "i32"}) end
    local path = dir .. "/names.safetensors"
    flame.save(path, ts)
    local back = flame.load(path, {device = H.device})
    for i, name in ipairs(names) do assert.are.equal(i, back[name]:item(), name:sub(1, 20)) end
  end)

  it("round-trip the metadata (strings, escapes, empty values); no metadata gives an empty table", function()
    local path = dir .. "/meta.safetensors"
    local meta = {step = "1200", note = 'line1\nline2 "q" \\ é', empty = "", [""] = "empty key"}
    flame.save(path, {w = H.t({1.0})}, meta)
    local _, m = flame.load(path)
    assert.are.same(meta, m)
    flame.save(path, {w = H.t({1.0})})
    local _, m2 = flame.load(path)
    assert.are.same({}, m2)
    assert.is_nil(read(path):find("__metadata__", 1, true))
  end)

  it("save an empty table as a valid file with no tensors", function()
    local path = dir .. "/none.safetensors"
    flame.save(path, {})
    assert.are.equal(st("{}      "), read(path))
    local back, meta = flame.load(path)
    assert.are.same({}, back)
    assert.are.same({}, meta)
  end)
end)

describe("interop with Python's safetensors", function()
  local nan, inf = 0 / 0, math.huge
  local expected = {
    f32 = {{nan, inf, -inf}, {-0.0, 1.5, 3.4028234663852886e38}, {1.401298464324817e-45, -2.5, 0.10000000149011612}},
    f64 = {nan, -0.0, 1e-310, 2.5, -inf},
    f16 = {65504.0, -0.0, inf, nan, 5.960464477539063e-08, -1.5},
    bf16 = {{1.0, -2.0}, {3.3895313892515355e38, nan}},
    i32 = {-2147483648, 2147483647, 0, -7},
    i64 = {math.mininteger, math.maxinteger, 0, 42},
    bool = {true, false, true, true, false},
  }

  it("a file written by Python loads with identical values, dtypes, shapes and metadata", function()
    local back, meta = flame.load(FIX .. "dtypes.safetensors", {device = H.device})
    assert.are.same({format = "pt"}, meta)
    for name, v in pairs(expected) do
      local t = back[name]
      assert.are.equal(name, t.dtype)
      H.close(t, v, {atol = 0, rtol = 0}, name)
    end
    assert.is_true(is_negzero(back.f32:cpu():totable()[2][1]))
    assert.is_true(is_negzero(back.f16:cpu():totable()[2]))
    assert.are.same({0, 3}, {back.empty.shape[1], back.empty.shape[2]})
    assert.are.equal(0, back.scalar:dim())
    assert.are.equal(3.25, back.scalar:item())
  end)

  it("flame writes it back byte for byte (every bit pattern kept, the reference's order and padding)", function()
    local back, meta = flame.load(FIX .. "dtypes.safetensors", {device = H.device})
    local path = dir .. "/again.safetensors"
    flame.save(path, back, meta)
    assert.are.equal(read(FIX .. "dtypes.safetensors"), read(path))
  end)

  it("flame.save of the same tensors built from Lua gives Python's bytes exactly", function()
    local a = H.t({{1, 2, 3}, {4, 5, 6}}, {dtype = "f32"})
    local ts = {
      ["layer.weight"] = H.t({{0.5, -1.0, 2.0}, {0.0, 4.25, -8.0}}, {dtype = "f32"}),
      ["layer.bias"] = H.t({1.0, -2.0, 0.5}, {dtype = "f16"}),
      ids = H.t({1, 2, 3, -4}, {dtype = "i64"}),
      mask = H.t({true, false, true}, {dtype = "bool"}),
      at = a:t(), -- Python saved a.t().contiguous()
      z = H.t(7, {dtype = "i32"}),
    }
    local path = dir .. "/simple.safetensors"
    flame.save(path, ts, {note = 'café "quoted"\n\ttab\\'})
    assert.are.equal(read(FIX .. "simple.safetensors"), read(path))
  end)
end)

describe("flame.save is atomic", function()
  it("an error mid-save (a bad value after good tensors) leaves the old file byte-identical, no temp file", function()
    local path = dir .. "/ckpt.safetensors"
    flame.save(path, {w = H.t({1.0, 2.0})}, {v = "1"})
    local old = read(path)
    for _, bad in ipairs({"x", 3, {}, true}) do
      H.errors(function() flame.save(path, {a = H.t({5.0}), b = H.t({6.0}), c = bad, d = H.t({7.0})}) end,
        "save: " .. path .. ": value of 'c' is a", "not a tensor")
    end
    H.errors(function() flame.save(path, {a = H.t({5.0}), [1] = H.t({6.0})}) end, "key 1 (a number) is not a string")
    H.errors(function() flame.save(path, {a = H.t({5.0})}, {step = 3}) end,
      "metadata value of 'step' is a number, not a string")
    H.errors(function() flame.save(path, {a = H.t({5.0})}, {[2] = "x"}) end, "metadata key 2 (a number) is not a string")
    assert.are.equal(old, read(path))
    assert.are.equal("ckpt.safetensors", listing())
  end)

  it("a released tensor is named, not written", function()
    local path = dir .. "/ckpt.safetensors"
    local kept
    do
      local t <close> = H.t({1.0})
      kept = t
    end
    H.errors(function() flame.save(path, {gone = kept}) end, "value of 'gone' is a released tensor")
    assert.are.equal("", listing())
  end)

  it("names that cannot be written are errors that leave no file", function()
    local path = dir .. "/x.safetensors"
    H.errors(function() flame.save(path, {["\xff\xfe"] = H.t({1.0})}) end, "is not valid UTF-8")
    H.errors(function() flame.save(path, {__metadata__ = H.t({1.0})}) end, '"__metadata__" is reserved')
    H.errors(function() flame.save(path, {a = H.t({1.0})}, {k = "\xc3"}) end, "metadata value of 'k' is not valid UTF-8")
    assert.are.equal("", listing())
  end)

  it("replaces an existing file whole, and fails cleanly where the file cannot be created", function()
    local path = dir .. "/ckpt.safetensors"
    flame.save(path, {w = H.t({1.0, 2.0, 3.0, 4.0})})
    flame.save(path, {v = H.t({9}, {dtype = "i64"})})
    local back = flame.load(path)
    assert.is_nil(back.w)
    assert.are.equal(9, back.v:item())
    assert.are.equal("ckpt.safetensors", listing())
    H.errors(function() flame.save(dir .. "/no/such/dir/x.safetensors", {w = H.t({1.0})}) end,
      "save: " .. dir .. "/no/such/dir/x.safetensors", "No such file or directory")
    H.errors(function() flame.save(dir, {w = H.t({1.0})}) end, "is a directory")
    assert.are.equal("ckpt.safetensors", listing())
  end)
end)

describe("flame.load rejects a malformed file with a message naming it and the rule", function()
  local good = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
  local function rejects(bytes, ...)
    local path = dir .. "/bad.safetensors"
    write(path, bytes)
    return H.errors(function() return flame.load(path, {device = H.device}) end, "load: " .. path .. ": ", ...)
  end

  it("accepts the baseline these variants break, with whitespace and padding around the JSON", function()
    local path = dir .. "/good.safetensors"
    write(path, st(" \n" .. good .. "   \t\r\n", string.pack("<ff", 1.5, -2)))
    H.close(flame.load(path).a, {1.5, -2})
  end)

  it("a missing or truncated file", function()
    H.errors(function() flame.load(dir .. "/missing.safetensors") end, "cannot open", "No such file")
    rejects("", "0 bytes, too short for the 8-byte header length")
    rejects("\5\0\0", "3 bytes, too short for the 8-byte header length")
    H.errors(function() flame.load(dir) end, "is a directory")
  end)

  it("a header length over the 100 MB limit or past the end of the file", function()
    rejects(string.pack("<I8", 100000001) .. "{}", "header length 100000001 exceeds the limit of 100000000 bytes")
    rejects(string.pack("<I8", -1) .. "{}", "header length 18446744073709551615 exceeds the limit")
    rejects(string.pack("<I8", 40) .. good:sub(1, 20), "header length 40 runs past the end of the file (20 bytes")
  end)

  it("a header that is not UTF-8", function()
    rejects(st('{"\xff":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'), "the header is not valid UTF-8")
    rejects(st('{"\xed\xa0\x80":{}}'), "not valid UTF-8") -- an encoded surrogate
    rejects(st('{"\xc0\xaf":{}}'), "not valid UTF-8")     -- an overlong '/'
  end)

  it("malformed JSON", function()
    rejects(st(""), "invalid JSON header at byte 0: expected '{' (the header is a JSON object), found the end")
    rejects(st("[]"), "expected '{' (the header is a JSON object), found '['")
    rejects(st(good .. "x", string.rep("\0", 8)), "trailing characters after the header object")
    rejects(st(good .. "{}", string.rep("\0", 8)), "trailing characters")
    rejects(st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}', string.rep("\0", 8)), "expected a string, found '}'")
    rejects(st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'), "expected ',' or '}' after an entry, found the end")
    rejects(st('{"a" {}}'), "expected ':'")
    rejects(st('{"a:{}}'), "unterminated string")
    rejects(st('{"a\\x":{}}'), "unknown escape '\\x'")
    rejects(st('{"a\\u12":{}}'), "bad hex digit in a \\u escape")
    rejects(st('{"\\ud800":{}}'), "lone leading surrogate \\ud800")
    rejects(st('{"\\udc00x":{}}'), "lone trailing surrogate \\udc00")
    rejects(st('{"a\tb":{}}'), "control byte 0x09 in a string")
    rejects(st("{'a':{}}"), "expected a string, found '''")
  end)

  it("numbers that are not non-negative integers, or overflow", function()
    local function entry(shape, offs) return st('{"a":{"dtype":"F32","shape":' .. shape .. ',"data_offsets":' .. offs .. '}}', string.rep("\0", 8)) end
    rejects(entry("[2]", "[0,8.0]"), "not an integer (fraction or exponent)")
    rejects(entry("[2]", "[0,8e0]"), "not an integer")
    rejects(entry("[2]", "[-0,8]"), "negative number where a size or offset belongs")
    rejects(entry("[-2]", "[0,8]"), "negative number")
    rejects(entry("[2]", "[0,08]"), "integer with a leading zero")
    rejects(entry("[2]", "[0,9223372036854775808]"), "integer too large (over 2^63 - 1)")
    rejects(entry("[2]", "[0,99999999999999999999999]"), "integer too large")
    rejects(entry("[2]", '[0,"8"]'), 'expected an integer, found \'"\'')
    rejects(entry("[2]", "[0]"), "expected ',' (data_offsets has two entries), found ']'")
    rejects(entry("[2]", "[0,8,16]"), "expected ']' (data_offsets has two entries), found ','")
    rejects(entry("2", "[0,8]"), "expected '[' (a shape array)")
    rejects(entry("[2,]", "[0,8]"), "expected an integer, found ']'")
    rejects(entry("[4294967296,4294967296]", "[0,8]"), "tensor 'a': the byte size of its shape overflows")
    rejects(entry("[1,1,1,1,1,1,1,1,2]", "[0,8]"), "tensor 'a' has more than 8 dims")
  end)

  it("duplicate names, keys or fields; missing or unknown fields", function()
    rejects(st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      string.rep("\0", 8)), "duplicate tensor name 'a'")
    rejects(st('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', string.rep("\0", 8)),
      "tensor 'a': duplicate field 'dtype'")
    rejects(st('{"a":{"dtype":"F32","data_offsets":[0,8]}}', string.rep("\0", 8)), 'tensor \'a\': missing field "shape"')
    rejects(st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}', string.rep("\0", 8)),
      "tensor 'a': unknown field 'extra'")
    rejects(st('{"__metadata__":{"k":"1","k":"2"}}'), "duplicate metadata key 'k'")
    rejects(st('{"__metadata__":{},"__metadata__":{}}'), 'duplicate "__metadata__"')
  end)

  it("an unknown dtype, or one flame does not have", function()
    rejects(st('{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', string.rep("\0", 8)), "tensor 'a': unknown dtype 'F33'")
    rejects(st('{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}', string.rep("\0", 8)), "unknown dtype 'f32'")
    rejects(st('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', "\0\0"),
      "tensor 'a': dtype U8 is not supported (flame has F32, F64, F16, BF16, I32, I64, BOOL)")
    rejects(st('{"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}}', string.rep("\0", 8)), "expected a string, found '7'")
  end)

  it("a size that does not match shape x dtype", function()
    rejects(st('{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}', string.rep("\0", 20)),
      "tensor 'a': shape [2, 3] of F32 is 24 bytes, but data_offsets [0, 20] span 20")
    rejects(st('{"a":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}}', string.rep("\0", 4)), "shape [] of BF16 is 2 bytes")
  end)

  it("a gap, an overlap or reversed offsets", function()
    rejects(st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
      string.rep("\0", 12)), "tensor 'b': data_offsets begin at 8, leaving a gap after the previous tensor's end at 4")
    rejects(st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', string.rep("\0", 8)),
      "tensor 'a': data_offsets begin at 4, leaving a gap after the previous tensor's end at 0")
    rejects(st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      string.rep("\0", 8)), "tensor 'b': data_offsets begin at 4, overlapping the previous tensor (which ends at 8)")
    rejects(st('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', string.rep("\0", 8)),
      "tensor 'a': data_offsets [8, 0] end before they begin")
  end)

  it("offsets past the end of the data, or trailing bytes after the last tensor", function()
    rejects(st(good, string.rep("\0", 4)), "tensor 'a': data_offsets [0, 8] run past the end of the data (4 bytes)")
    rejects(st(good), "run past the end of the data (0 bytes)")
    rejects(st(good, string.rep("\0", 9)), "1 trailing bytes after the last tensor (the data is 9 bytes, the tensors cover 8)")
    rejects(st("{}", "x"), "1 trailing bytes")
  end)

  it("metadata that is not an object of strings", function()
    rejects(st('{"__metadata__":{"step":3}}'), "metadata value of 'step' is not a string")
    rejects(st('{"__metadata__":{"k":null}}'), "metadata value of 'k' is not a string")
    rejects(st('{"__metadata__":["a"]}'), "expected '{' (\"__metadata__\" is an object of strings), found '['")
    local path = dir .. "/null.safetensors" -- null is what the reference accepts for "no metadata"
    write(path, st('{"__metadata__":null}'))
    local back, meta = flame.load(path)
    assert.are.same({}, back)
    assert.are.same({}, meta)
  end)
end)

describe("flame.load_npy and flame.save_npy", function()
  it("load numpy's files with their values, dtypes and shapes, on the device", function()
    local function load(name) return flame.load_npy(FIX .. name, {device = H.device}) end
    local cases = {
      {"f32.npy", "f32", {{1.5, -2.0, 3.0}, {4.0, 5.0, 6.25}}},
      {"i64.npy", "i64", {math.mininteger, math.maxinteger, 3}},
      {"bool.npy", "bool", {true, false, true}},
      {"u1.npy", "i32", {0, 200, 255}},   -- u1 widened to i32
      {"i2_be.npy", "i32", {-300, 7}},    -- big-endian i2, swapped and widened
      {"u4.npy", "i64", {4000000000, 1}}, -- u4 widened to i64
      {"f8_be.npy", "f64", {1.5, -0.0}},
      {"v2.npy", "i32", {5, -6}},         -- version 2.0
      {"v3.npy", "f32", {{0.5, 2}}},      -- version 3.0, keys in another order
      {"fortran.npy", "i32", {{0, 1, 2}, {3, 4, 5}}},
    }
    for _, c in ipairs(cases) do
      local t = load(c[1])
      assert.are.equal(c[2], t.dtype, c[1])
      H.close(t, c[3], {atol = 0, rtol = 0}, c[1])
    end
    assert.is_true(is_negzero(load("f8_be.npy"):cpu():totable()[2]))
    assert.is_false(load("fortran.npy"):is_contiguous()) -- the transposed view of its C-order reading
    local s = load("f64_0d.npy")
    assert.are.equal(0, s:dim())
    assert.are.equal(-0.125, s:item())
    local e = load("f16_empty.npy")
    assert.are.equal("f16", e.dtype)
    assert.are.same({0, 2}, {e.shape[1], e.shape[2]})
  end)

  it("save_npy writes np.save's bytes, from any layout, and round-trips every dtype numpy has", function()
    local path = dir .. "/a.npy"
    flame.save_npy(path, H.t({{1.5, 4.0}, {-2.0, 5.0}, {3.0, 6.25}}, {dtype = "f32"}):t())
    assert.are.equal(read(FIX .. "f32.npy"), read(path))
    for _, dt in ipairs({"f32", "f64", "f16", "i32", "i64", "bool"}) do
      local t = dt == "bool" and H.t({true, false}) or H.t({{1, -2}, {3, 4}}, {dtype = dt})
      flame.save_npy(path, t)
      local b = flame.load_npy(path, {device = H.device})
      assert.are.equal(dt, b.dtype)
      H.close(b, t, {atol = 0, rtol = 0}, dt)
    end
    H.errors(function() flame.save_npy(path, H.t({1.0}, {dtype = "bf16"})) end, "save_npy: " .. path .. ": NumPy has no bf16")
  end)

  it("reject malformed files with the file and the problem", function()
    local function header(h, data)
      local pad = 64 - (10 + #h + 1) % 64
      if pad == 64 then pad = 0 end
      h = h .. string.rep(" ", pad) .. "\n"
      return "\x93NUMPY\1\0" .. string.pack("<I2", #h) .. h .. (data or "")
    end
    local function rejects(bytes, ...)
      local path = dir .. "/bad.npy"
      write(path, bytes)
      return H.errors(function() return flame.load_npy(path) end, "load_npy: " .. path .. ": ", ...)
    end
    local ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
    local path = dir .. "/ok.npy"
    write(path, header(ok, string.pack("<ff", 1, 2)))
    H.close(flame.load_npy(path), {1, 2})
    rejects("PK\3\4", "not an .npy file")
    rejects("\x93NUMPY\4\0\0\0", ".npy version 4.0 is not supported")
    rejects("\x93NUMPY\1\0\255\0{}", "header length 255 runs past the end")
    rejects(header(ok, string.pack("<f", 1)), "the data is 4 bytes, but shape [2] of 4-byte elements needs 8 (truncated)")
    rejects(header(ok, string.rep("\0", 12)), "needs 8 (trailing bytes)")
    rejects(header(ok:gsub("<f4", "<c8")), "dtype '<c8' is not supported")
    rejects(header(ok:gsub("<f4", "|O")), "dtype '|O' is not supported")
    rejects(header(ok:gsub("<f4", "<u8")), "u8 does not fit flame's i64")
    rejects(header(ok:gsub("'<f4'", "[('a', '<f4')]")), "structured dtypes are not supported")
    rejects(header(ok:gsub("%(2,%)", "(2)")), "a one-element tuple is written (n,)")
    rejects(header(ok:gsub("%(2,%)", "(-2,)")), "negative number")
    rejects(header(ok:gsub("False", "0")), "fortran_order is True or False")
    rejects(header("{'descr': '<f4', 'shape': (2,), }", string.rep("\0", 8)), "missing key 'fortran_order'")
    rejects(header(ok:gsub("}", "'x': 1, }"), string.rep("\0", 8)), "unknown key 'x'")
    rejects(header(ok:gsub("}", "'shape': (2,), }"), string.rep("\0", 8)), "duplicate key 'shape'")
    rejects(header(ok .. " x", string.rep("\0", 8)), "trailing characters after the dict")
    rejects(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "\0\0\0\0"),
      "more than 8 dims")
    H.errors(function() flame.load_npy(dir .. "/missing.npy") end, "load_npy: " .. dir .. "/missing.npy: cannot open")
  end)
end)
