-- Training checkpoints: flame.utils.save_training_state(path, state) and load_training_state(path, state, {device}).
-- state is a table of named entries: objects with state_dict()/load_state_dict() (a model, an optimizer, an EMA, an
-- LR scheduler, a GradScaler) and plain values (a step count, nested tables of numbers, strings, booleans and
-- tensors). The generator's state is saved with them, so a run that saves after N steps, loads and runs M more gives
-- the same numbers as N + M straight steps.
--
-- One safetensors file (flame.save: atomic): every tensor under a readable path name ("model/blocks.0.weight",
-- "optimizer/state/1/exp_avg"), and the tree in the metadata key "flame.training_state" as JSON whose leaves carry
-- their type: "s:text", "i:42", "f:0.001" (%.17g, or inf/-inf/nan), "t:<tensor name>", true/false; table keys are
-- "s:name" or "i:1", so integer keys (optimizer state by parameter position) come back as integers and floats
-- bit-exact.
local flame = ...
flame.utils = flame.utils or {}
local autograd = flame.autograd

local KEY = "flame.training_state"

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function float_str(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return string.format("%.17g", x)
end

-- Encodes value v at path into JSON text, adding its tensors to `tensors` under unique path names.
local function encode(who, v, path, tensors, seen)
  local ty = type(v)
  if flame.is_tensor(v) then
    local name, k = path, 1
    while tensors[name] do k = k + 1; name = path .. "#" .. k end
    tensors[name] = v
    return json_string("t:" .. name)
  elseif ty == "string" then return json_string("s:" .. v)
  elseif ty == "boolean" then return tostring(v)
  elseif ty == "number" then
    return json_string(math.type(v) == "integer" and ("i:" .. v) or ("f:" .. float_str(v)))
  elseif ty == "table" then
    if seen[v] then error(string.format("%s: %s: a table that contains itself", who, path == "" and "state" or path), 0) end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do
      if math.type(k) ~= "integer" and type(k) ~= "string" then
        error(string.format("%s: %s: keys must be strings or integers, got a %s key", who, path, type(k)), 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) == "number" end
      return a < b
    end)
    local parts = {}
    for i, k in ipairs(keys) do
      local tag = type(k) == "string" and ("s:" .. k) or ("i:" .. k)
      local sub = path == "" and tostring(k) or (path .. "/" .. tostring(k))
      parts[i] = json_string(tag) .. ":" .. encode(who, v[k], sub, tensors, seen)
    end
    seen[v] = nil
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error(string.format("%s: %s: cannot save a %s", who, path, ty), 0)
end

