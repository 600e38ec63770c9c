/* softmax / log_softmax over one dim of a contiguous tensor, viewed as
 * [outer, D, inner]. Each output row keeps an online (max, sum of exp)
 * pair, so x is read twice (stats, then output) and written once, in float
 * (double for f64). inner == 1: a group of threads per row, unit-stride reads;
 * inner > 1: one thread per (outer, inner) column, adjacent threads reading
 * adjacent columns. */
#include "context.cuh"
#include "math.cuh"
#include "online.cuh"
#include "ops.cuh"
#include "reducers.cuh"

namespace {

template <class C>
__device__ __forceinline__ C finish(C v, online<C> a, bool log) {
  return log ? v - a.m - fc_log(a.s) : fc_exp(v - a.m) / a.s;
}

struct sm_args {
  int64_t outer, D, inner;
  int group; /* rows kernel: threads per row */
  bool log;
};

template <class T>
__global__ void __launch_bounds__(FC_THREADS) softmax_rows_kernel(const T *x, T *y, sm_args p) {
  using C = typename fc_num<T>::acc;
  __shared__ online<C> part[FC_THREADS / 32];
  const int G = p.group, lane = threadIdx.x & (G - 1), groups = FC_THREADS / G;
  for (int64_t rb = (int64_t)blockIdx.x * groups; rb < p.outer; rb += (int64_t)gridDim.x * groups) {
    const int64_t row = rb + threadIdx.x / G;
    online<C> a{-(C)INFINITY, (C)0};
    const T *xr = x + row * p.D;
    if (row < p.outer)
      for (int64_t i = lane; i < p.D; i += G) push(a, fc_num<T>::load(xr[i]));
    const int w = G < 32 ? G : 32;
    for (int d = w / 2; d > 0; d >>= 1) {
      online<C> b{fc_shfl_down(a.m, d, w), fc_shfl_down(a.s, d, w)};
      a = merge(a, b);
    }
    if (G > 32) {
      if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = a;
      __syncthreads();
      a = part[(threadIdx.x / G) * (G / 32)];
      for (int k = 1; k < G / 32; k++) a = merge(a, part[(threadIdx.x / G) * (G / 32) + k]);
      __syncthreads();
    } else {
      a.m = fc_shfl_idx(a.m, (threadIdx.x & 31) & ~(G - 1)); /* the group's lane 0 holds the total */
      a.s = fc_shfl_idx(a.s, (threadIdx.x & 31) & ~(G - 1));
    }
    if (row < p.outer)
      for (int64_t i = lane; i < p.D; i += G)
        y[row * p.D + i] = fc_num<T>::make(finish(fc_num<T>::load(xr[i]), a, p.log));
  }
}

/* Rows of at most 32 * FC_SM_REG elements: a group of G <= 32 threads holds
 * the row in registers, so x is read once; butterfly shuffles give every
 * thread the row's max and sum. */
#define FC_SM_REG 8
template <class T>
__global__ void __launch_bounds__(FC_THREADS) softmax_small_kernel(const T *x, T *y, sm_args p) {
  using C = typename fc_num<T>::acc;
  const int G = p.group, lane = threadIdx.x & (G - 1), groups = FC_THREADS / G;
  for (int64_t rb = (int64_t)blockIdx.x * groups; rb < p.outer; rb += (int64_t)gridDim.x * groups) {
    const int64_t row = rb + threadIdx.x / G;
    const bool valid = row < p.outer;
    C v[FC_SM_REG];
    C m = -(C)INFINITY;
#pragma unroll
    for (int k = 0; k < FC_SM_REG; k++) {
      int64_t i = lane + (int64_t)k * G;
      v[k] = valid && i < p.D ? fc_num<T>::load(x[row * p.D + i]) : -(C)INFINITY;
      m = fc_max(m, v[k]);
    }
    for (int d = G / 2; d > 0; d >>= 1) m = fc_max(m, (C)__shfl_xor_sync(0xffffffffu, m, d, G));
    C s = 0, e[FC_SM_REG];
#pragma unroll
    for (int k = 0; k < FC_SM_REG; k++) { /* exp once per element; padding adds 0 */
      v[k] -= m;
      e[k] = lane + k * G < p.D ? fc_exp(v[k]) : (C)0;
      s += e[k];
    }
    for (int d = G / 2; d > 0; d >>= 1) s += (C)__shfl_xor_sync(0xffffffffu, s, d, G);
    const C ls = fc_log(s), inv = (C)1 / s;
#pragma unroll
    for (int k = 0; k < FC_SM_REG; k++) {
      int64_t i = lane + (int64_t)k * G;
      if (valid && i < p.D) y[row * p.D + i] = fc_num<T>::make(p.log ? v[k] - ls : e[k] * inv);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) softmax_cols_kernel(const T *x, T *y, sm_args p) {
  using C = typename fc_num<T>::acc;
  const int64_t ncols = p.outer * p.inner;
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < ncols; c += (int64_t)gridDim.x * blockDim.x) {
    int64_t o = c / p.inner, in = c - o * p.inner;
    int64_t base = o * p.D * p.inner + in;
    online<C> a{-(C)INFINITY, (C)0};
    for (int64_t i = 0; i < p.D; i++) push(a, fc_num<T>::load(x[base + i * p.inner]));
    for (int64_t i = 0; i < p.D; i++)
      y[base + i * p.inner] = fc_num<T>::make(finish(fc_num<T>::load(x[base + i * p.inner]), a, p.log));
  }
}

} // namespace

namespace fc {

fl_status softmax_forward(fl_tensor *out, const fl_tensor *x, int dim, bool log) {
  const char *name = log ? "log_softmax" : "softmax";
  if (!fl_same_shape(out, x) || out->dtype != x->dtype) {
    fl_desc a = fl_describe(out), b = fl_describe(x);
    return fl_error(FL_ESHAPE, "%s: output %s must match input %s", name, a.s, b.s);
  }
  if (!fl_is_contiguous(x) || !fl_is_contiguous(out))
    return fl_error(FL_EINVAL, "%s: the cuda kernel needs contiguous input and output", name);
  int nd = x->ndim;
  if (nd > 0 && (dim < 0 || dim >= nd)) return fl_error(FL_EINVAL, "%s: bad dim %d for %d dims", name, dim, nd);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (fl_numel(x) == 0) return FL_OK;
  sm_args p;
  p.outer = 1, p.D = nd ? x->shape[dim] : 1, p.inner = 1;
  for (int d = 0; d < dim; d++) p.outer *= x->shape[d];
  for (int d = dim + 1; d < nd; d++) p.inner *= x->shape[d];
  p.log = log;
  p.group = (int)fc_min64(256, fc_max64(1, fc_next_pow2(fc_ceil_div(p.D, 8))));
  return fc_dispatch<FC_M_FLOAT>(x->dtype, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *xp = (const T *)fc_base(x);
    T *yp = (T *)fc_base(out);
    if (p.inner == 1 && p.D <= 32 * FC_SM_REG) {
      sm_args q = p;
      q.group = (int)fc_min64(32, fc_next_pow2(fc_ceil_div(p.D, FC_SM_REG)));
      int64_t groups = FC_THREADS / q.group;
      unsigned bx = (unsigned)fc_min64(fc_ceil_div(p.outer, groups), (int64_t)ctx->sm_count * 32);
      softmax_small_kernel<T><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>(xp, yp, q);
    } else if (p.inner == 1) {
      int64_t groups = FC_THREADS / p.group;
      unsigned bx = (unsigned)fc_min64(fc_ceil_div(p.outer, groups), (int64_t)ctx->sm_count * 32);
      softmax_rows_kernel<T><<<bx, FC_THREADS, 0, fc_stream(ctx)>>>(xp, yp, p);
    } else {
      softmax_cols_kernel<T><<<fc_grid(ctx, p.outer * p.inner, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(xp, yp, p);
    }
    return fc_launched("softmax_kernel");
  });
}

} // namespace fc
