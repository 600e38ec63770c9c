/* The CUDA side of the im2col convolution path (ops/conv.c).
 *
 * im2col: one thread per element of cols [cin * kvol, n * L]; consecutive
 * threads write consecutive columns (output positions), so writes are
 * coalesced and, at stride 1, so are the reads of x. col2im: one thread per
 * input element, summing (in the accumulation type, in kernel order) the cols
 * entries that read it: a gather, so no atomics and a deterministic result.
 * Geometries of 1 or 2 spatial dims get leading size-1 dims. Index math is
 * 32-bit when every count fits, else 64-bit, with grid-stride loops. */
#include "context.cuh"
#include "dispatch.cuh"
#include "ops.cuh"

namespace {

/* cols[r, col] = x[image, c, o * s - p + k * d] or 0, r = c * kvol + (k0, k1, k2), col = image * L + o.
 * Rows over blockIdx.x (decoded once per block), columns over blockIdx.y and the threads. */
template <class T, class I>
__global__ void __launch_bounds__(FC_THREADS) im2col_kernel(T *cols, const T *x, fl_conv_geom3 g) {
  const I width = (I)(g.n * g.L), L = (I)g.L, rows = (I)(g.cin * g.kvol);
  for (I r = blockIdx.x; r < rows; r += gridDim.x) {
    I c = r / (I)g.kvol, kk = r - c * (I)g.kvol;
    I k2 = kk % (I)g.k[2], k01 = kk / (I)g.k[2], k1 = k01 % (I)g.k[1], k0 = k01 / (I)g.k[1];
    int64_t b0 = (int64_t)k0 * g.d[0] - g.p[0], b1 = (int64_t)k1 * g.d[1] - g.p[1], b2 = (int64_t)k2 * g.d[2] - g.p[2];
    T *dst = cols + r * width;
    for (I col = (I)blockIdx.y * blockDim.x + threadIdx.x; col < width; col += (I)gridDim.y * blockDim.x) {
      I img = col / L, o = col - img * L;
      I o2 = o % (I)g.out[2], o01 = o / (I)g.out[2], o1 = o01 % (I)g.out[1], o0 = o01 / (I)g.out[1];
      int64_t i0 = (int64_t)o0 * g.s[0] + b0, i1 = (int64_t)o1 * g.s[1] + b1, i2 = (int64_t)o2 * g.s[2] + b2;
      T v = T();
      if (i0 >= 0 && i0 < g.in[0] && i1 >= 0 && i1 < g.in[1] && i2 >= 0 && i2 < g.in[2])
        v = x[(((I)img * (I)g.cin + c) * (I)g.in[0] + (I)i0) * (I)(g.in[1] * g.in[2]) + (I)i1 * (I)g.in[2] + (I)i2];
      dst[col] = v;
    }
  }
}

/* The output position that kernel offset k maps onto input position p along a dim, or -1
 * (S: int where every size fits, so the division is 32-bit; none at all at stride 1). */
template <class S>
__device__ __forceinline__ S out_pos(S p, S k, S pad, S s, S d, S out) {
  S t = p + pad - k * d;
  if (t < 0) return -1;
  if (s != 1) {
    if (t % s) return -1;
    t /= s;
  }
  return t < out ? t : -1;
}

/* x[img, c, p] = sum of the cols entries that read it, in kernel order. */
template <class T, class I>
__global__ void __launch_bounds__(FC_THREADS) col2im_kernel(T *x, const T *cols, fl_conv_geom3 g, I total) {
  using C = typename fc_num<T>::acc;
  using S = typename std::conditional<sizeof(I) == 4, int, int64_t>::type;
  const I width = (I)(g.n * g.L);
  for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
    I plane = e / (I)g.inv, pos = e - plane * (I)g.inv;
    I img = plane / (I)g.cin, c = plane - img * (I)g.cin;
    I p2 = pos % (I)g.in[2], p01 = pos / (I)g.in[2], p1 = p01 % (I)g.in[1], p0 = p01 / (I)g.in[1];
    const T *src = cols + (I)c * (I)g.kvol * width + img * (I)g.L;
    C acc = 0;
    for (S k0 = 0; k0 < (S)g.k[0]; k0++) {
      S o0 = out_pos<S>((S)p0, k0, (S)g.p[0], (S)g.s[0], (S)g.d[0], (S)g.out[0]);
      if (o0 < 0) continue;
      for (S k1 = 0; k1 < (S)g.k[1]; k1++) {
        S o1 = out_pos<S>((S)p1, k1, (S)g.p[1], (S)g.s[1], (S)g.d[1], (S)g.out[1]);
        if (o1 < 0) continue;
        for (S k2 = 0; k2 < (S)g.k[2]; k2++) {
          S o2 = out_pos<S>((S)p2, k2, (S)g.p[2], (S)g.s[2], (S)g.d[2], (S)g.out[2]);
          if (o2 < 0) continue;
          I row = ((I)k0 * (I)g.k[1] + (I)k1) * (I)g.k[2] + (I)k2;
          I col = ((I)o0 * (I)g.out[1] + (I)o1) * (I)g.out[2] + (I)o2;
          acc += fc_num<T>::load(src[row * width + col]);
        }
      }
    }
    x[e] = fc_num<T>::make(acc);
  }
}

