/* The CUDA backend against the CPU backend, through the public API.
 *
 * Every op runs on CPU inputs and on CUDA copies of the same inputs; the two
 * results are compared (max abs / rel error, NaN equal to NaN). Inputs include
 * non-contiguous (transposed, sliced, flipped) and broadcast (expanded)
 * tensors. Random ops must match for the same seed, and an out-of-range index
 * on CUDA must surface as FL_EINDEX at the next synchronising call.
 * Prints one line per check; exits non-zero if any check fails, and 0 with a
 * note when no CUDA device is available. */
#include "flame.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fl_device CUDA = {FL_CUDA, 0};
static int n_ok, n_fail;

static const fl_dtype FLOATS[] = {FL_F32, FL_F64, FL_F16, FL_BF16};
static const fl_dtype ALL[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64, FL_BOOL};

static void fail(const char *name, const char *what) {
  printf("FAIL %-48s %s\n", name, what);
  n_fail++;
}

/* Relative tolerance of a dtype's rounding (a few ulps). */
static double tol_of(fl_dtype d) {
  switch (d) {
    case FL_F32: return 2e-5;
    case FL_F64: return 1e-12;
    case FL_F16: return 4e-3;
    case FL_BF16: return 3e-2;
    default: return 0;
  }
}

/* ---- inputs ---- */

static uint64_t lcg_state = 88172645463325252ull;
static double urand(void) { /* xorshift: reproducible, no dependence on libc rand */
  lcg_state ^= lcg_state << 13;
  lcg_state ^= lcg_state >> 7;
  lcg_state ^= lcg_state << 17;
  return (double)(lcg_state >> 11) / 9007199254740992.0;
}

static fl_opts cpu_opts(fl_dtype dt) {
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  o.device = FL_CPU_DEVICE;
  o.requires_grad = false;
  return o;
}

/* A CPU tensor of random values in [lo, hi): integers for integer dtypes, 0/1 for bool. */
static fl_tensor *make_input(fl_dtype dt, int nd, const int64_t *shape, double lo, double hi) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= shape[i];
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    double r = lo + (hi - lo) * urand();
    if (dt == FL_BOOL) r = r > (lo + hi) / 2;
    else if (!fl_dtype_is_float(dt)) r = floor(r);
    v[i] = r;
  }
  fl_tensor *t = NULL;
  fl_status s = fl_from_doubles(v, nd, shape, cpu_opts(dt), &t);
  free(v);
  if (s != FL_OK) {
    printf("FAIL making an input: %s\n", fl_last_error());
    n_fail++;
    return NULL;
  }
  return t;
}

/* An index tensor with values in [0, hi). */
static fl_tensor *make_index(int nd, const int64_t *shape, int64_t hi) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= shape[i];
  int64_t *v = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = (int64_t)(urand() * (double)hi) % hi;
  fl_tensor *t = NULL;
  if (fl_from_host(v, nd, shape, cpu_opts(FL_I64), &t) != FL_OK) {
    printf("FAIL making an index: %s\n", fl_last_error());
    n_fail++;
  }
  free(v);
  return t;
}

/* ---- comparison ---- */

/* cpu vs gpu element by element: |g - c| <= atol + rtol * |c|. */
static void compare(const char *name, const fl_tensor *c, const fl_tensor *g, double rtol, double atol) {
  char buf[160];
  if (fl_device_of(g).type != FL_CUDA) {
    fail(name, "the CUDA result is not on a CUDA device");
    return;
  }
  if (fl_ndim(c) != fl_ndim(g) || fl_numel(c) != fl_numel(g) || fl_dtype_of(c) != fl_dtype_of(g)) {
    char sc[64], sg[64];
    snprintf(buf, sizeof buf, "result differs in shape/dtype: cpu %s%s, cuda %s%s", fl_dtype_name(fl_dtype_of(c)),
             fl_shape_str(c, sc, sizeof sc), fl_dtype_name(fl_dtype_of(g)), fl_shape_str(g, sg, sizeof sg));
    fail(name, buf);
    return;
  }
  int64_t n = fl_numel(c);
  double *a = malloc(sizeof(double) * (size_t)(n ? n : 1)), *b = malloc(sizeof(double) * (size_t)(n ? n : 1));
  fl_status sa = fl_to_doubles(c, a), sb = fl_to_doubles(g, b);
  if (sa != FL_OK || sb != FL_OK) {
    snprintf(buf, sizeof buf, "reading results: %s", fl_last_error());
    fail(name, buf);
    free(a);
    free(b);
    return;
  }
  double max_abs = 0, max_rel = 0;
  int64_t bad = -1;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (isinf(a[i]) && a[i] == b[i]) continue;
    double e = fabs(a[i] - b[i]);
    if (isnan(e)) e = INFINITY;
    if (e > max_abs) max_abs = e;
    if (fabs(a[i]) > 1e-3 && e / fabs(a[i]) > max_rel) max_rel = e / fabs(a[i]); /* relative where meaningful */
    if (bad < 0 && !(e <= atol + rtol * fabs(a[i]))) bad = i;
  }
  if (bad >= 0) {
    snprintf(buf, sizeof buf, "at %lld: cpu %.9g cuda %.9g (max_abs=%.3g max_rel=%.3g)", (long long)bad, a[bad],
             b[bad], max_abs, max_rel);
    fail(name, buf);
  } else {
    printf("ok   %-48s max_abs=%.3g max_rel=%.3g n=%lld\n", name, max_abs, max_rel, (long long)n);
    n_ok++;
  }
  free(a);
  free(b);
}

/* ---- running one op on both devices ---- */

typedef fl_status (*op_fn)(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out);

