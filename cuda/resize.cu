/* interpolate (nearest; linear, bilinear, trilinear) over 1 to 3 spatial dims,
 * forward and backward, one thread per element (grid-stride, 64-bit indices),
 * f32 accumulation for f16/bf16. Source pixels and weights come from
 * core/pool_geom.h, the CPU backend's functions (computed in f32, or f64 for
 * f64, as PyTorch). The backward gathers each input-gradient element over the
 * outputs that read it (fl_interp_range) instead of scattering with atomics:
 * deterministic. */
#include "ops.cuh"
#include "resample.cuh"
#include "resample_fast.cuh"
#include <type_traits>

namespace {

/* ---- nearest upsampling by integer factors (resample_fast.cuh): a direct gather forward, and backward the sum
 * of each input's f_h x f_w block of dy, row by row, as the generic kernels add them (with weights of exactly 1,
 * and 0 + x forward, which the generic kernel computes too: -0 becomes +0) ---- */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) nearest2d_kernel(fc_near2d g, const T *x, T *y, int64_t n) {
  using C = typename fc_num<T>::acc;
  const uint32_t nin = (uint32_t)(g.in[0] * g.in[1]);
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int oh, ow;
    const uint32_t p = (uint32_t)fc_split2(e, g.out_div[1], g.out_div[0], &oh, &ow);
    const uint32_t src = p * nin + fc_udiv_q(g.f_div[0], (uint32_t)oh) * (uint32_t)g.in[1] + fc_udiv_q(g.f_div[1], (uint32_t)ow);
    y[e] = fc_num<T>::make((C)0 + fc_num<T>::load(x[src]));
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) nearest2d_grad_kernel(fc_near2d g, const T *dy, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const uint32_t nout = (uint32_t)(g.out[0] * g.out[1]), OW = (uint32_t)g.out[1];
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int ih, iw;
    const uint32_t p = (uint32_t)fc_split2(e, g.in_div[1], g.in_div[0], &ih, &iw);
    const T *row = dy + p * nout + (uint32_t)(ih * g.f[0]) * OW + (uint32_t)(iw * g.f[1]);
    C s = 0;
    for (int a = 0; a < g.f[0]; a++, row += OW)
      for (int b = 0; b < g.f[1]; b++) s += fc_num<T>::load(row[b]);
    dx[e] = fc_num<T>::make(s);
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) interp_kernel(fl_interp_geom g, const T *x, T *y, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int64_t nin = g.in[0] * g.in[1] * g.in[2], H = g.in[1], W = g.in[2];
  const int first = FL_PG_DIMS - g.nsp;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t o[3], i0[3], i1[3];
    C w1[3];
    const T *xp = x + fc_split3(e, g.out, o) * nin;
    for (int d = 0; d < 3; d++) {
      i0[d] = i1[d] = o[d], w1[d] = 0;
      if (d < first) continue;
      if (g.linear) fc_linear_src<C>(&g, d, o[d], &i0[d], &i1[d], &w1[d]);
      else i0[d] = i1[d] = fl_nearest_src(&g, d, o[d]);
    }
    C s = 0;
    const int t0 = g.linear && first <= 0 ? 2 : 1, t1 = g.linear && first <= 1 ? 2 : 1, t2 = g.linear ? 2 : 1;
    for (int u = 0; u < t0; u++)
      for (int v = 0; v < t1; v++)
        for (int w = 0; w < t2; w++) {
          C wt = (u ? w1[0] : (C)1 - w1[0]) * (v ? w1[1] : (C)1 - w1[1]) * (w ? w1[2] : (C)1 - w1[2]);
          s += wt * fc_num<T>::load(xp[((u ? i1[0] : i0[0]) * H + (v ? i1[1] : i0[1])) * W + (w ? i1[2] : i0[2])]);
        }
    y[e] = fc_num<T>::make(s);
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) interp_grad_kernel(fl_interp_geom g, const T *dy, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  constexpr bool f64 = std::is_same<C, double>::value;
  const int64_t nout = g.out[0] * g.out[1] * g.out[2], OH = g.out[1], OW = g.out[2];
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t i[3], lo[3], hi[3];
    const T *gp = dy + fc_split3(e, g.in, i) * nout;
    for (int d = 0; d < 3; d++) fl_interp_range(&g, d, i[d], &lo[d], &hi[d], f64);
    /* the innermost dim's weights once, in registers, when few outputs read this input (the usual case) */
    constexpr int K = 8;
    const int64_t nw = hi[2] - lo[2];
    C ww[K];
#pragma unroll
    for (int k = 0; k < K; k++) ww[k] = k < nw ? fc_interp_weight<C>(&g, 2, lo[2] + k, i[2]) : (C)0;
    C s = 0;
    for (int64_t od = lo[0]; od < hi[0]; od++) {
      const C wd = fc_interp_weight<C>(&g, 0, od, i[0]);
      for (int64_t oh = lo[1]; oh < hi[1]; oh++) {
        const C wh = wd * fc_interp_weight<C>(&g, 1, oh, i[1]);
        const T *row = gp + (od * OH + oh) * OW + lo[2];
        if (nw <= K) {
#pragma unroll
          for (int k = 0; k < K; k++)
            if (k < nw) s += wh * ww[k] * fc_num<T>::load(row[k]);
        } else {
          for (int64_t k = 0; k < nw; k++)
            s += wh * fc_interp_weight<C>(&g, 2, lo[2] + k, i[2]) * fc_num<T>::load(row[k]);
        }
      }
    }
    dx[e] = fc_num<T>::make(s);
  }
}

} // namespace

namespace fc {

fl_status interp_forward(const fl_interp_geom *g, fl_tensor *out, const fl_tensor *x) {
  const fl_tensor *ts[] = {out, x};
  return fc_resample_launch<FC_M_FLOAT>("interpolate", 2, ts, x->dtype, [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_near2d f;
    if (fc_near2d_make(g, &f)) {
      nearest2d_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(f, (const T *)fc_base(x),
                                                                                       (T *)fc_base(out), n);
      return fc_launched("nearest2d_kernel");
    }
    interp_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(*g, (const T *)fc_base(x),
                                                                                   (T *)fc_base(out), n);
    return fc_launched("interp_kernel");
  });
}

fl_status interp_backward(const fl_interp_geom *g, fl_tensor *dx, const fl_tensor *dy) {
  const fl_tensor *ts[] = {dx, dy};
  return fc_resample_launch<FC_M_FLOAT>("interpolate backward", 2, ts, dy->dtype,
                                        [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_near2d f;
    if (fc_near2d_make(g, &f)) {
      nearest2d_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
          f, (const T *)fc_base(dy), (T *)fc_base(dx), n);
      return fc_launched("nearest2d_grad_kernel");
    }
    interp_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(*g, (const T *)fc_base(dy),
                                                                                        (T *)fc_base(dx), n);
    return fc_launched("interp_grad_kernel");
  });
}

} // namespace fc
