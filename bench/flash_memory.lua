-- The fused attention's memory at 16k: forward + backward of [1, 4, 16384, 64] bf16, and how far the allocator's peak
-- rises above the inputs (one S x S bf16 score matrix for the 4 heads would be 2048 MiB). The peak has no reset, so
-- one case a process: flame-lua bench/flash_memory.lua [causal]. spec/flash_attention_spec.lua asserts the bound.
local flame = require "flame"
local F = flame.F
local S, causal = 16384, arg[1] == "causal"
local function input()
  return flame.randn(1, 4, S, 64, {device = "cuda"}):to({dtype = "bf16"}):requires_grad_()
end
local q, k, v = input(), input(), input()
flame.cuda.synchronize()
local base = flame.cuda.memory_stats().allocated
F.scaled_dot_product_attention(q, k, v, {causal = causal}):sum():backward()
flame.cuda.synchronize()
local peak = flame.cuda.memory_stats().peak
print(string.format("16k [1,4,%d,64] bf16 fwd+bwd causal %-5s (%s): peak %.1f MiB above the %.1f MiB of inputs",
  S, tostring(causal), F.sdpa_backend(q, k, v), (peak - base) / 2 ^ 20, base / 2 ^ 20))
