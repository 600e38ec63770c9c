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

/* The reduction and polynomial of exp: hi + lo = n ln2 + r with n = round(hi / ln2)
 * by the 1.5 * 2^23 trick (its low mantissa bits are n, so no float-to-int
 * conversion), r = hi - n ln2 (Cody-Waite, two parts) + lo in [-0.35, 0.35],
 * and q = e^r - 1 by its Taylor series to r^7 (truncation 5e-9 relative, below
 * half an ulp). hi is clamped to [-105, 88.8]: beyond, exp is 0 or Inf. NaN
 * propagates through r. */
typedef struct { float q; int32_t n; } fv_expparts;
FL_VINLINE fv_expparts fv_exp_reduce(float hi, float lo) {
  hi = hi > 88.8f ? 88.8f : hi;           /* exp(88.8) > FLT_MAX: Inf after scaling */
  hi = hi < -105.0f ? -105.0f : hi;       /* exp(-105) < half the smallest subnormal: 0 */
  const float shifter = 12582912.0f;      /* 1.5 * 2^23 */
  float t = hi * 1.44269504088896341f + shifter;
  fv_expparts e;
  e.n = (int32_t)(fv_bits(t) - fv_bits(shifter));
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
  e.q = p * r;
  return e;
}

/* 2^n for n in [-76, 64] (always a normal float). */
FL_VINLINE float fv_pow2(int32_t n) { return fv_float((uint32_t)(n + 127) << 23); }

/* exp(hi + lo) for a small correction lo. 2^n is applied as two factors so
 * that results down to the subnormals and up to Inf round once. */
FL_VINLINE float fv_exp2(float hi, float lo) {
  fv_expparts e = fv_exp_reduce(hi, lo);
  int32_t n1 = e.n >> 1, n2 = e.n - n1; /* each in [-76, 64] */
  return (1.0f + e.q) * fv_pow2(n1) * fv_pow2(n2);
}
FL_VINLINE float fv_exp(float x) { return fv_exp2(x, 0.0f); }

/* With e = exp(-|x|) (never overflows): 1 / (1 + e) for x >= 0, e / (1 + e)
 * below, which keeps full precision deep in the left tail. */
FL_VINLINE float fv_sigmoid(float x) {
  float e = fv_exp(-fv_abs(x)), d = 1.0f / (1.0f + e);
  return x >= 0 ? d : e * d;
}

/* tanh x = x P(x^2) / Q(x^2) on |x| <= 9.2 (beyond, tanh rounds to +-1 in
 * f32), a degree 5/3 rational fit of our own (Lawson-weighted least squares
 * towards minimax relative error: 7e-8 in exact arithmetic, about 5 f32 ulp
 * as evaluated). Half the work of an exp-based form, and no exp range limits. */
FL_VINLINE float fv_tanh(float x) {
  float a = fv_abs(x);
  a = a > 9.2f ? 9.2f : a; /* NaN passes */
  float z = a * a;
  float p = 1.7349026013e-11f;
  p = p * z - 1.2418639459e-08f;
  p = p * z + 9.1449501700e-06f;
  p = p * z + 2.9072424121e-03f;
  p = p * z + 1.2906625622e-01f;
  p = p * z + 9.9999992825e-01f;
  float q = 2.2623680158e-04f;
  q = q * z + 2.3707737020e-02f;
  q = q * z + 4.6239899446e-01f;
  q = q * z + 1.0f;
  float r = a * p / q;
  r = r > 1.0f ? 1.0f : r;
  return fv_copysign(r, x);
}

/* Phi(x) = P(X <= x) for a standard normal, with relative accuracy also deep in
 * the left tail (gelu(x) = x Phi(x) must not lose digits for negative x).
 * With z = |x| / sqrt2: erfc(z) = exp(-z^2) g(t), t = 1 / (1 + z / 2), g a
 * degree-9 polynomial fit of our own to erfc(z) e^{z^2} on [0, 9.3]
 * (Lawson-weighted least squares, relative error 3e-8 in exact arithmetic);
 * Phi(x) = erfc(z) / 2 for x < 0, 1 - erfc(z) / 2 above. z^2 = x^2 / 2 is
 * formed from x split exactly, not from the rounded z, so exp(-z^2) keeps its
 * accuracy for large z. Beyond |x| = 13.1 the tail (< 1.7e-39, below the
 * normal range) is 0, which keeps exp's scaling to one power of two. */
FL_VINLINE float fv_phi(float x) {
  float ax = fv_abs(x);
  float tail_zero = ax > 13.1f ? 0.0f : 1.0f;
  ax = ax > 13.1f ? 13.1f : ax; /* NaN passes */
  float z = ax * 0.70710678118654752f;
  float t = 1.0f / (1.0f + 0.5f * z);
  float g = -5.371037187e-02f;
  g = g * t + 2.568784869e-01f;
  g = g * t - 4.256147874e-01f;
  g = g * t + 2.009788529e-01f;
  g = g * t + 3.304700189e-02f;
  g = g * t + 1.731596451e-01f;
  g = g * t + 2.524143412e-01f;
  g = g * t + 2.805761932e-01f;
  g = g * t + 2.822793486e-01f;
  g = g * t - 8.739685029e-06f;
  /* x^2 = xh^2 + xl (x + xh) with xh the top 12 bits of x: xh^2 is exact */
  float xh = fv_float(fv_bits(ax) & 0xfffff000u), xl = ax - xh;
  fv_expparts e = fv_exp_reduce(-0.5f * (xh * xh), -0.5f * (xl * (ax + xh))); /* n >= -124 */
  float half_tail = (0.5f * tail_zero) * ((1.0f + e.q) * fv_pow2(e.n)) * g; /* Phi(-|x|) */
  return x < 0 ? half_tail : 1.0f - half_tail;
}

FL_VINLINE float fv_gelu(float x) { return x * fv_phi(x); }

/* gelu'(x) = Phi(x) + x phi(x), phi the standard normal density, its
 * exp(-x^2 / 2) from x split exactly as in fv_phi. The two terms cancel near
 * x = -0.75, where the result keeps absolute accuracy (a few ulp of Phi) only.
 * Beyond |x| = 14.4, x phi(x) is below the smallest subnormal: 0. */
FL_VINLINE float fv_gelu_grad(float x) {
  float ax = fv_abs(x), tail_zero = ax > 14.4f ? 0.0f : 1.0f;
  ax = ax > 14.4f ? 14.4f : ax; /* NaN passes */
  float xh = fv_float(fv_bits(ax) & 0xfffff000u), xl = ax - xh;
  float d = fv_exp2(-0.5f * (xh * xh), -0.5f * (xl * (ax + xh))) * (0.39894228040143268f * tail_zero);
  return fv_phi(x) + fv_copysign(ax, x) * d;
}

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
