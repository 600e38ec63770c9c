/* cuBLAS and cuBLASLt, loaded on first use (dynlib.cuh): linked, they cost every process about 155 MB of resident
 * memory at start-up, CPU-only ones included. fc_blas_handle (context.cu) loads them before the first handle, so
 * every call through fc_blas runs after fc_blas_load succeeded. */
#ifndef FL_CUDA_BLAS_LIB_CUH
#define FL_CUDA_BLAS_LIB_CUH

#include "flame.h"
#include <cublasLt.h>
#include <cublas_v2.h>

/* The exported forms of the strided-batched GEMMs, which take a cublasComputeType_t: C++ also sees inline overloads
 * taking a cudaDataType, so decltype cannot name them (blas_lib.cu checks these against the header). */
typedef cublasStatus_t (*fc_gemm_sbex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                       const void *, const void *, cudaDataType, int, long long, const void *,
                                       cudaDataType, int, long long, const void *, void *, cudaDataType, int,
                                       long long, int, cublasComputeType_t, cublasGemmAlgo_t);
typedef cublasStatus_t (*fc_gemm_sbex_64)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int64_t, int64_t,
                                          int64_t, const void *, const void *, cudaDataType, int64_t, long long,
                                          const void *, cudaDataType, int64_t, long long, const void *, void *,
                                          cudaDataType, int64_t, long long, int64_t, cublasComputeType_t,
                                          cublasGemmAlgo_t);

/* The functions we call, under their exported names (cublas_v2.h maps cublasCreate to cublasCreate_v2, ...): X for
 * the ones decltype can type, XT(name, type) for the overloaded ones. */
#define FC_BLAS_FUNCS(X, XT)                                                                               \
  X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2) X(cublasSetWorkspace_v2)                   \
  XT(cublasGemmStridedBatchedEx, fc_gemm_sbex) XT(cublasGemmStridedBatchedEx_64, fc_gemm_sbex_64)         \
  X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtMatmul) X(cublasLtMatmulDescCreate)                      \
  X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute) X(cublasLtMatrixLayoutCreate)             \
  X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute) X(cublasLtMatmulPreferenceCreate)     \
  X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute) X(cublasLtMatmulAlgoGetHeuristic)

struct fc_blas_lib {
#define FC_BLAS_PTR(f) decltype(&::f) f;
#define FC_BLAS_PTRT(f, T) T f;
  FC_BLAS_FUNCS(FC_BLAS_PTR, FC_BLAS_PTRT)
#undef FC_BLAS_PTR
#undef FC_BLAS_PTRT
};
extern fc_blas_lib fc_blas;

/* Loads both libraries once (thread-safe); FL_EBACKEND with the loader's message when they cannot be. */
fl_status fc_blas_load(void);

#endif
