/* The CPU kernels against f64 references: the vector f32 functions over a
 * sweep of the whole f32 range (in ulps of the correctly rounded result), the
 * BACKEND_V2 entries (scalar operands, mixed dtypes on load, index base),
 * wrapping integer arithmetic, and results that do not depend on the thread
 * count. */
#include "internal.h"
#include "half.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

fl_status fl_cpu_unary(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1);
fl_status fl_cpu_binary(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
fl_status fl_cpu_binary_scalar(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                               fl_dtype compute);
fl_status fl_cpu_reduce(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask,
                        double param, int64_t base);
fl_status fl_cpu_index_select(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
fl_status fl_cpu_gather(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);

static int failures;
static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

static fl_tensor *new1(fl_dtype dt, int64_t n) {
  fl_tensor *t = NULL;
  if (fl_tensor_new(dt, FL_CPU_DEVICE, 1, &n, &t) != FL_OK) return NULL;
  return t;
}
#define F32(t) ((float *)fl_data_ptr(t))
#define I64(t) ((int64_t *)fl_data_ptr(t))

/* Distance in ulps between got and the f64 reference rounded to f32; values
 * below the smallest normal count in units of its ulp (an absolute floor). */
static double ulps(float got, double ref) {
  float r = (float)ref;
  if (isnan(r) || isnan(got)) return isnan(r) == isnan(got) ? 0 : INFINITY;
  if (isinf(r) || isinf(got)) return r == got ? 0 : INFINITY;
  double unit = fmax(fabs((double)nextafterf(r, INFINITY) - r), ldexp(1.0, -149 + 23));
  return fabs((double)got - ref) / unit;
}

static double ref_unary(fl_unary_op op, double x) {
  switch (op) {
    case FL_EXP: return exp(x);
    case FL_TANH: return tanh(x);
    case FL_SIGMOID: return 1 / (1 + exp(-x));
    case FL_SILU: return x / (1 + exp(-x));
    case FL_GELU: return 0.5 * x * erfc(-x * 0.70710678118654752440);
    case FL_GELU_TANH: return x / (1 + exp(-2 * 0.7978845608028654 * (x + 0.044715 * x * x * x)));
    default: return NAN;
  }
}

static void sweep(fl_unary_op op, const char *name, double bound) {
  const int64_t n = (int64_t)1 << 20; /* every 4096th f32 bit pattern, both signs */
  fl_tensor *x = new1(FL_F32, n), *y = new1(FL_F32, n);
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)i << 12 | 0x5a5;
    memcpy(&F32(x)[i], &u, 4);
  }
  fl_cpu_unary(op, y, x, NAN, NAN);
  double worst = 0, at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = ulps(F32(y)[i], ref_unary(op, F32(x)[i]));
    if (e > worst) worst = e, at = F32(x)[i];
  }
  char msg[160];
  snprintf(msg, sizeof msg, "%s: f32 within %.0f ulp of the f64 reference over the range (worst %.2f at %g)", name,
           bound, worst, at);
  check(worst <= bound, msg);
  fl_release(x);
  fl_release(y);
}

/* gelu's backward helper, g * gelu'(x) with g = 1, over the same bit patterns:
 * within 6 ulp of the f64 reference, or, where Phi(x) and x phi(x) cancel (near
 * x = -0.75), within 6 ulp of the larger term. */
static void sweep_gelu_grad(void) {
  const int64_t n = (int64_t)1 << 20;
  fl_tensor *x = new1(FL_F32, n), *y = new1(FL_F32, n);
  for (int64_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)i << 12 | 0x5a5;
    memcpy(&F32(x)[i], &u, 4);
  }
  fl_cpu_binary_scalar(FL_GELU_BACKWARD, y, x, 1.0, true, FL_F32);
  double worst = 0, at = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = F32(x)[i], phi = 0.5 * erfc(-v * 0.70710678118654752440), xd = v * exp(-0.5 * v * v) * 0.3989422804014327;
    double e = ulps(F32(y)[i], phi + xd), scale = fmax(phi, fabs(xd));
    if (scale >= 0x1p-126) /* or in ulps of the larger term */
      e = fmin(e, fabs(F32(y)[i] - (phi + xd)) / ((double)nextafterf((float)scale, INFINITY) - (float)scale));
    if (e > worst) worst = e, at = v;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "gelu backward: f32 within 6 ulp of the f64 reference (or of its larger term) (worst %.2f at %g)",
           worst, at);
  check(worst <= 6, msg);
  fl_release(x);
  fl_release(y);
}

