/* Counter-based Philox4x32-10, shared by the CPU backend and the CUDA kernels so
 * that the same seed gives the same bits on every device.
 * Element i of a random tensor uses counter (offset + i / 4), word i % 4. */
#ifndef FL_PHILOX_H
#define FL_PHILOX_H
#include <stdint.h>
#include <math.h>
#include "flame.h"

#ifdef __CUDACC__
#define FL_HD __host__ __device__ __forceinline__
#else
#define FL_HD static inline
#endif

typedef struct { uint32_t w[4]; } fl_philox_out;

FL_HD fl_philox_out fl_philox(uint64_t seed, uint64_t counter) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  fl_philox_out o = {{c0, c1, c2, c3}};
  return o;
}

/* Uniform in [0, 1) with 24 random bits: exact in f32, identical everywhere. */
FL_HD float fl_u01(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

/* Uniform in [0, 1) with the significand bits of the target dtype (f16: 11,
 * bf16: 8, else 24): 24 random bits would round up to 1.0 in f16/bf16. */
FL_HD int fl_u01_bits_for(fl_dtype dt) { return dt == FL_F16 ? 11 : dt == FL_BF16 ? 8 : 24; }
FL_HD float fl_u01_bits(uint32_t w, int bits) { return (float)(w >> (32 - bits)) * (1.0f / (float)(1u << bits)); }

/* Element j (0..3) of a counter block as a standard normal (Box-Muller on word pairs). */
FL_HD float fl_normal_from(fl_philox_out o, int j) {
  int p = j >> 1;
  float u1 = ((float)(o.w[2 * p] >> 8) + 1.0f) * (1.0f / 16777216.0f); /* (0, 1] */
  float u2 = fl_u01(o.w[2 * p + 1]);
  float r = sqrtf(-2.0f * logf(u1));
  float a = 6.2831853071795864f * u2;
  return (j & 1) ? r * sinf(a) : r * cosf(a);
}

/* Integer in [0, range) from one word: floor(w * range / 2^32). */
FL_HD int64_t fl_randint_from(uint32_t w, double range) {
  return (int64_t)floor((double)w * (1.0 / 4294967296.0) * range);
}
#endif
