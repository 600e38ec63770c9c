-- flame.help(x): the signature and description of a flame function, method, property, class or module, from the
-- one table of help lines in help_docs.lua. The REPL's help(x) and ?x call it; tab completion calls
-- flame._complete_keys for values whose fields a table walk cannot list (tensors, module instances).
-- flame._help is the machinery the specs check the table with (spec/help_spec.lua).
local flame = ...
local H = {}
flame._help = H

-- Constructors of objects whose classes are not reachable from the flame table, by the prefix their methods
-- are documented under. The specs build one of each to check that every method has a line.
H.INSTANCES = {
  Optimizer = function() return flame.optim.SGD({flame.zeros(1, {requires_grad = true})}, {lr = 0.1}) end,
  EMA = function() return flame.optim.EMA({flame.zeros(1, {requires_grad = true})}) end,
  GradScaler = function() return flame.optim.GradScaler() end,
  LRScheduler = function()
    local opt = flame.optim.SGD({flame.zeros(1, {requires_grad = true})}, {lr = 0.1})
    return flame.optim.lr_scheduler.StepLR(opt, {step_size = 1})
  end,
  Scheduler = function() return flame.schedules.DDPMScheduler({}) end,
  TensorDataset = function() return flame.data.TensorDataset(flame.zeros(2)) end,
  DataLoader = function() return flame.data.DataLoader(flame.data.TensorDataset(flame.zeros(2))) end,
  Progress = function() return flame.progress(1, {file = io.tmpfile()}) end,
}
-- Instances of other constructors that share a prefix (their methods are checked as well).
H.MORE_INSTANCES = {
  Optimizer = function() return flame.optim.AdamW({flame.zeros(1, {requires_grad = true})}) end,
  LRScheduler = function()
    local opt = flame.optim.SGD({flame.zeros(1, {requires_grad = true})}, {lr = 0.1})
    return flame.optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps = 1, total_steps = 2})
  end,
  Scheduler = function() return flame.schedules.FlowMatchEulerDiscreteScheduler({}) end,
}

