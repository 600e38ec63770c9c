-- The smallest check of cuDNN's graph API path (cuda/conv_cudnn_graph.cu), run first by bench/conv_graph_check.sh
-- with FLAME_CUDNN_LOG=1: one bf16 and one f32 3x3 convolution, forward and both gradients through the graph API,
-- against the im2col + GEMM path. Prints which API ran and the largest differences; the log (stderr) shows each
-- plan's candidates or why the graph API declined a key.
local flame = require "flame"
local F = flame.F

F._cudnn_api("graph")
for _, dt in ipairs({"bf16", "f32"}) do
  flame.manual_seed(3)
  local o = {device = "cuda", dtype = dt}
  local x, w = flame.randn(2, 8, 8, 8, o), flame.randn(16, 8, 3, 3, o) * 0.2
  local function run(algo)
    F.conv_algo(algo)
    local xg, wg = x:detach(), w:detach()
    xg.requires_grad, wg.requires_grad = true, true
    local y = F.conv2d(xg, wg, nil, {padding = 1})
    local g = flame.autograd.grad(y, {xg, wg}, flame.ones_like(y))
    return {y, g[1], g[2]}, select(2, F._cudnn_api())
  end
  local d, ran = run("direct")
  local r = run("gemm")
  F.conv_algo("auto")
  local diffs = {}
  for i, what in ipairs({"y", "dx", "dw"}) do
    local a, b = d[i]:to({dtype = "f32"}), r[i]:to({dtype = "f32"})
    diffs[#diffs + 1] = string.format("%s %.3g (of %.3g)", what, (a - b):abs():max():item(), b:abs():max():item())
  end
  print(string.format("probe %s: the last cuDNN call ran on the %s API; direct vs gemm max |diff|: %s", dt,
    tostring(ran), table.concat(diffs, ", ")))
end
