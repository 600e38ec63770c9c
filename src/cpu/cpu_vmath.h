/* f32 elementary functions written for the vectoriser: branch-free, no libm
 * calls, no float-to-int conversions, so a loop over them compiles to SIMD.
 * Each stays within a few f32 ulp of the correctly rounded f64 reference
 * (checked against it over the whole f32 range by tests/test_cpu_vmath.c).
 * Coefficients: Taylor series where they converge fast enough on the reduced
 * range, and a least-squares fit (weighted for relative error, our own) for
 * erfc's tail. */
#ifndef FL_CPU_VMATH_H
#define FL_CPU_VMATH_H
#include <stdint.h>
#include <string.h>

#define FL_VINLINE static inline __attribute__((always_inline))

FL_VINLINE uint32_t fv_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
FL_VINLINE float fv_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
FL_VINLINE float fv_abs(float x) { return fv_float(fv_bits(x) & 0x7fffffffu); }
FL_VINLINE float fv_copysign(float m, float s) { return fv_float((fv_bits(m) & 0x7fffffffu) | (fv_bits(s) & 0x80000000u)); }

/* exp(hi + lo) for a small correction lo: n = round(hi / ln2) by the 1.5 * 2^23
 * trick (its low mantissa bits are n, so no float-to-int conversion),
 * r = hi - n ln2 (Cody-Waite, two parts) + lo in [-0.35, 0.35], e^r by its
 * Taylor series to r^7 (truncation 5e-9, below half an ulp), and 2^n applied
 * as two factors so that results down to the subnormals and up to Inf come
 * out right. NaN propagates through r. */
FL_VINLINE float fv_exp2(float hi, float lo) {
  hi = hi > 88.8f ? 88.8f : hi;           /* exp(88.8) > FLT_MAX: Inf after scaling */
  hi = hi < -105.0f ? -105.0f : hi;       /* exp(-105) < half the smallest subnormal: 0 */
  const float shifter = 12582912.0f;      /* 1.5 * 2^23 */
  float t = hi * 1.44269504088896341f + shifter;
  int32_t n = (int32_t)(fv_bits(t) - fv_bits(shifter));
  float nf = t - shifter;
  float r = hi - nf * 0.693145751953125f; /* ln2 high part: exact product for |n| < 2^9 */
  r = r - nf * 1.428606765330187e-06f;    /* ln2 - the high part */
  r = r + lo;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t n1 = n >> 1, n2 = n - n1; /* each in [-76, 64]: a normal power of two */
  float s1 = fv_float((uint32_t)(n1 + 127) << 23), s2 = fv_float((uint32_t)(n2 + 127) << 23);
  return p * s1 * s2;
}
FL_VINLINE float fv_exp(float x) { return fv_exp2(x, 0.0f); }

/* With e = exp(-|x|) (never overflows): 1 / (1 + e) for x >= 0, e / (1 + e)
 * below, which keeps full precision deep in the left tail. */
FL_VINLINE float fv_sigmoid(float x) {
  float e = fv_exp(-fv_abs(x)), d = 1.0f / (1.0f + e);
  return x >= 0 ? d : e * d;
}

/* tanh: the odd Taylor series to x^17 below 0.55 (error 5e-9 relative there),
 * 1 - 2 / (e^2|x| + 1) above (no cancellation: tanh >= 0.5), sign restored. */
FL_VINLINE float fv_tanh(float x) {
  float a = fv_abs(x), z = a * a;
  float p = 5.900274409455859e-04f;
  p = p * z - 1.4558343870513183e-03f;
  p = p * z + 3.592128036572481e-03f;
  p = p * z - 8.863235529902197e-03f;
  p = p * z + 2.1869488536155203e-02f;
  p = p * z - 5.396825396825397e-02f;
  p = p * z + 1.3333333333333333e-01f;
  p = p * z - 3.333333333333333e-01f;
  float small = a + a * z * p;
  float big = 1.0f - 2.0f / (fv_exp(2.0f * a) + 1.0f);
  float r = a < 0.55f ? small : big;
  return x != x ? x : fv_copysign(r, x);
}

