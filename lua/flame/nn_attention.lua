-- flame.F: the function forms of softmax and the activations, and the reference attention
-- (scaled_dot_product_attention, flash_attention_varlen), composed from matmul, softmax, the
-- elementwise ops and the attention-dropout op F._attention_dropout (C: src/lua/lnn_attention.c), on every
-- device, with autograd.
-- They are the correctness reference for the fused kernels (docs/architecture.md, "Dropout, linear
-- and attention", defines the attention-dropout mask they share).
local flame = ...
local F = flame.F

local function desc(t)
  if not flame.is_tensor(t) then return type(t) end
  local dims = {}
  for i = 1, t:dim() do dims[i] = tostring(t.shape[i]) end
  return string.format("%s[%s] on %s", t.dtype, table.concat(dims, ", "), tostring(t.device))
end

-- Reads an options table: an unknown key is an error naming the function.
local function options(name, opts, keys, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(string.format("%s: options must be a table, got %s", name, type(opts)), level + 1) end
  for key in pairs(opts) do
    if not keys[key] then
      local known = {}
      for k in pairs(keys) do known[#known + 1] = k end
      table.sort(known)
      error(string.format("%s: unknown option '%s' (known: %s)", name, tostring(key), table.concat(known, ", ")), level + 1)
    end
  end
  return opts
end
flame._options = options -- shared with the other Lua-side modules (schedules)

local function no_extra(name, pos, ...)
  if select("#", ...) > 0 and (...) ~= nil then
    error(string.format("%s: unexpected argument #%d (a %s that nothing reads)", name, pos, type((...))), 3)
  end
end

local function need_tensor(name, what, t, level)
  if not flame.is_tensor(t) then error(string.format("%s: %s must be a tensor, got %s", name, what, type(t)), level + 1) end
end

---------------------------------------------------------------------------------------------------
-- softmax and activations: thin forms of the tensor methods, compositions where no kernel exists.

function F.softmax(x, dim, ...) no_extra("softmax", 3, ...); return x:softmax(dim) end
function F.log_softmax(x, dim, ...) no_extra("log_softmax", 3, ...); return x:log_softmax(dim) end
function F.relu(x, ...) no_extra("relu", 2, ...); return x:relu() end
function F.silu(x, ...) no_extra("silu", 2, ...); return x:silu() end
function F.sigmoid(x, ...) no_extra("sigmoid", 2, ...); return x:sigmoid() end
function F.tanh(x, ...) no_extra("tanh", 2, ...); return x:tanh() end

-- gelu(x, {approximate = "none" | "tanh"})
function F.gelu(x, opts, ...)
  no_extra("gelu", 3, ...)
  opts = options("gelu", opts, {approximate = true}, 2)
  return x:gelu(opts.approximate or "none")
end

-- leaky_relu(x, negative_slope = 0.01): x where x > 0, else slope * x.
function F.leaky_relu(x, slope, ...)
  no_extra("leaky_relu", 3, ...)
  need_tensor("leaky_relu", "x", x, 2)
  slope = slope or 0.01
  return flame.where(x:gt(0), x, x * slope)
end

-- elu(x, alpha = 1): x where x > 0, else alpha (exp(x) - 1). exp is taken of min(x, 0), so the
-- branch where() discards never overflows (its zero gradient times an infinite exp would be NaN).
function F.elu(x, alpha, ...)
  no_extra("elu", 3, ...)
  need_tensor("elu", "x", x, 2)
  alpha = alpha or 1.0
  return flame.where(x:gt(0), x, (x:clamp(nil, 0):exp() - 1) * alpha)
end

-- softplus(x, beta = 1, threshold = 20): log(1 + exp(beta x)) / beta, and x where beta x > threshold
-- (PyTorch's rule). Computed as max(z, 0) + log(1 + exp(-|z|)) so exp never overflows.
function F.softplus(x, beta, threshold, ...)
  no_extra("softplus", 4, ...)
  need_tensor("softplus", "x", x, 2)
  beta, threshold = beta or 1.0, threshold or 20.0
  local z = beta == 1.0 and x or x * beta
  local sp = z:relu() + ((-z:abs()):exp() + 1):log()
  if beta ~= 1.0 then sp = sp / beta end
  return flame.where(z:gt(threshold), x, sp)
end

-- mish(x) = x tanh(softplus(x))
function F.mish(x, ...)
  no_extra("mish", 2, ...)
  return x * F.softplus(x):tanh()
end

---------------------------------------------------------------------------------------------------
-- Reference attention.

local SDPA = "scaled_dot_product_attention"
local VARLEN = "flash_attention_varlen"

-- causal option -> nil | "top_left" | "bottom_right"
local function causal_mode(name, c, default)
  if c == nil or c == false then return nil end
  if c == true then return default end
  if c == "top_left" or c == "bottom_right" then return c end
  error(string.format('%s: causal must be a boolean, "top_left" or "bottom_right", got %s', name,
    type(c) == "string" and ('"' .. c .. '"') or tostring(c)), 3)
end

-- The attention of q [B, Hq, Sq, D], k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] (Hk divides Hq, validated):
--   scores = (q * scale) @ k^T, masked, softmax over keys, dropped out (drop(p) or nil), @ v.
-- GQA without repeating k/v: q is viewed as [B, Hk, G Sq, D] (query head h = hk G + g uses key
-- head hk = floor(h / G), as PyTorch's repeat_interleave), so the GEMM's batch is (b, hk).
-- mask: nil, a bool tensor (true = attend) or a float tensor added, broadcastable to [B, Hq, Sq, Sk].
-- A row with no allowed key (every score -inf) gives output 0 and zero gradients.
local function attention(q, k, v, scale, causal, mask, drop)
  local qs, ks = q.shape, k.shape -- one shape object each
  local B, Hq, Sq, D = qs[1], qs[2], qs[3], qs[4]
  local Hk, Sk, Dv = ks[2], ks[3], v:size(4)
  local G = Hq // Hk
  if Sq == 0 or Sk == 0 or B == 0 or Hq == 0 or D == 0 then
    -- no keys: every row is fully masked (output 0, no gradient); no queries: an empty result
    return flame.zeros({B, Hq, Sq, Dv}, {dtype = q.dtype, device = q.device})
  end
  local qs = q * scale -- one pass over q (the scores are Sk / D times larger than q)
  local s
  if G == 1 then
    s = qs:matmul(k:transpose(3, 4))
  else
    s = qs:reshape(B, Hk, G * Sq, D):matmul(k:transpose(3, 4)):reshape(B, Hq, Sq, Sk)
  end
  local p
  if causal or mask ~= nil then
    -- one masked-softmax kernel: the bool mask (broadcast, not copied) and the causal limit; masked keys and rows
    -- with no allowed finite score (a float mask's -inf rows too) get 0, and so do their gradients
    local bool_mask
    if mask ~= nil and mask.dtype == "bool" then bool_mask = mask
    elseif mask ~= nil then s = s + (mask.dtype == s.dtype and mask or mask:to({dtype = s.dtype})) end
    local shift = causal and (causal == "bottom_right" and Sk - Sq or 0) or nil
    p = F._masked_softmax(s, bool_mask, shift)
  else
    p = s:softmax(-1)
  end
  if drop then p = drop(p) end
  local o
  if G == 1 then
    o = p:matmul(v)
  else
    o = p:reshape(B, Hk, G * Sq, Sk):matmul(v):reshape(B, Hq, Sq, Dv)
  end
  return o
end

local function check_float(name, what, t, level)
  need_tensor(name, what, t, level + 1)
  if not (t.dtype == "f32" or t.dtype == "f64" or t.dtype == "bf16" or t.dtype == "f16") then
    error(string.format("%s: %s must be a floating-point tensor, got %s", name, what, desc(t)), level + 1)
  end
end

local function check_same(name, q, k, v, level)
  for _, pair in ipairs({{"k", k}, {"v", v}}) do
    local t = pair[2]
    if tostring(t.device) ~= tostring(q.device) then
      error(string.format("%s: q and %s must be on one device, got q %s and %s %s", name, pair[1], desc(q), pair[1],
        desc(t)), level + 1)
    end
    if t.dtype ~= q.dtype then
      error(string.format("%s: q and %s must have one dtype, got q %s and %s %s", name, pair[1], desc(q), pair[1],
        desc(t)), level + 1)
    end
  end
end

-- The keep factor of the dropout options: nil (no dropout) or p.
local function dropout_p(name, opts, level)
  local p = opts.dropout_p or 0
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    error(string.format("%s: dropout_p must be a number in [0, 1], got %s", name, tostring(p)), level + 1)
  end
  local training = opts.training
  if training == nil then training = true end -- as F.dropout and PyTorch's SDPA: dropout_p applies
  if type(training) ~= "boolean" then error(string.format("%s: training must be a boolean", name), level + 1) end
  if training and p > 0 then return p end
  return nil
end

local function get_scale(name, opts, D, level)
  local s = opts.scale
  if s == nil then return 1 / math.sqrt(D) end
  if type(s) ~= "number" then error(string.format("%s: scale must be a number, got %s", name, type(s)), level + 1) end
  return s
end

local sdpa_keys = {causal = true, dropout_p = true, scale = true, training = true, attn_mask = true}

-- The fused path (cuda/flash_attention.cu through F._flash_attention) takes a call when the backend has it for
-- these tensors (CUDA, bf16/f16, a head dim it is built for, one head dim for q, k and v), no attn_mask is given
-- (causal is fine) and nothing is empty; every other call takes the reference below. Never a CPU fallback: the
-- fused entry exists only where it runs.
local function use_flash(q, k, v, mask)
  -- the backend first: on a device without the entry (the CPU) this is the whole answer, and the dims loop below
  -- made a dozen shape objects per call of a small model's attention
  if mask ~= nil or not F._flash_supported(q, k, v) then return false end
  for _, t in ipairs({q, k, v}) do
    for i = 1, t:dim() do
      if t:size(i) == 0 then return false end
    end
  end
  return true
end
local causal_code = {top_left = 1, bottom_right = 2}

-- sdpa_backend(q, k, v, opts): "flash" or "reference", the path scaled_dot_product_attention (q 4-D) or
-- flash_attention_varlen (q 3-D) would take for these tensors and options (after autocast's cast); with "flash",
-- a second value names the fused forward kernel: "fa2" (FlashAttention-2 style, every GPU), or on Hopper with head
-- dim 64 or 128 "sm90" (wgmma, warp-specialised; FLAME_FLASH_FWD=sm90) or "sm90sync" (FLAME_FLASH_FWD=sm90sync).
function F.sdpa_backend(q, k, v, opts, ...)
  no_extra("sdpa_backend", 5, ...)
  opts = options("sdpa_backend", opts, sdpa_keys, 2)
  need_tensor("sdpa_backend", "q", q, 2)
  need_tensor("sdpa_backend", "k", k, 2)
  need_tensor("sdpa_backend", "v", v, 2)
  q, k, v = flame._autocast_cast("lower", q, k, v)
  if not use_flash(q, k, v, opts.attn_mask) then return "reference" end
  return "flash", F._flash_forward_kernel(q, k, v)
end

-- scaled_dot_product_attention(q, k, v, {causal, dropout_p, scale, training, attn_mask})
-- The attention-dropout mask is the byte rule's (F._attention_dropout: 16 elements per Philox block, keep
-- probability round((1 - p) 256) / 256, kept values scaled by 1 / (1 - p); src/core/dropout_keep.h) over the
-- probabilities [B, Hq, Sq, Sk]: element i = ((b Hq + h) Sq + q) Sk + k (0-based) of one reservation of the global
-- generator. Not F.dropout's rule: the fused kernels regenerate this mask at a quarter of the Philox calls.
function F.scaled_dot_product_attention(q, k, v, opts, ...)
  no_extra(SDPA, 5, ...)
  opts = options(SDPA, opts, sdpa_keys, 2)
  check_float(SDPA, "q", q, 2)
  check_float(SDPA, "k", k, 2)
  check_float(SDPA, "v", v, 2)
  q, k, v = flame._autocast_cast("lower", q, k, v) -- attention is on autocast's lower list
  for _, pair in ipairs({{"q", q}, {"k", k}, {"v", v}}) do
    if pair[2]:dim() ~= 4 then
      error(string.format("%s: %s must be 4-D [batch, heads, seq, head_dim], got %s", SDPA, pair[1], desc(pair[2])), 2)
    end
  end
  check_same(SDPA, q, k, v, 2)
  local qs, ks, vs = q.shape, k.shape, v.shape
  if ks[1] ~= qs[1] or vs[1] ~= qs[1] then
    error(string.format("%s: q, k and v must have one batch size (dim 1), got q %s, k %s, v %s", SDPA, desc(q), desc(k),
      desc(v)), 2)
  end
  if ks[4] ~= qs[4] then
    error(string.format("%s: q and k must have one head_dim (dim 4), got q %s and k %s", SDPA, desc(q), desc(k)), 2)
  end
  if vs[2] ~= ks[2] or vs[3] ~= ks[3] then
    error(string.format("%s: k and v must have the same heads and seq (dims 2, 3), got k %s and v %s", SDPA, desc(k),
      desc(v)), 2)
  end
  if ks[2] == 0 or qs[2] % ks[2] ~= 0 then
    error(string.format("%s: the k/v heads (%d) must divide the q heads (%d) (dim 2) for grouped-query attention",
      SDPA, ks[2], qs[2]), 2)
  end
  local mask = opts.attn_mask
  if mask ~= nil then
    need_tensor(SDPA, "attn_mask", mask, 2)
    if tostring(mask.device) ~= tostring(q.device) then
      error(string.format("%s: attn_mask must be on q's device, got attn_mask %s and q %s", SDPA, desc(mask), desc(q)), 2)
    end
    if mask.dtype ~= "bool" and not (mask.dtype == "f32" or mask.dtype == "f64" or mask.dtype == "bf16" or mask.dtype == "f16") then
      error(string.format("%s: attn_mask must be bool (true = attend) or floating-point (added), got %s", SDPA, desc(mask)), 2)
    end
    local target = {qs[1], qs[2], qs[3], ks[3]}
    local md = mask:dim()
    local ok = md <= 4
    for i = 1, md do
      local m, t = mask.shape[i], target[4 - md + i]
      if ok and m ~= 1 and m ~= t then ok = false end
    end
    if not ok then
      error(string.format("%s: attn_mask %s does not broadcast to [batch, q heads, seq_q, seq_k] = [%d, %d, %d, %d]",
        SDPA, desc(mask), target[1], target[2], target[3], target[4]), 2)
    end
  end
  local causal = causal_mode(SDPA, opts.causal, "top_left")
  local p = dropout_p(SDPA, opts, 2)
  local scale = get_scale(SDPA, opts, qs[4], 2)
  return F._sdpa_checked(q, k, v, mask, causal, p, scale)
end

-- The attention of arguments already checked and cast (q, k, v 4-D float of one device and dtype, the mask
-- broadcastable, causal nil or a mode, p nil or the dropout probability): the fused kernel where it runs, else the
-- reference. scaled_dot_product_attention ends here, and so does MultiheadAttention, which builds its q, k and v
-- itself (its checks made a third of a small model's attention block on the CPU).
function F._sdpa_checked(q, k, v, mask, causal, p, scale)
  if use_flash(q, k, v, mask) then
    return F._flash_attention(q, k, v, nil, nil, 0, 0, scale, causal and causal_code[causal] or 0, p or 0)
  end
  local drop = p and function(probs) return F._attention_dropout(probs, p) end or nil
  return attention(q, k, v, scale, causal, mask, drop)
end

local varlen_keys = {causal = true, dropout_p = true, scale = true, training = true}

-- Host copy of a cu_seqlens tensor, validated: i32, 1-D, on q's device, starts at 0, never
-- decreases, ends at the token count, no sequence longer than max_seqlen.
local function read_cu(what, cu, total, max_seqlen, q, tokens_of, level)
  need_tensor(VARLEN, what, cu, level + 1)
  if cu.dtype ~= "i32" then error(string.format("%s: %s must be an i32 tensor, got %s", VARLEN, what, desc(cu)), level + 1) end
  if cu:dim() ~= 1 or cu.shape[1] < 1 then
    error(string.format("%s: %s must be 1-D [batch + 1], got %s", VARLEN, what, desc(cu)), level + 1)
  end
  if tostring(cu.device) ~= tostring(q.device) then
    error(string.format("%s: %s must be on q's device, got %s and q %s", VARLEN, what, desc(cu), desc(q)), level + 1)
  end
  local c = cu:cpu():totable()
  if c[1] ~= 0 then error(string.format("%s: %s must start at 0, got %d", VARLEN, what, c[1]), level + 1) end
  for i = 2, #c do
    if c[i] < c[i - 1] then
      error(string.format("%s: %s must not decrease, but entry %d (%d) < entry %d (%d)", VARLEN, what, i, c[i], i - 1,
        c[i - 1]), level + 1)
    end
    if c[i] - c[i - 1] > max_seqlen then
      error(string.format("%s: sequence %d of %s has length %d > max_seqlen %d", VARLEN, i - 1, what, c[i] - c[i - 1],
        max_seqlen), level + 1)
    end
  end
  if c[#c] ~= total then
    error(string.format("%s: the last entry of %s (%d) must equal the number of %s tokens (%d)", VARLEN, what, c[#c],
      tokens_of, total), level + 1)
  end
  return c
end

-- flash_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
--                        {causal, dropout_p, scale, training})
-- q [total_q, Hq, D], k [total_k, Hk, D], v [total_k, Hk, Dv]; sequence b is rows
-- cu[b] .. cu[b + 1] - 1 (0-based). causal = true aligns bottom-right (FlashAttention). The
-- attention-dropout mask is F._attention_dropout's (the byte rule, as scaled_dot_product_attention's) over a
-- [nseq, Hq, max_seqlen_q, max_seqlen_k] tensor:
-- element i = ((b Hq + h) max_seqlen_q + q) max_seqlen_k + k, b the sequence and q, k positions in it.
function F.flash_attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, opts, ...)
  no_extra(VARLEN, 9, ...)
  opts = options(VARLEN, opts, varlen_keys, 2)
  check_float(VARLEN, "q", q, 2)
  check_float(VARLEN, "k", k, 2)
  check_float(VARLEN, "v", v, 2)
  q, k, v = flame._autocast_cast("lower", q, k, v) -- attention is on autocast's lower list
  for _, pair in ipairs({{"q", q}, {"k", k}, {"v", v}}) do
    if pair[2]:dim() ~= 3 then
      error(string.format("%s: %s must be 3-D [total_tokens, heads, head_dim], got %s", VARLEN, pair[1], desc(pair[2])), 2)
    end
  end
  check_same(VARLEN, q, k, v, 2)
  local qs, ks, vs = q.shape, k.shape, v.shape
  if ks[3] ~= qs[3] then
    error(string.format("%s: q and k must have one head_dim (dim 3), got q %s and k %s", VARLEN, desc(q), desc(k)), 2)
  end
  if vs[1] ~= ks[1] or vs[2] ~= ks[2] then
    error(string.format("%s: k and v must have the same tokens and heads (dims 1, 2), got k %s and v %s", VARLEN,
      desc(k), desc(v)), 2)
  end
  if ks[2] == 0 or qs[2] % ks[2] ~= 0 then
    error(string.format("%s: the k/v heads (%d) must divide the q heads (%d) (dim 2) for grouped-query attention",
      VARLEN, ks[2], qs[2]), 2)
  end
  for _, pair in ipairs({{"max_seqlen_q", max_q}, {"max_seqlen_k", max_k}}) do
    if math.type(pair[2]) ~= "integer" or pair[2] < 0 then
      error(string.format("%s: %s must be a non-negative integer, got %s", VARLEN, pair[1], tostring(pair[2])), 2)
    end
  end
  local cq = read_cu("cu_seqlens_q", cu_q, qs[1], max_q, q, "q", 2)
  local ck = read_cu("cu_seqlens_k", cu_k, ks[1], max_k, q, "k", 2)
  if #cq ~= #ck then
    error(string.format("%s: cu_seqlens_q and cu_seqlens_k must have one length, got %d and %d", VARLEN, #cq, #ck), 2)
  end
  local causal = causal_mode(VARLEN, opts.causal, "bottom_right")
  local p = dropout_p(VARLEN, opts, 2)
  local scale = get_scale(VARLEN, opts, qs[3], 2)
  local nseq, H = #cq - 1, qs[2]
  if nseq > 0 and max_q > 0 and max_k > 0 and use_flash(q, k, v, nil) then
    return F._flash_attention(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal and causal_code[causal] or 0, p or 0)
  end
  local keep -- the scaled keep mask of every (sequence, head, query, key), one reservation
  if p and nseq > 0 and max_q > 0 and max_k > 0 then
    keep = F._attention_dropout(flame.ones({nseq, H, max_q, max_k}, {dtype = q.dtype, device = q.device}), p)
  end
  local outs = {}
  for b = 1, nseq do
    local q0, lq, k0, lk = cq[b], cq[b + 1] - cq[b], ck[b], ck[b + 1] - ck[b]
    if lq > 0 then
      local function part(t, start, len) return t:narrow(1, start + 1, len):transpose(1, 2):unsqueeze(1) end
      local drop
      if keep and lk > 0 then
        local m = keep:select(1, b):narrow(2, 1, lq):narrow(3, 1, lk):unsqueeze(1)
        drop = function(probs) return probs * m end
      end
      local o = attention(part(q, q0, lq), part(k, k0, lk), part(v, k0, lk), scale, causal, nil, drop)
      outs[#outs + 1] = o:squeeze(1):transpose(1, 2)
    end
  end
  if #outs == 0 then
    return flame.zeros({0, H, vs[3]}, {dtype = q.dtype, device = q.device})
  end
  return #outs == 1 and outs[1]:contiguous() or flame.cat(outs, 1)
end

return flame
