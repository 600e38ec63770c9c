"""Times the NN-op cases of bench/nn/*.py with PyTorch on the same GPU, with the
method of bench/nn.lua (synchronise, loop, median). One JSON line per case.
A family file defines CASES = {name: setup} (and optionally ITERS and REPS = {name: count}), where setup(torch) builds the
inputs on "cuda" and returns the function to time; names match bench/nn/*.lua.
Usage: python3 bench/nn_torch.py [family ...]"""
import glob, json, os, sys
import torch
from torch_timing import median_time


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # flame's default: full f32
    torch.backends.cudnn.allow_tf32 = False
    here = os.path.dirname(os.path.abspath(__file__))
    fams = sys.argv[1:] or sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(here, "nn", "*.py")))
    for fam in fams:
        ns = {}
        exec(open(os.path.join(here, "nn", fam + ".py")).read(), ns)
        iters, reps = ns.get("ITERS", {}), ns.get("REPS", {})
        for name, setup in ns["CASES"].items():
            torch.manual_seed(0)
            try:
                fn = setup(torch)
                t = median_time(fn, iters.get(name, 10), reps.get(name, 7))
                print(json.dumps({"name": name, "torch_s": t}), flush=True)
            except Exception as e:  # a case PyTorch cannot run is reported, not fatal
                print(json.dumps({"name": name, "error": repr(e)}), flush=True)
            fn = None
            torch.cuda.empty_cache()


main()
