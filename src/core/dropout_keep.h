/* The dropout keep rule, shared by the CPU and CUDA kernels (and by issue 10's
 * fused attention, which regenerates the attention-dropout mask from it).
 * Element i (in the tensor's contiguous, row-major order) of a mask drawn with
 * (seed, offset) takes word i % 4 of Philox block (offset + i / 4) -- the same
 * stream as flame.rand -- and its top 24 bits k form u = k / 2^24 in [0, 1).
 * The element is kept iff u >= p, evaluated exactly as the integer comparison
 * k >= ceil(p * 2^24) (fl_dropout_threshold), so no device rounds p differently.
 * P(keep) = 1 - ceil(p * 2^24) / 2^24, within 2^-24 of 1 - p. */
#ifndef FL_DROPOUT_KEEP_H
#define FL_DROPOUT_KEEP_H
#include "philox.h"

/* ceil(p * 2^24) for p in [0, 1]: 0 keeps everything, 2^24 drops everything. */
FL_HD uint32_t fl_dropout_threshold(double p) { return (uint32_t)ceil(p * 16777216.0); }

/* Keep bit of one Philox word (word i % 4 of block offset + i / 4). */
FL_HD bool fl_dropout_keep_word(uint32_t w, uint32_t threshold) { return (w >> 8) >= threshold; }

/* Keep bit of element i: one Philox evaluation (kernels that own a whole block
 * of four elements call fl_philox once and fl_dropout_keep_word four times). */
FL_HD bool fl_dropout_keep(uint64_t seed, uint64_t offset, uint64_t i, uint32_t threshold) {
  return fl_dropout_keep_word(fl_philox(seed, offset + i / 4).w[i % 4], threshold);
}

/* The factor a kept element is multiplied by: 1 / (1 - p), 0 when p == 1. */
FL_HD double fl_dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }
#endif
