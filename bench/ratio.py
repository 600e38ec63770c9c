"""Joins bench/gpu.lua and bench/gpu_torch.py output into the ratio table.
Usage: python3 bench/ratio.py cases.json flame.jsonl torch.jsonl"""
import json, sys

cases = json.load(open(sys.argv[1]))
fl = {d["name"]: d["flame_s"] for d in map(json.loads, open(sys.argv[2]))}
th = {d["name"]: d["torch_s"] for d in map(json.loads, open(sys.argv[3]))}
print("| case | flame | PyTorch | flame throughput / PyTorch | flame rate |")
print("|---|---|---|---|---|")
for c in cases:
    n = c["name"]
    f, t = fl.get(n), th.get(n)
    if f is None or t is None:
        print(f"| {n} | {'%.3g s' % f if f else 'not run'} | {'%.3g s' % t if t else 'not run'} | - | - |")
        continue
    rate = ""
    if "bytes" in c: rate = "%.0f GB/s" % (c["bytes"] / f / 1e9)
    if "flops" in c: rate = "%.0f TFLOP/s" % (c["flops"] / f / 1e12)
    unit = lambda s: "%.2f us" % (s * 1e6) if s < 1e-3 else "%.3f ms" % (s * 1e3)
    print(f"| {n} | {unit(f)} | {unit(t)} | {t / f:.3f}x | {rate} |")
