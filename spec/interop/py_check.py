"""Interop step 3 (scripts/interop.sh): checks what spec/interop/flame_side.lua wrote.
(a) each tensor of DIR/py.safetensors as flame loaded it (DIR/a_<name>.npy) equals the original bit for bit (bf16
    compared after widening to f32), and flame's re-save DIR/a_roundtrip.safetensors is byte-identical to the file;
(b) DIR/flame.safetensors loads with safetensors: the formula tensors equal spec/interop/values.py's (NaN compared
    as NaN), the random ones equal flame's .npy of them bit for bit, the metadata as written;
(c) DIR/model.safetensors loads into the same architecture in PyTorch with load_state_dict(strict=True), and the
    outputs on flame's inputs match flame's outputs within f32 tolerance.
Usage: python3 spec/interop/py_check.py DIR. Prints one line per check; exits 1 on any failure."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from values import all_values

dir_ = sys.argv[1]
failures = []
BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
        torch.bfloat16: torch.int16}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def same(a, b, nan_as_nan=False):
    """Same dtype, shape and bits (floats through their integer view); with nan_as_nan any NaN equals any NaN."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype not in BITS:
        return torch.equal(a, b)
    eq = a.contiguous().view(BITS[a.dtype]) == b.contiguous().view(BITS[b.dtype])
    if nan_as_nan:
        eq = eq | (torch.isnan(a) & torch.isnan(b))
    return bool(eq.all())


def npy(path):
    return torch.from_numpy(np.load(path))


# (a)
orig = load_file(os.path.join(dir_, "py.safetensors"))
for name, t in sorted(orig.items()):
    want = t.float() if t.dtype == torch.bfloat16 else t
    got = npy(os.path.join(dir_, "a_%s.npy" % name))
    check(same(got, want), "(a) flame loaded %s %s %s" % (name, str(t.dtype)[6:], list(t.shape)))
a = open(os.path.join(dir_, "py.safetensors"), "rb").read()
b = open(os.path.join(dir_, "a_roundtrip.safetensors"), "rb").read()
check(a == b, "(a) flame's re-save is byte-identical to Python's file (%d bytes)" % len(a))

# (b)
ours = load_file(os.path.join(dir_, "flame.safetensors"))
for name, want in sorted(all_values().items()):
    check(name in ours and same(ours[name], want, nan_as_nan=True), "(b) %s %s from flame" % (name, want.dtype))
for name in sorted(n for n in ours if n.startswith("r_")):
    want = npy(os.path.join(dir_, "b_%s.npy" % name))
    got = ours[name]
    got = got.float() if got.dtype == torch.bfloat16 else got
    check(same(got, want), "(b) %s %s against flame's .npy" % (name, list(ours[name].shape)))
check(ours["scalar"].shape == () and ours["scalar"].item() == 2.5, "(b) 0-dim scalar")
with safe_open(os.path.join(dir_, "flame.safetensors"), "pt") as f:
    meta = f.metadata()
check(meta is not None and meta.get("writer") == "flame", "(b) metadata %r" % (meta,))


# (c) the twin of spec/interop/model.lua
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(32)
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(16, 32, padding_idx=0)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(32, 5)
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU(),
                                  nn.Conv2d(8, 4, 3, stride=2, padding_mode="reflect", padding=1), nn.Identity())
        self.register_buffer("scale", torch.zeros(5))

    def forward(self, ids, img):
        h = self.embed(ids)
        for b in self.blocks:
            x = b.norm(h)
            h = h + b.attn(x, x, x, need_weights=False)[0]
            h = h + b.mlp(h)
        return self.head(h) * self.scale, self.conv(img)


net = Net()
sd = load_file(os.path.join(dir_, "model.safetensors"))
try:
    res = net.load_state_dict(sd, strict=True)
    check(True, "(c) load_state_dict(strict=True) of %d entries" % len(sd))
except RuntimeError as e:
    check(False, "(c) load_state_dict(strict=True): %s" % e)
net.eval()
io = load_file(os.path.join(dir_, "model_io.safetensors"))
with torch.no_grad():
    y_tok, y_img = net(io["ids0"], io["img"])
for name, got in (("y_tok", y_tok), ("y_img", y_img)):
    want = io[name]
    err = (got - want).abs().max().item()
    check(got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-5),
          "(c) %s %s equals flame's (max abs diff %.3g)" % (name, list(want.shape), err))

print("interop: %s (torch %s)" % ("FAILED: %d" % len(failures) if failures else "all passed", torch.__version__))
sys.exit(1 if failures else 0)
