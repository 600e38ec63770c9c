-- F.pad's circular mode, composed here from narrow and cat (each with its own kernel and autograd); the
-- constant, reflect and replicate modes are the C function of src/lua/lnn_pool.c, called as they were.
local flame = ...
local F = flame.F

local pad_c = F.pad
local modes = {constant = true, reflect = true, replicate = true, circular = true}

-- pads = {before_last, after_last, before_second_last, ...} as PyTorch's; each amount in 0..size of its dim
-- (PyTorch's limit: the padding wraps around at most once).
local function describe(x) return x.dtype .. "[" .. table.concat({table.unpack(x.shape)}, ", ") .. "]" end

local function circular(x, pads, opts)
  if not flame.is_tensor(x) then error("pad: expected a tensor, got " .. type(x), 3) end
  if type(pads) ~= "table" then error("pad: pads must be a table of integers, got " .. type(pads), 3) end
  if opts.value ~= nil then error("pad: value is only for mode 'constant'", 3) end
  local n, orig = #pads, x
  if n % 2 ~= 0 then error("pad: circular padding needs an even number of values, got " .. n, 3) end
  if n // 2 > x:dim() then
    error(string.format("pad: %d padding values for a %d-D tensor %s", n, x:dim(), describe(x)), 3)
  end
  for i = 1, n do
    if math.type(pads[i]) ~= "integer" then error("pad: padding values must be integers, got " .. type(pads[i]), 3) end
  end
  for j = 1, n // 2 do
    local d = x:dim() - j + 1
    local before, after, size = pads[2 * j - 1], pads[2 * j], x:size(d)
    for _, p in ipairs({before, after}) do
      if p < 0 or p > size then
        error(string.format("pad: circular padding %d of dim %d of %s must be in 0..%d", p, d, describe(orig), size), 3)
      end
    end
    if before > 0 or after > 0 then
      local parts = {}
      if before > 0 then parts[#parts + 1] = x:narrow(d, size - before + 1, before) end
      parts[#parts + 1] = x
      if after > 0 then parts[#parts + 1] = x:narrow(d, 1, after) end
      x = flame.cat(parts, d)
    end
  end
  return x
end

-- pad(x, pads, {mode = "constant" | "reflect" | "replicate" | "circular", value = 0})
function F.pad(x, pads, opts, ...)
  if type(opts) == "table" and opts.mode ~= nil then
    if not modes[opts.mode] then
      error(string.format("pad: unknown mode '%s' (modes: constant, reflect, replicate, circular)",
        tostring(opts.mode)), 2)
    end
    if opts.mode == "circular" then
      for k in pairs(opts) do
        if k ~= "mode" and k ~= "value" then error(string.format("pad: unknown option '%s'", tostring(k)), 2) end
      end
      return circular(x, pads, opts)
    end
  end
  return pad_c(x, pads, opts, ...)
end

return flame
