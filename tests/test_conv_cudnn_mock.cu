/* The graph (backend) API path of the cuDNN convolution (cuda/conv_cudnn_graph.cu) against a mock cuDNN, on any
 * machine with the CUDA build (no GPU, no libcudnn): the library table fc_dnn::lib is pointed at the functions here,
 * which keep every descriptor and check the protocol the cuDNN docs give the backend API: each attribute on the
 * descriptor kind it belongs to with its type and count, the required ones set before cudnnBackendFinalize, nothing
 * set after it, descriptors given by reference finalized and of the right kind, the convolution's shapes consistent
 * (y's spatial size from x, w, padding, stride and dilation; groups = x channels / w channels), results read into
 * descriptors the caller made, every descriptor destroyed once. Then: which engine config is chosen (numerical
 * notes, a plan that fails to finalize, the workspace cap, run-time compiled engines, the fallback list), the
 * variant pack's uid-to-pointer mapping for each direction, its reuse when the pointers repeat, and FL_EUNSUPPORTED
 * when no engine is usable. FLAME_CUDNN_FIND=0 (the measured search needs a GPU). What it cannot show: that real
 * cuDNN accepts the same calls and computes the right values (tests/test_conv_cudnn.c on the GPU does). */
#include "conv_cudnn.cuh"
#include "context.cuh"
#include <map>
#include <set>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string>
#include <vector>

static int failures, checks;
#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    checks++;                                                                \
    if (cond) printf("ok   - ");                                             \
    else failures++, printf("FAIL - %s:%d: ", __FILE__, __LINE__);          \
    printf(__VA_ARGS__);                                                     \
    printf("\n");                                                            \
  } while (0)

/* ---- the mock ---- */

struct mattr {
  cudnnBackendAttributeType_t type;
  std::vector<int64_t> i64; /* INT64 values */
  std::vector<void *> ptrs; /* descriptors, void pointers, handles */
  double f = 0;             /* FLOAT / DOUBLE */
  int e = 0;                /* enum-typed values (data type, mode, ...) */
};

struct mengine {
  int64_t index;
  std::vector<cudnnBackendNumericalNote_t> notes;
  std::vector<cudnnBackendBehaviorNote_t> behav;
  cudnnStatus_t finalize; /* what finalizing a plan of it returns */
  int64_t ws;
};

struct mdesc {
  cudnnBackendDescriptorType_t kind;
  bool finalized = false;
  std::map<int, mattr> attrs;
  int engine = -1;                 /* ENGINECFG / ENGINE / EXECUTION_PLAN: the mock engine (index into engines) */
  std::vector<int> results;        /* ENGINEHEUR: the engines of its mode */
};

static std::set<mdesc *> live;
static std::vector<std::string> violations;
static std::vector<mengine> engines;
static std::vector<int> instant_list, fallback_list;
static int packs_made, executions;
static std::map<int64_t, void *> last_ptrs; /* the last execution's uid -> pointer */
static void *last_ws;
static int last_engine;

static void violate(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  violations.push_back(buf);
}

static mdesc *D(void *p) { return live.count((mdesc *)p) ? (mdesc *)p : nullptr; }

