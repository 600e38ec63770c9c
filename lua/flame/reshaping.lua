-- tile and roll: compositions of views, expand and cat, so autograd and every
-- device come for free. Dims are 1-based; negative dims count from the end.
local flame = ...
local M = flame._tensor_methods

local function int_list(op, what, first, ...)
  local list = type(first) == "table" and first or {first, ...}
  for i, v in ipairs(list) do
    if math.type(v) ~= "integer" then
      error(string.format("%s: %s must be integers, got %s at position %d", op, what, type(v), i), 3)
    end
  end
  return list
end

local function shape_of(t)
  local s = {}
  for d = 1, t:dim() do s[d] = t:size(d) end
  return s
end

-- tile(reps...) / tile({reps}): x repeated reps[i] times along dim i (torch.Tensor.repeat;
-- `repeat` is a Lua keyword). Fewer reps than dims repeat the trailing dims; more reps add leading dims.
function M.tile(x, ...)
  local reps = int_list("tile", "repetitions", ...)
  for i, r in ipairs(reps) do
    if r < 0 then error(string.format("tile: repetition %d is negative (%d)", i, r), 2) end
  end
  while x:dim() < #reps do x = x:unsqueeze(1) end
  local off = x:dim() - #reps -- reps align with the trailing dims
  for i, r in ipairs(reps) do
    if r ~= 1 then
      local d = off + i
      local s = shape_of(x)
      local e = {} -- s with r inserted before dim d
      for k = 1, #s do
        if k == d then e[#e + 1] = r end
        e[#e + 1] = s[k]
      end
      s[d] = r * s[d]
      x = x:unsqueeze(d):expand(e):reshape(s) -- copies r blocks of dim d, in order
    end
  end
  return x
end

-- roll(shifts, dims?): elements shifted along each dim, wrapping around; without dims
-- over the flattened tensor, then restored to its shape (as torch.roll).
function M.roll(x, shifts, dims, ...)
  if select("#", ...) > 0 and (...) ~= nil then
    error(string.format("roll: unexpected argument #3 (a %s that nothing reads)", type((...))), 2)
  end
  if dims == nil then
    if type(shifts) == "table" and #shifts ~= 1 then
      error(string.format("roll: without dims, expected one shift, got %d", #shifts), 2)
    end
    local s = shape_of(x)
    return M.roll(x:reshape(-1), shifts, 1):reshape(s)
  end
  shifts = int_list("roll", "shifts", shifts)
  dims = int_list("roll", "dims", dims)
  if #shifts ~= #dims then
    error(string.format("roll: %d shifts but %d dims", #shifts, #dims), 2)
  end
  for i, d in ipairs(dims) do
    local n = x:size(d)
    local s = n > 0 and shifts[i] % n or 0
    if s ~= 0 then x = flame.cat({x:narrow(d, n - s + 1, s), x:narrow(d, 1, n - s)}, d) end
  end
  return x
end

return flame
