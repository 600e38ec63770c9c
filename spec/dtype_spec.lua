-- Dtypes: names, every cast pair among the seven dtypes against a plain-Lua
-- rounding reference, f16/bf16 round-to-nearest-even on hand-computed halfway
-- cases, overflow, NaN/Inf, subnormals, type promotion, and gradients through casts.
local H = require "helper"
local R = require "ref"
local flame = H.flame

local DTYPES = {"f32", "f64", "f16", "bf16", "i32", "i64", "bool"}
local FLOAT = {f32 = true, f64 = true, f16 = true, bf16 = true}

-- Round a double to a binary float with p significand bits, minimum normal
-- exponent emin and largest finite maxv, to nearest, ties to even.
local function round_float(v, p, emin, maxv)
  if v ~= v or v == 0 or v == math.huge or v == -math.huge then return v end
  local a = math.abs(v)
  local e = math.floor(math.log(a, 2))
  if 2.0 ^ e > a then e = e - 1 elseif 2.0 ^ (e + 1) <= a then e = e + 1 end
  if e < emin then e = emin end -- subnormal: the spacing stops shrinking
  local q = 2.0 ^ (e - p + 1)
  local r = a / q
  local f = math.floor(r)
  local d = r - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then f = f + 1 end
  local res = f * q
  if res > maxv then res = math.huge end
  return v < 0 and -res or res
end

local FMT = {
  f16 = {11, -14, 65504.0},
  bf16 = {8, -126, (2 - 2 ^ -7) * 2.0 ^ 127},
  f32 = {24, -126, (2 - 2 ^ -23) * 2.0 ^ 127},
}

-- The value v (a Lua number or boolean) takes in dtype dt.
local function cast(v, dt)
  if type(v) == "boolean" then v = v and 1 or 0 end
  if dt == "bool" then return v ~= 0 end
  if dt == "f64" then return v * 1.0 end
  if FMT[dt] then return round_float(v * 1.0, table.unpack(FMT[dt])) end
  local t = v >= 0 and math.floor(v) or math.ceil(v) -- truncation toward zero
  return math.tointeger(t)
end

local function same_value(got, want, msg)
  if type(want) == "number" and want ~= want then
    assert(got ~= got, msg .. ": expected NaN, got " .. tostring(got))
  elseif want == 0 and type(got) == "number" and math.type(want) == "float" then
    assert(got == 0 and 1 / got == 1 / want, msg .. ": expected " .. (1 / want > 0 and "+0" or "-0"))
  else
    assert(got == want, string.format("%s: got %s, expected %s", msg, tostring(got), tostring(want)))
    if math.type(want) then assert.are.equal(math.type(want), math.type(got), msg .. ": number subtype") end
  end
end

