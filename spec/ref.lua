-- Plain-Lua f64 references for the op specs. An array is {shape = {...}, data = {...}}
-- (row-major, 1-based); nothing here calls flame ops, so the specs never compare
-- an op with itself. R.of(t) reads a tensor's values (through :cpu():totable()).
local R = {}

function R.numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

local function shape_of(x)
  local s = {}
  while type(x) == "table" do
    s[#s + 1] = #x
    x = x[1]
  end
  return s
end

local function flatten(x, out)
  if type(x) ~= "table" then
    out[#out + 1] = x
  else
    for _, v in ipairs(x) do flatten(v, out) end
  end
  return out
end

function R.new(shape, data) return {shape = shape, data = data or {}} end

-- From a nested table (or a number: 0-dim).
function R.from(nested) return R.new(shape_of(nested), flatten(nested, {})) end

-- From a tensor (any device, any dtype; bools stay booleans).
function R.of(t)
  local v = t:cpu():totable()
  return R.new(t.shape, type(v) == "table" and flatten(v, {}) or {v})
end

-- To a nested table (a number for 0-dim), as H.t and H.close accept.
function R.nest(a)
  if #a.shape == 0 then return a.data[1] end
  local pos = 0
  local function build(d)
    local out = {}
    for i = 1, a.shape[d] do
      if d == #a.shape then
        pos = pos + 1
        out[i] = a.data[pos]
      else
        out[i] = build(d + 1)
      end
    end
    return out
  end
  return build(1)
end

-- Row-major coordinates (1-based) of flat index k (1-based), and back.
function R.coords(shape, k)
  local c, r = {}, k - 1
  for d = #shape, 1, -1 do
    c[d] = r % shape[d] + 1
    r = r // shape[d]
  end
  return c
end
function R.flat(shape, c)
  local k = 0
  for d = 1, #shape do k = k * shape[d] + (c[d] - 1) end
  return k + 1
end

-- An array of the given shape with f(coords) at each position.
function R.fill(shape, f)
  local a = R.new(shape)
  for k = 1, R.numel(shape) do a.data[k] = f(R.coords(shape, k), k) end
  return a
end

function R.at(a, c) return a.data[R.flat(a.shape, c)] end

function R.map(a, f)
  local r = R.new(a.shape)
  for k, v in ipairs(a.data) do r.data[k] = f(v) end
  return r
end

-- NumPy broadcasting of two shapes.
function R.bshape(sa, sb)
  local n = math.max(#sa, #sb)
  local out = {}
  for i = 1, n do
    local da, db = sa[i - (n - #sa)] or 1, sb[i - (n - #sb)] or 1
    assert(da == db or da == 1 or db == 1, "reference: shapes do not broadcast")
    out[i] = da == 1 and db or da
  end
  return out
end

-- Value of a at the broadcast coordinates c of a larger shape.
local function bat(a, c)
  local n, m = #c, #a.shape
  local cc = {}
  for d = 1, m do
    local v = c[d + n - m]
    cc[d] = a.shape[d] == 1 and 1 or v
  end
  return R.at(a, cc)
end
R.bat = bat

local function lift(x) return type(x) == "table" and x or R.new({}, {x}) end

-- Elementwise f over broadcast operands (arrays or numbers).
function R.zip(f, ...)
  local args = {...}
  for i = 1, #args do args[i] = lift(args[i]) end
  local shape = {}
  for _, a in ipairs(args) do shape = R.bshape(shape, a.shape) end
  return R.fill(shape, function(c)
    local vals = {}
    for i, a in ipairs(args) do vals[i] = bat(a, c) end
    return f(table.unpack(vals, 1, #args))
  end)
end

-- Normalises dims (a number, a list, nil = all; 1-based, negative from the end) to a set.
function R.dimset(ndim, dims)
  local set = {}
  if dims == nil then
    for d = 1, ndim do set[d] = true end
  else
    if type(dims) == "number" then dims = {dims} end
    for _, d in ipairs(dims) do set[d < 0 and d + ndim + 1 or d] = true end
  end
  return set
end

-- Reduce over dims: f receives the list of values (row-major over the reduced
-- dims) and returns the result.
function R.reduce(a, dims, f, keepdim)
  local set = R.dimset(#a.shape, dims)
  local oshape, kshape = {}, {}
  for d, s in ipairs(a.shape) do
    kshape[d] = set[d] and 1 or s
    if not set[d] then oshape[#oshape + 1] = s elseif keepdim then oshape[#oshape + 1] = 1 end
  end
  local groups = {}
  for k = 1, R.numel(kshape) do groups[k] = {} end
  for k, v in ipairs(a.data) do
    local c = R.coords(a.shape, k)
    for d in pairs(set) do c[d] = 1 end
    local g = groups[R.flat(kshape, c)]
    g[#g + 1] = v
  end
  local r = R.new(oshape)
  for k = 1, #groups do r.data[k] = f(groups[k]) end
  return r
end

function R.sum(v) local s = 0 for _, x in ipairs(v) do s = s + x end return s end
function R.mean(v) return R.sum(v) / #v end
function R.prod(v) local p = 1 for _, x in ipairs(v) do p = p * x end return p end
function R.var(v, correction)
  correction = correction or 1
  local m, s = R.mean(v), 0
  for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
  return s / math.max(#v - correction, 0) -- no degrees of freedom: Inf (NaN for 0/0), as torch
end
-- Position (1-based) of the first maximum / minimum.
function R.argmax(v) local b = 1 for i = 2, #v do if v[i] > v[b] then b = i end end return b end
function R.argmin(v) local b = 1 for i = 2, #v do if v[i] < v[b] then b = i end end return b end

-- Axis permutation: result dim i is input dim perm[i].
function R.permute(a, perm)
  local shape = {}
  for i, p in ipairs(perm) do shape[i] = a.shape[p] end
  return R.fill(shape, function(c)
    local src = {}
    for i, p in ipairs(perm) do src[p] = c[i] end
    return R.at(a, src)
  end)
end

-- 2-D matrix product.
function R.mm(a, b)
  local M, K, N = a.shape[1], a.shape[2], b.shape[2]
  assert(b.shape[1] == K)
  return R.fill({M, N}, function(c)
    local s = 0
    for k = 1, K do s = s + R.at(a, {c[1], k}) * R.at(b, {k, c[2]}) end
    return s
  end)
end

-- Deterministic pseudo-random numbers in [lo, hi) on a grid of 1/256 (exact in
-- f32), as a nested table: inputs independent of flame's own generator.
function R.rand(shape, lo, hi, seed)
  lo, hi = lo or -1, hi or 1
  local x = seed or 1
  local a = R.fill(shape, function()
    x = (1103515245 * x + 12345) % 2147483648
    local u = (x >> 8) % 256 / 256
    return lo + (hi - lo) * u
  end)
  return R.nest(a)
end

-- Like R.rand, but all values distinct (a shuffled grid), so max/min and
-- sorting have no ties: values lo + (k + 0.5) * step.
function R.distinct(shape, lo, hi, seed)
  lo, hi = lo or -1, hi or 1
  local n = R.numel(shape)
  local vals = {}
  for k = 1, n do vals[k] = lo + (hi - lo) * (k - 0.5) / n end
  local x = seed or 7
  for k = n, 2, -1 do
    x = (1103515245 * x + 12345) % 2147483648
    local j = (x >> 8) % k + 1
    vals[k], vals[j] = vals[j], vals[k]
  end
  return R.nest(R.new(shape, vals))
end

-- erf: Taylor series for |x| <= 3, the erfc continued fraction beyond (~1e-13).
function R.erf(x)
  local ax = math.abs(x)
  if ax > 3 then
    local f = ax
    for k = 60, 1, -1 do f = ax + (k / 2) / f end
    local erfc = math.exp(-ax * ax) / math.sqrt(math.pi) / f
    return x > 0 and 1 - erfc or erfc - 1
  end
  local s, term, n = 0, x, 0
  while math.abs(term) > 1e-17 or n < 3 do
    s = s + term / (2 * n + 1)
    n = n + 1
    term = -term * x * x / n
  end
  return 2 / math.sqrt(math.pi) * s
end

-- ---- Philox4x32-10 and the dropout keep rules written out in Lua (src/core/philox.h, src/core/dropout_keep.h) ----
local M32 = 0xffffffff
-- The four words of block `counter` of the stream of `seed`.
function R.philox(seed, counter)
  local c0, c1, c2, c3 = counter & M32, (counter >> 32) & M32, 0, 0
  local k0, k1 = seed & M32, (seed >> 32) & M32
  for _ = 1, 10 do
    local p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2 -- < 2^64: wraps as unsigned, read back with >>
    local n0 = ((p1 >> 32) ~ c1 ~ k0) & M32
    local n2 = ((p0 >> 32) ~ c3 ~ k1) & M32
    c1, c3, c0, c2 = p1 & M32, p0 & M32, n0, n2
    k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
  end
  return {c0, c1, c2, c3}
end

-- F.dropout's word rule: element i (0-based) keeps iff the top 24 bits of word i % 4 of block offset + i / 4
-- are >= ceil(p 2^24).
function R.dropout_keep_word(seed, offset, i, p)
  local w = R.philox(seed, offset + i // 4)[i % 4 + 1]
  return (w >> 8) >= math.ceil(p * 16777216)
end

-- The attention byte rule's t: round((1 - p) 256) in [0, 256].
function R.dropout_byte_threshold(p)
  return math.max(0, math.min(256, math.floor((1 - p) * 256 + 0.5)))
end

-- The attention byte rule: element i (0-based) keeps iff byte i % 16 of block offset + i / 16 (word (i % 16) / 4,
-- byte i % 4, little-endian) is < t.
function R.dropout_keep_byte(seed, offset, i, p)
  local j = i % 16
  local w = R.philox(seed, offset + i // 16)[j // 4 + 1]
  return ((w >> (8 * (j % 4))) & 0xff) < R.dropout_byte_threshold(p)
end

return R
