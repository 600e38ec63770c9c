"""Joins bench/nn.lua and bench/nn_torch.py output into the NN ratio table
(PyTorch's time / flame's: above 1 means flame is faster).
Usage: python3 bench/nn_ratio.py flame.jsonl torch.jsonl"""
import json, sys

fl = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
th = {d["name"]: d for d in (json.loads(l) for l in open(sys.argv[2]) if l.startswith("{"))}
unit = lambda s: "%.2f us" % (s * 1e6) if s < 1e-3 else "%.3f ms" % (s * 1e3)
_unit = unit
# a case with "flops" (bench/nn.lua's optional field) shows TFLOP/s beside each time
flops_of = {d["name"]: d.get("flops") for d in fl}
print("| case | flame | PyTorch | ratio (PyTorch / flame) | target | met |")
print("|---|---|---|---|---|---|")
for d in fl:
    n, t = d["name"], th.get(d["name"], {})
    f = flops_of.get(n)
    unit = (lambda s, f=f: "%s (%.0f TFLOP/s)" % (_unit(s), f / s / 1e12)) if f else _unit
    if "flame_s" not in d or "torch_s" not in t:
        why = d.get("error") or t.get("error") or "not run"
        print(f"| {n} | {unit(d['flame_s']) if 'flame_s' in d else 'error'} | "
              f"{unit(t['torch_s']) if 'torch_s' in t else 'error'} | - | {d.get('target') or '-'} | {why[:80]} |")
        continue
    r = t["torch_s"] / d["flame_s"]
    tgt = d.get("target")
    met = "-" if tgt is None else ("yes" if r >= tgt else "**no**")
    print(f"| {n} | {unit(d['flame_s'])} | {unit(t['torch_s'])} | {r:.2f}x | {tgt if tgt else '-'} | {met} |")

# cases timed against another flame case (bench/nn.lua's against): flame's time of that case over this one's
own = {d["name"]: d for d in fl if "flame_s" in d}
rel = [d for d in fl if d.get("against") and "flame_s" in d and d["against"] in own]
if rel:
    print()
    print("| flame case | against flame's | ratio (that time / this) | target | met |")
    print("|---|---|---|---|---|")
    for d in rel:
        r = own[d["against"]]["flame_s"] / d["flame_s"]
        tgt = d.get("against_target")
        met = "-" if tgt is None else ("yes" if r >= tgt else "**no**")
        print(f"| {d['name']} | {d['against']} | {r:.2f}x | {tgt if tgt else '-'} | {met} |")