/* Runs fn on the CPU inputs and on CUDA copies of them, then compares. */
static void check(const char *name, op_fn fn, const void *ud, int n, fl_tensor *const *cpu_in, double rtol,
                  double atol) {
#define MAX_INPUTS 8
  fl_tensor *gpu_in[MAX_INPUTS] = {NULL}, *rc = NULL, *rg = NULL;
  char buf[160];
  if (n > MAX_INPUTS) n = MAX_INPUTS;
  for (int i = 0; i < n; i++) {
    if (!cpu_in[i]) {
      fail(name, "missing input");
      goto done;
    }
    if (fl_to_device(cpu_in[i], CUDA, &gpu_in[i]) != FL_OK) {
      snprintf(buf, sizeof buf, "copy to cuda: %s", fl_last_error());
      fail(name, buf);
      goto done;
    }
  }
  if (fn(cpu_in, ud, FL_CPU_DEVICE, &rc) != FL_OK) {
    snprintf(buf, sizeof buf, "cpu: %s", fl_last_error());
    fail(name, buf);
    goto done;
  }
  if (fn(gpu_in, ud, CUDA, &rg) != FL_OK) {
    snprintf(buf, sizeof buf, "cuda: %s", fl_last_error());
    fail(name, buf);
    goto done;
  }
  compare(name, rc, rg, rtol, atol);
done:
  for (int i = 0; i < n; i++) fl_release(gpu_in[i]);
  fl_release(rc);
  fl_release(rg);
}

/* Transposed view of the last two dims (non-contiguous input). */
static fl_status transposed(const fl_tensor *t, fl_tensor **out) {
  int nd = fl_ndim(t);
  return fl_transpose(t, nd - 2, nd - 1, out);
}

/* ---- copy / cast / fill / arange ---- */

static fl_status op_cast(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_cast(in[0], *(const fl_dtype *)ud, out);
}

static fl_status op_cast_t(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  fl_tensor *t;
  fl_status s = transposed(in[0], &t);
  if (s != FL_OK) return s;
  s = op_cast(&t, ud, dev, out);
  fl_release(t);
  return s;
}

static fl_status op_contiguous_flip(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)ud, (void)dev;
  fl_tensor *t, *n;
  int dims[1] = {1};
  fl_status s = transposed(in[0], &t); /* a transposed view ... */
  if (s != FL_OK) return s;
  s = fl_narrow(t, 0, 1, fl_shape(t)[0] - 1, &n); /* ... with an offset ... */
  fl_release(t);
  if (s != FL_OK) return s;
  s = fl_flip(n, 1, dims, out); /* ... flipped (negative stride inside) */
  fl_release(n);
  return s;
}

static fl_status op_copy_broadcast(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  const fl_dtype *dt = ud;
  int64_t shape[3] = {4, 5, 6};
  fl_opts o = cpu_opts(*dt);
  o.device = dev;
  fl_status s = fl_zeros(3, shape, o, out);
  if (s == FL_OK) s = fl_copy_(*out, in[0]); /* [5, 1] -> [4, 5, 6]: stride-0 source, cast */
  return s;
}

static fl_status op_fill_view(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  fl_tensor *t;
  fl_status s = fl_clone(in[0], out);
  if (s != FL_OK) return s;
  if ((s = transposed(*out, &t)) != FL_OK) return s;
  fl_tensor *n;
  s = fl_narrow(t, 1, 1, 2, &n);
  fl_release(t);
  if (s == FL_OK) s = fl_fill_(n, *(const double *)ud);
  fl_release(n);
  return s;
}

static fl_status op_arange(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)in;
  fl_opts o = cpu_opts(*(const fl_dtype *)ud);
  o.device = dev;
  return fl_arange(-3, 7, 0.25, o, out);
}

static void test_copies(void) {
  char name[96];
  int64_t s2[2] = {37, 29}, s21[2] = {5, 1};
  for (size_t i = 0; i < sizeof ALL / sizeof *ALL; i++) {
    fl_tensor *x = make_input(ALL[i], 2, s2, -4, 4);
    for (size_t j = 0; j < sizeof ALL / sizeof *ALL; j++) {
      snprintf(name, sizeof name, "cast %s->%s", fl_dtype_name(ALL[i]), fl_dtype_name(ALL[j]));
      check(name, op_cast, &ALL[j], 1, &x, 0, 0);
      snprintf(name, sizeof name, "cast %s->%s (transposed)", fl_dtype_name(ALL[i]), fl_dtype_name(ALL[j]));
      check(name, op_cast_t, &ALL[j], 1, &x, 0, 0);
    }
    snprintf(name, sizeof name, "contiguous %s (transposed, sliced, flipped)", fl_dtype_name(ALL[i]));
    check(name, op_contiguous_flip, NULL, 1, &x, 0, 0);
    fl_tensor *b = make_input(ALL[i], 2, s21, -4, 4);
    snprintf(name, sizeof name, "copy_ broadcast %s->f32", fl_dtype_name(ALL[i]));
    check(name, op_copy_broadcast, &FLOATS[0], 1, &b, 0, 0);
    double v = 2.5;
    snprintf(name, sizeof name, "fill_ strided view %s", fl_dtype_name(ALL[i]));
    check(name, op_fill_view, &v, 1, &x, 0, 0);
    if (ALL[i] != FL_BOOL) {
      snprintf(name, sizeof name, "arange %s", fl_dtype_name(ALL[i]));
      check(name, op_arange, &ALL[i], 0, NULL, 0, 0);
    }
    fl_release(x);
    fl_release(b);
  }
}

/* ---- random: same seed, same numbers ---- */

typedef struct {
  int kind; /* 0 rand, 1 randn, 2 randint, 3 uniform_, 4 normal_ */
  fl_dtype dt;
} rand_case;

static fl_status op_random(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)in;
  const rand_case *c = ud;
  int64_t shape[2] = {33, 31}; /* odd count: the last Philox block is partial */
  fl_opts o = cpu_opts(c->dt);
  o.device = dev;
  fl_manual_seed(1234);
  switch (c->kind) {
    case 0: return fl_rand(2, shape, o, out);
    case 1: return fl_randn(2, shape, o, out);
    case 2: return fl_randint(-7, 19, 2, shape, o, out);
    default: {
      fl_status s = fl_empty(2, shape, o, out);
      if (s != FL_OK) return s;
      return c->kind == 3 ? fl_uniform_(*out, -2, 3) : fl_normal_(*out, 1, 0.5);
    }
  }
}

static void test_random(void) {
  static const char *kinds[] = {"rand", "randn", "randint", "uniform_", "normal_"};
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I64, FL_I32};
  char name[96];
  for (int k = 0; k < 5; k++)
    for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
      if (k != 2 && !fl_dtype_is_float(dts[i])) continue;
      rand_case c = {k, dts[i]};
      snprintf(name, sizeof name, "%s %s (same seed)", kinds[k], fl_dtype_name(dts[i]));
      /* uniform and integer draws: bit-identical. normal uses log/sin/cos, whose
       * device and libm versions may differ in the last f32 ulp */
      bool normal = k == 1 || k == 4;
      double t = !normal ? 0 : (dts[i] == FL_F32 || dts[i] == FL_F64) ? 1e-6 : tol_of(dts[i]);
      check(name, op_random, &c, 0, NULL, t, t);
    }
}

