#!/usr/bin/env python3
"""Checks, without a GPU, the lane mapping of the fused attention's dropout keep bits (cuda/flash_keep.cuh:
keep_run16, fwd_keep_pos, fwd_keep_word, bwd_keep_word and the steps they are made of, bwd_bit, swap_stage, fwd_bit;
the FlashAttention-2 kernels of cuda/flash_attention.cu and the Hopper forward of cuda/flash_fwd_sm90.cu draw them
alike)
against the reference attention's mask index (the byte rule of src/core/dropout_keep.h over [B, Hq, Sq, Sk],
element ((b Hq + h) Sq + i) Sk + j; varlen: [nseq, Hq, max_q, max_k], the same formula with the max lengths).

Every bit of a simulated 32-bit register carries a label: the mask element (index relative to the generator
offset) whose keep bit it is, or None for a bit known to be 0. Philox block c holds elements 16 c .. 16 c + 15
(byte j of the block is element 16 c + j). The simulation runs the kernels' bit operations and warp shuffles on
such registers for all 32 lanes, then checks that the bit each lane reads for fragment element (nt, e) carries
exactly the element the reference uses at that lane's (row, key). The bit positions (fwd_bit, bwd_bit) and the
butterfly stages (swap_stage calls, in fwd_keep_finish and bwd_keep_finish) are read from the sources, so the check
follows them; the index arithmetic of keep_run16 / fwd_keep_pos / fwd_keep_word / bwd_keep_word is mirrored below.
Also checks the four-bytes-a-word form of the byte rule (src/core/dropout_keep.h: fl_dropout_keep16_with under
fl_keep16_consts_of's constants, mirrored) against the rule itself for every threshold and byte, and the PRMT
selectors of drop_pairs / drop_pairs_t (mirrored) against the bit positions.

Run: python3 bench/flash_dropout_lanes.py  (exit status 0 and "ok" when every case matches)."""
import os
import re
import sys

CUDA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda")
SRC = os.environ.get("FA_SRC") or os.path.join(CUDA, "flash_attention.cu")
# a variant file first (FA_SRC: an older one holds the helpers itself), then the headers beside it
src = open(SRC).read()
for hdr in ("flash_keep.cuh", "flash_common.cuh"):
    path = os.path.join(os.path.dirname(os.path.abspath(SRC)), hdr)
    if os.path.exists(path):
        src += open(path).read()


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
FWD_STAGES, BWD_STAGES = stages("fwd_keep_finish"), stages("bwd_keep_finish")

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
    """fl_dropout_keep16_with of Philox block c: bits 0..15 = elements 16 c + j, bits 16..31 zero."""
    return [16 * c + j for j in range(16)] + [None] * 16


def keep_run16(idx):
    """keep_run16(d, offset + idx / 16, idx % 16), labels relative to p.offset."""
    c, sh = idx // 16, idx % 16
    m = block(c)
    if sh:
        m = band(bor(shr(m, sh), shl(block(c + 1), 16 - sh)), 0xffff)
    return m


def funnel_r(lo, hi, sh):
    """__funnelshift_r(lo, hi, sh): the low word of (hi:lo) >> sh."""
    return (lo + hi)[sh:sh + 32]


