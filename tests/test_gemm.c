/* The backend GEMM entry against a naive f64 loop, on the CPU and (when a GPU
 * is present) on CUDA: every transpose combination, alpha, beta != 0 (c is
 * accumulated into), a broadcast batch (stride 0) on either side, the bias,
 * an empty sum (K = 0) and a c that is a transposed view. Also fl_linear
 * against the same reference, with its gradients checked by the same loop.
 * One line per failing case and a summary; exit status 1 on any failure. */
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_ok, n_fail;

static double tol_of(fl_dtype d) {
  switch (d) {
    case FL_F32: return 1e-5;
    case FL_F64: return 1e-12;
    case FL_F16: return 4e-3;
    case FL_BF16: return 3e-2;
    default: return 0; /* integers: exact */
  }
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* A tensor of small values exact in every dtype (multiples of 1/4 in [-2, 2], integers for ints). */
static fl_tensor *input(fl_dtype dt, fl_device dev, int nd, const int64_t *shape) {
  int64_t n = fl_shape_numel(nd, shape);
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = fl_dtype_is_float(dt) ? floor(urand() * 16) / 4 - 2 : floor(urand() * 7) - 3;
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  o.device = dev;
  fl_tensor *t = NULL;
  if (fl_from_doubles(v, nd, shape, o, &t) != FL_OK) printf("input: %s\n", fl_last_error());
  free(v);
  return t;
}

static double *values(const fl_tensor *t) {
  int64_t n = fl_numel(t);
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  if (fl_to_doubles(t, v) != FL_OK) printf("values: %s\n", fl_last_error());
  return v;
}

/* Element (i, r, c) of a [B, R, C] header (any strides) from its values read contiguously over `base`. */
static double at(const double *v, const fl_tensor *h, const fl_tensor *base, int64_t i, int64_t r, int64_t c) {
  return v[(h->offset - base->offset) + i * h->stride[0] + r * h->stride[1] + c * h->stride[2]];
}

static void report(bool ok, const char *name, double err) {
  if (ok) n_ok++;
  else {
    n_fail++;
    printf("FAIL %-60s max error %g (%s)\n", name, err, fl_last_error());
  }
}

typedef struct {
  bool ta, tb, bias;
  double alpha, beta;
  int bcast;      /* 0 none, 1: a's batch stride 0, 2: b's */
  int64_t K;      /* 0: an empty sum */
  bool c_trans;   /* c a transposed view (no unit column stride) */
} gcase;

static void run_case(fl_device dev, fl_dtype dt, const gcase *gc) {
  const int64_t B = 3, M = 5, N = 4, K = gc->K;
  char name[128];
  char dn[16];
  fl_device_name(dev, dn, sizeof dn);
  snprintf(name, sizeof name, "%s %s ta=%d tb=%d a=%g b=%g bias=%d bcast=%d K=%lld ct=%d", dn, fl_dtype_name(dt),
           gc->ta, gc->tb, gc->alpha, gc->beta, gc->bias, gc->bcast, (long long)K, gc->c_trans);
  /* stored operands: a [B|1, M, K] or [B|1, K, M]; b [B|1, K, N] or [B|1, N, K] */
  int64_t sa[3] = {gc->bcast == 1 ? 1 : B, gc->ta ? K : M, gc->ta ? M : K};
  int64_t sb[3] = {gc->bcast == 2 ? 1 : B, gc->tb ? N : K, gc->tb ? K : N};
  int64_t sc[3] = {B, gc->c_trans ? N : M, gc->c_trans ? M : N}, nb = N;
  fl_tensor *a = input(dt, dev, 3, sa), *b = input(dt, dev, 3, sb), *cs = input(dt, dev, 3, sc);
  fl_tensor *bias = gc->bias ? input(dt, dev, 1, &nb) : NULL;
  fl_tensor ah = *a, bh = *b, ch = *cs;
  if (gc->bcast == 1) ah.shape[0] = B, ah.stride[0] = 0;
  if (gc->bcast == 2) bh.shape[0] = B, bh.stride[0] = 0;
  if (gc->c_trans) { /* c [B, M, N] as a view of [B, N, M] */
    ch.shape[1] = M, ch.shape[2] = N;
    ch.stride[1] = cs->stride[2], ch.stride[2] = cs->stride[1];
  }
  double *va = values(a), *vb = values(b), *vc0 = values(cs), *vbias = bias ? values(bias) : NULL;
  fl_gemm g = {&ch, &ah, &bh, gc->ta, gc->tb, gc->alpha, gc->beta, bias};
  const fl_backend *be;
  fl_status st = fl_dispatch("gemm", FL_OP_GEMM, 0, 4, (const fl_tensor *const[]){&ch, &ah, &bh, bias}, &be);
  if (st == FL_OK) st = be->gemm(&g);
  double *vc = st == FL_OK ? values(cs) : NULL;
  double err = st == FL_OK ? 0 : INFINITY, tol = tol_of(dt);
  for (int64_t i = 0; vc && i < B; i++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++)
          acc += (gc->ta ? at(va, &ah, a, i, k, m) : at(va, &ah, a, i, m, k)) *
                 (gc->tb ? at(vb, &bh, b, i, n, k) : at(vb, &bh, b, i, k, n));
        double want = gc->alpha * acc + (gc->beta != 0 ? gc->beta * at(vc0, &ch, cs, i, m, n) : 0) +
                      (vbias ? vbias[n] : 0);
        double got = at(vc, &ch, cs, i, m, n), e = fabs(got - want) / (1 + fabs(want));
        if (e > err) err = e;
      }
  report(err <= tol, name, err);
  free(va), free(vb), free(vc0), free(vbias), free(vc);
  fl_release(a), fl_release(b), fl_release(cs), fl_release(bias);
}

