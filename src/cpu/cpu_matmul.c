/* CPU batched matmul through OpenBLAS; other dtypes go through an f32 or f64 copy. */
#include "cpu.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* How one [R, C] matrix with strides (sr, sc) can be handed to BLAS without a copy. */
static bool blas_layout(int64_t R, int64_t C, int64_t sr, int64_t sc, bool *trans, int64_t *ld) {
  if (sc == 1 && (sr >= (C > 1 ? C : 1) || R == 1)) {
    *trans = false;
    *ld = sr > (C > 1 ? C : 1) ? sr : (C > 1 ? C : 1);
    return true;
  }
  if (sr == 1 && (sc >= (R > 1 ? R : 1) || C == 1)) {
    *trans = true;
    *ld = sc > (R > 1 ? R : 1) ? sc : (R > 1 ? R : 1);
    return true;
  }
  return false;
}

/* A contiguous working copy of t in dtype wt (a stack header over new memory). */
static fl_status working_copy(const fl_tensor *t, fl_dtype wt, fl_tensor **out) {
  FL_TRY(fl_tensor_new(wt, FL_CPU_DEVICE, t->ndim, t->shape, out));
  extern fl_status fl_cpu_copy(fl_tensor *, const fl_tensor *);
  return fl_cpu_copy(*out, t);
}

static void gemm_batch(fl_dtype dt, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  int64_t B = a->shape[0], M = a->shape[1], K = a->shape[2], N = b->shape[2];
  bool ta = false, tb = false;
  int64_t lda = 1, ldb = 1;
  blas_layout(M, K, a->stride[1], a->stride[2], &ta, &lda);
  blas_layout(K, N, b->stride[1], b->stride[2], &tb, &ldb);
  size_t es = fl_dtype_size(dt);
  for (int64_t i = 0; i < B; i++) {
    const char *pa = fl_data_ptr(a) + i * a->stride[0] * (int64_t)es;
    const char *pb = fl_data_ptr(b) + i * b->stride[0] * (int64_t)es;
    char *po = fl_data_ptr(out) + i * M * N * (int64_t)es;
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    int ldo = (int)(N > 1 ? N : 1);
    if (dt == FL_F32)
      cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0f, (const float *)pa, (int)lda,
                  (const float *)pb, (int)ldb, 0.0f, (float *)po, ldo);
    else
      cblas_dgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0, (const double *)pa, (int)lda,
                  (const double *)pb, (int)ldb, 0.0, (double *)po, ldo);
  }
}

fl_status fl_cpu_matmul(fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  extern fl_status fl_cpu_fill(fl_tensor *, double);
  extern fl_status fl_cpu_copy(fl_tensor *, const fl_tensor *);
  int64_t M = a->shape[1], K = a->shape[2], N = b->shape[2];
  if (fl_numel(out) == 0) return FL_OK;
  if (K == 0) return fl_cpu_fill(out, 0);
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    return fl_error(FL_ESHAPE, "matmul: dims over 2^31 are not supported by BLAS");
  fl_dtype wt = (a->dtype == FL_F32 || a->dtype == FL_F16 || a->dtype == FL_BF16) ? FL_F32 : FL_F64;
  bool ta, tb;
  int64_t l;
  bool direct_a = a->dtype == wt && blas_layout(M, K, a->stride[1], a->stride[2], &ta, &l);
  bool direct_b = b->dtype == wt && blas_layout(K, N, b->stride[1], b->stride[2], &tb, &l);
  fl_tensor *ca = NULL, *cb = NULL, *co = NULL;
  fl_status st = FL_OK;
  if (!direct_a) FL_CHECK(working_copy(a, wt, &ca));
  if (!direct_b) FL_CHECK(working_copy(b, wt, &cb));
  if (out->dtype != wt) FL_CHECK(fl_tensor_new(wt, FL_CPU_DEVICE, out->ndim, out->shape, &co));
  gemm_batch(wt, co ? co : out, ca ? ca : a, cb ? cb : b);
  if (co) st = fl_cpu_copy(out, co);
done:
  fl_release(ca);
  fl_release(cb);
  fl_release(co);
  return st;
}