/* ---- unary / binary / where ---- */

typedef struct {
  int op;
  double p0, p1;
  bool transpose;
} ew_case;

static fl_status maybe_t(fl_tensor *t, bool tr, fl_tensor **out) {
  if (tr) return transposed(t, out);
  *out = fl_retain(t);
  return FL_OK;
}

static fl_status op_unary(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const ew_case *c = ud;
  fl_tensor *x;
  fl_status s = maybe_t(in[0], c->transpose, &x);
  if (s != FL_OK) return s;
  s = c->op == FL_CLAMP ? fl_clamp(x, c->p0, c->p1, out) : fl_unary((fl_unary_op)c->op, x, out);
  fl_release(x);
  return s;
}

static fl_status op_binary(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const ew_case *c = ud;
  fl_tensor *a;
  fl_status s = maybe_t(in[0], c->transpose, &a);
  if (s != FL_OK) return s;
  s = fl_binary((fl_binary_op)c->op, a, in[1], out); /* in[1] broadcasts over a's rows */
  fl_release(a);
  return s;
}

static fl_status op_binary_scalar(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const ew_case *c = ud;
  return fl_binary_scalar((fl_binary_op)c->op, in[0], c->p0, c->p1 != 0, out);
}

static fl_status op_where(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)ud, (void)dev;
  fl_tensor *cond;
  fl_status s = fl_binary_scalar(FL_GT, in[0], 0.0, false, &cond);
  if (s != FL_OK) return s;
  s = fl_where(cond, in[1], in[2], out); /* cond [6, 7], a [6, 7], b [7]: broadcast */
  fl_release(cond);
  return s;
}

static bool unary_ok_for(int op, fl_dtype dt) {
  if (op == FL_LOGICAL_NOT) return false; /* bool inputs only: checked below */
  if (fl_dtype_is_float(dt)) return true;
  return op == FL_NEG || op == FL_ABS || op == FL_SIGN || op == FL_RELU || op == FL_CLAMP || op == FL_LOGICAL_NOT;
}

static void test_elementwise(void) {
  char name[96];
  int64_t s2[2] = {45, 38}, srow[1] = {38};
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64};
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    fl_tensor *x = make_input(dt, 2, s2, -3, 3), *xp = make_input(dt, 2, s2, 0.1, 3);
    for (int op = 0; op < FL_NUNARY; op++) {
      if (!unary_ok_for(op, dt)) continue;
      bool pos = op == FL_LOG || op == FL_SQRT || op == FL_RSQRT;
      for (int tr = 0; tr < 2; tr++) {
        ew_case c = {op, -1.5, tr ? NAN : 2.0, tr != 0};
        snprintf(name, sizeof name, "unary %s %s%s", fl_unary_name((fl_unary_op)op), fl_dtype_name(dt),
                 tr ? " (transposed)" : "");
        double t = op == FL_LOGICAL_NOT ? 0 : tol_of(dt);
        check(name, op_unary, &c, 1, pos ? &xp : &x, t, t);
      }
    }
    fl_tensor *y = make_input(dt, 2, s2, -3, 3), *yt = make_input(dt, 2, (int64_t[]){38, 45}, -3, 3);
    fl_tensor *row = make_input(dt, 1, srow, 1, 3), *rowp = make_input(dt, 1, srow, 0, 3);
    for (int op = 0; op < FL_NBINARY; op++) {
      if (!fl_dtype_is_float(dt) && (op == FL_DIV || op >= FL_RELU_BACKWARD)) continue;
      for (int tr = 0; tr < 2; tr++) {
        ew_case c = {op, 0, 0, tr != 0};
        fl_tensor *in[2] = {tr ? yt : y, op == FL_POW ? rowp : row};
        if (op == FL_POW) in[0] = tr ? yt : xp; /* positive bases */
        if (op == FL_POW && tr) continue;
        snprintf(name, sizeof name, "binary %s %s broadcast%s", fl_binary_name((fl_binary_op)op), fl_dtype_name(dt),
                 tr ? " transposed" : "");
        double t = op >= FL_EQ && op <= FL_OR ? 0 : tol_of(dt);
        check(name, op_binary, &c, 2, in, t, t);
      }
    }
    ew_case sc = {FL_SUB, 1.5, 1, false};
    snprintf(name, sizeof name, "binary_scalar 1.5 - x %s", fl_dtype_name(dt));
    check(name, op_binary_scalar, &sc, 1, &x, tol_of(dt), tol_of(dt));
    fl_tensor *w[3] = {make_input(FL_F32, 2, (int64_t[]){6, 7}, -1, 1), make_input(dt, 2, (int64_t[]){6, 7}, -3, 3),
                       make_input(dt, 1, (int64_t[]){7}, -3, 3)};
    snprintf(name, sizeof name, "where %s broadcast", fl_dtype_name(dt));
    check(name, op_where, NULL, 3, w, 0, 0);
    for (int k = 0; k < 3; k++) fl_release(w[k]);
    fl_release(x), fl_release(xp), fl_release(y), fl_release(yt), fl_release(row), fl_release(rowp);
  }
  /* comparisons and logic on bool operands */
  fl_tensor *b[2] = {make_input(FL_BOOL, 2, s2, 0, 1), make_input(FL_BOOL, 1, srow, 0, 1)};
  const int bops[] = {FL_EQ, FL_NE, FL_AND, FL_OR};
  for (int k = 0; k < 4; k++) {
    ew_case c = {bops[k], 0, 0, false};
    snprintf(name, sizeof name, "binary %s bool", fl_binary_name((fl_binary_op)bops[k]));
    check(name, op_binary, &c, 2, b, 0, 0);
  }
  ew_case ln = {FL_LOGICAL_NOT, 0, 0, false};
  check("unary logical_not bool", op_unary, &ln, 1, b, 0, 0);
  fl_release(b[0]), fl_release(b[1]);
}

