/* The fused attention's dropout keep bits, shared by its kernels (cuda/flash_attention.cu: the FlashAttention-2
 * forward and backward; cuda/flash_fwd_sm90.cu: the Hopper forwards): the attention byte rule of core/dropout_keep.h
 * (FL_DROPOUT_BYTE; fl_dropout_keep16_with, four bytes a word) on core/philox.h's Philox, bit for bit the reference's
 * mask at element ((b Hq + h) Sq + i) Sk + j, drawn where needed and never stored. A fragment's lanes split the runs
 * of 16 keys (one Philox block each) that they need and transpose the bits over the lanes that share them with
 * butterfly shuffles (swap_stage): fwd_keep_word puts a forward m16 fragment's bits at fwd_bit (for the C/A fragment
 * of mma.sync m16n8k16 and each warp's share of wgmma's accumulator alike), bwd_keep_word a backward S^T fragment's at
 * bwd_bit. Both are made of steps (*_keep_start: the Philox states of the blocks; FL_PHILOX_ROUNDS philox_round of
 * each; *_keep_finish: their keep bits and the transpose) so that a kernel may run the rounds between other work:
 * flash_attention.cu's forward does at head dims 96 and 128 (KEEP_STEPS), between its S tensor-core steps; its
 * backward draws its word whole before S^T (spread over the S^T steps it timed 2 % slower on the H200). They drop P
 * as bf16/f16 pairs (drop_pairs, drop_pairs_t: an AND with PRMT-made masks; the FlashAttention-2 kernels, which
 * scale by 1 / (1 - p) once at the end) or as f32 (apply_keep, times 1 / (1 - p): the Hopper forward). bench/flash_dropout_lanes.py checks the lane mapping and the masks without a GPU,
 * tests/test_cuda_flash_keep.c the bits on the GPU (through flash_attention.cu's probe kernel). */
#ifndef FL_CUDA_FLASH_KEEP_CUH
#define FL_CUDA_FLASH_KEEP_CUH

#include "flash_common.cuh"
#include "dropout_keep.h"