-- Values of a tensor as read back (flat), checked one by one against want;
-- float dtypes read back as Lua floats, integer dtypes as Lua integers.
local function check(t, want, msg)
  local got = R.of(t).data
  assert.are.equal(#want, #got, msg .. ": element count")
  for k = 1, #want do
    local w = want[k]
    if FLOAT[t.dtype] then w = w * 1.0 end
    same_value(got[k], w, msg .. " element " .. k)
  end
end

describe("dtype names", function()
  it("flame.float32 and friends hold the short names", function()
    assert.are.equal("f32", flame.float32)
    assert.are.equal("f64", flame.float64)
    assert.are.equal("f16", flame.float16)
    assert.are.equal("bf16", flame.bfloat16)
    assert.are.equal("i32", flame.int32)
    assert.are.equal("i64", flame.int64)
    assert.are.equal("bool", flame.bool)
    assert.are.equal("f64", flame.double)
    assert.are.equal("f16", flame.half)
    assert.are.equal("i64", flame.long)
  end)

  it("accepts the long names wherever a dtype is taken", function()
    local names = {float32 = "f32", float = "f32", float64 = "f64", double = "f64", float16 = "f16", half = "f16",
                   bfloat16 = "bf16", int32 = "i32", int = "i32", int64 = "i64", long = "i64", bool = "bool"}
    for long, short in pairs(names) do
      assert.are.equal(short, flame.zeros(2, H.opts({dtype = long})).dtype, long)
      assert.are.equal(short, H.t({1, 0}):to(long).dtype, long)
      assert.are.equal(short, H.t({1, 0}):to({dtype = long}).dtype, long)
    end
  end)

  it("refuses an unknown dtype, naming it", function()
    H.errors(function() return flame.zeros(2, H.opts({dtype = "float8"})) end, "float8")
    H.errors(function() return H.t({1}):to("f12") end, "f12")
  end)

  it("has a conversion method per dtype", function()
    local t = H.t({1.5, -2})
    assert.are.equal("f32", t:float().dtype)
    assert.are.equal("f64", t:double().dtype)
    assert.are.equal("f16", t:half().dtype)
    assert.are.equal("bf16", t:bfloat16().dtype)
    assert.are.equal("i64", t:long().dtype)
    assert.are.equal("i32", t:int().dtype)
    assert.are.equal(t, t:to("f32"), "a cast to the same dtype and device is the tensor itself")
  end)

  it("says the bytes of one element (PyTorch's element_size)", function()
    local want = {f32 = 4, f64 = 8, f16 = 2, bf16 = 2, i32 = 4, i64 = 8, bool = 1}
    for dt, n in pairs(want) do
      assert.are.equal(n, flame.zeros(2, H.opts({dtype = dt})):element_size(), dt)
      assert.are.equal(n, flame.zeros(0, H.opts({dtype = dt})):element_size(), dt .. " (empty)")
    end
  end)
end)

describe("casts", function()
  local SOURCE = {
    float = {0, 1, -2, 2.5, -3.75, 100.25, 0.5, 1e-3, -7.9, 3000, 0.1},
    int = {0, 1, -2, 7, 100, -100, 3000, 257},
    bool = {true, false, true},
  }
  local function source(dt)
    local src = FLOAT[dt] and SOURCE.float or dt == "bool" and SOURCE.bool or SOURCE.int
    local vals = {}
    for k, v in ipairs(src) do vals[k] = cast(v, dt) end
    return vals
  end

  for _, from in ipairs(DTYPES) do
    for _, to in ipairs(DTYPES) do
      it(from .. " -> " .. to, function()
        local vals = source(from)
        local t = H.t(vals, {dtype = from})
        check(t, vals, from .. " source") -- the source holds exactly the reference values
        local r = t:to(to)
        assert.are.equal(to, r.dtype)
        assert.are.same({#vals}, r.shape)
        local want = {}
        for k, v in ipairs(vals) do want[k] = cast(v, to) end
        check(r, want, from .. " -> " .. to)
      end)
    end
  end

  it("cast a non-contiguous source in its logical order", function()
    local t = H.t({{1.25, 2.5, -3.75}, {4, 5.5, -6}}):t()
    local want = {1.25, 4, 2.5, 5.5, -3.75, -6}
    check(t:double(), want, "f32 -> f64")
    check(t:half(), want, "f32 -> f16")
    check(t:long(), {1, 4, 2, 5, -3, -6}, "f32 -> i64")
    check(t:narrow(1, 2, 2):to("bool"), {true, true, true, true}, "f32 -> bool")
  end)

  it("float to bool is true for NaN and Inf, false only for zeros", function()
    check(H.t({0 / 0, math.huge, -0.0, 0.0, 1e-30}):to("bool"), {true, true, false, false, true}, "f32 -> bool")
  end)

  it("i64 holds integers beyond 2^53 exactly", function()
    local big = {(1 << 53) + 1, -(1 << 62) - 3, math.maxinteger, math.mininteger}
    local t = H.t(big)
    assert.are.equal("i64", t.dtype)
    check(t, big, "i64 readback")
    assert.are.equal(big[1], t[1]:item())
    check(t:narrow(1, 1, 2) + 1, {(1 << 53) + 2, -(1 << 62) - 2}, "i64 add")
    check(H.t({(1 << 40) + 7}):to("i32"):to("i64"), {7}, "i64 -> i32 keeps the low 32 bits")
  end)
end)

describe("f16 rounding", function()
  local function f16_of(vals, src)
    return R.of(H.t(vals, {dtype = src or "f32"}):half()).data
  end

  it("rounds exact halfway cases to even (hand-computed)", function()
    -- 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: the even neighbour is 1
    -- 1 + 3*2^-11 lies halfway between 1 + 2^-10 and 1 + 2^-9: the even one is 1 + 2^-9
    -- 2049 lies halfway between 2048 and 2050 (spacing 2): even is 2048; 2051 -> 2052
    -- 0.1 in f32 is 0x3DCCCCCD; the nearest f16 is 0x2E66 = 0.0999755859375
    local got = f16_of({1 + 2 ^ -11, 1 + 3 * 2 ^ -11, 2049, 2051, -(1 + 2 ^ -11), -2051, 0.1})
    local want = {1, 1 + 2 ^ -9, 2048, 2052, -1, -2052, 0.0999755859375}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "f16 element " .. k) end
  end)

  it("rounds just off halfway to the nearer neighbour", function()
    local got = f16_of({1 + 2 ^ -11 + 2 ^ -23, 1 + 2 ^ -11 - 2 ^ -23, 2049 + 2 ^ -12})
    local want = {1 + 2 ^ -10, 1, 2050}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "f16 element " .. k) end
  end)

  it("rounds once from f64 (no double rounding through f32)", function()
    -- 1 + 2^-11 + 2^-40 is above the halfway point, but rounds to exactly the
    -- halfway point in f32; correct rounding gives 1 + 2^-10, not 1
    local v = 1 + 2 ^ -11 + 2 ^ -40
    same_value(f16_of({v}, "f64")[1], 1 + 2 ^ -10, "f64 -> f16")
    same_value(R.of(H.t({v}, {dtype = "f16"})).data[1], 1 + 2 ^ -10, "tensor(f64 number, f16)")
    same_value(R.of(H.t({v}, {dtype = "f64"}):bfloat16()).data[1], 1.0, "f64 -> bf16 (far from halfway)")
    local w = 1 + 2 ^ -8 + 2 ^ -40 -- the same trap for bf16
    same_value(R.of(H.t({w}, {dtype = "f64"}):bfloat16()).data[1], 1 + 2 ^ -7, "f64 -> bf16")
  end)

  it("overflows to Inf from 65520 up and keeps 65504", function()
    -- 65504 is the largest f16; 65519.99 rounds down to it; 65520 is halfway to
    -- 65536 (which is past the range), and ties go to the even side: Inf
    local got = f16_of({65504, 65519, 65520, 1e5, -65520, -65504, 1e38})
    local want = {65504, 65504, math.huge, math.huge, -math.huge, -65504, math.huge}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "f16 element " .. k) end
  end)

  it("handles subnormals, including halfway cases, and signed zeros", function()
    -- smallest subnormal 2^-24; 2^-25 is halfway to 0 (even: 0); 3*2^-25 is halfway
    -- between 2^-24 and 2^-23 (even: 2^-23); 2^-14 - 2^-25 is halfway between the
    -- largest subnormal 1023*2^-24 (odd) and 2^-14 (even)
    local got = f16_of({2 ^ -24, 2 ^ -25, 3 * 2 ^ -25, 2 ^ -25 + 2 ^ -35, 2 ^ -14 - 2 ^ -25, 1023 * 2 ^ -24, 5 * 2 ^ -24,
                        -2 ^ -26, -0.0, 1e-10})
    local want = {2 ^ -24, 0.0, 2 ^ -23, 2 ^ -24, 2 ^ -14, 1023 * 2 ^ -24, 5 * 2 ^ -24, -0.0, -0.0, 0.0}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "f16 element " .. k) end
    -- and back to f32 exactly
    check(H.t({2 ^ -24, 1023 * 2 ^ -24, -2 ^ -20}, {dtype = "f16"}):float(), {2 ^ -24, 1023 * 2 ^ -24, -2 ^ -20}, "f16 -> f32")
  end)

  it("keeps NaN and signed infinities, from and to every float dtype", function()
    local special = {0 / 0, math.huge, -math.huge}
    for _, from in ipairs({"f32", "f64", "f16", "bf16"}) do
      for _, to in ipairs({"f32", "f64", "f16", "bf16"}) do
        check(H.t(special, {dtype = from}):to(to), special, from .. " -> " .. to)
      end
    end
  end)
