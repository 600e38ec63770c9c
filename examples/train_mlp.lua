-- Two interleaved spirals, a Lua-defined MLP and a hand-written SGD loop.
--   flame-lua examples/train_mlp.lua [--device cuda] [--steps N]
-- A progress bar (flame.progress) goes to stderr: redrawn in place on a terminal, a line per tenth otherwise.
local flame = require "flame"

local device, steps = "cpu", 600
local i = 1
while arg and arg[i] do
  if arg[i] == "--device" then device = arg[i + 1]; i = i + 2
  elseif arg[i] == "--steps" then steps = tonumber(arg[i + 1]); i = i + 2
  else error("unknown argument " .. arg[i]) end
end
flame.manual_seed(0)

-- Data: n points per class on two spirals, with a little noise.
local function spirals(n)
  local xs, ys = {}, {}
  for class = 0, 1 do
    for k = 1, n do
      local r = k / n * 3.0
      local a = k / n * 3.5 * math.pi + class * math.pi
      xs[#xs + 1] = {r * math.cos(a), r * math.sin(a)}
      ys[#ys + 1] = class + 1 -- 1-based class ids
    end
  end
  local x = flame.tensor(xs, {device = device}) + flame.randn(2 * n, 2, {device = device}) * 0.05
  return x, flame.tensor(ys, {device = device})
end
local x, y = spirals(500)

-- The model: plain tensors and a forward function.
local function layer(fan_in, fan_out)
  local w = flame.randn(fan_in, fan_out, {device = device}) * math.sqrt(2 / fan_in)
  local b = flame.zeros(fan_out, {device = device})
  w.requires_grad, b.requires_grad = true, true
  return {w = w, b = b}
end
local layers = {layer(2, 64), layer(64, 64), layer(64, 2)}
local params = {}
for _, l in ipairs(layers) do params[#params + 1] = l.w; params[#params + 1] = l.b end

local function forward(input)
  local h = input
  for k, l in ipairs(layers) do
    h = h:matmul(l.w) + l.b
    if k < #layers then h = h:tanh() end
  end
  return h
end

local function cross_entropy(logits, target)
  return -logits:log_softmax(2):gather(2, target:unsqueeze(2)):mean()
end

-- SGD with momentum, written out.
local lr, momentum, velocity = 0.1, 0.9, {}
for k, p in ipairs(params) do velocity[k] = flame.zeros_like(p) end

local first_loss
local bar = flame.progress(steps, {desc = "train"})
for step = 1, steps do
  local loss = cross_entropy(forward(x), y)
  for _, p in ipairs(params) do p.grad = nil end
  loss:backward()
  flame.no_grad(function()
    for k, p in ipairs(params) do
      velocity[k]:mul_(momentum):add_(p.grad)
      p:sub_(velocity[k] * lr)
    end
  end)
  first_loss = first_loss or loss:item()
  bar:update(1, {loss = loss}) -- the loss is read (a sync) only when the bar is drawn
  if step == 1 or step % 100 == 0 then
    local acc = flame.no_grad(function() return forward(x):argmax(2):eq(y):float():mean():item() end)
    bar:print(string.format("step %4d  loss %.4f  accuracy %.1f%%", step, loss:item(), acc * 100))
  end
end
bar:close()
local acc = flame.no_grad(function() return forward(x):argmax(2):eq(y):float():mean():item() end)
print(string.format("final accuracy %.1f%% on %s (loss fell from %.3f)", acc * 100, device, first_loss))
