-- flame.autocast: mixed precision for a function or a scope (the per-thread mode and the op lists are in
-- src/core/autocast.c). matmul, linear, the convolutions and attention run in the autocast dtype; softmax,
-- log_softmax, the norms, cross_entropy, logsumexp and the losses in f32; parameters stay as they are.
local flame = ...
local raw_set = flame._set_autocast

local function set(dtype) -- the previous dtype; a bad name is the caller's error
  local ok, prev = pcall(raw_set, dtype)
  if not ok then error(prev, 3) end
  return prev
end

-- flame.autocast(dtype, fn, ...) -> fn(...)'s results, run with autocast in dtype ("bf16" or "f16"; false or
-- "off" turns it off inside). flame.autocast(dtype) without fn sets it for a scope and returns a guard to close:
--   local ac <close> = flame.autocast("bf16")
function flame.autocast(dtype, fn, ...)
  if dtype == false or dtype == "off" then dtype = nil
  elseif type(dtype) ~= "string" then
    error("autocast: dtype must be \"bf16\" or \"f16\" (or false to turn it off), got " .. type(dtype), 2)
  end
  if fn == nil then
    local prev = set(dtype)
    return setmetatable({}, {__name = "flame.autocast", __close = function() raw_set(prev) end})
  end
  local mt = type(fn) == "table" and getmetatable(fn)
  if type(fn) ~= "function" and not (mt and mt.__call) then
    error("autocast: argument 2 must be a function or a callable (a module), got " .. type(fn), 2)
  end
  local prev = set(dtype)
  local res = table.pack(pcall(fn, ...))
  raw_set(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end
