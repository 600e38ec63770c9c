/* Counter-based Philox4x32-10, shared by the CPU backend and every CUDA kernel (cuda/random.cu, cuda/dropout.cu,
 * the fused attention's keep bits in cuda/flash_keep.cuh) so that the same seed gives the same bits on every device:
 * one round (fl_philox_round, its products one mul.wide.u32 each on the GPU), run FL_PHILOX_ROUNDS times on the state
 * fl_philox_start makes, round r's keys added from the seed (fl_philox_round_seeded: fl_philox, fl_philox_words) or
 * read precomputed (fl_philox_round_keyed, fl_philox_schedule's keys: fl_philox_keyed). A kernel may run those steps
 * itself, spread over other work (the fused attention's forward, between its tensor-core steps).
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

#define FL_PHILOX_ROUNDS 10 /* Philox4x32-10 */

/* One round on the counter c[0..3] with round key (k0, k1). Its two 32 x 32 -> 64-bit products are on the GPU one
 * mul.wide.u32 each (one IMAD.WIDE.U32, the multiplier an immediate): C's 64-bit products come out as that and a
 * VIADD more each, or as two multiplies (20 instructions a Philox call more, a fifth of it), and a multiplier passed
 * in a register stays live in one across the kernel (the fused attention's backward spilled more). */
FL_HD void fl_philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  uint32_t l0, h0, l1, h1;
#ifdef __CUDA_ARCH__
  uint64_t p0, p1;
  asm("mul.wide.u32 %0, %1, %2;" : "=l"(p0) : "r"(c[0]), "n"(0xD2511F53u));
  asm("mul.wide.u32 %0, %1, %2;" : "=l"(p1) : "r"(c[2]), "n"(0xCD9E8D57u));
  asm("mov.b64 {%0, %1}, %2;" : "=r"(l0), "=r"(h0) : "l"(p0));
  asm("mov.b64 {%0, %1}, %2;" : "=r"(l1), "=r"(h1) : "l"(p1));
#else
  const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
  l0 = (uint32_t)p0, h0 = (uint32_t)(p0 >> 32), l1 = (uint32_t)p1, h1 = (uint32_t)(p1 >> 32);
#endif
  const uint32_t n0 = h1 ^ c[1] ^ k0, n2 = h0 ^ c[3] ^ k1;
  c[0] = n0, c[1] = l1, c[2] = n2, c[3] = l0;
}

/* Round r's key from the seed's words k0 (low), k1 (high): the key schedule (Weyl sequence). */
FL_HD uint32_t fl_philox_key0(uint32_t k0, int r) { return k0 + (uint32_t)r * 0x9E3779B9u; }
FL_HD uint32_t fl_philox_key1(uint32_t k1, int r) { return k1 + (uint32_t)r * 0xBB67AE85u; }

/* The round keys of a seed, precomputed (k[2 r], k[2 r + 1]: round r's), for kernels that keep them in their
 * parameters: fl_philox_round_keyed then reads them there instead of adding the schedule's constants in every call. */
typedef struct { uint32_t k[2 * FL_PHILOX_ROUNDS]; } fl_philox_keys;

FL_HD fl_philox_keys fl_philox_schedule(uint64_t seed) {
  fl_philox_keys s;
  for (int r = 0; r < FL_PHILOX_ROUNDS; r++)
    s.k[2 * r] = fl_philox_key0((uint32_t)seed, r), s.k[2 * r + 1] = fl_philox_key1((uint32_t)(seed >> 32), r);
  return s;
}

/* Philox in steps: the state of counter c0 (low word), c1 (high) (its words 2, 3 are 0), FL_PHILOX_ROUNDS
 * rounds r = 0, 1, ... on it (round r's keys from the seed's words or precomputed), and the state is the output. */
FL_HD fl_philox_out fl_philox_start(uint32_t c0, uint32_t c1) {
  fl_philox_out s = {{c0, c1, 0, 0}};
  return s;
}
FL_HD void fl_philox_round_seeded(fl_philox_out *s, uint32_t k0, uint32_t k1, int r) {
  fl_philox_round(s->w, fl_philox_key0(k0, r), fl_philox_key1(k1, r));
}
FL_HD void fl_philox_round_keyed(fl_philox_out *s, const fl_philox_keys *keys, int r) {
  fl_philox_round(s->w, keys->k[2 * r], keys->k[2 * r + 1]);
}

/* Philox4x32-10 of the counter c0 (low word), c1 (high) under the seed's words k0, k1: the round keys follow from
 * the seed, two adds a round (uniform on the GPU where the seed is). */
FL_HD fl_philox_out fl_philox_words(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1) {
  fl_philox_out s = fl_philox_start(c0, c1);
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int r = 0; r < FL_PHILOX_ROUNDS; r++) fl_philox_round_seeded(&s, k0, k1, r);
  return s;
}

FL_HD fl_philox_out fl_philox(uint64_t seed, uint64_t counter) {
  return fl_philox_words((uint32_t)seed, (uint32_t)(seed >> 32), (uint32_t)counter, (uint32_t)(counter >> 32));
}

/* fl_philox of counter (c0, c1) under precomputed round keys: the same bits as fl_philox_words of the seed. */
FL_HD fl_philox_out fl_philox_keyed(const fl_philox_keys *keys, uint32_t c0, uint32_t c1) {
  fl_philox_out s = fl_philox_start(c0, c1);
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int r = 0; r < FL_PHILOX_ROUNDS; r++) fl_philox_round_keyed(&s, keys, r);
  return s;
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
