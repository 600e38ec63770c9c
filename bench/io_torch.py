"""The checkpoint-load case on the PyTorch side: safetensors.torch.load_file(path, device="cuda") of the file
bench/io.lua writes (run that first; FLAME_BENCH_FILE, default /tmp/flame_bench_2g.safetensors), one warm-up,
median of 5 loads (bench/torch_timing.py). One JSON line, joined with bench/io.lua's by bench/nn_ratio.py."""
import gc, json, os, sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_timing import median_time

path = os.environ.get("FLAME_BENCH_FILE", "/tmp/flame_bench_2g.safetensors")
name = "load 2 GiB bf16 safetensors to cuda"


def load():
    ts = load_file(path, device="cuda")
    del ts
    gc.collect()


try:
    print(json.dumps({"name": name, "torch_s": median_time(load, 1, 5)}), flush=True)
except Exception as e:  # reported, not fatal
    print(json.dumps({"name": name, "error": repr(e)}), flush=True)