def fwd_keep_word(Hq, Sq, Sk, b, h, rg, kofs, mi, n0, t):
    """fwd_keep_word(p, d, fwd_keep_pos(p, b, h, rg, kofs, lane), mi, n0, lane) before its butterfly stages."""
    assert n0 % 16 == 0
    row = (b * Hq + h) * Sq + rg + 8 * (t & 1)
    idx = row * Sk + kofs + 32 * (t >> 1)
    ctr, sh = idx // 16 + mi * Sk + n0 // 16, idx % 16
    x = bor(block(ctr), shl(block(ctr + 1), 16))
    if sh:
        x = funnel_r(x, block(ctr + 2), sh)
    return x


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
    """fwd_keep_word for the m16 fragment whose lane g has row r0 + g, keys n0 .. n0 + 63 (from r0 = 16 on as
    fragment mi = 1 of rows r0 - 16.., as fwd_tile's second fragment)."""
    mi, kofs = 1 if r0 >= 16 else 0, n0 % 16  # (the test probe's any n0: keys kofs on, tile n0 - kofs)
    xs = [fwd_keep_word(Hq, Sq, Sk, b, h, r0 - 16 * mi + l // 4, kofs, mi, n0 - kofs, l % 4) for l in range(32)]
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
        xs.append(bor(keep_run16(idx), shl(keep_run16(idx + Sk), 16)))
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


def check_keep16_with():
    """fl_dropout_keep16_with (one Philox word of it: four bytes, fl_keep16_consts_of's constants) against the byte
    rule, for every
    threshold t = 0..256 and every byte value in every byte of a word (the other bytes 0, 0x7f, 0x80, 0xff)."""
    for t in range(257):
        c = 256 - t
        lo7, c8, all_ = (c & 0x7f) * 0x01010101, (c & 0xff) * 0x01010101, 0x80808080 if t == 0 else 0
        for x in range(256):
            for other in (0, 0x7f, 0x80, 0xff):
                for pos in range(4):
                    w = sum((x if k == pos else other) << (8 * k) for k in range(4))
                    lo = ((w & 0x7f7f7f7f) + lo7) & 0xffffffff
                    f = (((w & lo) | (c8 & (w | lo))) & 0x80808080) | all_
                    drop = ((f * 0x00204081) & 0xffffffff) >> 28
                    for k in range(4):
                        want = ((w >> (8 * k)) & 0xff) >= t
                        assert bool(drop >> k & 1) == want, "fl_dropout_keep16_with t %d word %#x byte %d" % (t, w, k)


def prmt(a, b, sel):
    """PTX prmt.b32 (default mode): result byte i is byte sel nibble i & 7 of (b:a), or with the nibble's bit 3 its
    sign replicated."""
    src = [(a >> (8 * k)) & 0xff for k in range(4)] + [(b >> (8 * k)) & 0xff for k in range(4)]
    r = 0
    for i in range(4):
        n = (sel >> (4 * i)) & 0xf
        v = src[n & 7]
        r |= ((0xff if v & 0x80 else 0) if n & 8 else v) << (8 * i)
    return r


def check_drop_pairs():
    """drop_pairs / drop_pairs_t (mirrored): the mask of A-fragment word j of k step kk (n8 block 2 kk + j / 2,
    elements 2 (j & 1) in the low half, + 1 in the high half, as c_to_a packs them) is 0xffff in each half whose keep
    bit (fwd_bit / bwd_bit) is set, for every keep word of single bits and a few random ones."""
    import random
    words = [1 << i for i in range(32)] + [random.getrandbits(32) for _ in range(200)] + [0, 0xffffffff]
    shl32 = lambda x, n: (x << n) & 0xffffffff
    for keep in words:
        for kk in range(4):
            for j in range(4):
                nt, e = 2 * kk + j // 2, 2 * (j & 1)
                B, q = fwd_bit(nt, e), fwd_bit(nt, e) // 8
                m = prmt(shl32(keep, 7 - B % 8), shl32(keep, 6 - B % 8), (8 + q) * 0x11 + (12 + q) * 0x1100)
                want = ((0xffff if keep >> fwd_bit(nt, e) & 1 else 0) |
                        (0xffff0000 if keep >> fwd_bit(nt, e + 1) & 1 else 0))
                assert m == want, "drop_pairs keep %#x kk %d j %d: %#x, want %#x" % (keep, kk, j, m, want)
                qt = j & 1
                x = shl32(keep, 7 - nt)
                m = prmt(x, x, (8 + qt) * 0x11 + (10 + qt) * 0x1100)
                want = ((0xffff if keep >> bwd_bit(nt, e) & 1 else 0) |
                        (0xffff0000 if keep >> bwd_bit(nt, e + 1) & 1 else 0))
                assert m == want, "drop_pairs_t keep %#x kk %d j %d: %#x, want %#x" % (keep, kk, j, m, want)


def main():
    check_keep16_with()
    check_drop_pairs()
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
                    # (the Hopper forward's 128-key tiles are two of these: n0 and n0 + 64, mi = 0)
                    for n0 in list(range(0, min(Sk, 256), 64)) + [36]:  # (36: the test probe's n0)
                        check_fwd(4, Sq, Sk, b, h, r0, n0)
                        n += 1
                for m0 in range(0, Sq, 64):
                    for kb in range(0, min(Sk, 128), 16):  # n0 (multiple of 128) + 16 w
                        check_bwd(4, Sq, Sk, b, h, m0, kb)
                        n += 1
    print("ok: %d fragments (forward and backward), Sk %% 16 == 0 and != 0; fl_dropout_keep16_with = the byte rule; "
          "drop_pairs(_t) masks" % n)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as err:
        print("FAIL:", err)
        sys.exit(1)