/* ---- reductions ---- */

typedef struct {
  int op; /* fl_reduce_op, or 100+: std, amax via max_dim values etc. (see below) */
  uint32_t dims;
  int dim;
  bool keepdim, transpose;
  double corr;
} red_case;

enum { R_SUM, R_MEAN, R_PROD, R_VAR, R_STD, R_AMAX, R_AMIN, R_MAXV, R_MAXI, R_MINV, R_MINI, R_ARGMAX, R_ARGMIN, R_NORM,
       R_N };
static const char *red_names[R_N] = {"sum", "mean", "prod", "var", "std", "amax", "amin", "max_dim.values",
                                     "max_dim.indices", "min_dim.values", "min_dim.indices", "argmax", "argmin",
                                     "norm2"};

static fl_status op_reduce(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const red_case *c = ud;
  fl_tensor *x, *other = NULL;
  fl_status s = maybe_t(in[0], c->transpose, &x);
  if (s != FL_OK) return s;
  switch (c->op) {
    case R_SUM: s = fl_sum(x, c->dims, c->keepdim, out); break;
    case R_MEAN: s = fl_mean(x, c->dims, c->keepdim, out); break;
    case R_PROD: s = fl_prod(x, c->dims, c->keepdim, out); break;
    case R_VAR: s = fl_var(x, c->dims, c->corr, c->keepdim, out); break;
    case R_STD: s = fl_std(x, c->dims, c->corr, c->keepdim, out); break;
    case R_AMAX: s = fl_amax(x, c->dims, c->keepdim, out); break;
    case R_AMIN: s = fl_amin(x, c->dims, c->keepdim, out); break;
    case R_MAXV: s = fl_max_dim(x, c->dim, c->keepdim, out, &other); break;
    case R_MAXI: s = fl_max_dim(x, c->dim, c->keepdim, &other, out); break;
    case R_MINV: s = fl_min_dim(x, c->dim, c->keepdim, out, &other); break;
    case R_MINI: s = fl_min_dim(x, c->dim, c->keepdim, &other, out); break;
    case R_ARGMAX: s = fl_argmax(x, c->dim, c->keepdim, out); break;
    case R_ARGMIN: s = fl_argmin(x, c->dim, c->keepdim, out); break;
    default: s = fl_norm(x, 2.0, c->dims, c->keepdim, out); break;
  }
  fl_release(other);
  fl_release(x);
  return s;
}

static fl_status op_cumsum(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const red_case *c = ud;
  fl_tensor *x;
  fl_status s = maybe_t(in[0], c->transpose, &x);
  if (s == FL_OK) s = fl_cumsum(x, c->dim, out);
  fl_release(x);
  return s;
}

static fl_status op_softmax(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const red_case *c = ud;
  return c->keepdim ? fl_log_softmax(in[0], c->dim, out) : fl_softmax(in[0], c->dim, out);
}

static void test_reductions(void) {
  char name[128];
  int64_t s3[3] = {12, 9, 70};
  const uint32_t masks[] = {0, 1, 2, 4, 3, 5, 6};
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64};
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    bool fl = fl_dtype_is_float(dt);
    fl_tensor *x = make_input(dt, 3, s3, -3, 3), *xp = make_input(dt, 3, s3, fl ? 0.95 : -1, fl ? 1.05 : 2);
    for (int op = 0; op < R_N; op++) {
      if (!fl && (op == R_MEAN || op == R_VAR || op == R_STD || op == R_NORM)) continue;
      bool by_dim = op >= R_MAXV && op <= R_ARGMIN;
      int nvar = by_dim ? 4 : (int)(sizeof masks / sizeof *masks);
      for (int v = 0; v < nvar; v++)
        for (int tr = 0; tr < 2; tr++) {
          red_case c = {op, by_dim ? 0 : masks[v], by_dim ? (v == 3 ? -1 : v) : 0, (v + tr) % 2 == 0, tr != 0,
                        v % 2 ? 0.0 : 1.0};
          if (by_dim && v == 3 && op < R_ARGMAX) continue; /* dim -1 only for argmax/argmin */
          if (by_dim) snprintf(name, sizeof name, "%s %s dim %d%s", red_names[op], fl_dtype_name(dt), c.dim,
                               tr ? " (transposed)" : "");
          else snprintf(name, sizeof name, "%s %s dims 0x%x%s%s", red_names[op], fl_dtype_name(dt), c.dims,
                        c.keepdim ? " keepdim" : "", tr ? " (transposed)" : "");
          /* accumulation order differs (tree vs sequential): scale by the row length */
          double t = fl ? tol_of(dt) * (op == R_PROD || op == R_VAR || op == R_STD ? 20 : 4) : 0;
          double a = fl ? (dt == FL_F64 ? 1e-10 : dt == FL_F32 ? 1e-4 : tol_of(dt) * 20) : 0;
          if (op == R_AMAX || op == R_AMIN || op == R_MAXV || op == R_MINV || by_dim) t = a = 0;
          check(name, op_reduce, &c, 1, op == R_PROD ? &xp : &x, t, a);
        }
    }
    for (int d = 0; d < 3; d++)
      for (int tr = 0; tr < 2; tr++) {
        red_case c = {0, 0, d, false, tr != 0, 0};
        snprintf(name, sizeof name, "cumsum %s dim %d%s", fl_dtype_name(dt), d, tr ? " (transposed)" : "");
        check(name, op_cumsum, &c, 1, &x, fl ? tol_of(dt) * 4 : 0, fl ? (dt == FL_F64 ? 1e-10 : 1e-3) : 0);
      }
    if (fl) {
      for (int d = 0; d < 3; d++)
        for (int lg = 0; lg < 2; lg++) {
          red_case c = {0, 0, d, lg != 0, false, 0};
          snprintf(name, sizeof name, "%s %s dim %d", lg ? "log_softmax" : "softmax", fl_dtype_name(dt), d);
          check(name, op_softmax, &c, 1, &x, tol_of(dt) * 2, tol_of(dt) * 0.1);
        }
    }
    fl_release(x), fl_release(xp);
  }
  /* a large full reduction (CUB on CUDA) and large rows, against the CPU */
  int64_t big[1] = {1 << 22}, rows[2] = {64, 8192};
  fl_tensor *b = make_input(FL_F32, 1, big, -1, 1), *r = make_input(FL_F32, 2, rows, -1, 1);
  red_case full = {R_SUM, 0, 0, false, false, 0}, mean1 = {R_MEAN, 2, 0, true, false, 0};
  red_case amax = {R_ARGMAX, 0, -1, false, false, 0};
  check("sum f32 [4M] full", op_reduce, &full, 1, &b, 1e-4, 1e-2);
  check("argmax f32 [4M] flat", op_reduce, &amax, 1, &b, 0, 0);
  check("mean f32 [64, 8192] dim 1", op_reduce, &mean1, 1, &r, 1e-4, 1e-5);
  fl_release(b), fl_release(r);
}

