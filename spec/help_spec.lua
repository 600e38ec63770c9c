-- The help table (lua/flame/help_docs.lua) against what exists: every function, module, class method and
-- constant reachable from flame, every tensor method and property, and every method of the objects that
-- constructors return has a help line; every help line names something that exists. Also flame.help's text
-- and the names tab completion gets for tensors and module instances.
local H = require "helper"
local flame = H.flame
local help = flame._help

local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The property names the binding's tensor __index answers (src/lua/ltensor.c), read from its source so that a
-- new property cannot go undocumented.
local function tensor_properties()
  local f = assert(io.open("src/lua/ltensor.c", "rb"))
  local src = f:read("a")
  f:close()
  local body = assert(src:match("static int t_index%(.-\n}\n"), "t_index not found in src/lua/ltensor.c")
  local props = {}
  for p in body:gmatch('!strcmp%(k, "([%w_]+)"%)') do props[p] = true end
  assert(next(props), "no properties found in t_index")
  return props
end

-- Instances of every documented object class, by prefix.
local function instances()
  local out = {}
  for prefix, make in pairs(help.INSTANCES) do out[#out + 1] = {prefix, make()} end
  for prefix, make in pairs(help.MORE_INSTANCES) do out[#out + 1] = {prefix, make()} end
  return out
end

-- Calls fn(key, value) for the function-valued fields an object reaches through its __index tables.
local function each_method(obj, fn)
  local mt, depth = getmetatable(obj), 0
  while type(mt) == "table" and depth < 16 do
    local idx = rawget(mt, "__index")
    if type(idx) ~= "table" then break end
    for k, v in pairs(idx) do
      if type(k) == "string" and not k:match("^_") and type(v) == "function" then fn(k, v) end
    end
    mt, depth = getmetatable(idx), depth + 1
  end
end

describe("help table", function()
  it("parses: one line per name, each with a signature and a description", function()
    local docs, order = help.docs()
    assert.is_true(#order > 400)
    for _, name in ipairs(order) do
      assert.is_true(#docs[name].desc > 0, name)
      assert.are.equal(name, docs[name].sig:match("^[%w_.:]+"))
    end
  end)

  it("has a line for everything reachable from flame and for every tensor method", function()
    local missing = {}
    local by_value = {}
    help.walk(function(name, v)
      if type(v) == "function" or type(v) == "table" then
        by_value[v] = by_value[v] or {}
        table.insert(by_value[v], name)
      end
    end)
    help.walk(function(name, v)
      if help.entry(name) then return end
      -- flame.add and Tensor:add are one function, documented once
      for _, other in ipairs(by_value[v] or {}) do
        if help.entry(other) then return end
      end
      missing[name] = true
    end)
    assert.are.same({}, sorted_keys(missing))
  end)

  it("has a line for every tensor property", function()
    local missing = {}
    for p in pairs(tensor_properties()) do
      if not help.entry("Tensor." .. p) then missing[#missing + 1] = p end
    end
    assert.are.same({}, missing)
  end)

  it("has a line for every method of the objects constructors return", function()
    local missing = {}
    for _, pair in ipairs(instances()) do
      local prefix, obj = pair[1], pair[2]
      assert.truthy(help.entry(prefix), "no line for " .. prefix)
      each_method(obj, function(k)
        if not help.entry(prefix .. ":" .. k) then missing[prefix .. ":" .. k] = true end
      end)
    end
    assert.are.same({}, sorted_keys(missing))
  end)

  it("names only things that exist", function()
    local _, order = help.docs()
    local props = tensor_properties()
    local objs = {}
    for _, pair in ipairs(instances()) do
      objs[pair[1]] = objs[pair[1]] or {}
      table.insert(objs[pair[1]], pair[2])
    end
    local bad = {}
    for _, name in ipairs(order) do
      local ok
      local owner, sep, field = name:match("^(.-)([.:])([%w_]+)$")
      if name == "Tensor" or objs[name] then
        ok = true
      elseif owner == "Tensor" then
        ok = sep == ":" and type(flame._tensor_methods[field]) == "function" or sep == "." and props[field] == true
      elseif objs[owner] then
        ok = true
        for _, obj in ipairs(objs[owner]) do
          local found = false
          each_method(obj, function(k) found = found or k == field end)
          -- a method only some samplers have (previous_timestep, calculate_shift) needs one that has it
          ok = ok and (found or name == "Scheduler:previous_timestep" or name == "Scheduler:calculate_shift")
        end
        local any = false
        for _, obj in ipairs(objs[owner]) do each_method(obj, function(k) any = any or k == field end) end
        ok = ok and any
      else
        -- flame.a.b (a field) or flame.a.B:m (a method of a class table, maybe inherited)
        local v = flame
        for part in (sep == ":" and owner or name):gmatch("[^.]+") do
          if part ~= "flame" then v = type(v) == "table" and v[part] or nil end
        end
        if sep == ":" then
          ok = type(v) == "table" and help.is_class(v) and type(v[field]) == "function"
        else
          ok = v ~= nil
        end
      end
      if not ok then bad[#bad + 1] = name end
    end
    assert.are.same({}, bad)
  end)
end)

describe("flame.help", function()
  local d = help.describe

  it("describes a function by value and by name", function()
    local want = "flame.zeros(size..., {dtype, device, requires_grad})\n  a tensor filled with 0; size as numbers or one table"
    assert.are.equal(want, d(flame.zeros))
    assert.are.equal(want, d("flame.zeros"))
    assert.are.equal(d("Tensor:add"), d(flame.add))
    assert.truthy(d(flame.F.conv2d):match("^flame%.F%.conv2d%(x, w, b%?, {stride, padding, dilation, groups}%)\n  2%-d convolution$"))
  end)

  it("describes tensors, their properties and methods, in-place forms", function()
    _G.help_t = H.t({1, 2})
    assert.truthy(d(help_t):match("^Tensor\n"))
    assert.truthy(d("help_t.shape"):match("^Tensor%.shape\n  the sizes"))
    assert.truthy(d("help_t:matmul"):match("^Tensor:matmul%(u%)\n"))
    assert.are.equal("Tensor:add_(u, alpha?)\n  in-place form of Tensor:add", d(help_t.add_))
    _G.help_t = nil
  end)

  it("describes modules with their members, classes, instances and inherited methods", function()
    local nn = d(flame.nn)
    assert.truthy(nn:match("^flame%.nn\n  neural%-network modules"))
    assert.truthy(nn:find("\n  members:\n    Parameter is_module Module Sequential", 1, true))
    local lin = flame.nn.Linear(2, 3)
    assert.truthy(d(lin):match("^flame%.nn%.Linear%(in, out"))
    assert.truthy(d(lin.forward):match("^flame%.nn%.Module:forward%("))
    assert.truthy(d(lin.parameters):match("^flame%.nn%.Module:parameters%(%)"))
    local opt = flame.optim.Adam(lin:parameters())
    assert.truthy(d(opt):match("^Optimizer\n"))
    assert.truthy(d(opt.step):match("^Optimizer:step%(closure%?%)\n"))
  end)

  it("finds names by their last part, and says when there is nothing", function()
    local s = d("conv_transpose2d")
    assert.truthy(s:match("^flame%.F%.conv_transpose2d%("))
    assert.truthy(s:find("\nflame.nn.ConvTranspose2d", 1, true) == nil)  -- case matters
    assert.are.equal("no help for 'no_such_thing'", d("no_such_thing"))
    assert.are.equal("no help for this number value", d(42))
    assert.truthy(d():match("^help%(x%) or %?x"))
  end)
end)

describe("completion keys", function()
  local function set(list)
    local s = {}
    for _, k in ipairs(list) do s[k] = true end
    return s
  end

  it("lists a tensor's properties and methods, only methods after ':'", function()
    local t = H.t({1})
    local all = set(flame._complete_keys(t, false))
    for _, k in ipairs({"shape", "dtype", "device", "grad", "requires_grad", "is_leaf", "add", "matmul"}) do
      assert.is_true(all[k], k)
    end
    local methods = set(flame._complete_keys(t, true))
    assert.is_nil(methods.shape)
    assert.is_true(methods.add)
  end)

  it("lists a module instance's parameters, submodules, attributes and class methods", function()
    local seq = flame.nn.Sequential(flame.nn.Linear(2, 2))
    local m = flame.nn.Linear(2, 3)
    m.extra = 1
    local keys = set(flame._complete_keys(m, false))
    for _, k in ipairs({"weight", "bias", "in_features", "training", "extra", "forward", "parameters",
                        "reset_parameters"}) do
      assert.is_true(keys[k], k)
    end
    assert.is_true(set(flame._complete_keys(seq, false))["0"])
    local methods = set(flame._complete_keys(m, true))
    assert.is_nil(methods.weight)
    assert.is_true(methods.parameters)
  end)

  it("leaves plain tables to the completer's own walk", function()
    assert.is_nil(flame._complete_keys({}, false))
    assert.is_nil(flame._complete_keys(flame.F, false))
  end)
end)
