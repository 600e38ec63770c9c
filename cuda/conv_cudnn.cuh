/* What the two cuDNN paths of the direct convolution share: the library table
 * (dlopen'ed on first use), the plan cache's key and entries, the workspace
 * cap, candidate choice, logging and the error messages. conv_cudnn.cu holds
 * the cache, the legacy API and the entry; conv_cudnn_graph.cu the backend
 * (graph) API. Only built with cudnn.h (FLAME_HAVE_CUDNN). */
#ifndef FL_CUDA_CONV_CUDNN_CUH
#define FL_CUDA_CONV_CUDNN_CUH

#include "allocator.cuh"
#include "ops.cuh"
#include <cudnn.h>

namespace fc_dnn {

/* ---- the library, resolved at run time ---- */

#define FC_DNN_FUNCS(X)                                                                                 \
  X(cudnnGetVersion) X(cudnnGetErrorString) X(cudnnCreate) X(cudnnSetStream) X(cudnnCreateTensorDescriptor) \
  X(cudnnSetTensorNdDescriptor) X(cudnnDestroyTensorDescriptor) X(cudnnCreateFilterDescriptor)           \
  X(cudnnSetFilterNdDescriptor) X(cudnnDestroyFilterDescriptor) X(cudnnCreateConvolutionDescriptor)      \
  X(cudnnSetConvolutionNdDescriptor) X(cudnnSetConvolutionGroupCount) X(cudnnSetConvolutionMathType)     \
  X(cudnnDestroyConvolutionDescriptor) X(cudnnGetConvolutionForwardAlgorithm_v7)                         \
  X(cudnnFindConvolutionForwardAlgorithmEx) X(cudnnGetConvolutionForwardWorkspaceSize)                   \
  X(cudnnConvolutionForward) X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                              \
  X(cudnnFindConvolutionBackwardDataAlgorithmEx) X(cudnnGetConvolutionBackwardDataWorkspaceSize)         \
  X(cudnnConvolutionBackwardData) X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                       \
  X(cudnnFindConvolutionBackwardFilterAlgorithmEx) X(cudnnGetConvolutionBackwardFilterWorkspaceSize)     \
  X(cudnnConvolutionBackwardFilter) X(cudnnBackendCreateDescriptor) X(cudnnBackendDestroyDescriptor)     \
  X(cudnnBackendSetAttribute) X(cudnnBackendGetAttribute) X(cudnnBackendFinalize) X(cudnnBackendExecute)

struct dnn_lib {
#define FC_DNN_PTR(f) decltype(&::f) f;
  FC_DNN_FUNCS(FC_DNN_PTR)
#undef FC_DNN_PTR
};

extern dnn_lib lib; /* valid once have_lib() is true */

/* ---- plans ---- */

/* Everything a plan depends on; memset before filling, compared with memcmp.
 * `aligned`: all three pointers 16-byte aligned (some kernels need it, and
 * the measurement ran on such pointers). `api`: the API asked for
 * (fl_cudnn_api), so both APIs' plans live side by side. */
struct plan_key {
  int dir, dtype, nsp, tf32, aligned, api;
  int64_t n, cin, cout, groups;
  int64_t in[3], k[3], out[3], stride[3], pad[3], dil[3];
};

/* A variant pack and the pointers it holds: x, y, w, workspace. */
struct graph_pack {
  cudnnBackendDescriptor_t desc;
  void *ptrs[4];
};

/* The backend API's part of a plan: the finalized execution plan, the
 * descriptors it was made from (kept alive beside it, destroyed with it), and
 * the variant packs of recent calls, reused when a call's pointers match one:
 * layers of one shape share a key, and a training step's buffers tend to come
 * back at the same addresses from the caching allocator step after step. */
enum { FC_DNN_GRAPH_KEEP = 10, FC_DNN_PACKS = 8 };
struct graph_plan {
  cudnnBackendDescriptor_t exec;
  cudnnBackendDescriptor_t keep[FC_DNN_GRAPH_KEEP];
  int nkeep;
  graph_pack packs[FC_DNN_PACKS];
  int next_pack; /* the slot a new pack takes (round robin) */
};

struct plan {
  plan_key key; /* all zero in an empty slot: never matches (nsp 0) */
  uint64_t hash; /* of key: the cache scan compares this first */
  int api; /* the API that runs it (fl_cudnn_api): the key's, or legacy where the graph had no engine */
  /* the legacy API: descriptors and algorithm */
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  int algo;
  graph_plan graph; /* the backend API */
  size_t ws; /* workspace bytes, either API */
};

/* Enough for every conv layer of a large network in all three directions;
 * beyond it the oldest plan is replaced. */
enum { FC_DNN_PLANS = 512, FC_DNN_MAX_DEVICES = 64 };

struct dnn_device {
  cudnnHandle_t handle;
  cudaStream_t stream; /* the stream the handle is bound to */
  plan plans[FC_DNN_PLANS];
  int count, next;
};

/* One candidate (a legacy algorithm or a graph engine config), whichever API it came from. */
struct perf {
  int algo; /* legacy: the algorithm; graph: the engine's global index */
  cudnnStatus_t status;
  float time;
  size_t memory;
  bool deterministic;
  cudnnMathType_t math;
};

enum { FC_DNN_MAX_ALGOS = 8 }; /* the largest of the legacy *_ALGO_COUNTs; the graph API measures as many */

size_t ws_cap(int device);
bool find_enabled(void);
int pick(const perf *r, int n, bool measured, bool strict_f32, size_t ws_limit);
void log_choice(const char *api, fl_conv_dir dir, const fl_tensor *out, const fl_conv_geom *g, const perf *r, int n,
                int chosen);
const char *dir_name(fl_conv_dir d);
cudnnDataType_t dnn_dtype(fl_dtype dt);

/* A failed cuDNN call as an error naming the op, the call, cuDNN's words and the problem. */
fl_status dnn_error(cudnnStatus_t s, const char *call, fl_conv_dir dir, const fl_tensor *out, const fl_tensor *a,
                    const fl_tensor *b, const fl_conv_geom *g);

/* Inside a function that has dir, out, a, b, g in scope. */
#define FC_DNN_CHECK(expr, name)                                                   \
  do {                                                                             \
    cudnnStatus_t fc_s_ = (expr);                                                  \
    if (fc_s_ != CUDNN_STATUS_SUCCESS) return dnn_error(fc_s_, name, dir, out, a, b, g); \
  } while (0)
#define FC_DNN(f, args) FC_DNN_CHECK(lib.f args, #f)

/* cuDNN wants 4-d or 5-d tensors: a 1-d conv runs as 2-d with a leading unit
 * spatial dim (kernel 1, stride 1, no padding there). */
struct nd_geom {
  int nsp; /* 2 or 3 */
  int in[3], k[3], out[3], stride[3], pad[3], dil[3];
};
nd_geom nd_of(const fl_conv_geom *g);

/* ---- the backend (graph) API: conv_cudnn_graph.cu ---- */

/* p->graph for p->key: the operation graph of one convolution, engine configs
 * from cuDNN's heuristics, and the execution plan of the chosen one (measured
 * on the real operands unless FLAME_CUDNN_FIND=0). FL_EUNSUPPORTED when the
 * graph has no usable engine: the caller then takes the legacy API for the key. */
fl_status graph_build(dnn_device *dev, fc_context *ctx, plan *p, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                      const fl_tensor *b, const fl_conv_geom *g);
/* One call: a variant pack (one of the plan's recent ones when the pointers match, else a new one in the oldest
 * slot), then cudnnBackendExecute; *call names the step that failed. */
cudnnStatus_t graph_execute(cudnnHandle_t h, plan *p, fl_conv_dir dir, void *o, const void *a, const void *b,
                            void *ws, const char **call);
void graph_destroy(graph_plan *gp);

} // namespace fc_dnn

#endif