-- A JSON reader for exactly what encode writes (objects, strings, true, false).
local function decoder(text, who)
  local pos = 1
  local function fail(what) error(string.format("%s: bad %s at byte %d: %s", who, KEY, pos, what), 0) end
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function str()
    if text:sub(pos, pos) ~= '"' then fail("a string expected") end
    local out, i = {}, pos + 1
    while true do
      local c = text:sub(i, i)
      if c == "" then fail("an unterminated string") end
      if c == '"' then break end
      if c == "\\" then
        local e = text:sub(i + 1, i + 1)
        local simple = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
        if simple[e] then out[#out + 1] = simple[e]; i = i + 2
        elseif e == "u" then
          local h = tonumber(text:sub(i + 2, i + 5), 16)
          if not h then fail("a bad \\u escape") end
          out[#out + 1] = utf8.char(h); i = i + 6
        else fail("a bad escape") end
      else
        out[#out + 1] = c; i = i + 1
      end
    end
    pos = i + 1
    return table.concat(out)
  end
  local value
  local function object()
    pos = pos + 1
    local t = {}
    ws()
    if text:sub(pos, pos) == "}" then pos = pos + 1; return t end
    while true do
      ws()
      local k = str()
      ws()
      if text:sub(pos, pos) ~= ":" then fail("':' expected") end
      pos = pos + 1
      ws()
      local tag, rest = k:sub(1, 2), k:sub(3)
      if tag == "s:" then k = rest
      elseif tag == "i:" and math.tointeger(tonumber(rest)) then k = math.tointeger(tonumber(rest))
      else fail("a bad key " .. k) end
      t[k] = value()
      ws()
      local c = text:sub(pos, pos)
      pos = pos + 1
      if c == "}" then return t end
      if c ~= "," then fail("',' or '}' expected") end
    end
  end
  function value()
    local c = text:sub(pos, pos)
    if c == "{" then return {raw = object()} end
    if text:sub(pos, pos + 3) == "true" then pos = pos + 4; return {leaf = true} end
    if text:sub(pos, pos + 4) == "false" then pos = pos + 5; return {leaf = false} end
    return {leaf = str()}
  end
  return function()
    ws()
    local v = value()
    ws()
    if pos <= #text then fail("trailing characters") end
    return v
  end
end

-- Turns a decoded node into its Lua value, tensors taken from the loaded file.
local function build(who, node, tensors)
  if node.raw then
    local t = {}
    for k, v in pairs(node.raw) do t[k] = build(who, v, tensors) end
    return t
  end
  local v = node.leaf
  if type(v) == "boolean" then return v end
  local tag, rest = v:sub(1, 2), v:sub(3)
  if tag == "s:" then return rest end
  if tag == "i:" then return math.tointeger(tonumber(rest)) or error(who .. ": bad integer " .. rest, 0) end
  if tag == "f:" then
    if rest == "nan" then return 0 / 0 end
    if rest == "inf" then return math.huge end
    if rest == "-inf" then return -math.huge end
    return tonumber(rest) + 0.0
  end
  if tag == "t:" then return tensors[rest] or error(string.format("%s: the file has no tensor '%s'", who, rest), 0) end
  error(who .. ": bad leaf " .. v, 0)
end

local function has_state(v)
  return type(v) == "table" and type(v.state_dict) == "function" and type(v.load_state_dict) == "function"
end

-- save_training_state(path, state): objects with state_dict() are saved through it, other values as they are;
-- the generator's state is added (as "rng").
function flame.utils.save_training_state(path, state)
  local who = "save_training_state"
  if type(path) ~= "string" then error(who .. ": path must be a string, got " .. type(path), 2) end
  if type(state) ~= "table" then error(who .. ": state must be a table, got " .. type(state), 2) end
  if state.rng ~= nil then error(who .. ": 'rng' is reserved for the generator's state", 2) end
  local tree = {}
  for k, v in pairs(state) do
    if type(k) ~= "string" then error(who .. ": state keys must be strings, got a " .. type(k), 2) end
    tree[k] = has_state(v) and v:state_dict() or v
  end
  local seed, offset = autograd._rng_state()
  tree.rng = {seed = seed, offset = offset}
  local tensors = {}
  local ok, json = pcall(encode, who, tree, "", tensors, {})
  if not ok then error(json, 2) end
  flame.save(path, tensors, {[KEY] = json})
end

-- load_training_state(path, state, {device}): loads every object of state that has load_state_dict from the
-- entry of the same name, sets the generator's state, and returns the whole saved table (plain values such as
-- the step count included; objects' entries are their state dicts). An object without an entry in the file is
-- an error; entries without an object are returned only.
function flame.utils.load_training_state(path, state, opts)
  local who = "load_training_state"
  if type(path) ~= "string" then error(who .. ": path must be a string, got " .. type(path), 2) end
  if state ~= nil and type(state) ~= "table" then error(who .. ": state must be a table, got " .. type(state), 2) end
  local tensors, meta = flame.load(path, opts)
  local json = meta[KEY]
  if not json then error(string.format("%s: %s has no %s metadata (not a training state)", who, path, KEY), 2) end
  local ok, tree = pcall(function() return build(who, decoder(json, who)(), tensors) end)
  if not ok then error(tree, 2) end
  for k, v in pairs(state or {}) do
    if has_state(v) then
      if tree[k] == nil then error(string.format("%s: %s has no entry '%s'", who, path, k), 2) end
      v:load_state_dict(tree[k])
    end
  end
  local rng = tree.rng
  if type(rng) ~= "table" or math.type(rng.seed) ~= "integer" or math.type(rng.offset) ~= "integer" then
    error(string.format("%s: %s has no generator state", who, path), 2)
  end
  autograd._set_rng_state(rng.seed, rng.offset)
  return tree
end

return flame
