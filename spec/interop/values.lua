-- The Lua twin of spec/interop/values.py (change both together): for every flame dtype, n values (k - n/2) / 8 or
-- integer formulas, then the dtype's special values, reshaped to [rows, -1]. NaN is 0/0 (its sign differs from
-- Python's nan; the checks compare NaN as "is NaN").
local flame = require "flame"
local nan, inf = 0 / 0, math.huge
local SPECIALS = {
  f32 = {nan, inf, -inf, -0.0, 3.4028234663852886e38, 1e-45, -2.5},
  f64 = {nan, inf, -inf, -0.0, 1e-310, 1.7976931348623157e308},
  f16 = {nan, inf, -inf, -0.0, 65504.0, 5.960464477539063e-08, 6.103515625e-05, -1.5},
  bf16 = {nan, inf, -inf, -0.0, 3.3895313892515355e38, 9.183549615799121e-41},
  i32 = {-2147483648, 2147483647, 0, -1},
  i64 = {math.mininteger, math.maxinteger, 0, -1, 4611686018427387905},
  bool = {true, false},
}
local N, ROWS = 58, 4

local function values(name, device)
  local v = {}
  for k = 0, N - 1 do
    if name == "bool" then v[#v + 1] = k % 3 == 0
    elseif name == "i32" then v[#v + 1] = (k - N // 2) * 1000003
    elseif name == "i64" then v[#v + 1] = (k - N // 2) * 123456789012345
    else v[#v + 1] = (k - N / 2) / 8 end
  end
  for _, s in ipairs(SPECIALS[name]) do v[#v + 1] = s end
  local rows = #v % ROWS == 0 and ROWS or (#v % 2 == 0 and 2 or 1)
  return flame.tensor(v, {dtype = name, device = device}):reshape(rows, -1)
end

return function(device)
  local out = {}
  for name in pairs(SPECIALS) do out["v_" .. name] = values(name, device) end
  return out
end
