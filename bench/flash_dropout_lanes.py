#!/usr/bin/env python3
"""Checks, without a GPU, the lane mapping of the fused attention's dropout keep bits (cuda/flash_attention.cu:
keep16_at, swap_stage, fwd_keep_bits, bwd_keep_bits, fwd_bit, bwd_bit) against the reference attention's mask
index (the byte rule of src/core/dropout_keep.h over [B, Hq, Sq, Sk], element ((b Hq + h) Sq + i) Sk + j; varlen:
[nseq, Hq, max_q, max_k], the same formula with the max lengths).

Every bit of a simulated 32-bit register carries a label: the mask element (index relative to the generator
offset) whose keep bit it is, or None for a bit known to be 0. Philox block c holds elements 16 c .. 16 c + 15
(byte j of the block is element 16 c + j). The simulation runs the kernels' bit operations and warp shuffles on
such registers for all 32 lanes, then checks that the bit each lane reads for fragment element (nt, e) carries
exactly the element the reference uses at that lane's (row, key). The bit positions (fwd_bit, bwd_bit) and the
butterfly stages (swap_stage calls) are read from the .cu file, so the check follows the source; the index
arithmetic of keep16_at / fwd_keep_bits / bwd_keep_bits is mirrored below.

Run: python3 bench/flash_dropout_lanes.py  (exit status 0 and "ok" when every case matches)."""
import os
import re
import sys

SRC = os.environ.get("FA_SRC") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda",
                                              "flash_attention.cu")
src = open(SRC).read()


def bit_fn(name):
    m = re.search(r"constexpr int %s\(int nt, int e\) \{ return ([^;]+); \}" % name, src)
    assert m, name
    expr = m.group(1)
    return lambda nt, e: eval(expr, {}, {"nt": nt, "e": e})


def stages(fn):
    """The swap_stage(x, w, lo, lanes, var & bit) calls in the body of function fn, in order."""
    body = src[src.index("uint32_t %s(" % fn):]
    body = body[:body.index("\n}\n")]
    calls = re.findall(r"swap_stage\(x, (\d+), (0x[0-9a-f]+)u, (\d+), ([a-z]) & (\d+)\)", body)
    assert calls, fn
    return [(int(w), int(lo, 16), int(lanes), (var, int(bit))) for w, lo, lanes, var, bit in calls]


fwd_bit, bwd_bit = bit_fn("fwd_bit"), bit_fn("bwd_bit")
FWD_STAGES, BWD_STAGES = stages("fwd_keep_bits"), stages("bwd_keep_bits")

# ---- labelled 32-bit registers ----
def shr(x, n): return [x[i + n] if i + n < 32 else None for i in range(32)]
def shl(x, n): return [x[i - n] if i - n >= 0 else None for i in range(32)]
def band(x, m): return [x[i] if (m >> i) & 1 else None for i in range(32)]


def bor(a, b):
    out = []
    for i in range(32):
        assert a[i] is None or b[i] is None, "bit %d set on both sides of an OR" % i
        out.append(a[i] if a[i] is not None else b[i])
    return out


def block(c):
    """fl_dropout_keep16 of Philox block c: bits 0..15 = elements 16 c + j, bits 16..31 zero."""
    return [16 * c + j for j in range(16)] + [None] * 16


def keep16_at(idx):
    """keep16_at(p, idx), labels relative to p.offset."""
    c, sh = idx // 16, idx % 16
    m = block(c)
    if sh:
        m = bor(shr(m, sh), shl(block(c + 1), 16 - sh))
    return band(m, 0xffff)


def swap_stage(xs, w, lo, lanes, keep_upper):
    """swap_stage over the 32 lanes: xs[l] is lane l's register, keep_upper[l] its `upper` argument."""
    sent = [bor(band(shr(x, w), lo), band(shl(x, w), ~lo & 0xffffffff)) for x in xs]
    out = []
    for l, x in enumerate(xs):
        got = sent[l ^ lanes]
        mine = (~lo & 0xffffffff) if keep_upper[l] else lo
        out.append(bor(band(x, mine), band(got, ~mine & 0xffffffff)))
    return out


