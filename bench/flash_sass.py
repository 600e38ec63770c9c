#!/usr/bin/env python3
"""Static profile of the flash-attention kernels from their SASS (bench/flash_sass.sh runs it; no GPU needed).

Input: `nvdisasm -hex` of a cubin and the `ptxas -v` log of its compilation. For each fa_fwd/fa_bwd kernel it finds
the main loop (the smallest loop, by back edge, that holds every HMMA: the key-tile loop of the forward, the
query-tile loop of the backward) and walks its body as a DAG (back edges and branches out of the body dropped):
  fast: the path of fewest instructions from the loop head to its back edge that still does the global-memory work
        (next tile's cp.async, dQ atomics: one instruction for each destination operand), i.e. one interior tile with no masking, no dropout and no rescale (every
        branch that skips other work taken; a predicated instruction still issues);
  slow: the path of most instructions (edge masking, dropout, rescale: everything inlined into the loop).
The ",drop" rows are dropout kernels (a DROP template parameter): their fast path is an interior tile with dropout
on (Sk % 16 == 0: no second Philox block). For kernels that test p.dropout at run time, flash_sass.sh's
FLASH_SASS_DROPOUT=on compiles them with it constant-folded, which makes their fast path that tile too. The fast
path's mix is the per-tile instruction count that the hardware counters see in the bulk of a run. "stall"
sums the control codes' stall fields along it: the cycles the compiler's static schedule makes one warp wait
between issues (fixed-latency dependencies, HMMA issue spacing), before any scoreboard (variable-latency) wait.
hmma_dep counts HMMAs whose accumulator input is the output of one of the 3 HMMAs issued just before them (a
dependent chain too short to cover the HMMA latency: the warp waits on it). The control-code layout (sm_70 and later) is the one
documented by reverse engineering (Jia et al., "Dissecting the NVIDIA Volta GPU Architecture via
Microbenchmarking"): in the upper 64-bit word, stall = bits 41-44, yield 45, write barrier 46-48, read barrier
49-51, wait mask 52-57, reuse 58-61.
"""
import re
import sys
from collections import Counter

INS = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);\s*/\* (0x[0-9a-f]{16}) \*/")
HI = re.compile(r"^\s*/\* (0x[0-9a-f]{16}) \*/\s*$")
LABEL = re.compile(r"^(\.L_x_\d+):")
FUNC = re.compile(r"^(_Z\S+):\s*$")
TARGET = re.compile(r"`\((\.L_x_\d+)\)")

CATS = [  # (column, opcode bases)
    ("HMMA", {"HMMA"}),
    ("LDSM", {"LDSM"}),
    ("LDS/STS", {"LDS", "STS", "STSM"}),
    ("LDGSTS", {"LDGSTS"}),
    ("gmem", {"LDG", "STG", "RED", "REDG", "ATOM", "ATOMG", "REDAS"}),
    ("local", {"LDL", "STL"}),
    ("MUFU", {"MUFU"}),
    ("fp32", {"FADD", "FMUL", "FFMA", "FMNMX", "FSETP", "FSEL", "FCHK", "FSWZADD", "FMNMX3"}),
    ("cvt", {"F2F", "F2FP", "I2F", "F2I", "I2FP", "F2IP", "FRND"}),
    ("shfl", {"SHFL"}),
    ("vote", {"VOTE", "VOTEU"}),
    ("bar", {"BAR", "DEPBAR", "LDGDEPBAR", "MEMBAR", "ARRIVES", "SYNCS"}),
    ("branch", {"BRA", "BRX", "JMP", "EXIT", "RET", "CALL", "BSSY", "BSYNC", "WARPSYNC", "BREAK", "BMOV"}),
    ("nop", {"NOP"}),
]
CAT_OF = {op: name for name, ops in CATS for op in ops}
COLS = [c for c, _ in CATS if c != "nop"] + ["int", "unif", "pred"]


def category(op):
    base = op.split(".")[0]
    if base in CAT_OF:
        return CAT_OF[base]
    if base.startswith("U") and base not in ("UNDEF",):
        return "unif"  # uniform datapath (scalar per warp)
    return "int"  # integer/address arithmetic, moves, predicate logic


