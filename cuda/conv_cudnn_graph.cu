/* The direct convolution through cuDNN's backend (graph) API, behind
 * FLAME_CUDNN_API=graph: what PyTorch runs through cudnn-frontend. cuDNN 9
 * implements its legacy calls (conv_cudnn.cu) on top of this engine with extra
 * host work per call; here a call does only what must change: a variant pack
 * (the data pointers and the workspace; one of the plan's last 8 when they
 * match) and cudnnBackendExecute with the cached execution plan.
 *
 * Per key (conv_cudnn.cuh's plan cache, once): tensor descriptors x, y, w
 * (uids 'x', 'y', 'w'; the group count is implied by w's channel dim, cin /
 * groups), a convolution descriptor (cross-correlation, f32 compute), the one
 * operation (forward, backward data or backward filter), its operation graph,
 * and engine configs from the heuristics (instant mode, then the fallback
 * list). Configs whose engine down-converts inputs, reduces in reduced
 * precision (the half types), or uses tensor cores for f32 without TF32 are
 * left out, as the legacy path's math modes leave them out. Up to
 * FC_DNN_MAX_ALGOS execution plans are finalized and timed on the real
 * operands (FLAME_CUDNN_FIND=0: the first that finalizes), and the legacy
 * path's pick() chooses among them. No usable engine: FL_EUNSUPPORTED, and the
 * cache takes the legacy API for the key. */
#if FLAME_HAVE_CUDNN
#include "conv_cudnn.cuh"
#include <stdio.h>

namespace fc_dnn {
namespace {

typedef cudnnBackendDescriptor_t desc_t;

enum : int64_t { UID_X = 'x', UID_Y = 'y', UID_W = 'w' };
enum { FC_DNN_GRAPH_CFGS = 64, FC_DNN_NOTES = 32, FC_DNN_TIMED = 3 };

/* One attribute to set. */
struct attr {
  cudnnBackendAttributeName_t name;
  cudnnBackendAttributeType_t type;
  int64_t count;
  const void *v;
};

/* Makes descriptors into a graph_plan's keep list (so they live as long as the
 * plan and are destroyed with it, also when a step failed), naming the failing
 * step for the error message. */
struct builder {
  graph_plan *gp;
  char call[96];