/* ---- matmul ---- */

typedef struct {
  int variant; /* 0 matmul broadcast batch, 1 a transposed, 2 b transposed, 3 bmm, 4 mm, 5 matrix-vector */
} mm_case;

static fl_status op_matmul(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const mm_case *c = ud;
  fl_tensor *a = NULL, *b = NULL;
  fl_status s;
  switch (c->variant) {
    case 1:
      if ((s = transposed(in[2], &a)) != FL_OK) return s; /* [2,3,K,M] -> [2,3,M,K] */
      s = fl_matmul(a, in[1], out);
      break;
    case 2:
      if ((s = transposed(in[3], &b)) != FL_OK) return s; /* [N,K] -> [K,N] */
      s = fl_matmul(in[0], b, out);
      break;
    case 3: {
      int64_t shape[3] = {6, fl_shape(in[0])[2], fl_shape(in[0])[3]};
      if ((s = fl_reshape(in[0], 3, shape, &a)) != FL_OK) return s;
      int64_t bs[3] = {6, fl_shape(in[4])[1], fl_shape(in[4])[2]};
      if ((s = fl_expand(in[4], 3, bs, &b)) != FL_OK) break;
      s = fl_bmm(a, b, out);
      break;
    }
    case 4:
      if ((s = fl_select(in[0], 0, 1, &b)) != FL_OK) return s;
      if ((s = fl_select(b, 0, 2, &a)) != FL_OK) break;
      s = fl_mm(a, in[1], out);
      break;
    default: s = fl_matmul(in[0], in[1], out); break; /* [2,3,M,K] @ [K,N] */
  }
  fl_release(a);
  fl_release(b);
  return s;
}

static void test_matmul(void) {
  char name[96];
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16};
  int64_t M = 67, K = 45, N = 38;
  fl_set_allow_tf32(false);
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    fl_tensor *in[5] = {make_input(dt, 4, (int64_t[]){2, 3, M, K}, -1, 1), make_input(dt, 2, (int64_t[]){K, N}, -1, 1),
                        make_input(dt, 4, (int64_t[]){2, 3, K, M}, -1, 1), make_input(dt, 2, (int64_t[]){N, K}, -1, 1),
                        make_input(dt, 3, (int64_t[]){1, K, N}, -1, 1)};
    static const char *vn[] = {"matmul broadcast", "matmul a^T", "matmul b^T", "bmm (expanded b)", "mm"};
    for (int v = 0; v < 5; v++) {
      mm_case c = {v};
      snprintf(name, sizeof name, "%s %s", vn[v], fl_dtype_name(dt));
      /* K-term sums: half-precision outputs round once; f32 sums in a different order */
      double t = dt == FL_F32 ? 1e-4 : dt == FL_F64 ? 1e-11 : tol_of(dt) * 2;
      check(name, op_matmul, &c, 5, in, t, t);
    }
    for (int k = 0; k < 5; k++) fl_release(in[k]);
  }
}

/* ---- indexing ---- */

typedef struct {
  int dim;
  double alpha;
} idx_case;

static fl_status op_index_select(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_index_select(in[0], ((const idx_case *)ud)->dim, in[1], out);
}
static fl_status op_index_add(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const idx_case *c = ud;
  fl_status s = fl_clone(in[0], out);
  return s == FL_OK ? fl_index_add_(*out, c->dim, in[1], in[2], c->alpha) : s;
}
static fl_status op_gather(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_gather(in[0], ((const idx_case *)ud)->dim, in[1], out);
}
static fl_status op_scatter_add(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_scatter_add(in[0], ((const idx_case *)ud)->dim, in[1], in[2], out);
}

static void test_indexing(void) {
  char name[96];
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64};
  int64_t xs[3] = {10, 7, 5};
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    fl_tensor *x = make_input(dt, 3, xs, -3, 3);
    for (int dim = 0; dim < 3; dim++) {
      int64_t n = 13, len = xs[dim];
      idx_case c = {dim, fl_dtype_is_float(dt) ? 0.5 : 1};
      fl_tensor *idx = make_index(1, &n, len);
      fl_tensor *in[2] = {x, idx};
      snprintf(name, sizeof name, "index_select %s dim %d", fl_dtype_name(dt), dim);
      check(name, op_index_select, &c, 2, in, 0, 0);
      int64_t ss[3] = {xs[0], xs[1], xs[2]};
      ss[dim] = n;
      fl_tensor *src = make_input(dt, 3, ss, -3, 3);
      fl_tensor *in3[3] = {x, idx, src};
      snprintf(name, sizeof name, "index_add_ %s dim %d (repeated indices)", fl_dtype_name(dt), dim);
      /* atomics: repeated indices add in any order */
      check(name, op_index_add, &c, 3, in3, tol_of(dt) * 4, tol_of(dt) * 8);
      int64_t gs[3] = {xs[0] - 1, xs[1] - 2, xs[2] - 1};
      fl_tensor *gi = make_index(3, gs, len);
      fl_tensor *gin[2] = {x, gi};
      snprintf(name, sizeof name, "gather %s dim %d", fl_dtype_name(dt), dim);
      check(name, op_gather, &c, 2, gin, 0, 0);
      fl_tensor *gsrc = make_input(dt, 3, gs, -3, 3);
      fl_tensor *sin3[3] = {x, gi, gsrc};
      snprintf(name, sizeof name, "scatter_add %s dim %d", fl_dtype_name(dt), dim);
      check(name, op_scatter_add, &c, 3, sin3, tol_of(dt) * 4, tol_of(dt) * 8);
      fl_release(idx), fl_release(src), fl_release(gi), fl_release(gsrc);
    }
    fl_release(x);
  }
}

