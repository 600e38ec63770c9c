-- flame.einsum(eq, ...): Einstein summation over permute, reshape, sum and
-- (batched) matmul, so autograd and every device come for free.
--   "ij,jk->ik" matmul, "bij,bjk->bik" batched, "ij->ji" transpose, "i,j->ij"
--   outer, "ii->" trace, "ii->i" diagonal, "ij->" sums, "...ij,...jk->...ik"
--   broadcast batches. Without "->" the output is every letter used once, in
--   alphabetical order (after the "..." dims), as in torch and numpy.
-- Operands are contracted left to right, two at a time.
local flame = ...

-- Equation errors are raised as tables and re-raised by flame.einsum at the caller's line.
local function fail(msg, ...) error({einsum = string.format(msg, ...)}) end

-- "ab...c" -> list of labels, with nil for where "..." stands (once at most).
local function parse_term(term, k)
  local labels, ell = {}, nil
  local i = 1
  while i <= #term do
    local ch = term:sub(i, i)
    if term:sub(i, i + 2) == "..." then
      if ell then fail("operand %d has more than one '...'", k) end
      ell = #labels + 1
      i = i + 3
    elseif ch:match("%a") then
      labels[#labels + 1] = ch
      i = i + 1
    else
      fail("invalid character '%s' in the equation (letters, ',', '->' and '...' only)", ch)
    end
  end
  return labels, ell
end

-- Labels of an operand of ndim dims, "..." expanded to shared labels that align
-- from the right ("\1" is the first ellipsis dim of the widest operand).
local function expand_term(labels, ell, ndim, nell_max, k)
  local n = ell and ndim - #labels or 0
  if n < 0 or (not ell and ndim ~= #labels) then
    fail("operand %d has %d dims but its subscripts name %d", k, ndim, #labels)
  end
  if not ell then return labels end
  local out = {}
  for i = 1, ell - 1 do out[#out + 1] = labels[i] end
  for j = 1, n do out[#out + 1] = string.char(nell_max - n + j) end
  for i = ell, #labels do out[#out + 1] = labels[i] end
  return out
end

local function index_of(list, x)
  for i, v in ipairs(list) do if v == x then return i end end
end

-- Repeated labels in one operand take the diagonal: x * eye over the two dims,
-- summed over the second.
local function take_diagonals(x, labels)
  local i = 1
  while i <= #labels do
    local j = index_of({table.unpack(labels, i + 1)}, labels[i])
    if j then
      j = i + j
      local n = x:size(i)
      if x:size(j) ~= n then fail("label %s has sizes %d and %d in one operand", labels[i], n, x:size(j)) end
      local shape = {}
      for d = 1, x:dim() do shape[d] = (d == i or d == j) and n or 1 end
      -- i < j, so eye's row-major elements land on dims i and j of the broadcast shape
      local mask = flame.eye(n, {dtype = x.dtype, device = x.device}):reshape(shape)
      x = (x * mask):sum(j)
      table.remove(labels, j)
    else
      i = i + 1
    end
  end
  return x, labels
end

local function sizes_of(x, labels, sizes, k)
  for d, l in ipairs(labels) do
    local s = x:size(d)
    local prev = sizes[l]
    if prev and prev ~= s and prev ~= 1 and s ~= 1 then
      local name = l:byte() < 32 and "'...'" or ("label " .. l)
      fail("%s has size %d in one operand but %d in operand %d", name, prev, s, k)
    end
    if not prev or prev == 1 then sizes[l] = s end
  end
end

-- Sums the dims of x whose labels are not in `keep`.
local function sum_unneeded(x, labels, keep)
  local dims, rest = {}, {}
  for d, l in ipairs(labels) do
    if keep[l] then rest[#rest + 1] = l else dims[#dims + 1] = d end
  end
  if #dims > 0 then x = x:sum(dims) end
  return x, rest
end

-- x permuted so its labels follow the groups' order, expanded to the shared sizes, reshaped to
-- the products of the groups in `groups` (lists of labels).
local function arrange(x, labels, groups, sizes)
  local perm, target, flat = {}, {}, {}
  for _, g in ipairs(groups) do
    local p = 1
    for _, l in ipairs(g) do
      perm[#perm + 1] = index_of(labels, l)
      target[#target + 1] = sizes[l]
      p = p * sizes[l]
    end
    flat[#flat + 1] = p
  end
  if #perm > 0 then x = x:permute(perm) end
  return x:expand(target):reshape(flat)
end

-- a (labels la) times b (labels lb), keeping the labels in `keep`: one batched matmul.
local function contract(a, la, b, lb, keep, sizes)
  local batch, ao, bo, con = {}, {}, {}, {}
  for _, l in ipairs(la) do
    if index_of(lb, l) then
      if keep[l] then batch[#batch + 1] = l else con[#con + 1] = l end
    else
      ao[#ao + 1] = l
    end
  end
  for _, l in ipairs(lb) do if not index_of(la, l) then bo[#bo + 1] = l end end
  local A = arrange(a, la, {batch, ao, con}, sizes)
  local B = arrange(b, lb, {batch, con, bo}, sizes)
  local r = flame.bmm(A, B)
  local shape, labels = {}, {}
  for _, g in ipairs({batch, ao, bo}) do
    for _, l in ipairs(g) do
      shape[#shape + 1] = sizes[l]
      labels[#labels + 1] = l
    end
  end
  return r:reshape(shape), labels
end

local function einsum(eq, ...)
  if type(eq) ~= "string" then fail("expected an equation string, got %s", type(eq)) end
  local ops = {...}
  if #ops == 1 and type(ops[1]) == "table" and not flame.is_tensor(ops[1]) then ops = ops[1] end
  eq = eq:gsub("%s", "")
  local lhs, rhs = eq:match("^(.-)%->(.*)$")
  lhs = lhs or eq
  local terms = {}
  for term in (lhs .. ","):gmatch("(.-),") do terms[#terms + 1] = term end
  if #terms ~= #ops then fail("the equation has %d operands but %d tensors were given", #terms, #ops) end
  local parsed, nell = {}, 0
  for k, term in ipairs(terms) do
    if not flame.is_tensor(ops[k]) then fail("operand %d is a %s, not a tensor", k, type(ops[k])) end
    local labels, ell = parse_term(term, k)
    parsed[k] = {labels, ell}
    if ell then nell = math.max(nell, ops[k]:dim() - #labels) end
  end
  -- labels of every operand, with "..." expanded
  local xs, ls, sizes, count = {}, {}, {}, {}
  for k, p in ipairs(parsed) do
    local labels = expand_term(p[1], p[2], ops[k]:dim(), nell, k)
    for _, l in ipairs(labels) do count[l] = (count[l] or 0) + 1 end -- before diagonals: "ii" is a trace
    local x = ops[k]
    x, labels = take_diagonals(x, {table.unpack(labels)})
    sizes_of(x, labels, sizes, k)
    xs[k], ls[k] = x, labels
  end
  -- the output's labels
  local out = {}
  if rhs then
    local labels, ell = parse_term(rhs, 0)
    out = expand_term(labels, ell, #labels + (ell and nell or 0), nell, 0)
    for i, l in ipairs(out) do
      if not count[l] then fail("output label %s appears in no operand", l) end
      if index_of({table.unpack(out, i + 1)}, l) then fail("output label %s appears twice", l) end
    end
  else
    for j = 1, nell do out[#out + 1] = string.char(j) end
    local once = {}
    for l, c in pairs(count) do if c == 1 and l:byte() >= 32 then once[#once + 1] = l end end
    table.sort(once)
    for _, l in ipairs(once) do out[#out + 1] = l end
  end
  -- contract left to right, keeping what the output or a later operand needs
  local function needed(from)
    local keep = {}
    for _, l in ipairs(out) do keep[l] = true end
    for k = from, #xs do for _, l in ipairs(ls[k]) do keep[l] = true end end
    return keep
  end
  local x, labels = sum_unneeded(xs[1], ls[1], needed(2))
  for k = 2, #xs do
    local keep, keep_y = needed(k + 1), needed(k + 1)
    for _, l in ipairs(labels) do keep_y[l] = true end -- y's labels that x shares are contracted, not summed
    local y, ly = sum_unneeded(xs[k], ls[k], keep_y)
    x, labels = contract(x, labels, y, ly, keep, sizes)
  end
  x, labels = sum_unneeded(x, labels, needed(#xs + 1))
  -- the output's order (and sizes, for broadcast "..." dims of size 1)
  local perm = {}
  for i, l in ipairs(out) do perm[i] = index_of(labels, l) end
  if #perm > 1 then x = x:permute(perm) end
  return x
end

function flame.einsum(eq, ...)
  local ok, r = pcall(einsum, eq, ...)
  if ok then return r end
  if type(r) == "table" and r.einsum then error("einsum: " .. r.einsum, 2) end
  error(r, 0) -- an op's own error, already complete
end

return flame
