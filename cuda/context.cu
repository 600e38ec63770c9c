/* Device contexts: lazy creation, the queues (the own stream and the host's,
 * each with its sticky kernel error word and cuBLAS handle), and release at
 * exit. */
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

/* A queue's error word and its pinned mirror, on `stream` (the caller's). */
static fl_status queue_init(fc_queue *q, cudaStream_t stream) {
  q->stream = stream;
  FC_CUDA(cudaMalloc((void **)&q->kerr, FC_KERR_WORDS * sizeof *q->kerr));
  FC_CUDA(cudaMemsetAsync(q->kerr, 0, FC_KERR_WORDS * sizeof *q->kerr, stream));
  FC_CUDA(cudaMallocHost((void **)&q->kerr_host, FC_KERR_WORDS * sizeof *q->kerr_host));
  return FL_OK;
}

/* Frees what queue_init and the queue's first GEMM made (the stream's work must be done); not the stream. */
static void queue_free(fc_context *c, fc_queue *q) {
  if (q->blas) fc_blas.cublasDestroy_v2(q->blas);
  if (q->blas_ws) fc_free(c, q->blas_ws, q->blas_ws_size);
  if (q->kerr) cudaFree(q->kerr);
  if (q->kerr_host) cudaFreeHost(q->kerr_host);
  q->blas = NULL, q->blas_ws = NULL, q->blas_ws_size = 0, q->kerr = NULL, q->kerr_host = NULL;
  (void)cudaGetLastError();
}

/* Release order: wait for queued work, then cuBLAS, cached memory, stream.
 * If the runtime is already unloading, the first call says so and we leave
 * everything to the process teardown rather than call into a dying driver.
 * Host queues still attached are left alone: their streams may be gone. */