-- name -> {sig = ..., desc = ...}, and the names in file order.
local docs, order
function H.docs()
  if docs then return docs, order end
  docs, order = {}, {}
  for line in flame._help_docs:gmatch("[^\n]+") do
    local sig, desc = line:match("^(.-) %-%- (.*)$")
    local name = sig and sig:match("^[%w_.:]+")
    if not name then error("help_docs: malformed line: " .. line) end
    if docs[name] then error("help_docs: two lines for " .. name) end
    docs[name] = {sig = sig, desc = desc}
    order[#order + 1] = name
  end
  return docs, order
end

-- A table that is a class (methods documented with ':'): it has an __index/__name of its own or is callable.
local function is_class(t)
  if rawget(t, "__index") ~= nil or rawget(t, "__name") ~= nil then return true end
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
H.is_class = is_class

-- Calls fn(name, value, parent_name) for every public field reachable from flame: modules with '.',
-- class methods with ':', tensor methods as Tensor:name. A table is visited once, under its first name in
-- sorted order (so flame.F, not flame.nn.functional).
function H.walk(fn)
  local seen = {}
  local function visit(prefix, t, class)
    seen[t] = true
    local keys = {}
    for k in pairs(t) do
      if type(k) == "string" and not k:match("^_") then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = rawget(t, k)
      local name = prefix .. (class and ":" or ".") .. k
      if not (type(v) == "table" and seen[v]) then fn(name, v, prefix) end
      if type(v) == "table" and not seen[v] and not class then visit(name, v, is_class(v)) end
    end
  end
  visit("flame", flame, false)
  for k, v in pairs(flame._tensor_methods) do
    if type(k) == "string" and not k:match("^_") then fn("Tensor:" .. k, v, "Tensor") end
  end
end

-- value -> list of names; class table -> its name.
local names_of
local function index()
  if names_of then return names_of end
  names_of = {}
  H.walk(function(name, v)
    if type(v) == "function" or type(v) == "table" then
      local l = names_of[v] or {}
      names_of[v] = l
      l[#l + 1] = name
    end
  end)
  return names_of
end

-- The documented entry for a name: its own line, a class ancestor's line for an inherited method, the base
-- method's line for an in-place X_.
local function entry(name)
  local d = H.docs()
  if d[name] then return d[name], name end
  local cls, m = name:match("^(.*):([%w_]+)$")
  if not cls then return nil end
  if m:match("_$") and d[cls .. ":" .. m:sub(1, -2)] then
    local base = d[cls .. ":" .. m:sub(1, -2)]
    return {sig = name .. base.sig:match("%b()"), desc = "in-place form of " .. cls .. ":" .. m:sub(1, -2)}, name
  end
  -- inherited: look the method up in the parent classes
  local ok, c = pcall(function()
    local v = flame
    for part in cls:gmatch("[^.]+") do if part ~= "flame" then v = v[part] end end
    return v
  end)
  local depth = 0
  while ok and type(c) == "table" and depth < 16 do
    local mt = getmetatable(c)
    local parent = type(mt) == "table" and rawget(mt, "__index")
    if type(parent) ~= "table" then break end
    for _, pname in ipairs(index()[parent] or {}) do
      local pd = d[pname .. ":" .. m]
      if pd then return pd, pname .. ":" .. m end
    end
    c, depth = parent, depth + 1
  end
  return nil
end
H.entry = entry

-- The class tables of the INSTANCES objects, each with its prefix: the instance's metatable and the tables its
-- __index chain goes through, up to one reachable from flame (a user's subclass of flame.data.Dataset is no
-- TensorDataset).
local class_prefix
local function class_chain(obj, fn)
  local c, depth = getmetatable(obj), 0
  while type(c) == "table" and depth < 16 and not index()[c] do
    if fn(c) then return end
    local mt = getmetatable(c)
    c, depth = type(mt) == "table" and rawget(mt, "__index") or nil, depth + 1
  end
end
local function classes()
  if class_prefix then return class_prefix end
  class_prefix = {}
  for _, makers in ipairs({H.INSTANCES, H.MORE_INSTANCES}) do
    for prefix, make in pairs(makers) do
      local ok, obj = pcall(make)
      if ok then class_chain(obj, function(c) class_prefix[c] = class_prefix[c] or prefix end) end
    end
  end
  return class_prefix
end

-- The documented name of a value: a flame function, table or class, a tensor, a module instance, an instance of
-- one of the INSTANCES classes, or one of their methods.
local function name_of_value(v)
  if flame.is_tensor(v) then return "Tensor" end
  for _, name in ipairs(index()[v] or {}) do
    if entry(name) then return name end
  end
  if type(v) == "table" then
    if flame.nn.is_module(v) then
      local cls = getmetatable(v)
      while type(cls) == "table" do
        for _, name in ipairs(index()[cls] or {}) do return name end
        cls = rawget(cls, "__super")
      end
    end
    local found
    class_chain(v, function(c)
      found = classes()[c]
      return found
    end)
    return found
  end
  if type(v) == "function" then
    for c, prefix in pairs(classes()) do
      for k, f in pairs(c) do
        if f == v and entry(prefix .. ":" .. k) then return prefix .. ":" .. k end
      end
    end
  end
  return nil
end
H.name_of_value = name_of_value

-- The documented members of a module or class, for help on it.
local function members(name)
  local _, ord = H.docs()
  local out = {}
  for _, n in ipairs(ord) do
    local rest = n:sub(#name + 2)
    if n:sub(1, #name) == name and (n:sub(#name + 1, #name + 1) == "." or n:sub(#name + 1, #name + 1) == ":")
      and not rest:find("[.:]") then
      out[#out + 1] = n:sub(#name + 1, #name + 1) == ":" and rest .. "()" or rest
    end
  end
  return out
end

local function wrap_words(words, width, indent)
  local lines, cur = {}, indent
  for _, w in ipairs(words) do
    if #cur > #indent and #cur + 1 + #w > width then
      lines[#lines + 1] = cur
      cur = indent
    end
    cur = cur .. (#cur > #indent and " " or "") .. w
  end
  if #cur > #indent then lines[#lines + 1] = cur end
  return table.concat(lines, "\n")
end

-- The help text of a name (nil when it has none).
function H.text(name)
  local e, ename = entry(name)
  if not e then return nil end
  local text = e.sig .. "\n  " .. e.desc
  local m = members(ename)
  if #m > 0 then text = text .. "\n  members:\n" .. wrap_words(m, 78, "    ") end
  return text
end

-- Resolves what the user asked about: a value, a documented name, or an expression ("t:add", "m.fc").
local function resolve(x)
  if type(x) ~= "string" then return name_of_value(x) end
  if entry(x) then return x end
  local obj, sep, field = x:match("^(.-)([.:])([%w_]+)$")
  if obj then  -- a tensor's property or method: t.shape, t:add
    local chunk = load("return " .. obj, "=help", "t")
    local ok, v = pcall(chunk or error)
    if ok and flame.is_tensor(v) then
      for _, name in ipairs({"Tensor" .. sep .. field, "Tensor." .. field, "Tensor:" .. field}) do
        if entry(name) then return name end
      end
    end
  end
  local chunk = load("return " .. (obj and (obj .. "[" .. string.format("%q", field) .. "]") or x), "=help", "t")
  if chunk then
    local ok, v = pcall(chunk)
    if ok and v ~= nil then return name_of_value(v) end
  end
  return nil
end

-- Names ending in .x or :x, for help("conv2d").
local function suffix_matches(x)
  local _, ord = H.docs()
  local out = {}
  for _, n in ipairs(ord) do
    if n:sub(-#x - 1) == "." .. x or n:sub(-#x - 1) == ":" .. x then out[#out + 1] = n end
  end
  return out
end

local INTRO = [[help(x) or ?x: the signature and description of x (a function, method, tensor, module or name).
Modules: flame, flame.F, flame.nn, flame.nn.init, flame.optim, flame.optim.lr_scheduler, flame.schedules,
flame.data, flame.image, flame.utils, flame.cuda, flame.autograd; Tensor (t.shape, t:add(...)).
REPL: a trailing ';' prints nothing, %time toggles timing (%time expr times one), Tab completes.]]

-- Returns the help text (the REPL prints it).
function H.describe(x, ...)
  if select("#", ...) == 0 and x == nil then return INTRO end
  local name = resolve(x)
  local text = name and H.text(name)
  if text then return text end
  if type(x) == "string" then
    local m = suffix_matches(x)
    if #m > 0 then
      local parts = {}
      for _, n in ipairs(m) do parts[#parts + 1] = H.text(n) end
      return table.concat(parts, "\n")
    end
    return "no help for '" .. x .. "'"
  end
  return "no help for this " .. type(x) .. " value"
end

function flame.help(...)
  io.write(H.describe(...), "\n")
end

-- Field names for tab completion of values whose __index is a function: a tensor's documented properties and
-- its methods, a module instance's parameters, buffers, submodules and attributes and its class's methods.
-- nil for anything else (the completer walks tables itself).
function flame._complete_keys(v, methods_only)
  local out = {}
  if flame.is_tensor(v) then
    if not methods_only then
      for _, n in ipairs(select(2, H.docs())) do
        local p = n:match("^Tensor%.([%w_]+)$")
        if p then out[#out + 1] = p end
      end
    end
    for k in pairs(flame._tensor_methods) do out[#out + 1] = k end
    return out
  end
  if not flame.nn.is_module(v) then return nil end
  if not methods_only then
    for _, store in ipairs({"_parameters", "_buffers", "_modules"}) do
      for _, k in ipairs(rawget(v, store).names) do out[#out + 1] = k end
    end
    for k in pairs(rawget(v, "_attrs")) do out[#out + 1] = k end
  end
  local cls, depth = getmetatable(v), 0
  while type(cls) == "table" and depth < 16 do
    for k, f in pairs(cls) do
      if type(f) == "function" then out[#out + 1] = k end
    end
    cls, depth = rawget(cls, "__super"), depth + 1
  end
  return out
end
