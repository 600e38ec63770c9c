-- Lua-side conveniences over the C tensor methods: function forms of the
-- methods (flame.exp(x) as x:exp()) and a few compositions.
local flame = ...
local M = flame._tensor_methods

-- flame.exp(x), flame.matmul(a, b), ... for every method not already a function
for name, fn in pairs(M) do
  if flame[name] == nil and not name:match("_$") then flame[name] = fn end
end
flame.bmm, flame.mm, flame.matmul = M.bmm, M.mm, M.matmul
flame.maximum, flame.minimum = M.maximum, M.minimum

function flame.is_floating_point(t)
  local d = t.dtype
  return d == "f32" or d == "f64" or d == "f16" or d == "bf16"
end

return flame