end)

describe("bf16 rounding", function()
  local function bf16_of(vals, src)
    return R.of(H.t(vals, {dtype = src or "f32"}):bfloat16()).data
  end

  it("rounds exact halfway cases to even (hand-computed)", function()
    -- bf16 keeps 8 significand bits: spacing 2^-7 at 1, 2 at 256, 16 at 2048
    -- 1 + 2^-8 -> 1;  1 + 3*2^-8 -> 1 + 2^-6;  257 -> 256;  259 -> 260;  3000 -> 3008 (187.5 * 16)
    local got = bf16_of({1 + 2 ^ -8, 1 + 3 * 2 ^ -8, 257, 259, 3000, -257, 1 + 2 ^ -8 + 2 ^ -20})
    local want = {1, 1 + 2 ^ -6, 256, 260, 3008, -256, 1 + 2 ^ -7}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "bf16 element " .. k) end
  end)

  it("overflows past the largest bf16 and keeps the largest", function()
    local maxbf = (2 - 2 ^ -7) * 2.0 ^ 127
    local got = bf16_of({maxbf, -maxbf, (2 - 2 ^ -23) * 2.0 ^ 127, 1e39}, "f64")
    local want = {maxbf, -maxbf, math.huge, math.huge}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "bf16 element " .. k) end
    same_value(R.of(H.t({65504}, {dtype = "f16"}):bfloat16()).data[1], 65536.0, "f16 max -> bf16")
  end)

  it("handles subnormals and their halfway cases", function()
    -- the smallest bf16 subnormal is 2^-133; 2^-134 is halfway to 0 (even: 0);
    -- 3*2^-134 is halfway between 2^-133 (odd) and 2^-132 (even)
    local got = bf16_of({2 ^ -133, 2 ^ -134, 3 * 2 ^ -134, 2 ^ -134 + 2 ^ -140, -(2 ^ -133)})
    local want = {2 ^ -133, 0.0, 2 ^ -132, 2 ^ -133, -(2 ^ -133)}
    for k = 1, #want do same_value(got[k], want[k] * 1.0, "bf16 element " .. k) end
  end)
