/* Device contexts: lazy creation, the sticky kernel error word, the cuBLAS
 * handle, and release at exit. */
#include "allocator.cuh"
#include "staging.cuh"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define FC_MAX_DEVICES 64
#include "blas_lib.cuh"
#include <cublasLt.h>

#define FC_BLAS_WORKSPACE (32u << 20) /* what cuBLAS recommends on Hopper */

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static fc_context *contexts[FC_MAX_DEVICES];
static volatile int dev_count = -1; /* -1: not asked yet; written once, under ctx_mu */
static bool exit_hook_set;

fl_status fc_cuda_error(cudaError_t e, const char *what) {
  (void)cudaGetLastError(); /* clear a non-sticky error so later launch checks are clean */
  return fl_error(FL_EBACKEND, "CUDA call failed: %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

fl_status fc_bad_dtype(const char *op, fl_dtype dt) {
  return fl_error(FL_EDTYPE, "%s: dtype %s is not supported by the cuda backend", op, fl_dtype_name(dt));
}

int fc_device_count(void) {
  int cached = dev_count; /* every op asks: skip the lock once known */
  if (cached >= 0) return cached;
  pthread_mutex_lock(&ctx_mu);
  if (dev_count < 0) {
    int n = 0;
    /* No driver or no GPU is an answer (0 devices), not an error to report. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    (void)cudaGetLastError();
    dev_count = n > FC_MAX_DEVICES ? FC_MAX_DEVICES : n;
  }
  int n = dev_count;
  pthread_mutex_unlock(&ctx_mu);
  return n;
}

/* Release order: wait for queued work, then cuBLAS, cached memory, stream.
 * If the runtime is already unloading, the first call says so and we leave
 * everything to the process teardown rather than call into a dying driver. */
static void release_context(fc_context *c) {
  if (!c->alive) return;
  c->alive = false;
  if (cudaSetDevice(c->device) != cudaSuccess || cudaStreamSynchronize(c->stream) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  if (c->blas) fc_blas.cublasDestroy_v2(c->blas);
  if (c->blas_lt) fc_blas.cublasLtDestroy((cublasLtHandle_t)c->blas_lt);
  if (c->blas_ws) fc_free(c, c->blas_ws, FC_BLAS_WORKSPACE);
  fc_allocator_release(c);
  fc_staging_release(c->staging);
  cudaFree(c->kerr);
  cudaFreeHost(c->kerr_host);
  cudaStreamDestroy(c->stream);
  (void)cudaGetLastError();
}

static void release_all(void) {
  pthread_mutex_lock(&ctx_mu);
  for (int i = 0; i < FC_MAX_DEVICES; i++)
    if (contexts[i]) release_context(contexts[i]);
  pthread_mutex_unlock(&ctx_mu);
}

static fl_status create_context(int device, fc_context **out) {
  fc_context *c = (fc_context *)calloc(1, sizeof *c);
  if (!c) return fl_error(FL_ENOMEM, "out of host memory for the cuda:%d context", device);
  c->device = device;
  fl_status st = FL_OK;
  cudaError_t e;
#define STEP(call)                        \
  if ((e = (call)) != cudaSuccess) {      \
    st = fc_cuda_error(e, #call);         \
    goto fail;                            \
  }
  STEP(cudaSetDevice(device));
  STEP(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device));
  /* Non-blocking: work others put on the legacy default stream does not
   * serialise with ours. */
  STEP(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  STEP(cudaMalloc((void **)&c->kerr, FC_KERR_WORDS * sizeof *c->kerr));
  STEP(cudaMemsetAsync(c->kerr, 0, FC_KERR_WORDS * sizeof *c->kerr, c->stream));
  STEP(cudaMallocHost((void **)&c->kerr_host, FC_KERR_WORDS * sizeof *c->kerr_host));
#undef STEP
  st = fc_allocator_create(device, &c->alloc);
  if (st != FL_OK) goto fail;
  c->alive = true;
  *out = c;
  return FL_OK;
fail:
  if (c->kerr) cudaFree(c->kerr);
  if (c->kerr_host) cudaFreeHost(c->kerr_host);
  if (c->stream) cudaStreamDestroy(c->stream);
  (void)cudaGetLastError();
  free(c);
  return st;
}

fl_status fc_context_get(int device, fc_context **out) {
  int n = fc_device_count();
  if (device < 0 || device >= n)
    return fl_error(FL_EDEVICE, "cuda:%d does not exist (%d cuda device(s))", device, n);
  fc_context *c = contexts[device];
  if (!c) {
    pthread_mutex_lock(&ctx_mu);
    fl_status st = FL_OK;
    if (!contexts[device]) {
      st = create_context(device, &c);
      if (st == FL_OK) {
        contexts[device] = c;
        if (!exit_hook_set) exit_hook_set = atexit(release_all) == 0;
      }
    }
    c = contexts[device];
    pthread_mutex_unlock(&ctx_mu);
    if (st != FL_OK) return st;
  }
  if (!c->alive) return fl_error(FL_EBACKEND, "cuda:%d was already released (process exit)", device);
  int cur = -1; /* the host program may use CUDA too: ask, switch only when needed */
  if (cudaGetDevice(&cur) != cudaSuccess || cur != device) FC_CUDA(cudaSetDevice(device));
  *out = c;
  return FL_OK;
}

fc_context *fc_context_peek(int device) {
  if (device < 0 || device >= FC_MAX_DEVICES) return NULL;
  fc_context *c = contexts[device];
  return c && c->alive ? c : NULL;
}

static const char *blas_status_str(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

fl_status fc_blas_error(cublasStatus_t s, const char *what) {
  (void)cudaGetLastError();
  return fl_error(FL_EBACKEND, "cuBLAS call failed: %s: %s (%d)", what, blas_status_str(s), (int)s);
}

fl_status fc_blas_handle(fc_context *ctx, cublasHandle_t *out) {
  if (!ctx->blas) {
    FL_TRY(fc_blas_load()); /* the first GEMM loads cuBLAS: fc_blas is usable from here on */
    cublasHandle_t h;
    cublasStatus_t s = fc_blas.cublasCreate_v2(&h);
    if (s != CUBLAS_STATUS_SUCCESS) return fc_blas_error(s, "cublasCreate");
    void *ws = NULL;
    fl_status st = fc_malloc(ctx, FC_BLAS_WORKSPACE, &ws);
    if (st == FL_OK && (s = fc_blas.cublasSetStream_v2(h, ctx->stream)) != CUBLAS_STATUS_SUCCESS)
      st = fc_blas_error(s, "cublasSetStream");
    if (st == FL_OK && (s = fc_blas.cublasSetWorkspace_v2(h, ws, FC_BLAS_WORKSPACE)) != CUBLAS_STATUS_SUCCESS)
      st = fc_blas_error(s, "cublasSetWorkspace");
    if (st != FL_OK) {
      if (ws) fc_free(ctx, ws, FC_BLAS_WORKSPACE);
      fc_blas.cublasDestroy_v2(h);
      return st;
    }
    ctx->blas = h;
    ctx->blas_ws = ws;
  }
  *out = ctx->blas;
  return FL_OK;
}

static const char *kerr_names[FC_KERR_KINDS] = {"index_select", "index_add_", "gather", "scatter_add",
                                                         "cross_entropy"};

fl_status fc_sync_and_check(fc_context *ctx) {
  bool armed = ctx->kerr_armed;
  if (armed)
    FC_CUDA(cudaMemcpyAsync(ctx->kerr_host, ctx->kerr, FC_KERR_WORDS * sizeof *ctx->kerr, cudaMemcpyDeviceToHost,
                            ctx->stream));
  FC_CUDA(cudaStreamSynchronize(ctx->stream));
  if (!armed) return FL_OK;
  ctx->kerr_armed = false;
  unsigned long long bits = ctx->kerr_host[0];
  if (!bits) return FL_OK;
  long long bad = (long long)ctx->kerr_host[2], size = (long long)ctx->kerr_host[3];
  FC_CUDA(cudaMemsetAsync(ctx->kerr, 0, FC_KERR_WORDS * sizeof *ctx->kerr, ctx->stream));
  char ops[96] = "";
  size_t k = 0;
  for (int i = 0; i < FC_KERR_KINDS; i++)
    if (bits & (1ULL << i)) k += snprintf(ops + k, sizeof ops - k, "%s%s", k ? ", " : "", kerr_names[i]);
  return fl_error(FL_EINDEX,
                  "%s: index %lld out of range for a dim of size %lld (detected by a kernel on cuda:%d, "
                  "reported at this synchronising call: the result of that op is invalid)",
                  ops, (long long)fl_mdim(bad), size, ctx->device); /* bad is 0-based: the kernels report position - base */
}

/* cuBLASLt shares the cuBLAS handle's workspace: both run on the context's one
 * stream, so their uses of it are ordered. */
fl_status fc_blas_lt(fc_context *ctx, void **handle, void **ws, size_t *ws_size) {
  cublasHandle_t h;
  FL_TRY(fc_blas_handle(ctx, &h)); /* creates the workspace */
  if (!ctx->blas_lt) {
    cublasLtHandle_t lt;
    cublasStatus_t s = fc_blas.cublasLtCreate(&lt);
    if (s != CUBLAS_STATUS_SUCCESS) return fc_blas_error(s, "cublasLtCreate");
    ctx->blas_lt = lt;
  }
  *handle = ctx->blas_lt;
  *ws = ctx->blas_ws;
  *ws_size = FC_BLAS_WORKSPACE;
  return FL_OK;
}
