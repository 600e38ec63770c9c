/* The host's CUDA stream (fl_context_set_stream, flame_lua_set_stream) and record-stream semantics in the
 * caching allocator (fl_tensor_record_stream). Linked with the binding and, in a CUDA build, the CUDA runtime
 * (CMake target test_cuda_stream); the argument checks run everywhere, the rest only with a GPU.
 *
 * Ordering is tested without timing: a host function queued on the host's stream (a "gate") holds the stream
 * until a helper thread opens it. Work that flame queues on that stream waits behind the gate (and behind the
 * host's own work queued before it), while work on any other stream runs at once; so a value read after the
 * gate opens tells which stream an op ran on, whatever the speed of the GPU. The gate's thread opens it after
 * GATE_MS in any case, so that a wrong implementation fails a check instead of hanging. */
#include "check.h"
#include "flame_lua.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if FLAME_HAVE_CUDA
#include <cuda_runtime.h>
#endif

static const fl_device CUDA0 = {FL_CUDA, 0};

/* ---- argument checks: any build, any machine ---- */
static void argument_checks(void) {
  fl_context *c = NULL;
  OK(fl_context_new(&c));
  int dummy;
  fl_status st = fl_context_set_stream(c, FL_CPU_DEVICE, &dummy);
  CHECK(st == FL_EDEVICE && contains(fl_last_error(), "set_stream: a stream is for a CUDA device, not cpu"),
        "a stream for the CPU is refused: %s", fl_last_error());
  st = fl_context_set_stream(c, (fl_device){FL_CUDA, 99}, &dummy);
  CHECK(st == FL_EDEVICE && contains(fl_last_error(), "set_stream: cuda:99 does not exist"),
        "a stream for a device that does not exist is refused: %s", fl_last_error());
  CHECK(fl_context_stream(c, CUDA0) == NULL && fl_context_stream(NULL, CUDA0) == NULL,
        "no stream is set until the host sets one");
  int64_t shape[1] = {4};
  fl_tensor *t = NULL;
  OK(fl_zeros(1, shape, opts(FL_F32, false), &t));
  OK(fl_tensor_record_stream(t, &dummy)); /* a CPU tensor: nothing to record */
  fl_release(t);
  fl_context_release(c);
}

#if FLAME_HAVE_CUDA
#define GATE_MS 400

/* ---- the gate ---- */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int open;
  pthread_t opener;
} gate;

