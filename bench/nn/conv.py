# Convolution cases (issue 7), the names of bench/nn/conv.lua. PyTorch runs cuDNN for
# both the default and the "(gemm path)" names: the latter measure flame's im2col path
# against the same reference.
def conv_case(fn, xs, ws, dtype, opts, backward):
    def setup(torch):
        F = torch.nn.functional
        dt = getattr(torch, dtype)
        x = torch.randn(xs, dtype=dt, device="cuda")
        w = (torch.randn(ws, device="cuda") * 0.05).to(dt)
        b = torch.zeros(ws[0], dtype=dt, device="cuda")
        gy = None
        if backward:
            x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
            with torch.no_grad():
                shape = getattr(F, fn)(x, w, b, **opts).shape
            gy = torch.randn(shape, dtype=dt, device="cuda")

        def run():
            y = getattr(F, fn)(x, w, b, **opts)
            if backward:
                y.backward(gy)
        return run
    return setup


SPECS = [
    ("conv2d fwd+bwd bf16 [32,128,64,64] k3 pad1", "conv2d", [32, 128, 64, 64], [128, 128, 3, 3], "bfloat16",
     dict(padding=1), True),
    ("conv2d fwd+bwd f32 [32,128,64,64] k3 pad1", "conv2d", [32, 128, 64, 64], [128, 128, 3, 3], "float32",
     dict(padding=1), True),
    ("conv2d fwd depthwise f32 [32,256,64,64] k3 pad1", "conv2d", [32, 256, 64, 64], [256, 1, 3, 3], "float32",
     dict(padding=1, groups=256), False),
    ("conv3d fwd+bwd bf16 [4,64,16,64,64] k3 pad1", "conv3d", [4, 64, 16, 64, 64], [64, 64, 3, 3, 3], "bfloat16",
     dict(padding=1), True),
    ("conv2d fwd bf16 [2000,96,32,32] k3 pad1", "conv2d", [2000, 96, 32, 32], [96, 96, 3, 3], "bfloat16",
     dict(padding=1), False),
    ("conv2d fwd bf16 [2000,192,16,16] k3 pad1", "conv2d", [2000, 192, 16, 16], [192, 192, 3, 3], "bfloat16",
     dict(padding=1), False),
]
CASES = {}
for name, fn, xs, ws, dt, opts, bw in SPECS:
    CASES[name] = conv_case(fn, xs, ws, dt, opts, bw)
for name, fn, xs, ws, dt, opts, bw in SPECS:
    CASES[name + " (gemm path)"] = conv_case(fn, xs, ws, dt, opts, bw)
