/* The fused softmax backward over the last dim of contiguous [rows, n] tensors
 * (attention's probabilities): softmax: gin = y (g - sum(g y));
 * log_softmax: gin = g - exp(y) sum(g). One warp per row in a grid-stride loop:
 * the row's dot product by shuffles, then one write pass, computed in float
 * (double for f64). One pass instead of the four elementwise/reduce passes of
 * the composed backward. */
#include "context.cuh"
#include "dispatch.cuh"
#include "math.cuh"
#include "ops.cuh"
#include "reducers.cuh"

namespace {

template <class T>
__global__ void __launch_bounds__(FC_THREADS)
softmax_backward_kernel(T *gin, const T *g, const T *y, int64_t rows, int64_t n, bool log) {
  using C = typename fc_num<T>::acc;
  const int lane = threadIdx.x & 31, warps = FC_THREADS / 32;
  for (int64_t row = (int64_t)blockIdx.x * warps + threadIdx.x / 32; row < rows; row += (int64_t)gridDim.x * warps) {
    const T *gr = g + row * n, *yr = y + row * n;
    C s = 0;
    for (int64_t i = lane; i < n; i += 32) {
      C gv = fc_num<T>::load(gr[i]);
      s += log ? gv : gv * fc_num<T>::load(yr[i]);
    }
    for (int d = 16; d > 0; d >>= 1) s += fc_shfl_down(s, d, 32);
    s = __shfl_sync(0xffffffffu, s, 0);
    T *out = gin + row * n;
    for (int64_t i = lane; i < n; i += 32) {
      C gv = fc_num<T>::load(gr[i]), yv = fc_num<T>::load(yr[i]);
      out[i] = fc_num<T>::make(log ? gv - fc_exp(yv) * s : yv * (gv - s));
    }
  }
}

} // namespace

namespace fc {

fl_status softmax_backward_forward(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log) {
  const char *name = log ? "log_softmax backward" : "softmax backward";
  if (!fl_same_shape(gin, g) || !fl_same_shape(gin, y) || g->dtype != gin->dtype || y->dtype != gin->dtype ||
      !fl_is_contiguous(gin) || !fl_is_contiguous(g) || !fl_is_contiguous(y) || gin->ndim == 0)
    return fl_error(FL_EINVAL, "%s: gin, g and y must be contiguous, of one shape and dtype", name);
  fc_context *ctx;
  FL_TRY(fc_context_of(gin, &ctx));
  int64_t n = gin->shape[gin->ndim - 1], total = fl_numel(gin);
  if (total == 0) return FL_OK;
  int64_t rows = total / n, warps = FC_THREADS / 32;
  unsigned bx = (unsigned)fc_min64(fc_ceil_div(rows, warps), (int64_t)ctx->sm_count * 32);
  return fc_dispatch<FC_M_FLOAT>(gin->dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward_kernel<T><<<bx, FC_THREADS, 0, ctx->stream>>>((T *)fc_base(gin), (const T *)fc_base(g),
                                                                    (const T *)fc_base(y), rows, n, log);
    return fc_launched("softmax_backward_kernel");
  });
}

} // namespace fc
