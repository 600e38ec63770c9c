-- flame.nn.Module: the base of every module, and the containers (Sequential, ModuleList,
-- ModuleDict). Loaded before nn_init.lua and nn_layers.lua (file-name order).
--
-- Registration by assignment (`self.weight = t`, `self.fc = flame.nn.Linear(4, 2)`):
--   * a module (an instance of a Module class) becomes a submodule;
--   * a tensor that is a leaf with requires_grad = true becomes a parameter
--     (flame.nn.Parameter(t) makes one: a detached leaf of t's values with requires_grad);
--     a name that already holds a parameter only accepts such a tensor, or nil;
--   * a tensor that is not a parameter, assigned to a name registered with m:register_buffer(name, t),
--     replaces the buffer;
--   * anything else (numbers, strings, tensors that are not parameters) is a plain attribute.
-- Every field goes through __newindex (the instance table itself holds only its four stores),
-- so a later assignment is registered whatever the name held before.
-- Names are PyTorch's: `blocks.1.attn.qkv.weight`; the children of Sequential and ModuleList
-- are named "0", "1", ... as PyTorch numbers them, while Lua indexing is 1-based:
-- seq[1] is the child named "0".
local flame = ...
flame.nn = flame.nn or {}
local nn = flame.nn

local rawget, getmetatable, mtype = rawget, getmetatable, math.type

-- An ordered store: names in registration order, values by name. A slot may hold nil
-- (a parameter registered as absent, as PyTorch's `register_parameter("bias", None)`).
-- Every instance also has `_fields`: each name of its four stores (parameters, buffers, submodules, attributes:
-- a name is in one at most) with its value, NIL for a registered nil, so that a field read (Module.__index, on
-- every `self.x` and method lookup) is one table lookup instead of four; a CPU UNet forward spent a third of its
-- time in that lookup. Every write to a store goes through store_set, store_put, store_del or set_attr.
local NIL = setmetatable({}, {__name = "nil field"})
-- The hot forwards of flame.nn's own layers (nn_layers.lua) read `self._fields` directly, without the __index call
-- a field read costs (about 60 ns; a UNet forward made 500 of them); they map NIL to nil and fall back to `self[k]`
-- for a name that is not there.
nn._NIL = NIL
local function store(F) return {names = {}, map = {}, has = {}, F = F} end
local function store_put(s, k, v) -- k already registered in s
  s.map[k] = v
  if v == nil then s.F[k] = NIL else s.F[k] = v end
end
local function store_set(s, k, v)
  if not s.has[k] then s.has[k] = true; s.names[#s.names + 1] = k end
  store_put(s, k, v)
end
local function store_del(s, k)
  if not s.has[k] then return end
  s.has[k], s.map[k], s.F[k] = nil, nil, nil
  for i, n in ipairs(s.names) do if n == k then table.remove(s.names, i) break end end
end
local function set_attr(m, k, v)
  rawget(m, "_attrs")[k] = v
  rawget(m, "_fields")[k] = v
end

local Module = {__name = "Module"}
nn.Module = Module
local MODULE_MARK = {}
Module.__is_module = MODULE_MARK
setmetatable(Module, {__call = function(c, ...) return c:new(...) end, __tostring = function() return "class Module" end})

local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__is_module") == MODULE_MARK and rawget(v, "_modules") ~= nil
end
nn.is_module = is_module

local function is_param(t) return flame.is_tensor(t) and t.is_leaf and t.requires_grad end

-- flame.nn.Parameter(t): a leaf with t's values that requires grad (t itself when it already is one).
function nn.Parameter(t, requires_grad)
  if not flame.is_tensor(t) then error("Parameter: expected a tensor, got " .. type(t), 2) end
  if requires_grad == false then return t:detach() end
  if is_param(t) then return t end
  local p = t:detach()
  p.requires_grad = true
  return p
end

local function class_name(self) return getmetatable(self).__name or "Module" end

-- Metamethods are looked up raw in the metatable, so every class gets its own copies.
local META = {"__index", "__newindex", "__call", "__tostring", "__len", "__pairs"}

function Module.__index(self, k)
  local v = self._fields[k] -- a raw field of every instance (Module:new), so this does not come back here
  if v ~= nil then
    if v == NIL then return nil end
    return v
  end
  local cls = getmetatable(self)
  v = cls[k]
  if v == nil and cls._at and mtype(k) == "integer" then return cls._at(self, k) end
  return v
end

function Module.__newindex(self, k, v)
  local P, B, M, A = rawget(self, "_parameters"), rawget(self, "_buffers"), rawget(self, "_modules"),
    rawget(self, "_attrs")
  if type(k) ~= "string" then
    if math.type(k) == "integer" and getmetatable(self)._set_at then return getmetatable(self)._set_at(self, k, v) end
    error(string.format("%s: field names must be strings, got %s", class_name(self), tostring(k)), 2)
  end
  if is_module(v) then
    store_del(P, k); store_del(B, k); set_attr(self, k, nil)
    store_set(M, k, v)
  elseif P.has[k] then
    if v ~= nil and not is_param(v) then
      error(string.format("%s: cannot assign %s as parameter '%s' (a leaf tensor with requires_grad, " ..
        "flame.nn.Parameter(t), or nil expected)", class_name(self),
        flame.is_tensor(v) and "a tensor that is not a parameter" or ("a " .. type(v)), k), 2)
    end
    store_put(P, k, v)
  elseif is_param(v) then
    store_del(M, k); store_del(B, k); set_attr(self, k, nil)
    store_set(P, k, v)
  elseif B.has[k] then
    if v ~= nil and not flame.is_tensor(v) then
      error(string.format("%s: cannot assign a %s as buffer '%s' (a tensor or nil expected)", class_name(self),
        type(v), k), 2)
    end
    store_put(B, k, v)
  elseif M.has[k] and v == nil then
    store_put(M, k, nil)
  else
    store_del(M, k)
    set_attr(self, k, v)
  end
end

function Module.__call(self, ...) return self:forward(...) end

-- The __call of a class that keeps Module's: self:forward(...) with the method looked up in the instance's fields,
-- then in `cls` (the instance's metatable), without the two calls of a method lookup through Module.__index.
local default_calls = {[Module.__call] = true}
local function class_call(cls)
  local call = function(self, ...)
    local f = self._fields.forward
    if f == nil then f = cls.forward elseif f == NIL then f = nil end
    return f(self, ...)
  end
  default_calls[call] = true
  return call
end

-- Module:extend("Name"): a subclass. Cls(...) makes an instance and calls Cls.__init(self, ...).
function Module:extend(name)
  if type(name) ~= "string" then error("Module:extend: expected a class name (a string), got " .. type(name), 2) end
  local cls = {__name = name, __is_module = MODULE_MARK, __super = self}
  for _, m in ipairs(META) do cls[m] = rawget(self, m) end
  if default_calls[cls.__call] then cls.__call = class_call(cls) end
  return setmetatable(cls, {__index = self, __call = function(c, ...) return c:new(...) end,
    __tostring = function() return "class " .. name end})
end

function Module:new(...)
  local F = {}
  local m = setmetatable({_parameters = store(F), _buffers = store(F), _modules = store(F), _attrs = {}, _fields = F},
    self)
  set_attr(m, "training", true)
  local init = self.__init
  if init then init(m, ...) end
  return m
end

function Module:__init() end

function Module:forward()
  error(class_name(self) .. ": forward is not implemented (define " .. class_name(self) .. ":forward)", 2)
end

function Module:register_parameter(name, t)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error("register_parameter: the name must be a non-empty string without '.', got " .. tostring(name), 2)
  end
  if t ~= nil and not is_param(t) then
    error(string.format("register_parameter: '%s' must be a leaf tensor with requires_grad (flame.nn.Parameter(t)) " ..
      "or nil", name), 2)
  end
  store_del(self._buffers, name); store_del(self._modules, name); set_attr(self, name, nil)
  store_set(self._parameters, name, t)
end

-- register_buffer(name, t, persistent = true): a tensor saved in state_dict (unless not persistent) and
-- moved by to(), but not a parameter.
function Module:register_buffer(name, t, persistent)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error("register_buffer: the name must be a non-empty string without '.', got " .. tostring(name), 2)
  end
  if t ~= nil and not flame.is_tensor(t) then
    error(string.format("register_buffer: '%s' must be a tensor or nil, got a %s", name, type(t)), 2)
  end
  store_del(self._parameters, name); store_del(self._modules, name); set_attr(self, name, nil)
  store_set(self._buffers, name, t)
  set_attr(self, "_nonpersistent_" .. name, (persistent == false) or nil)
end

function Module:add_module(name, m)
  if not is_module(m) and m ~= nil then error("add_module: '" .. tostring(name) .. "' is not a module", 2) end
  store_del(self._parameters, name); store_del(self._buffers, name); set_attr(self, name, nil)
  store_set(self._modules, name, m)
end
Module.register_module = Module.add_module

---------------------------------------------------------------------------------------------------
-- Traversal. Lists (parameters, buffers, children, modules) are arrays; named_* are iterators
-- `for name, x in m:named_parameters() do` in PyTorch's order: a module's own entries in
-- registration order, then each child's, depth first. A tensor or module reachable twice appears once.

local function named_modules(self, prefix, out, seen)
  if seen[self] then return out end
  seen[self] = true
  out[#out + 1] = {prefix, self}
  local M = rawget(self, "_modules")
  for _, k in ipairs(M.names) do
    local c = M.map[k]
    if c then named_modules(c, prefix == "" and k or (prefix .. "." .. k), out, seen) end
  end
  return out
end

local function iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

local function named_tensors(self, which, persistent_only)
  local out, seen = {}, {}
  for _, e in ipairs(named_modules(self, "", {}, {})) do
    local prefix, m = e[1], e[2]
    local s = rawget(m, which)
    for _, k in ipairs(s.names) do
      local t = s.map[k]
      if t ~= nil and not seen[t] and not (persistent_only and rawget(m, "_attrs")["_nonpersistent_" .. k]) then
        seen[t] = true
        out[#out + 1] = {prefix == "" and k or (prefix .. "." .. k), t}
      end
    end
  end
  return out
end

function Module:named_parameters() return iter(named_tensors(self, "_parameters")) end
function Module:named_buffers() return iter(named_tensors(self, "_buffers")) end
function Module:named_modules() return iter(named_modules(self, "", {}, {})) end

function Module:named_children()
  local out, M = {}, self._modules
  for _, k in ipairs(M.names) do if M.map[k] then out[#out + 1] = {k, M.map[k]} end end
  return iter(out)
end

local function values_of(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e[2] end
  return out
end
function Module:parameters() return values_of(named_tensors(self, "_parameters")) end
function Module:buffers() return values_of(named_tensors(self, "_buffers")) end
function Module:modules() return values_of(named_modules(self, "", {}, {})) end
function Module:children()
  local out = {}
  for _, m in self:named_children() do out[#out + 1] = m end
  return out
end

-- num_parameters({trainable_only}): the number of parameter elements.
function Module:num_parameters(opts)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not (opts and opts.trainable_only and not p.requires_grad) then n = n + p:numel() end
  end
  return n
end

---------------------------------------------------------------------------------------------------
-- State dicts: a plain table name -> detached tensor (parameters, then persistent buffers, per
-- module, in the order above; `m:state_dict_keys()` gives that order, as Lua tables have none).

local function state_entries(self)
  local out = {}
  for _, e in ipairs(named_modules(self, "", {}, {})) do
    local prefix, m = e[1], e[2]
    for _, which in ipairs({"_parameters", "_buffers"}) do
      local s = rawget(m, which)
      for _, k in ipairs(s.names) do
        local t = s.map[k]
        if t ~= nil and not (which == "_buffers" and rawget(m, "_attrs")["_nonpersistent_" .. k]) then
          out[#out + 1] = {prefix == "" and k or (prefix .. "." .. k), t, m, which, k}
        end
      end
    end
  end
  return out
end

function Module:state_dict()
  local sd = {}
  for _, e in ipairs(state_entries(self)) do sd[e[1]] = e[2]:detach() end
  return sd
end

function Module:state_dict_keys()
  local keys = {}
  for i, e in ipairs(state_entries(self)) do keys[i] = e[1] end
  return keys
end

local function shape_str(t)
  local s = {}
  for i = 1, t:dim() do s[i] = tostring(t:size(i)) end
  return "[" .. table.concat(s, ", ") .. "]"
end

local function quoted(list)
  local q = {}
  for i, k in ipairs(list) do q[i] = '"' .. k .. '"' end
  return table.concat(q, ", ")
end

-- load_state_dict(sd, {strict = true}): copies each entry into the matching parameter or buffer
-- (converting dtype and device to the module's). Returns {missing_keys = {...}, unexpected_keys = {...}}
-- (sorted). A shape mismatch or a value that is not a tensor is always an error; with strict, missing or
-- unexpected keys are an error too. Nothing is copied when an error is raised.
function Module:load_state_dict(sd, opts, ...)
  if select("#", ...) > 0 then error("load_state_dict: takes (state_dict, {strict})", 2) end
  if type(sd) ~= "table" then error("load_state_dict: expected a table name -> tensor, got " .. type(sd), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("load_state_dict: options must be a table {strict}", 2) end
  for k in pairs(opts or {}) do
    if k ~= "strict" then error("load_state_dict: unknown option '" .. tostring(k) .. "' (known: strict)", 2) end
  end
  local strict = not (opts and opts.strict == false)
  local entries, own = state_entries(self), {}
  local missing, unexpected, problems = {}, {}, {}
  for _, e in ipairs(entries) do
    own[e[1]] = true
    local v = sd[e[1]]
    if v == nil then
      missing[#missing + 1] = e[1]
    elseif not flame.is_tensor(v) then
      problems[#problems + 1] = string.format('"%s" is a %s, not a tensor', e[1], type(v))
    elseif v.shape ~= e[2].shape then
      problems[#problems + 1] = string.format('size mismatch for "%s": the checkpoint has %s, the model %s',
        e[1], shape_str(v), shape_str(e[2]))
    end
  end
  for k in pairs(sd) do
    if not own[k] then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(missing); table.sort(unexpected)
  local msgs = {}
  if strict and #missing > 0 then msgs[#msgs + 1] = "missing keys: " .. quoted(missing) end
  if strict and #unexpected > 0 then msgs[#msgs + 1] = "unexpected keys: " .. quoted(unexpected) end
  for _, p in ipairs(problems) do msgs[#msgs + 1] = p end
  if #msgs > 0 then
    error("load_state_dict: error(s) in loading the state dict for " .. class_name(self) .. ": " ..
      table.concat(msgs, "; "), 2)
  end
  flame.no_grad(function()
    for _, e in ipairs(entries) do
      local v = sd[e[1]]
      if v ~= nil then e[2]:copy_(v) end
    end
  end)
  return {missing_keys = missing, unexpected_keys = unexpected}
end

---------------------------------------------------------------------------------------------------
-- Modes, devices, gradients.

function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do set_attr(m, "training", not not mode) end
  return self
end
function Module:eval() return self:train(false) end

function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in ipairs(self:parameters()) do p.requires_grad = flag end
  return self
end

-- zero_grad(): every parameter's grad to nil (PyTorch's set_to_none = true).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
  return self
end

-- apply(fn): fn(m) for every submodule, children first, then self (PyTorch's order).
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

local FLOAT = {f32 = true, f64 = true, f16 = true, bf16 = true}
local DTYPE_NAMES = {float32 = "f32", float = "f32", float64 = "f64", double = "f64", float16 = "f16", half = "f16",
  bfloat16 = "bf16", int32 = "i32", int = "i32", int64 = "i64", long = "i64", f32 = "f32", f64 = "f64", f16 = "f16",
  bf16 = "bf16", i32 = "i32", i64 = "i64", bool = "bool"}

local function to_opts(arg)
  if type(arg) == "string" then
    if DTYPE_NAMES[arg] then return {dtype = DTYPE_NAMES[arg]} end
    if arg:match("^cpu$") or arg:match("^cuda$") or arg:match("^cuda:%d+$") then return {device = arg} end
    error("to: '" .. arg .. "' is neither a dtype (f32, f64, f16, bf16, ...) nor a device (cpu, cuda, cuda:N)", 3)
  elseif type(arg) == "table" then
    local o = {}
    for k, v in pairs(arg) do
      if k == "dtype" then
        o.dtype = DTYPE_NAMES[v] or error("to: unknown dtype '" .. tostring(v) .. "'", 3)
      elseif k == "device" then
        o.device = v
      else
        error("to: unknown option '" .. tostring(k) .. "' (known: device, dtype)", 3)
      end
    end
    return o
  end
  error("to: expected a device, a dtype or {device, dtype}, got " .. type(arg), 3)
end

local function convert(t, o)
  local want = {}
  if o.device then want.device = o.device end
  if o.dtype and FLOAT[t.dtype] then want.dtype = o.dtype end -- only float tensors change dtype, as PyTorch
  if not want.device and not want.dtype then return t end
  local r = t:detach():to(want)
  if r.device == t.device and r.dtype == t.dtype then return t end
  return r
end

-- to(device | dtype | {device, dtype}): in place on the module. A parameter that changes device or
-- dtype is replaced by a new leaf (requires_grad kept, its grad converted along); one that is already
-- there stays the same tensor. An optimizer built before to() keeps the old tensors: build it after.
-- Integer and bool tensors keep their dtype (only floats are cast, as in PyTorch).
function Module:to(arg, ...)
  if select("#", ...) > 0 then error("to: takes one argument (a device, a dtype or {device, dtype})", 2) end
  local o = to_opts(arg)
  if o.dtype and not FLOAT[o.dtype] then error("to: a module's dtype must be a float dtype, got " .. o.dtype, 2) end
  for _, m in ipairs(self:modules()) do
    local P, B = rawget(m, "_parameters"), rawget(m, "_buffers")
    for _, k in ipairs(P.names) do
      local p = P.map[k]
      if p ~= nil then
        local q = convert(p, o)
        if q ~= p then
          q.requires_grad = p.requires_grad
          if p.grad then q.grad = convert(p.grad, o) end
          store_put(P, k, q)
        end
      end
    end
    for _, k in ipairs(B.names) do
      local b = B.map[k]
      if b ~= nil then store_put(B, k, convert(b, o)) end
    end
  end
  return self
end
function Module:cuda() return self:to("cuda") end
function Module:cpu() return self:to("cpu") end
function Module:float() return self:to("f32") end
function Module:double() return self:to("f64") end
function Module:half() return self:to("f16") end
function Module:bfloat16() return self:to("bf16") end

---------------------------------------------------------------------------------------------------
-- __tostring: PyTorch's repr. A class may define extra_repr() (the text inside the parentheses).

function Module:extra_repr() return "" end

function Module.__tostring(self)
  local lines = {}
  local extra = self:extra_repr()
  for _, k in ipairs(self._modules.names) do
    local c = self._modules.map[k]
    local s = c and tostring(c) or "None"
    s = s:gsub("\n", "\n  ")
    lines[#lines + 1] = "(" .. k .. "): " .. s
  end
  local head = class_name(self) .. "("
  if #lines == 0 then return head .. extra .. ")" end
  local body = {}
  if extra ~= "" then body[#body + 1] = "  " .. extra:gsub("\n", "\n  ") end
  for _, l in ipairs(lines) do body[#body + 1] = "  " .. l end
  return head .. "\n" .. table.concat(body, "\n") .. "\n)"
end

---------------------------------------------------------------------------------------------------
-- Containers. Children are named "0", "1", ...; Lua's m[i] is the child named tostring(i - 1).

local function check_module(who, v, pos)
  if not is_module(v) then
    error(string.format("%s: argument #%d is not a module (got a %s)", who, pos, type(v)), 3)
  end
end

-- CHILD_NAME[i] = tostring(i - 1), made once per i: `for _, m in ipairs(list)` comes through list_at per child.
local CHILD_NAME = setmetatable({}, {__index = function(t, i)
  local s = tostring(i - 1)
  t[i] = s
  return s
end})
local function list_at(self, i)
  local n = #self._modules.names
  if i < 0 then i = n + i + 1 end
  if i < 1 or i > n then return nil end
  return self._modules.map[CHILD_NAME[i]]
end
local function list_set_at(self, i, v)
  local n = #self._modules.names
  if i < 0 then i = n + i + 1 end
  if i == n + 1 then check_module(class_name(self), v, 2); store_set(self._modules, tostring(n), v); return end
  if i < 1 or i > n then
    error(string.format("%s: index %d out of range for %d modules", class_name(self), i, n), 2)
  end
  check_module(class_name(self), v, 2)
  store_put(self._modules, tostring(i - 1), v)
end
local function list_len(self) return #rawget(self, "_modules").names end

local Sequential = Module:extend("Sequential")
nn.Sequential = Sequential
Sequential._at, Sequential._set_at, Sequential.__len = list_at, list_set_at, list_len

-- Sequential(m1, m2, ...) or Sequential({m1, m2, ...}).
function Sequential:__init(...)
  local mods = {...}
  if select("#", ...) == 1 and type(mods[1]) == "table" and not is_module(mods[1]) then mods = mods[1] end
  for i, m in ipairs(mods) do check_module("Sequential", m, i); store_set(self._modules, tostring(i - 1), m) end
end
function Sequential:append(m)
  check_module("Sequential.append", m, 1)
  store_set(self._modules, tostring(#self._modules.names), m)
  return self
end
Sequential.add = Sequential.append
function Sequential:forward(x, ...)
  for _, k in ipairs(self._modules.names) do x = self._modules.map[k](x, ...) end
  return x
end

local ModuleList = Module:extend("ModuleList")
nn.ModuleList = ModuleList
ModuleList._at, ModuleList._set_at, ModuleList.__len = list_at, list_set_at, list_len
function ModuleList:__init(mods)
  for i, m in ipairs(mods or {}) do check_module("ModuleList", m, i); store_set(self._modules, tostring(i - 1), m) end
end
ModuleList.append = Sequential.append
function ModuleList:extend_with(mods)
  for _, m in ipairs(mods) do self:append(m) end
  return self
end
function ModuleList:forward()
  error("ModuleList: has no forward (iterate over it: for i, m in ipairs(list) do ... end)", 2)
end

-- ModuleDict(t): t is {name = module, ...} (registered in sorted name order: a Lua table has no
-- order) or an array of {name, module} pairs (registered in that order). d.name or d["name"] reads.
local ModuleDict = Module:extend("ModuleDict")
nn.ModuleDict = ModuleDict
ModuleDict.__len = list_len
function ModuleDict:__init(t)
  t = t or {}
  if #t > 0 then
    for i, pair in ipairs(t) do
      if type(pair) ~= "table" or type(pair[1]) ~= "string" then
        error("ModuleDict: entry " .. i .. " must be a {name, module} pair", 2)
      end
      check_module("ModuleDict", pair[2], i)
      store_set(self._modules, pair[1], pair[2])
    end
  else
    local keys = {}
    for k, v in pairs(t) do
      if type(k) ~= "string" then error("ModuleDict: keys must be strings, got " .. tostring(k), 2) end
      if not is_module(v) then error("ModuleDict: '" .. k .. "' is not a module", 2) end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do store_set(self._modules, k, t[k]) end
  end
end
function ModuleDict:keys()
  local out = {}
  for i, k in ipairs(self._modules.names) do out[i] = k end
  return out
end
function ModuleDict:items() return self:named_children() end
function ModuleDict:forward() error("ModuleDict: has no forward (index it by name)", 2) end

return flame
