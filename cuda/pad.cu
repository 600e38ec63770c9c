/* reflect and replicate padding of the last 1 to 3 dims, one thread per
 * element (grid-stride, 64-bit indices). The forward copies bits (any dtype);
 * the backward gathers each input-gradient element over the outputs that read
 * it (fl_pad_sources, core/pool_geom.h, as the CPU backend): no atomics,
 * deterministic; f32 accumulation for f16/bf16. */
#include "ops.cuh"
#include "resample.cuh"
#include "resample_fast.cuh"

namespace {

/* ---- 2-D fast paths (resample_fast.cuh): 32-bit index math, the generic kernels' sources and order ---- */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) pad2d_kernel(fc_pad2d g, const T *x, T *y, int64_t n) {
  const uint32_t nin = (uint32_t)(g.in[0] * g.in[1]);
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int oh, ow;
    const uint32_t p = (uint32_t)fc_split2(e, g.out_div[1], g.out_div[0], &oh, &ow);
    y[e] = x[p * nin + (uint32_t)(fc_pad2d_src(&g, 0, oh) * g.in[1] + fc_pad2d_src(&g, 1, ow))];
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) pad2d_grad_kernel(fc_pad2d g, const T *dy, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const uint32_t nout = (uint32_t)(g.out[0] * g.out[1]);
  const int OW = g.out[1];
  for (int64_t e64 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e64 < n; e64 += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t e = (uint32_t)e64;
    int ih, iw;
    const T *gp = dy + (uint32_t)fc_split2(e, g.in_div[1], g.in_div[0], &ih, &iw) * nout;
    C s = 0;
    if (g.mode == FL_PAD_REPLICATE) {
      int lo0, hi0, lo1, hi1;
      fc_pad2d_replicate_range(&g, 0, ih, &lo0, &hi0);
      fc_pad2d_replicate_range(&g, 1, iw, &lo1, &hi1);
      for (int oh = lo0; oh < hi0; oh++)
        for (int ow = lo1; ow < hi1; ow++) s += fc_num<T>::load(gp[oh * OW + ow]);
    } else {
      const unsigned m0 = fc_pad2d_reflect_mask(&g, 0, ih), m1 = fc_pad2d_reflect_mask(&g, 1, iw);
#pragma unroll
      for (int v = 0; v < 3; v++) {
        if (!((m0 >> v) & 1u)) continue;
        const T *row = gp + fc_pad2d_cand(&g, 0, ih, v) * OW;
#pragma unroll
        for (int w = 0; w < 3; w++)
          if ((m1 >> w) & 1u) s += fc_num<T>::load(row[fc_pad2d_cand(&g, 1, iw, w)]);
      }
    }
    dx[e] = fc_num<T>::make(s);
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) pad_kernel(fl_pad_geom g, const T *x, T *y, int64_t n) {
  const int64_t nin = g.in[0] * g.in[1] * g.in[2];
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t o[3];
    const T *xp = x + fc_split3(e, g.out, o) * nin;
    y[e] = xp[(fl_pad_src(&g, 0, o[0]) * g.in[1] + fl_pad_src(&g, 1, o[1])) * g.in[2] + fl_pad_src(&g, 2, o[2])];
  }
}

template <class T>
__global__ void __launch_bounds__(FC_THREADS) pad_grad_kernel(fl_pad_geom g, const T *dy, T *dx, int64_t n) {
  using C = typename fc_num<T>::acc;
  const int64_t nout = g.out[0] * g.out[1] * g.out[2], OH = g.out[1], OW = g.out[2];
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    int64_t i[3], lo[3][3], hi[3][3];
    int m[3];
    const T *gp = dy + fc_split3(e, g.in, i) * nout;
    for (int d = 0; d < 3; d++) m[d] = fl_pad_sources(&g, d, i[d], lo[d], hi[d]);
    C s = 0;
    for (int u = 0; u < m[0]; u++)
      for (int64_t od = lo[0][u]; od < hi[0][u]; od++)
        for (int v = 0; v < m[1]; v++)
          for (int64_t oh = lo[1][v]; oh < hi[1][v]; oh++)
            for (int w = 0; w < m[2]; w++)
              for (int64_t ow = lo[2][w]; ow < hi[2][w]; ow++) s += fc_num<T>::load(gp[(od * OH + oh) * OW + ow]);
    dx[e] = fc_num<T>::make(s);
  }
}

} // namespace

namespace fc {

fl_status pad_forward(const fl_pad_geom *g, fl_tensor *out, const fl_tensor *x) {
  const fl_tensor *ts[] = {out, x};
  return fc_resample_launch<FC_M_ALL, true>("pad", 2, ts, x->dtype, [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_pad2d f;
    if (fc_pad2d_make(g, &f)) {
      pad2d_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(f, (const T *)fc_base(x),
                                                                                  (T *)fc_base(out), n);
      return fc_launched("pad2d_kernel");
    }
    pad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(*g, (const T *)fc_base(x),
                                                                                (T *)fc_base(out), n);
    return fc_launched("pad_kernel");
  });
}

fl_status pad_backward(const fl_pad_geom *g, fl_tensor *dx, const fl_tensor *dy) {
  const fl_tensor *ts[] = {dx, dy};
  return fc_resample_launch<FC_M_FLOAT>("pad backward", 2, ts, dy->dtype, [&](auto tag, fc_context *ctx, int64_t n) {
    using T = typename decltype(tag)::type;
    fc_pad2d f;
    if (fc_pad2d_make(g, &f)) {
      pad2d_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(f, (const T *)fc_base(dy),
                                                                                       (T *)fc_base(dx), n);
      return fc_launched("pad2d_grad_kernel");
    }
    pad_grad_kernel<T><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(*g, (const T *)fc_base(dy),
                                                                                     (T *)fc_base(dx), n);
    return fc_launched("pad_grad_kernel");
  });
}

} // namespace fc