int main(void) {
  sweep(FL_EXP, "exp", 2);
  sweep(FL_TANH, "tanh", 6);
  sweep(FL_SIGMOID, "sigmoid", 3);
  sweep(FL_SILU, "silu", 4);
  sweep(FL_GELU, "gelu", 6);
  sweep(FL_GELU_TANH, "gelu_tanh", 4);
  sweep_gelu_grad();

  /* scalars by value, rounded once to the compute type */
  fl_tensor *a = new1(FL_F32, 5), *o = new1(FL_F32, 5);
  for (int i = 0; i < 5; i++) F32(a)[i] = (float)i - 2;
  fl_cpu_binary_scalar(FL_SUB, o, a, 0.1, true, FL_F32);
  bool ok = true;
  for (int i = 0; i < 5; i++) ok = ok && F32(o)[i] == 0.1f - F32(a)[i];
  check(ok, "binary_scalar reversed: s - a with s rounded to f32");
  fl_tensor *ob = new1(FL_BOOL, 5);
  fl_cpu_binary_scalar(FL_GT, ob, a, 0.5, false, FL_F32);
  uint8_t *pb = (uint8_t *)fl_data_ptr(ob);
  check(!pb[0] && !pb[2] && pb[3] && pb[4], "binary_scalar predicate stores bool");
  fl_tensor *ai = new1(FL_I64, 3), *oi = new1(FL_I64, 3);
  I64(ai)[0] = INT64_MAX, I64(ai)[1] = INT64_MIN, I64(ai)[2] = 7;
  fl_cpu_binary_scalar(FL_ADD, oi, ai, 1, false, FL_I64);
  check(I64(oi)[0] == INT64_MIN && I64(oi)[1] == INT64_MIN + 1 && I64(oi)[2] == 8, "i64 add wraps like PyTorch");
  fl_cpu_binary_scalar(FL_MUL, oi, ai, 3, false, FL_I64);
  check(I64(oi)[0] == INT64_MAX - 2 && I64(oi)[1] == INT64_MIN, "i64 mul wraps");
  fl_cpu_binary_scalar(FL_POW, oi, ai, 64, true, FL_I64); /* 64^x */
  check(I64(oi)[2] == ((int64_t)1 << 42), "ipow exact in range");
  fl_cpu_unary(FL_NEG, oi, ai, NAN, NAN);
  check(I64(oi)[1] == INT64_MIN && I64(oi)[0] == -INT64_MAX, "i64 negation of INT64_MIN wraps");
  fl_tensor *s1 = NULL;
  int64_t one = 1;
  fl_tensor_new(FL_I64, FL_CPU_DEVICE, 1, &one, &s1);
  fl_cpu_reduce(FL_RSUM, s1, NULL, ai, 1, 0, 0);
  check(I64(s1)[0] == 6, "i64 sum wraps (MAX + MIN + 7 = 6)");

  /* mixed dtypes on load: bf16 + f32 computes in f32, no cast copy */
  fl_tensor *hb = new1(FL_BF16, 4), *f = new1(FL_F32, 4), *of = new1(FL_F32, 4);
  uint16_t *hp = (uint16_t *)fl_data_ptr(hb);
  for (int i = 0; i < 4; i++) hp[i] = fl_bfloat_from_f32(1.5f * (float)i), F32(f)[i] = 0.25f;
  fl_cpu_binary(FL_ADD, of, hb, f);
  check(F32(of)[0] == 0.25f && F32(of)[3] == 4.75f, "bf16 + f32 converts on load");
  fl_tensor *xi = new1(FL_I32, 3);
  for (int i = 0; i < 3; i++) ((int32_t *)fl_data_ptr(xi))[i] = i;
  fl_tensor *oe = new1(FL_F32, 3);
  fl_cpu_unary(FL_EXP, oe, xi, NAN, NAN);
  check(F32(oe)[0] == 1 && fabsf(F32(oe)[2] - 7.389056f) < 1e-6f, "exp of an i32 tensor into f32");

  /* converted as a cast to the compute dtype would: 2049 is 2048 in f16 */
  fl_tensor *i2049 = new1(FL_I32, 1), *h1 = new1(FL_F16, 1);
  ((int32_t *)fl_data_ptr(i2049))[0] = 2049;
  fl_cpu_binary_scalar(FL_ADD, h1, i2049, 0, false, FL_F16);
  check(fl_half_to_f32(((uint16_t *)fl_data_ptr(h1))[0]) == 2048.0f, "an i32 operand of an f16 op rounds to f16 on load");
  fl_cpu_binary_scalar(FL_MUL, h1, i2049, 1.0009765625, false, FL_F16); /* 1 + 2^-10 is exact in f16 */
  check(fl_half_to_f32(((uint16_t *)fl_data_ptr(h1))[0]) == 2050.0f, "the scalar rounds once to f16, the op runs in f32");
  fl_tensor *fa = new1(FL_F32, 1), *ob1 = new1(FL_BOOL, 1);
  F32(fa)[0] = 0.5f;
  fl_cpu_binary(FL_AND, ob1, fa, fa);
  check(((uint8_t *)fl_data_ptr(ob1))[0] == 1, "logic ops take a float's truth value (0.5 is true)");
  fl_release(i2049), fl_release(h1), fl_release(fa), fl_release(ob1);

  /* index base: 1-based i32 indices, errors quote the stored index */
  fl_tensor *src = new1(FL_F32, 4), *sel = new1(FL_F32, 3), *ix = new1(FL_I32, 3);
  for (int i = 0; i < 4; i++) F32(src)[i] = 10.0f * (float)i;
  int32_t *ip = (int32_t *)fl_data_ptr(ix);
  ip[0] = 4, ip[1] = 1, ip[2] = 2;
  check(fl_cpu_index_select(sel, src, 0, ix, 1) == FL_OK && F32(sel)[0] == 30 && F32(sel)[1] == 0 && F32(sel)[2] == 10,
        "index_select with base 1");
  check(fl_cpu_gather(sel, src, 0, ix, 1) == FL_OK && F32(sel)[0] == 30, "gather with base 1");
  ip[0] = 5;
  fl_set_message_base(1); /* as from Lua: the index reads as stored */
  check(fl_cpu_index_select(sel, src, 0, ix, 1) == FL_EINDEX &&
            strstr(fl_last_error(), "index 5 out of range for dim 1 of size 4"),
        "an out-of-range index is quoted as stored with message base 1");
  ip[0] = 0;
  check(fl_cpu_gather(sel, src, 0, ix, 1) == FL_EINDEX && strstr(fl_last_error(), "index 0 out of range"),
        "index 0 is out of range with base 1");
  fl_set_message_base(0);
  ip[0] = INT32_MIN;
  check(fl_cpu_gather(sel, src, 0, ix, 1) == FL_EINDEX && strstr(fl_last_error(), "index -2147483649 out of range"),
        "with message base 0 the position (index - base) is quoted");
  fl_tensor *am = NULL;
  fl_tensor_new(FL_I64, FL_CPU_DEVICE, 1, &one, &am);
  fl_cpu_reduce(FL_RARGMAX, am, NULL, src, 1, 0, 1);
  check(I64(am)[0] == 4, "argmax with base 1");

  /* thread count: elementwise bit-identical, argmax identical, sums within reassociation */
  const int64_t big = 3 << 20;
  fl_tensor *x = new1(FL_F32, big), *y1 = new1(FL_F32, big), *y2 = new1(FL_F32, big), *r1 = NULL, *r2 = NULL;
  fl_tensor *i1 = NULL, *i2 = NULL;
  fl_tensor_new(FL_F32, FL_CPU_DEVICE, 1, &one, &r1);
  fl_tensor_new(FL_F32, FL_CPU_DEVICE, 1, &one, &r2);
  fl_tensor_new(FL_I64, FL_CPU_DEVICE, 1, &one, &i1);
  fl_tensor_new(FL_I64, FL_CPU_DEVICE, 1, &one, &i2);
  for (int64_t i = 0; i < big; i++) F32(x)[i] = sinf((float)i * 0.001f) * 3;
  int prev = fl_get_num_threads();
  fl_set_num_threads(1);
  fl_cpu_unary(FL_GELU, y1, x, NAN, NAN);
  fl_cpu_reduce(FL_RSUM, r1, NULL, x, 1, 0, 0);
  fl_cpu_reduce(FL_RARGMIN, i1, NULL, x, 1, 0, 0);
  fl_set_num_threads(4);
  fl_cpu_unary(FL_GELU, y2, x, NAN, NAN);
  fl_cpu_reduce(FL_RSUM, r2, NULL, x, 1, 0, 0);
  fl_cpu_reduce(FL_RARGMIN, i2, NULL, x, 1, 0, 0);
  check(memcmp(fl_data_ptr(y1), fl_data_ptr(y2), (size_t)big * 4) == 0, "gelu: same bits at 1 and 4 threads");
  check(fabsf(F32(r1)[0] - F32(r2)[0]) <= 1e-6f * fabsf(F32(r1)[0]) + 1e-3f, "sum: 1 and 4 threads agree");
  check(I64(i1)[0] == I64(i2)[0], "argmin: same index at 1 and 4 threads");
  check(fl_set_num_threads(0) == FL_EINVAL && strstr(fl_last_error(), "set_num_threads"), "0 threads is an error");
  fl_set_num_threads(prev);

  fl_tensor *all[] = {a, o, ob, ai, oi, s1, hb, f, of, xi, oe, src, sel, ix, am, x, y1, y2, r1, r2, i1, i2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) fl_release(all[i]);
  printf("%s\n", failures ? "FAILED" : "all passed");
  return failures != 0;
}
