-- Every op on every backend: each case runs on the CPU and on CUDA with the
-- same inputs and the results (and input gradients) must agree. Pending where
-- no GPU is present.
local H = require "helper"
local flame = H.flame

local has_cuda = flame.cuda.is_available()

local function rn(...) return flame.randn(...) end
local function pos(...) return flame.rand(...) + 0.5 end

-- name, inputs (CPU tensors), fn(inputs...) -> tensor or list, tolerance, differentiable?
local cases = {
  {"add broadcast", {rn(5, 1, 3), rn(1, 4, 1)}, function(a, b) return a + b end, nil, true},
  {"sub scalar", {rn(3, 4)}, function(a) return 2 - a end, nil, true},
  {"mul", {rn(4, 5), rn(5)}, function(a, b) return a * b end, nil, true},
  {"div", {rn(4, 5), pos(4, 1)}, function(a, b) return a / b end, nil, true},
  {"pow", {pos(3, 4), rn(3, 4)}, function(a, b) return a ^ b end, nil, true},
  {"maximum/minimum", {rn(6, 7), rn(7)}, function(a, b) return a:maximum(b) + a:minimum(b) * 2 end, nil, true},
  {"comparisons", {rn(5, 6), rn(5, 6)}, function(a, b) return {a:lt(b), a:le(b), a:gt(b), a:ge(b), a:eq(a), a:ne(b)} end},
  {"unary", {rn(7, 9)}, function(a) return a:exp() + a:sin() + a:cos() + a:tanh() + a:sigmoid() + a:relu() + a:gelu() + a:gelu("tanh") + a:silu() + a:abs() + a:neg() end, {atol = 1e-4}, true},
  {"log sqrt rsqrt", {pos(4, 5)}, function(a) return a:log() + a:sqrt() + a:rsqrt() end, {atol = 1e-4}, true},
  {"clamp", {rn(30)}, function(a) return a:clamp(-0.5, 0.7) end, nil, true},
  {"where", {rn(4, 5), rn(4, 5)}, function(a, b) return flame.where(a:gt(0), a, b) end, nil, true},
  {"lerp", {rn(4, 5), rn(4, 5)}, function(a, b) return a:lerp(b, 0.3) end, nil, true},
  {"non-contiguous", {rn(6, 8)}, function(a) return a:t() * 3 + a:narrow(2, 2, 6):t():sum(1, true) end, nil, true},
  {"sum/mean dims", {rn(4, 5, 6)}, function(a) return {a:sum(), a:sum({1, 3}), a:mean(2, true), a:mean({1, 2})} end, {atol = 1e-4}, true},
  {"var/std", {rn(5, 7)}, function(a) return {a:var(2), a:std(1, {correction = 0}), a:var()} end, {atol = 1e-4}, true},
  {"max/min/argmax", {rn(6, 9)}, function(a) local v, i = a:max(2); local w, j = a:min(1, true); return {v, i, w, j, a:argmax(), a:argmin(2), a:max()} end},
  {"prod/cumsum/norm", {pos(3, 4)}, function(a) return {a:prod(2), a:cumsum(1), a:norm(), a:norm(1, 2)} end, {atol = 1e-4}, true},
  {"softmax", {rn(4, 10) * 5}, function(a) return {a:softmax(2), a:log_softmax(1)} end, {atol = 1e-5}, true},
  {"matmul", {rn(2, 3, 8, 16), rn(16, 5)}, function(a, b) return a:matmul(b) end, {atol = 1e-4}, true},
  {"matmul transposed", {rn(16, 8), rn(5, 16)}, function(a, b) return a:t():matmul(b:t()) end, {atol = 1e-4}, true},
  {"bmm", {rn(4, 6, 7), rn(4, 7, 3)}, function(a, b) return flame.bmm(a, b) end, {atol = 1e-4}, true},
  {"views", {rn(2, 3, 4)}, function(a) return a:permute(3, 1, 2):reshape(4, 6):narrow(1, 2, 2):flip(2) end, nil, true},
  {"cat/stack", {rn(2, 3), rn(4, 3)}, function(a, b) return flame.cat({a, b}, 1) + 0 end, nil, true},
  {"index_select", {rn(5, 4)}, function(a) return a:index_select(1, flame.tensor({5, 1, 3, 1}, {device = a.device})) end, nil, true},
  {"gather/scatter_add", {rn(3, 5)}, function(a)
    local idx = flame.tensor({{1, 5}, {2, 2}, {4, 3}}, {device = a.device})
    return {a:gather(2, idx), a:scatter_add(2, idx, a:narrow(2, 1, 2))}
  end, nil, true},
  {"masked_fill", {rn(4, 4)}, function(a) return a:masked_fill(a:lt(0), -1) end, nil, true},
  {"casts", {rn(50) * 100}, function(a) return {a:half():float(), a:bfloat16():float(), a:long(), a:int(), a:bool(), a:double()} end},
}

