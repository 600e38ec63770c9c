-- flame.nn.functional (also flame.F): the functional namespace. Other pieces
-- add to it; this file creates it if nobody did yet.
local flame = ...
flame.nn = flame.nn or {}
local F = flame.nn.functional or {}
flame.nn.functional = F
flame.F = F

-- one_hot(ids, num_classes?): i64 0/1 with a trailing dim of num_classes (default: the
-- largest id). ids are 1-based class indices, so id c sets position c.
function F.one_hot(ids, num_classes, ...)
  if select("#", ...) > 0 and (...) ~= nil then
    error(string.format("one_hot: unexpected argument #3 (a %s that nothing reads)", type((...))), 2)
  end
  if not flame.is_tensor(ids) or (ids.dtype ~= "i64" and ids.dtype ~= "i32") then
    error("one_hot: ids must be an i64 or i32 tensor, got " ..
      (flame.is_tensor(ids) and (ids.dtype .. " tensor") or type(ids)), 2)
  end
  local n = ids:numel()
  local lo, hi = 1, 0
  if n > 0 then lo, hi = ids:min():item(), ids:max():item() end
  num_classes = num_classes or -1
  if math.type(num_classes) ~= "integer" then error("one_hot: num_classes must be an integer", 2) end
  if num_classes == -1 then
    if n == 0 then error("one_hot: cannot infer num_classes from empty ids; pass it", 2) end
    num_classes = hi
  end
  if num_classes < 0 then error("one_hot: num_classes must be non-negative, got " .. num_classes, 2) end
  if n > 0 and (lo < 1 or hi > num_classes) then
    local bad = lo < 1 and lo or hi
    error(string.format("one_hot: class index %d out of range 1..%d (ids are 1-based)", bad, num_classes), 2)
  end
  local classes = flame.arange(1, num_classes + 1, {dtype = ids.dtype, device = ids.device})
  return ids:unsqueeze(-1):eq(classes):long()
end

return flame
