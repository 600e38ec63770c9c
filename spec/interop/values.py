"""The tensors both sides build from the same exact formulas (spec/interop/values.lua is the Lua twin; change both
together): for every flame dtype, n values (k - n/2) / 8 (exact in every float dtype) or integer formulas, then the
dtype's special values, reshaped to [rows, -1]. Floats are exact, so the two sides' tensors are bit-identical except
for the sign of NaN (Lua's 0/0 is -nan on x86), which the checks compare as "is NaN"."""
import math

import torch

nan, inf = math.nan, math.inf
SPECIALS = {
    "f32": (torch.float32, [nan, inf, -inf, -0.0, 3.4028234663852886e38, 1e-45, -2.5]),
    "f64": (torch.float64, [nan, inf, -inf, -0.0, 1e-310, 1.7976931348623157e308]),
    "f16": (torch.float16, [nan, inf, -inf, -0.0, 65504.0, 5.960464477539063e-08, 6.103515625e-05, -1.5]),
    "bf16": (torch.bfloat16, [nan, inf, -inf, -0.0, 3.3895313892515355e38, 9.183549615799121e-41]),
    "i32": (torch.int32, [-2147483648, 2147483647, 0, -1]),
    "i64": (torch.int64, [-9223372036854775808, 9223372036854775807, 0, -1, 4611686018427387905]),
    "bool": (torch.bool, [True, False]),
}
N, ROWS = 58, 4  # N + #specials is a multiple of ROWS for every dtype below


def values(name):
    dt, sp = SPECIALS[name]
    if name == "bool":
        v = [k % 3 == 0 for k in range(N)]
    elif name == "i32":
        v = [(k - N // 2) * 1000003 for k in range(N)]
    elif name == "i64":
        v = [(k - N // 2) * 123456789012345 for k in range(N)]
    else:
        v = [(k - N / 2) / 8 for k in range(N)]
    v = v + sp
    rows = ROWS if len(v) % ROWS == 0 else 2 if len(v) % 2 == 0 else 1
    return torch.tensor(v, dtype=dt).reshape(rows, -1)


def all_values():
    return {"v_" + name: values(name) for name in SPECIALS}
