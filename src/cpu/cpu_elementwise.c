/* CPU elementwise kernels: unary, binary, where, copy/cast, fill, arange. */
#include "cpu.h"
#include <math.h>
#include <string.h>

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440)); }
static const double K_TANH = 0.7978845608028654; /* sqrt(2/pi) */
static double gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(K_TANH * (x + 0.044715 * x * x * x))); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double unary_f(fl_unary_op op, double x, double p0, double p1) {
  switch (op) {
    case FL_NEG: return -x;
    case FL_EXP: return exp(x);
    case FL_LOG: return log(x);
    case FL_SQRT: return sqrt(x);
    case FL_RSQRT: return 1.0 / sqrt(x);
    case FL_ABS: return fabs(x);
    case FL_SIN: return sin(x);
    case FL_COS: return cos(x);
    case FL_TANH: return tanh(x);
    case FL_SIGMOID: return sigmoid(x);
    case FL_RELU: return x > 0 ? x : 0;
    case FL_GELU: return gelu(x);
    case FL_GELU_TANH: return gelu_tanh(x);
    case FL_SILU: return x * sigmoid(x);
    case FL_SIGN: return (x > 0) - (x < 0);
    case FL_LOGICAL_NOT: return x == 0;
    case FL_CLAMP:
      if (!isnan(p0) && x < p0) x = p0;
      if (!isnan(p1) && x > p1) x = p1;
      return x;
    case FL_FLOOR: return floor(x);
    case FL_CEIL: return ceil(x);
    case FL_ROUND: return nearbyint(x); /* the default rounding mode: half to even, as torch.round */
    case FL_TRUNC: return trunc(x);
    default: return NAN;
  }
}

static int64_t unary_i(fl_unary_op op, int64_t x, double p0, double p1) {
  switch (op) {
    case FL_NEG: return -x;
    case FL_ABS: return x < 0 ? -x : x;
    case FL_RELU: return x > 0 ? x : 0;
    case FL_SIGN: return (x > 0) - (x < 0);
    case FL_LOGICAL_NOT: return x == 0;
    case FL_CLAMP:
      if (!isnan(p0) && x < (int64_t)ceil(p0)) x = (int64_t)ceil(p0);
      if (!isnan(p1) && x > (int64_t)floor(p1)) x = (int64_t)floor(p1);
      return x;
    case FL_FLOOR: case FL_CEIL: case FL_ROUND: case FL_TRUNC: return x; /* already integral */
    default: return (int64_t)unary_f(op, (double)x, p0, p1);
  }
}

/* An element of dtype src converted on load to the compute dtype ct, as a
 * double (float ct) or an int64 (integer ct): rounded as a cast to ct would. */
static double ld_as(const char *p, fl_dtype src, fl_dtype ct) {
  double v = fl_ld(p, src);
  if (src == ct) return v;
  char buf[8];
  fl_st(buf, ct, v);
  return fl_ld(buf, ct);
}
static int64_t ldi_as(const char *p, fl_dtype src, fl_dtype ct) {
  if (src == ct) return fl_ldi(p, src);
  char buf[8];
  if (fl_dtype_is_float(src)) fl_st(buf, ct, fl_ld(p, src));
  else fl_sti(buf, ct, fl_ldi(p, src));
  return fl_ldi(buf, ct);
}

typedef struct { int op; fl_dtype out, in, ct; double p0, p1; } ew_ctx;

static void unary_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  ew_ctx *c = vc;
  if (fl_dtype_is_float(c->ct)) {
    for (int64_t i = 0; i < n; i++)
      fl_st(p[0] + i * s[0], c->out, unary_f(c->op, ld_as(p[1] + i * s[1], c->in, c->ct), c->p0, c->p1));
  } else {
    for (int64_t i = 0; i < n; i++)
      fl_sti(p[0] + i * s[0], c->out, unary_i(c->op, ldi_as(p[1] + i * s[1], c->in, c->ct), c->p0, c->p1));
  }
}

/* Computes in out's dtype (x's for logical_not), x converted on load. */
fl_status fl_cpu_unary(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1) {
  ew_ctx c = {op, out->dtype, x->dtype, op == FL_LOGICAL_NOT ? x->dtype : out->dtype, p0, p1};
  fl_tensor *ts[2] = {out, (fl_tensor *)x};
  fl_cpu_iterate(2, ts, unary_loop, &c);
  return FL_OK;
}