  cudnnStatus_t step(const char *fn, const char *label, cudnnStatus_t s) {
    snprintf(call, sizeof call, "%s (%s)", fn, label);
    return s;
  }
  /* A descriptor of `type` with the attributes set, finalized. */
  cudnnStatus_t make(cudnnBackendDescriptorType_t type, const char *label, const attr *at, int n, desc_t *d,
                     bool keep = true) {
    *d = nullptr;
    cudnnStatus_t s = step("cudnnBackendCreateDescriptor", label, lib.cudnnBackendCreateDescriptor(type, d));
    if (s != CUDNN_STATUS_SUCCESS) return s;
    if (keep && gp->nkeep < FC_DNN_GRAPH_KEEP) gp->keep[gp->nkeep++] = *d;
    for (int i = 0; i < n && s == CUDNN_STATUS_SUCCESS; i++)
      s = step("cudnnBackendSetAttribute", label, lib.cudnnBackendSetAttribute(*d, at[i].name, at[i].type, at[i].count, at[i].v));
    return s == CUDNN_STATUS_SUCCESS ? step("cudnnBackendFinalize", label, lib.cudnnBackendFinalize(*d)) : s;
  }
};

/* x, y, w of a call from the operands' roles: FORWARD x = a, w = b, y = out;
 * DATA dy = a, w = b, dx = out; WEIGHT x = a, dy = b, dw = out. */
void roles(fl_conv_dir dir, void *o, const void *a, const void *b, void **xyw) {
  void *pa = (void *)a, *pb = (void *)b;
  xyw[0] = dir == FL_CONV_DATA ? o : pa;
  xyw[1] = dir == FL_CONV_FORWARD ? o : dir == FL_CONV_DATA ? pa : pb;
  xyw[2] = dir == FL_CONV_WEIGHT ? o : pb;
}

/* A contiguous NC(D)HW tensor; align: the bytes every call's pointer is a multiple of (the key's `aligned`). */
cudnnStatus_t make_tensor(builder &B, const char *label, int64_t uid, cudnnDataType_t dt, int64_t align, int nd,
                          const int64_t *dims, desc_t *d) {
  int64_t strides[5], s = 1;
  for (int i = nd - 1; i >= 0; i--) strides[i] = s, s *= dims[i];
  const attr at[] = {
      {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt},
      {CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, nd, dims},
      {CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, nd, strides},
      {CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid},
      {CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align},
  };
  return B.make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, label, at, 5, d);
}

/* The attribute names of one direction's operation descriptor. */
struct op_kind {
  cudnnBackendDescriptorType_t type;
  const char *label;
  cudnnBackendAttributeName_t x, y, w, conv, alpha, beta;
};

const op_kind OPS[3] = {
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, "convolution forward operation",
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, "convolution backward data operation",
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
    {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, "convolution backward filter operation",
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA},
};

/* The operation graph of p->key's one convolution: x [n, cin, in], y [n, cout, out], w [cout, cin/groups, k]. */
fl_status make_graph(builder &B, cudnnHandle_t h, const plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                     const fl_tensor *b, const fl_conv_geom *g, desc_t *graph) {
  nd_geom r = nd_of(g);
  const int nd = r.nsp + 2;
  cudnnDataType_t dt = dnn_dtype(out->dtype);
  int64_t align = p->key.aligned ? 16 : (int64_t)fl_dtype_size(out->dtype);
  int64_t xd[5] = {g->n, g->cin}, yd[5] = {g->n, g->cout}, wd[5] = {g->cout, g->cin / g->groups};
  int64_t nsp = r.nsp, stride[3], pad[3], dil[3];
  for (int i = 0; i < r.nsp; i++) {
    xd[2 + i] = r.in[i], yd[2 + i] = r.out[i], wd[2 + i] = r.k[i];
    stride[i] = r.stride[i], pad[i] = r.pad[i], dil[i] = r.dil[i];
  }
  desc_t x, y, w, conv, op;
  FC_DNN_CHECK(make_tensor(B, "x tensor", UID_X, dt, align, nd, xd, &x), B.call);
  FC_DNN_CHECK(make_tensor(B, "y tensor", UID_Y, dt, align, nd, yd, &y), B.call);
  FC_DNN_CHECK(make_tensor(B, "w tensor", UID_W, dt, align, nd, wd, &w), B.call);
  cudnnDataType_t comp = CUDNN_DATA_FLOAT; /* f32 accumulation for every dtype, as the legacy path */
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const attr ca[] = {
      {CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &nsp},
      {CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp},
      {CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode},
      {CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, nsp, stride},
      {CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, nsp, pad},
      {CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, nsp, pad},
      {CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, nsp, dil},
  };
  FC_DNN_CHECK(B.make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, "convolution descriptor", ca, 7, &conv), B.call);
  const op_kind &k = OPS[dir];
  float alpha = 1.0f, beta = 0.0f; /* f32 compute: float scalars; beta 0 overwrites (dw too: the front-end accumulates) */
  const attr oa[] = {
      {k.x, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x},        {k.y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y},
      {k.w, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w},        {k.conv, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv},
      {k.alpha, CUDNN_TYPE_FLOAT, 1, &alpha},             {k.beta, CUDNN_TYPE_FLOAT, 1, &beta},
  };
  FC_DNN_CHECK(B.make(k.type, k.label, oa, 6, &op), B.call);
  const attr ga[] = {
      {CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h},
      {CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op},
  };
  FC_DNN_CHECK(B.make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph", ga, 2, graph), B.call);
  return FL_OK;
}

/* Engine configs of the heuristics in `mode`, best first, into cfgs (the
 * caller destroys them); the heuristics descriptor is kept with the plan. */
fl_status engine_configs(builder &B, desc_t graph, cudnnBackendHeurMode_t mode, desc_t *cfgs, int *n,
                         fl_conv_dir dir, const fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                         const fl_conv_geom *g) {
  *n = 0;
  desc_t heur;
  const attr ha[] = {
      {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph},
      {CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode},
  };
  FC_DNN_CHECK(B.make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "engine heuristics", ha, 2, &heur), B.call);
  int64_t count = 0;
  FC_DNN_CHECK(B.step("cudnnBackendGetAttribute", "heuristics' result count",
                      lib.cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                   0, &count, nullptr)),
               B.call);
  int want = count < FC_DNN_GRAPH_CFGS ? (int)count : FC_DNN_GRAPH_CFGS;
  for (; *n < want; (*n)++)
    FC_DNN_CHECK(B.step("cudnnBackendCreateDescriptor", "engine config",
                        lib.cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[*n])),
                 B.call);
  if (want == 0) return FL_OK;
  int64_t got = 0;
  FC_DNN_CHECK(B.step("cudnnBackendGetAttribute", "heuristics' results",
                      lib.cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                   want, &got, cfgs)),
               B.call);
  for (int i = got < want ? (int)got : want; i < want; i++) lib.cudnnBackendDestroyDescriptor(cfgs[i]);
  *n = got < want ? (int)got : want;
  return FL_OK;
}