namespace fa {

/* One butterfly stage of a transpose of w-bit fields over lanes (as in a bit-matrix transpose): x's fields pair up
 * (lo masks the even field of each pair); the lane keeps its even fields (its lane bit clear, upper false) or its
 * odd ones (upper true), and takes the others from lane ^ lanes, which sends its fields with each pair swapped. */
__device__ __forceinline__ uint32_t swap_stage(uint32_t x, int w, uint32_t lo, int lanes, bool upper) {
  const uint32_t sent = ((x >> w) & lo) | ((x << w) & ~lo);
  const uint32_t got = __shfl_xor_sync(0xffffffffu, sent, lanes);
  const uint32_t mine = upper ? ~lo : lo;
  return (x & mine) | (got & ~mine);
}

/* Where fwd_keep_word puts the keep bit of element e of n8 block nt (compile-time in the unrolled loops). */
__host__ __device__ constexpr int fwd_bit(int nt, int e) { return 8 * (nt & 3) + 4 * (nt >> 2) + e; }

/* What the dropout kernels' keep bits need besides fa_params, a second kernel parameter filled on the host
 * (drop_of): Philox's round keys (fl_philox_schedule), which the XORs then read from the parameter bank instead of
 * adding the key schedule's constants to the seed (two instructions a round) in every call; and the byte rule's
 * constants (fl_keep16_consts_of). */
struct fa_drop {
  fl_philox_keys key;
  fl_keep16_consts rule;
};

__host__ __device__ inline fa_drop drop_of(const fa_params &p) {
  return {fl_philox_schedule(p.seed), fl_keep16_consts_of(p.thr)};
}

/* The mask's Philox block ctr (core/philox.h). KEYS: the round keys read from d.key (the forward), else the seed's
 * words (d.key's round 0) plus the schedule's constants, two uniform adds a round (the backward: reading them cost its
 * d128 kernel spills and stalls, bench/flash_sass.sh). */
template <bool KEYS> __device__ __forceinline__ fl_philox_out fa_philox(const fa_drop &d, uint64_t ctr) {
  if constexpr (KEYS) return fl_philox_keyed(&d.key, (uint32_t)ctr, (uint32_t)(ctr >> 32));
  else return fl_philox_words(d.key.k[0], d.key.k[1], (uint32_t)ctr, (uint32_t)(ctr >> 32));
}
/* fa_philox in steps (core/philox.h's): philox_start, FL_PHILOX_ROUNDS philox_round (r = 0, 1, ...; its keys as
 * fa_philox's under KEYS), and the state is the block. A kernel may spread the rounds over other work (the forward's
 * over its S tensor-core steps: a chain of dependent multiplies that the warp would otherwise wait on). */
__device__ __forceinline__ fl_philox_out philox_start(uint64_t ctr) {
  return fl_philox_start((uint32_t)ctr, (uint32_t)(ctr >> 32));
}
template <bool KEYS> __device__ __forceinline__ void philox_round(fl_philox_out &s, const fa_drop &d, int r) {
  if constexpr (KEYS) fl_philox_round_keyed(&s, &d.key, r);
  else fl_philox_round_seeded(&s, d.key.k[0], d.key.k[1], r);
}

/* The keep bits of the 16 mask elements from element sh (0..15) of Philox block ctr (the counter, offset
 * included) on, bit j for element sh + j, from m, block ctr's keep bits: m itself when sh == 0, else with the next
 * block's, as the run straddles the two. */
template <bool KEYS>
__device__ __forceinline__ uint32_t keep_run16(const fa_drop &d, uint32_t m, uint64_t ctr, uint32_t sh) {
  if (sh) m = (m >> sh | fl_dropout_keep16_with(fa_philox<KEYS>(d, ctr + 1), &d.rule) << (16 - sh)) & 0xffffu;
  return m;
}

/* A lane's place in the forward's mask, fixed over a query tile: the Philox block (counter) of its first element in
 * key tile 0 of fragment 0 and its byte sh. Lane t of a quad draws row r_g + 8 (t & 1), keys 32 (t >> 1) .. + 31 of
 * each key tile (fwd_keep_word); fragment mi (rows + 16 mi) is Sk blocks on (16 Sk elements), key tile n0 is n0 / 16
 * blocks on (n0 a multiple of 16: sh stays). kofs: keys from key 0 to the tiles' first (0 but in the test probe). */
struct keep_pos {
  uint64_t ctr;
  uint32_t sh;
};
__device__ __forceinline__ keep_pos fwd_keep_pos(const fa_params &p, int b, int h, int64_t rg, int64_t kofs,
                                                 int lane) {
  const int t = lane % 4;
  const uint64_t row = ((uint64_t)b * p.Hq + h) * (uint64_t)p.Sq + (uint64_t)rg + 8 * (t & 1);
  const uint64_t idx = row * (uint64_t)p.Sk + (uint64_t)kofs + 32 * (t >> 1);
  return {p.offset + idx / 16, (uint32_t)(idx % 16)};
}

/* The keep bits of a forward m16 fragment's 64 keys n0.. (rows r_g, r_g + 8 of lane g; keys 8 nt + 2 t, + 1 of n8
 * block nt), element e of block nt at bit fwd_bit(nt, e), for the fragment mi of the lane's keep_pos. The quad
 * (lanes of one g) needs 2 rows x 64 keys = 8 runs of 16 keys, so lane t draws 2 of them, row r_g + 8 (t & 1), keys
 * 32 (t >> 1) .. + 31: two Philox blocks (three where sh != 0: the 32 keys from byte sh of the first), as a word
 * whose byte k = 2 c + h (c: the run, h: its key half) holds keys 16 c + 8 h + 0..7 in four 2-bit slots, slot u =
 * the keys 2u, 2u + 1 that lane u needs. Two butterfly stages (xor 1, xor 2) transpose the slots over the quad: slot
 * s of byte k then holds lane s's run for this lane's keys, i.e. row r_g + 8 (s & 1), n8 block nt = 4 (s >> 1) + k.
 * In steps (a kernel may spread the middle one over other work): fwd_keep_start (the states of its two blocks),
 * FL_PHILOX_ROUNDS philox_round of each, fwd_keep_finish (their keep bits, the third block where sh != 0, the
 * transpose). */
__device__ __forceinline__ uint64_t fwd_keep_ctr(const fa_params &p, keep_pos at, int mi, int64_t n0) {
  return at.ctr + (uint64_t)mi * (uint64_t)p.Sk + (uint64_t)n0 / 16;
}
__device__ __forceinline__ void fwd_keep_start(const fa_params &p, keep_pos at, int mi, int64_t n0,
                                               fl_philox_out s[2]) {
  const uint64_t ctr = fwd_keep_ctr(p, at, mi, n0);
  s[0] = philox_start(ctr), s[1] = philox_start(ctr + 1);
}
template <bool KEYS>
__device__ __forceinline__ uint32_t fwd_keep_finish(const fa_params &p, const fa_drop &d, keep_pos at, int mi,
                                                    int64_t n0, const fl_philox_out s[2], int lane) {
  const int t = lane % 4;
  uint32_t x = fl_dropout_keep16_with(s[0], &d.rule) | fl_dropout_keep16_with(s[1], &d.rule) << 16;
  if (at.sh)
    x = __funnelshift_r(x, fl_dropout_keep16_with(fa_philox<KEYS>(d, fwd_keep_ctr(p, at, mi, n0) + 2), &d.rule),
                        at.sh);
  x = swap_stage(x, 2, 0x33333333u, 1, t & 1);
  return swap_stage(x, 4, 0x0f0f0f0fu, 2, t & 2);
}
template <bool KEYS>
__device__ __forceinline__ uint32_t fwd_keep_word(const fa_params &p, const fa_drop &d, keep_pos at, int mi,
                                                  int64_t n0, int lane) {
  fl_philox_out s[2];
  fwd_keep_start(p, at, mi, n0, s);
#pragma unroll
  for (int r = 0; r < FL_PHILOX_ROUNDS; r++) philox_round<KEYS>(s[0], d, r), philox_round<KEYS>(s[1], d, r);
  return fwd_keep_finish<KEYS>(p, d, at, mi, n0, s, lane);
}

/* The keep masks of a forward A fragment (P of keys 16 kk .. 16 kk + 15 as bf16/f16 pairs, a[j]: n8 block 2 kk +
 * j / 2, elements 2 (j & 1), + 1): 0xffff in each half whose element is kept, else 0, so that dropout is one AND a
 * pair. Element e's bit B = fwd_bit(nt, e) (e even: B even, B + 1 its pair's) moves to the sign bit of byte B / 8
 * in keep << (7 - B % 8), and PRMT's sign-replicating selectors (nibble 8 + byte) spread the two sign bits over the
 * pair's halves. */
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}
__device__ __forceinline__ void drop_pairs(uint32_t a[4], uint32_t keep, int kk) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int B = fwd_bit(2 * kk + j / 2, 2 * (j & 1)), q = B / 8;
    const uint32_t sel = (8u + q) * 0x11u + (12u + q) * 0x1100u;
    a[j] &= prmt(keep << (7 - B % 8), keep << (6 - B % 8), sel);
  }
}