/* An out-of-range index on CUDA is found by the kernel and reported by the
 * next synchronising call (the op itself does not wait for the device). */
static void test_index_errors(void) {
  int64_t xs[2] = {10, 4}, n = 3;
  int64_t bad[3] = {1, 10, 2};
  fl_opts o = cpu_opts(FL_I64);
  o.device = CUDA;
  fl_tensor *xc = make_input(FL_F32, 2, xs, -1, 1), *x = NULL, *idx = NULL, *out = NULL;
  fl_status s;
  if (!xc || fl_to_device(xc, CUDA, &x) != FL_OK || fl_from_host(bad, 1, &n, o, &idx) != FL_OK) {
    fail("index error setup", fl_last_error());
    goto done;
  }
  if ((s = fl_synchronize(CUDA)) != FL_OK) fail("synchronize before the bad index", fl_last_error());
  s = fl_index_select(x, 0, idx, &out);
  if (s == FL_OK) {
    s = fl_synchronize(CUDA);
    if (s == FL_EINDEX && strstr(fl_last_error(), "index_select"))
      printf("ok   %-48s %s\n", "index_select out of range -> FL_EINDEX at sync", fl_last_error()), n_ok++;
    else fail("index_select out of range -> FL_EINDEX at sync", s == FL_OK ? "synchronize returned ok" : fl_last_error());
    if (fl_synchronize(CUDA) == FL_OK) printf("ok   %-48s\n", "error flag cleared after the report"), n_ok++;
    else fail("error flag cleared after the report", fl_last_error());
  } else if (s == FL_EINDEX) { /* a front-end may also check indices itself */
    printf("ok   %-48s %s\n", "index_select out of range -> FL_EINDEX (front-end)", fl_last_error()), n_ok++;
  } else {
    fail("index_select out of range", fl_last_error());
  }
  fl_release(out);
  out = NULL;
  /* the same through fl_to_host, the other synchronising path */
  s = fl_index_select(x, 0, idx, &out);
  if (s == FL_OK) {
    float host[12];
    s = fl_to_host(out, host);
    if (s == FL_EINDEX) printf("ok   %-48s %s\n", "out of range -> FL_EINDEX at fl_to_host", fl_last_error()), n_ok++;
    else fail("out of range -> FL_EINDEX at fl_to_host", s == FL_OK ? "fl_to_host returned ok" : fl_last_error());
  }
done:
  fl_release(xc), fl_release(x), fl_release(idx), fl_release(out);
}

/* ---- sort: the same stable permutation on both devices ---- */

typedef struct { int dim; bool desc, indices; } sort_case;

static fl_status op_sort(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const sort_case *c = ud;
  fl_tensor *v = NULL, *i = NULL;
  fl_status s = fl_sort(in[0], c->dim, c->desc, &v, &i);
  if (s != FL_OK) return s;
  *out = c->indices ? i : v;
  fl_release(c->indices ? v : i);
  return FL_OK;
}

static fl_status op_randperm(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)in, (void)ud;
  fl_opts o = cpu_opts(FL_I64);
  o.device = dev;
  fl_manual_seed(99);
  return fl_randperm(5000, o, out);
}

/* Values on a coarse grid (many ties), with NaN in the float dtypes. */
static fl_tensor *tied_input(fl_dtype dt, int nd, const int64_t *shape) {
  fl_tensor *x = make_input(FL_F64, nd, shape, -4, 4), *r = NULL, *m = NULL, *h = NULL, *c = NULL;
  if (!x) return NULL;
  bool ok = fl_binary_scalar(FL_MUL, x, 2, false, &h) == FL_OK && fl_unary(FL_ROUND, h, &r) == FL_OK &&
            fl_binary_scalar(FL_GT, r, 6.5, false, &m) == FL_OK;
  fl_release(h), h = NULL;
  if (ok && fl_dtype_is_float(dt)) ok = fl_masked_fill(r, m, NAN, &h) == FL_OK;
  else if (ok) h = fl_retain(r);
  if (ok) ok = fl_cast(h, dt, &c) == FL_OK;
  if (!ok) printf("FAIL making a sort input: %s\n", fl_last_error()), n_fail++;
  fl_release(x), fl_release(r), fl_release(m), fl_release(h);
  return c;
}

static void test_sort(void) {
  static const int64_t shapes[][2] = {{7, 300}, {1, 5000}, {300, 3}}; /* segmented, one row (radix), short rows */
  char name[96];
  for (size_t k = 0; k < sizeof ALL / sizeof *ALL; k++) {
    for (int sh = 0; sh < 3; sh++) {
      fl_tensor *x = tied_input(ALL[k], 2, shapes[sh]);
      for (int dim = 0; dim < 2; dim++)
        for (int desc = 0; desc < 2; desc++)
          for (int ind = 0; ind < 2; ind++) {
            sort_case c = {dim, desc, ind};
            snprintf(name, sizeof name, "sort %s [%lld, %lld] dim %d%s %s", fl_dtype_name(ALL[k]),
                     (long long)shapes[sh][0], (long long)shapes[sh][1], dim, desc ? " desc" : "",
                     ind ? "indices" : "values");
            check(name, op_sort, &c, 1, &x, 0, 0);
          }
      fl_release(x);
    }
  }
  check("randperm(5000) for one seed", op_randperm, NULL, 0, NULL, 0, 0);
}

static void test_memory(void) {
  fl_memory_stats m;
  fl_status s = fl_memory_stats_get(CUDA, &m);
  if (s != FL_OK || m.num_allocs <= 0 || m.reserved < m.allocated || m.peak < m.allocated) {
    fail("memory stats", s != FL_OK ? fl_last_error() : "inconsistent numbers");
    return;
  }
  printf("ok   %-48s allocated=%lld reserved=%lld peak=%lld allocs=%lld frees=%lld hits=%lld ooms=%lld\n",
         "memory stats", (long long)m.allocated, (long long)m.reserved, (long long)m.peak, (long long)m.num_allocs,
         (long long)m.num_frees, (long long)m.num_cache_hits, (long long)m.num_ooms);
  n_ok++;
  fl_memory_stats e;
  if (fl_empty_cache(CUDA) != FL_OK || fl_memory_stats_get(CUDA, &e) != FL_OK || e.reserved != e.allocated)
    fail("empty_cache releases the cache", fl_last_error());
  else printf("ok   %-48s reserved=%lld\n", "empty_cache releases the cache", (long long)e.reserved), n_ok++;
}

