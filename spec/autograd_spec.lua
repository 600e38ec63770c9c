-- Specs of the autograd engine through the Lua surface: leaves, backward and
-- gradient accumulation, graph order, retain_graph, grad mode, detach, hooks,
-- autograd.grad, in-place checks, and gradients across dtypes and broadcasts.
-- Runs on the device under test (FLAME_DEVICE, default cpu).
local H = require "helper"
local flame = H.flame

local function leaf(data, opts)
  opts = opts or {}
  opts.requires_grad = true
  return H.t(data, opts)
end

describe("autograd", function()
  describe("leaves and requires_grad", function()
    it("marks user-created tensors as leaves and op results as non-leaves", function()
      local x = leaf({1.0, 2, 3})
      assert.is_true(x.is_leaf)
      assert.is_true(x.requires_grad)
      assert.is_nil(x.grad_fn)
      local y = x * 2
      assert.is_false(y.is_leaf)
      assert.is_true(y.requires_grad)
      local c = H.t({1.0, 2})
      assert.is_true(c.is_leaf)
      assert.is_false(c.requires_grad)
      assert.is_false((c * 2).requires_grad) -- no input requires grad: nothing recorded
      assert.is_true((c * 2).is_leaf)
    end)

    it("sets requires_grad through the property and through creation options", function()
      local a = H.t({1.0, 2})
      a.requires_grad = true
      assert.is_true(a.requires_grad)
      a.requires_grad = false
      assert.is_false(a.requires_grad)
      local b = flame.zeros(2, 3, H.opts({requires_grad = true}))
      assert.is_true(b.requires_grad and b.is_leaf)
      local c = flame.randn({4}, H.opts({dtype = "f64", requires_grad = true}))
      assert.is_true(c.requires_grad)
      assert.are.equal("f64", c.dtype)
      assert.is_true(a:requires_grad_().requires_grad)
    end)

    it("refuses requires_grad on integer tensors", function()
      H.errors(function() H.t({1, 2}).requires_grad = true end, "requires_grad", "floating-point", "i64[2]")
      H.errors(function() flame.tensor({1, 2}, H.opts({requires_grad = true})) end, "requires_grad", "i64")
    end)

    it("cannot turn requires_grad off on a non-leaf", function()
      local y = leaf({1.0}) * 2
      H.errors(function() y.requires_grad = false end, "requires_grad", "non-leaf", "detach")
    end)
  end)

  describe("backward", function()
    it("accumulates gradients into .grad across backward calls", function()
      local x = leaf({1.0, 2, 3})
      assert.is_nil(x.grad)
      ;(x * x):sum():backward()
      H.close(x.grad, {2, 4, 6})
      ;(x * 3):sum():backward()
      H.close(x.grad, {5, 7, 9})
      assert.are.same({3}, x.grad.shape)
      assert.are.equal("f32", x.grad.dtype)
    end)

    it("takes an explicit gradient for non-scalar outputs", function()
      local x = leaf({{1.0, 2}, {3, 4}})
      local y = x * x
      y:backward(H.t({{1.0, 0}, {2, -1}}))
      H.close(x.grad, {{2, 0}, {12, -8}})
    end)

    it("makes the gradient implicit only for one-element outputs", function()
      for _, shape in ipairs({{}, {1}, {1, 1}}) do
        local x = flame.ones(shape, H.opts({requires_grad = true}))
        ;(x * 5):backward()
        H.close(x.grad, flame.full(shape, 5.0))
      end
      local y = leaf({1.0, 2, 3}) * 2
      H.errors(function() y:backward() end, "backward", "implicit", "single-element", "f32[3]")
    end)

    it("rejects a gradient whose shape differs from the output's", function()
      local y = leaf({1.0, 2, 3}) * 2
      H.errors(function() y:backward(H.t({1.0, 1})) end, "backward", "f32[2]", "f32[3]")
    end)

    it("casts an explicit gradient of another dtype to the output's", function()
      local x = leaf({1.0, 2})
      local y = x * 2
      y:retain_grad()
      y:backward(H.t({1.0, 3}, {dtype = "f64"}))
      assert.are.equal("f32", y.grad.dtype)
      assert.are.equal("f32", x.grad.dtype)
      H.close(x.grad, {2, 6})
    end)

    it("fails on a tensor that does not require grad", function()
      H.errors(function() H.t({1.0}):backward() end, "backward", "does not require grad")
    end)

    it("runs each node of a diamond once, with the summed gradient", function()
      -- y = 2x ; z = y*y + 3y ; dz/dy = 2y + 3 ; dz/dx = 2 (2y + 3) = 8x + 6
      local x = leaf({1.0, 2, 3})
      local y = x * 2
      local calls, seen = 0, nil
      y:register_hook(function(g)
        calls = calls + 1
        seen = g
      end)
      local z = y * y + y * 3
      z:sum():backward()
      assert.are.equal(1, calls)
      H.close(seen, {7, 11, 15}) -- 2y + 3: both branches summed before y's node ran
      H.close(x.grad, {14, 22, 30})
    end)

    it("orders a graph with shared subexpressions and repeated inputs", function()
      -- f = (a*b) * (a*b) + a ; df/da = 2 a b^2 + 1 ; df/db = 2 a^2 b
      local a, b = leaf({2.0}), leaf({3.0})
      local ab = a * b
      local f = ab * ab + a
      f:backward()
      H.close(a.grad, {2 * 2 * 9 + 1})
      H.close(b.grad, {2 * 4 * 3})
    end)

    it("walks a chain of 10,000 ops without overflowing the stack", function()
      local x = leaf({0.5, 1.5})
      local h = x
      for i = 1, 10000 do
        if i % 2 == 0 then h = h * 1.0 else h = h + 1 end
      end
      h:sum():backward()
      H.close(h, {5000.5, 5001.5})
      H.close(x.grad, {1, 1})
      -- dropping an unused deep graph is iterative too
      local k = x
      for _ = 1, 10000 do k = k * 1.0 end
      k = nil
      collectgarbage()
      collectgarbage()
    end)

    it("allows a second backward with retain_graph", function()
      local x = leaf({1.0, 2})
      local l = (x * x):sum()
      l:backward({retain_graph = true})
      l:backward(nil, {retain_graph = true})
      l:backward(H.t(1.0), {retain_graph = true})
      l:backward()
      H.close(x.grad, {8, 16})
    end)

    it("fails a second backward without retain_graph, saying so", function()
      local x = leaf({1.0, 2})
      local l = (x * x):sum()
      l:backward()
      H.errors(function() l:backward() end, "backward", "second time", "retain_graph")
      H.close(x.grad, {2, 4}) -- the failed call left .grad alone
    end)
  end)

  describe("grad mode", function()
    it("no_grad records nothing, passes arguments and returns fn's values", function()
      local x = leaf({1.0, 2})
      local y, n, s = flame.no_grad(function(a, k) return a * k, k, "s" end, x, 3)
      assert.is_false(y.requires_grad)
      assert.is_nil(y.grad_fn)
      H.close(y, {3, 6})
      assert.are.equal(3, n)
      assert.are.equal("s", s)
      assert.are.equal(4, select("#", flame.no_grad(function() return 1, nil, nil, 4 end)))
      assert.is_true(flame.is_grad_enabled())
      assert.is_true((x * 3).requires_grad)
    end)

    it("no_grad restores the mode when fn raises, and re-raises", function()
      local err = H.errors(function() flame.no_grad(function() error("inner failure") end) end, "inner failure")
      assert.is_string(err)
      assert.is_true(flame.is_grad_enabled())
      -- nested, and inside a disabled region
      flame.set_grad_enabled(false)
      pcall(flame.no_grad, function() error("x") end)
      assert.is_false(flame.is_grad_enabled())
      flame.set_grad_enabled(true)
      flame.no_grad(function()
        flame.no_grad(function() end)
        assert.is_false(flame.is_grad_enabled())
      end)
      assert.is_true(flame.is_grad_enabled())
    end)

    it("set_grad_enabled switches recording and returns the previous mode", function()
      local x = leaf({1.0})
      assert.is_true(flame.set_grad_enabled(false))
      assert.is_false((x * 2).requires_grad)
      assert.is_false(flame.is_grad_enabled())
      assert.is_false(flame.set_grad_enabled(true))
      assert.is_true((x * 2).requires_grad)
    end)

    it("allows in-place updates of leaves under no_grad (the optimizer step)", function()
      local w = leaf({1.0, 2})
      ;(w * w):sum():backward()
      flame.no_grad(function() w:add_(w.grad * -0.5) end)
      H.close(w, {0, 0})
      assert.is_true(w.requires_grad and w.is_leaf)
    end)
  end)

  describe("detach", function()
    it("shares storage with the original", function()
      local x = leaf({1.0, 2, 3})
      local d = x:detach()
      assert.is_false(d.requires_grad)
      assert.is_true(d.is_leaf)
      d:fill_(7)
      H.close(x, {7, 7, 7})
    end)

    it("cuts the graph", function()
      local x = leaf({1.0, 2})
      local y = x * 2
      local z = y:detach() * 3 + y
      z:sum():backward()
      H.close(x.grad, {2, 2}) -- only through y, not through the detached branch
    end)
  end)

  describe("retain_grad", function()
    it("keeps a non-leaf's gradient, which is otherwise not stored", function()
      local x = leaf({1.0, 2})
      local y = x * 3
      local w = y * 1
      y:retain_grad()
      ;(y * y):sum():backward()
      H.close(y.grad, {6, 12})
      assert.is_nil(w.grad)
      H.close(x.grad, {18, 36})
    end)

    it("accumulates across backward calls and refuses tensors without grad", function()
      local x = leaf({1.0})
      local y = x * 2
      y:retain_grad()
      local l = y * 5
      l:backward(nil, {retain_graph = true})
      l:backward()
      H.close(y.grad, {10})
      H.errors(function() H.t({1.0}):retain_grad() end, "retain_grad", "does not require grad")
    end)
  end)

  describe("hooks", function()
    it("call a leaf's hook with its gradient; a returned tensor replaces it", function()
      local x = leaf({1.0, 2, 3})
      local seen
      x:register_hook(function(g)
        seen = g
        return g * 10
      end)
      ;(x * 2):sum():backward()
      H.close(seen, {2, 2, 2})
      H.close(x.grad, {20, 20, 20})
    end)

    it("leave the gradient alone when the hook returns nothing", function()
      local x = leaf({1.0, 2})
      x:register_hook(function() end)
      ;(x * 4):sum():backward()
      H.close(x.grad, {4, 4})
    end)

    it("replace a non-leaf's gradient for everything upstream", function()
      local x = leaf({1.0, 2})
      local y = x * 3
      y:register_hook(function(g) return g * 2 end)
      ;(y * y):sum():backward()
      -- d/dy = 2y = {6, 12}, doubled by the hook, times dy/dx = 3
      H.close(x.grad, {36, 72})
    end)

    it("run in registration order, each seeing the previous one's result", function()
      local x = leaf({1.0, 2, 3})
      local order = {}
      x:register_hook(function(g) order[#order + 1] = "a" .. g:sum():item() end)
      x:register_hook(function(g)
        order[#order + 1] = "b"
        return g * 10
      end)
      x:register_hook(function(g) order[#order + 1] = "c" .. g:sum():item() end)
      ;(x * 2):sum():backward()
      assert.are.same({"a6.0", "b", "c60.0"}, order)
    end)

    it("surface an error raised in a hook as a Lua error", function()
      local x = leaf({1.0})
      x:register_hook(function() error("boom in hook") end)
      H.errors(function() (x * 2):sum():backward() end, "hook", "boom in hook")
      assert.is_nil(x.grad)
      assert.is_true(flame.is_grad_enabled())
    end)

    it("reject a hook result that is not a tensor of the gradient's shape and dtype", function()
      local x = leaf({1.0, 2})
      x:register_hook(function() return 5 end)
      H.errors(function() (x * 2):sum():backward() end, "hook", "nil or a tensor")
      local y = leaf({1.0, 2})
      y:register_hook(function() return flame.ones(5, H.opts()) end)
      H.errors(function() (y * 2):sum():backward() end, "hook", "f32[5]", "f32[2]")
      assert.is_nil(y.grad)
      local z = leaf({1.0, 2})
      z:register_hook(function(g) return g:double() end)
      H.errors(function() (z * 2):sum():backward() end, "hook", "f64[2]", "f32[2]")
    end)

    it("cannot be registered on a tensor that does not require grad", function()
      H.errors(function() H.t({1.0}):register_hook(function() end) end, "register_hook", "does not require grad")
    end)
  end)

  describe("autograd.grad", function()
    it("returns the gradient of one output for one input without touching .grad", function()
      local x = leaf({1.0, 2})
      local g = flame.autograd.grad((x * x):sum(), x)
      assert.is_true(flame.is_tensor(g))
      H.close(g, {2, 4})
      assert.is_nil(x.grad)
    end)

    it("handles several outputs and inputs with grad_outputs", function()
      local p, q = leaf({1.0, 2}), leaf({3.0, 4})
      p.grad = H.t({100.0, 100})
      local gs = flame.autograd.grad({p * q, p + q}, {p, q}, {H.t({1.0, 1}), H.t({2.0, 2})})
      -- d/dp = q*1 + 2 ; d/dq = p*1 + 2
      H.close(gs[1], {5, 6})
      H.close(gs[2], {3, 4})
      H.close(p.grad, {100, 100})
      assert.is_nil(q.grad)
    end)

    it("gives nil for an input the outputs do not depend on, and works for non-leaves", function()
      local x, u = leaf({1.0, 2}), leaf({1.0})
      local gs = flame.autograd.grad((x * 2):sum(), {x, u})
      H.close(gs[1], {2, 2})
      assert.is_nil(gs[2])
      local y = x * 3
      H.close(flame.autograd.grad((y * y):sum(), y), {6, 12})
    end)

    it("frees the graph unless retain_graph is given", function()
      local x = leaf({1.0, 2})
      local l = (x * x):sum()
      H.close(flame.autograd.grad(l, x, nil, {retain_graph = true}), {2, 4})
      l:backward()
      H.close(x.grad, {2, 4})
      local m = (x * x):sum()
      flame.autograd.grad(m, x)
      H.errors(function() m:backward() end, "second time", "retain_graph")
    end)

    it("refuses inputs that do not require grad", function()
      local x = leaf({1.0})
      H.errors(function() flame.autograd.grad((x * 2):sum(), H.t({1.0})) end, "autograd.grad", "does not require grad")
    end)
  end)

  describe("in-place checks", function()
    it("fail backward when a saved tensor was modified in place", function()
      local a = leaf({1.0, 2})
      local w = H.t({3.0, 4})
      local c = a * w -- saves w for d/da
      w:add_(1)
      H.errors(function() c:sum():backward() end, "MulBackward", "modified by an in-place operation")
      local b = a * 2
      local e = b * b
      flame.no_grad(function() b:mul_(3) end)
      H.errors(function() e:sum():backward() end, "modified by an in-place operation")
      local s = a:exp() -- saves its output
      local t = s * 1
      s:detach():zero_()
      H.errors(function() t:sum():backward() end, "modified by an in-place operation")
    end)

    it("refuse in-place ops on a leaf that requires grad", function()
      local x = leaf({1.0, 2})
      H.errors(function() x:add_(1) end, "add", "in-place", "leaf", "requires grad")
      H.errors(function() x:mul_(x) end, "mul", "in-place", "leaf")
      H.errors(function() x:fill_(0) end, "fill_", "in-place", "leaf")
      H.errors(function() x:zero_() end, "in-place", "leaf")
      H.errors(function() x:copy_(H.t({3.0, 4})) end, "copy_", "in-place", "leaf")
      H.errors(function() x:exp_() end, "exp", "in-place", "leaf")
      H.errors(function() x[1] = 5 end, "in-place")
      H.close(x, {1, 2})
    end)

    it("refuse in-place writes of a source that requires grad (its gradient would be lost)", function()
      local w = leaf({1.0, 2})
      local y = H.t({0.0, 0})
      H.errors(function() y:copy_(w) end, "copy_", "source", "requires grad", "not recorded")
      H.errors(function() y:add_(w) end, "add_", "source", "requires grad")
      H.errors(function() y[1] = w[2] end, "source", "requires grad")
      H.errors(function() y:index_add_(1, H.t({1}), w:narrow(1, 1, 1)) end, "index_add_", "requires grad")
      H.close(y, {0, 0})
      flame.no_grad(function() y:copy_(w) end) -- explicit: allowed
      H.close(y, {1, 2})
    end)
  end)

  describe(".grad", function()
    it("is settable to a tensor and to nil, and backward accumulates onto it", function()
      local x = leaf({1.0, 2})
      x.grad = H.t({5.0, 6})
      H.close(x.grad, {5, 6})
      ;(x * 1):sum():backward()
      H.close(x.grad, {6, 7})
      x.grad = nil
      assert.is_nil(x.grad)
      ;(x * 1):sum():backward()
      H.close(x.grad, {1, 1})
    end)

    it("rejects a tensor of another shape or dtype", function()
      local x = leaf({1.0, 2})
      H.errors(function() x.grad = H.t({1.0, 2, 3}) end, "grad", "f32[3]", "f32[2]")
      H.errors(function() x.grad = H.t({1.0, 2}, {dtype = "f64"}) end, "grad", "f64[2]")
      H.errors(function() x.grad = "nope" end, "flame tensor")
    end)
  end)

  describe("grad_fn", function()
    it("names the node that produced a tensor", function()
      local x = leaf({1.0, 2})
      assert.is_nil(x.grad_fn)
      assert.are.equal("MulBackward", (x * 2).grad_fn)
      assert.are.equal("AddBackward", (x + x).grad_fn)
      assert.are.equal("SumBackward", x:sum().grad_fn)
      assert.are.equal("ToBackward", x:double().grad_fn)
      assert.is_nil(flame.no_grad(function() return x * 2 end).grad_fn)
    end)

    it("names the real op, as PyTorch does (without its trailing 0)", function()
      local x = leaf({{1.0, -2, 3}, {4, 5, -6}})
      local v = leaf({1.0, 2, 3})
      local m = leaf({{1.0, 2}, {3, 4}, {5, 6}})
      local idx = H.t({2, 1}, {dtype = "i64"})
      local names = {
        {"ExpBackward", x:exp()}, {"LogBackward", x:abs():log()}, {"NegBackward", -x},
        {"TanhBackward", x:tanh()}, {"SigmoidBackward", x:sigmoid()}, {"ReluBackward", x:relu()},
        {"ClampBackward", x:clamp(0, 1)}, {"SqrtBackward", x:abs():sqrt()}, {"AbsBackward", x:abs()},
        {"SubBackward", x - 1}, {"MulBackward", x * x}, {"DivBackward", x / 2}, {"PowBackward", x ^ 2},
        {"MaximumBackward", x:maximum(x)}, {"MinimumBackward", x:minimum(x)},
        {"WhereBackward", flame.where(x:gt(0), x, x)},
        {"SumBackward", x:sum(2)}, {"MeanBackward", x:mean()}, {"ProdBackward", x:prod()},
        {"AmaxBackward", x:amax()}, {"AminBackward", x:amin()}, {"VarBackward", x:var()},
        {"MaxBackward", (x:max(2))}, {"MinBackward", (x:min(1))}, {"CumsumBackward", x:cumsum(2)},
        {"SoftmaxBackward", x:softmax(2)}, {"LogSoftmaxBackward", x:log_softmax(2)},
        {"MatmulBackward", x:matmul(m)}, {"IndexSelectBackward", x:index_select(2, idx)},
        {"GatherBackward", x:gather(2, H.t({{1}, {3}}, {dtype = "i64"}))},
        {"CatBackward", flame.cat({v, v})}, {"FlipBackward", x:flip(1)},
        {"TransposeBackward", x:t()}, {"PermuteBackward", x:permute(2, 1)}, {"ViewBackward", x:view(6)},
        {"NarrowBackward", x:narrow(2, 1, 2)}, {"SelectBackward", x[1]}, {"UnsqueezeBackward", v:unsqueeze(1)},
        {"ExpandBackward", v:expand(2, 3)}, {"CloneBackward", x:clone()},
      }
      for _, case in ipairs(names) do
        assert.are.equal(case[1], case[2].grad_fn)
      end
    end)

    it("names an op built from other ops after itself, not after its last step", function()
      local x = leaf({{1.0, -2, 3}, {4, 5, -6}})
      local v = leaf({1.0, 2, 3})
      local m = leaf({{1.0, 2}, {3, 4}, {5, 6}})
      local s = x:sum()
      local names = {
        {"StdBackward", x:std()}, {"StdBackward", x:std(2)}, -- not SqrtBackward
        {"NormBackward", x:norm()}, {"NormBackward", x:norm(1)}, {"NormBackward", x:norm("inf")},
        {"NormBackward", x:norm(3)},
        {"LerpBackward", x:lerp(x * 2, 0.5)}, {"LerpBackward", flame.lerp(v, v * 2, v)}, -- not AddBackward
        {"MaskedFillBackward", x:masked_fill(x:gt(0), 0)}, -- not WhereBackward
        {"StackBackward", flame.stack({v, v})}, {"StackBackward", flame.stack({v, v}, -1)}, -- not CatBackward
        {"MmBackward", x:mm(m)}, {"BmmBackward", x:unsqueeze(1):bmm(m:unsqueeze(1))}, -- not MatmulBackward
        -- a vector operand's result is a reshape of a GEMM's; it is still matmul's
        {"MatmulBackward", x:matmul(v)}, {"MatmulBackward", v:matmul(m)}, {"MatmulBackward", v:matmul(v)},
        -- a reshape that has to copy is a clone and a view; flatten is a reshape, as in PyTorch
        {"ReshapeBackward", x:t():reshape(6)}, {"ReshapeBackward", x:reshape(3, 2)},
        {"ReshapeBackward", x:flatten()}, {"ReshapeBackward", x:t():flatten()},
        -- on 0-dim tensors, which go through a reshape or a clone
        {"SoftmaxBackward", s:softmax(1)}, {"LogSoftmaxBackward", s:log_softmax(1)},
        {"CumsumBackward", s:cumsum(1)},
        {"AddBackward", x:add(x, 2)},
      }
      for i, case in ipairs(names) do
        assert.are.equal(case[1], case[2].grad_fn, "case " .. i)
      end
    end)

    it("gives max over a dim one node whose indices are not differentiable", function()
      local x = leaf({{1.0, 5, 2}, {7, 3, 4}})
      local values, indices = x:max(2)
      assert.are.equal("MaxBackward", values.grad_fn)
      assert.is_nil(indices.grad_fn)
      assert.is_false(indices.requires_grad)
      values:sum():backward()
      H.close(x.grad, {{0.0, 1, 0}, {1, 0, 0}}, {atol = 0, rtol = 0})
    end)
  end)

  describe("dtypes and broadcasting", function()
    it("bring gradients back through casts in the input's dtype", function()
      local x = leaf({1.0, 2})
      local d = x:double()
      d:retain_grad()
      local y = (d * 3):float()
      y:sum():backward()
      assert.are.equal("f32", x.grad.dtype)
      assert.are.equal("f64", d.grad.dtype)
      H.close(x.grad, {3, 3})
      for _, dt in ipairs({"f16", "bf16"}) do
        local h = leaf({1.0, 2}, {dtype = dt})
        ;(h:float() * 3):sum():backward()
        assert.are.equal(dt, h.grad.dtype)
        H.close(h.grad, {3, 3})
      end
    end)

    it("reduce broadcast gradients to the input's shape and dtype", function()
      local a = leaf({{1.0}, {2}}) -- f32 [2, 1]
      local b = leaf({1.0, 2, 3}, {dtype = "f64"}) -- f64 [3]
      local r = a + b
      assert.are.same({2, 3}, r.shape)
      assert.are.equal("f64", r.dtype)
      r:sum():backward()
      assert.are.same({2, 1}, a.grad.shape)
      assert.are.equal("f32", a.grad.dtype)
      H.close(a.grad, {{3}, {3}})
      assert.are.same({3}, b.grad.shape)
      assert.are.equal("f64", b.grad.dtype)
      H.close(b.grad, {2, 2, 2})
      local s = leaf(2.0) -- 0-dim
      local m = leaf({{1.0, 2, 3}, {4, 5, 6}})
      ;(s * m):sum():backward()
      assert.are.same({}, s.grad.shape)
      H.close(s.grad, 21)
      H.close(m.grad, {{2, 2, 2}, {2, 2, 2}})
    end)
  end)

  describe("post-accumulate grad hooks and .grad accumulation", function()
    it("accumulate into .grad in place: its memory, and a view of a larger buffer, keep the sum", function()
      local x = leaf({1.0, 2, 3})
      ;(x * 2):sum():backward()
      local g1 = x.grad
      ;(x * 3):sum():backward()
      assert.is_true(x.grad:is_set_to(g1))
      H.close(g1, {5, 5, 5})
      local buf = H.t({0.0, 0, 0, 0, 0})
      x.grad = buf:narrow(1, 2, 3)
      ;(x * 4):sum():backward()
      H.close(buf, {0, 4, 4, 4, 0}) -- the backward wrote the buffer, nothing else
      assert.is_true(x.grad:is_set_to(buf:narrow(1, 2, 3)))
    end)

    it("accumulate out of place into a .grad whose elements share memory", function()
      local x = leaf({1.0, 2, 3})
      local one = H.t({1.0})
      x.grad = one:expand(3)
      ;(x * 2):sum():backward()
      H.close(x.grad, {3, 3, 3})
      H.close(one, {1})
    end)

    it("run after .grad holds the accumulated gradient, with the tensor itself, once per backward", function()
      local x = leaf({1.0, 2})
      local seen = {}
      x:register_post_accumulate_grad_hook(function(t)
        assert.is_true(rawequal(t, x))
        seen[#seen + 1] = t.grad:sum():item()
      end)
      ;(x * 2 + x * 3):sum():backward() -- two uses, one accumulation
      ;(x * 1):sum():backward()
      assert.are.same({10, 12}, seen)
      local o = flame.autograd.grad((x * x):sum(), {x}) -- stores no .grad: no hook
      assert.are.same({10, 12}, seen)
      H.close(o[1], {2, 4})
    end)

    it("refuse a non-leaf, a tensor without grad, a returned value, and pass a hook's error", function()
      local x = leaf({1.0, 2})
      H.errors(function() (x * 2):register_post_accumulate_grad_hook(function() end) end,
        "register_post_accumulate_grad_hook: f32[2] on ", " is not a leaf")
      H.errors(function() H.t({1.0}):register_post_accumulate_grad_hook(function() end) end,
        "register_post_accumulate_grad_hook: f32[1] on ", " does not require grad")
      x:register_post_accumulate_grad_hook(function(t) return t end)
      H.errors(function() (x * 2):sum():backward() end, "post-accumulate grad hook: must return nothing")
      local y = leaf({1.0})
      y:register_post_accumulate_grad_hook(function() error("boom") end)
      H.errors(function() (y * 2):sum():backward() end, "boom")
    end)

    it("is_set_to: the same memory seen the same way", function()
      local a = H.t({{1.0, 2}, {3, 4}})
      assert.is_true(a:is_set_to(a))
      assert.is_true(a:is_set_to(a:view(2, 2)))
      assert.is_false(a:is_set_to(a:clone()))
      assert.is_false(a:is_set_to(a:t()))
      assert.is_false(a:view(4):narrow(1, 1, 2):is_set_to(a:view(4):narrow(1, 3, 2)))
      assert.is_false(a:is_set_to(a:view(4)))
    end)
  end)
end)