/* Phi(x) = P(X <= x) for a standard normal, with relative accuracy also deep in
 * the left tail (gelu(x) = x Phi(x) must not lose digits for negative x).
 * With z = |x| / sqrt2: erf(z) by its Taylor series below 0.85 (10 terms,
 * error 1e-8 relative); above, erfc(z) = exp(-z^2) g(t), t = 1 / (1 + z / 2),
 * g a degree-9 polynomial fit to erfc(z) e^{z^2} on [0.8, 9.4] (relative error
 * 2.5e-9 in exact arithmetic). z^2 = x^2 / 2 is formed from x, split exactly,
 * not from the rounded z, so that exp(-z^2) keeps its accuracy for large z. */
FL_VINLINE float fv_phi(float x) {
  float z = fv_abs(x) * 0.70710678118654752f;
  z = z < 11.0f ? z : 11.0f; /* erfc(11) is 0 in f32; keeps Inf out of the tail formula */
  float z2 = z * z;
  float e = -1.6365844691234924e-07f;
  e = e * z2 + 1.6462114365889248e-06f;
  e = e * z2 - 1.4925650358406252e-05f;
  e = e * z2 + 1.2055332981789665e-04f;
  e = e * z2 - 8.548327023450853e-04f;
  e = e * z2 + 5.223977625442188e-03f;
  e = e * z2 - 2.6866170645131252e-02f;
  e = e * z2 + 1.1283791670955128e-01f;
  e = e * z2 - 3.7612638903183754e-01f;
  e = e * z2 + 1.1283791670955126f;
  float erf_small = z * e;                      /* erf(z), z < 0.85 */
  float t = 1.0f / (1.0f + 0.5f * z);
  float g = -7.133033947e-02f;
  g = g * t + 3.405535310e-01f;
  g = g * t - 5.952070093e-01f;
  g = g * t + 3.935273987e-01f;
  g = g * t - 1.018257195e-01f;
  g = g * t + 2.335485688e-01f;
  g = g * t + 2.351457023e-01f;
  g = g * t + 2.836155689e-01f;
  g = g * t + 2.819805888e-01f;
  g = g * t + 3.764187910e-06f;
  /* z^2 = x^2 / 2 with x = xh + xl split exactly (xh has 12 bits): x^2 = xh^2 + xl (x + xh) */
  float ax = fv_abs(x);
  ax = ax < 15.5f ? ax : 15.5f; /* z <= 11 */
  float xh = fv_float(fv_bits(ax) & 0xfffff000u), xl = ax - xh;
  float erfc_big = fv_exp2(-0.5f * (xh * xh), -0.5f * (xl * (ax + xh))) * g;
  float erfc_z = z < 0.85f ? 1.0f - erf_small : erfc_big;    /* erfc(|x| / sqrt2) */
  float half_tail = 0.5f * erfc_z;                            /* Phi(-|x|) */
  float r = x < 0 ? half_tail : 1.0f - half_tail;
  return x != x ? x : r;
}

FL_VINLINE float fv_gelu(float x) { return x * fv_phi(x); }

/* 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for negative x. 2u is
 * formed in f64 (in f32 its rounding is amplified by exp in the tail) and
 * handed to exp as two f32 parts. */
FL_VINLINE float fv_gelu_tanh(float x) {
  double xd = x, u2 = 2 * 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
  double au = u2 < 0 ? -u2 : u2;
  au = au < 200 ? au : 200; /* exp(-200) is 0: keeps Inf out of the split */
  float hi = (float)au, lo = (float)(au - (double)hi);
  float e = fv_exp2(-hi, -lo), d = 1.0f / (1.0f + e);
  return x * (u2 >= 0 ? d : e * d);
}
#endif