end)

describe("type promotion", function()
  local CAT = {bool = 0, i32 = 1, i64 = 1, f16 = 2, bf16 = 2, f32 = 2, f64 = 2}
  local function promote(a, b)
    if a == b then return a end
    if CAT[a] ~= CAT[b] then return CAT[a] > CAT[b] and a or b end
    if CAT[a] == 1 then return "i64" end
    if a == "f64" or b == "f64" then return "f64" end
    return "f32" -- f32 with f16/bf16, and f16 with bf16
  end

  for _, a in ipairs(DTYPES) do
    for _, b in ipairs(DTYPES) do
      it(a .. " with " .. b, function()
        local x, y = H.t({1, 0}, {dtype = a}), H.t({1, 1}, {dtype = b})
        local want = promote(a, b)
        assert.are.equal(want, flame.cat({x, y}).dtype, "cat")
        assert.are.equal(want, flame.where(H.t({true, false}), x, y).dtype, "where")
        if not (a == "bool" and b == "bool") then
          assert.are.equal(want, (x + y).dtype, "add")
          assert.are.equal(want, x:mul(y).dtype, "mul")
          assert.are.equal(want, x:maximum(y).dtype, "maximum")
          check(x + y, {cast(cast(1, a), want) + cast(cast(1, b), want), cast(0, want) + cast(cast(1, b), want)}, "add values")
        end
        assert.are.equal(FLOAT[want] and want or "f32", x:div(y).dtype, "div is true division")
        assert.are.equal("bool", x:lt(y).dtype, "comparison")
      end)
    end
  end

  it("a number does not widen a tensor of its category", function()
    assert.are.equal("f16", (H.t({1}, {dtype = "f16"}) * 2.5).dtype)
    assert.are.equal("bf16", (1 + H.t({1}, {dtype = "bf16"})).dtype)
    assert.are.equal("f32", (H.t({1.5}) - 2).dtype)
    assert.are.equal("i32", (H.t({1}, {dtype = "i32"}) + 3).dtype)
    assert.are.equal("i32", (2 * H.t({1}, {dtype = "i32"})).dtype)
  end)

  it("a float number makes an integer or bool tensor float; an integer makes bool i64", function()
    local i = H.t({1, 2}, {dtype = "i32"}) + 0.5
    assert.are.equal("f32", i.dtype)
    H.close(i, {1.5, 2.5})
    local b = H.t({true, false}) + 1
    assert.are.equal("i64", b.dtype)
    assert.are.same({2, 1}, b:cpu():totable())
    assert.are.equal("f32", (H.t({1, 2}) / 2).dtype)
    H.close(H.t({1, 2}) / 2, {0.5, 1})
    -- a Lua float is a float even when integral, as a Python float is in torch
    assert.are.equal("f32", (H.t({1, 2}) * 2.0).dtype)
    assert.are.equal("f32", (3.0 - H.t({1, 2})).dtype)
    assert.are.equal("i64", (H.t({1, 2}) * 2).dtype)
  end)

  it("float-only unary ops compute integers in f32", function()
    local e = H.t({0, 1}):exp()
    assert.are.equal("f32", e.dtype)
    H.close(e, {1, math.exp(1)})
    assert.are.equal("f32", H.t({4}, {dtype = "i32"}):sqrt().dtype)
    assert.are.equal("i64", H.t({-4}):abs().dtype)
    assert.are.equal("i64", H.t({-4}):neg().dtype)
  end)
end)