/* ---- issue 6 backend contract: scalars by value, mixed dtypes, index base, GEMM flags ---- */

static fl_status op_scalar_any(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const ew_case *c = ud; /* op, the scalar, reversed */
  fl_tensor *a;
  fl_status s = maybe_t(in[0], c->transpose, &a);
  if (s != FL_OK) return s;
  s = fl_binary_scalar((fl_binary_op)c->op, a, c->p0, c->p1 != 0, out);
  fl_release(a);
  return s;
}

static void test_scalars(void) {
  char name[128];
  int64_t s2[2] = {45, 38};
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64, FL_BOOL};
  const double svals[] = {2, 1.5, -0.75}; /* an integer keeps an integer tensor's dtype; a fraction computes in f32 */
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    fl_tensor *x = make_input(dt, 2, s2, 0.25, 3);
    for (int op = 0; op <= FL_OR; op++)
      for (size_t k = 0; k < sizeof svals / sizeof *svals; k++)
        for (int rev = 0; rev < 2; rev++) {
          bool integer_result = !fl_dtype_is_float(dt) && svals[k] == floor(svals[k]);
          if (op == FL_POW && (rev || integer_result)) continue; /* integer powers: covered by the CPU specs */
          ew_case c = {op, svals[k], rev, k == 1};
          snprintf(name, sizeof name, "scalar %s %s %g%s%s", fl_binary_name((fl_binary_op)op), fl_dtype_name(dt),
                   svals[k], rev ? " reversed" : "", c.transpose ? " transposed" : "");
          double t = op >= FL_EQ ? 0 : tol_of(fl_dtype_is_float(dt) ? dt : FL_F32);
          check(name, op_scalar_any, &c, 1, &x, t, t);
        }
    fl_release(x);
  }
}

typedef struct {
  int op;
  bool transpose;
} mix_case;

static fl_status op_mixed(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const mix_case *c = ud;
  fl_tensor *a;
  fl_status s = maybe_t(in[0], c->transpose, &a);
  if (s != FL_OK) return s;
  s = fl_binary((fl_binary_op)c->op, a, in[1], out); /* in[1] [38] broadcasts over the rows */
  fl_release(a);
  return s;
}

static fl_status op_unary_convert(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_unary((fl_unary_op)*(const int *)ud, in[0], out);
}

static void test_mixed(void) {
  char name[128];
  int64_t s2[2] = {45, 38}, st[2] = {38, 45}, srow[1] = {38};
  const fl_dtype pairs[][2] = {{FL_BF16, FL_F32}, {FL_F32, FL_BF16}, {FL_F16, FL_BF16}, {FL_F16, FL_F32},
                               {FL_I32, FL_F32}, {FL_I64, FL_F64}, {FL_BOOL, FL_F32}, {FL_I32, FL_I64},
                               {FL_BOOL, FL_I32}, {FL_F64, FL_F16}};
  const int ops[] = {FL_ADD, FL_SUB, FL_MUL, FL_DIV, FL_MAXIMUM, FL_LT, FL_EQ, FL_AND, FL_OR};
  for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
    fl_dtype da = pairs[p][0], db = pairs[p][1];
    fl_tensor *a = make_input(da, 2, s2, -3, 3), *at = make_input(da, 2, st, -3, 3), *b = make_input(db, 1, srow, 1, 3);
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
      for (int tr = 0; tr < 2; tr++) {
        mix_case c = {ops[o], tr != 0};
        fl_tensor *in[2] = {tr ? at : a, b};
        snprintf(name, sizeof name, "mixed %s %s %s%s", fl_binary_name((fl_binary_op)ops[o]), fl_dtype_name(da),
                 fl_dtype_name(db), tr ? " transposed" : "");
        fl_dtype ct = fl_promote(da, db);
        double t = ops[o] >= FL_EQ ? 0 : tol_of(fl_dtype_is_float(ct) ? ct : FL_F32);
        check(name, op_mixed, &c, 2, in, t, t);
      }
    fl_release(a), fl_release(at), fl_release(b);
  }
  const fl_dtype ints[] = {FL_I32, FL_I64, FL_BOOL};
  const int uops[] = {FL_EXP, FL_SQRT, FL_TANH, FL_SIGMOID, FL_GELU};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
    fl_tensor *x = make_input(ints[i], 2, s2, 0, 5);
    for (size_t u = 0; u < sizeof uops / sizeof *uops; u++) {
      snprintf(name, sizeof name, "unary %s %s -> f32 (converted on load)", fl_unary_name((fl_unary_op)uops[u]),
               fl_dtype_name(ints[i]));
      check(name, op_unary_convert, &uops[u], 1, &x, tol_of(FL_F32), tol_of(FL_F32));
    }
    fl_release(x);
  }
}

/* Index ops with 1-based i32 and i64 indices: the index is the 0-based one + 1, cast. */
typedef struct {
  int kind; /* 0 index_select, 1 gather, 2 scatter_add, 3 index_add_, 4 argmax, 5 max_dim indices */
  int dim;
} base_case;

static fl_status op_index_base(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  const base_case *c = ud;
  fl_tensor *v = NULL;
  fl_status s;
  switch (c->kind) {
    case 0: return fl_index_select_ex(in[0], c->dim, in[1], 1, out);
    case 1: return fl_gather_ex(in[0], c->dim, in[1], 1, out);
    case 2: return fl_scatter_add_ex(in[0], c->dim, in[1], 1, in[2], out);
    case 3:
      s = fl_clone(in[0], out);
      return s == FL_OK ? fl_index_add_ex_(*out, c->dim, in[1], 1, in[2], 1.0) : s;
    case 4: return fl_argmax_ex(in[0], c->dim, false, 1, out);
    default:
      s = fl_max_dim_ex(in[0], c->dim, true, 1, &v, out);
      fl_release(v);
      return s;
  }
}

static fl_tensor *one_based(fl_tensor *idx0, fl_dtype dt) {
  fl_tensor *p = NULL, *r = NULL;
  if (fl_binary_scalar(FL_ADD, idx0, 1, false, &p) == FL_OK) fl_cast(p, dt, &r);
  fl_release(p);
  return r;
}

