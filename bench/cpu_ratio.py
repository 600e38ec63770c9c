"""Joins bench/cpu_ops.lua and bench/cpu_ops.py output into the ratio table of
docs/performance.md. Usage: python3 bench/cpu_ratio.py <threads> flame.txt others.txt"""
import sys

threads = sys.argv[1]
fl = {}
for line in open(sys.argv[2]):
    case, n, t = line.split()
    fl[(case, int(n))] = float(t)
ot = {}
for line in open(sys.argv[3]):
    lib, case, n, t = line.split()
    ot[(lib, case, int(n))] = float(t)


def ms(s):
    return "%.3f ms" % (s * 1e3)


for (case, n), f in fl.items():
    npy, th = ot.get(("numpy", case, n)), ot.get(("torch", case, n))
    size = "%dM" % (n >> 20) if case != "softmax_rows" else "4096x1024"
    r_np = npy / f if npy else float("nan")
    r_th = th / f if th else float("nan")
    miss = " (miss)" if r_np < 1.0 or r_th < 0.8 else ""
    print(f"| {case} | {size} | {threads} | {ms(f)} | {ms(npy)} | {ms(th)} | {r_np:.2f}x | {r_th:.2f}x{miss} |")