static void CUDART_CB gate_wait(void *p) { /* runs on CUDA's callback thread: no CUDA calls here */
  gate *g = p;
  pthread_mutex_lock(&g->mu);
  while (!atomic_load(&g->open)) pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void *gate_timer(void *p) {
  gate *g = p;
  struct timespec ts = {GATE_MS / 1000, (long)(GATE_MS % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  pthread_mutex_lock(&g->mu);
  atomic_store(&g->open, 1);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

/* Holds s until GATE_MS from now. */
static bool gate_close(gate *g, cudaStream_t s) {
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  atomic_store(&g->open, 0);
  if (cudaLaunchHostFunc(s, gate_wait, g) != cudaSuccess) return false;
  return pthread_create(&g->opener, NULL, gate_timer, g) == 0;
}

static void gate_join(gate *g) {
  pthread_join(g->opener, NULL);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}

static void CUDART_CB set_flag(void *p) { atomic_store((atomic_int *)p, 1); }

static cudaStream_t new_stream(void) {
  cudaStream_t s = NULL;
  cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  CHECK(e == cudaSuccess, "cudaStreamCreateWithFlags: %s", cudaGetErrorString(e));
  return s;
}

static fl_opts cuda_f32(void) {
  fl_opts o = opts(FL_F32, false);
  o.device = CUDA0;
  return o;
}

/* Every element of t (f32) equals want. */
static bool all_equal(const fl_tensor *t, float want) {
  int64_t n = t ? fl_numel(t) : 0;
  float *v = malloc(sizeof *v * (size_t)(n ? n : 1));
  bool ok = t && v && fl_to_host(t, v) == FL_OK;
  for (int64_t i = 0; ok && i < n; i++)
    if (v[i] != want) {
      printf("       element %lld: got %g, expected %g\n", (long long)i, v[i], want);
      ok = false;
    }
  free(v);
  return ok;
}

/* ---- a state's work goes on its stream, behind the host's work there ---- */
static void ordering(fl_context *c, cudaStream_t s) {
  int64_t n[1] = {1 << 16}, mm[2] = {64, 64};
  fl_tensor *x = NULL, *y = NULL, *a = NULL, *p = NULL, *warm = NULL;
  OK(fl_full(1, n, 3.0, cuda_f32(), &x));
  OK(fl_full(2, mm, 1.0, cuda_f32(), &a));
  OK(fl_matmul(a, a, &warm)); /* the stream's cuBLAS handle, made before any gate */
  fl_release(warm);
  /* and the elementwise kernel's first launch: CUDA's lazy module loading synchronises the context when it loads
   * a module, which the H200 run showed as the one "did not wait" failure (test_cuda_stream.c:132) */
  OK(fl_binary_scalar(FL_ADD, x, 1.0, false, &warm));
  fl_release(warm);
  OK(fl_synchronize(CUDA0));

  /* an elementwise op and its read-back: zero (the host's memset first, then + 1), never 4 */
  gate g;
  CHECK(gate_close(&g, s), "the gate is queued on the host's stream");
  cudaError_t e = cudaMemsetAsync(fl_tensor_data(x), 0, (size_t)n[0] * 4, s);
  OK(fl_binary_scalar(FL_ADD, x, 1.0, false, &y));
  CHECK(!atomic_load(&g.open), "queuing the op did not wait for the gated stream");
  CHECK(e == cudaSuccess && all_equal(y, 1.0f), "x + 1 ran on the host's stream after the host's memset of x");
  gate_join(&g);

  /* cuBLAS on the same stream: zeros @ zeros, never 64 */
  CHECK(gate_close(&g, s), "the gate is queued again");
  e = cudaMemsetAsync(fl_tensor_data(a), 0, 64 * 64 * 4, s);
  OK(fl_matmul(a, a, &p));
  CHECK(!atomic_load(&g.open), "queuing the GEMM did not wait for the gated stream");
  CHECK(e == cudaSuccess && all_equal(p, 0.0f), "the GEMM ran on the host's stream after the host's memset");
  gate_join(&g);

  /* fl_synchronize waits for the state's stream: a flag the stream sets after the op is set when it returns */
  atomic_int flag = 0;
  fl_release(y);
  y = NULL;
  CHECK(gate_close(&g, s), "the gate is queued again");
  OK(fl_binary_scalar(FL_MUL, x, 2.0, false, &y));
  e = cudaLaunchHostFunc(s, set_flag, &flag);
  OK(fl_synchronize(CUDA0));
  CHECK(e == cudaSuccess && atomic_load(&flag) == 1, "fl_synchronize waited for the host's stream");
  gate_join(&g);
  fl_release(x), fl_release(y), fl_release(a), fl_release(p);
}

/* ---- convolutions (cuDNN, its handle rebound to the stream, or im2col + GEMM) go on the stream ---- */
static void convolution(fl_context *c, cudaStream_t s) {
  int64_t xs[4] = {1, 4, 16, 16}, ws[4] = {8, 4, 3, 3};
  fl_tensor *x = NULL, *w = NULL, *y = NULL;
  fl_conv_params p = fl_conv_default_params();
  OK(fl_full(4, xs, 1.0, cuda_f32(), &x));
  OK(fl_full(4, ws, 1.0, cuda_f32(), &w));
  OK(fl_conv(2, x, w, NULL, &p, &y)); /* chooses and caches the algorithm (cuDNN's search waits) before any gate */
  OK(fl_synchronize(CUDA0));
  fl_release(y);
  y = NULL;
  fl_context *prev = fl_context_enter(NULL); /* on flame's own stream: the cuDNN handle is rebound there ... */
  OK(fl_conv(2, x, w, NULL, &p, &y));
  CHECK(all_equal(y, 36.0f), "the convolution on flame's own stream: 4 * 3 * 3 ones");
  fl_release(y);
  y = NULL;
  fl_context_enter(prev); /* ... and back to the host's stream */
  gate g;
  CHECK(gate_close(&g, s), "the gate is queued");
  cudaError_t e = cudaMemsetAsync(fl_tensor_data(x), 0, 4 * 16 * 16 * 4, s);
  OK(fl_conv(2, x, w, NULL, &p, &y));
  CHECK(!atomic_load(&g.open), "queuing the convolution did not wait for the gated stream");
  CHECK(e == cudaSuccess && all_equal(y, 0.0f), "the convolution ran on the host's stream after the host's memset");
  gate_join(&g);
  (void)c;
  fl_release(x), fl_release(w), fl_release(y);
}

/* ---- two contexts may share a stream: the first unset leaves it bound for the other ---- */
static void shared_stream(fl_context *c, cudaStream_t s) {
  fl_context *c2 = NULL;
  OK(fl_context_new(&c2));
  OK(fl_context_set_stream(c2, CUDA0, s));
  OK(fl_context_set_stream(c2, CUDA0, NULL));
  fl_context_release(c2);
  fl_context *prev = fl_context_enter(c);
  int64_t mm[2] = {32, 32};
  fl_tensor *a = NULL, *p = NULL;
  OK(fl_full(2, mm, 1.0, cuda_f32(), &a));
  OK(fl_matmul(a, a, &p)); /* the stream's cuBLAS handle is still there */
  CHECK(all_equal(p, 32.0f), "the other context still works on the shared stream");
  fl_release(a), fl_release(p);
  fl_context_enter(prev);
}

/* ---- pageable host-to-device copies (the pinned staging ring) go on the stream too ---- */
static void staged_copy(cudaStream_t s) {
  int64_t n[1] = {1 << 20}; /* 4 MiB: through the staging ring */
  float *src = malloc(sizeof *src * (size_t)n[0]);
  fl_tensor *dst = NULL, *warm = NULL;
  for (int64_t i = 0; src && i < n[0]; i++) src[i] = 2.0f;
  OK(fl_from_host(src, 1, n, cuda_f32(), &warm)); /* makes the ring before any gate */
  OK(fl_empty(1, n, cuda_f32(), &dst));
  OK(fl_synchronize(CUDA0));
  fl_tensor *host = NULL;
  OK(fl_from_host(src, 1, n, opts(FL_F32, false), &host));
  gate g;
  CHECK(gate_close(&g, s), "the gate is queued");
  cudaError_t e = cudaMemsetAsync(fl_tensor_data(dst), 0, (size_t)n[0] * 4, s);
  OK(fl_copy_(dst, host)); /* the memset first, then the copy: 2, never 0 */
  CHECK(!atomic_load(&g.open), "the staged copy did not wait for the gated stream");
  CHECK(e == cudaSuccess && all_equal(dst, 2.0f), "the staged host-to-device copy ran on the host's stream");
  gate_join(&g);
  fl_release(dst), fl_release(warm), fl_release(host);
  free(src);
}

/* ---- an index error of a kernel on the stream is reported by the state's synchronize ---- */
static void index_errors(fl_context *c) {
  double xv[3] = {1, 2, 3}, iv[2] = {0, 5};
  int64_t s3[1] = {3}, s2[1] = {2};
  fl_tensor *xc = from(xv, 1, s3, FL_F32, false), *ic = from(iv, 1, s2, FL_I64, false);
  fl_tensor *x = NULL, *idx = NULL, *out = NULL;
  OK(fl_to_device(xc, CUDA0, &x));
  OK(fl_to_device(ic, CUDA0, &idx));
  fl_status st = fl_index_select(x, 0, idx, &out);
  if (st == FL_EINDEX) { /* a front-end that checks indices itself leaves nothing to the kernel */
    printf("note - index_select checked the index before the kernel: %s\n", fl_last_error());
  } else {
    CHECK(st == FL_OK, "index_select with a bad index is queued: %s", st ? fl_last_error() : "");
    fl_context *prev = fl_context_enter(NULL);
    OK(fl_synchronize(CUDA0)); /* flame's own stream saw no bad index */
    fl_context_enter(prev);
    st = fl_synchronize(CUDA0);
    CHECK(st == FL_EINDEX && contains(fl_last_error(), "index_select: index 5 out of range"),
          "the bad index is reported at the state's synchronize: %s", fl_last_error());
    OK(fl_synchronize(CUDA0)); /* reported once */
  }
  (void)c;
  fl_release(xc), fl_release(ic), fl_release(x), fl_release(idx), fl_release(out);
}

/* ---- record-stream: a block used on another stream is not reused before that work is done ---- */
static void record_stream(fl_context *ca, cudaStream_t sa, fl_context *cb, cudaStream_t sb, bool record) {
  const char *how = record ? "recorded" : "not recorded";
  int64_t n[1] = {3 * (1 << 20) + 77}; /* a bin of its own (about 12 MiB) */
  fl_tensor *x = NULL, *y = NULL, *z = NULL, *w = NULL;
  fl_context *prev = fl_context_enter(ca);
  OK(fl_full(1, n, 5.0, cuda_f32(), &x)); /* allocated on stream A */
  OK(fl_synchronize(CUDA0));
  void *xp = fl_tensor_data(x);
  fl_memory_stats before, after;

  fl_context_enter(cb);
  gate g;
  CHECK(gate_close(&g, sb), "the gate is queued on stream B");
  OK(fl_binary_scalar(FL_MUL, x, 2.0, false, &y)); /* reads x on B, behind the gate */
  if (record) OK(fl_tensor_record_stream(x, NULL)); /* NULL: the current state's stream, B */

  fl_context_enter(ca);
  OK(fl_memory_stats_get(CUDA0, &before));
  fl_release(x); /* x's last reference: freed while B has not read it yet */
  OK(fl_memory_stats_get(CUDA0, &after));
  CHECK(after.allocated == before.allocated - (int64_t)((n[0] * 4 + (2 << 20) - 1) / (2 << 20) * (2 << 20)) &&
            after.reserved == before.reserved,
        "%s: the free counts at once in allocated (%lld -> %lld), the block stays reserved", how,
        (long long)before.allocated, (long long)after.allocated);
  OK(fl_full(1, n, 7.0, cuda_f32(), &z)); /* a request of the same bin on A */
  bool gated = !atomic_load(&g.open);
  CHECK(gated, "%s: stream B is still held by the gate when A allocates", how);
  if (record)
    CHECK(fl_tensor_data(z) != xp, "recorded: A does not get x's block while B's work on it is queued");
  else
    CHECK(fl_tensor_data(z) == xp, "not recorded: A gets x's block at once (the hazard the record prevents)");

  fl_context_enter(cb);
  if (record) CHECK(all_equal(y, 10.0f), "recorded: B read x intact (2 * 5) after A's fill of its new block");
  else {
    float v0 = 0;
    fl_tensor *first = NULL;
    if (fl_narrow(y, 0, 0, 1, &first) == FL_OK && fl_to_host(first, &v0) == FL_OK)
      printf("note - not recorded: B read %g (2 * 5 intact, 2 * 7 overwritten by A)\n", v0);
    fl_release(first);
  }
  gate_join(&g);
  OK(fl_synchronize(CUDA0)); /* B is done */

  fl_context_enter(ca);
  if (record) { /* now the event has completed: the next request on A gets the block back */
    OK(fl_empty(1, n, cuda_f32(), &w));
    CHECK(w && fl_tensor_data(w) == xp, "recorded: once B's work is done, A reuses x's block");
  }
  OK(fl_synchronize(CUDA0));
  fl_release(y), fl_release(z), fl_release(w);
  fl_context_enter(prev);
}

/* ---- memory stats and empty_cache with host streams and recorded blocks ---- */
static void stats_settle(void) {
  OK(fl_synchronize(CUDA0));
  OK(fl_empty_cache(CUDA0));
  fl_memory_stats st;
  OK(fl_memory_stats_get(CUDA0, &st));
  CHECK(st.reserved == st.allocated && st.allocated >= 0,
        "after empty_cache nothing is cached or pending: reserved %lld == allocated %lld", (long long)st.reserved,
        (long long)st.allocated);
}

/* ---- an engine state (flame_lua.h) with the host's stream ---- */
static void lua_state(cudaStream_t s) {
  flame_lua_state *S = NULL;
  OK(flame_lua_open(NULL, &S));
  if (!S) return;
  fl_status st = flame_lua_set_stream(S, 99, s);
  CHECK(st == FL_EDEVICE && contains(flame_lua_error(S), "set_stream: cuda:99 does not exist"),
        "flame_lua_set_stream names a bad device: %s", flame_lua_error(S));
  OK(flame_lua_set_stream(S, 0, s));
  CHECK(fl_context_stream(flame_lua_context(S), CUDA0) == s, "the state's context has the stream");
  OK(flame_lua_run(S, "function f(x) return x + 1 end", "=f"));
  int64_t n[1] = {4096};
  fl_tensor *x = NULL, *out = NULL, *warm = NULL;
  OK(fl_full(1, n, 3.0, cuda_f32(), &x)); /* made by the host on flame's own stream */
  OK(fl_synchronize(CUDA0));
  OK(flame_lua_call(S, "f", 1, &x, 1, &warm)); /* the first call warms up whatever the state makes */
  fl_release(warm);
  OK(fl_synchronize(CUDA0));
  gate g;
  CHECK(gate_close(&g, s), "the gate is queued on the state's stream");
  cudaError_t e = cudaMemsetAsync(fl_tensor_data(x), 0, (size_t)n[0] * 4, s);
  OK(flame_lua_call(S, "f", 1, &x, 1, &out));
  CHECK(!atomic_load(&g.open), "the call did not wait for the gated stream");
  fl_context *prev = fl_context_enter(flame_lua_context(S)); /* read back on the state's stream */
  CHECK(e == cudaSuccess && all_equal(out, 1.0f), "the state's op ran on its stream after the host's memset");
  fl_context_enter(prev);
  gate_join(&g);
  fl_release(x); /* recorded by the call on the state's stream */
  flame_lua_close(S); /* unsets the stream: the host may destroy it now */
  CHECK(all_equal(out, 1.0f), "a result kept after the state closed is intact");
  fl_release(out);
}

static void gpu_checks(void) {
  cudaStream_t s = new_stream(), sb = new_stream();
  fl_context *c = NULL, *cb = NULL;
  OK(fl_context_new(&c));
  OK(fl_context_new(&cb));
  OK(fl_context_set_stream(c, CUDA0, s));
  OK(fl_context_set_stream(cb, CUDA0, sb));
  CHECK(fl_context_stream(c, CUDA0) == s && fl_context_stream(cb, CUDA0) == sb, "each context has its stream");
  fl_context *prev = fl_context_enter(c);
  ordering(c, s);
  convolution(c, s);
  staged_copy(s);
  index_errors(c);
  fl_context_enter(prev);
  shared_stream(c, s);
  record_stream(c, s, cb, sb, true);
  record_stream(c, s, cb, sb, false);
  stats_settle();

  /* A tensor made on a stream outlives the stream's unset and destruction; the context then uses flame's own. */
  fl_context_enter(c);
  int64_t n[1] = {1000};
  fl_tensor *keep = NULL, *after = NULL;
  OK(fl_full(1, n, 4.0, cuda_f32(), &keep));
  OK(fl_context_set_stream(c, CUDA0, NULL));
  CHECK(fl_context_stream(c, CUDA0) == NULL, "unset: the context is back on flame's own stream");
  cudaStreamDestroy(s);
  OK(fl_binary_scalar(FL_ADD, keep, 1.0, false, &after));
  CHECK(all_equal(after, 5.0f), "work after the unset runs on flame's own stream, with the tensor made before");
  fl_release(keep), fl_release(after);
  fl_context_enter(prev);
  OK(fl_context_set_stream(cb, CUDA0, NULL));
  cudaStreamDestroy(sb);
  stats_settle();

  cudaStream_t sl = new_stream();
  lua_state(sl);
  cudaStreamDestroy(sl);
  stats_settle();
  fl_context_release(c);
  fl_context_release(cb);
}
#endif

int main(void) {
  argument_checks();
#if FLAME_HAVE_CUDA
  if (fl_device_available(FL_CUDA)) gpu_checks();
  else printf("note - no CUDA device: the stream checks are skipped\n");
#else
  printf("note - built without CUDA: the stream checks are skipped\n");
#endif
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
