"""Checks bench/unet_torch.py against examples/unet.lua (run by spec/unet_twin_spec.lua, which writes the file):
argv[1] is a safetensors file from flame holding a default-preset UNet's state dict under "default/", a small UNet's
under "small/" (random weights everywhere, no zero layers), its inputs ("x", "t", "labels", 1-based) and its eval
output ("out"). Loads both strictly into the twin, compares parameter counts and the small forward.
Prints one line "ok <default params> <max abs diff>" or raises. Needs torch and safetensors."""
import sys
import torch
from safetensors.torch import load_file

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from unet_torch import UNet, DEFAULT  # noqa: E402

SMALL = dict(in_channels=1, channels=32, mults=(1, 2), num_res_blocks=1, attn_res=(8,), num_classes=10, image_size=16,
             groups=32, head_dim=16)

f = load_file(sys.argv[1])
part = lambda p: {k[len(p):]: v for k, v in f.items() if k.startswith(p)}  # noqa: E731
big = UNet(**DEFAULT)
big.load_state_dict(part("default/"), strict=True)
n_flame = sum(v.numel() for v in part("default/").values())
n_torch = sum(p.numel() for p in big.parameters())
assert n_flame == n_torch, (n_flame, n_torch)
small = UNet(**SMALL).double().eval()
small.load_state_dict({k: v.double() for k, v in part("small/").items()}, strict=True)
with torch.no_grad():
    out = small(f["x"].double(), f["t"].double(), f["labels"].long() - 1)
diff = (out - f["out"].double()).abs().max().item()
# The timestep embedding is f32 on both sides (t:float()), so 1-ulp differences of f32 cos/sin reach the f64 output
# (~1e-7); a structural difference is O(1).
assert diff < 1e-5 * max(1.0, f["out"].abs().max().item()), diff
print("ok", n_torch, diff)
