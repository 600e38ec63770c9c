"""Interop step 1 (scripts/interop.sh): Python's safetensors writes DIR/py.safetensors, every flame dtype with its
special values (spec/interop/values.py) plus seeded random tensors (bf16 and f16 from random bit patterns, NaN
payloads included; two large ones, 96 MiB and 6 MiB), and one metadata key (so the crate's bytes are deterministic).
Usage: python3 spec/interop/py_write.py DIR"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from values import all_values

torch.manual_seed(11)
ts = all_values()
ts["r_f32"] = torch.randn(64, 33)
ts["r_f64"] = torch.randn(3, 5, 7, dtype=torch.float64)
ts["r_bf16_bits"] = torch.randint(-32768, 32768, (40, 25), dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
ts["r_f16_bits"] = torch.randint(-32768, 32768, (1000,), dtype=torch.int32).to(torch.int16).view(torch.float16)
ts["r_i64"] = torch.randint(-2**62, 2**62, (9, 2), dtype=torch.int64)
ts["r_bool"] = torch.rand(2, 3, 4) > 0.5
# Large enough for CUDA loads to go through the pinned staging ring (1 MiB and up) and to wrap it (4 x 16 MiB).
ts["r_big_f32"] = torch.randn(6000, 4096)
ts["r_big_bf16_bits"] = torch.randint(-32768, 32768, (3, 1000, 1000), dtype=torch.int32).to(torch.int16).view(
    torch.bfloat16)
ts["scalar"] = torch.tensor(-7.25, dtype=torch.float64)
ts["empty"] = torch.zeros(0, 4, dtype=torch.bfloat16)
save_file(ts, os.path.join(sys.argv[1], "py.safetensors"), metadata={"format": "pt"})
print("py_write: %d tensors" % len(ts))