static void test_index_base(void) {
  char name[128];
  int64_t xs[3] = {10, 7, 5};
  const fl_dtype its[] = {FL_I32, FL_I64};
  fl_tensor *x = make_input(FL_F32, 3, xs, -3, 3);
  for (size_t k = 0; k < 2; k++)
    for (int dim = 0; dim < 3; dim++) {
      int64_t n = 13, len = xs[dim], gs[3] = {xs[0] - 1, xs[1] - 2, xs[2] - 1}, ss[3] = {xs[0], xs[1], xs[2]};
      ss[dim] = n;
      fl_tensor *i0 = make_index(1, &n, len), *g0 = make_index(3, gs, len);
      fl_tensor *idx = one_based(i0, its[k]), *gi = one_based(g0, its[k]);
      fl_tensor *src = make_input(FL_F32, 3, ss, -3, 3), *gsrc = make_input(FL_F32, 3, gs, -3, 3);
      const char *iname = fl_dtype_name(its[k]);
      base_case c0 = {0, dim}, c1 = {1, dim}, c2 = {2, dim}, c3 = {3, dim};
      fl_tensor *in_sel[2] = {x, idx}, *in_g[2] = {x, gi}, *in_s[3] = {x, gi, gsrc}, *in_a[3] = {x, idx, src};
      snprintf(name, sizeof name, "index_select base 1 %s dim %d", iname, dim);
      check(name, op_index_base, &c0, 2, in_sel, 0, 0);
      snprintf(name, sizeof name, "gather base 1 %s dim %d", iname, dim);
      check(name, op_index_base, &c1, 2, in_g, 0, 0);
      snprintf(name, sizeof name, "scatter_add base 1 %s dim %d", iname, dim);
      check(name, op_index_base, &c2, 3, in_s, tol_of(FL_F32) * 4, tol_of(FL_F32) * 8);
      snprintf(name, sizeof name, "index_add_ base 1 %s dim %d", iname, dim);
      check(name, op_index_base, &c3, 3, in_a, tol_of(FL_F32) * 4, tol_of(FL_F32) * 8);
      fl_release(i0), fl_release(g0), fl_release(idx), fl_release(gi), fl_release(src), fl_release(gsrc);
    }
  for (int dim = 0; dim < 3; dim++) {
    base_case a = {4, dim}, m = {5, dim};
    snprintf(name, sizeof name, "argmax base 1 dim %d", dim);
    check(name, op_index_base, &a, 1, &x, 0, 0);
    snprintf(name, sizeof name, "max_dim indices base 1 dim %d", dim);
    check(name, op_index_base, &m, 1, &x, 0, 0);
  }
  fl_release(x);
}

/* GEMM through the front-ends that set its flags: linear (trans_b, bias) and
 * matmul's backward (trans_a / trans_b), each against the CPU. The entry's
 * alpha/beta/stride-0 cases are checked against an f64 loop by test_gemm. */
static fl_status op_linear(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  return fl_linear(in[0], in[1], ud ? in[2] : NULL, out);
}

/* which: 0 the gradient of a, 1 of b, for loss = sum(matmul(a, b) * proj) */
static fl_status op_matmul_grad(fl_tensor *const *in, const void *ud, fl_device dev, fl_tensor **out) {
  (void)dev;
  int which = *(const int *)ud;
  fl_tensor *a = NULL, *b = NULL, *y = NULL, *p = NULL, *s = NULL;
  fl_status st = fl_clone(in[0], &a);
  if (st == FL_OK) st = fl_clone(in[1], &b);
  if (st == FL_OK) st = fl_set_requires_grad(a, true);
  if (st == FL_OK) st = fl_set_requires_grad(b, true);
  if (st == FL_OK) st = fl_matmul(a, b, &y);
  if (st == FL_OK) st = fl_binary(FL_MUL, y, in[2], &p);
  if (st == FL_OK) st = fl_sum(p, 0, false, &s);
  if (st == FL_OK) st = fl_backward(s, NULL, false);
  if (st == FL_OK) *out = fl_retain(fl_grad(which ? b : a));
  fl_release(a), fl_release(b), fl_release(y), fl_release(p), fl_release(s);
  return st;
}

static void test_gemm_flags(void) {
  char name[96];
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16};
  fl_set_allow_tf32(false);
  for (size_t i = 0; i < sizeof dts / sizeof *dts; i++) {
    fl_dtype dt = dts[i];
    double t = dt == FL_F32 ? 1e-4 : dt == FL_F64 ? 1e-11 : tol_of(dt) * 2;
    fl_tensor *lin[3] = {make_input(dt, 3, (int64_t[]){2, 33, 45}, -1, 1), make_input(dt, 2, (int64_t[]){38, 45}, -1, 1),
                         make_input(dt, 1, (int64_t[]){38}, -1, 1)};
    snprintf(name, sizeof name, "linear with bias %s", fl_dtype_name(dt));
    check(name, op_linear, lin, 3, lin, t, t);
    snprintf(name, sizeof name, "linear without bias %s", fl_dtype_name(dt));
    check(name, op_linear, NULL, 2, lin, t, t);
    fl_tensor *mm[3] = {make_input(dt, 3, (int64_t[]){3, 29, 17}, -1, 1), make_input(dt, 2, (int64_t[]){17, 23}, -1, 1),
                        make_input(dt, 3, (int64_t[]){3, 29, 23}, -1, 1)};
    for (int w = 0; w < 2; w++) {
      snprintf(name, sizeof name, "matmul backward d%s %s (broadcast b)", w ? "b" : "a", fl_dtype_name(dt));
      check(name, op_matmul_grad, &w, 3, mm, t * 4, t * 4);
    }
    for (int k = 0; k < 3; k++) fl_release(lin[k]), fl_release(mm[k]);
  }
}

int main(void) {
  if (!fl_device_available(FL_CUDA)) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  test_copies();
  test_random();
  test_elementwise();
  test_reductions();
  test_matmul();
  test_indexing();
  test_scalars();
  test_mixed();
  test_index_base();
  test_gemm_flags();
  test_index_errors();
  test_sort();
  test_memory();
  printf("%d checks passed, %d failed\n", n_ok, n_fail);
  return n_fail ? 1 : 0;
}
