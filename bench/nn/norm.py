# Norm cases for bench/nn_torch.py (names match bench/nn/norm.lua): forward + torch.autograd.grad.
def _case(dt, shape, op):
    def setup(torch):
        F = torch.nn.functional
        dtype = getattr(torch, dt)
        x = torch.randn(shape, dtype=dtype, device="cuda", requires_grad=True)
        c = shape[1] if op == "group" else shape[-1]
        w = torch.randn(c, dtype=dtype, device="cuda", requires_grad=True)
        b = torch.randn(c, dtype=dtype, device="cuda", requires_grad=True)
        g = torch.randn(shape, dtype=dtype, device="cuda")
        if op == "layer":
            return lambda: torch.autograd.grad(F.layer_norm(x, (c,), w, b), (x, w, b), g)
        if op == "rms":
            return lambda: torch.autograd.grad(F.rms_norm(x, (c,), w, 1e-5), (x, w), g)
        return lambda: torch.autograd.grad(F.group_norm(x, 32, w, b), (x, w, b), g)
    return setup


CASES = {
    "layer_norm fwd+bwd f32 [8192,1024]": _case("float32", (8192, 1024), "layer"),
    "layer_norm fwd+bwd bf16 [8192,1024]": _case("bfloat16", (8192, 1024), "layer"),
    "group_norm fwd+bwd bf16 [32,256,64,64] g32": _case("bfloat16", (32, 256, 64, 64), "group"),
    "rms_norm fwd+bwd bf16 [8192,1024]": _case("bfloat16", (8192, 1024), "rms"),
}