def parse(path):
    """{function: [instruction dict]} and {function: {label: index}}."""
    funcs, labels = {}, {}
    cur, pending = None, None
    for line in open(path):
        m = FUNC.match(line)
        if m:
            cur = m.group(1)
            funcs[cur], labels[cur] = [], {}
            continue
        if cur is None:
            continue
        m = LABEL.match(line)
        if m:
            labels[cur][m.group(1)] = len(funcs[cur])
            continue
        m = INS.match(line)
        if m:
            pending = {"addr": int(m.group(1), 16), "pred": (m.group(2) or "").strip(), "op": m.group(3),
                       "args": m.group(4).strip()}
            continue
        m = HI.match(line)
        if m and pending is not None:
            hi = int(m.group(1), 16)
            pending["stall"] = (hi >> 41) & 15
            pending["wait"] = (hi >> 52) & 63
            funcs[cur].append(pending)
            pending = None
    return funcs, labels


def regs_of(arg, width):
    m = re.match(r"-?\|?R(\d+)", arg.strip())
    return set(range(int(m.group(1)), int(m.group(1)) + width)) if m else set()


def successors(ins, i, labels):
    """Indices control can reach after instruction i (None: leaves the function)."""
    x = ins[i]
    base = x["op"].split(".")[0]
    tgt = TARGET.search(x["args"])
    if base in ("EXIT", "RET") and not x["pred"]:
        return []
    if base in ("BRA", "JMP") and tgt:
        t = labels.get(tgt.group(1))
        out = [t] if t is not None else []
        if x["pred"] or ".DIV" in x["op"] or ".CONV" in x["op"]:
            out.append(i + 1)
        return out
    return [i + 1]


def main_loop(ins, labels):
    """(head, tail) of the smallest loop holding 3/4 of the HMMAs, or every one, or the one holding most."""
    hm = [i for i, x in enumerate(ins) if x["op"].startswith("HMMA")]
    if not hm:
        return None
    loops = []
    for i, x in enumerate(ins):
        for s in successors(ins, i, labels):
            if s is not None and s <= i:
                loops.append((s, i))
    full = [(t - h, h, t) for h, t in loops if h <= hm[0] and hm[-1] <= t]
    # (or of 3/4 of them: a kernel may finish its last tile's dQ after the loop)
    most = [(t - h, h, t) for h, t in loops if 4 * sum(h <= j <= t for j in hm) >= 3 * len(hm)]
    if most:
        _, h, t = min(most)
        return h, t
    if full:
        _, h, t = min(full)
        return h, t
    best = max(loops, key=lambda l: sum(l[0] <= j <= l[1] for j in hm), default=None)
    return best


def paths(ins, labels, head, tail):
    """The fast and slow paths from head to tail through the loop body (forward edges inside it only). The fast path
    is the one of fewest instructions among those that do all the global-memory work they can (next tile's copies,
    dQ's atomics: a path skipping them is not an interior tile's), the slow one that of most instructions."""
    first, same = {}, {}  # the first (by address) of the memory instructions with the same operands: one copy of each
    for i in range(head, tail + 1):  # (the compiler may if-convert a fast copy and keep a general one after it)
        if category(ins[i]["op"]) in ("LDGSTS", "gmem"):
            first.setdefault(ins[i]["op"] + ins[i]["args"].split(",")[0], i)
            # (the same destination through other registers, e.g. the dQ atomics in a second copy of the body: its
            # offset and its order among the copy's memory instructions of that offset name it)
            key = ins[i]["op"] + re.sub(r"\bU?R\d+(\.64)?|\bRZ\b|desc\[\w+\]", "", ins[i]["args"].split(",")[0])
            same.setdefault(key, []).append(i)
    rewarded = set(first.values()) | {i for v in same.values() for i in v}


    def cost_fast(i):
        return -1000 if i in rewarded else 1
    out = []
    for cost, better in ((cost_fast, lambda a, b: a < b), (lambda i: 1, lambda a, b: a > b)):
        best = {head: (cost(head), None)}  # index: (cost to it, predecessor)
        for i in range(head, tail):
            if i not in best:
                continue
            for s in successors(ins, i, labels):
                if s is None or s <= i or s > tail:
                    continue
                c = best[i][0] + cost(s)
                if s not in best or better(c, best[s][0]):
                    best[s] = (c, i)
        path, i = [], tail if tail in best else None
        while i is not None:
            path.append(i)
            i = best[i][1]
        out.append(path[::-1])
    return out