/* What an engine config's engine is: its global index, whether it is
 * nondeterministic, uses tensor cores or compiles at run time, and whether
 * its numerics are ones the legacy path never allows: down-converted inputs
 * (except f32 with TF32 allowed: TF32 is that), a reduced-precision reduction
 * for the half types (whose legacy compute type is f32). */
struct engine_info {
  int64_t index;
  bool nondet, tensor_core, rtc, rejected;
};

cudnnStatus_t engine_of(desc_t cfg, fl_dtype dt, bool tf32, engine_info *e) {
  memset(e, 0, sizeof *e);
  desc_t eng = nullptr;
  cudnnStatus_t s = lib.cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng);
  int64_t k = 0, nn = 0, nb = 0;
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &k, &eng);
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &k, &e->index);
  cudnnBackendNumericalNote_t notes[FC_DNN_NOTES];
  cudnnBackendBehaviorNote_t behav[FC_DNN_NOTES];
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, FC_DNN_NOTES,
                                     &nn, notes);
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, FC_DNN_NOTES,
                                     &nb, behav);
  if (eng) lib.cudnnBackendDestroyDescriptor(eng);
  for (int64_t i = 0; i < nn && i < FC_DNN_NOTES; i++) {
    e->nondet |= notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
    e->tensor_core |= notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE;
    e->rejected |= (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS && !(dt == FL_F32 && tf32)) ||
                   (dt != FL_F32 && notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION);
  }
  for (int64_t i = 0; i < nb && i < FC_DNN_NOTES; i++) e->rtc |= behav[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
  return s;
}

/* An execution plan for cfg and its workspace size; the caller destroys *plan. */
cudnnStatus_t make_plan(builder &B, cudnnHandle_t h, desc_t cfg, desc_t *plan, size_t *ws) {
  const attr pa[] = {
      {CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h},
      {CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg},
  };
  cudnnStatus_t s = B.make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "execution plan", pa, 2, plan, false);
  int64_t k = 0, size = 0;
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendGetAttribute(*plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &k, &size);
  *ws = size > 0 ? (size_t)size : 0;
  return s;
}