static void test_gemm(fl_device dev) {
  const fl_dtype dts[] = {FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64};
  for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
    bool integer = !fl_dtype_is_float(dts[d]);
    for (int f = 0; f < 4; f++)
      for (int bc = 0; bc < 3; bc++)
        for (int v = 0; v < 3; v++) { /* plain; alpha, beta and bias; beta alone */
          gcase c = {f & 1, f >> 1, v == 1, v == 1 ? 3 : 1, v == 0 ? 0 : integer ? 2 : 0.5, bc, 6, false};
          run_case(dev, dts[d], &c);
        }
    gcase empty = {false, true, true, 1, 2, 0, 0, false}; /* K = 0: beta * c + bias */
    run_case(dev, dts[d], &empty);
    gcase ct = {true, false, true, 2, 1, 2, 6, true}; /* c a transposed view */
    run_case(dev, dts[d], &ct);
  }
}

/* fl_linear: y = x w^T + b and its gradients, against loops over the same values. */
static void test_linear(fl_device dev) {
  const int64_t R = 2, S = 3, I = 5, O = 4;
  int64_t xs[3] = {R, S, I}, ws[2] = {O, I}, bs[1] = {O};
  fl_tensor *x = input(FL_F64, dev, 3, xs), *w = input(FL_F64, dev, 2, ws), *b = input(FL_F64, dev, 1, bs);
  fl_set_requires_grad(x, true), fl_set_requires_grad(w, true), fl_set_requires_grad(b, true);
  fl_tensor *y = NULL, *s = NULL, *gy = NULL;
  fl_status st = fl_linear(x, w, b, &y);
  /* loss = sum(y * gy) with gy fixed, so dy = gy */
  int64_t ys[3] = {R, S, O};
  gy = input(FL_F64, dev, 3, ys);
  fl_tensor *p = NULL;
  if (st == FL_OK) st = fl_binary(FL_MUL, y, gy, &p);
  if (st == FL_OK) st = fl_sum(p, 0, false, &s);
  if (st == FL_OK) st = fl_backward(s, NULL, false);
  char dn[16];
  fl_device_name(dev, dn, sizeof dn);
  char name[64];
  snprintf(name, sizeof name, "%s linear forward and gradients", dn);
  if (st != FL_OK) {
    report(false, name, INFINITY);
  } else {
    double *vx = values(x), *vw = values(w), *vb = values(b), *vy = values(y), *vg = values(gy);
    double *dx = values(fl_grad(x)), *dw = values(fl_grad(w)), *db = values(fl_grad(b));
    double err = 0;
    for (int64_t r = 0; r < R * S; r++)
      for (int64_t o = 0; o < O; o++) {
        double acc = vb[o];
        for (int64_t i = 0; i < I; i++) acc += vx[r * I + i] * vw[o * I + i];
        err = fmax(err, fabs(vy[r * O + o] - acc));
      }
    for (int64_t r = 0; r < R * S; r++)
      for (int64_t i = 0; i < I; i++) {
        double acc = 0;
        for (int64_t o = 0; o < O; o++) acc += vg[r * O + o] * vw[o * I + i];
        err = fmax(err, fabs(dx[r * I + i] - acc));
      }
    for (int64_t o = 0; o < O; o++) {
      double accb = 0;
      for (int64_t r = 0; r < R * S; r++) accb += vg[r * O + o];
      err = fmax(err, fabs(db[o] - accb));
      for (int64_t i = 0; i < I; i++) {
        double acc = 0;
        for (int64_t r = 0; r < R * S; r++) acc += vg[r * O + o] * vx[r * I + i];
        err = fmax(err, fabs(dw[o * I + i] - acc));
      }
    }
    report(err < 1e-12, name, err);
    free(vx), free(vw), free(vb), free(vy), free(vg), free(dx), free(dw), free(db);
  }
  fl_release(x), fl_release(w), fl_release(b), fl_release(y), fl_release(s), fl_release(gy), fl_release(p);
}

int main(void) {
  test_gemm(FL_CPU_DEVICE);
  test_linear(FL_CPU_DEVICE);
  if (fl_device_count(FL_CUDA) > 0) {
    fl_device cuda = {FL_CUDA, 0};
    test_gemm(cuda);
    test_gemm(cuda); /* again: the bias cases now run on cuBLASLt plans cached by the first pass, with new pointers */
    test_linear(cuda);
  } else {
    printf("(no CUDA device: CPU cases only)\n");
  }
  printf("%d ok, %d failed\n", n_ok, n_fail);
  return n_fail != 0;
}
