/* The attention family's row kernels over the last dim of contiguous [rows, n]
 * tensors: one warp per row in a grid-stride loop (64-bit rows), computed in
 * float (double for f64).
 * - masked_softmax: softmax restricted to the allowed keys (a bool mask of any
 *   strides, 0 where broadcast, and/or the causal limit j <= i + shift); masked
 *   keys and rows without an allowed score above -inf give 0. Three reads of the
 *   row (max, sum, write), the second and third from cache.
 * - softmax backward: softmax: gin = y (g - sum(g y)); log_softmax:
 *   gin = g - exp(y) sum(g). The row's dot product by shuffles, then one write
 *   pass: one pass instead of the four of the composed backward. */
#include "context.cuh"
#include "dispatch.cuh"
#include "math.cuh"
#include "ops.cuh"
#include "reducers.cuh"
#include <cstring>

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

struct ms_args {
  int64_t rows, n, sq, shift, mstep;
  bool causal;
  int nd; /* dims of s; the mask's row offset unravels the row over the first nd - 1 */
  int64_t shape[FL_MAX_DIMS], mstride[FL_MAX_DIMS];
};

template <class C>
__device__ __forceinline__ C nan_max(C a, C b) { return (b > a || fc_isnan(b)) ? b : a; }

template <class T>
__global__ void __launch_bounds__(FC_THREADS) masked_softmax_kernel(T *y, const T *x, const uint8_t *mask, ms_args a) {
  using C = typename fc_num<T>::acc;
  const int lane = threadIdx.x & 31, warps = FC_THREADS / 32;
  for (int64_t row = (int64_t)blockIdx.x * warps + threadIdx.x / 32; row < a.rows; row += (int64_t)gridDim.x * warps) {
    const uint8_t *mr = nullptr;
    if (mask) {
      int64_t off = 0, r = row;
      for (int d = a.nd - 2; d >= 0; d--) {
        off += (r % a.shape[d]) * a.mstride[d];
        r /= a.shape[d];
      }
      mr = mask + off;
    }
    int64_t lim = a.causal ? row % a.sq + a.shift : a.n - 1; /* keys j <= lim */
    if (lim > a.n - 1) lim = a.n - 1;
    const T *xr = x + row * a.n;
    C m = -(C)INFINITY;
    for (int64_t j = lane; j <= lim; j += 32)
      if (!mr || mr[j * a.mstep]) m = nan_max(m, fc_num<T>::load(xr[j]));
    for (int d = 16; d > 0; d >>= 1) m = nan_max(m, (C)__shfl_xor_sync(0xffffffffu, m, d));
    const bool live = m > -(C)INFINITY || fc_isnan(m);
    C s = 0;
    if (live)
      for (int64_t j = lane; j <= lim; j += 32)
        if (!mr || mr[j * a.mstep]) s += fc_exp(fc_num<T>::load(xr[j]) - m);
    for (int d = 16; d > 0; d >>= 1) s += (C)__shfl_xor_sync(0xffffffffu, s, d);
    const C inv = (C)1 / s;
    T *yr = y + row * a.n;
    for (int64_t j = lane; j < a.n; j += 32) {
      bool on = live && j <= lim && (!mr || mr[j * a.mstep]);
      yr[j] = fc_num<T>::make(on ? fc_exp(fc_num<T>::load(xr[j]) - m) * inv : (C)0);
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
    softmax_backward_kernel<T><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>((T *)fc_base(gin), (const T *)fc_base(g),
                                                                    (const T *)fc_base(y), rows, n, log);
    return fc_launched("softmax_backward_kernel");
  });
}

fl_status masked_softmax_forward(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift) {
  const char *name = "masked_softmax";
  int nd = s->ndim;
  if (nd < 2 || !fl_same_shape(out, s) || out->dtype != s->dtype || !fl_is_contiguous(out) || !fl_is_contiguous(s) ||
      (mask && (!fl_same_shape(mask, s) || mask->dtype != FL_BOOL)))
    return fl_error(FL_EINVAL, "%s: out and s must be contiguous [..., Sq, Sk] of one dtype, mask bool of their shape", name);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t total = fl_numel(s);
  if (total == 0) return FL_OK;
  ms_args a;
  memset(&a, 0, sizeof a);
  a.n = s->shape[nd - 1], a.sq = s->shape[nd - 2], a.rows = total / a.n, a.shift = shift, a.causal = causal, a.nd = nd;
  for (int d = 0; d < nd; d++) a.shape[d] = s->shape[d], a.mstride[d] = mask ? mask->stride[d] : 0;
  a.mstep = mask ? mask->stride[nd - 1] : 0;
  const uint8_t *mp = mask ? (const uint8_t *)fc_base(mask) : nullptr;
  int64_t warps = FC_THREADS / 32;
  unsigned bx = (unsigned)fc_min64(fc_ceil_div(a.rows, warps), (int64_t)ctx->sm_count * 32);
  return fc_dispatch<FC_M_FLOAT>(s->dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_softmax_kernel<T><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>((T *)fc_base(out), (const T *)fc_base(s), mp, a);
    return fc_launched("masked_softmax_kernel");
  });
}

} // namespace fc
