-- flame.data: the Dataset protocol, TensorDataset, DataLoader with PyTorch's default collate, and the data
-- sets FashionMNIST and ImageFolder. The readers are C (src/lua/ldata.c: read_idx, _listdir).
--
-- A dataset is any value with a length (`#ds`, through __len) and a method `get(i)` for 1-based i. It may also
-- have `get_batch(idx)` (idx an i64 tensor of 1-based indices) returning a whole collated batch at once; the
-- DataLoader then uses it instead of get + collate (TensorDataset and FashionMNIST do: one index_select per
-- tensor instead of a stack of batch_size rows).
local flame = ...
local data = flame.data

local function class(name)
  local c = {}
  c.__index = c
  c.__name = name
  return c
end

local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fname .. ": options must be a table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (options: %s)", fname, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end
data._check_opts = check_opts

-- "[2, 3]", as the engine's messages write shapes
local function shape_str(t)
  local d = {}
  for k = 1, t:dim() do d[k] = tostring(t.shape[k]) end
  return "[" .. table.concat(d, ", ") .. "]"
end
data._shape_str = shape_str

-- ---- Dataset: an optional base class for the protocol (as torch.utils.data.Dataset) ----
-- local MyData = flame.data.Dataset:extend("MyData"); function MyData:__init(...) end; function MyData:__len() end;
-- function MyData:get(i) end. Cls(...) makes an instance and calls __init. Metamethods are read raw from the
-- metatable, so extend copies the base's __len and __tostring into each class (a class's own definitions win).
local Dataset = class("Dataset")
data.Dataset = Dataset
local function class_of(self) return getmetatable(self).__name end
function Dataset:extend(name)
  if type(name) ~= "string" then error("Dataset:extend: expected a class name (a string), got " .. type(name), 2) end
  local cls = class(name)
  cls.__len, cls.__tostring = rawget(self, "__len"), rawget(self, "__tostring")
  return setmetatable(cls, {__index = self, __call = function(c, ...) return c:new(...) end,
    __tostring = function() return "class " .. name end})
end
function Dataset:new(...)
  local o = setmetatable({}, self)
  o:__init(...)
  return o
end
function Dataset:__init() end
function Dataset.__len(self)
  error(string.format("%s: __len is not implemented (define %s:__len)", class_of(self), class_of(self)), 2)
end
function Dataset:get()
  error(string.format("%s: get(i) is not implemented (define %s:get)", class_of(self), class_of(self)), 2)
