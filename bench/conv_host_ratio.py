"""Joins bench/conv_host.lua's and bench/conv_host_torch.py's JSON lines into one table: host us per call of cuDNN's
legacy API, its graph API and PyTorch, and the ratios (above 1: the second is slower than the first).
    python3 bench/conv_host_ratio.py flame.jsonl torch.jsonl"""
import json
import sys

rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault((r["case"], r["dtype"], r["pass"]), {})[r["api"]] = r


def us(d, api, key="host_us"):
    return d[api][key] if api in d else None


def fmt(v, spec="%.1f"):
    return spec % v if v is not None else "-"


def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"


print("| case | dtype | pass | legacy host us | graph host us (ran) | torch host us | legacy / graph | graph / torch |"
      " legacy wall us | graph wall us | torch wall us |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (case, dt, p), d in rows.items():
    lg, gr, th = us(d, "legacy"), us(d, "graph"), us(d, "torch")
    ran = " (%s)" % d["graph"]["ran"] if "graph" in d and d["graph"]["ran"] != "graph" else ""
    print("| %s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
        case, dt, p, fmt(lg), fmt(gr), ran, fmt(th), ratio(lg, gr), ratio(gr, th),
        fmt(us(d, "legacy", "wall_us")), fmt(us(d, "graph", "wall_us")), fmt(us(d, "torch", "wall_us"))))
