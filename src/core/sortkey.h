/* Sort keys: an element of any dtype as an unsigned integer whose ascending
 * order is flame's (and torch's) sort order: -inf < ... < -0 == +0 < ... < inf
 * < NaN, every NaN equal. Descending sorts the inverted key, so elements that
 * are equal stay equal and a stable sort keeps them in index order in both
 * directions (NaN comes first when descending, as in torch). Shared by the CPU
 * backend and the CUDA kernels, so both produce the same permutation. */
#ifndef FL_SORTKEY_H
#define FL_SORTKEY_H
#include <stdint.h>
#include "flame.h"

#ifdef __CUDACC__
#define FL_SK_FN __host__ __device__ __forceinline__
#else
#define FL_SK_FN static inline
#endif

/* The key of an IEEE float of `width` bits given its raw bits. */
FL_SK_FN uint64_t fl_sortkey_ieee(uint64_t bits, int width, uint64_t exp_mask, uint64_t frac_mask) {
  uint64_t sign = (uint64_t)1 << (width - 1);
  uint64_t all = width == 64 ? ~(uint64_t)0 : ((uint64_t)1 << width) - 1;
  if ((bits & exp_mask) == exp_mask && (bits & frac_mask)) return all; /* NaN: the largest key */
  if (bits == sign) bits = 0;                                          /* -0 sorts as +0 */
  return (bits & sign) ? (~bits & all) : (bits | sign);
}

/* Width in bits of the key of a dtype (the element's own width). */
FL_SK_FN int fl_sortkey_width(fl_dtype dt) {
  return dt == FL_F64 || dt == FL_I64 ? 64 : dt == FL_F32 || dt == FL_I32 ? 32 : dt == FL_BOOL ? 8 : 16;
}

/* The key of the element of dtype dt whose raw bits (zero-extended) are `bits`,
 * inverted within its width when descending. */
FL_SK_FN uint64_t fl_sortkey(fl_dtype dt, uint64_t bits, int descending) {
  uint64_t k;
  switch (dt) {
    case FL_F64: k = fl_sortkey_ieee(bits, 64, 0x7FF0000000000000ull, 0x000FFFFFFFFFFFFFull); break;
    case FL_F32: k = fl_sortkey_ieee(bits, 32, 0x7F800000u, 0x007FFFFFu); break;
    case FL_F16: k = fl_sortkey_ieee(bits, 16, 0x7C00u, 0x03FFu); break;
    case FL_BF16: k = fl_sortkey_ieee(bits, 16, 0x7F80u, 0x007Fu); break;
    case FL_I64: k = bits ^ 0x8000000000000000ull; break;
    case FL_I32: k = (bits ^ 0x80000000u) & 0xFFFFFFFFu; break;
    default: k = bits != 0; break; /* bool */
  }
  if (!descending) return k;
  int w = fl_sortkey_width(dt);
  return w == 64 ? ~k : k ^ (((uint64_t)1 << w) - 1);
}
#endif
