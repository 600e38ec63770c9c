/* Max, avg and adaptive avg pooling over 1 to 3 spatial dims, forward and
 * backward, one thread per element (grid-stride, 64-bit indices), f32
 * accumulation for f16/bf16. Windows and gather ranges come from
 * core/pool_geom.h, the CPU backend's functions: the backward computes each
 * input-gradient element by gathering over the outputs whose windows touch it
 * (max: those whose saved argmax is that element), so it needs no atomics and
 * is bit-for-bit deterministic. */
#include "ops.cuh"
#include "resample.cuh"
#include "resample_fast.cuh"

namespace {

/* ---- the 2-D fast paths (resample_fast.cuh): the generic kernels' windows, loop order and arithmetic, with
 * 32-bit index math; bit-identical results ---- */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) pool2d_kernel(fc_pool2d g, const T *x, T *y, int64_t *idx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int nin = g.in[0] * g.in[1], W = g.in[1];
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int oh, ow, lo0, hi0, div0, lo1, hi1, div1;
    const T *xp = x + (uint32_t)fc_split2(e, g.out_div[1], g.out_div[0], &oh, &ow) * (uint32_t)nin;
    fc_pool2d_window(&g, 0, oh, &lo0, &hi0, &div0);
    fc_pool2d_window(&g, 1, ow, &lo1, &hi1, &div1);
    if (g.kind == FL_POOL_MAX) {
      C best = -(C)INFINITY;
      int bi = -1;
      for (int b = lo0; b < hi0; b += g.dil[0])
#pragma unroll 4 /* loads issued ahead; the comparisons stay in order */
        for (int c = lo1; c < hi1; c += g.dil[1]) {
          const int i = b * W + c;
          C v = fc_num<T>::load(xp[i]);
          if (bi < 0 || v > best || fc_isnan(v)) best = v, bi = i; /* the first max, the last NaN */
        }
      y[e] = fc_num<T>::make(best);
      idx[e] = (int64_t)bi + g.base;
    } else {
      C s = 0;
      for (int b = lo0; b < hi0; b++)
#pragma unroll 4 /* loads issued ahead (adaptive windows are long); the sum stays in order */
        for (int c = lo1; c < hi1; c++) s += fc_num<T>::load(xp[b * W + c]);
      const bool empty = lo0 >= hi0 || lo1 >= hi1;
      y[e] = fc_num<T>::make(empty ? (C)0 : s / (C)(div0 * div1));
    }
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS)
    pool2d_grad_kernel(fc_pool2d g, const T *dy, const int64_t *idx, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int nout = g.out[0] * g.out[1], OW = g.out[1];
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int ih, iw, lo0, hi0, lo1, hi1;
    const uint32_t p = (uint32_t)fc_split2(e, g.in_div[1], g.in_div[0], &ih, &iw);
    fc_pool2d_range(&g, 0, ih, &lo0, &hi0);
    fc_pool2d_range(&g, 1, iw, &lo1, &hi1);
    const T *gp = dy + p * (uint32_t)nout;
    C s = 0;
    if (g.kind == FL_POOL_MAX) {
      const int64_t *ip = idx + p * (uint32_t)nout;
      const int64_t flat = (int64_t)(ih * g.in[1] + iw) + g.base;
      for (int oh = lo0; oh < hi0; oh++)
        for (int ow = lo1; ow < hi1; ow++) {
          const int k = oh * OW + ow;
          if (ip[k] == flat) s += fc_num<T>::load(gp[k]);
        }
    } else {
      for (int oh = lo0; oh < hi0; oh++) {
        int a, b, dh;
        fc_pool2d_window(&g, 0, oh, &a, &b, &dh);
        for (int ow = lo1; ow < hi1; ow++) {
          int dw;
          fc_pool2d_window(&g, 1, ow, &a, &b, &dw);
          s += fc_num<T>::load(gp[oh * OW + ow]) / (C)(dh * dw);
        }
      }
    }
    dx[e] = fc_num<T>::make(s);
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) pool_kernel(fl_pool_geom g, const T *x, T *y, int64_t *idx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int64_t nin = g.in[0] * g.in[1] * g.in[2], H = g.in[1], W = g.in[2];
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t o[3], lo[3], hi[3], div[3];
    const T *xp = x + fc_split3(e, g.out, o) * nin;
    bool empty = false;
    for (int d = 0; d < 3; d++) {
      fl_pool_window(&g, d, o[d], &lo[d], &hi[d], &div[d]);
      empty = empty || lo[d] >= hi[d];
    }
    if (g.kind == FL_POOL_MAX) {
      C best = -(C)INFINITY;
      int64_t bi = -1;
      for (int64_t a = lo[0]; a < hi[0]; a += g.dil[0])
        for (int64_t b = lo[1]; b < hi[1]; b += g.dil[1])
          for (int64_t c = lo[2]; c < hi[2]; c += g.dil[2]) {
            int64_t i = (a * H + b) * W + c;
            C v = fc_num<T>::load(xp[i]);
            if (bi < 0 || v > best || fc_isnan(v)) best = v, bi = i; /* the first max, the last NaN */
          }
      y[e] = fc_num<T>::make(best);
      idx[e] = bi + g.base;
    } else {
      C s = 0;
      for (int64_t a = lo[0]; a < hi[0]; a++)
        for (int64_t b = lo[1]; b < hi[1]; b++)
          for (int64_t c = lo[2]; c < hi[2]; c++) s += fc_num<T>::load(xp[(a * H + b) * W + c]);
      y[e] = fc_num<T>::make(empty ? (C)0 : s / (C)(div[0] * div[1] * div[2]));
    }
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS)
    pool_grad_kernel(fl_pool_geom g, const T *dy, const int64_t *idx, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int64_t nout = g.out[0] * g.out[1] * g.out[2], OH = g.out[1], OW = g.out[2];
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t i[3], lo[3], hi[3], o[3];
    const int64_t p = fc_split3(e, g.in, i), flat = (i[0] * g.in[1] + i[1]) * g.in[2] + i[2];
    for (int d = 0; d < 3; d++) fl_pool_range(&g, d, i[d], &lo[d], &hi[d]);
    const T *gp = dy + p * nout;
    const int64_t *ip = idx ? idx + p * nout : nullptr;
    C s = 0;
    for (o[0] = lo[0]; o[0] < hi[0]; o[0]++)
      for (o[1] = lo[1]; o[1] < hi[1]; o[1]++)
        for (o[2] = lo[2]; o[2] < hi[2]; o[2]++) {
          const int64_t k = (o[0] * OH + o[1]) * OW + o[2];
          if (g.kind == FL_POOL_MAX) {
            if (ip[k] - g.base == flat) s += fc_num<T>::load(gp[k]);
            continue;
          }
          int64_t div = 1;
          for (int d = 0; d < 3; d++) {
            int64_t a, b, m;
            fl_pool_window(&g, d, o[d], &a, &b, &m);
            div *= m;
          }
          s += fc_num<T>::load(gp[k]) / (C)div;
        }
    dx[e] = fc_num<T>::make(s);
  }
}

} // namespace

