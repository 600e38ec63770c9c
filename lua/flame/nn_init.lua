-- flame.nn.init: PyTorch's initialisers (torch.nn.init), drawn from flame's seeded generator on the
-- tensor's own device. Each fills its tensor in place without recording and returns it.
-- Keyword arguments go in a trailing options table or positionally in PyTorch's order:
-- kaiming_uniform_(w, {a = math.sqrt(5)}) == kaiming_uniform_(w, math.sqrt(5)).
local flame = ...
flame.nn = flame.nn or {}
local init = {}
flame.nn.init = init

local function check_tensor(who, t)
  if not flame.is_tensor(t) then error(who .. ": expected a tensor, got " .. type(t), 3) end
end

-- Reads (t, opts) or (t, positional...) into a table of the given keys, in order.
local function args(who, keys, ...)
  local n = select("#", ...)
  local first = ...
  local o = {}
  if n >= 1 and type(first) == "table" then
    if n > 1 then error(who .. ": an options table must be the last argument", 3) end
    local known = {}
    for _, k in ipairs(keys) do known[k] = true end
    for k, v in pairs(first) do
      if not known[k] then error(string.format("%s: unknown option '%s' (known: %s)", who, tostring(k),
        table.concat(keys, ", ")), 3) end
      o[k] = v
    end
  else
    if n > #keys then error(string.format("%s: takes at most %d arguments after the tensor", who, #keys), 3) end
    for i = 1, n do o[keys[i]] = select(i, ...) end
  end
  return o
end

local function no_grad(f) return flame.no_grad(f) end

-- calculate_gain(nonlinearity, param): torch.nn.init.calculate_gain.
function init.calculate_gain(nl, param)
  local linear = {linear = true, conv1d = true, conv2d = true, conv3d = true, conv_transpose1d = true,
    conv_transpose2d = true, conv_transpose3d = true, sigmoid = true}
  if linear[nl] then return 1 end
  if nl == "tanh" then return 5 / 3 end
  if nl == "relu" then return math.sqrt(2) end
  if nl == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    if type(slope) ~= "number" then error("calculate_gain: negative_slope " .. tostring(slope) .. " not a valid number", 2) end
    return math.sqrt(2 / (1 + slope * slope))
  end
  if nl == "selu" then return 3 / 4 end
  error("calculate_gain: unsupported nonlinearity " .. tostring(nl), 2)
end

-- calculate_fan_in_and_fan_out(t): fan_in = size(2) * receptive field, fan_out = size(1) * receptive
-- field (receptive field: the product of dims 3..), as torch's _calculate_fan_in_and_fan_out.
function init.calculate_fan_in_and_fan_out(t)
  check_tensor("calculate_fan_in_and_fan_out", t)
  if t:dim() < 2 then
    error("calculate_fan_in_and_fan_out: fan in and fan out can not be computed for a tensor with fewer than 2 " ..
      "dims (got " .. t:dim() .. ")", 2)
  end
  local rf = 1
  for d = 3, t:dim() do rf = rf * t:size(d) end
  return t:size(2) * rf, t:size(1) * rf
end

local function fan(t, mode, who)
  local fi, fo = init.calculate_fan_in_and_fan_out(t)
  if mode == nil or mode == "fan_in" then return fi end
  if mode == "fan_out" then return fo end
  error(who .. ": mode " .. tostring(mode) .. " not supported, please use one of fan_in, fan_out", 3)
end

function init.uniform_(t, ...)
  check_tensor("uniform_", t)
  local o = args("uniform_", {"a", "b"}, ...)
  local a, b = o.a or 0, o.b or 1
  no_grad(function() t:uniform_(a, b) end)
  return t
end

function init.normal_(t, ...)
  check_tensor("normal_", t)
  local o = args("normal_", {"mean", "std"}, ...)
  local mean, std = o.mean or 0, o.std or 1
  no_grad(function() t:normal_(mean, std) end)
  return t
end

function init.constant_(t, val, ...)
  check_tensor("constant_", t)
  if type(val) ~= "number" and type(val) ~= "boolean" then error("constant_: expected a number value", 2) end
  if select("#", ...) > 0 then error("constant_: takes (tensor, value)", 2) end
  no_grad(function() t:fill_(val) end)
  return t
end
function init.zeros_(t) check_tensor("zeros_", t); no_grad(function() t:zero_() end); return t end
function init.ones_(t) check_tensor("ones_", t); no_grad(function() t:fill_(1) end); return t end

function init.xavier_uniform_(t, ...)
  check_tensor("xavier_uniform_", t)
  local o = args("xavier_uniform_", {"gain"}, ...)
  local fi, fo = init.calculate_fan_in_and_fan_out(t)
  local bound = math.sqrt(3) * (o.gain or 1) * math.sqrt(2 / (fi + fo))
  return init.uniform_(t, -bound, bound)
end

function init.xavier_normal_(t, ...)
  check_tensor("xavier_normal_", t)
  local o = args("xavier_normal_", {"gain"}, ...)
  local fi, fo = init.calculate_fan_in_and_fan_out(t)
  return init.normal_(t, 0, (o.gain or 1) * math.sqrt(2 / (fi + fo)))
end

local function kaiming_std(who, t, o)
  local f = fan(t, o.mode, who)
  local gain = init.calculate_gain(o.nonlinearity or "leaky_relu", o.a or 0)
  if f == 0 then error(who .. ": initializing a zero-element tensor is a no-op", 3) end
  return gain / math.sqrt(f)
end

function init.kaiming_uniform_(t, ...)
  check_tensor("kaiming_uniform_", t)
  local o = args("kaiming_uniform_", {"a", "mode", "nonlinearity"}, ...)
  local bound = math.sqrt(3) * kaiming_std("kaiming_uniform_", t, o)
  return init.uniform_(t, -bound, bound)
end

function init.kaiming_normal_(t, ...)
  check_tensor("kaiming_normal_", t)
  local o = args("kaiming_normal_", {"a", "mode", "nonlinearity"}, ...)
  return init.normal_(t, 0, kaiming_std("kaiming_normal_", t, o))
end

-- trunc_normal_(t, mean = 0, std = 1, a = -2, b = 2): normal(mean, std) restricted to [a, b], by
-- rejection (out-of-range draws are drawn again), which is the exact truncated distribution. PyTorch
-- uses the inverse CDF instead; the distribution is the same, the numbers differ anyway.
function init.trunc_normal_(t, ...)
  check_tensor("trunc_normal_", t)
  local o = args("trunc_normal_", {"mean", "std", "a", "b"}, ...)
  local mean, std, a, b = o.mean or 0, o.std or 1, o.a or -2, o.b or 2
  if not (a < b) then error(string.format("trunc_normal_: needs a < b, got a = %g, b = %g", a, b), 2) end
  if std <= 0 then error("trunc_normal_: std must be positive, got " .. std, 2) end
  no_grad(function()
    local work = flame.empty(t.shape, {dtype = t.dtype == "f64" and "f64" or "f32",
      device = t.device})
    work:normal_(mean, std)
    local mid, half = (a + b) / 2, (b - a) / 2
    for _ = 1, 200 do
      local bad = (work - mid):abs():gt(half)
      if not bad:any():item() then break end
      local fresh = flame.empty(t.shape, {dtype = work.dtype, device = t.device}):normal_(mean, std)
      work = flame.where(bad, fresh, work)
    end
    t:copy_(work:clamp(a, b)) -- the clamp only acts if 200 rounds were not enough (a far tail)
  end)
  return t
end

return flame
