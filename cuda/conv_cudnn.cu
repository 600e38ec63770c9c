/* The direct convolution path of the CUDA backend (conv_direct) through cuDNN,
 * an optional fast path beside the im2col + GEMM one: the legacy convolution
 * API (cudnnConvolutionForward / BackwardData / BackwardFilter) here, or with
 * FLAME_CUDNN_API=graph the backend (graph) API of conv_cudnn_graph.cu, both
 * behind one plan cache.
 *
 * cuDNN is loaded with dlopen on first use, so the build needs only cudnn.h
 * (FLAME_HAVE_CUDNN) and a process without libcudnn.so.9 still runs: supports()
 * then declines and the front-end takes the im2col path.
 *
 * Per device: one cuDNN handle, bound to the current queue's stream before
 * each call (fc_stream: the own stream or a host's), and a cache of
 * plans, one per (direction, dtype, geometry, math mode, pointer alignment, API),
 * each holding its descriptors and the algorithm chosen for it (the graph
 * API: its execution plan). The algorithm is measured once per key
 * (cudnnFind*AlgorithmEx, what PyTorch's benchmark mode does; host-blocking,
 * once) or, with FLAME_CUDNN_FIND=0, taken from cuDNN's heuristics
 * (cudnnGet*Algorithm_v7). A cached call only queues the convolution: no host
 * synchronisation, no descriptor work; its workspace comes from the caching
 * allocator and goes back after the call. */
#include "allocator.cuh"
#include "ops.cuh"
#include <atomic>
#include <limits.h>
#include <pthread.h>

#if FLAME_HAVE_CUDNN
#include "conv_cudnn.cuh"
#include "dynlib.cuh"
#include <stdio.h>
#include <stdlib.h>

namespace fc_dnn {

dnn_lib lib;

namespace {

bool lib_ok;
pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* FLAME_CUDNN_LOG=1: the library's version once, and every new plan's candidates and choice, on stderr. */
bool log_enabled(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("FLAME_CUDNN_LOG");
    on = e && e[0] == '1';
  }
  return on == 1;
}

/* The legacy API is there from cuDNN 8 on, the backend calls we use from 8 on too; 9 is what we build against. */
void load_lib(void) {
  static const char *const names[] = {"libcudnn.so.9", "libcudnn.so", nullptr};
  char err[256];
  void *h = fc_dlopen(names, err, sizeof err);
  if (!h) return;
  bool all = true;
#define FC_DNN_SYM(f) all = all && fc_dlsym(h, #f, lib.f);
  FC_DNN_FUNCS(FC_DNN_SYM)
#undef FC_DNN_SYM
  lib_ok = all && lib.cudnnGetVersion() / 10000 == CUDNN_MAJOR;
  if (all && log_enabled())
    fprintf(stderr, "flame cuDNN: version %zu loaded (built against %d)%s\n", lib.cudnnGetVersion(), (int)CUDNN_VERSION,
            lib_ok ? "" : ", another major version: not used");
  if (!lib_ok) dlclose(h);
}

bool have_lib(void) {
  pthread_once(&lib_once, load_lib);
  return lib_ok;
}

} // namespace

/* ---- shared with conv_cudnn_graph.cu (conv_cudnn.cuh) ---- */

/* The largest workspace an algorithm may use: a sixteenth of the device's
 * memory, at least 1 GiB (PyTorch lets cuDNN use what is free). A fixed 1 GiB
 * had been enough for the 3x3 / 3x3x3 winners at training batches, but at the
 * UNet sampler's batch of 2000 the tensor-core algorithms need 1.2-1.6 GB, and
 * without them cuDNN's best was 5-20x slower: sampling ran at 0.55x PyTorch,
 * 1.30x with the room (bench/nn/unet.lua). Find measures within it, on memory
 * it could actually get (find_workspace), so a smaller device is not asked
 * for more than it has. FLAME_CUDNN_WS_MB sets it. */