local function as_list(r) return flame.is_tensor(r) and {r} or r end

describe("every op on CPU and CUDA", function()
  for _, c in ipairs(cases) do
    local name, inputs, fn, tol, diff = c[1], c[2], c[3], c[4] or {atol = 1e-5, rtol = 1e-4}, c[5]
    local test = has_cuda and it or pending
    test(name .. " agrees", function()
      local cpu, gpu = {}, {}
      for k, x in ipairs(inputs) do
        cpu[k] = x:detach(); gpu[k] = x:cuda()
        if diff then cpu[k].requires_grad = true; gpu[k].requires_grad = true end
      end
      local rc, rg = as_list(fn(table.unpack(cpu))), as_list(fn(table.unpack(gpu)))
      assert.are.equal(#rc, #rg)
      for k = 1, #rc do
        assert.are.equal("cuda:0", rg[k].device)
        assert.are.equal(rc[k].dtype, rg[k].dtype)
        H.close(rg[k]:cpu(), rc[k], tol, name .. " output " .. k)
      end
      if diff then
        rc[1]:sum():backward(); rg[1]:sum():backward()
        for k = 1, #cpu do H.close(gpu[k].grad:cpu(), cpu[k].grad, tol, name .. " grad " .. k) end
      end
    end)
  end

  local test = has_cuda and it or pending
  test("rand, randn and randint give the same numbers on both devices", function()
    flame.manual_seed(7); local a = flame.rand(1001); local b = flame.randn(999); local c = flame.randint(0, 10, {77})
    flame.manual_seed(7)
    local ga, gb, gc = flame.rand(1001, {device = "cuda"}), flame.randn(999, {device = "cuda"}), flame.randint(0, 10, {77}, {device = "cuda"})
    H.close(ga:cpu(), a, {atol = 0, rtol = 0})
    H.close(gb:cpu(), b, {atol = 1e-6, rtol = 1e-6})
    H.close(gc:cpu(), c, {atol = 0, rtol = 0})
  end)

  test("memory stats and empty_cache", function()
    collectgarbage(); collectgarbage() -- so no collection of earlier garbage lands inside the measurement
    local before = flame.cuda.memory_stats()
    local x = flame.empty(1024, 1024, {device = "cuda"})
    local mid = flame.cuda.memory_stats()
    assert.is_true(mid.allocated >= before.allocated + 4 * 1024 * 1024)
    x = nil; collectgarbage(); collectgarbage()
    flame.cuda.empty_cache()
    local after = flame.cuda.memory_stats()
    assert.is_true(after.allocated <= before.allocated)
    assert.is_true(after.reserved <= mid.reserved)
  end)

  test("an impossible allocation is a Lua error naming the size", function()
    H.errors(function() return flame.empty(1 << 46, {dtype = "f32", device = "cuda"}) end, "out of memory")
  end)

  test("an out-of-range index on CUDA is reported", function()
    H.errors(function()
      local x = flame.randn(4, 3, {device = "cuda"})
      local r = x:index_select(1, flame.tensor({1, 9}, {device = "cuda"}))
      return r:cpu()
    end, "index")
  end)

  test("mixing devices names both", function()
    H.errors(function() return flame.ones(2) + flame.ones(2, {device = "cuda"}) end, "cpu", "cuda:0")
  end)
end)