namespace fc {

fl_status pool_forward(const fl_pool_geom *g, fl_tensor *out, fl_tensor *idx, const fl_tensor *x) {
  if (g->kind == FL_POOL_MAX && !idx) return fl_error(FL_EINVAL, "max pool: the cuda kernel needs the index tensor");
  const fl_tensor *ts[] = {out, x, idx};
  return fc_resample_launch<FC_M_FLOAT>("pool", 3, ts, x->dtype, [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_pool2d f;
    if (fc_pool2d_make(g, &f)) {
      pool2d_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
          f, (const T *)fc_base(x), (T *)fc_base(out), idx ? (int64_t *)fc_base(idx) : nullptr, n);
      return fc_launched("pool2d_kernel");
    }
    pool_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
        *g, (const T *)fc_base(x), (T *)fc_base(out), idx ? (int64_t *)fc_base(idx) : nullptr, n);
    return fc_launched("pool_kernel");
  });
}

fl_status pool_backward(const fl_pool_geom *g, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *idx) {
  if (g->kind == FL_POOL_MAX && !idx) return fl_error(FL_EINVAL, "max pool backward: the index tensor is missing");
  const fl_tensor *ts[] = {dx, dy, idx};
  return fc_resample_launch<FC_M_FLOAT>("pool backward", 3, ts, dy->dtype, [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_pool2d f;
    if (fc_pool2d_make(g, &f)) {
      pool2d_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
          f, (const T *)fc_base(dy), idx ? (const int64_t *)fc_base(idx) : nullptr, (T *)fc_base(dx), n);
      return fc_launched("pool2d_grad_kernel");
    }
    pool_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
        *g, (const T *)fc_base(dy), idx ? (const int64_t *)fc_base(idx) : nullptr, (T *)fc_base(dx), n);
    return fc_launched("pool_grad_kernel");
  });
}

} // namespace fc
