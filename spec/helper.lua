-- Shared by every spec: the device under test (one environment switch), and
-- comparison and gradient-check helpers.
--   FLAME_DEVICE=cuda busted spec     runs the op specs on CUDA
local flame = require "flame"

local H = {}
H.device = os.getenv("FLAME_DEVICE") or "cpu"
H.flame = flame

-- t.shape is an immutable proxy whose sizes luassert's `same` cannot see (it
-- walks tables with next): compare shapes with their own ==, so that
-- assert.are.same({2, 3}, t.shape) fails on any other shape.
do
  local util = require "luassert.util"
  local deepcompare = util.deepcompare
  local function is_shape(x) return type(x) == "table" and getmetatable(x) == "flame.Shape" end
  function util.deepcompare(a, b, ...)
    if is_shape(a) or is_shape(b) then return a == b end
    return deepcompare(a, b, ...)
  end
end

-- A tensor on the device under test (data as nested tables, or a tensor).
function H.t(data, opts)
  opts = opts or {}
  opts.device = opts.device or H.device
  if flame.is_tensor(data) then return data:to({dtype = opts.dtype or data.dtype, device = opts.device}) end
  return flame.tensor(data, opts)
end

function H.opts(o)
  o = o or {}
  o.device = o.device or H.device
  return o
end

local function flat(x, out)
  out = out or {}
  if type(x) == "table" then
    for _, v in ipairs(x) do flat(v, out) end
  else
    out[#out + 1] = x
  end
  return out
end
H.flat = flat

local function values(x)
  if flame.is_tensor(x) then
    local t = x:cpu():totable()
    return flat(t), x.shape
  end
  return flat(x)
end

-- Asserts |a - b| <= atol + rtol |b| elementwise (NaN equals NaN), and equal shapes.
function H.close(a, b, tol, msg)
  tol = tol or {}
  local atol, rtol = tol.atol or 1e-5, tol.rtol or 1e-5
  local va, sa = values(a)
  local vb, sb = values(b)
  if sa and sb then
    assert(#sa == #sb, (msg or "") .. " rank differs: " .. #sa .. " vs " .. #sb)
    for i = 1, #sa do assert(sa[i] == sb[i], (msg or "") .. " shape differs at dim " .. i .. ": " .. sa[i] .. " vs " .. sb[i]) end
  end
  assert(#va == #vb, (msg or "") .. " element count differs: " .. #va .. " vs " .. #vb)
  for i = 1, #va do
    local x, y = va[i], vb[i]
    if type(x) == "boolean" or type(y) == "boolean" then
      assert(x == y, string.format("%s element %d: %s vs %s", msg or "", i, tostring(x), tostring(y)))
    elseif not (x ~= x and y ~= y) and not (x == y) then
      assert(math.abs(x - y) <= atol + rtol * math.abs(y),
        string.format("%s element %d: got %.10g, expected %.10g", msg or "", i, x, y))
    end
  end
  return true
end

-- Asserts that fn() raises an error whose message contains every given fragment.
-- On a GPU, kernels report bad indices asynchronously, at the next
-- synchronising call: the check synchronises after fn, so the error surfaces
-- here and never leaks into a later spec.
function H.errors(fn, ...)
  local ok, err = pcall(function()
    local r = fn()
    if H.device ~= "cpu" then flame.cuda.synchronize() end
    return r
  end)
  assert(not ok, "expected an error, but the call succeeded")
  err = tostring(err)
  for _, frag in ipairs({...}) do
    assert(err:find(frag, 1, true), "error message '" .. err .. "' lacks '" .. frag .. "'")
  end
  return err
end

-- Finite-difference gradient check in f64. fn takes the inputs (f64 tensors
-- with requires_grad) and returns a tensor; a fixed random projection makes
-- the output scalar so every output element is checked.
function H.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-4
  local xs = {}
  for i, x in ipairs(inputs) do
    xs[i] = x:to({dtype = "f64", device = H.device}):detach()
    xs[i].requires_grad = true
  end
  local out = fn(table.unpack(xs))
  flame.manual_seed(1234)
  local proj = flame.randn(out.shape, {dtype = "f64", device = H.device})
  local loss = (out * proj):sum()
  local grads = flame.autograd.grad(loss, xs)
  for i, x in ipairs(xs) do
    local g = grads[i] and grads[i]:cpu():totable() or nil
    local gflat = g and flat(type(g) == "table" and g or {g}) or nil
    local n = x:numel()
    local base = x:detach():cpu():reshape(-1)
    for k = 1, n do
      local function at(delta)
        local v = base:clone()
        v[k] = base[k]:item() + delta
        local args = {}
        for j, y in ipairs(xs) do args[j] = j == i and v:reshape(x.shape):to(H.device) or y:detach() end
        return flame.no_grad(function() return (fn(table.unpack(args)) * proj):sum():item() end)
      end
      local num = (at(eps) - at(-eps)) / (2 * eps)
      local ana = gflat and gflat[k] or 0
      if math.abs(num - ana) > atol + rtol * math.abs(num) then
        error(string.format("gradcheck: input %d element %d: analytic %.8g vs numeric %.8g", i, k, ana, num), 2)
      end
    end
  end
  return true
end

return H
