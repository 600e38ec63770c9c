/* Per-device state: created on the first op that runs on a device, released
 * at process exit. All work of a device is queued on its one stream, so the
 * caching allocator can hand a freed block to the next op without syncing. */
#ifndef FL_CUDA_CONTEXT_CUH
#define FL_CUDA_CONTEXT_CUH

#include "common.cuh"
#include <cublas_v2.h>

struct fc_allocator;
struct fc_staging;

/* Bits of the sticky kernel error word: which kind of kernel saw a bad index. */
enum {
  FC_KERR_INDEX_SELECT = 1,
  FC_KERR_INDEX_ADD = 2,
  FC_KERR_GATHER = 4,
  FC_KERR_SCATTER_ADD = 8,
  FC_KERR_CROSS_ENTROPY = 16, /* a class target outside [1, C] (loss.cu) */
  FC_KERR_KINDS = 5
};

/* The sticky error record: [0] the FC_KERR_* bits of every kernel that saw a
 * bad index, [1] set once the first bad index is recorded, [2] that index and
 * [3] the size of the dim it indexed, for the message. */
enum { FC_KERR_WORDS = 4 };

struct fc_context {
  int device;
  bool alive; /* false once released at exit: late frees become no-ops */
  cudaStream_t stream;
  int sm_count;
  unsigned long long *kerr;      /* FC_KERR_WORDS device words, see fc_kerr_report */
  unsigned long long *kerr_host; /* pinned mirror, filled by a copy queued before a sync */
  bool kerr_armed;  /* a kernel that may set kerr was queued since the last check */
  cublasHandle_t blas; /* created on the first matmul */
  void *blas_lt;       /* cublasLtHandle_t, created on the first GEMM */
  void *blas_ws;
  fc_allocator *alloc;
  fc_staging *staging; /* pinned ring for pageable host-to-device copies (staging.cu), made on first use */
};

/* Number of CUDA devices, 0 without a driver or GPU (asked once, never prints). */
int fc_device_count(void);
/* The context of a device, created on first use; makes the device current. */
fl_status fc_context_get(int device, fc_context **out);
/* The context if it exists and is alive, else NULL; makes no CUDA call. */
fc_context *fc_context_peek(int device);
/* The context of the device a tensor lives on. */
static inline fl_status fc_context_of(const fl_tensor *t, fc_context **out) {
  if (t->storage->device.type != FL_CUDA) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EDEVICE, "the cuda backend got a tensor on another device (%s)", d.s);
  }
  return fc_context_get(fc_device_of(t), out);
}
/* A failed cuBLAS call as FL_EBACKEND. */
fl_status fc_blas_error(cublasStatus_t s, const char *what);
/* The cuBLAS handle, bound to the context's stream and workspace. */
fl_status fc_blas_handle(fc_context *ctx, cublasHandle_t *out);
/* The cuBLASLt handle (as void *: cublasLt.h stays out of this header) and
 * the workspace it shares with the cuBLAS handle. */
fl_status fc_blas_lt(fc_context *ctx, void **handle, void **ws, size_t *ws_size);
/* Device pointer to the sticky error word, for a kernel about to be queued. */
static inline unsigned long long *fc_kerr_arm(fc_context *ctx) {
  ctx->kerr_armed = true;
  return ctx->kerr;
}
#ifdef __CUDACC__
/* Called by a kernel that met index v outside [0, size): never touch memory there. */
__device__ __forceinline__ void fc_kerr_report(unsigned long long *kerr, int bit, int64_t v, int64_t size) {
  atomicOr(&kerr[0], (unsigned long long)bit);
  if (atomicCAS(&kerr[1], 0ULL, 1ULL) == 0ULL) {
    kerr[2] = (unsigned long long)v;
    kerr[3] = (unsigned long long)size;
  }
}
#endif
/* Waits for the stream, then reports any bad index a kernel flagged since the
 * last check as FL_EINDEX (and clears the flag). */
fl_status fc_sync_and_check(fc_context *ctx);
/* Blocks per launch for grid-stride kernels: enough to fill the device. */
static inline unsigned fc_grid(const fc_context *ctx, int64_t items, int threads) {
  int64_t want = fc_ceil_div(items > 0 ? items : 1, threads);
  int64_t cap = (int64_t)ctx->sm_count * (2048 / threads) * 2;
  return (unsigned)fc_min64(want, cap);
}

#endif