size_t ws_cap(int device) {
  static std::atomic<size_t> caps[FC_DNN_MAX_DEVICES];
  size_t cap = device >= 0 && device < FC_DNN_MAX_DEVICES ? caps[device].load() : 0;
  if (cap) return cap;
  const char *e = getenv("FLAME_CUDNN_WS_MB");
  long long mb = e ? atoll(e) : 0;
  size_t free_b = 0, total = 0;
  if (mb > 0) cap = (size_t)mb << 20;
  else cap = cudaMemGetInfo(&free_b, &total) == cudaSuccess && total / 16 > ((size_t)1 << 30) ? total / 16
                                                                                              : (size_t)1 << 30;
  if (device >= 0 && device < FC_DNN_MAX_DEVICES) caps[device].store(cap);
  return cap;
}

const char *dir_name(fl_conv_dir d) {
  return d == FL_CONV_FORWARD ? "forward" : d == FL_CONV_DATA ? "input gradient" : "weight gradient";
}

/* A failed cuDNN call: the op, cuDNN's words and the problem. A bad-parameter
 * or not-supported status means cuDNN cannot take this case: FL_EUNSUPPORTED,
 * on which the front-end takes the im2col path (unless conv_algo is "direct"). */
fl_status dnn_error(cudnnStatus_t s, const char *call, fl_conv_dir dir, const fl_tensor *out, const fl_tensor *a,
                    const fl_tensor *b, const fl_conv_geom *g) {
  (void)cudaGetLastError();
  fl_desc dout = fl_describe(out), da = fl_describe(a), db = fl_describe(b);
  int d = g->nsp, code = (int)s;
  bool cannot = (code >= 2000 && code < 4000); /* the CUDNN_STATUS_BAD_PARAM* and CUDNN_STATUS_NOT_SUPPORTED* families */
  return fl_error(cannot ? FL_EUNSUPPORTED : FL_EBACKEND,
                  "conv%dd %s (cuDNN): %s failed: %s (%d); out %s, a %s, b %s, groups %lld, stride %lld,%lld,%lld, "
                  "padding %lld,%lld,%lld, dilation %lld,%lld,%lld (first %d used)",
                  d, dir_name(dir), call, lib.cudnnGetErrorString(s), (int)s, dout.s, da.s, db.s,
                  (long long)g->groups, (long long)g->stride[0], (long long)g->stride[1], (long long)g->stride[2],
                  (long long)g->pad[0], (long long)g->pad[1], (long long)g->pad[2], (long long)g->dil[0],
                  (long long)g->dil[1], (long long)g->dil[2], d);
}