static double binary_f(fl_binary_op op, double a, double b) {
  switch (op) {
    case FL_ADD: return a + b;
    case FL_SUB: return a - b;
    case FL_MUL: return a * b;
    case FL_DIV: return a / b;
    case FL_POW: return pow(a, b);
    case FL_MAXIMUM: return (isnan(a) || a > b) ? a : b;
    case FL_MINIMUM: return (isnan(a) || a < b) ? a : b;
    case FL_EQ: return a == b;
    case FL_NE: return a != b;
    case FL_LT: return a < b;
    case FL_LE: return a <= b;
    case FL_GT: return a > b;
    case FL_GE: return a >= b;
    case FL_AND: return a != 0 && b != 0;
    case FL_OR: return a != 0 || b != 0;
    case FL_RELU_BACKWARD: return b > 0 ? a : 0;
    case FL_GELU_BACKWARD: return a * (0.5 * (1.0 + erf(b * 0.70710678118654752440)) + b * exp(-0.5 * b * b) * 0.3989422804014327);
    case FL_GELU_TANH_BACKWARD: {
      double u = K_TANH * (b + 0.044715 * b * b * b), t = tanh(u);
      return a * (0.5 * (1.0 + t) + 0.5 * b * (1.0 - t * t) * K_TANH * (1.0 + 3 * 0.044715 * b * b));
    }
    case FL_SILU_BACKWARD: {
      double s = sigmoid(b);
      return a * s * (1.0 + b * (1.0 - s));
    }
    case FL_SIGMOID_BACKWARD: return a * b * (1.0 - b);
    case FL_TANH_BACKWARD: return a * (1.0 - b * b);
    default: return NAN;
  }
}

static int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : (a == -1 ? (b & 1 ? -1 : 1) : 0);
  int64_t r = 1;
  while (b) {
    if (b & 1) r *= a;
    a *= a;
    b >>= 1;
  }
  return r;
}

static int64_t binary_i(fl_binary_op op, int64_t a, int64_t b) {
  switch (op) {
    case FL_ADD: return a + b;
    case FL_SUB: return a - b;
    case FL_MUL: return a * b;
    case FL_DIV: return b ? a / b : 0;
    case FL_POW: return ipow(a, b);
    case FL_MAXIMUM: return a > b ? a : b;
    case FL_MINIMUM: return a < b ? a : b;
    case FL_EQ: return a == b;
    case FL_NE: return a != b;
    case FL_LT: return a < b;
    case FL_LE: return a <= b;
    case FL_GT: return a > b;
    case FL_GE: return a >= b;
    case FL_AND: return a && b;
    case FL_OR: return a || b;
    default: return (int64_t)binary_f(op, (double)a, (double)b);
  }
}

typedef struct {
  fl_binary_op op;
  fl_dtype out, a, b, ct;
  double s; /* binary_scalar: the scalar, already rounded to ct */
  bool rev;
} bin_ctx;

/* The hot case (same-dtype f32, unit strides) gets typed loops the compiler vectorises. */
static bool binary_f32_fast(fl_binary_op op, int64_t n, char **p, const int64_t *s) {
  if (s[0] != 4 || (s[1] != 4 && s[1] != 0) || (s[2] != 4 && s[2] != 0)) return false;
  float *o = (float *)p[0];
  const float *a = (const float *)p[1], *b = (const float *)p[2];
  int64_t sa = s[1] / 4, sb = s[2] / 4;
  switch (op) {
    case FL_ADD: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] + b[i * sb]; return true;
    case FL_SUB: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] - b[i * sb]; return true;
    case FL_MUL: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] * b[i * sb]; return true;
    case FL_DIV: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] / b[i * sb]; return true;
    default: return false;
  }
}

static void binary_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  bin_ctx *c = vc;
  if (c->a == FL_F32 && c->b == FL_F32 && c->out == FL_F32 && binary_f32_fast(c->op, n, p, s)) return;
  if (fl_dtype_is_float(c->ct)) {
    for (int64_t i = 0; i < n; i++)
      fl_st(p[0] + i * s[0], c->out,
            binary_f(c->op, ld_as(p[1] + i * s[1], c->a, c->ct), ld_as(p[2] + i * s[2], c->b, c->ct)));
  } else {
    for (int64_t i = 0; i < n; i++)
      fl_sti(p[0] + i * s[0], c->out,
             binary_i(c->op, ldi_as(p[1] + i * s[1], c->a, c->ct), ldi_as(p[2] + i * s[2], c->b, c->ct)));
  }
}

