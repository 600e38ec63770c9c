/* The dropout keep rules, shared by the CPU and CUDA kernels and by the fused
 * attention (cuda/flash_keep.cuh, for cuda/flash_attention.cu and
 * cuda/flash_fwd_sm90.cu), which regenerates the attention-dropout mask from
 * them. Both draw from the stream of flame.rand: a mask drawn with (seed,
 * offset) takes element i (in the tensor's contiguous, row-major order) from
 * Philox block offset + i / E, E elements a block.
 *
 * FL_DROPOUT_WORD (F.dropout, E = 4): element i takes word i % 4 of its block;
 * its top 24 bits k form u = k / 2^24 in [0, 1), kept iff u >= p, evaluated
 * exactly as the integer comparison k >= ceil(p * 2^24) (fl_dropout_threshold),
 * so no device rounds p differently. P(keep) = 1 - ceil(p 2^24) / 2^24, within
 * 2^-24 of 1 - p.
 *
 * FL_DROPOUT_BYTE (attention dropout, E = 16; FlashAttention-2's granularity,
 * one Philox call per 16 elements): element i takes byte i % 16 of its block
 * (bytes in little-endian order of words 0..3: word (i % 16) / 4, byte i % 4),
 * kept iff byte < t, t = round((1 - p) 256) clamped to [0, 256] (256 keeps
 * everything; p = 1 gives t = 0, dropping everything). P(keep) = t / 256, the
 * keep probability quantised to 1/256; kept values are still scaled by
 * 1 / (1 - p), as PyTorch's FlashAttention-2 does with its quantised keep.
 *
 * A reservation for n elements is ceil(n / E) blocks (fl_dropout_blocks). */
#ifndef FL_DROPOUT_KEEP_H
#define FL_DROPOUT_KEEP_H
#include "philox.h"

typedef enum { FL_DROPOUT_WORD = 0, FL_DROPOUT_BYTE = 1 } fl_dropout_rule;

/* Elements per Philox block. */
FL_HD int fl_dropout_per_block(fl_dropout_rule r) { return r == FL_DROPOUT_BYTE ? 16 : 4; }

/* The blocks a mask of n elements uses: the counters one call reserves. */
FL_HD uint64_t fl_dropout_blocks(fl_dropout_rule r, uint64_t n) {
  const uint64_t e = (uint64_t)fl_dropout_per_block(r);
  return (n + e - 1) / e;
}

/* ceil(p * 2^24) for p in [0, 1]: 0 keeps everything, 2^24 drops everything. */
FL_HD uint32_t fl_dropout_threshold(double p) { return (uint32_t)ceil(p * 16777216.0); }

/* round((1 - p) 256) clamped to [0, 256]: the byte rule's t (bytes < t are kept). */
FL_HD uint32_t fl_dropout_byte_threshold(double p) {
  double t = floor((1.0 - p) * 256.0 + 0.5);
  return t <= 0.0 ? 0u : t >= 256.0 ? 256u : (uint32_t)t;
}

/* The threshold of rule r for p (fl_dropout_block_mask's thr). */
FL_HD uint32_t fl_dropout_rule_threshold(fl_dropout_rule r, double p) {
  return r == FL_DROPOUT_BYTE ? fl_dropout_byte_threshold(p) : fl_dropout_threshold(p);
}

/* Keep bit of one Philox word under the word rule (word i % 4 of block offset + i / 4). */
FL_HD bool fl_dropout_keep_word(uint32_t w, uint32_t threshold) { return (w >> 8) >= threshold; }

/* The byte rule's threshold t (0..256) as the constants of its four-bytes-at-a-time test: with c = 256 - t, byte x
 * is dropped iff x + c carries out of bit 7 (x >= t), the carry being the majority of x's bit 7, c's bit 7 and the
 * carry into bit 7, which is bit 7 of (x & 0x7f) + (c & 0x7f); lo7, c8: c & 0x7f and c & 0xff in every byte; all:
 * every byte's bit 7 where t = 0 (c = 256 is not a byte: everything dropped). Kernels that test many blocks under
 * one t compute them once (the fused attention keeps them in a kernel parameter, cuda/flash_keep.cuh, and passes
 * their address: a copy by value would sit in registers across its backward's loop, which then spills). */
typedef struct {
  uint32_t lo7, c8, all;
} fl_keep16_consts;

FL_HD fl_keep16_consts fl_keep16_consts_of(uint32_t t) {
  const uint32_t c = 256u - t;
  fl_keep16_consts k = {(c & 0x7fu) * 0x01010101u, (c & 0xffu) * 0x01010101u, t == 0 ? 0x80808080u : 0u};
  return k;
}

/* The byte rule's keep bits of a whole block: bit j = (byte j < t), j = 0..15, bytes in the little-endian order of
 * words 0..3. Four bytes a word at once, each word's four drop flags (bits 7, 15, 23, 31) gathered into a nibble by
 * one multiply (the flags times 2^0 + 2^7 + 2^14 + 2^21 land at bits 28..31, nothing else reaching them). */
FL_HD uint32_t fl_dropout_keep16_with(fl_philox_out o, const fl_keep16_consts *k) {
  /* (o's words copied first: indexing o.w in the loop instead gave the fused attention's d128 dropout backward 46
   * instructions more, the keep word no longer hoisted out of its two tile bodies; bench/flash_sass.sh) */
  const uint32_t w[4] = {o.w[0], o.w[1], o.w[2], o.w[3]};
  uint32_t drop = 0;
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int q = 0; q < 4; q++) {
    const uint32_t lo = (w[q] & 0x7f7f7f7fu) + k->lo7;
    const uint32_t f = (((w[q] & lo) | (k->c8 & (w[q] | lo))) & 0x80808080u) | k->all;
    drop |= (f * 0x00204081u) >> 28 << (4 * q);
  }
  return ~drop & 0xffffu;
}

FL_HD uint32_t fl_dropout_keep16(fl_philox_out o, uint32_t t) {
  const fl_keep16_consts k = fl_keep16_consts_of(t);
  return fl_dropout_keep16_with(o, &k);
}

/* The keep bits of a block under rule r: bit j for element j of the block (4 bits for the word rule, 16 for the
 * byte rule). */
FL_HD uint32_t fl_dropout_block_mask(fl_dropout_rule r, fl_philox_out o, uint32_t thr) {
  if (r == FL_DROPOUT_BYTE) return fl_dropout_keep16(o, thr);
  return (uint32_t)fl_dropout_keep_word(o.w[0], thr) | (uint32_t)fl_dropout_keep_word(o.w[1], thr) << 1 |
         (uint32_t)fl_dropout_keep_word(o.w[2], thr) << 2 | (uint32_t)fl_dropout_keep_word(o.w[3], thr) << 3;
}

/* Keep bit of element i under the word rule: one Philox evaluation (kernels that own a whole block of four
 * elements call fl_philox once and fl_dropout_keep_word four times). */
FL_HD bool fl_dropout_keep(uint64_t seed, uint64_t offset, uint64_t i, uint32_t threshold) {
  return fl_dropout_keep_word(fl_philox(seed, offset + i / 4).w[i % 4], threshold);
}

/* The factor a kept element is multiplied by (both rules): 1 / (1 - p), 0 when p == 1. */
FL_HD double fl_dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }
#endif
