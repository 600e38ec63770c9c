-- The fused attention kernels under compute-sanitizer (memcheck, racecheck): every feature the kernels branch on,
-- forward and backward, on small odd shapes, with no reference computation around them (the spec's references make
-- a sanitizer run of spec/flash_attention_spec.lua take minutes). Prints the backend each call took.
--   compute-sanitizer --tool racecheck flame-lua bench/flash_sanitize.lua
local flame = require "flame"
local F = flame.F
flame.manual_seed(3)

local function rand(shape, dt)
  local t = flame.randn(shape, {dtype = dt, device = "cuda"})
  t.requires_grad = true
  return t
end

local function run(what, f, q, k, v)
  local out = f(q, k, v)
  out:float():sum():backward()
  flame.cuda.synchronize()
  local ok, _, kernel = pcall(F.sdpa_backend, q, k, v) -- 4-D only: varlen's packed q says nothing here
  print(string.format("ran %-48s %s", what, ok and kernel or ""))
end

-- {B, Hq, Hk, Sq, Sk, D, causal, dropout}: odd lengths, GQA, both causal corners, the interior tiles (256 x 256), d 32..128
local cases = {
  {2, 4, 2, 77, 130, 64, false, 0}, {1, 2, 1, 200, 65, 128, true, 0}, {1, 2, 2, 70, 150, 32, "bottom_right", 0},
  {1, 2, 2, 129, 128, 96, false, 0}, {1, 2, 2, 256, 256, 64, true, 0}, {1, 1, 1, 256, 256, 128, false, 0},
  {2, 4, 2, 100, 90, 64, true, 0.2}, {1, 2, 1, 150, 70, 128, false, 0.1},
}
for _, c in ipairs(cases) do
  local B, Hq, Hk, Sq, Sk, D, causal, p = table.unpack(c)
  for _, dt in ipairs({"bf16", "f16"}) do
    local q, k, v = rand({B, Hq, Sq, D}, dt), rand({B, Hk, Sk, D}, dt), rand({B, Hk, Sk, D}, dt)
    run(string.format("sdpa %s [%d,%d,%d,%d,%d,%d] causal %s p %g", dt, B, Hq, Hk, Sq, Sk, D, tostring(causal), p),
      function(a, b, cc) return F.scaled_dot_product_attention(a, b, cc, {causal = causal, dropout_p = p}) end, q, k, v)
  end
end

-- varlen: short and long sequences, an empty one, causal (bottom-right), GQA, dropout
local lq, lk = {1, 3, 17, 64, 65, 130, 0, 300}, {2, 3, 15, 64, 70, 129, 4, 250}
local function cu(lens)
  local c, t = {0}, 0
  for i, n in ipairs(lens) do t = t + n; c[i + 1] = t end
  return flame.tensor(c, {dtype = "i32", device = "cuda"}), t, math.max(table.unpack(lens))
end
local cq, tq, mq = cu(lq)
local ck, tk, mk = cu(lk)
for _, c in ipairs({{false, 0, 64}, {true, 0, 128}, {true, 0.25, 64}}) do
  local q, k, v = rand({tq, 4, c[3]}, "bf16"), rand({tk, 2, c[3]}, "bf16"), rand({tk, 2, c[3]}, "bf16")
  run(string.format("varlen bf16 d%d causal %s p %g", c[3], tostring(c[1]), c[2]),
    function(a, b, cc) return F.flash_attention_varlen(a, b, cc, cq, ck, mq, mk, {causal = c[1], dropout_p = c[2]}) end,
    q, k, v)
end
print("flash_sanitize: done")