/* A variant pack: the x, y, w pointers by uid and the workspace; the caller destroys *pack. */
cudnnStatus_t make_pack(void *const *xyw, void *ws, desc_t *pack) {
  static const int64_t uids[3] = {UID_X, UID_Y, UID_W};
  *pack = nullptr;
  cudnnStatus_t s = lib.cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, pack);
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendSetAttribute(*pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendSetAttribute(*pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, xyw);
  if (s == CUDNN_STATUS_SUCCESS)
    s = lib.cudnnBackendSetAttribute(*pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
  if (s == CUDNN_STATUS_SUCCESS) s = lib.cudnnBackendFinalize(*pack);
  return s;
}

/* The candidates of one heuristics mode: engine configs in the heuristics'
 * order, each as a perf row (status: why it cannot be used) and, where it is
 * usable, a finalized plan in plans[i]. Measuring (find) builds up to
 * FC_DNN_MAX_ALGOS usable plans, else the first. An engine that compiles at
 * run time (seconds of NVRTC) is built only while no other is usable yet. */
struct cands {
  desc_t cfgs[FC_DNN_GRAPH_CFGS], plans[FC_DNN_GRAPH_CFGS];
  perf r[FC_DNN_GRAPH_CFGS];
  int n = 0, rows = 0; /* n configs (destroyed here); the first rows of them examined, r[0..rows) */
  ~cands() {
    for (int i = 0; i < n; i++) {
      if (plans[i]) lib.cudnnBackendDestroyDescriptor(plans[i]);
      if (cfgs[i]) lib.cudnnBackendDestroyDescriptor(cfgs[i]);
    }
  }
};

fl_status collect(builder &B, cudnnHandle_t h, desc_t graph, cudnnBackendHeurMode_t mode, bool find, bool tf32,
                  size_t cap, cands &c, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                  const fl_conv_geom *g) {
  const bool strict = out->dtype == FL_F32 && !tf32; /* f32 without TF32: no tensor-core engine */
  memset(c.plans, 0, sizeof c.plans);
  FL_TRY(engine_configs(B, graph, mode, c.cfgs, &c.n, dir, out, a, b, g));
  int usable = 0;
  for (c.rows = 0; c.rows < c.n && usable < (find ? (int)FC_DNN_MAX_ALGOS : 1); c.rows++) {
    const int i = c.rows;
    engine_info e;
    perf &r = c.r[i];
    memset(&r, 0, sizeof r);
    r.status = engine_of(c.cfgs[i], out->dtype, tf32, &e);
    r.algo = (int)e.index;
    r.deterministic = !e.nondet;
    r.math = e.tensor_core ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    if (r.status != CUDNN_STATUS_SUCCESS) continue;
    if (e.rejected || (strict && e.tensor_core) || (e.rtc && usable > 0)) {
      r.status = CUDNN_STATUS_NOT_SUPPORTED;
      continue;
    }
    r.status = make_plan(B, h, c.cfgs[i], &c.plans[i], &r.memory);
    if (r.status == CUDNN_STATUS_SUCCESS && r.memory > cap) r.status = CUDNN_STATUS_NOT_SUPPORTED;
    if (r.status == CUDNN_STATUS_SUCCESS) usable++;
  }
  return FL_OK;
}

/* Times each usable candidate on the real operands (host-blocking, once per
 * key; it writes out): one untimed run pays first-use costs, then
 * FC_DNN_TIMED runs between events. A run that fails marks its candidate. */
fl_status measure(cudnnHandle_t h, fc_context *ctx, cands &c, void *const *xyw, fl_conv_dir dir, fl_tensor *out,
                  const fl_tensor *a, const fl_tensor *b, const fl_conv_geom *g, size_t *limit) {
  size_t want = 0;
  for (int i = 0; i < c.rows; i++)
    if (c.plans[i] && c.r[i].status == CUDNN_STATUS_SUCCESS && c.r[i].memory > want) want = c.r[i].memory;
  fc_scratch ws; /* as much of it as the device can give: candidates above it drop out in pick() */
  for (; want >= ((size_t)1 << 20) && ws.get(ctx, want) != FL_OK; want /= 4) {}
  if (!ws.ptr && want && ws.get(ctx, want) != FL_OK) want = 0;
  *limit = want;
  (void)cudaGetLastError();
  desc_t pack;
  cudnnStatus_t s = make_pack(xyw, ws.ptr, &pack);
  if (s != CUDNN_STATUS_SUCCESS) {
    if (pack) lib.cudnnBackendDestroyDescriptor(pack);
    return dnn_error(s, "cudnnBackendFinalize (variant pack for measuring)", dir, out, a, b, g);
  }
  cudaEvent_t e[2] = {nullptr, nullptr};
  cudaStream_t stream = fc_stream(ctx);
  fl_status st = FL_OK;
  cudaError_t ce = cudaEventCreate(&e[0]);
  if (ce == cudaSuccess) ce = cudaEventCreate(&e[1]);
  for (int i = 0; i < c.rows && ce == cudaSuccess; i++) {
    perf &r = c.r[i];
    if (!c.plans[i] || r.status != CUDNN_STATUS_SUCCESS || r.memory > want) continue;
    r.status = lib.cudnnBackendExecute(h, c.plans[i], pack);
    for (int k = 0; k < FC_DNN_TIMED && r.status == CUDNN_STATUS_SUCCESS; k++) {
      if (k == 0) ce = cudaEventRecord(e[0], stream);
      r.status = lib.cudnnBackendExecute(h, c.plans[i], pack);
    }
    if (r.status != CUDNN_STATUS_SUCCESS || ce != cudaSuccess) continue;
    float ms = 0;
    ce = cudaEventRecord(e[1], stream);
    if (ce == cudaSuccess) ce = cudaEventSynchronize(e[1]);
    if (ce == cudaSuccess) ce = cudaEventElapsedTime(&ms, e[0], e[1]);
    r.time = ms / FC_DNN_TIMED;
  }
  if (ce != cudaSuccess) st = fc_cuda_error(ce, "timing the cuDNN engines (cudaEvent*)");
  for (int i = 0; i < 2; i++)
    if (e[i]) cudaEventDestroy(e[i]);
  lib.cudnnBackendDestroyDescriptor(pack);
  return st;
}

/* The examined rows in the order pick() wants them, best first: as the
 * heuristics ranked them, or when measured by time (the usable ones first);
 * from[i] is row i's place in c. */
int ranked(const cands &c, bool measured, perf *r, int *from) {
  for (int i = 0; i < c.rows; i++) {
    int j = i;
    for (; measured && j > 0; j--) { /* insertion sort: stable, at most 64 rows */
      const perf &q = r[j - 1];
      bool later = (q.status != CUDNN_STATUS_SUCCESS) > (c.r[i].status != CUDNN_STATUS_SUCCESS) ||
                   (q.status == c.r[i].status && q.time > c.r[i].time);
      if (!later) break;
      r[j] = q, from[j] = from[j - 1];
    }
    r[j] = c.r[i], from[j] = i;
  }
  return c.rows;
}

} // namespace

