"""Times the same cases as bench/gpu.lua with PyTorch on the same GPU, with the
same method (synchronise, loop, median). Prints one JSON line per case.
Usage: python3 bench/gpu_torch.py cases.json"""
import json, sys
import torch
from torch_timing import median_time

DT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # flame's default: full f32
    for c in json.load(open(sys.argv[1])):
        torch.manual_seed(0)
        x = torch.randn(c["shape"], dtype=DT[c["dtype"]], device="cuda")
        y = torch.randn(c["shape2"], dtype=DT[c["dtype"]], device="cuda") if "shape2" in c else None
        op = c["op"]
        if op == "clone": fn = lambda: x.clone()
        elif op == "sum": fn = lambda: x.sum()
        elif op == "mean":
            dims = [d - 1 for d in c["dims"]]
            fn = lambda: x.mean(dims)
        elif op == "cast":
            to = DT[c["to"]]
            fn = lambda: x.to(to)
        elif op in ("badd", "small_add"):
            if y is None: y = torch.randn(c["shape"], device="cuda")
            fn = lambda: x + y
        elif op == "matmul": fn = lambda: x @ y
        host = c.get("host", False)
        iters = 200 if host else (5 if "flops" in c else 20)
        t = median_time(fn, iters, 51 if host else 7, host)
        print(json.dumps({"name": c["name"], "torch_s": t}), flush=True)
        del x, y
        torch.cuda.empty_cache()


main()
