/* The CPU GEMM entry through OpenBLAS: c = alpha * op(a) @ op(b) + beta * c
 * (+ bias), batched by a loop. f32/f64 operands with a BLAS-compatible layout
 * are passed as they are; others (f16/bf16 through f32, integers through f64,
 * layouts with no unit stride) go through contiguous working copies. */
#include "cpu.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src);

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* How one [R, C] matrix with strides (sr, sc) can be handed to BLAS without a copy. */
static bool blas_layout(int64_t R, int64_t C, int64_t sr, int64_t sc, bool *trans, int64_t *ld) {
  if (sc == 1 && (sr >= max1(C) || R == 1)) {
    *trans = false;
    *ld = sr > max1(C) ? sr : max1(C);
    return true;
  }
  if (sr == 1 && (sc >= max1(R) || C == 1)) {
    *trans = true;
    *ld = sc > max1(R) ? sc : max1(R);
    return true;
  }
  return false;
}

static bool direct(const fl_tensor *t, fl_dtype wt) {
  bool tr;
  int64_t ld;
  return t->dtype == wt && blas_layout(t->shape[1], t->shape[2], t->stride[1], t->stride[2], &tr, &ld);
}

/* A contiguous working copy of t in dtype wt. */
static fl_status working_copy(const fl_tensor *t, fl_dtype wt, fl_tensor **out) {
  FL_TRY(fl_tensor_new(wt, FL_CPU_DEVICE, t->ndim, t->shape, out));
  return fl_cpu_copy(*out, t);
}

/* c[i] = alpha * a[i] @ b[i] + beta * c[i]; c row-major with unit column stride. */
static void gemm_batch(fl_dtype dt, fl_tensor *c, const fl_tensor *a, const fl_tensor *b, double alpha, double beta) {
  int64_t B = c->shape[0], M = c->shape[1], N = c->shape[2], K = a->shape[2];
  bool ta = false, tb = false;
  int64_t lda = 1, ldb = 1, ldc = M == 1 ? max1(N) : c->stride[1];
  blas_layout(M, K, a->stride[1], a->stride[2], &ta, &lda);
  blas_layout(K, N, b->stride[1], b->stride[2], &tb, &ldb);
  enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  int64_t es = (int64_t)fl_dtype_size(dt);
  for (int64_t i = 0; i < B; i++) {
    const char *pa = fl_data_ptr(a) + i * a->stride[0] * es, *pb = fl_data_ptr(b) + i * b->stride[0] * es;
    char *pc = fl_data_ptr(c) + i * c->stride[0] * es;
    if (dt == FL_F32)
      cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, (float)alpha, (const float *)pa, (int)lda,
                  (const float *)pb, (int)ldb, (float)beta, (float *)pc, (int)ldc);
    else
      cblas_dgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, alpha, (const double *)pa, (int)lda,
                  (const double *)pb, (int)ldb, beta, (double *)pc, (int)ldc);
  }
}

/* c = beta * c + bias (bias NULL: just the scaling; beta == 0 does not read c). */
static void scale_add_bias(fl_tensor *c, double beta, const fl_tensor *bias) {
  int64_t B = c->shape[0], M = c->shape[1], N = c->shape[2], es = (int64_t)fl_dtype_size(c->dtype);
  int64_t eb = bias ? (int64_t)fl_dtype_size(bias->dtype) : 0;
  if (c->dtype == FL_F32 && c->stride[2] == 1 && (!bias || bias->dtype == FL_F32)) { /* linear's case, typed */
    const float *bp = bias ? (const float *)fl_data_ptr(bias) : NULL;
    int64_t bs = bias ? bias->stride[0] : 0;
    float fb = (float)beta;
    for (int64_t i = 0; i < B; i++)
      for (int64_t m = 0; m < M; m++) {
        float *p = (float *)fl_data_ptr(c) + i * c->stride[0] + m * c->stride[1];
        if (beta == 0 && bp && bs == 1) memcpy(p, bp, sizeof(float) * (size_t)N); /* linear: the bias, then += a @ b */
        else
          for (int64_t n = 0; n < N; n++) p[n] = (beta == 0 ? 0.0f : fb * p[n]) + (bp ? bp[n * bs] : 0.0f);
      }
    return;
  }
  for (int64_t i = 0; i < B; i++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        char *p = fl_data_ptr(c) + (i * c->stride[0] + m * c->stride[1] + n * c->stride[2]) * es;
        double v = beta == 0 ? 0 : beta * fl_ld(p, c->dtype);
        if (bias) v += fl_ld(fl_data_ptr(bias) + n * bias->stride[0] * eb, bias->dtype);
        fl_st(p, c->dtype, v);
      }
}

fl_status fl_cpu_gemm(const fl_gemm *g) {
  fl_tensor a, b, *c = g->c;
  fl_gemm_operands(g, &a, &b);
  int64_t M = c->shape[1], N = c->shape[2], K = a.shape[2];
  if (fl_numel(c) == 0) return FL_OK;
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    return fl_error(FL_ESHAPE, "gemm: dims over 2^31 are not supported by BLAS");
  fl_dtype wt = (c->dtype == FL_F32 || c->dtype == FL_F16 || c->dtype == FL_BF16) ? FL_F32 : FL_F64;
  fl_tensor *ca = NULL, *cb = NULL, *cc = NULL;
  fl_status st = FL_OK;
  bool c_direct = c->dtype == wt && c->stride[2] == 1 && (M == 1 || c->stride[1] >= max1(N));
  if (!c_direct) {
    FL_CHECK(fl_tensor_new(wt, FL_CPU_DEVICE, 3, c->shape, &cc));
    if (g->beta != 0) FL_CHECK(fl_cpu_copy(cc, c));
  }
  fl_tensor *cw = cc ? cc : c;
  double beta = g->beta;
  if (g->bias || K == 0) { /* the bias (and beta) first, then accumulate the product */
    scale_add_bias(cw, beta, g->bias);
    beta = 1;
  }
  if (K > 0) {
    if (!direct(&a, wt)) FL_CHECK(working_copy(&a, wt, &ca));
    if (!direct(&b, wt)) FL_CHECK(working_copy(&b, wt, &cb));
    gemm_batch(wt, cw, ca ? ca : &a, cb ? cb : &b, g->alpha, beta);
  }
  if (cc) FL_CHECK(fl_cpu_copy(c, cc));
done:
  fl_release(ca), fl_release(cb), fl_release(cc);
  return st;
}