def hmma_dep(ins, path, window=3):
    """HMMAs whose accumulator input was written by one of the `window` HMMAs before them on the path."""
    n, prev = 0, []
    for i in path:
        x = ins[i]
        if not x["op"].startswith("HMMA"):
            continue
        a = [s.strip() for s in x["args"].split(",")]
        if len(a) >= 4 and any(regs_of(a[3], 4) & w for w in prev):
            n += 1
        prev = (prev + [regs_of(a[0], 4)])[-window:]
    return n


def mix(ins, path):
    c = Counter()
    for i in path:
        x = ins[i]
        cat = category(x["op"])
        if cat != "nop":
            c[cat] += 1
        if x["pred"] and cat != "branch":
            c["pred"] += 1
    return c


def resources(log):
    """{function: (registers, spill stores, spill loads)} from ptxas -v."""
    out, cur = {}, None
    for line in open(log):
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            cur = m.group(1)
            out[cur] = [0, 0, 0]
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out[cur][1], out[cur][2] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[cur][0] = int(m.group(1))
    return out


def short_name(f):
    m = re.search(r"fa_(fwd|bwd|fwd_sm90|fwd_sm90ws)_kernelILb(\d)ELi(\d+)E(?:Lb(\d)E)?", f)
    if not m:
        return None
    kind = {"fwd_sm90": "sm90sync", "fwd_sm90ws": "sm90"}.get(m.group(1), m.group(1))
    drop = ",drop" if m.group(4) == "1" else ""  # the dropout kernel (a DROP template parameter)
    return "%s<%s,%s%s>" % (kind, "bf16" if m.group(2) == "1" else "f16", m.group(3), drop)


def sm90_table(funcs, res, want):
    """The Hopper forwards (cuda/flash_fwd_sm90.cu): their tile loops are peeled (no loop holds every wgmma), so one
    row of whole-function counts: registers, spills, instructions, wgmma (HGMMA) and the warpgroup fences and waits
    around them (WARPGROUP), MUFU (ex2) and local memory accesses."""
    rows = []
    for f, ins in funcs.items():
        name = short_name(f)
        if not name or not name.startswith("sm90") or (want != "all" and want not in name):
            continue
        r = res.get(f, [0, 0, 0])
        ops = Counter(x["op"].split(".")[0] for x in ins)
        rows.append(((name.split("<")[0], int(re.sub(r"\D", "", name.split(",")[1]))),
                     [name, r[0], "%d/%d" % (r[1], r[2]), sum(n for o, n in ops.items() if o != "NOP"), ops["HGMMA"],
                      ops["WARPGROUP"], ops["MUFU"], ops["LDL"] + ops["STL"], ops["SHFL"], ops["BAR"] + ops["SYNCS"]]))
    if not rows:
        return
    head = ["kernel", "regs", "spill st/ld", "total", "HGMMA", "WARPGROUP", "MUFU", "local", "shfl", "bar/syncs"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for _, row in sorted(rows):
        print("| " + " | ".join(str(v) for v in row) + " |")


def main():
    sass, log = sys.argv[1], sys.argv[2]
    want = sys.argv[3] if len(sys.argv) > 3 else "bf16"
    listed = sys.argv[5:7] if len(sys.argv) > 6 and sys.argv[4] == "--list" else None
    funcs, labels = parse(sass)
    res = resources(log)
    if any((short_name(f) or "").startswith("sm90") for f in funcs):
        sm90_table(funcs, res, want)
        return
    head = ["kernel", "regs", "spill st/ld", "total", "loop", "fast", "stall", "slow", "hmma_dep"] + COLS
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = []
    for f, ins in funcs.items():
        name = short_name(f)
        if not name or (want != "all" and want not in name):
            continue
        r = res.get(f, [0, 0, 0])
        total = sum(1 for x in ins if x["op"] != "NOP")
        loop = main_loop(ins, labels[f])
        if loop is None:
            continue
        h, t = loop
        fast, slow = paths(ins, labels[f], h, t)
        c = mix(ins, fast)
        stall = sum(ins[i]["stall"] for i in fast)
        if listed and listed[0] == name:
            with open(listed[1], "w") as out:
                for i in fast:
                    x = ins[i]
                    out.write("%6x %2d %s %s %s\n" % (x["addr"], x["stall"], x["pred"], x["op"], x["args"]))
        rows.append(((name.split(",")[0], int(re.sub(r"\D", "", name.split(",")[1]))), [name, r[0], "%d/%d" % (r[1], r[2]), total, t - h + 1, len(fast), stall, len(slow),
                            hmma_dep(ins, fast)] + [c[k] for k in COLS]))
    for _, row in sorted(rows):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
