/* Device math on compute types (float, double, int64). Integer versions of the
 * transcendental functions go through double: the core promotes integers to
 * float before such ops, so these only keep odd calls well defined. */
#ifndef FL_CUDA_MATH_CUH
#define FL_CUDA_MATH_CUH

#include "dispatch.cuh"

#define FC_DEV __device__ __forceinline__

FC_DEV bool fc_isnan(float x) { return isnan(x); }
FC_DEV bool fc_isnan(double x) { return isnan(x); }
FC_DEV bool fc_isnan(int64_t) { return false; }

FC_DEV float fc_exp(float x) { return expf(x); }
FC_DEV double fc_exp(double x) { return exp(x); }
FC_DEV float fc_log(float x) { return logf(x); }
FC_DEV double fc_log(double x) { return log(x); }
FC_DEV float fc_sqrt(float x) { return sqrtf(x); }
FC_DEV double fc_sqrt(double x) { return sqrt(x); }
FC_DEV float fc_sin(float x) { return sinf(x); }
FC_DEV double fc_sin(double x) { return sin(x); }
FC_DEV float fc_cos(float x) { return cosf(x); }
FC_DEV double fc_cos(double x) { return cos(x); }
FC_DEV float fc_tanh(float x) { return tanhf(x); }
FC_DEV double fc_tanh(double x) { return tanh(x); }
FC_DEV float fc_erf(float x) { return erff(x); }
FC_DEV double fc_erf(double x) { return erf(x); }
FC_DEV float fc_pow(float a, float b) { return powf(a, b); }
FC_DEV double fc_pow(double a, double b) { return pow(a, b); }
FC_DEV float fc_abs(float x) { return fabsf(x); }
FC_DEV double fc_abs(double x) { return fabs(x); }
FC_DEV int64_t fc_abs(int64_t x) { return x < 0 ? -x : x; }

#define FC_INT_VIA_DOUBLE(NAME) \
  FC_DEV int64_t NAME(int64_t x) { return (int64_t)NAME((double)x); }
FC_INT_VIA_DOUBLE(fc_exp)
FC_INT_VIA_DOUBLE(fc_log)
FC_INT_VIA_DOUBLE(fc_sqrt)
FC_INT_VIA_DOUBLE(fc_sin)
FC_INT_VIA_DOUBLE(fc_cos)
FC_INT_VIA_DOUBLE(fc_tanh)
FC_INT_VIA_DOUBLE(fc_erf)
#undef FC_INT_VIA_DOUBLE

/* Rounding to an integral value; integers are integral already. rint rounds
 * half to even (the default rounding mode), as torch.round. */
FC_DEV float fc_floor(float x) { return floorf(x); }
FC_DEV double fc_floor(double x) { return floor(x); }
FC_DEV int64_t fc_floor(int64_t x) { return x; }
FC_DEV float fc_ceil(float x) { return ceilf(x); }
FC_DEV double fc_ceil(double x) { return ceil(x); }
FC_DEV int64_t fc_ceil(int64_t x) { return x; }
FC_DEV float fc_round(float x) { return rintf(x); }
FC_DEV double fc_round(double x) { return rint(x); }
FC_DEV int64_t fc_round(int64_t x) { return x; }
FC_DEV float fc_trunc(float x) { return truncf(x); }
FC_DEV double fc_trunc(double x) { return trunc(x); }
FC_DEV int64_t fc_trunc(int64_t x) { return x; }

/* Integer power by squaring; negative exponents follow truncating division. */
FC_DEV int64_t fc_pow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  int64_t r = 1;
  while (b) {
    if (b & 1) r *= a;
    a *= a;
    b >>= 1;
  }
  return r;
}

/* NaN-propagating max/min (torch.maximum semantics). */
template <class C> FC_DEV C fc_max(C a, C b) { return (fc_isnan(a) || a > b) ? a : b; }
template <class C> FC_DEV C fc_min(C a, C b) { return (fc_isnan(a) || a < b) ? a : b; }

#endif