fl_status graph_build(dnn_device *dev, fc_context *ctx, plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                      const fl_tensor *b, const fl_conv_geom *g) {
  builder B{&p->graph, {0}};
  desc_t graph;
  FL_TRY(make_graph(B, dev->handle, p, dir, out, a, b, g, &graph));
  const bool find = find_enabled(), strict = out->dtype == FL_F32 && !p->key.tf32;
  const size_t cap = ws_cap(ctx->device);
  void *xyw[3];
  roles(dir, fc_base(out), fc_base(a), fc_base(b), xyw);
  /* Instant heuristics first (PyTorch's choice); the fallback list only when they leave nothing usable. */
  static const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_INSTANT, CUDNN_HEUR_MODE_FALLBACK};
  for (int m = 0; m < 2; m++) {
    cands c;
    fl_status st = collect(B, dev->handle, graph, modes[m], find, p->key.tf32, cap, c, dir, out, a, b, g);
    if (st == FL_EUNSUPPORTED && m == 0) continue; /* instant heuristics that decline the graph: the fallback list */
    FL_TRY(st);
    size_t limit = cap;
    if (find) FL_TRY(measure(dev->handle, ctx, c, xyw, dir, out, a, b, g, &limit));
    perf r[FC_DNN_GRAPH_CFGS];
    int from[FC_DNN_GRAPH_CFGS], n = ranked(c, find, r, from);
    int best = pick(r, n, find, strict, limit), i = best < 0 ? -1 : from[best];
    if (i >= 0 && !c.plans[i]) i = best = -1; /* (every usable row has a plan; defensive) */
    log_choice(m == 0 ? "graph" : "graph, fallback list", dir, out, g, r, n, best);
    if (i < 0) continue;
    p->graph.exec = c.plans[i], c.plans[i] = nullptr;
    if (p->graph.nkeep < FC_DNN_GRAPH_KEEP) p->graph.keep[p->graph.nkeep++] = c.cfgs[i], c.cfgs[i] = nullptr;
    p->ws = c.r[i].memory;
    return FL_OK;
  }
  return dnn_error(CUDNN_STATUS_NOT_SUPPORTED, "choosing an engine (none usable)", dir, out, a, b, g);
}

cudnnStatus_t graph_execute(cudnnHandle_t h, plan *p, fl_conv_dir dir, void *o, const void *a, const void *b,
                            void *ws, const char **call) {
  graph_plan &gp = p->graph;
  void *ptrs[4];
  roles(dir, o, a, b, ptrs);
  ptrs[3] = ws;
  graph_pack *k = nullptr;
  for (int i = 0; i < FC_DNN_PACKS && !k; i++)
    if (gp.packs[i].desc && memcmp(ptrs, gp.packs[i].ptrs, sizeof ptrs) == 0) k = &gp.packs[i];
  if (!k) {
    k = &gp.packs[gp.next_pack];
    gp.next_pack = (gp.next_pack + 1) % FC_DNN_PACKS;
    if (k->desc) lib.cudnnBackendDestroyDescriptor(k->desc);
    cudnnStatus_t s = make_pack(ptrs, ws, &k->desc);
    if (s != CUDNN_STATUS_SUCCESS) {
      if (k->desc) lib.cudnnBackendDestroyDescriptor(k->desc);
      k->desc = nullptr;
      *call = "cudnnBackendFinalize (variant pack)";
      return s;
    }
    memcpy(k->ptrs, ptrs, sizeof ptrs);
  }
  *call = "cudnnBackendExecute";
  return lib.cudnnBackendExecute(h, gp.exec, k->desc);
}

void graph_destroy(graph_plan *gp) {
  for (int i = 0; i < FC_DNN_PACKS; i++)
    if (gp->packs[i].desc) lib.cudnnBackendDestroyDescriptor(gp->packs[i].desc);
  if (gp->exec) lib.cudnnBackendDestroyDescriptor(gp->exec);
  for (int i = gp->nkeep - 1; i >= 0; i--) lib.cudnnBackendDestroyDescriptor(gp->keep[i]);
  memset(gp, 0, sizeof *gp);
}

} // namespace fc_dnn

#endif