end
function Dataset.__tostring(self) return string.format("%s(%d samples)", class_of(self), #self) end

-- ---- TensorDataset(t1, t2, ...): sample i is {t1[i], t2[i], ...} ----
local TensorDataset = class("TensorDataset")
function TensorDataset:__len() return self.n end
function TensorDataset:get(i)
  if math.type(i) ~= "integer" or i < 1 or i > self.n then
    error(string.format("TensorDataset: index %s out of range 1..%d", tostring(i), self.n), 2)
  end
  local s = {}
  for k, t in ipairs(self.tensors) do s[k] = t[i] end
  return s
end
function TensorDataset:get_batch(idx)
  local s = {}
  for k, t in ipairs(self.tensors) do s[k] = t:index_select(1, idx:to(t.device)) end
  return s
end
function data.TensorDataset(...)
  local ts = table.pack(...)
  if ts.n == 0 then error("TensorDataset: needs at least one tensor", 2) end
  for k = 1, ts.n do
    if not flame.is_tensor(ts[k]) then
      error(string.format("TensorDataset: argument %d is a %s, not a tensor", k, type(ts[k])), 2)
    end
    if ts[k]:dim() == 0 then error(string.format("TensorDataset: tensor %d is 0-dim (samples run along dim 1)", k), 2) end
    if ts[k].shape[1] ~= ts[1].shape[1] then
      error(string.format("TensorDataset: tensor %d has %d samples (dim 1), tensor 1 has %d", k, ts[k].shape[1],
                          ts[1].shape[1]), 2)
    end
  end
  return setmetatable({tensors = {table.unpack(ts, 1, ts.n)}, n = ts[1].shape[1]}, TensorDataset)
end

-- ---- default collate: PyTorch's default_collate rules ----
-- tensors -> stacked along a new dim 1; integers -> i64 tensor; other numbers -> f64 tensor (PyTorch's
-- float64); booleans -> bool tensor; strings -> the list as it is; tables -> collated field by field (arrays
-- position by position), recursively.
local function collate(samples, path)
  local first = samples[1]
  local ty = type(first)
  for k = 2, #samples do
    if type(samples[k]) ~= ty or flame.is_tensor(samples[k]) ~= flame.is_tensor(first) then
      error(string.format("DataLoader: collate: sample %d%s is a %s, sample 1 a %s", k, path,
                          flame.is_tensor(samples[k]) and "tensor" or type(samples[k]),
                          flame.is_tensor(first) and "tensor" or ty), 0)
    end
  end
  if flame.is_tensor(first) then
    for k = 2, #samples do
      local a, b = first.shape, samples[k].shape
      local same = #a == #b
      for d = 1, #a do same = same and a[d] == b[d] end
      if not same then
        error(string.format("DataLoader: collate: sample %d%s has shape %s, sample 1 has %s (stack needs equal shapes)",
                            k, path, shape_str(samples[k]), shape_str(first)), 0)
      end
    end
    return flame.stack(samples, 1)
  elseif ty == "number" then
    local int = true
    for _, v in ipairs(samples) do int = int and math.type(v) == "integer" end
    return flame.tensor(samples, {dtype = int and "i64" or "f64"})
  elseif ty == "boolean" then
    return flame.tensor(samples, {dtype = "bool"})
  elseif ty == "string" then
    return {table.unpack(samples)}
  elseif ty == "table" then
    local out = {}
    for key in pairs(first) do
      local col = {}
      for k, s in ipairs(samples) do
        if s[key] == nil then
          error(string.format("DataLoader: collate: sample %d%s has no field %s (sample 1 has)", k, path, tostring(key)), 0)
        end
        col[k] = s[key]
      end
      out[key] = collate(col, path .. "." .. tostring(key))
    end
    return out
  end
  error(string.format("DataLoader: collate: cannot batch a %s (sample 1%s)", ty, path), 0)
end
data.default_collate = function(samples) return collate(samples, "") end

-- ---- DataLoader(ds, {batch_size = 1, shuffle = false, drop_last = false, collate, device}) ----
-- shuffle draws one flame.randperm per pass from flame's seeded generator: under flame.manual_seed the order of
-- every epoch is reproducible. device moves each batch (every tensor in it) with :to(device); on CUDA that copy
-- goes through the device's pinned staging ring (cuda/staging.cu) and is queued without waiting for the GPU, so
-- building the next batch on the host overlaps the compute already queued.
local DataLoader = class("DataLoader")
local loader_keys = {batch_size = true, shuffle = true, drop_last = true, collate = true, device = true, sampler = true}

function data.DataLoader(ds, opts)
  opts = check_opts("DataLoader", opts, loader_keys)
  local mt = type(ds) == "table" and getmetatable(ds)
  if type(ds) ~= "table" or type(ds.get) ~= "function" or not (mt and mt.__len) then
    error("DataLoader: the dataset must be a table with __len and get(i) (the Dataset protocol), got a " .. type(ds), 2)
  end
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then
    error("DataLoader: batch_size must be a positive integer, got " .. tostring(bs), 2)
  end
  if opts.collate ~= nil and type(opts.collate) ~= "function" then
    error("DataLoader: collate must be a function, got a " .. type(opts.collate), 2)
  end
  local s = opts.sampler
  if s ~= nil and not (type(s) == "table" and type(s.indices) == "function") then
    error("DataLoader: sampler must have an indices() method (e.g. flame.data.DistributedSampler), got a " .. type(s), 2)
  end
  if s ~= nil and opts.shuffle then error("DataLoader: sampler and shuffle are mutually exclusive (the sampler orders)", 2) end
  return setmetatable({dataset = ds, batch_size = bs, shuffle = opts.shuffle and true or false,
                       drop_last = opts.drop_last and true or false, collate = opts.collate,
                       device = opts.device, sampler = s}, DataLoader)
end

function DataLoader:__len()
  local n = self.sampler and #self.sampler or #self.dataset
  if self.drop_last then return n // self.batch_size end
  return (n + self.batch_size - 1) // self.batch_size
end

local function to_device(v, device)
  if flame.is_tensor(v) then return v:to(device) end
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = to_device(x, device) end
    return out
  end
  return v
end

-- The batch of positions first .. last of order (a Lua array of 1-based indices, or nil for 1..n).
function DataLoader:_batch(order, first, last)
  local ds = self.dataset
  local batch
  if ds.get_batch and not self.collate then
    local idx
    if order then idx = order:narrow(1, first, last - first + 1)
    else idx = flame.arange(first, last + 1, {dtype = "i64"}) end
    batch = ds:get_batch(idx)
  else
    local samples = {}
    for p = first, last do samples[#samples + 1] = ds:get(order and order[p]:item() or p) end
    batch = (self.collate or data.default_collate)(samples)
  end
  if self.device then batch = to_device(batch, self.device) end
  return batch
end

-- for batch in loader:iter() do ... end: one pass (an epoch), reshuffled on each call.
function DataLoader:iter()
  local n, bs = #self.dataset, self.batch_size
  local order = self.shuffle and n > 0 and flame.randperm(n, {dtype = "i64"}) or nil
  if self.sampler then
    order = self.sampler:indices()
    n = order:numel()
  end
  local nb, pos = #self, 0
  return function()
    if pos >= nb then return nil end
    pos = pos + 1
    local first = (pos - 1) * bs + 1
    return self:_batch(order, first, math.min(first + bs - 1, n))
  end
end

-- for i, batch in loader:enumerate() do ... end: the same with the batch's 1-based number.
function DataLoader:enumerate()
  local it, i = self:iter(), 0
  return function()
    local b = it()
    if b == nil then return nil end
    i = i + 1
    return i, b
  end
end

-- ---- DistributedSampler(ds, {num_replicas, rank, shuffle = true, seed = 0, drop_last = false}) ----
-- PyTorch's: each of num_replicas ranks (default: flame.distributed's world) gets every num_replicas-th index of
-- one permutation that all ranks draw alike (seeded by seed + epoch, without touching the global generator's
-- stream), padded by repeating its start so every rank has the same count (or cut, with drop_last). Call
-- set_epoch(e) before each epoch to reshuffle. Pass it as DataLoader's sampler.
local DistributedSampler = class("DistributedSampler")
function data.DistributedSampler(ds, opts)
  opts = check_opts("DistributedSampler", opts, {num_replicas = true, rank = true, shuffle = true, seed = true,
                                                 drop_last = true})
  local R = opts.num_replicas or flame.distributed.get_world_size()
  local rank = opts.rank or flame.distributed.get_rank()
  if math.type(R) ~= "integer" or R < 1 then error("DistributedSampler: num_replicas must be a positive integer", 2) end
  if math.type(rank) ~= "integer" or rank < 0 or rank >= R then
    error(string.format("DistributedSampler: rank %s must be in 0..%d (ranks are 0-based)", tostring(rank), R - 1), 2)
  end
  local n = #ds
  local drop = opts.drop_last and true or false
  local per = (drop and n % R ~= 0) and math.ceil((n - R) / R) or (n + R - 1) // R
  return setmetatable({n = n, num_replicas = R, rank = rank, shuffle = opts.shuffle ~= false, seed = opts.seed or 0,
                       drop_last = drop, num_samples = per, total_size = per * R, epoch = 0}, DistributedSampler)
end
function DistributedSampler:__len() return self.num_samples end
function DistributedSampler:set_epoch(e) self.epoch = e end
-- indices() -> i64 tensor of this rank's 1-based dataset indices for the epoch
function DistributedSampler:indices()
  local idx
  if self.shuffle then
    local seed, offset = flame.autograd._rng_state()
    flame.manual_seed(self.seed + self.epoch)
    idx = flame.randperm(self.n, {dtype = "i64"})
    flame.autograd._set_rng_state(seed, offset)
  else
    idx = flame.arange(1, self.n + 1, {dtype = "i64"})
  end
  if self.total_size > self.n then -- pad with the start, repeated as often as needed
    local parts, have = {idx}, self.n
    while have < self.total_size do
      local k = math.min(self.n, self.total_size - have)
      parts[#parts + 1] = idx:narrow(1, 1, k)
      have = have + k
    end
    idx = flame.cat(parts)
  else
    idx = idx:narrow(1, 1, self.total_size)
  end
  -- every num_replicas-th position from rank + 1 (idx holds 1-based dataset indices, as randperm gives them)
  local pick = flame.arange(self.rank + 1, self.total_size + 1, self.num_replicas, {dtype = "i64"})
  return idx:index_select(1, pick)
end

-- ---- FashionMNIST(root, {train = true}) ----
-- Looks in root, else $FLAME_DATASETS/fashion-mnist, else /usr/share/datasets/fashion-mnist (Debian's
-- dataset-fashion-mnist) for {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. images: [N, 1, 28, 28] f32 in
-- [0, 1]; labels: [N] i64, 1-based (the file's class c is c + 1), as cross_entropy's targets.
local FashionMNIST = class("FashionMNIST")
FashionMNIST.classes = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                        "Ankle boot"}
function FashionMNIST:__len() return self.n end
function FashionMNIST:get(i)
  if math.type(i) ~= "integer" or i < 1 or i > self.n then
    error(string.format("FashionMNIST: index %s out of range 1..%d", tostring(i), self.n), 2)
  end
  return {self.images[i], self.labels[i]}
end
function FashionMNIST:get_batch(idx) return {self.images:index_select(1, idx), self.labels:index_select(1, idx)} end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function data.FashionMNIST(root, opts)
  opts = check_opts("FashionMNIST", opts, {train = true})
  local train = opts.train == nil or opts.train
  local prefix = train and "train" or "t10k"
  local dirs = {}
  if root then dirs[1] = root
  else
    local env = os.getenv("FLAME_DATASETS")
    if env and env ~= "" then dirs[#dirs + 1] = env .. "/fashion-mnist" end
    dirs[#dirs + 1] = "/usr/share/datasets/fashion-mnist"
  end
  local function find(base)
    for _, d in ipairs(dirs) do
      for _, name in ipairs({base .. ".gz", base}) do
        if exists(d .. "/" .. name) then return d .. "/" .. name end
      end
    end
    error(string.format("FashionMNIST: no %s(.gz) in %s (install Debian's dataset-fashion-mnist, set "
                        .. "FLAME_DATASETS, or pass the folder)", base, table.concat(dirs, " or ")), 3)
  end
  local images = data.read_idx(find(prefix .. "-images-idx3-ubyte"), {dtype = "f32"})
  local labels = data.read_idx(find(prefix .. "-labels-idx1-ubyte"), {dtype = "i64"})
  if images:dim() ~= 3 or labels:dim() ~= 1 or images.shape[1] ~= labels.shape[1] then
    error(string.format("FashionMNIST: images %s and labels %s do not match ([N, 28, 28] and [N])",
                        shape_str(images), shape_str(labels)), 2)
  end
  local n = labels.shape[1]
  return setmetatable({images = images:div(255):unsqueeze(2), labels = labels + 1, n = n, train = train}, FashionMNIST)
end

-- ---- ImageFolder(root, {size, channels = 3}) ----
-- root/<class>/<image>: classes are the subfolders in byte order, labels their 1-based positions; the images are
-- the .png/.jpg/.jpeg files (any case) of each, in byte order. get(i) loads {image [C, H, W] f32, label (an
-- integer)} through flame.image.load (size resizes, as there).
local ImageFolder = class("ImageFolder")
function ImageFolder:__len() return #self.samples end
function ImageFolder:get(i)
  local s = self.samples[i]
  if not s then error(string.format("ImageFolder: index %s out of range 1..%d", tostring(i), #self.samples), 2) end
  return {flame.image.load(s[1], {size = self.size, channels = self.channels}), s[2]}
end

function data.ImageFolder(root, opts)
  opts = check_opts("ImageFolder", opts, {size = true, channels = true})
  if type(root) ~= "string" then error("ImageFolder: root must be a folder path, got a " .. type(root), 2) end
  local ok, entries = pcall(data._listdir, root)
  if not ok then error("ImageFolder: " .. entries, 2) end
  local self = {root = root, classes = {}, class_to_idx = {}, samples = {}, size = opts.size,
                channels = opts.channels or 3}
  for _, e in ipairs(entries) do
    if e.dir then
      local label = #self.classes + 1
      self.classes[label] = e.name
      self.class_to_idx[e.name] = label
      for _, f in ipairs(data._listdir(root .. "/" .. e.name)) do
        local ext = f.name:match("%.([^.]+)$")
        ext = ext and ext:lower()
        if not f.dir and (ext == "png" or ext == "jpg" or ext == "jpeg") then
          self.samples[#self.samples + 1] = {root .. "/" .. e.name .. "/" .. f.name, label}
        end
      end
    end
  end
  if #self.classes == 0 then error("ImageFolder: " .. root .. " has no class subfolders", 2) end
  return setmetatable(self, ImageFolder)
end