/* Which kind each attribute belongs to, its type and element count (count 0: any from 1 to 8). */
struct rule {
  cudnnBackendAttributeName_t name;
  cudnnBackendDescriptorType_t kind;
  cudnnBackendAttributeType_t type;
  int count;
};
static const rule RULES[] = {
    {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE, 1},
    {CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_TENSOR_STRIDES, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1},
    {CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_BACKEND_TENSOR_DESCRIPTOR, CUDNN_TYPE_INT64, 1},
    {CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 1},
    {CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_DATA_TYPE, 1},
    {CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_CONVOLUTION_MODE, 1},
    {CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
#define FC_OP_RULES(KIND, P, X, Y, W)                                                                   \
  {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_##X, KIND, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},                \
      {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_##Y, KIND, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},            \
      {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_##W, KIND, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},            \
      {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_CONV_DESC, KIND, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},      \
      {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_ALPHA, KIND, CUDNN_TYPE_FLOAT, 1},                       \
      {CUDNN_ATTR_OPERATION_CONVOLUTION_##P##_BETA, KIND, CUDNN_TYPE_FLOAT, 1}
    FC_OP_RULES(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, FORWARD, X, Y, W),
    FC_OP_RULES(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, BWD_DATA, DX, DY, W),
    FC_OP_RULES(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, BWD_FILTER, X, DY, DW),
    {CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, CUDNN_TYPE_HANDLE, 1},
    {CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},
    {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},
    {CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, CUDNN_TYPE_HEUR_MODE, 1},
    {CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, CUDNN_TYPE_HANDLE, 1},
    {CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1},
    {CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_INT64, 0},
    {CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_VOID_PTR, 0},
    {CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_TYPE_VOID_PTR, 1},
};

static const rule *rule_of(cudnnBackendAttributeName_t name) {
  for (const rule &r : RULES)
    if (r.name == name) return &r;
  return nullptr;
}

static cudnnStatus_t m_create(cudnnBackendDescriptorType_t kind, cudnnBackendDescriptor_t *d) {
  mdesc *m = new mdesc;
  m->kind = kind;
  live.insert(m);
  *d = m;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t m_destroy(cudnnBackendDescriptor_t d) {
  mdesc *m = D(d);
  if (!m) return violate("destroy of a descriptor that is not live (%p)", d), CUDNN_STATUS_BAD_PARAM;
  live.erase(m);
  delete m;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t m_set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                           cudnnBackendAttributeType_t type, int64_t n, const void *v) {
  mdesc *m = D(d);
  const rule *r = rule_of(name);
  if (!m) return violate("set %d on a dead descriptor", (int)name), CUDNN_STATUS_BAD_PARAM;
  if (m->finalized) return violate("set %d after finalize (kind %d)", (int)name, (int)m->kind), CUDNN_STATUS_BAD_PARAM;
  if (!r || r->kind != m->kind) return violate("attribute %d on descriptor kind %d", (int)name, (int)m->kind), CUDNN_STATUS_BAD_PARAM;
  bool alpha = type == CUDNN_TYPE_DOUBLE && r->type == CUDNN_TYPE_FLOAT; /* alpha/beta may be double */
  if (type != r->type && !alpha) return violate("attribute %d: type %d, want %d", (int)name, (int)type, (int)r->type), CUDNN_STATUS_BAD_PARAM;
  if ((r->count && n != r->count) || n < 1 || n > 8) return violate("attribute %d: %lld elements", (int)name, (long long)n), CUDNN_STATUS_BAD_PARAM;
  mattr a;
  a.type = type;
  for (int64_t i = 0; i < n; i++) {
    switch (type) {
      case CUDNN_TYPE_INT64: a.i64.push_back(((const int64_t *)v)[i]); break;
      case CUDNN_TYPE_FLOAT: a.f = ((const float *)v)[0]; break;
      case CUDNN_TYPE_DOUBLE: a.f = ((const double *)v)[0]; break;
      case CUDNN_TYPE_BACKEND_DESCRIPTOR: case CUDNN_TYPE_VOID_PTR: case CUDNN_TYPE_HANDLE:
        a.ptrs.push_back(((void *const *)v)[i]);
        break;
      default: a.e = ((const int *)v)[0]; break; /* the enum types are int-sized */
    }
  }
  if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (void *p : a.ptrs)
      if (!D(p) || !D(p)->finalized) violate("attribute %d refers to a descriptor that is not live and finalized", (int)name);
  m->attrs[name] = a;
  return CUDNN_STATUS_SUCCESS;
}

static bool has(mdesc *m, std::initializer_list<cudnnBackendAttributeName_t> names) {
  for (auto n : names)
    if (!m->attrs.count(n)) return violate("finalize of kind %d without attribute %d", (int)m->kind, (int)n), false;
  return true;
}

static const std::vector<int64_t> &I(mdesc *m, cudnnBackendAttributeName_t n) { return m->attrs[n].i64; }
static mdesc *R(mdesc *m, cudnnBackendAttributeName_t n) { return D(m->attrs[n].ptrs.at(0)); }

/* An operation's shapes: y's spatial size from x's, w's and the convolution's; groups from the channels. False when
 * one of the four attributes was never set (finalize's bad-parameter status); a wrong shape is a violation. */
static bool check_op(mdesc *m, cudnnBackendAttributeName_t xn, cudnnBackendAttributeName_t yn,
                     cudnnBackendAttributeName_t wn, cudnnBackendAttributeName_t cn) {
  if (!has(m, {xn, yn, wn, cn})) return false;
  mdesc *x = R(m, xn), *y = R(m, yn), *w = R(m, wn), *c = R(m, cn);
  if (x->kind != CUDNN_BACKEND_TENSOR_DESCRIPTOR || c->kind != CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR) {
    violate("operation with descriptors of the wrong kind");
    return true;
  }
  if (I(x, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0] != 'x' || I(y, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0] != 'y' ||
      I(w, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0] != 'w')
    violate("operation: x, y, w attributes hold the tensors of uids %lld, %lld, %lld",
            (long long)I(x, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0], (long long)I(y, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0],
            (long long)I(w, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0]);
  auto xd = I(x, CUDNN_ATTR_TENSOR_DIMENSIONS), yd = I(y, CUDNN_ATTR_TENSOR_DIMENSIONS),
       wd = I(w, CUDNN_ATTR_TENSOR_DIMENSIONS);
  size_t nsp = (size_t)I(c, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS)[0];
  if (xd.size() != nsp + 2 || yd.size() != nsp + 2 || wd.size() != nsp + 2) {
    violate("operation: ranks");
    return true;
  }
  if (xd[0] != yd[0] || yd[1] != wd[0] || xd[1] % wd[1] != 0 || wd[0] % (xd[1] / wd[1]) != 0)
    violate("operation: n %lld/%lld, channels x %lld y %lld w %lldx%lld", (long long)xd[0], (long long)yd[0],
            (long long)xd[1], (long long)yd[1], (long long)wd[0], (long long)wd[1]);
  for (size_t i = 0; i < nsp; i++) {
    int64_t s = I(c, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES)[i], pre = I(c, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS)[i];
    int64_t post = I(c, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS)[i], dl = I(c, CUDNN_ATTR_CONVOLUTION_DILATIONS)[i];
    if (yd[2 + i] != (xd[2 + i] + pre + post - dl * (wd[2 + i] - 1) - 1) / s + 1)
      violate("operation: spatial dim %zu: x %lld, w %lld, y %lld", i, (long long)xd[2 + i], (long long)wd[2 + i],
              (long long)yd[2 + i]);
  }
  return true;
}

static cudnnStatus_t m_finalize(cudnnBackendDescriptor_t d) {
  mdesc *m = D(d);
  if (!m || m->finalized) return violate("finalize of a dead or finalized descriptor"), CUDNN_STATUS_BAD_PARAM;
  switch (m->kind) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: {
      if (!has(m, {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_ATTR_TENSOR_STRIDES,
                   CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT}))
        return CUDNN_STATUS_BAD_PARAM;
      auto dims = I(m, CUDNN_ATTR_TENSOR_DIMENSIONS), st = I(m, CUDNN_ATTR_TENSOR_STRIDES);
      int64_t s = 1;
      if (dims.size() != st.size()) violate("tensor: %zu dims, %zu strides", dims.size(), st.size());
      for (size_t i = dims.size(); i-- > 0 && i < st.size(); s *= dims[i])
        if (st[i] != s) violate("tensor: stride %zu is %lld, packed NCHW wants %lld", i, (long long)st[i], (long long)s);
      break;
    }
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: {
      if (!has(m, {CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_ATTR_CONVOLUTION_COMP_TYPE,
                   CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
                   CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS,
                   CUDNN_ATTR_CONVOLUTION_DILATIONS}))
        return CUDNN_STATUS_BAD_PARAM;
      size_t nsp = (size_t)I(m, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS)[0];
      for (auto n : {CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS,
                     CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_ATTR_CONVOLUTION_DILATIONS})
        if (I(m, n).size() != nsp) violate("convolution: attribute %d has %zu values for %zu dims", (int)n, I(m, n).size(), nsp);
      if (m->attrs[CUDNN_ATTR_CONVOLUTION_CONV_MODE].e != CUDNN_CROSS_CORRELATION) violate("convolution: not cross-correlation");
      if (m->attrs[CUDNN_ATTR_CONVOLUTION_COMP_TYPE].e != CUDNN_DATA_FLOAT) violate("convolution: compute type not f32");
      break;
    }
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
      if (!check_op(m, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
                    CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC))
        return CUDNN_STATUS_BAD_PARAM;
      break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
      if (!check_op(m, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
                    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC))
        return CUDNN_STATUS_BAD_PARAM;
      break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
      if (!check_op(m, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
                    CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC))
        return CUDNN_STATUS_BAD_PARAM;
      break;
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
      if (!has(m, {CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_ATTR_OPERATIONGRAPH_OPS})) return CUDNN_STATUS_BAD_PARAM;
      break;
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
      if (!has(m, {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_ATTR_ENGINEHEUR_MODE})) return CUDNN_STATUS_BAD_PARAM;
      int mode = m->attrs[CUDNN_ATTR_ENGINEHEUR_MODE].e;
      if (R(m, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH)->kind != CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)
        violate("heuristics over a descriptor that is not an operation graph");
      m->results = mode == CUDNN_HEUR_MODE_FALLBACK ? fallback_list : instant_list;
      break;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
      if (!has(m, {CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG}))
        return CUDNN_STATUS_BAD_PARAM;
      mdesc *cfg = R(m, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
      if (cfg->kind != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR || cfg->engine < 0) return violate("plan of a non-config"), CUDNN_STATUS_BAD_PARAM;
      m->engine = cfg->engine;
      if (engines[m->engine].finalize != CUDNN_STATUS_SUCCESS) return engines[m->engine].finalize;
      break;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
      if (!has(m, {CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                   CUDNN_ATTR_VARIANT_PACK_WORKSPACE}))
        return CUDNN_STATUS_BAD_PARAM;
      if (I(m, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS).size() != m->attrs[CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS].ptrs.size())
        violate("variant pack: uids and pointers differ in number");
      packs_made++;
      break;
    default: return violate("finalize of kind %d", (int)m->kind), CUDNN_STATUS_NOT_SUPPORTED;
  }
  m->finalized = true;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t m_get(cudnnBackendDescriptor_t const d, cudnnBackendAttributeName_t name,
                           cudnnBackendAttributeType_t type, int64_t want, int64_t *got, void *out) {
  mdesc *m = D(d);
  if (!m || !m->finalized) return violate("get %d from a dead or unfinalized descriptor", (int)name), CUDNN_STATUS_BAD_PARAM;
  int64_t n = 0;
  switch (name) {
    case CUDNN_ATTR_ENGINEHEUR_RESULTS:
      if (type != CUDNN_TYPE_BACKEND_DESCRIPTOR) return violate("heuristics results: type %d", (int)type), CUDNN_STATUS_BAD_PARAM;
      n = want == 0 ? (int64_t)m->results.size() : std::min<int64_t>(want, (int64_t)m->results.size());
      for (int64_t i = 0; want && i < n; i++) {
        mdesc *c = D(((void **)out)[i]);
        if (!c || c->kind != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) return violate("heuristics results into a non-config"), CUDNN_STATUS_BAD_PARAM;
        c->engine = m->results[i], c->finalized = true;
      }
      break;
    case CUDNN_ATTR_ENGINECFG_ENGINE: {
      mdesc *e = want == 1 && type == CUDNN_TYPE_BACKEND_DESCRIPTOR ? D(*(void **)out) : nullptr;
      if (!e || e->kind != CUDNN_BACKEND_ENGINE_DESCRIPTOR) return violate("config's engine into a non-engine"), CUDNN_STATUS_BAD_PARAM;
      e->engine = m->engine, e->finalized = true, n = 1;
      break;
    }
    case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
      if (type != CUDNN_TYPE_INT64 || want < 1) return violate("engine index: type %d", (int)type), CUDNN_STATUS_BAD_PARAM;
      *(int64_t *)out = engines[m->engine].index, n = 1;
      break;
    case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE: {
      auto &v = engines[m->engine].notes;
      if (type != CUDNN_TYPE_NUMERICAL_NOTE) return violate("numerical notes: type %d", (int)type), CUDNN_STATUS_BAD_PARAM;
      n = (int64_t)v.size();
      for (int64_t i = 0; i < n && i < want; i++) ((cudnnBackendNumericalNote_t *)out)[i] = v[i];
      break;
    }
    case CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE: {
      auto &v = engines[m->engine].behav;
      if (type != CUDNN_TYPE_BEHAVIOR_NOTE) return violate("behavior notes: type %d", (int)type), CUDNN_STATUS_BAD_PARAM;
      n = (int64_t)v.size();
      for (int64_t i = 0; i < n && i < want; i++) ((cudnnBackendBehaviorNote_t *)out)[i] = v[i];
      break;
    }
    case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE:
      if (type != CUDNN_TYPE_INT64 || m->kind != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)
        return violate("workspace size: type %d kind %d", (int)type, (int)m->kind), CUDNN_STATUS_BAD_PARAM;
      *(int64_t *)out = engines[m->engine].ws, n = 1;
      break;
    default: return violate("get of attribute %d", (int)name), CUDNN_STATUS_NOT_SUPPORTED;
  }
  if (got) *got = n;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t m_execute(cudnnHandle_t, cudnnBackendDescriptor_t plan, cudnnBackendDescriptor_t pack) {
  mdesc *p = D(plan), *v = D(pack);
  if (!p || !p->finalized || p->kind != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR) return violate("execute: plan"), CUDNN_STATUS_BAD_PARAM;
  if (!v || !v->finalized || v->kind != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR) return violate("execute: pack"), CUDNN_STATUS_BAD_PARAM;
  last_ptrs.clear();
  auto &uids = I(v, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
  auto &ptrs = v->attrs[CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS].ptrs;
  for (size_t i = 0; i < uids.size() && i < ptrs.size(); i++) last_ptrs[uids[i]] = ptrs[i];
  last_ws = v->attrs[CUDNN_ATTR_VARIANT_PACK_WORKSPACE].ptrs.at(0);
  if (engines[p->engine].ws > 0 && !last_ws) violate("execute: an engine that needs workspace got none");
  last_engine = p->engine;
  executions++;
  return CUDNN_STATUS_SUCCESS;
}

static const char *m_error_string(cudnnStatus_t) { return "mock status"; }

/* ---- the tests ---- */

static fl_tensor *cpu_tensor(int nd, const int64_t *shape, fl_dtype dt, int64_t offset) {
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  int64_t n = offset, numel = 1;
  for (int i = 0; i < nd; i++) numel *= shape[i];
  n += numel;
  fl_tensor *flat = NULL, *part = NULL, *t = NULL;
  fl_zeros(1, &n, o, &flat);
  fl_narrow(flat, 0, offset, n - offset, &part);
  fl_view(part, nd, shape, &t);
  fl_release(flat), fl_release(part);
  return t;
}

struct problem {
  const char *name;
  int nsp;
  int64_t n, cin, cout, groups, in[3], k[3], stride[3], pad[3], dil[3];
};

static fl_conv_geom geom_of(const problem &c) {
  fl_conv_geom g;
  memset(&g, 0, sizeof g);
  g.nsp = c.nsp, g.n = c.n, g.cin = c.cin, g.cout = c.cout, g.groups = c.groups;
  for (int i = 0; i < 3; i++) {
    bool u = i < c.nsp;
    g.in[i] = u ? c.in[i] : 1, g.k[i] = u ? c.k[i] : 1, g.stride[i] = u ? c.stride[i] : 1;
    g.pad[i] = u ? c.pad[i] : 0, g.dil[i] = u ? c.dil[i] : 1;
    g.out[i] = (g.in[i] + 2 * g.pad[i] - g.dil[i] * (g.k[i] - 1) - 1) / g.stride[i] + 1;
  }
  return g;
}

struct run {
  fl_tensor *x, *w, *y, *out;
  const fl_tensor *a, *b;
  fl_conv_geom g;
  fc_dnn::plan p;
  fl_status st;
};

/* graph_build of one problem in one direction, with the engine lists set by the caller. */
static void build(run &r, const problem &c, fl_dtype dt, fl_conv_dir dir, bool tf32, int64_t offset,
                  fc_dnn::dnn_device *dev, fc_context *ctx) {
  r.g = geom_of(c);
  int64_t xs[5] = {c.n, c.cin}, ws[5] = {c.cout, c.cin / c.groups}, ys[5] = {c.n, c.cout};
  for (int i = 0; i < c.nsp; i++) xs[2 + i] = r.g.in[i], ws[2 + i] = r.g.k[i], ys[2 + i] = r.g.out[i];
  r.x = cpu_tensor(c.nsp + 2, xs, dt, offset), r.w = cpu_tensor(c.nsp + 2, ws, dt, offset);
  r.y = cpu_tensor(c.nsp + 2, ys, dt, offset);
  r.out = dir == FL_CONV_FORWARD ? r.y : dir == FL_CONV_DATA ? r.x : r.w;
  r.a = dir == FL_CONV_DATA ? r.y : r.x;
  r.b = dir == FL_CONV_WEIGHT ? r.y : r.w;
  memset(&r.p, 0, sizeof r.p);
  r.p.key.dir = dir, r.p.key.dtype = dt, r.p.key.nsp = c.nsp, r.p.key.tf32 = tf32, r.p.key.api = FL_CUDNN_GRAPH;
  r.p.key.aligned = offset == 0;
  r.st = fc_dnn::graph_build(dev, ctx, &r.p, dir, r.out, r.a, r.b, &r.g);
}

static void finish(run &r) {
  fc_dnn::graph_destroy(&r.p.graph);
  fl_release(r.x), fl_release(r.w), fl_release(r.y);
}

static int chosen(run &r) { return r.p.graph.exec ? ((mdesc *)r.p.graph.exec)->engine : -1; }

/* The live tensor descriptor of uid has t's shape (a 1-d convolution's with a unit dim before its one spatial dim). */
static bool dims_match(int64_t uid, const fl_tensor *t) {
  std::vector<int64_t> want(t->shape, t->shape + t->ndim);
  if (t->ndim == 3) want.insert(want.begin() + 2, 1);
  for (mdesc *m : live)
    if (m->kind == CUDNN_BACKEND_TENSOR_DESCRIPTOR && m->finalized && I(m, CUDNN_ATTR_TENSOR_UNIQUE_ID)[0] == uid)
      return I(m, CUDNN_ATTR_TENSOR_DIMENSIONS) == want;
  return false;
}

static void engines_are(std::vector<mengine> e, std::vector<int> inst, std::vector<int> fb) {
  engines = e, instant_list = inst, fallback_list = fb;
}

static const cudnnBackendNumericalNote_t TC = CUDNN_NUMERICAL_NOTE_TENSOR_CORE,
                                         DOWN = CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS,
                                         RPR = CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION,
                                         NONDET = CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
static const cudnnBackendBehaviorNote_t RTC = CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
static const cudnnStatus_t OKS = CUDNN_STATUS_SUCCESS, NOPE = CUDNN_STATUS_NOT_SUPPORTED;

int main(void) {
  setenv("FLAME_CUDNN_FIND", "0", 1);
  fc_dnn::lib.cudnnBackendCreateDescriptor = m_create;
  fc_dnn::lib.cudnnBackendDestroyDescriptor = m_destroy;
  fc_dnn::lib.cudnnBackendSetAttribute = m_set;
  fc_dnn::lib.cudnnBackendGetAttribute = m_get;
  fc_dnn::lib.cudnnBackendFinalize = m_finalize;
  fc_dnn::lib.cudnnBackendExecute = m_execute;
  fc_dnn::lib.cudnnGetErrorString = m_error_string;
  fc_dnn::dnn_device *dev = (fc_dnn::dnn_device *)calloc(1, sizeof *dev);
  dev->handle = (cudnnHandle_t)0x1234;
  fc_context ctx;
  memset(&ctx, 0, sizeof ctx);

  const problem P2 = {"2d k3 p1", 2, 2, 8, 16, 1, {9, 11}, {3, 3}, {1, 1}, {1, 1}, {1, 1}};
  const problem PG = {"2d groups2 k3x2 s2x1 p1x0 d2x1", 2, 1, 6, 4, 2, {13, 9}, {3, 2}, {2, 1}, {1, 0}, {2, 1}};
  const problem P1 = {"1d k5 s2 p2 d2", 1, 2, 4, 4, 2, {20}, {5}, {2}, {2}, {2}};
  const problem P3 = {"3d k2x3x3 s2x1x2 p0x1x1", 3, 1, 4, 4, 2, {6, 7, 5}, {2, 3, 3}, {2, 1, 2}, {0, 1, 1}, {1, 2, 1}};
  static const char *const DIRS[] = {"forward", "input grad", "weight grad"};

  /* Every direction of every problem: the protocol, the shapes, and the pointer each uid gets. */
  engines_are({{7, {TC}, {}, OKS, 1 << 20}}, {0}, {});
  for (const problem *c : {&P2, &PG, &P1, &P3})
    for (int dir = 0; dir < 3; dir++) {
      size_t before = live.size(), nv = violations.size();
      run r;
      build(r, *c, FL_BF16, (fl_conv_dir)dir, false, 0, dev, &ctx);
      CHECK(r.st == FL_OK && chosen(r) == 0 && r.p.ws == (1u << 20), "%s %s: built (engine %d, ws %zu)%s%s", c->name,
            DIRS[dir], chosen(r), r.p.ws, r.st ? ": " : "", r.st ? fl_last_error() : "");
      CHECK(dims_match('x', r.x) && dims_match('y', r.y) && dims_match('w', r.w),
            "%s %s: the tensor descriptors have the operands' shapes", c->name, DIRS[dir]);
      char wsbuf[1];
      const char *call = "";
      cudnnStatus_t s = fc_dnn::graph_execute(dev->handle, &r.p, (fl_conv_dir)dir, fc_base(r.out), fc_base(r.a),
                                              fc_base(r.b), wsbuf, &call);
      CHECK(s == OKS && last_ptrs['x'] == fc_base(r.x) && last_ptrs['y'] == fc_base(r.y) &&
                last_ptrs['w'] == fc_base(r.w) && last_ws == wsbuf && last_engine == chosen(r),
            "%s %s: the variant pack maps x, y, w to the operands of their roles", c->name, DIRS[dir]);
      finish(r);
      CHECK(live.size() == before, "%s %s: every descriptor destroyed (%zu left)", c->name, DIRS[dir],
            live.size() - before);
      CHECK(violations.size() == nv, "%s %s: protocol kept%s%s", c->name, DIRS[dir],
            violations.size() > nv ? ": " : "", violations.size() > nv ? violations[nv].c_str() : "");
    }

  /* Unaligned operands declare the element size as their alignment. */
  {
    run r;
    build(r, P2, FL_F16, FL_CONV_FORWARD, false, 1, dev, &ctx);
    int64_t al = -1;
    for (mdesc *m : live)
      if (m->kind == CUDNN_BACKEND_TENSOR_DESCRIPTOR) al = I(m, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT)[0];
    CHECK(r.st == FL_OK && al == 2, "unaligned f16 operands: byte alignment %lld (2)", (long long)al);
    finish(r);
    run q;
    build(q, P2, FL_F16, FL_CONV_FORWARD, false, 0, dev, &ctx);
    for (mdesc *m : live)
      if (m->kind == CUDNN_BACKEND_TENSOR_DESCRIPTOR) al = I(m, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT)[0];
    CHECK(q.st == FL_OK && al == 16, "aligned operands: byte alignment %lld (16)", (long long)al);
    finish(q);
  }

  /* Which engine config is chosen. */
  struct choice {
    const char *what;
    fl_dtype dt;
    bool tf32;
    std::vector<mengine> e;
    std::vector<int> inst, fb;
    int want; /* -1: none usable, FL_EUNSUPPORTED */
  };
  const int64_t huge = (int64_t)1 << 40;
  const choice CHOICES[] = {
      {"f32 without TF32 skips tensor-core engines", FL_F32, false, {{1, {TC}, {}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 1},
      {"f32 with TF32 takes one", FL_F32, true, {{1, {TC, DOWN}, {}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 0},
      {"down-converted inputs are skipped for bf16", FL_BF16, false, {{1, {DOWN}, {}, OKS, 0}, {2, {TC}, {}, OKS, 0}}, {0, 1}, {}, 1},
      {"a reduced-precision reduction is skipped for bf16", FL_BF16, false, {{1, {RPR}, {}, OKS, 0}, {2, {TC}, {}, OKS, 0}}, {0, 1}, {}, 1},
      {"... but not for f32", FL_F32, false, {{1, {RPR}, {}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 0},
      {"a plan that fails to finalize is skipped", FL_BF16, false, {{1, {}, {}, NOPE, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 1},
      {"a workspace beyond the cap is skipped", FL_BF16, false, {{1, {}, {}, OKS, huge}, {2, {}, {}, OKS, 64}}, {0, 1}, {}, 1},
      {"heuristics' first pick wins without measuring, nondeterministic or not", FL_BF16, false, {{1, {NONDET}, {}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 0},
      {"a run-time compiled engine is taken when first", FL_BF16, false, {{1, {}, {RTC}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0, 1}, {}, 0},
      {"the fallback list when the instant heuristics leave nothing", FL_F32, false, {{1, {TC}, {}, OKS, 0}, {2, {}, {}, OKS, 0}}, {0}, {1}, 1},
      {"no engine at all: FL_EUNSUPPORTED", FL_BF16, false, {{1, {}, {}, NOPE, 0}}, {0}, {0}, -1},
      {"empty heuristics: FL_EUNSUPPORTED", FL_BF16, false, {}, {}, {}, -1},
  };
  for (const choice &c : CHOICES) {
    engines_are(c.e, c.inst, c.fb);
    size_t before = live.size(), nv = violations.size();
    run r;
    build(r, P2, c.dt, FL_CONV_FORWARD, c.tf32, 0, dev, &ctx);
    bool ok = c.want < 0 ? r.st == FL_EUNSUPPORTED && strstr(fl_last_error(), "none usable") && !r.p.graph.exec
                         : r.st == FL_OK && chosen(r) == c.want;
    CHECK(ok, "%s (status %d, engine %d%s%s)", c.what, (int)r.st, chosen(r), r.st ? ": " : "",
          r.st ? fl_last_error() : "");
    finish(r);
    CHECK(live.size() == before && violations.size() == nv, "%s: descriptors destroyed, protocol kept%s%s", c.what,
          violations.size() > nv ? ": " : "", violations.size() > nv ? violations[nv].c_str() : "");
  }

  /* Variant packs: reused while the pointers repeat, one per pointer set among the last fc_dnn::FC_DNN_PACKS. */
  {
    engines_are({{3, {}, {}, OKS, 256}}, {0}, {});
    run r;
    build(r, P2, FL_BF16, FL_CONV_FORWARD, false, 0, dev, &ctx);
    static char bufs[fc_dnn::FC_DNN_PACKS + 2][4];
    const char *call;
    int made = packs_made;
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[0], fc_base(r.a), fc_base(r.b), bufs[1], &call);
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[0], fc_base(r.a), fc_base(r.b), bufs[1], &call);
    CHECK(packs_made - made == 1, "the same pointers twice: one variant pack (%d)", packs_made - made);
    for (int i = 0; i < fc_dnn::FC_DNN_PACKS - 1; i++)
      fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[2 + i], fc_base(r.a), fc_base(r.b), bufs[1], &call);
    made = packs_made;
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[0], fc_base(r.a), fc_base(r.b), bufs[1], &call);
    CHECK(packs_made == made && last_ptrs['y'] == bufs[0], "a pointer set among the last %d: reused", fc_dnn::FC_DNN_PACKS);
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[fc_dnn::FC_DNN_PACKS + 1], fc_base(r.a), fc_base(r.b),
                          bufs[1], &call);
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[0], fc_base(r.a), fc_base(r.b), bufs[1], &call);
    CHECK(packs_made == made + 2 && last_ptrs['y'] == bufs[0], "the oldest set, replaced: rebuilt (%d new)",
          packs_made - made);
    fc_dnn::graph_execute(dev->handle, &r.p, FL_CONV_FORWARD, bufs[0], fc_base(r.a), fc_base(r.b), bufs[2], &call);
    CHECK(last_ws == bufs[2], "another workspace pointer: a pack with it");
    size_t before_destroy = live.size();
    finish(r);
    CHECK(before_destroy - live.size() >= (size_t)fc_dnn::FC_DNN_PACKS + 1, "graph_destroy frees the packs with the plan");
  }

  CHECK(live.empty(), "no descriptor left alive (%zu)", live.size());
  CHECK(violations.empty(), "no protocol violation in all (%zu%s%s)", violations.size(),
        violations.empty() ? "" : "; first: ", violations.empty() ? "" : violations[0].c_str());
  free(dev);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