cudnnDataType_t dnn_dtype(fl_dtype dt) {
  return dt == FL_F16 ? CUDNN_DATA_HALF : dt == FL_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

nd_geom nd_of(const fl_conv_geom *g) {
  nd_geom r;
  int lead = g->nsp == 1 ? 1 : 0;
  r.nsp = g->nsp + lead;
  for (int i = 0; i < 3; i++) r.in[i] = r.k[i] = r.out[i] = r.stride[i] = r.dil[i] = 1, r.pad[i] = 0;
  for (int i = 0; i < g->nsp; i++) {
    int j = i + lead;
    r.in[j] = (int)g->in[i], r.k[j] = (int)g->k[i], r.out[j] = (int)g->out[i];
    r.stride[j] = (int)g->stride[i], r.pad[j] = (int)g->pad[i], r.dil[j] = (int)g->dil[i];
  }
  return r;
}

/* The first usable candidate (they come best first); a nondeterministic
 * winner (atomics in some backward kernels) gives way to a deterministic
 * candidate measured within 10% of it, so repeated runs usually agree bit
 * for bit at no real cost. f32 without TF32 never takes a tensor-core one. */
int pick(const perf *r, int n, bool measured, bool strict_f32, size_t ws_limit) {
  int best = -1;
  for (int i = 0; i < n; i++) {
    const perf &c = r[i];
    if (c.status != CUDNN_STATUS_SUCCESS || c.memory > ws_limit) continue;
    if (strict_f32 && (c.math == CUDNN_TENSOR_OP_MATH || c.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue;
    if (best < 0) {
      best = i;
      if (!measured || c.deterministic) return i;
    } else if (c.deterministic && c.time <= 1.1f * r[best].time) {
      return i;
    }
  }
  return best;
}

bool find_enabled(void) {
  static int on = -1; /* FLAME_CUDNN_FIND=0: heuristics only, like PyTorch without benchmark mode */
  if (on < 0) {
    const char *e = getenv("FLAME_CUDNN_FIND");
    on = !(e && e[0] == '0');
  }
  return on == 1;
}

/* FLAME_CUDNN_LOG=1: one line per new plan on stderr, with every candidate
 * (algo or engine, status, ms, workspace, deterministic, math type) and the choice. */
void log_choice(const char *api, fl_conv_dir dir, const fl_tensor *out, const fl_conv_geom *g, const perf *r, int n,
                int chosen) {
  if (!log_enabled()) return;
  fl_desc d = fl_describe(out);
  fprintf(stderr, "flame cuDNN plan (%s): conv%dd %s, out %s, groups %lld:", api, g->nsp, dir_name(dir), d.s,
          (long long)g->groups);
  for (int i = 0; i < n; i++)
    fprintf(stderr, " [algo %d status %d %.3f ms ws %zu det %d math %d]", r[i].algo, (int)r[i].status,
            (double)r[i].time, r[i].memory, (int)r[i].deterministic, (int)r[i].math);
  fprintf(stderr, " -> %d\n", chosen < 0 ? -1 : r[chosen].algo);
}

/* ---- the legacy API ---- */

namespace {

dnn_device *devices[FC_DNN_MAX_DEVICES];
pthread_mutex_t dnn_mu = PTHREAD_MUTEX_INITIALIZER;

/* f32 keeps full f32 (FMA kernels, no TF32) unless fl_get_allow_tf32(), as
 * gemm.cu does; the half types may use tensor cores, with f32 accumulation. */
cudnnMathType_t math_of(fl_dtype dt, bool tf32) {
  if (dt != FL_F32) return CUDNN_TENSOR_OP_MATH;
  return tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

/* Every size cuDNN gets is an int: the tensors' numel (supports() checked
 * those) and the geometry's numbers. */
bool geom_fits_int(const fl_conv_geom *g) {
  if (g->nsp < 1 || g->nsp > 3 || g->groups < 1 || g->groups > INT_MAX) return false;
  for (int i = 0; i < g->nsp; i++) {
    const int64_t v[6] = {g->in[i], g->k[i], g->out[i], g->stride[i], g->pad[i], g->dil[i]};
    for (int j = 0; j < 6; j++)
      if (v[j] < 0 || v[j] > INT_MAX) return false;
  }
  return g->n <= INT_MAX && g->cin <= INT_MAX && g->cout <= INT_MAX;
}

/* Contiguous NC(D)HW tensor descriptor. */
cudnnStatus_t set_tensor(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int64_t n, int64_t c, int nsp,
                         const int *sp) {
  int dims[5], strides[5];
  dims[0] = (int)n, dims[1] = (int)c;
  for (int i = 0; i < nsp; i++) dims[2 + i] = sp[i];
  int s = 1;
  for (int i = nsp + 1; i >= 0; i--) strides[i] = s, s *= dims[i];
  return lib.cudnnSetTensorNdDescriptor(d, dt, nsp + 2, dims, strides);
}

void destroy_plan(plan *p) {
  if (p->x) lib.cudnnDestroyTensorDescriptor(p->x);
  if (p->y) lib.cudnnDestroyTensorDescriptor(p->y);
  if (p->w) lib.cudnnDestroyFilterDescriptor(p->w);
  if (p->conv) lib.cudnnDestroyConvolutionDescriptor(p->conv);
  graph_destroy(&p->graph);
  memset(p, 0, sizeof *p);
}

/* The descriptors of a plan: x [n, cin, in], y [n, cout, out], w [cout, cin/groups, k]. */
fl_status make_descriptors(plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                           const fl_conv_geom *g) {
  nd_geom r = nd_of(g);
  cudnnDataType_t dt = dnn_dtype(out->dtype);
  FC_DNN(cudnnCreateTensorDescriptor, (&p->x));
  FC_DNN(cudnnCreateTensorDescriptor, (&p->y));
  FC_DNN(cudnnCreateFilterDescriptor, (&p->w));
  FC_DNN(cudnnCreateConvolutionDescriptor, (&p->conv));
  FC_DNN_CHECK(set_tensor(p->x, dt, g->n, g->cin, r.nsp, r.in), "cudnnSetTensorNdDescriptor");
  FC_DNN_CHECK(set_tensor(p->y, dt, g->n, g->cout, r.nsp, r.out), "cudnnSetTensorNdDescriptor");
  int wdims[5] = {(int)g->cout, (int)(g->cin / g->groups)};
  for (int i = 0; i < r.nsp; i++) wdims[2 + i] = r.k[i];
  FC_DNN(cudnnSetFilterNdDescriptor, (p->w, dt, CUDNN_TENSOR_NCHW, r.nsp + 2, wdims));
  FC_DNN(cudnnSetConvolutionNdDescriptor,
         (p->conv, r.nsp, r.pad, r.stride, r.dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  FC_DNN(cudnnSetConvolutionGroupCount, (p->conv, (int)g->groups));
  FC_DNN(cudnnSetConvolutionMathType, (p->conv, (cudnnMathType_t)math_of(out->dtype, p->key.tf32)));
  return FL_OK;
}

/* ---- algorithms: the three directions behind one interface ---- */

template <class P> int to_perf(const P *r, int n, perf *dst) {
  for (int i = 0; i < n; i++)
    dst[i] = {(int)r[i].algo, r[i].status, r[i].time, r[i].memory, r[i].determinism == CUDNN_DETERMINISTIC,
              r[i].mathType};
  return n;
}

int algo_count(fl_conv_dir dir) {
  return dir == FL_CONV_FORWARD ? (int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT
         : dir == FL_CONV_DATA  ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                                : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

/* The roles of the operands: FORWARD x = a, w = b, y = out; DATA dy = a,
 * w = b, dx = out; WEIGHT x = a, dy = b, dw = out. */
cudnnStatus_t workspace_of(cudnnHandle_t h, const plan *p, fl_conv_dir dir, int algo, size_t *size) {
  switch (dir) {
    case FL_CONV_FORWARD:
      return lib.cudnnGetConvolutionForwardWorkspaceSize(h, p->x, p->w, p->conv, p->y,
                                                         (cudnnConvolutionFwdAlgo_t)algo, size);
    case FL_CONV_DATA:
      return lib.cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w, p->y, p->conv, p->x,
                                                              (cudnnConvolutionBwdDataAlgo_t)algo, size);
    default:
      return lib.cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x, p->y, p->conv, p->w,
                                                                (cudnnConvolutionBwdFilterAlgo_t)algo, size);
  }
}

/* Candidates, best first: measured on the real operands (find; host-blocking,
 * writes out) with ws bytes of workspace, or cuDNN's heuristics. */
cudnnStatus_t candidates(cudnnHandle_t h, const plan *p, fl_conv_dir dir, bool find, void *o, const void *a,
                         const void *b, void *ws, size_t ws_size, perf *res, int *n) {
  const int want = algo_count(dir);
  cudnnStatus_t s;
  *n = 0;
  switch (dir) {
    case FL_CONV_FORWARD: {
      cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      s = find ? lib.cudnnFindConvolutionForwardAlgorithmEx(h, p->x, a, p->w, b, p->conv, p->y, o, want, n, r, ws,
                                                             ws_size)
               : lib.cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->w, p->conv, p->y, want, n, r);
      if (s == CUDNN_STATUS_SUCCESS) to_perf(r, *n, res);
      return s;
    }
    case FL_CONV_DATA: {
      cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      s = find ? lib.cudnnFindConvolutionBackwardDataAlgorithmEx(h, p->w, b, p->y, a, p->conv, p->x, o, want, n, r,
                                                                  ws, ws_size)
               : lib.cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w, p->y, p->conv, p->x, want, n, r);
      if (s == CUDNN_STATUS_SUCCESS) to_perf(r, *n, res);
      return s;
    }
    default: {
      cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      s = find ? lib.cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p->x, a, p->y, b, p->conv, p->w, o, want, n,
                                                                    r, ws, ws_size)
               : lib.cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->conv, p->w, want, n, r);
      if (s == CUDNN_STATUS_SUCCESS) to_perf(r, *n, res);
      return s;
    }
  }
}

cudnnStatus_t execute(cudnnHandle_t h, const plan *p, fl_conv_dir dir, void *o, const void *a, const void *b,
                      void *ws) {
  const float one = 1.0f, zero = 0.0f; /* compute type f32 for every dtype: float scalars */
  switch (dir) {
    case FL_CONV_FORWARD:
      return lib.cudnnConvolutionForward(h, &one, p->x, a, p->w, b, p->conv, (cudnnConvolutionFwdAlgo_t)p->algo,
                                         ws, p->ws, &zero, p->y, o);
    case FL_CONV_DATA:
      return lib.cudnnConvolutionBackwardData(h, &one, p->w, b, p->y, a, p->conv,
                                              (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->ws, &zero, p->x, o);
    default:
      return lib.cudnnConvolutionBackwardFilter(h, &one, p->x, a, p->y, b, p->conv,
                                                (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->ws, &zero, p->w, o);
  }
}

/* Workspace for measuring: what the hungriest algorithm asks (within the
 * cap), less if the device cannot give it. */
size_t find_workspace(cudnnHandle_t h, const plan *p, fl_conv_dir dir, fc_context *ctx, fc_scratch &ws) {
  size_t want = 0;
  for (int i = 0; i < algo_count(dir); i++) {
    size_t s = 0;
    if (workspace_of(h, p, dir, i, &s) == CUDNN_STATUS_SUCCESS && s <= ws_cap(ctx->device) && s > want) want = s;
  }
  for (; want >= ((size_t)1 << 20); want /= 4)
    if (ws.get(ctx, want) == FL_OK) return want;
  return ws.get(ctx, want) == FL_OK ? want : 0;
}

/* A new legacy plan for p->key: descriptors, then the algorithm and its workspace. */
fl_status legacy_build(dnn_device *dev, fc_context *ctx, plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                       const fl_tensor *b, const fl_conv_geom *g) {
  FL_TRY(make_descriptors(p, dir, out, a, b, g));
  bool find = find_enabled(), strict = out->dtype == FL_F32 && !p->key.tf32;
  perf r[FC_DNN_MAX_ALGOS];
  int n = 0;
  size_t limit = ws_cap(ctx->device);
  if (find) {
    fc_scratch ws;
    limit = find_workspace(dev->handle, p, dir, ctx, ws);
    /* Twice: the first pass pays each engine's first-use costs (lazy module loading, runtime-compiled kernels)
     * inside its timings, which on an H200 ranked a 2.7x slower algorithm first; the second is steady state. */
    for (int pass = 0; pass < 2; pass++)
      FC_DNN_CHECK(candidates(dev->handle, p, dir, true, fc_base(out), fc_base(a), fc_base(b), ws.ptr, limit, r, &n),
                   "cudnnFindConvolution*AlgorithmEx");
  } else {
    FC_DNN_CHECK(candidates(dev->handle, p, dir, false, NULL, NULL, NULL, NULL, 0, r, &n),
                 "cudnnGetConvolution*Algorithm_v7");
    for (int i = 0; i < n; i++) /* the heuristics' memory field is not always filled in */
      if (r[i].status == CUDNN_STATUS_SUCCESS && workspace_of(dev->handle, p, dir, r[i].algo, &r[i].memory) != CUDNN_STATUS_SUCCESS)
        r[i].status = CUDNN_STATUS_NOT_SUPPORTED;
  }
  int i = pick(r, n, find, strict, limit);
  log_choice("legacy", dir, out, g, r, n, i);
  if (i < 0) return dnn_error(CUDNN_STATUS_NOT_SUPPORTED, "choosing an algorithm (none usable)", dir, out, a, b, g);
  p->algo = r[i].algo;
  if (!strict) FC_DNN(cudnnSetConvolutionMathType, (p->conv, r[i].math)); /* the algorithm's math, as measured */
  FC_DNN_CHECK(workspace_of(dev->handle, p, dir, p->algo, &p->ws), "cudnnGetConvolution*WorkspaceSize");
  return FL_OK;
}

/* A new plan for p->key in the API it asks for. A graph without a usable
 * engine (FL_EUNSUPPORTED) takes the legacy API for this key, decided once:
 * the plan remembers it. */
fl_status build_plan(dnn_device *dev, fc_context *ctx, plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                     const fl_tensor *b, const fl_conv_geom *g) {
  if (p->key.api == FL_CUDNN_GRAPH) {
    fl_status st = graph_build(dev, ctx, p, dir, out, a, b, g);
    if (st == FL_OK) p->api = FL_CUDNN_GRAPH;
    if (st != FL_EUNSUPPORTED) return st;
    if (log_enabled()) fprintf(stderr, "flame cuDNN plan (graph): declined, the legacy API takes it: %s\n", fl_last_error());
    graph_destroy(&p->graph);
  }
  p->api = FL_CUDNN_LEGACY;
  return legacy_build(dev, ctx, p, dir, out, a, b, g);
}

/* ---- per device: the handle and the plan cache ---- */

fl_status device_state(fc_context *ctx, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                       const fl_conv_geom *g, dnn_device **res) {
  dnn_device *dev = devices[ctx->device];
  if (!dev) {
    dev = (dnn_device *)calloc(1, sizeof *dev);
    if (!dev) return fl_error(FL_ENOMEM, "conv%dd (cuDNN): out of host memory for the plan cache", g->nsp);
    cudnnStatus_t s = lib.cudnnCreate(&dev->handle);
    if (s == CUDNN_STATUS_SUCCESS) s = lib.cudnnSetStream(dev->handle, dev->stream = fc_stream(ctx));
    if (s != CUDNN_STATUS_SUCCESS) {
      free(dev); /* a handle that failed to bind is leaked: the process will not use cuDNN on this device */
      return dnn_error(s, "cudnnCreate / cudnnSetStream", dir, out, a, b, g);
    }
    devices[ctx->device] = dev;
  }
  cudaStream_t now = fc_stream(ctx); /* rebound only when a state with another stream calls (under dnn_mu) */
  if (dev->stream != now) {
    cudnnStatus_t s = lib.cudnnSetStream(dev->handle, now);
    if (s != CUDNN_STATUS_SUCCESS) return dnn_error(s, "cudnnSetStream", dir, out, a, b, g);
    dev->stream = now;
  }
  *res = dev;
  return FL_OK;
}

fl_status find_plan(dnn_device *dev, fc_context *ctx, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                    const fl_tensor *b, const fl_conv_geom *g, plan **res) {
  plan_key k;
  memset(&k, 0, sizeof k);
  k.dir = (int)dir, k.dtype = (int)out->dtype, k.nsp = g->nsp;
  k.tf32 = out->dtype == FL_F32 && fl_get_allow_tf32();
  k.api = (int)fl_get_cudnn_api();
  k.aligned = fc_aligned(fc_base(out), 16) && fc_aligned(fc_base(a), 16) && fc_aligned(fc_base(b), 16);
  k.n = g->n, k.cin = g->cin, k.cout = g->cout, k.groups = g->groups;
  for (int i = 0; i < g->nsp; i++) {
    k.in[i] = g->in[i], k.k[i] = g->k[i], k.out[i] = g->out[i];
    k.stride[i] = g->stride[i], k.pad[i] = g->pad[i], k.dil[i] = g->dil[i];
  }
  uint64_t h = fc_key_hash(&k, sizeof k);
  for (int i = 0; i < dev->count; i++)
    if (dev->plans[i].hash == h && memcmp(&dev->plans[i].key, &k, sizeof k) == 0) {
      *res = &dev->plans[i];
      return FL_OK;
    }
  int slot = dev->count < FC_DNN_PLANS ? dev->count++ : dev->next++ % FC_DNN_PLANS;
  plan *p = &dev->plans[slot];
  destroy_plan(p);
  p->key = k;
  p->hash = h;
  fl_status st = build_plan(dev, ctx, p, dir, out, a, b, g);
  if (st != FL_OK) {
    destroy_plan(p);
    return st;
  }
  *res = p;
  return FL_OK;
}

fl_status run_locked(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b, const fl_conv_geom *g) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (fl_numel(out) == 0) return FL_OK;
  if (fl_numel(a) == 0 || fl_numel(b) == 0) { /* an empty sum: zeros (n = 0 for a weight gradient) */
    FC_CUDA(cudaMemsetAsync(fc_base(out), 0, (size_t)fl_numel(out) * fl_dtype_size(out->dtype), fc_stream(ctx)));
    return FL_OK;
  }
  if (!geom_fits_int(g))
    return fl_error(FL_EUNSUPPORTED, "conv%dd %s (cuDNN): a size of the geometry does not fit cuDNN's int", g->nsp,
                    dir_name(dir));
  dnn_device *dev;
  plan *p;
  FL_TRY(device_state(ctx, dir, out, a, b, g, &dev));
  FL_TRY(find_plan(dev, ctx, dir, out, a, b, g, &p));
  fc_scratch ws;
  if (p->ws) FL_TRY(ws.get(ctx, p->ws));
  fl_cudnn_note_ran((fl_cudnn_api)p->api);
  if (p->api == FL_CUDNN_GRAPH) {
    const char *call = "cudnnBackendExecute";
    FC_DNN_CHECK(graph_execute(dev->handle, p, dir, fc_base(out), fc_base(a), fc_base(b), ws.ptr, &call), call);
    return FL_OK;
  }
  FC_DNN_CHECK(execute(dev->handle, p, dir, fc_base(out), fc_base(a), fc_base(b), ws.ptr),
               dir == FL_CONV_FORWARD ? "cudnnConvolutionForward"
               : dir == FL_CONV_DATA  ? "cudnnConvolutionBackwardData"
                                      : "cudnnConvolutionBackwardFilter");
  return FL_OK;
}

} // namespace
} // namespace fc_dnn

namespace fc {

using namespace fc_dnn;

/* The rules (see docs/architecture.md): out, a, b on one CUDA device, all f32,
 * bf16 or f16 alike, contiguous, 3-d to 5-d (1 to 3 spatial dims), none empty,
 * each with at most INT_MAX elements, and libcudnn.so.9 loadable. */
bool conv_direct_supported(const fl_op_query *q) {
  if (q->n != 3 || !q->ts[0] || !q->ts[1] || !q->ts[2]) return false;
  const fl_tensor *out = q->ts[0];
  fl_dtype dt = out->dtype;
  if (dt != FL_F32 && dt != FL_BF16 && dt != FL_F16) return false;
  if (out->ndim < 3 || out->ndim > 5) return false;
  for (int i = 0; i < 3; i++) {
    const fl_tensor *t = q->ts[i];
    int64_t n = fl_numel(t);
    if (t->dtype != dt || t->ndim != out->ndim || !fl_is_contiguous(t) || n == 0 || n > INT_MAX) return false;
    if (!fl_device_eq(t->storage->device, out->storage->device)) return false;
  }
  return have_lib();
}

fl_status conv_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b, const fl_conv_geom *g) {
  if (!have_lib())
    return fl_error(FL_EUNSUPPORTED, "conv%dd %s: cuDNN (libcudnn.so.9) could not be loaded", g->nsp, dir_name(dir));
  pthread_mutex_lock(&dnn_mu); /* the plan cache and the handle's workspace use */
  fl_status st = run_locked(dir, out, a, b, g);
  pthread_mutex_unlock(&dnn_mu);
  return st;
}

} // namespace fc

#else /* built without cudnn.h: the direct path declines everything */

namespace fc {
bool conv_direct_supported(const fl_op_query *) { return false; }
fl_status conv_direct(fl_conv_dir dir, fl_tensor *, const fl_tensor *, const fl_tensor *, const fl_conv_geom *g) {
  return fl_error(FL_EUNSUPPORTED, "conv%dd: this build has no cuDNN path (cudnn.h was not found)", g->nsp);
}
} // namespace fc

#endif
