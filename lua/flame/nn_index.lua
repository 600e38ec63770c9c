-- flame.F losses written as compositions of flame ops (each op has its own kernel and autograd, so these are
-- differentiable in every tensor argument): mse_loss, l1_loss, smooth_l1_loss, binary_cross_entropy_with_logits.
-- embedding and cross_entropy are C functions (src/lua/lnn_index.c): a deterministic backward and a fused kernel;
-- embedding's max_norm (an in-place renorm of the weight before the lookup) is added here.
local flame = ...
local F = flame.F

-- Reads the trailing reduction argument: nil, a string, or an options table with `reduction` and the given keys.
-- Returns the reduction and the options table (or {}).
local function options(fn, arg, keys)
  local opts = {}
  if type(arg) == "table" then
    for k in pairs(arg) do
      if k ~= "reduction" and not (keys and keys[k]) then
        error(string.format("%s: unknown option '%s'", fn, tostring(k)), 3)
      end
    end
    opts, arg = arg, arg.reduction
  end
  local r = arg == nil and "mean" or arg
  if r ~= "mean" and r ~= "sum" and r ~= "none" then
    error(string.format('%s: reduction must be "mean", "sum" or "none", got %s', fn,
      type(r) == "string" and ('"' .. r .. '"') or type(r)), 3)
  end
  return r, opts
end

local function reduce(l, r)
  if r == "mean" then return l:mean() elseif r == "sum" then return l:sum() end
  return l
end

local function check_pair(fn, a, b)
  if not flame.is_tensor(a) or not flame.is_tensor(b) then
    error(string.format("%s: expected two tensors, got %s and %s", fn, type(a), type(b)), 3)
  end
  if a.shape ~= b.shape then
    error(string.format("%s: input %s and target %s must have the same shape", fn, tostring(a.shape),
      tostring(b.shape)), 3)
  end
end

-- mse_loss(input, target, reduction?) = reduce((input - target)^2)
function F.mse_loss(a, b, reduction)
  check_pair("mse_loss", a, b)
  a, b = flame._autocast_cast("widen", a, b) -- losses run in f32 under autocast
  local r = options("mse_loss", reduction)
  local d = a - b
  return reduce(d * d, r)
end

-- l1_loss(input, target, reduction?) = reduce(|input - target|)
function F.l1_loss(a, b, reduction)
  check_pair("l1_loss", a, b)
  a, b = flame._autocast_cast("widen", a, b) -- losses run in f32 under autocast
  local r = options("l1_loss", reduction)
  return reduce((a - b):abs(), r)
end

-- smooth_l1_loss(input, target, reduction? or {reduction, beta = 1}): 0.5 d^2 / beta where |d| < beta,
-- else |d| - 0.5 beta (beta = 0: l1_loss).
function F.smooth_l1_loss(a, b, opts)
  check_pair("smooth_l1_loss", a, b)
  a, b = flame._autocast_cast("widen", a, b) -- losses run in f32 under autocast
  local r, o = options("smooth_l1_loss", opts, {beta = true})
  local beta = o.beta or 1
  if type(beta) ~= "number" or beta < 0 then
    error("smooth_l1_loss: beta must be a non-negative number, got " .. tostring(beta), 2)
  end
  local d = (a - b):abs()
  if beta == 0 then return reduce(d, r) end
  return reduce(flame.where(d:lt(beta), d * d * (0.5 / beta), d - 0.5 * beta), r)
end

-- binary_cross_entropy_with_logits(x, y, reduction? or {reduction, weight, pos_weight}):
--   l = w * ((1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)),
-- with softplus(z) = logsumexp(0, z): stable for any x, and its gradient (a softmax) is exact at x = 0.
function F.binary_cross_entropy_with_logits(x, y, opts)
  check_pair("binary_cross_entropy_with_logits", x, y)
  x, y = flame._autocast_cast("widen", x, y) -- losses run in f32 under autocast
  local r, o = options("binary_cross_entropy_with_logits", opts, {weight = true, pos_weight = true})
  for _, k in ipairs({"weight", "pos_weight"}) do
    if o[k] ~= nil and not flame.is_tensor(o[k]) then
      error(string.format("binary_cross_entropy_with_logits: %s must be a tensor, got %s", k, type(o[k])), 2)
    end
  end
  local sp = flame.stack({flame.zeros_like(x), -x}, -1):logsumexp(-1) -- softplus(-x)
  local l
  if o.pos_weight then
    l = (1 - y) * x + (1 + (o.pos_weight - 1) * y) * sp
  else
    l = (1 - y) * x + sp
  end
  if o.weight then l = l * o.weight end
  return reduce(l, r)
end

-- PyTorch's embedding_renorm_: every row that ids reference and whose norm_type norm exceeds max_norm is scaled
-- by max_norm / (norm + 1e-7), in place and without recording. The referenced rows are marked by an index_add_ of
-- ones (repeated ids mark a row once, as PyTorch's unique does), so unreferenced rows are multiplied by exactly 1.
local function embedding_renorm_(ids, weight, max_norm, norm_type)
  flame.no_grad(function()
    local flat = ids:reshape(-1)
    local hit = flame.zeros(weight:size(1), {device = weight.device})
    local ok, err = pcall(hit.index_add_, hit, 1, flat, flame.ones(flat:numel(), {device = weight.device}))
    if not ok then error("embedding (max_norm): " .. tostring(err), 0) end
    local norms = weight:norm(norm_type, 2, true)
    local over = flame.where(hit:gt(0):unsqueeze(2), norms:gt(max_norm), false)
    weight:mul_(flame.where(over, max_norm / (norms + 1e-7), 1))
  end)
end

-- embedding(ids, weight, {padding_idx, max_norm, norm_type = 2})
local embedding_c = F.embedding
function F.embedding(ids, weight, opts, ...)
  if type(opts) ~= "table" or (opts.max_norm == nil and opts.norm_type == nil) then
    return embedding_c(ids, weight, opts, ...)
  end
  local rest = {}
  for k, v in pairs(opts) do if k ~= "max_norm" and k ~= "norm_type" then rest[k] = v end end
  local max_norm, norm_type = opts.max_norm, opts.norm_type or 2
  if max_norm ~= nil then
    if type(max_norm) ~= "number" or max_norm ~= max_norm or max_norm < 0 then
      error("embedding: max_norm must be a non-negative number, got " .. tostring(max_norm), 2)
    end
    if type(norm_type) ~= "number" or not (norm_type > 0) then
      error("embedding: norm_type must be a positive number, got " .. tostring(norm_type), 2)
    end
    if not flame.is_tensor(ids) or not flame.is_tensor(weight) or weight:dim() ~= 2 then
      return embedding_c(ids, weight, rest, ...) -- its messages name the bad argument
    end
    embedding_renorm_(ids, weight, max_norm, norm_type)
  end
  return embedding_c(ids, weight, rest, ...)
end

return flame
