-- flame.distributed: data-parallel training over NCCL (the C part is src/lua/ldist.c, src/dist/, cuda/nccl.cu).
-- init() reads the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), exchanges
-- NCCL's unique id through the TCP rendezvous on MASTER_ADDR and opens the default communicator on
-- cuda:LOCAL_RANK. Ranks are 0-based process ids, as the environment numbers them (not Lua indices).
local flame = ...
local D = flame.distributed -- the C part made it

local group -- the default communicator and its facts, once init() ran

local function env_int(name, dflt)
  local v = os.getenv(name)
  if v == nil or v == "" then
    if dflt ~= nil then return dflt end
    error("distributed.init: " .. name .. " is not set (start the script with flame-lua --nproc N)", 3)
  end
  local n = math.tointeger(tonumber(v))
  if not n then error("distributed.init: " .. name .. " is not an integer: '" .. v .. "'", 3) end
  return n
end

local init_keys = {device = true, timeout = true, rank = true, world_size = true, master_addr = true, master_port = true}

-- init({device, timeout = 300, rank, world_size, master_addr, master_port}): the options override the environment;
-- without WORLD_SIZE the job is one process (rank 0 of 1). device defaults to cuda:LOCAL_RANK when CUDA is there.
function D.init(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("distributed.init: options must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not init_keys[k] then error("distributed.init: unknown option '" .. tostring(k) .. "'", 2) end
  end
  if group then error("distributed.init: already initialized (call distributed.destroy() first)", 2) end
  local world = opts.world_size or env_int("WORLD_SIZE", 1)
  local rank = opts.rank or env_int("RANK", 0)
  local lrank = env_int("LOCAL_RANK", rank)
  local addr = opts.master_addr or os.getenv("MASTER_ADDR") or "127.0.0.1"
  local port = opts.master_port or env_int("MASTER_PORT", 29500)
  local device = opts.device
  if device == nil then device = flame.cuda.is_available() and ("cuda:" .. lrank) or "cpu" end
  local id = D._unique_id(device)
  if world > 1 then id = D._rendezvous(addr, port, rank, world, rank == 0 and id or nil, opts.timeout or 300, #id) end
  local comm = D._comm(device, id, rank, world)
  group = {comm = comm, rank = rank, world = world, local_rank = lrank, device = device}
  return group
end

local function default_group(fn)
  if not group then error("distributed." .. fn .. ": call distributed.init() first", 3) end
  return group
end

function D.is_initialized() return group ~= nil end
function D.get_rank() return group and group.rank or 0 end
function D.get_world_size() return group and group.world or 1 end
function D.get_local_rank() return group and group.local_rank or 0 end
function D.device() return default_group("device").device end

function D.destroy()
  if group then group.comm:destroy() end
  group = nil
end

-- all_reduce(t, op = "sum" | "avg" | "max" | "min", {async_op = false}): in place on every rank; returns t.
-- With async_op (PyTorch's), returns t and a work handle: the ops queued next may run beside the reduction (it
-- overlaps compute), and work:wait() orders what is queued after it behind the reduction (on the device, no host
-- wait). Until then t must not be used; its memory is kept from reuse until the reduction ends.
local Work = {}
Work.__index = Work
function Work:wait() self.comm:join() end

function D.all_reduce(t, op, opts)
  local g = default_group("all_reduce")
  if opts == nil then return g.comm:all_reduce(t, op) end
  if type(opts) ~= "table" then error("distributed.all_reduce: options must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "async_op" then error("distributed.all_reduce: unknown option '" .. tostring(k) .. "'", 2) end
  end
  if not opts.async_op then return g.comm:all_reduce(t, op) end
  g.comm:all_reduce(t, op, true)
  return t, setmetatable({comm = g.comm}, Work)
end
-- broadcast(t, src): rank src's values into t on every rank; returns t.
function D.broadcast(t, src)
  if math.type(src) ~= "integer" then error("distributed.broadcast: src must be a rank (an integer), got " .. tostring(src), 2) end
  return default_group("broadcast").comm:broadcast(t, src)
end
-- all_gather(t) -> [world, ...t.shape]: every rank's t, stacked in rank order.
function D.all_gather(t)
  local g = default_group("all_gather")
  local shape = {g.world}
  for i, s in ipairs(t.shape) do shape[i + 1] = s end
  local out = flame.empty(shape, {dtype = t.dtype, device = t.device})
  return g.comm:all_gather(t:contiguous(), out)
end
-- reduce_scatter(t, op = "sum") -> this rank's block: t's first dim (divisible by world) split in world blocks,
-- each reduced over the ranks; rank r gets block r.
function D.reduce_scatter(t, op)
  local g = default_group("reduce_scatter")
  local n = t.shape[1]
  if t:dim() == 0 or n % g.world ~= 0 then
    error(string.format("distributed.reduce_scatter: dim 1 of %s must be divisible by the world size %d",
      tostring(t.shape), g.world), 2)
  end
  local shape = {n // g.world}
  for i = 2, t:dim() do shape[i] = t.shape[i] end
  local out = flame.empty(shape, {dtype = t.dtype, device = t.device})
  return g.comm:reduce_scatter(t:contiguous(), out, op)
end
-- barrier(): returns when every rank got here and every queued collective finished (a host sync).
function D.barrier(timeout)
  local g = default_group("barrier")
  local one = flame.ones(1, {device = g.device})
  g.comm:all_reduce(one, "sum")
  g.comm:wait(timeout)
end

------------------------------------------------------------------------------ bucketing
-- The bucket plan: params (in the order given) cut into buckets of at most cap bytes, a new bucket at every change
-- of device or dtype; a param larger than cap gets a bucket of its own. sizes[i] = {numel, bytes per element,
-- key}. Returns a list of buckets, each a list of param positions. Pure, so the CPU specs test it.
function D._bucket_plan(sizes, cap)
  local buckets, cur, cur_bytes, cur_key = {}, nil, 0, nil
  for i, s in ipairs(sizes) do
    local bytes = s[1] * s[2]
    if not cur or s[3] ~= cur_key or (cur_bytes + bytes > cap and cur_bytes > 0) then
      cur = {}
      buckets[#buckets + 1] = cur
      cur_bytes, cur_key = 0, s[3]
    end
    cur[#cur + 1] = i
    cur_bytes = cur_bytes + bytes
  end
  return buckets
end
