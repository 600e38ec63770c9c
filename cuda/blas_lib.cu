/* fc_blas_load (blas_lib.cuh): cuBLAS and cuBLASLt of the major version we build against. */
#include "blas_lib.cuh"
#include "dynlib.cuh"
#include <pthread.h>
#include <stdio.h>

fc_blas_lib fc_blas;
/* The typedefs name one of the header's overloads exactly (unevaluated: no reference to the library). */
static_assert(sizeof(static_cast<fc_gemm_sbex>(&::cublasGemmStridedBatchedEx)) != 0, "cublasGemmStridedBatchedEx");
static_assert(sizeof(static_cast<fc_gemm_sbex_64>(&::cublasGemmStridedBatchedEx_64)) != 0,
              "cublasGemmStridedBatchedEx_64");

#define FC_STR2(x) #x
#define FC_STR(x) FC_STR2(x)

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static bool blas_ok;
static char blas_err[320]; /* why loading failed */

/* dlsym on cuBLAS's handle also searches cuBLASLt, which it depends on. */
static bool bind(const char *lib, void *h) {
#define FC_BLAS_SYM(f)                                                      \
  if (!fc_dlsym(h, #f, fc_blas.f)) {                                        \
    snprintf(blas_err, sizeof blas_err, "%s has no %s", lib, #f);           \
    return false;                                                           \
  }
#define FC_BLAS_SYMT(f, T) FC_BLAS_SYM(f)
  FC_BLAS_FUNCS(FC_BLAS_SYM, FC_BLAS_SYMT)
#undef FC_BLAS_SYM
#undef FC_BLAS_SYMT
  return true;
}

static void load(void) {
  static const char *const lt[] = {"libcublasLt.so." FC_STR(CUBLAS_VER_MAJOR), nullptr};
  static const char *const blas[] = {"libcublas.so." FC_STR(CUBLAS_VER_MAJOR), nullptr};
  void *hl = fc_dlopen(lt, blas_err, sizeof blas_err);
  void *hb = hl ? fc_dlopen(blas, blas_err, sizeof blas_err) : nullptr;
  blas_ok = hb && bind(blas[0], hb);
}

fl_status fc_blas_load(void) {
  pthread_once(&blas_once, load);
  if (blas_ok) return FL_OK;
  return fl_error(FL_EBACKEND, "cuBLAS could not be loaded (matrix products on CUDA need libcublas.so.%d and "
                  "libcublasLt.so.%d): %s", CUBLAS_VER_MAJOR, CUBLAS_VER_MAJOR, blas_err);
}
