-- flame.save_state(path, tree) / flame.load_state(path, {device}): a training checkpoint in one safetensors file.
-- tree is a nested Lua table of tensors, numbers, strings and booleans (a model's, an optimizer's, an LR
-- scheduler's and an EMA's state_dict, a step count, the generator state ...), as torch.save of a dict.
-- The tensors go to the file under their paths ("optim/state/3/exp_avg"); everything else goes to the metadata
-- under its path, tagged with its type so that it reads back as it was: "i:42" (a Lua integer), "f:0x1.8p-3"
-- (a float as a hex literal: exact; also "f:inf", "f:-inf", "f:nan"), "s:text", "b:true", and "t:" for an empty
-- table. Path segments are joined with "/" (so a model's dotted parameter names stay one segment); a segment that
-- is a decimal integer reads back as an integer key. Keys must be strings without "/" (and not all digits) or
-- positive integers.
local flame = ...

local function segment(k, path)
  if math.type(k) == "integer" and k >= 1 then return tostring(k) end
  if type(k) ~= "string" or k == "" or k:find("/", 1, true) or k:match("^%d+$") then
    error(string.format("save_state: key %s at '%s' must be a string without '/' (not all digits) or a " ..
      "positive integer", type(k) == "string" and ("'" .. k .. "'") or tostring(k), path), 3)
  end
  return k
end

local function encode(v, path)
  local t = type(v)
  if math.type(v) == "integer" then return "i:" .. tostring(v) end
  if t == "number" then
    if v ~= v then return "f:nan" end
    if v == math.huge or v == -math.huge then return v > 0 and "f:inf" or "f:-inf" end
    return "f:" .. string.format("%a", v)
  end
  if t == "string" then return "s:" .. v end
  if t == "boolean" then return "b:" .. tostring(v) end
  error(string.format("save_state: '%s' is a %s (tensors, numbers, strings, booleans and tables are saved)",
    path, t), 4)
end

local function flatten(v, path, tensors, meta, seen)
  if flame.is_tensor(v) then tensors[path] = v return end
  if type(v) ~= "table" then meta[path] = encode(v, path) return end
  if seen[v] then error("save_state: the table at '" .. path .. "' is reached twice (a cycle or a shared table)", 3) end
  seen[v] = true
  local empty = true
  for k, x in pairs(v) do
    empty = false
    local s = segment(k, path)
    flatten(x, path == "" and s or (path .. "/" .. s), tensors, meta, seen)
  end
  if empty then
    if path == "" then return end
    meta[path] = "t:"
  end
end

function flame.save_state(path, tree)
  if type(tree) ~= "table" or flame.is_tensor(tree) then
    error("save_state: expected a table to save, got a " .. (flame.is_tensor(tree) and "tensor" or type(tree)), 2)
  end
  local tensors, meta = {}, {}
  flatten(tree, "", tensors, meta, {})
  flame.save(path, tensors, next(meta) and meta or nil)
end

local function decode(s, path)
  local tag, body = s:match("^(%a):(.*)$")
  if tag == "i" and math.tointeger(tonumber(body)) then return math.tointeger(tonumber(body)) end
  if tag == "f" then
    if body == "nan" then return 0.0 / 0.0 end
    if body == "inf" or body == "-inf" then return body == "inf" and math.huge or -math.huge end
    local x = tonumber(body)
    if math.type(x) == "float" then return x end -- (x + 0.0 would turn -0.0 into 0.0)
  end
  if tag == "s" then return body end
  if tag == "b" and (body == "true" or body == "false") then return body == "true" end
  if tag == "t" and body == "" then return {} end
  error(string.format("load_state: metadata '%s' = '%s' is not a value save_state writes", path, s), 4)
end

local function insert(root, path, v)
  local node, segs = root, {}
  for s in path:gmatch("[^/]+") do segs[#segs + 1] = s:match("^%d+$") and math.tointeger(tonumber(s)) or s end
  for i = 1, #segs - 1 do
    local k = segs[i]
    if node[k] == nil then node[k] = {} end
    node = node[k]
    if type(node) ~= "table" or flame.is_tensor(node) then
      error("load_state: '" .. path .. "' lies under a value, not a table", 3)
    end
  end
  if node[segs[#segs]] ~= nil then error("load_state: '" .. path .. "' is both a value and a table", 3) end
  node[segs[#segs]] = v
end

-- load_state(path, {device}) -> the tree save_state wrote (tensors on device, default the CPU).
function flame.load_state(path, opts)
  local tensors, meta = flame.load(path, opts)
  local tree = {}
  for k, v in pairs(meta) do insert(tree, k, decode(v, k)) end
  for k, t in pairs(tensors) do insert(tree, k, t) end
  return tree
end

return flame
