# PyTorch side of bench/nn/attention.lua: SDPA through the math backend
# (torch.nn.attention.sdpa_kernel(SDPBackend.MATH)), and dropout.


def _sdpa(dtype, **kw):
    def setup(torch):
        from torch.nn.attention import sdpa_kernel, SDPBackend
        dt = getattr(torch, dtype)
        q, k, v = (torch.randn(8, 16, 512, 64, dtype=dt, device="cuda", requires_grad=True) for _ in range(3))
        g = torch.randn(8, 16, 512, 64, dtype=dt, device="cuda")
        F = torch.nn.functional

        def fn():
            with sdpa_kernel(SDPBackend.MATH):
                o = F.scaled_dot_product_attention(q, k, v, **kw)
            torch.autograd.grad(o, (q, k, v), g)
        return fn
    return setup


def _dropout(torch):
    x = torch.randn(8192, 4096, device="cuda", requires_grad=True)
    g = torch.randn(8192, 4096, device="cuda")
    return lambda: torch.autograd.grad(torch.nn.functional.dropout(x, 0.1), (x,), g)


CASES = {
    "sdpa fwd+bwd f32 [8,16,512,64]": _sdpa("float32"),
    "sdpa fwd+bwd bf16 [8,16,512,64]": _sdpa("bfloat16"),
    "sdpa fwd+bwd causal f32 [8,16,512,64]": _sdpa("float32", is_causal=True),
    "sdpa fwd+bwd dropout0.1 f32 [8,16,512,64]": _sdpa("float32", dropout_p=0.1),
    "dropout fwd+bwd f32 [8192,4096] p0.1": _dropout,
}