fl_status fl_cpu_binary(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  bin_ctx c = {op, out->dtype, a->dtype, b->dtype, fl_binary_compute(op, out, a, b), 0, false};
  fl_tensor *ts[3] = {out, (fl_tensor *)a, (fl_tensor *)b};
  fl_cpu_iterate(3, ts, binary_loop, &c);
  return FL_OK;
}

static void scalar_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  bin_ctx *c = vc;
  if (fl_dtype_is_float(c->ct)) {
    for (int64_t i = 0; i < n; i++) {
      double x = ld_as(p[1] + i * s[1], c->a, c->ct);
      fl_st(p[0] + i * s[0], c->out, c->rev ? binary_f(c->op, c->s, x) : binary_f(c->op, x, c->s));
    }
  } else {
    int64_t y = (int64_t)c->s;
    for (int64_t i = 0; i < n; i++) {
      int64_t x = ldi_as(p[1] + i * s[1], c->a, c->ct);
      fl_sti(p[0] + i * s[0], c->out, c->rev ? binary_i(c->op, y, x) : binary_i(c->op, x, y));
    }
  }
}

fl_status fl_cpu_binary_scalar(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                               fl_dtype compute) {
  char buf[8]; /* s rounded once to the compute dtype */
  fl_st(buf, compute, s);
  bin_ctx c = {op, out->dtype, a->dtype, a->dtype, compute, fl_ld(buf, compute), reversed};
  fl_tensor *ts[2] = {out, (fl_tensor *)a};
  fl_cpu_iterate(2, ts, scalar_loop, &c);
  return FL_OK;
}

static void where_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  size_t es = *(size_t *)vc;
  for (int64_t i = 0; i < n; i++)
    memcpy(p[0] + i * s[0], *(p[1] + i * s[1]) ? p[2] + i * s[2] : p[3] + i * s[3], es);
}

fl_status fl_cpu_where(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b) {
  size_t es = fl_dtype_size(out->dtype);
  fl_tensor *ts[4] = {out, (fl_tensor *)cond, (fl_tensor *)a, (fl_tensor *)b};
  fl_cpu_iterate(4, ts, where_loop, &es);
  return FL_OK;
}

typedef struct { fl_dtype out, in; } cast_ctx;

static void copy_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  cast_ctx *c = vc;
  size_t es = fl_dtype_size(c->out);
  if (c->out == c->in) {
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) memcpy(p[0], p[1], (size_t)n * es);
    else for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * s[0], p[1] + i * s[1], es);
  } else if (fl_dtype_is_float(c->in) || fl_dtype_is_float(c->out)) {
    for (int64_t i = 0; i < n; i++) fl_st(p[0] + i * s[0], c->out, fl_ld(p[1] + i * s[1], c->in));
  } else {
    for (int64_t i = 0; i < n; i++) fl_sti(p[0] + i * s[0], c->out, fl_ldi(p[1] + i * s[1], c->in));
  }
}

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src) {
  cast_ctx c = {dst->dtype, src->dtype};
  fl_tensor *ts[2] = {dst, (fl_tensor *)src};
  fl_cpu_iterate(2, ts, copy_loop, &c);
  return FL_OK;
}

static void fill_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const char *v = vc; /* one element already converted */
  size_t es = (size_t)v[16];
  for (int64_t i = 0; i < n; i++) memcpy(p[0] + i * s[0], v, es);
}

fl_status fl_cpu_fill(fl_tensor *out, double value) {
  char v[17] = {0};
  fl_st(v, out->dtype, value);
  v[16] = (char)fl_dtype_size(out->dtype);
  fl_cpu_iterate(1, &out, fill_loop, v);
  return FL_OK;
}

fl_status fl_cpu_arange(fl_tensor *out, double start, double step) {
  char *p = fl_data_ptr(out);
  size_t es = fl_dtype_size(out->dtype);
  int64_t n = fl_numel(out);
  for (int64_t i = 0; i < n; i++) fl_st(p + i * es, out->dtype, start + (double)i * step);
  return FL_OK;
}
