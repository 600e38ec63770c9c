-- examples/frechet.lua (the Fréchet distance of examples/score.lua) against numpy in f64
-- (spec/fixtures/gen_frechet.py computes Tr sqrtm(S1 S2) from the eigenvalues of the non-symmetric S1 S2, not by
-- this file's Jacobi route).
local H = require "helper"
local flame = H.flame
local frechet = dofile("examples/frechet.lua")
local fx = require "fixtures.frechet"

local function f64(t) return flame.tensor(t, {dtype = "f64"}) end
local function rel(a, b) return math.abs(a - b) / math.max(1, math.abs(b)) end

describe("examples/frechet.lua", function()
  it("jacobi_eigh diagonalises a symmetric matrix: A V = V diag(w)", function()
    local a = {4, 1, 2, 1, 3, 0, 2, 0, 5}
    local w, v = frechet.jacobi_eigh({table.unpack(a)}, 3, true)
    local A, V = f64(a):reshape(3, 3), f64(v):reshape(3, 3)
    H.close(A:matmul(V), V * f64(w):unsqueeze(1), {atol = 1e-12})
    H.close(V:t():matmul(V), flame.eye(3, {dtype = "f64"}), {atol = 1e-12})
  end)

  it("stats are numpy's mean and cov", function()
    local c = fx[1]
    local st = frechet.stats(f64(c.a))
    H.close(st.mu, f64(c.mu1), {atol = 1e-12})
    H.close(st.sigma, f64(c.s1), {atol = 1e-12})
  end)

  it("trace of the square root and the distance match numpy (also rank-deficient covariances)", function()
    for i, c in ipairs(fx) do
      -- Rank-deficient S1 S2 (case 4: 20 samples, 24 features) has eigenvalues at rounding level whose square roots
      -- (~1e-8) differ between any two methods: there 1e-7 relative.
      local tol = i == 4 and 1e-7 or 1e-9
      local a = {mu = f64(c.mu1), sigma = f64(c.s1)}
      local b = {mu = f64(c.mu2), sigma = f64(c.s2)}
      local tr = frechet.trace_sqrt_product(a.sigma, b.sigma)
      assert.is_true(rel(tr, c.trace_sqrt) < tol, string.format("case %d: trace %.17g vs numpy %.17g", i, tr, c.trace_sqrt))
      local d = frechet.distance(a, b)
      assert.is_true(rel(d, c.distance) < tol, string.format("case %d: distance %.17g vs numpy %.17g", i, d, c.distance))
      local self_d = frechet.distance(a, a)
      assert.is_true(math.abs(self_d) < tol * c.trace_sqrt, string.format("case %d: distance to itself %.3g", i, self_d))
    end
  end)

  it("names too few feature rows", function()
    local ok, err = pcall(frechet.stats, flame.zeros(1, 4))
    assert.is_false(ok)
    assert.is_truthy(tostring(err):match("frechet%.stats: needs at least 2 feature rows, got 1"), err)
  end)
end)
