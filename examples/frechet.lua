-- The Fréchet distance between two Gaussians fitted to feature sets (the FID formula):
--   d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})
-- Everything in f64. Tr((S1 S2)^{1/2}) is the sum of the square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2}
-- (similar to S1 S2, and symmetric positive semi-definite, so its eigenvalues are real and >= 0 up to rounding):
-- S1^{1/2} from a Jacobi eigen-decomposition of S1, then the eigenvalues of the product by Jacobi again. Jacobi
-- is slow (O(n^3) per sweep, in Lua) but exact to rounding on symmetric matrices; feature sizes of a few hundred
-- take seconds.
--   local frechet = dofile("examples/frechet.lua")
--   local d = frechet.distance(frechet.stats(f1), frechet.stats(f2))   -- f1, f2: [N, D] tensors
local flame = require "flame"

local M = {}

-- Eigenvalues (and eigenvectors, the columns of V) of the symmetric n x n matrix `a` (a flat row-major Lua array,
-- overwritten): cyclic Jacobi rotations until the off-diagonal mass is below 1e-30 of the total.
-- Returns eigenvalues (a Lua array) and V (flat row-major) when want_vectors.
function M.jacobi_eigh(a, n, want_vectors)
  local v
  if want_vectors then
    v = {}
    for i = 1, n * n do v[i] = 0.0 end
    for i = 1, n do v[(i - 1) * n + i] = 1.0 end
  end
  local total = 0.0
  for i = 1, n * n do total = total + a[i] * a[i] end
  for _ = 1, 100 do
    local off = 0.0
    for p = 1, n - 1 do
      for q = p + 1, n do off = off + a[(p - 1) * n + q] ^ 2 end
    end
    if off <= 1e-30 * total or off == 0 then break end
    for p = 1, n - 1 do
      for q = p + 1, n do
        local pq = (p - 1) * n + q
        local apq = a[pq]
        if apq ~= 0 then
          -- The rotation in the (p, q) plane that zeroes a[p][q]: t = tan(phi), cot(2 phi) = theta.
          local theta = (a[(q - 1) * n + q] - a[(p - 1) * n + p]) / (2 * apq)
          local t = (theta >= 0 and 1 or -1) / (math.abs(theta) + math.sqrt(theta * theta + 1))
          local c = 1 / math.sqrt(t * t + 1)
          local s = t * c
          for k = 1, n do -- columns p and q: A J
            local kp, kq = (k - 1) * n + p, (k - 1) * n + q
            local x, y = a[kp], a[kq]
            a[kp], a[kq] = c * x - s * y, s * x + c * y
          end
          local rp, rq = (p - 1) * n, (q - 1) * n
          for k = 1, n do -- rows p and q: J^T (A J)
            local x, y = a[rp + k], a[rq + k]
            a[rp + k], a[rq + k] = c * x - s * y, s * x + c * y
          end
          if v then
            for k = 1, n do
              local kp, kq = (k - 1) * n + p, (k - 1) * n + q
              local x, y = v[kp], v[kq]
              v[kp], v[kq] = c * x - s * y, s * x + c * y
            end
          end
        end
      end
    end
  end
  local w = {}
  for i = 1, n do w[i] = a[(i - 1) * n + i] end
  return w, v
end

local function flat(t) -- an [n, n] f64 tensor -> a flat Lua array
  return t:reshape(t:numel()):totable()
end

-- The symmetric square root of a symmetric positive semi-definite [n, n] tensor (f64, CPU): V diag(sqrt w) V^T.
function M.sqrt_psd(s)
  s = s:cpu():double()
  local n = s:size(1)
  local w, v = M.jacobi_eigh(flat(s), n, true)
  for i = 1, n do w[i] = math.sqrt(math.max(w[i], 0)) end
  local V = flame.tensor(v, {dtype = "f64"}):reshape(n, n)
  return (V * flame.tensor(w, {dtype = "f64"}):unsqueeze(1)):matmul(V:t())
end

-- Tr((S1 S2)^{1/2}) of two symmetric positive semi-definite [n, n] tensors (any float dtype; computed in f64).
-- root1: S1^{1/2} when known (distance() keeps it on the stats table, so one reference serves several sets).
function M.trace_sqrt_product(s1, s2, root1)
  local root = root1 or M.sqrt_psd(s1)
  local n = root:size(1)
  local m = root:matmul(s2:cpu():double()):matmul(root)
  m = (m + m:t()) * 0.5 -- symmetric up to rounding; make it exact for Jacobi
  local ev = M.jacobi_eigh(flat(m), n, false)
  local tr = 0.0
  for i = 1, n do tr = tr + math.sqrt(math.max(ev[i], 0)) end
  return tr
end

-- The mean [D] and covariance [D, D] (unbiased, as numpy.cov) of features [N, D], in f64 on the CPU.
function M.stats(features)
  local f = features:cpu():double()
  local n = f:size(1)
  if n < 2 then error("frechet.stats: needs at least 2 feature rows, got " .. n, 2) end
  local mu = f:mean(1)
  local c = f - mu:unsqueeze(1)
  return {mu = mu, sigma = c:t():matmul(c) / (n - 1)}
end

-- The squared Fréchet distance between two stats tables (as FID reports it). a's square root of the covariance is
-- kept in a.root: pass the shared reference first.
function M.distance(a, b)
  a.root = a.root or M.sqrt_psd(a.sigma)
  local d = a.mu - b.mu
  local eye = flame.eye(a.sigma:size(1), {dtype = "f64"})
  local tr = (a.sigma * eye):sum():item() + (b.sigma * eye):sum():item()
  return (d * d):sum():item() + tr - 2 * M.trace_sqrt_product(a.sigma, b.sigma, a.root)
end

return M
