/* Dropout: out = x * keep / (1 - p) over contiguous tensors, the keep bits from
 * core/dropout_keep.h, bit-compatible with the CPU backend: each thread owns one
 * Philox block (four elements, one wide access when aligned), in a grid-stride
 * loop with 64-bit indices.
 * Half types compute in f32 and round once. */
#include "context.cuh"
#include "dispatch.cuh"
#include "ops.cuh"
#include "dropout_keep.h"

namespace {

/* Four elements moved as one aligned access (16 bytes in f32, 8 in the half types). */
template <class T> struct alignas(4 * sizeof(T)) fc_quad { T v[4]; };

template <class T, bool VEC>
__global__ void __launch_bounds__(FC_THREADS)
dropout_kernel(T *out, const T *x, int64_t n, uint64_t seed, uint64_t offset, uint32_t thr,
               typename fc_num<T>::acc scale) {
  using A = typename fc_num<T>::acc;
  int64_t nblk = (n + 3) / 4;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < nblk; g += (int64_t)gridDim.x * blockDim.x) {
    fl_philox_out o = fl_philox(seed, offset + (uint64_t)g);
    if (VEC && g * 4 + 4 <= n) { /* the whole block at once: coalesced wide accesses */
      fc_quad<T> q = reinterpret_cast<const fc_quad<T> *>(x)[g], r;
#pragma unroll
      for (int j = 0; j < 4; j++)
        r.v[j] = fc_num<T>::make(fl_dropout_keep_word(o.w[j], thr) ? fc_num<T>::load(q.v[j]) * scale : (A)0);
      reinterpret_cast<fc_quad<T> *>(out)[g] = r;
      continue;
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
      int64_t i = g * 4 + j;
      if (i >= n) break;
      A v = fl_dropout_keep_word(o.w[j], thr) ? fc_num<T>::load(x[i]) * scale : (A)0;
      out[i] = fc_num<T>::make(v);
    }
  }
}

} // namespace

namespace fc {

fl_status dropout_forward(fl_tensor *out, const fl_tensor *x, double p, uint64_t seed, uint64_t offset) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t n = fl_numel(out);
  if (n == 0) return FL_OK;
  if (!fl_is_contiguous(out) || !fl_is_contiguous(x) || x->dtype != out->dtype)
    return fl_error(FL_EINVAL, "dropout: out and x must be contiguous and of one dtype");
  uint32_t thr = fl_dropout_threshold(p);
  double scale = fl_dropout_scale(p);
  return fc_dispatch<FC_M_FLOAT>(out->dtype, "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename fc_num<T>::acc;
    T *o = (T *)fc_base(out);
    const T *xi = (const T *)fc_base(x);
    bool vec = ((uintptr_t)o | (uintptr_t)xi) % (4 * sizeof(T)) == 0;
    dim3 grid = fc_grid(ctx, (n + 3) / 4, FC_THREADS);
    if (vec) dropout_kernel<T, true><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(o, xi, n, seed, offset, thr, (A)scale);
    else dropout_kernel<T, false><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(o, xi, n, seed, offset, thr, (A)scale);
    return fc_launched("dropout_kernel");
  });
}

} // namespace fc
