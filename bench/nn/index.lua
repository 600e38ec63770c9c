-- Index ops and losses (bench/nn.lua runs these; bench/nn/index.py has the same names for PyTorch).
-- The backward of index_select and embedding is flame's deterministic sort-and-segment-sum.
return {
  {name = "index_select fwd+bwd f32 [50000,1024] gather 65536 rows (deterministic)", target = 1.0,
    setup = function(flame)
      local x = flame.randn(50000, 1024, {device = "cuda", requires_grad = true})
      local idx = flame.randint(1, 50001, {65536}, {device = "cuda"})
      local g = flame.randn(65536, 1024, {device = "cuda"})
      return function()
        x.grad = nil
        x:index_select(1, idx):backward(g)
      end
    end},
  {name = "embedding fwd+bwd f32 vocab 50000 ids 65536 dim 1024 (deterministic)", target = 1.0,
    setup = function(flame)
      local w = flame.randn(50000, 1024, {device = "cuda", requires_grad = true})
      local ids = flame.randint(1, 50001, {32, 2048}, {device = "cuda"})
      local g = flame.randn(32, 2048, 1024, {device = "cuda"})
      return function()
        w.grad = nil
        flame.F.embedding(ids, w):backward(g)
      end
    end},
  {name = "cross_entropy fwd+bwd bf16 [8192,32000]", target = 1.0,
    setup = function(flame)
      local x = flame.randn(8192, 32000, {device = "cuda", dtype = "bf16", requires_grad = true})
      local t = flame.randint(1, 32001, {8192}, {device = "cuda"})
      return function()
        x.grad = nil
        flame.F.cross_entropy(x, t):backward()
      end
    end},
}
