-- Reference attention (composed from matmul, softmax and elementwise ops) and dropout, beside
-- PyTorch's math SDPA backend (bench/nn/attention.py). fwd+bwd cases run the forward and the
-- backward with a fixed upstream gradient inside the timed function.
local function sdpa_case(name, dtype, opts, target)
  return {
    name = name, target = target,
    setup = function(flame)
      local function t() return flame.randn(8, 16, 512, 64, {dtype = dtype, device = "cuda", requires_grad = true}) end
      local q, k, v = t(), t(), t()
      local g = flame.randn(8, 16, 512, 64, {dtype = dtype, device = "cuda"})
      local F = flame.F
      return function()
        local o = F.scaled_dot_product_attention(q, k, v, opts)
        flame.autograd.grad(o, {q, k, v}, {g})
      end
    end,
  }
end

return {
  sdpa_case("sdpa fwd+bwd f32 [8,16,512,64]", "f32", nil, 0.8),
  sdpa_case("sdpa fwd+bwd bf16 [8,16,512,64]", "bf16", nil, nil),
  sdpa_case("sdpa fwd+bwd causal f32 [8,16,512,64]", "f32", {causal = true}, nil),
  sdpa_case("sdpa fwd+bwd dropout0.1 f32 [8,16,512,64]", "f32", {dropout_p = 0.1}, nil),
  {
    name = "dropout fwd+bwd f32 [8192,4096] p0.1",
    setup = function(flame)
      local x = flame.randn(8192, 4096, {device = "cuda", requires_grad = true})
      local g = flame.randn(8192, 4096, {device = "cuda"})
      return function() flame.autograd.grad(flame.F.dropout(x, 0.1), {x}, {g}) end
    end,
  },
}