/* 32-bit index math when every index fits in 31 bits (a grid-stride step, below 2^31, then cannot
 * wrap) and every padding, stride and dilated kernel span in 30 (col2im's position arithmetic). */
bool small_index(const fl_conv_geom3 &g, int64_t largest) {
  const int64_t lim = (int64_t)1 << 30;
  for (int i = 0; i < 3; i++)
    if (g.p[i] >= lim || g.s[i] >= lim || g.d[i] >= lim / g.k[i] || g.in[i] >= lim) return false;
  return largest < ((int64_t)1 << 31);
}

} // namespace

namespace fc {

fl_status im2col_forward(fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *gg) {
  fl_conv_geom3 g = fl_conv_geom3_of(gg);
  int64_t total = g.cin * g.kvol * g.n * g.L;
  if (total == 0) return FL_OK;
  fc_context *ctx;
  FL_TRY(fc_context_of(cols, &ctx));
  return fc_dispatch_bits(x->dtype, "im2col", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T *c = (T *)fc_base(cols);
    const T *src = (const T *)fc_base(x);
    int64_t rows = g.cin * g.kvol, width = g.n * g.L;
    /* enough blocks to fill the device: all rows, and column tiles up to the y limit */
    dim3 grid((unsigned)fc_min64(rows, INT32_MAX), (unsigned)fc_min64(fc_ceil_div(width, FC_THREADS), 65535));
    if (small_index(g, fc_max64(total, g.n * g.cin * g.inv)))
      im2col_kernel<T, uint32_t><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(c, src, g);
    else
      im2col_kernel<T, uint64_t><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(c, src, g);
    return fc_launched("im2col_kernel");
  });
}

fl_status col2im_forward(fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *gg) {
  fl_conv_geom3 g = fl_conv_geom3_of(gg);
  int64_t total = g.n * g.cin * g.inv;
  if (total == 0) return FL_OK;
  fc_context *ctx;
  FL_TRY(fc_context_of(x, &ctx));
  return fc_dispatch<FC_M_FLOAT>(x->dtype, "col2im", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T *dst = (T *)fc_base(x);
    const T *c = (const T *)fc_base(cols);
    unsigned grid = fc_grid(ctx, total, FC_THREADS);
    if (small_index(g, fc_max64(total, g.cin * g.kvol * g.n * g.L)))
      col2im_kernel<T, uint32_t><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(dst, c, g, (uint32_t)total);
    else
      col2im_kernel<T, uint64_t><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(dst, c, g, (uint64_t)total);
    return fc_launched("col2im_kernel");
  });
}

} // namespace fc
