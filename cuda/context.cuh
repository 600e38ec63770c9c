/* Per-device state: created on the first op that runs on a device, released
 * at process exit. The work of a device is queued on one stream per engine
 * state: the context's own, or the stream a host gave the current state
 * (fl_context_set_stream). fc_stream(ctx) is that stream for every launch,
 * copy and library call; the caching allocator hands a freed block to later
 * work on the stream it was allocated on without syncing (record-stream
 * semantics for blocks used on others: allocator.cu). */
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

/* A stream with what is bound to it: the sticky error word its kernels write, the cuBLAS handle and workspace
 * its GEMMs use. The context's own queue lives in the context; a host's stream gets one on its first attach
 * (context.cu), counted over the contexts that set it, and gives it back, for the next host stream, at the last
 * detach (freeing it would wait for the whole device: cudaFree, cublasDestroy). */
struct fc_queue {
  cudaStream_t stream;
  int refs;                      /* attaches of a host stream (the own queue: 0) */
  unsigned long long *kerr;      /* FC_KERR_WORDS device words, see fc_kerr_report */
  unsigned long long *kerr_host; /* pinned mirror, filled by a copy queued before a sync */
  bool kerr_armed;     /* a kernel that may set kerr was queued since the last check */
  cublasHandle_t blas; /* created on the first matmul on this stream */
  void *blas_ws;       /* its workspace, shared with cuBLASLt on this stream */
  size_t blas_ws_size; /* its bytes (FLAME_CUBLAS_WS_MB; 0: cuBLAS's own pool) */
  fc_queue *next;      /* the context's host queues, or its spare ones */
};

struct fc_context {
  int device;
  bool alive; /* false once released at exit: late frees become no-ops */
  int sm_count;
  fc_queue own;    /* flame's own stream */
  fc_queue *hosted; /* the host streams attached (context.cu, under its lock) */
  fc_queue *spare;  /* host queues given back, kept for the next attach */
  void *blas_lt;   /* cublasLtHandle_t, created on the first GEMM: stateless, shared by the queues */
  fc_allocator *alloc;
  fc_staging *staging; /* pinned ring for pageable host-to-device copies (staging.cu), made on first use */
};

/* The queue work on ctx's device goes to now: the current engine state's host stream, else the own one. */
static inline fc_queue *fc_queue_cur(fc_context *ctx) {
  fc_queue *q = (fc_queue *)fl_ctx_stream_handle(ctx->device);
  return q ? q : &ctx->own;
}
/* The stream of every launch, copy and library call of an op. */
static inline cudaStream_t fc_stream(fc_context *ctx) { return fc_queue_cur(ctx)->stream; }

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
/* The cuBLAS handle of the current queue, bound to its stream and workspace. */
fl_status fc_blas_handle(fc_context *ctx, cublasHandle_t *out);
/* The cuBLASLt handle (as void *: cublasLt.h stays out of this header) and
 * the workspace it shares with the current queue's cuBLAS handle. */
fl_status fc_blas_lt(fc_context *ctx, void **handle, void **ws, size_t *ws_size);
/* Device pointer to the sticky error word, for a kernel about to be queued. */
static inline unsigned long long *fc_kerr_arm(fc_context *ctx) {
  fc_queue *q = fc_queue_cur(ctx);
  q->kerr_armed = true;
  return q->kerr;
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
/* Waits for the current queue's stream, then reports any bad index a kernel
 * flagged since the last check as FL_EINDEX (and clears the flag). */
fl_status fc_sync_and_check(fc_context *ctx);
/* The same for one queue. */
fl_status fc_queue_sync_and_check(fc_context *ctx, fc_queue *q);
/* The host's streams (the backend table's stream_attach / stream_detach). */
fl_status fc_stream_attach(int device, cudaStream_t stream, fc_queue *from, fc_queue **out);
fl_status fc_stream_detach(int device, fc_queue *q);

/* Blocks per launch for grid-stride kernels: enough to fill the device. */
static inline unsigned fc_grid(const fc_context *ctx, int64_t items, int threads) {
  int64_t want = fc_ceil_div(items > 0 ? items : 1, threads);
  int64_t cap = (int64_t)ctx->sm_count * (2048 / threads) * 2;
  return (unsigned)fc_min64(want, cap);
}

#endif