def lane_vars(l): return {"g": l // 4, "t": l % 4}


def run_stages(xs, st):
    for w, lo, lanes, (var, bit) in st:
        xs = swap_stage(xs, w, lo, lanes, [bool(lane_vars(l)[var] & bit) for l in range(32)])
    return xs


def check_fwd(Hq, Sq, Sk, b, h, r0, n0):
    """fwd_keep_bits for the m16 fragment whose lane g has row rg = r0 + g, keys n0 .. n0 + 63."""
    xs = []
    for l in range(32):
        g, t = l // 4, l % 4
        row = (b * Hq + h) * Sq + (r0 + g) + 8 * (t & 1)
        idx = row * Sk + n0 + 32 * (t >> 1)
        xs.append(bor(keep16_at(idx), shl(keep16_at(idx + 16), 16)))
    xs = run_stages(xs, FWD_STAGES)
    for l in range(32):
        g, t = l // 4, l % 4
        for nt in range(8):
            for e in range(4):
                row = (b * Hq + h) * Sq + r0 + g + 8 * (e >> 1)
                key = n0 + 8 * nt + 2 * t + (e & 1)
                got = xs[l][fwd_bit(nt, e)]
                assert got == row * Sk + key, "fwd Sk %d lane %d nt %d e %d: bit holds %s, want %d" % (
                    Sk, l, nt, e, got, row * Sk + key)


def check_bwd(Hq, Sq, Sk, b, h, m0, kb):
    """bwd_keep_bits for a warp's keys kb .. kb + 15 and queries m0 .. m0 + 63."""
    xs = []
    for l in range(32):
        g, t = l // 4, l % 4
        row = (b * Hq + h) * Sq + m0 + 8 * g + 2 * t
        idx = row * Sk + kb
        xs.append(bor(keep16_at(idx), shl(keep16_at(idx + Sk), 16)))
    xs = run_stages(xs, BWD_STAGES)
    for l in range(32):
        g, t = l // 4, l % 4
        for nt in range(8):
            for e in range(4):
                query = m0 + 8 * nt + 2 * t + (e & 1)
                key = kb + g + 8 * (e >> 1)
                want = ((b * Hq + h) * Sq + query) * Sk + key
                got = xs[l][bwd_bit(nt, e)]
                assert got == want, "bwd Sk %d lane %d nt %d e %d: bit holds %s, want %d" % (Sk, l, nt, e, got, want)


def main():
    # positions are distinct and fit a word
    for f in (fwd_bit, bwd_bit):
        pos = sorted(f(nt, e) for nt in range(8) for e in range(4))
        assert pos == list(range(32)), pos
    n = 0
    # Sk % 16 == 0 (one Philox block per run) and every residue mod 16 (runs straddling blocks), several rows,
    # batches and heads (dense [B, Hq, Sq, Sk] and varlen [nseq, Hq, max_q, max_k] share the formula)
    for Sk in (64, 128, 208, 77, 100, 250, 129, 17, 1001, 1007, 1015):
        for Sq in (64, 130):
            for (b, h) in ((0, 0), (2, 3)):
                for r0 in (0, 48, 112):  # the lane-0 row of an m16 fragment (16 m, MT = 2 tiles of 64)
                    for n0 in range(0, min(Sk, 256), 64):
                        check_fwd(4, Sq, Sk, b, h, r0, n0)
                        n += 1
                for m0 in range(0, Sq, 64):
                    for kb in range(0, min(Sk, 128), 16):  # n0 (multiple of 128) + 16 w
                        check_bwd(4, Sq, Sk, b, h, m0, kb)
                        n += 1
    print("ok: %d fragments (forward and backward), Sk %% 16 == 0 and != 0" % n)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as err:
        print("FAIL:", err)
        sys.exit(1)
