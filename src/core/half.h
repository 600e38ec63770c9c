/* f16 and bf16 <-> f32 by bit manipulation: round to nearest even, NaN and Inf
 * kept. Shared by the CPU backend and the CUDA kernels (one conversion rule). */
#ifndef FL_HALF_H
#define FL_HALF_H
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define FL_HALF_FN __host__ __device__ __forceinline__
#else
#define FL_HALF_FN static inline
#endif

FL_HALF_FN uint32_t fl_f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u; memcpy(&u, &f, 4); return u;
#endif
}
FL_HALF_FN float fl_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f; memcpy(&f, &u, 4); return f;
#endif
}

FL_HALF_FN uint16_t fl_half_from_f32(float f) {
  uint32_t x = fl_f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) /* Inf or NaN: keep NaN quiet and non-zero */
    return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: Inf */
  if (ax < 0x38800000u) { /* subnormal or zero in f16 */
    if (ax < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    /* value = m * 2^(e-150); the f16 subnormal unit is 2^-24 */
    int shift = 126 - (int)(ax >> 23);
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t q = ((ax - 0x38000000u) >> 13); /* rebias 127 -> 15 */
  uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
  return (uint16_t)(sign | q);
}

FL_HALF_FN float fl_half_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return fl_bits_f32(sign | 0x7f800000u | (m << 13));
  if (e == 0) { /* zero or subnormal: m * 2^-24 */
    float v = (float)m * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return fl_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

FL_HALF_FN uint16_t fl_bfloat_from_f32(float f) {
  uint32_t x = fl_f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

FL_HALF_FN float fl_bfloat_to_f32(uint16_t h) { return fl_bits_f32((uint32_t)h << 16); }

/* f64 to f16/bf16 with a single rounding. A plain (float) cast first can land
 * exactly on a tie that the second rounding then breaks the wrong way
 * (1 + 2^-11 + 2^-40 must give 1 + 2^-10 in f16, not 1). Rounding to f32 by
 * round-to-odd (truncate, then set the last bit if inexact) keeps at least two
 * more bits than either target, which makes the second rounding exact. */
FL_HALF_FN float fl_f32_round_odd(double d) {
  float f = (float)d;
  if ((double)f == d || f != f) return f;
  uint32_t u = fl_f32_bits(f);
  if (f > 0 ? (double)f > d : (double)f < d) u--; /* rounded away from zero: step back */
  return fl_bits_f32(u | 1u);
}
FL_HALF_FN uint16_t fl_half_from_f64(double d) { return fl_half_from_f32(fl_f32_round_odd(d)); }
FL_HALF_FN uint16_t fl_bfloat_from_f64(double d) { return fl_bfloat_from_f32(fl_f32_round_odd(d)); }
#endif