describe("gradients through casts", function()
  -- inputs on a 1/16 grid with eps 1/16: x +- eps is exact in f16, bf16 and f32,
  -- so the central differences are exact for these linear maps; the analytic
  -- gradient passes through the narrow dtype on its way back, so it carries
  -- that dtype's rounding (relative 2^-11 for f16, 2^-8 for bf16)
  local x = {{0.5, -1.25, 2}, {0.75, -0.0625, 1.5}}
  local tol = {f32 = 1e-6, f16 = 1e-3, bf16 = 8e-3}

  for _, dt in ipairs({"f32", "f16", "bf16"}) do
    it("f64 -> " .. dt .. " -> f64", function()
      local o = {eps = 1 / 16, atol = 1e-9, rtol = tol[dt]}
      H.gradcheck(function(a) return a:to(dt):double() * 3 end, {H.t(x, {dtype = "f64"})}, o)
      H.gradcheck(function(a) return (a:to(dt) * 2):to("f64") end, {H.t(x, {dtype = "f64"})}, o)
    end)
  end

  it("the gradient comes back in the source dtype", function()
    local a = H.t(x, {dtype = "f64", requires_grad = true})
    local y = a:float():sum()
    assert.are.equal("f32", y.dtype)
    y:backward()
    assert.are.equal("f64", a.grad.dtype)
    H.close(a.grad, {{1, 1, 1}, {1, 1, 1}})
    local h = H.t(x, {requires_grad = true})
    h:half():mul(H.t({2}, {dtype = "f16"})):sum():backward()
    assert.are.equal("f32", h.grad.dtype)
    H.close(h.grad, {{2, 2, 2}, {2, 2, 2}})
  end)

  it("a cast to an integer dtype ends the graph", function()
    local a = H.t(x, {requires_grad = true})
    assert.is_false(a:long().requires_grad)
    assert.is_false(a:to("bool").requires_grad)
  end)
end)
