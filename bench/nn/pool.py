# Pooling, resizing and padding cases of bench/nn_torch.py (same names as bench/nn/pool.lua).
import torch.nn.functional as F


def fwd_bwd(dtype, fn):
    def setup(torch):
        dt = getattr(torch, dtype)
        x = torch.randn(32, 128, 64, 64, dtype=dt, device="cuda", requires_grad=True)
        g = torch.randn(fn(x).shape, dtype=dt, device="cuda")
        return lambda: torch.autograd.grad(fn(x), (x,), (g,))
    return setup


CASES = {
    "max_pool2d fwd+bwd f32 [32,128,64,64] k2": fwd_bwd("float32", lambda x: F.max_pool2d(x, 2)),
    "max_pool2d fwd+bwd f32 [32,128,64,64] k3s2p1": fwd_bwd("float32", lambda x: F.max_pool2d(x, 3, 2, 1)),
    "avg_pool2d fwd+bwd f32 [32,128,64,64] k2": fwd_bwd("float32", lambda x: F.avg_pool2d(x, 2)),
    "avg_pool2d fwd+bwd f32 [32,128,64,64] k3s2p1": fwd_bwd("float32", lambda x: F.avg_pool2d(x, 3, 2, 1)),
    "max_pool2d fwd+bwd bf16 [32,128,64,64] k3s2p1": fwd_bwd("bfloat16", lambda x: F.max_pool2d(x, 3, 2, 1)),
    "bilinear 2x fwd+bwd f32 [32,128,64,64]": fwd_bwd("float32", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
    "bilinear 2x fwd+bwd bf16 [32,128,64,64]": fwd_bwd("bfloat16", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
    "nearest 2x fwd+bwd f32 [32,128,64,64]": fwd_bwd("float32", lambda x: F.interpolate(x, scale_factor=2)),
    "reflect pad 1 fwd+bwd f32 [32,128,64,64]": fwd_bwd("float32", lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect")),
    "adaptive_avg_pool2d 7 fwd+bwd f32 [32,128,64,64]": fwd_bwd("float32", lambda x: F.adaptive_avg_pool2d(x, 7)),
}