/* Where bwd_keep_word puts the keep bit of element e of n8 block nt. */
__host__ __device__ constexpr int bwd_bit(int nt, int e) { return 8 * (2 * (e & 1) + (e >> 1)) + nt; }

/* The keep bits of a backward warp's S^T fragments (keys kb + g, kb + g + 8 by queries m0 + 8 nt + 2 t, + 1) for
 * one 64-query tile, element e of n8 block nt at bit bwd_bit(nt, e). The warp's 16 keys of one query are one run
 * of 16 mask elements (one Philox block when Sk % 16 == 0, as kb is a multiple of 16; two otherwise), needed by
 * the 8 lanes of equal t. Lane (g, t) draws the runs of queries 8 g + 2 t and + 1 (n8 block g) as a word whose
 * byte 2 e1 + (j >> 3) bit j & 7 is key j of query 8 g + 2 t + e1; three butterfly stages (lane xor 4, 8, 16)
 * transpose each byte's 8 x 8 bits over those 8 lanes: bit u of a byte then holds lane g = u's run at this lane's
 * key, i.e. n8 block nt = u. In steps, like fwd_keep_word: bwd_keep_start (the states of the lane's two runs' first
 * blocks; idx: bwd_keep_idx, the first run's mask index, the second's is Sk on), FL_PHILOX_ROUNDS philox_round of
 * each, bwd_keep_finish (their keep bits, the runs' second blocks where they straddle two, the transpose). */
