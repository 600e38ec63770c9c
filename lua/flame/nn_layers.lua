-- flame.nn layers: Linear, Conv*, ConvTranspose*, norms, Embedding, Dropout, activations, Flatten,
-- Upsample and MultiheadAttention, each a thin module over flame.F with PyTorch's parameter names,
-- shapes, default initialisation (torch.nn's reset_parameters) and repr.
local flame = ...
local nn = flame.nn
local F = flame.F
local init = nn.init
local Module = nn.Module
local NIL = nn._NIL

-- self.weight, self.bias without the __index calls (nn_base.lua: a module's fields, NIL for a registered nil).
local function weight_bias(self)
  local f = self._fields
  local w, b = f.weight, f.bias
  if w == nil or b == nil then return self.weight, self.bias end -- not a field: the class's, or nil
  if w == NIL then w = nil end
  if b == NIL then b = nil end
  return w, b
end

-- Reads an options table against the keys a constructor knows; a typo is an error with the known keys.
local function options(who, o, keys)
  if o == nil then return {} end
  if type(o) ~= "table" then error(who .. ": options must be a table, got " .. type(o), 3) end
  for k in pairs(o) do
    if not keys[k] then
      local known = {}
      for name in pairs(keys) do known[#known + 1] = name end
      table.sort(known)
      error(string.format("%s: unknown option '%s' (known: %s)", who, tostring(k), table.concat(known, ", ")), 3)
    end
  end
  return o
end

local function posint(who, name, v)
  if math.type(v) ~= "integer" or v < 1 then
    error(string.format("%s: %s must be a positive integer, got %s", who, name, tostring(v)), 3)
  end
  return v
end

local function factory(o) return {dtype = o.dtype, device = o.device} end
local function param(shape, o) return nn.Parameter(flame.empty(shape, factory(o))) end

-- PyTorch's repr of a bool and of a size tuple ((3,) for one dim).
local function pybool(b) return b and "True" or "False" end
local function tuple(t)
  if #t == 1 then return "(" .. t[1] .. ",)" end
  return "(" .. table.concat(t, ", ") .. ")"
end
local function pyfloat(x)
  if x == nil then return "None" end
  local s
  for prec = 1, 17 do -- the shortest form that reads back, as Python's repr
    s = string.format("%." .. prec .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.eni]") then s = s .. ".0" end
  return s
end

-- A size option: a number for every spatial dim, or a table of nd numbers.
local function ntuple(who, name, v, nd)
  if type(v) == "number" then
    local t = {}
    for i = 1, nd do t[i] = v end
    return t
  end
  if type(v) == "table" and #v == nd then
    local t = {}
    for i = 1, nd do t[i] = v[i] end
    return t
  end
  error(string.format("%s: %s must be a number or a table of %d numbers, got %s", who, name, nd, tostring(v)), 3)
end

-- PyTorch's reset_parameters for Linear and Conv: kaiming_uniform_(a = sqrt(5)) for the weight,
-- uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
local function reset_weight_bias(w, b)
  init.kaiming_uniform_(w, {a = math.sqrt(5)})
  if b then
    local fan_in = init.calculate_fan_in_and_fan_out(w)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(b, -bound, bound)
  end
end

---------------------------------------------------------------------------------------------------
-- Linear(in_features, out_features, {bias = true, device, dtype}): weight [out, in], bias [out].
local Linear = Module:extend("Linear")
nn.Linear = Linear
function Linear:__init(inf, outf, opts)
  opts = options("Linear", opts, {bias = true, device = true, dtype = true})
  self.in_features = posint("Linear", "in_features", inf)
  self.out_features = posint("Linear", "out_features", outf)
  self.weight = param({outf, inf}, opts)
  self:register_parameter("bias", opts.bias ~= false and param({outf}, opts) or nil)
  self:reset_parameters()
end
function Linear:reset_parameters() reset_weight_bias(self.weight, self.bias) end
function Linear:forward(x) return F.linear(x, weight_bias(self)) end
function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
    pybool(self.bias ~= nil))
end

---------------------------------------------------------------------------------------------------
-- Conv1d/2d/3d(in, out, kernel_size, {stride, padding, dilation, groups, bias, padding_mode, device, dtype})
-- and ConvTranspose1d/2d/3d(..., {stride, padding, output_padding, groups, bias, dilation, device, dtype}).
-- weight [out, in / groups, *k] (transposed: [in, out / groups, *k]). padding: sizes, "same" (stride 1) or
-- "valid"; padding_mode "zeros" (the convolution pads), or "reflect", "replicate", "circular": F.pad first
-- with the same amounts (PyTorch's _reversed_padding_repeated_twice), then an unpadded convolution.
local conv_keys = {stride = true, padding = true, dilation = true, groups = true, bias = true, padding_mode = true,
  device = true, dtype = true}
local tconv_keys = {stride = true, padding = true, output_padding = true, dilation = true, groups = true,
  bias = true, padding_mode = true, device = true, dtype = true}
local padding_modes = {zeros = true, reflect = true, replicate = true, circular = true}

-- The F.pad amounts (last dim first, before and after) for a padding mode other than zeros.
local function reversed_padding(self, nd)
  local pads = {}
  for i = 1, nd do
    local before, after
    if self.padding == "same" then
      local total = self.dilation[i] * (self.kernel_size[i] - 1)
      before = total // 2
      after = total - before
    elseif self.padding == "valid" then
      before, after = 0, 0
    else
      before, after = self.padding[i], self.padding[i]
    end
    pads[2 * (nd - i) + 1], pads[2 * (nd - i) + 2] = before, after
  end
  return pads
end

-- F.conv*'s options for a convolution module with zero padding, cached per module (weakly): a forward built a
-- table of four tables, which F.conv* then read back, on every call (0.8 us of a 16x16 convolution's 2.3). A plan
-- serves while the fields it was made from hold the same values, the size tables compared element by element so
-- that edits in place count too. Its options say the same to F.conv*: a size table of nd equal integers as that
-- integer, the default stride, dilation and groups (1) left out.
local conv_plans = setmetatable({}, {__mode = "k"})
local CONV_TUPLES = {"stride", "dilation", "padding", "output_padding"}

-- The plan for fields f, or nil where the general path must run (a padding mode, a size that is not a table of nd
-- integers or a padding string, groups that is not an integer). plan.tables: the size tables it read, their
-- values in plan.values (nd each, in order).
local function conv_plan(f, nd, transposed)
  if f.padding_mode ~= "zeros" or math.type(f.groups) ~= "integer" then return nil end
  local plan = {groups = f.groups, opts = {}, tables = {}, values = {}}
  if f.groups ~= 1 then plan.opts.groups = f.groups end
  for _, key in ipairs(CONV_TUPLES) do
    local t = f[key]
    if key == "padding" and (t == "same" or t == "valid") then
      plan[key], plan.opts.padding = t, t
    elseif key ~= "output_padding" or transposed then
      if type(t) ~= "table" or #t ~= nd then return nil end
      for i = 1, nd do
        if math.type(t[i]) ~= "integer" then return nil end
        plan.values[#plan.values + 1] = t[i]
      end
      plan[key] = t
      plan.tables[#plan.tables + 1] = t
      local uniform = true
      for i = 2, nd do uniform = uniform and t[i] == t[1] end
      local v = uniform and t[1] or t
      if v ~= ((key == "stride" or key == "dilation") and 1 or 0) then plan.opts[key] = v end
    end
  end
  return plan
end

-- Whether plan still says what fields f do.
local function conv_plan_holds(plan, f, nd)
  if f.stride ~= plan.stride or f.dilation ~= plan.dilation or f.padding ~= plan.padding or f.groups ~= plan.groups
    or f.output_padding ~= plan.output_padding or f.padding_mode ~= "zeros" then return false end
  local tables, values = plan.tables, plan.values
  for j = 1, #tables do
    local t, at = tables[j], (j - 1) * nd
    for i = 1, nd do if t[i] ~= values[at + i] then return false end end
  end
  return true
end

local function make_conv(name, nd, transposed)
  local C = Module:extend(name)
  local fname = (transposed and "conv_transpose" or "conv") .. nd .. "d"
  function C:__init(cin, cout, k, opts)
    opts = options(name, opts, transposed and tconv_keys or conv_keys)
    self.in_channels = posint(name, "in_channels", cin)
    self.out_channels = posint(name, "out_channels", cout)
    self.kernel_size = ntuple(name, "kernel_size", k, nd)
    self.stride = ntuple(name, "stride", opts.stride or 1, nd)
    if not transposed and (opts.padding == "same" or opts.padding == "valid") then
      self.padding = opts.padding
      if opts.padding == "same" then
        for i = 1, nd do
          if self.stride[i] ~= 1 then error(name .. ": padding='same' is not supported for strided convolutions", 2) end
        end
      end
    elseif type(opts.padding) == "string" then
      error(string.format("%s: padding must be sizes%s, got '%s'", name, transposed and "" or ", 'same' or 'valid'",
        opts.padding), 2)
    else
      self.padding = ntuple(name, "padding", opts.padding or 0, nd)
    end
    self.dilation = ntuple(name, "dilation", opts.dilation or 1, nd)
    self.padding_mode = opts.padding_mode or "zeros"
    if not padding_modes[self.padding_mode] then
      error(string.format("%s: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got %s", name,
        tostring(self.padding_mode)), 2)
    end
    if transposed and self.padding_mode ~= "zeros" then
      error(string.format("%s: only 'zeros' padding_mode is supported, got '%s'", name, self.padding_mode), 2)
    end
    if transposed then self.output_padding = ntuple(name, "output_padding", opts.output_padding or 0, nd) end
    local g = posint(name, "groups", opts.groups or 1)
    self.groups = g
    if cin % g ~= 0 then error(string.format("%s: in_channels (%d) must be divisible by groups (%d)", name, cin, g), 2) end
    if cout % g ~= 0 then error(string.format("%s: out_channels (%d) must be divisible by groups (%d)", name, cout, g), 2) end
    local shape = transposed and {cin, cout // g} or {cout, cin // g}
    for i = 1, nd do shape[#shape + 1] = posint(name, "kernel_size", self.kernel_size[i]) end
    self.weight = param(shape, opts)
    self:register_parameter("bias", opts.bias ~= false and param({cout}, opts) or nil)
    if self.padding_mode ~= "zeros" then self._reversed_padding_repeated_twice = reversed_padding(self, nd) end
    self:reset_parameters()
  end
  function C:reset_parameters() reset_weight_bias(self.weight, self.bias) end
  local fn = F[fname]
  -- Any other case (a padding mode, fields a script replaced by something else): the options built per call.
  local function forward_general(self, x)
    local o = {stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups}
    if transposed then o.output_padding = self.output_padding end
    if self.padding_mode ~= "zeros" then
      x = F.pad(x, self._reversed_padding_repeated_twice, {mode = self.padding_mode})
      o.padding = 0
    end
    return fn(x, self.weight, self.bias, o)
  end
  function C:forward(x)
    local f = self._fields
    local plan = conv_plans[self]
    if not (plan and conv_plan_holds(plan, f, nd)) then
      plan = conv_plan(f, nd, transposed)
      if not plan then return forward_general(self, x) end
      conv_plans[self] = plan
    end
    local w, b = weight_bias(self)
    return fn(x, w, b, plan.opts)
  end
  local function all(t, v)
    for _, x in ipairs(t) do if x ~= v then return false end end
    return true
  end
  function C:extra_repr()
    local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
      tuple(self.kernel_size), tuple(self.stride))
    if type(self.padding) == "string" then s = s .. ", padding=" .. self.padding
    elseif not all(self.padding, 0) then s = s .. ", padding=" .. tuple(self.padding) end
    if not all(self.dilation, 1) then s = s .. ", dilation=" .. tuple(self.dilation) end
    if transposed and not all(self.output_padding, 0) then s = s .. ", output_padding=" .. tuple(self.output_padding) end
    if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
    if self.bias == nil then s = s .. ", bias=False" end
    if self.padding_mode ~= "zeros" then s = s .. ", padding_mode=" .. self.padding_mode end
    return s
  end
  nn[name] = C
end
for nd = 1, 3 do
  make_conv("Conv" .. nd .. "d", nd, false)
  make_conv("ConvTranspose" .. nd .. "d", nd, true)
end

---------------------------------------------------------------------------------------------------
-- Norms. normalized_shape: a number or a table of numbers (the trailing dims).
local function shape_list(who, s)
  if type(s) == "number" then return {posint(who, "normalized_shape", s)} end
  if type(s) == "table" or (flame.is_tensor(s) == false and getmetatable(s) == "flame.Shape") then
    local t = {}
    for i = 1, #s do t[i] = posint(who, "normalized_shape", s[i]) end
    if #t == 0 then error(who .. ": normalized_shape must not be empty", 3) end
    return t
  end
  error(who .. ": normalized_shape must be a number or a table of numbers, got " .. type(s), 3)
end

-- LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true, bias = true, device, dtype})
local LayerNorm = Module:extend("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:__init(shape, opts)
  opts = options("LayerNorm", opts, {eps = true, elementwise_affine = true, bias = true, device = true, dtype = true})
  self.normalized_shape = shape_list("LayerNorm", shape)
  self.eps = opts.eps or 1e-5
  self.elementwise_affine = opts.elementwise_affine ~= false
  if self.elementwise_affine then
    self.weight = init.ones_(param(self.normalized_shape, opts))
    self:register_parameter("bias", opts.bias ~= false and init.zeros_(param(self.normalized_shape, opts)) or nil)
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
end
function LayerNorm:forward(x) return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) end
function LayerNorm:extra_repr()
  return string.format("%s, eps=%s, elementwise_affine=%s", tuple(self.normalized_shape), pyfloat(self.eps),
    pybool(self.elementwise_affine))
end

-- GroupNorm(num_groups, num_channels, {eps = 1e-5, affine = true, device, dtype})
local GroupNorm = Module:extend("GroupNorm")
nn.GroupNorm = GroupNorm
function GroupNorm:__init(groups, channels, opts)
  opts = options("GroupNorm", opts, {eps = true, affine = true, device = true, dtype = true})
  self.num_groups = posint("GroupNorm", "num_groups", groups)
  self.num_channels = posint("GroupNorm", "num_channels", channels)
  if channels % groups ~= 0 then
    error(string.format("GroupNorm: num_channels (%d) must be divisible by num_groups (%d)", channels, groups), 2)
  end
  self.eps = opts.eps or 1e-5
  self.affine = opts.affine ~= false
  if self.affine then
    self.weight = init.ones_(param({channels}, opts))
    self.bias = init.zeros_(param({channels}, opts))
  else
    self:register_parameter("weight", nil)
    self:register_parameter("bias", nil)
  end
end
-- (num_groups, weight, bias, eps): F.group_norm's arguments after x, read as weight_bias does.
local function group_norm_args(self)
  local f = self._fields
  local g, eps = f.num_groups, f.eps
  if g == nil or g == NIL or eps == nil or eps == NIL then g, eps = self.num_groups, self.eps end
  local w, b = weight_bias(self)
  return g, w, b, eps
end
function GroupNorm:forward(x) return F.group_norm(x, group_norm_args(self)) end
-- forward_silu(x): self(x):silu() in one pass for inference (F.group_norm_silu), the two ops under autograd.
function GroupNorm:forward_silu(x) return F.group_norm_silu(x, group_norm_args(self)) end
function GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%s, affine=%s", self.num_groups, self.num_channels, pyfloat(self.eps),
    pybool(self.affine))
end

-- RMSNorm(normalized_shape, {eps, elementwise_affine = true, device, dtype}). eps nil is PyTorch's
-- None: the machine epsilon of the input's dtype.
local FINFO_EPS = {f32 = 1.1920928955078125e-07, f64 = 2.220446049250313e-16, f16 = 0.0009765625, bf16 = 0.0078125}
local RMSNorm = Module:extend("RMSNorm")
nn.RMSNorm = RMSNorm
function RMSNorm:__init(shape, opts)
  opts = options("RMSNorm", opts, {eps = true, elementwise_affine = true, device = true, dtype = true})
  self.normalized_shape = shape_list("RMSNorm", shape)
  self.eps = opts.eps
  self.elementwise_affine = opts.elementwise_affine ~= false
  if self.elementwise_affine then
    self.weight = init.ones_(param(self.normalized_shape, opts))
  else
    self:register_parameter("weight", nil)
  end
end
function RMSNorm:forward(x)
  return F.rms_norm(x, self.normalized_shape, self.weight, self.eps or FINFO_EPS[x.dtype] or 1e-5)
end
function RMSNorm:extra_repr()
  return string.format("%s, eps=%s, elementwise_affine=%s", tuple(self.normalized_shape), pyfloat(self.eps),
    pybool(self.elementwise_affine))
end

---------------------------------------------------------------------------------------------------
-- Embedding(num_embeddings, embedding_dim, {padding_idx, max_norm, norm_type = 2, device, dtype}):
-- weight [n, d] ~ normal(0, 1); ids are 1-based. padding_idx (1-based, negative from the end, kept
-- positive as PyTorch does) is a zero row that gets no gradient; max_norm renormalises, in place and
-- without recording, every looked-up row whose norm_type norm exceeds it (F.embedding's max_norm).
local Embedding = Module:extend("Embedding")
nn.Embedding = Embedding
function Embedding:__init(n, d, opts)
  opts = options("Embedding", opts, {padding_idx = true, max_norm = true, norm_type = true, device = true,
    dtype = true})
  self.num_embeddings = posint("Embedding", "num_embeddings", n)
  self.embedding_dim = posint("Embedding", "embedding_dim", d)
  local p = opts.padding_idx
  if p ~= nil then
    if math.type(p) ~= "integer" or p == 0 or p > n or p < -n then
      error(string.format("Embedding: padding_idx must be in 1..%d or -%d..-1 (1-based), got %s", n, n,
        tostring(p)), 2)
    end
    self.padding_idx = p < 0 and n + 1 + p or p
  end
  if opts.max_norm ~= nil and type(opts.max_norm) ~= "number" then
    error("Embedding: max_norm must be a number, got " .. type(opts.max_norm), 2)
  end
  if opts.norm_type ~= nil and type(opts.norm_type) ~= "number" then
    error("Embedding: norm_type must be a number, got " .. type(opts.norm_type), 2)
  end
  self.max_norm, self.norm_type = opts.max_norm, opts.norm_type or 2
  self.weight = param({n, d}, opts)
  self:reset_parameters()
end
-- PyTorch's reset_parameters: normal(0, 1), then the padding row zeroed.
function Embedding:reset_parameters()
  init.normal_(self.weight)
  if self.padding_idx then
    flame.no_grad(function() self.weight:narrow(1, self.padding_idx, 1):zero_() end)
  end
end
function Embedding:forward(ids)
  return F.embedding(ids, self.weight, {padding_idx = self.padding_idx, max_norm = self.max_norm,
    norm_type = self.max_norm and self.norm_type or nil})
end
function Embedding:extra_repr()
  local s = string.format("%d, %d", self.num_embeddings, self.embedding_dim)
  if self.padding_idx then s = s .. ", padding_idx=" .. self.padding_idx end -- 1-based, as it was given
  if self.max_norm then s = s .. ", max_norm=" .. pyfloat(self.max_norm) end
  if self.norm_type ~= 2 then s = s .. ", norm_type=" .. pyfloat(self.norm_type) end
  return s
end

-- Dropout(p = 0.5): active in training mode only.
local Dropout = Module:extend("Dropout")
nn.Dropout = Dropout
function Dropout:__init(p, ...)
  if select("#", ...) > 0 then error("Dropout: takes (p)", 2) end
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p > 1 then
    error("Dropout: dropout probability has to be between 0 and 1, but got " .. tostring(p), 2)
  end
  self.p = p
end
function Dropout:forward(x) return F.dropout(x, self.p, self.training) end
function Dropout:extra_repr() return "p=" .. pyfloat(self.p) .. ", inplace=False" end

---------------------------------------------------------------------------------------------------
-- Activations and shape modules.
local function simple(name, fn, repr)
  local C = Module:extend(name)
  C.forward = fn
  if repr then C.extra_repr = repr end
  nn[name] = C
  return C
end
simple("ReLU", function(_, x) return x:relu() end)
simple("SiLU", function(_, x) return x:silu() end)
simple("Sigmoid", function(_, x) return x:sigmoid() end)
simple("Tanh", function(_, x) return x:tanh() end)
local Identity = simple("Identity", function(_, x) return x end)
function Identity:__init() end

-- GELU({approximate = "none" | "tanh"})
local GELU = simple("GELU", function(self, x) return x:gelu(self.approximate) end,
  function(self) return "approximate='" .. self.approximate .. "'" end)
function GELU:__init(opts)
  if type(opts) == "string" then opts = {approximate = opts} end
  opts = options("GELU", opts, {approximate = true})
  local a = opts.approximate or "none"
  if a ~= "none" and a ~= "tanh" then error("GELU: approximate must be 'none' or 'tanh', got " .. tostring(a), 2) end
  self.approximate = a
end

-- Flatten(start_dim = 2, end_dim = -1): 1-based dims (PyTorch's default start_dim = 1 is dim 2 here).
local Flatten = simple("Flatten", function(self, x) return x:flatten(self.start_dim, self.end_dim) end,
  function(self) return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end)
function Flatten:__init(start_dim, end_dim)
  self.start_dim, self.end_dim = start_dim or 2, end_dim or -1
end

-- Upsample({size | scale_factor, mode = "nearest", align_corners}): F.interpolate as a module.
local Upsample = simple("Upsample", function(self, x)
  return F.interpolate(x, {size = self.size, scale_factor = self.scale_factor, mode = self.mode,
    align_corners = self.align_corners})
end, function(self)
  local s = self.scale_factor and ("scale_factor=" .. (type(self.scale_factor) == "table" and
    tuple(self.scale_factor) or pyfloat(self.scale_factor))) or ("size=" .. (type(self.size) == "table" and
    tuple(self.size) or tostring(self.size)))
  return s .. ", mode=" .. self.mode -- PyTorch 1.13 prints the mode unquoted
end)
function Upsample:__init(opts)
  opts = options("Upsample", opts, {size = true, scale_factor = true, mode = true, align_corners = true})
  if (opts.size == nil) == (opts.scale_factor == nil) then
    error("Upsample: give exactly one of size and scale_factor", 2)
  end
  self.size, self.scale_factor = opts.size, opts.scale_factor
  self.mode = opts.mode or "nearest"
  self.align_corners = opts.align_corners
end

---------------------------------------------------------------------------------------------------
-- MultiheadAttention(embed_dim, num_heads, {bias = true, batch_first = true, dropout = 0, kdim, vdim,
-- device, dtype}). PyTorch's parameters: in_proj_weight [3E, E] and in_proj_bias [3E] (q, k, v
-- stacked), or q_proj_weight [E, E], k_proj_weight [E, kdim], v_proj_weight [E, vdim] when kdim or
-- vdim differ from E; out_proj (a Linear). Init as PyTorch: xavier_uniform_ in-projections, zero
-- biases, out_proj.weight as a Linear's.
local MHA = Module:extend("MultiheadAttention")
nn.MultiheadAttention = MHA
function MHA:__init(E, H, opts)
  local who = "MultiheadAttention"
  opts = options(who, opts, {bias = true, batch_first = true, dropout = true, kdim = true, vdim = true,
    device = true, dtype = true})
  self.embed_dim = posint(who, "embed_dim", E)
  self.num_heads = posint(who, "num_heads", H)
  if E % H ~= 0 then error(string.format("%s: embed_dim (%d) must be divisible by num_heads (%d)", who, E, H), 2) end
  self.head_dim = E // H
  self.kdim = opts.kdim or E
  self.vdim = opts.vdim or E
  self.batch_first = opts.batch_first ~= false
  self.dropout = opts.dropout or 0
  if type(self.dropout) ~= "number" or self.dropout < 0 or self.dropout > 1 then
    error(who .. ": dropout must be in [0, 1], got " .. tostring(self.dropout), 2)
  end
  self._qkv_same_embed_dim = self.kdim == E and self.vdim == E
  if self._qkv_same_embed_dim then
    self.in_proj_weight = param({3 * E, E}, opts)
    self:register_parameter("q_proj_weight", nil)
    self:register_parameter("k_proj_weight", nil)
    self:register_parameter("v_proj_weight", nil)
  else
    self:register_parameter("in_proj_weight", nil)
    self.q_proj_weight = param({E, E}, opts)
    self.k_proj_weight = param({E, posint(who, "kdim", self.kdim)}, opts)
    self.v_proj_weight = param({E, posint(who, "vdim", self.vdim)}, opts)
  end
  self:register_parameter("in_proj_bias", opts.bias ~= false and param({3 * E}, opts) or nil)
  self.out_proj = Linear(E, E, {bias = opts.bias ~= false, device = opts.device, dtype = opts.dtype})
  if self._qkv_same_embed_dim then
    init.xavier_uniform_(self.in_proj_weight)
  else
    init.xavier_uniform_(self.q_proj_weight)
    init.xavier_uniform_(self.k_proj_weight)
    init.xavier_uniform_(self.v_proj_weight)
  end
  if self.in_proj_bias then
    init.zeros_(self.in_proj_bias)
    init.zeros_(self.out_proj.bias)
  end
end

function MHA:extra_repr() return "" end

local mha_fwd_keys = {attn_mask = true, key_padding_mask = true, is_causal = true, need_weights = true,
  average_attn_weights = true}

-- [B, S, E] (or [S, B, E] without batch_first, or unbatched [S, E]) -> [B, H, S, D]
local function heads(x, B, S, H, D) return x:reshape(B, S, H, D):transpose(2, 3) end
-- the three E-wide blocks of t along dim (the packed q, k, v projections), as views of one split (its backward is
-- one cat, where three narrows cost 3 fills, 3 copies and 2 adds)
local function thirds(t, dim, E)
  local p = t:split(E, dim)
  return p[1], p[2], p[3]
end

-- forward(query, key, value, {attn_mask, key_padding_mask, is_causal, need_weights = false,
-- average_attn_weights = true}) returns the output and (with need_weights) the attention weights
-- [B, L, S] (averaged over heads) or [B, H, L, S]. Masks follow PyTorch's MultiheadAttention: a bool
-- attn_mask ([L, S] or [B * H, L, S]) and key_padding_mask ([B, S]) are true where attention is NOT
-- allowed; a float mask is added to the scores.
local MHA_FWD = "MultiheadAttention.forward"
local NO_OPTS = {} -- forward's options when none are given (only read)
local function need_tensor(what, t)
  if not flame.is_tensor(t) then error("MultiheadAttention: " .. what .. " must be a tensor, got " .. type(t), 3) end
end

function MHA:forward(query, key, value, opts, ...)
  local who = "MultiheadAttention"
  if select("#", ...) > 0 then error(who .. ": forward takes (query, key, value, opts)", 2) end
  key = key or query
  value = value or key
  opts = opts == nil and NO_OPTS or options(MHA_FWD, opts, mha_fwd_keys)
  need_tensor("query", query)
  need_tensor("key", key)
  need_tensor("value", value)
  local E, H, D = self.embed_dim, self.num_heads, self.head_dim
  -- self-attention (one tensor for all three) checks query only: the same answers, a third of the calls
  local self_attn = rawequal(query, key) and rawequal(key, value)
  local qd = query:dim()
  local unbatched = qd == 2
  if not unbatched and qd ~= 3 then
    error(string.format("%s: query must be 2-D (unbatched) or 3-D, got %d dims", who, qd), 2)
  end
  if not self_attn and (key:dim() ~= qd or value:dim() ~= qd) then
    error(string.format("%s: query, key and value must have the same number of dims, got %d, %d and %d", who,
      qd, key:dim(), value:dim()), 2)
  end
  local qe = query:size(-1)
  if qe ~= E then
    error(string.format("%s: query's last dim must be embed_dim = %d, got %d", who, E, qe), 2)
  end
  local kdim, vdim = self.kdim, self.vdim
  if (self_attn and (qe ~= kdim or qe ~= vdim)) or (not self_attn and (key:size(-1) ~= kdim or value:size(-1) ~= vdim)) then
    error(string.format("%s: key's and value's last dims must be kdim = %d and vdim = %d, got %d and %d", who,
      kdim, vdim, key:size(-1), value:size(-1)), 2)
  end
  if unbatched then
    query, key, value = query:unsqueeze(1), key:unsqueeze(1), value:unsqueeze(1)
  elseif not self.batch_first then
    query, key, value = query:transpose(1, 2), key:transpose(1, 2), value:transpose(1, 2)
  end
  local B, L = query:size(1), query:size(2)
  local S = self_attn and L or key:size(2)
  if not self_attn and (key:size(1) ~= B or value:size(1) ~= B or value:size(2) ~= S) then
    error(string.format("%s: key and value must match query's batch and each other's length", who), 2)
  end
  local q, k, v
  if self_attn and self._qkv_same_embed_dim then
    -- self-attention: one projection [B, L, 3E], then q, k and v as views of it (as PyTorch does)
    local qq, kk, vv = thirds(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3, E)
    q, k, v = heads(qq, B, L, H, D), heads(kk, B, S, H, D), heads(vv, B, S, H, D)
  else
    local wq, wk, wv
    if self._qkv_same_embed_dim then
      wq, wk, wv = thirds(self.in_proj_weight, 1, E)
    else
      wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
    end
    local bq, bk, bv
    if self.in_proj_bias then bq, bk, bv = thirds(self.in_proj_bias, 1, E) end
    q = heads(F.linear(query, wq, bq), B, L, H, D)
    k = heads(F.linear(key, wk, bk), B, S, H, D)
    v = heads(F.linear(value, wv, bv), B, S, H, D)
  end

  -- One mask for sdpa: bool true = allowed, or float added.
  local mask = opts.attn_mask
  if mask ~= nil then
    if not flame.is_tensor(mask) then error(who .. ": attn_mask must be a tensor", 2) end
    if mask:dim() == 2 then
      if mask:size(1) ~= L or mask:size(2) ~= S then
        error(string.format("%s: a 2-D attn_mask must be [%d, %d] (L, S), got [%d, %d]", who, L, S, mask:size(1),
          mask:size(2)), 2)
      end
    elseif mask:dim() == 3 then
      if mask:size(1) ~= B * H or mask:size(2) ~= L or mask:size(3) ~= S then
        error(string.format("%s: a 3-D attn_mask must be [%d, %d, %d] (batch * heads, L, S)", who, B * H, L, S), 2)
      end
      mask = mask:reshape(B, H, L, S)
    else
      error(who .. ": attn_mask must be 2-D or 3-D, got " .. mask:dim() .. " dims", 2)
    end
    if mask.dtype == "bool" then mask = mask:eq(0) end
  end
  local kpm = opts.key_padding_mask
  if kpm ~= nil then
    if not flame.is_tensor(kpm) or kpm:dim() ~= (unbatched and 1 or 2) then
      error(who .. ": key_padding_mask must be a [batch, S] tensor", 2)
    end
    if unbatched then kpm = kpm:unsqueeze(1) end
    if kpm:size(1) ~= B or kpm:size(2) ~= S then
      error(string.format("%s: key_padding_mask must be [%d, %d], got [%d, %d]", who, B, S, kpm:size(1),
        kpm:size(2)), 2)
    end
    kpm = kpm:reshape(B, 1, 1, S)
    if kpm.dtype == "bool" then
      local allowed = kpm:eq(0)
      if mask == nil then
        mask = allowed
      elseif mask.dtype == "bool" then
        mask = flame.where(allowed, mask, false)
      else
        mask = flame.where(allowed, mask, -math.huge)
      end
    else
      mask = mask == nil and kpm or mask:to(kpm.dtype) + kpm
    end
  end
  if mask ~= nil and mask.dtype ~= "bool" then mask = mask:to(q.dtype) end
  local p = self.training and self.dropout or 0
  local out, weights
  if opts.need_weights then
    -- The composed path (as PyTorch's with need_weights): the weights are needed anyway.
    local s = (q * (1 / math.sqrt(D))):matmul(k:transpose(3, 4))
    if opts.is_causal then
      local causal = flame.ones(L, S, {dtype = "bool", device = q.device}):tril()
      mask = mask == nil and causal or (mask.dtype == "bool" and flame.where(causal, mask, false) or
        flame.where(causal, mask, -math.huge))
    end
    if mask ~= nil then
      s = mask.dtype == "bool" and s:masked_fill(mask:eq(0), -math.huge) or s + mask
    end
    weights = s:softmax(-1)
    -- the attention-dropout mask (byte rule) of the SDPA path, so need_weights does not change the draw
    local attn = p > 0 and F._attention_dropout(weights, p) or weights
    out = attn:matmul(v)
    if opts.average_attn_weights ~= false then weights = weights:mean(2) end
    if unbatched then weights = weights:squeeze(1) end
  elseif mask == nil and not opts.is_causal then -- q, k and v are this function's own: no second round of checks
    q, k, v = flame._autocast_cast("lower", q, k, v)
    out = F._sdpa_checked(q, k, v, nil, nil, p > 0 and p or nil, 1 / math.sqrt(D))
  else
    out = F.scaled_dot_product_attention(q, k, v, {attn_mask = mask, causal = opts.is_causal or nil,
      dropout_p = p, training = self.training})
  end
  out = self.out_proj(out:transpose(2, 3):reshape(B, L, E))
  if unbatched then
    out = out:squeeze(1)
  elseif not self.batch_first then
    out = out:transpose(1, 2)
  end
  return out, weights
end

return flame
