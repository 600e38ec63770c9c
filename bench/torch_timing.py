"""The PyTorch side's clock, shared by bench/gpu_torch.py and bench/nn_torch.py,
with the method of bench/gpu.lua and bench/nn.lua: warm up once, then the
median over reps of a synchronised loop of iters calls. Host cases (the cost of
a call to its return) stop the clock before synchronising."""
import time
import torch


def median_time(fn, iters, reps, host=False):
    fn(); torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if not host:
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) / iters)
        if host:
            torch.cuda.synchronize()
    ts.sort()
    return ts[(len(ts) - 1) // 2]
