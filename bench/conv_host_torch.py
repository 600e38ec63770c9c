"""PyTorch's twin of bench/conv_host.lua: the host time of one torch.nn.functional.conv2d call (call to return, the
median of --samples samples of --calls calls, synchronised between samples so the launch queue never fills) and its
wall time (the synchronisation inside the clock), forward without autograd ("fwd") and forward + torch.autograd.grad
for dx and dw ("fwd+bwd"), at the shapes of bench/conv_host_cases.txt, on the same GPU. cuDNN as flame runs it:
measured algorithm search (benchmark = True, like flame's FLAME_CUDNN_FIND default), f32 without TF32.
    python3 bench/conv_host_torch.py [--calls N] [--samples N] [--dtypes bf16,f32]
One JSON line a row ("api": "torch"); bench/conv_host_ratio.py joins them with flame's."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--calls", type=int, default=20)
p.add_argument("--samples", type=int, default=31)
p.add_argument("--dtypes", default="bf16,f32")
a = p.parse_args()

torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = False
DT = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}


def cases():
    for line in open("bench/conv_host_cases.txt"):
        f = line.split()
        if f and not f[0].startswith("#"):
            yield f[0], [int(v) for v in f[1:8]]


def measure(fn):
    """Medians of the host and the wall time per call, in us (bench/conv_host.lua's method)."""
    fn(); fn(); torch.cuda.synchronize()
    host, wall = [], []
    for _ in range(a.samples):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.calls):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        host.append((t1 - t0) / a.calls * 1e6)
        wall.append((t2 - t0) / a.calls * 1e6)
    host.sort(), wall.sort()
    m = (a.samples - 1) // 2
    return host[m], wall[m]


for name, (n, cin, cout, size, k, pad, stride) in cases():
    for dt in a.dtypes.split(","):
        torch.manual_seed(1)
        o = dict(dtype=DT[dt], device="cuda")
        x, w = torch.randn(n, cin, size, size, **o), torch.randn(cout, cin, k, k, **o) * 0.05
        gy = F.conv2d(x, w, None, stride, pad).clone()
        xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()

        def fwd():
            with torch.no_grad():
                return F.conv2d(x, w, None, stride, pad)

        def fwd_bwd():
            return torch.autograd.grad(F.conv2d(xg, wg, None, stride, pad), (xg, wg), gy)

        for pname, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            host, wall = measure(fn)
            print(json.dumps({"side": "torch", "case": name, "dtype": dt, "pass": pname, "api": "torch", "ran": "torch",
                              "host_us": round(host, 3), "wall_us": round(wall, 3)}), flush=True)