static void release_context(fc_context *c) {
  if (!c->alive) return;
  c->alive = false;
  if (cudaSetDevice(c->device) != cudaSuccess || cudaStreamSynchronize(c->own.stream) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  if (c->blas_lt) fc_blas.cublasLtDestroy((cublasLtHandle_t)c->blas_lt);
  queue_free(c, &c->own);
  fc_allocator_release(c);
  fc_staging_release(c->staging);
  cudaStreamDestroy(c->own.stream);
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
  cudaStream_t stream = NULL;
#define STEP(call)                        \
  if ((e = (call)) != cudaSuccess) {      \
    st = fc_cuda_error(e, #call);         \
    goto fail;                            \
  }
  STEP(cudaSetDevice(device));
  STEP(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device));
  /* Non-blocking: work others put on the legacy default stream does not
   * serialise with ours. */
  STEP(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
#undef STEP
  st = queue_init(&c->own, stream);
  if (st == FL_OK) st = fc_allocator_create(device, &c->alloc);
  if (st != FL_OK) goto fail;
  c->alive = true;
  *out = c;
  return FL_OK;
fail:
  queue_free(c, &c->own);
  if (stream) cudaStreamDestroy(stream);
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

/* The cuBLAS workspace of a queue's handle: FC_BLAS_WORKSPACE from our allocator, or FLAME_CUBLAS_WS_MB
 * megabytes (0: none of ours, cuBLAS keeps its own default pool; for measuring the two against each other). */
static size_t blas_ws_bytes(void) {
  const char *e = getenv("FLAME_CUBLAS_WS_MB");
  if (!e || !*e) return FC_BLAS_WORKSPACE;
  char *end;
  long mb = strtol(e, &end, 10);
  return (*end || mb < 0 || mb > 4096) ? FC_BLAS_WORKSPACE : (size_t)mb << 20;
}

fl_status fc_blas_handle(fc_context *ctx, cublasHandle_t *out) {
  fc_queue *q = fc_queue_cur(ctx);
  if (!q->blas) {
    FL_TRY(fc_blas_load()); /* the first GEMM loads cuBLAS: fc_blas is usable from here on */
    cublasHandle_t h;
    cublasStatus_t s = fc_blas.cublasCreate_v2(&h);
    if (s != CUBLAS_STATUS_SUCCESS) return fc_blas_error(s, "cublasCreate");
    void *ws = NULL;
    size_t ws_size = blas_ws_bytes();
    fl_status st = ws_size ? fc_malloc(ctx, ws_size, &ws) : FL_OK; /* on q's stream, which alone uses it */
    if (st == FL_OK && (s = fc_blas.cublasSetStream_v2(h, q->stream)) != CUBLAS_STATUS_SUCCESS)
      st = fc_blas_error(s, "cublasSetStream");
    if (st == FL_OK && ws && (s = fc_blas.cublasSetWorkspace_v2(h, ws, ws_size)) != CUBLAS_STATUS_SUCCESS)
      st = fc_blas_error(s, "cublasSetWorkspace");
    if (st != FL_OK) {
      if (ws) fc_free(ctx, ws, ws_size);
      fc_blas.cublasDestroy_v2(h);
      return st;
    }
    q->blas = h;
    q->blas_ws = ws;
    q->blas_ws_size = ws ? ws_size : 0;
  }
  *out = q->blas;
  return FL_OK;
}

static const char *kerr_names[FC_KERR_KINDS] = {"index_select", "index_add_", "gather", "scatter_add",
                                                         "cross_entropy"};

fl_status fc_queue_sync_and_check(fc_context *ctx, fc_queue *q) {
  bool armed = q->kerr_armed;
  if (armed)
    FC_CUDA(cudaMemcpyAsync(q->kerr_host, q->kerr, FC_KERR_WORDS * sizeof *q->kerr, cudaMemcpyDeviceToHost,
                            q->stream));
  FC_CUDA(cudaStreamSynchronize(q->stream));
  if (!armed) return FL_OK;
  q->kerr_armed = false;
  unsigned long long bits = q->kerr_host[0];
  if (!bits) return FL_OK;
  long long bad = (long long)q->kerr_host[2], size = (long long)q->kerr_host[3];
  FC_CUDA(cudaMemsetAsync(q->kerr, 0, FC_KERR_WORDS * sizeof *q->kerr, q->stream));
  char ops[96] = "";
  size_t k = 0;
  for (int i = 0; i < FC_KERR_KINDS; i++)
    if (bits & (1ULL << i)) k += snprintf(ops + k, sizeof ops - k, "%s%s", k ? ", " : "", kerr_names[i]);
  return fl_error(FL_EINDEX,
                  "%s: index %lld out of range for a dim of size %lld (detected by a kernel on cuda:%d, "
                  "reported at this synchronising call: the result of that op is invalid)",
                  ops, (long long)fl_mdim(bad), size, ctx->device); /* bad is 0-based: the kernels report position - base */
}

fl_status fc_sync_and_check(fc_context *ctx) { return fc_queue_sync_and_check(ctx, fc_queue_cur(ctx)); }

/* cuBLASLt shares the current queue's cuBLAS workspace: both run on that
 * queue's one stream, so their uses of it are ordered. */
fl_status fc_blas_lt(fc_context *ctx, void **handle, void **ws, size_t *ws_size) {
  cublasHandle_t h;
  FL_TRY(fc_blas_handle(ctx, &h)); /* creates the workspace */
  if (!ctx->blas_lt) {
    pthread_mutex_lock(&ctx_mu); /* queues on several threads may make their first GEMM at once */
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (!ctx->blas_lt) {
      cublasLtHandle_t lt;
      s = fc_blas.cublasLtCreate(&lt);
      if (s == CUBLAS_STATUS_SUCCESS) ctx->blas_lt = lt;
    }
    pthread_mutex_unlock(&ctx_mu);
    if (s != CUBLAS_STATUS_SUCCESS) return fc_blas_error(s, "cublasLtCreate");
  }
  *handle = ctx->blas_lt;
  *ws = fc_queue_cur(ctx)->blas_ws;
  *ws_size = fc_queue_cur(ctx)->blas_ws_size;
  return FL_OK;
}

/* ---- the host's streams ---- */

/* `later` waits on the GPU for what is queued on `earlier` now. */
static fl_status order_after(cudaStream_t later, cudaStream_t earlier) {
  if (later == earlier) return FL_OK;
  cudaEvent_t ev;
  FC_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e = cudaEventRecord(ev, earlier);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(later, ev, 0);
  cudaEventDestroy(ev); /* released once the wait is done */
  return e == cudaSuccess ? FL_OK : fc_cuda_error(e, "ordering the new stream after the old one");
}

/* A host queue for `stream`: one given back earlier (its error word, cuBLAS handle and workspace kept, since
 * freeing them would wait for the whole device), else a new one. Caller holds ctx_mu. */
static fl_status queue_for(fc_context *ctx, cudaStream_t stream, fc_queue **out) {
  fc_queue *q = ctx->spare;
  if (q) {
    ctx->spare = q->next;
    q->stream = stream;
    cublasStatus_t s = q->blas ? fc_blas.cublasSetStream_v2(q->blas, stream) : CUBLAS_STATUS_SUCCESS;
    fl_status st = s == CUBLAS_STATUS_SUCCESS ? FL_OK : fc_blas_error(s, "cublasSetStream");
    cudaError_t e = st == FL_OK ? cudaMemsetAsync(q->kerr, 0, FC_KERR_WORDS * sizeof *q->kerr, stream) : cudaSuccess;
    if (e != cudaSuccess) st = fc_cuda_error(e, "cudaMemsetAsync (the error word)");
    if (st != FL_OK) {
      q->next = ctx->spare;
      ctx->spare = q;
      return st;
    }
  } else {
    q = (fc_queue *)calloc(1, sizeof *q);
    if (!q) return fl_error(FL_ENOMEM, "out of host memory");
    fl_status st = queue_init(q, stream);
    if (st != FL_OK) {
      queue_free(ctx, q);
      free(q);
      return st;
    }
  }
  q->next = ctx->hosted;
  ctx->hosted = q;
  *out = q;
  return FL_OK;
}

fl_status fc_stream_attach(int device, cudaStream_t stream, fc_queue *from, fc_queue **out) {
  fc_context *ctx;
  FL_TRY(fc_context_get(device, &ctx));
  fl_status st = FL_OK;
  pthread_mutex_lock(&ctx_mu);
  fc_queue *q = ctx->hosted;
  while (q && q->stream != stream) q = q->next;
  if (!q) st = fl_error_context(queue_for(ctx, stream, &q), "set_stream");
  if (st == FL_OK) q->refs++;
  pthread_mutex_unlock(&ctx_mu);
  if (st == FL_OK) st = fl_error_context(order_after(stream, from ? from->stream : ctx->own.stream), "set_stream");
  if (st != FL_OK) {
    char why[512]; /* the detach's own failure (the stream is bad) must not hide the first one */
    snprintf(why, sizeof why, "%s", fl_last_error());
    if (q && q->refs) (void)fc_stream_detach(device, q);
    return fl_error(st, "%s", why);
  }
  *out = q;
  return FL_OK;
}

/* The last detach waits for the stream (reporting an index error its kernels flagged), hands what the allocator
 * cached for the stream to the own queue (all of its work is done) and keeps the queue for a later attach. */
fl_status fc_stream_detach(int device, fc_queue *q) {
  fc_context *ctx;
  FL_TRY(fc_context_get(device, &ctx));
  pthread_mutex_lock(&ctx_mu);
  bool last = --q->refs == 0;
  if (last) {
    fc_queue **p = &ctx->hosted;
    while (*p != q) p = &(*p)->next;
    *p = q->next;
  }
  pthread_mutex_unlock(&ctx_mu);
  if (!last) return FL_OK;
  fl_status st = fc_queue_sync_and_check(ctx, q);
  q->kerr_armed = false;
  fc_allocator_forget_queue(ctx, q);
  pthread_mutex_lock(&ctx_mu);
  q->stream = NULL;
  q->next = ctx->spare;
  ctx->spare = q;
  pthread_mutex_unlock(&ctx_mu);
  return st;
}
