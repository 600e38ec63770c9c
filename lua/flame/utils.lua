-- flame.utils.checkpoint(fn, ...): gradient checkpointing. fn runs without recording; one node
-- (CheckpointBackward) stands for it, and its backward runs fn's forward again with recording on,
-- with the random generator as it was (so dropout draws the same masks), and back-propagates through
-- that recomputation: parameters fn uses get their gradients in .grad, the tensor arguments through
-- the node. As PyTorch's reentrant checkpoint: tensors that need gradients must be arguments of fn (or
-- parameters used only inside it), and it works with loss:backward(), not flame.autograd.grad.
local flame = ...
flame.utils = flame.utils or {}
local autograd = flame.autograd

function flame.utils.checkpoint(fn, ...)
  local mt = type(fn) == "table" and getmetatable(fn)
  if type(fn) ~= "function" and not (mt and mt.__call) then
    error("checkpoint: expected a function or a callable (a module), got " .. type(fn), 2)
  end
  if type(fn) ~= "function" then
    local callable = fn
    fn = function(...) return callable(...) end
  end
  local n, args = select("#", ...), table.pack(...)
  local seed, offset = autograd._rng_state()
  local autocast = flame.get_autocast_dtype() -- the recomputation runs under the forward's autocast
  local outs = table.pack(flame.no_grad(fn, ...))
  local prev = flame.set_grad_enabled(true)
  flame.set_grad_enabled(prev)
  if not prev then return table.unpack(outs, 1, outs.n) end

  -- The node's inputs: the tensor arguments that need gradients, and a 0-dim leaf, so that the node is
  -- recorded (and the parameters inside fn reached) even when no argument needs a gradient.
  local inputs, pos = {flame.zeros({}, {requires_grad = true})}, {}
  for i = 1, n do
    local a = args[i]
    if flame.is_tensor(a) and a.requires_grad then inputs[#inputs + 1] = a; pos[#pos + 1] = i end
  end
  local float = {f32 = true, f64 = true, f16 = true, bf16 = true}
  local out_tensors, out_pos = {}, {}
  for i = 1, outs.n do
    local y = outs[i]
    if flame.is_tensor(y) and float[y.dtype] then out_tensors[#out_tensors + 1] = y; out_pos[#out_pos + 1] = i end
  end
  if #out_tensors == 0 then return table.unpack(outs, 1, outs.n) end

  local function backward(...)
    local gouts = table.pack(...)
    local dargs = {}
    for i = 1, n do
      local a = args[i]
      if flame.is_tensor(a) then
        local d = a:detach()
        d.requires_grad = a.requires_grad
        dargs[i] = d
      else
        dargs[i] = a
      end
    end
    local cur_seed, cur_offset = autograd._rng_state()
    autograd._set_rng_state(seed, offset)
    local was = flame.set_grad_enabled(true)
    local ok, loss = pcall(function()
      local ac = flame._set_autocast(autocast)
      local res = table.pack(pcall(fn, table.unpack(dargs, 1, n)))
      flame._set_autocast(ac)
      if not res[1] then error(res[2], 0) end
      table.remove(res, 1)
      res.n = res.n - 1
      local sum
      for j, i in ipairs(out_pos) do
        local y, g = res[i], gouts[j]
        if g and flame.is_tensor(y) and y.requires_grad then
          local term = (y * g):sum()
          sum = sum and sum + term or term
        end
      end
      return sum
    end)
    flame.set_grad_enabled(was)
    autograd._set_rng_state(cur_seed, cur_offset)
    if not ok then error("checkpoint: recomputing the forward failed: " .. tostring(loss), 0) end
    if loss then loss:backward() end
    local gins = {false}
    for k, i in ipairs(pos) do gins[k + 1] = dargs[i].grad or false end
    for k = 1, #gins do if gins[k] == false then gins[k] = nil end end
    return table.unpack(gins, 1, #pos + 1)
  end

  local attached = autograd._function(inputs, out_tensors, backward)
  for j, i in ipairs(out_pos) do outs[i] = attached[j] end
  return table.unpack(outs, 1, outs.n)
end

return flame