__device__ __forceinline__ uint64_t bwd_keep_idx(const fa_params &p, int b, int h, int64_t m0, int64_t kb, int lane) {
  const int g = lane / 4, t = lane % 4;
  const uint64_t row = ((uint64_t)b * p.Hq + h) * (uint64_t)p.Sq + (uint64_t)m0 + 8 * g + 2 * t;
  return row * (uint64_t)p.Sk + (uint64_t)kb;
}
__device__ __forceinline__ void bwd_keep_start(const fa_params &p, uint64_t idx, fl_philox_out s[2]) {
  s[0] = philox_start(p.offset + idx / 16);
  s[1] = philox_start(p.offset + (idx + (uint64_t)p.Sk) / 16);
}
__device__ __forceinline__ uint32_t bwd_keep_finish(const fa_params &p, const fa_drop &d, uint64_t idx,
                                                    const fl_philox_out s[2], int lane) {
  const int g = lane / 4;
  const uint64_t idx2 = idx + (uint64_t)p.Sk;
  uint32_t x = keep_run16<false>(d, fl_dropout_keep16_with(s[0], &d.rule), p.offset + idx / 16, (uint32_t)(idx % 16)) |
               keep_run16<false>(d, fl_dropout_keep16_with(s[1], &d.rule), p.offset + idx2 / 16,
                                 (uint32_t)(idx2 % 16)) << 16;
  x = swap_stage(x, 1, 0x55555555u, 4, g & 1);
  x = swap_stage(x, 2, 0x33333333u, 8, g & 2);
  return swap_stage(x, 4, 0x0f0f0f0fu, 16, g & 4);
}
__device__ __forceinline__ uint32_t bwd_keep_word(const fa_params &p, const fa_drop &d, int b, int h, int64_t m0,
                                                  int64_t kb, int lane) {
  const uint64_t idx = bwd_keep_idx(p, b, h, m0, kb, lane);
  fl_philox_out s[2];
  bwd_keep_start(p, idx, s);
#pragma unroll
  for (int r = 0; r < FL_PHILOX_ROUNDS; r++) philox_round<false>(s[0], d, r), philox_round<false>(s[1], d, r);
  return bwd_keep_finish(p, d, idx, s, lane);
}

/* drop_pairs for the backward's A fragment of Z^T (queries 16 kk .. 16 kk + 15, a[j]: n8 block 2 kk + j / 2,
 * elements 2 (j & 1), + 1): bwd_bit puts the pair's bits at nt + 8 (j & 1) and + 16, so keep << (7 - nt) holds both
 * pairs' bits of block nt in the sign bits of bytes j & 1 and (j & 1) + 2. */
__device__ __forceinline__ void drop_pairs_t(uint32_t a[4], uint32_t keep, int kk) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int nt = 2 * kk + j / 2, q = j & 1;
    const uint32_t sel = (8u + q) * 0x11u + (10u + q) * 0x1100u;
    const uint32_t x = keep << (7 - nt);
    a[j] &= prmt(x, x, sel);
  }
}

/* Dropout on P: times dsc (1 / (1 - p)) where kept, else 0; keep[nt / 8]: fwd_keep_word of the keys
 * n0 + 64 (nt / 8) .. (keys past lk or rows past lq have P = 0 or are not stored: their bits do not matter). */
template <int NTS>
__device__ __forceinline__ void apply_keep(float (*s)[4], const uint32_t *keep, float dsc) {
#pragma unroll
  for (int nt = 0; nt < NTS; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) s[nt][e] = (keep[nt >> 3] >> fwd_bit(nt & 7, e) & 1u) ? s[nt][e] * dsc : 0.f;
}

} // namespace fa

#endif
