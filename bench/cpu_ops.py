"""numpy's and PyTorch's side of the CPU table (bench/cpu_numpy.sh), the same
cases as bench/cpu_ops.lua. Usage: python3 bench/cpu_ops.py <threads>; prints
"<lib> <case> <size> <seconds>", the fastest of the timed runs as in bench/cpu_ops.lua. numpy runs these on one thread whatever
the count; torch gets torch.set_num_threads(threads). numpy has no erf, so its
gelu is the tanh form (the cheaper of the two)."""
import sys, time
import numpy as np
import torch
import torch.nn.functional as F

threads = int(sys.argv[1])
torch.set_num_threads(threads)


def fastest(fn, reps):
    best = float("inf")
    for r in range(-2, reps):
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        if r >= 0 and t < best:
            best = t
    return best


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


rng = np.random.default_rng(0)
for n in (1 << 20, 1 << 24):
    reps = 10 if n > (1 << 20) else 40
    x = rng.standard_normal((n // 1024, 1024), dtype=np.float32)
    b = rng.standard_normal(1024, dtype=np.float32)
    tx, tb = torch.from_numpy(x), torch.from_numpy(b)
    cases = [
        ("exp", lambda: np.exp(x), lambda: torch.exp(tx)),
        ("tanh", lambda: np.tanh(x), lambda: torch.tanh(tx)),
        ("gelu", lambda: np_gelu(x), lambda: F.gelu(tx)),
        ("add_broadcast", lambda: x + b, lambda: tx + tb),
        ("sum_all", lambda: x.sum(), lambda: tx.sum()),
        ("sum_last", lambda: x.sum(-1), lambda: tx.sum(-1)),
        ("chain5", lambda: np.tanh(x * 0.5 + 0.25) * x - 0.125, lambda: torch.tanh(tx * 0.5 + 0.25) * tx - 0.125),
    ]
    for name, fn_np, fn_t in cases:
        print(f"numpy {name} {n} {fastest(fn_np, reps):.6e}")
        print(f"torch {name} {n} {fastest(fn_t, reps):.6e}")
s = rng.standard_normal((4096, 1024), dtype=np.float32)
ts = torch.from_numpy(s)
print(f"numpy softmax_rows {4096 * 1024} {fastest(lambda: np_softmax(s), 20):.6e}")
print(f"torch softmax_rows {4096 * 1024} {fastest(lambda: torch.softmax(ts, -1), 20):.6e}")
