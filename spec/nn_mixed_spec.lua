-- flame.F across its families on randomly drawn options, against PyTorch 1.13 in f64
-- (spec/fixtures/gen_nn_mixed.py): outputs and the gradients of every float input,
-- on the device under test (f64 on CUDA too). A second look beside each family's own
-- spec, with options the family specs did not choose.
local H = require "helper"
local flame = H.flame
local F = flame.F

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function tensor(t) return flame.tensor(t.data, {dtype = "f64"}):view(t.shape) end

describe("flame.F against PyTorch on mixed options (f64)", function()
  for _, c in ipairs(dofile(dir .. "fixtures/nn_mixed.lua")) do
    it(c.name, function()
      local ins = {}
      for i, t in ipairs(c.inputs) do
        ins[i] = tensor(t):to(H.device)
        if c.grads[i] then ins[i].requires_grad = true end
      end
      local out = assert(load("local F, a, b, c, d = ...; " .. c.lua))(F, ins[1], ins[2], ins[3], ins[4])
      local tol = {atol = 1e-9, rtol = 1e-9}
      H.close(out:cpu(), tensor(c.out), tol, c.name .. " output")
      local proj = flame.linspace(-1, 1, out:numel(), {dtype = "f64", device = H.device}):view(out.shape)
      ;(out * proj):sum():backward()
      for i, g in ipairs(c.grads) do
        if g then
          assert(ins[i].grad, c.name .. ": no gradient for input " .. i)
          H.close(ins[i].grad:cpu(), tensor(g), tol, c.name .. " grad " .. i)
        end
      end
    end)
  end
end)
