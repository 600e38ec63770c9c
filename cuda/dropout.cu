/* Dropout: out = x * keep / (1 - p) over contiguous tensors, the keep bits of either rule from
 * core/dropout_keep.h, bit-compatible with the CPU backend: each thread owns one Philox block (4 elements under
 * F.dropout's word rule, 16 under attention's byte rule; one wide access per 4 when aligned), in a grid-stride
 * loop with 64-bit indices.
 * Half types compute in f32 and round once. */
#include "context.cuh"
#include "dispatch.cuh"
#include "ops.cuh"
#include "dropout_keep.h"

namespace {

/* Four elements moved as one aligned access (16 bytes in f32, 8 in the half types). */
template <class T> struct alignas(4 * sizeof(T)) fc_quad { T v[4]; };

template <class T, bool VEC, fl_dropout_rule R>
__global__ void __launch_bounds__(FC_THREADS)
dropout_kernel(T *out, const T *x, int64_t n, uint64_t seed, uint64_t offset, uint32_t thr,
               typename fc_num<T>::acc scale) {
  using A = typename fc_num<T>::acc;
  constexpr int E = R == FL_DROPOUT_BYTE ? 16 : 4; /* fl_dropout_per_block(R) */
  const int64_t nblk = (n + E - 1) / E;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < nblk; g += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t m = fl_dropout_block_mask(R, fl_philox(seed, offset + (uint64_t)g), thr);
#pragma unroll
    for (int qd = 0; qd < E / 4; qd++) {
      const int64_t i0 = g * E + qd * 4;
      if (VEC && i0 + 4 <= n) { /* four elements at once: wide accesses */
        fc_quad<T> q = reinterpret_cast<const fc_quad<T> *>(x)[i0 / 4], r;
#pragma unroll
        for (int j = 0; j < 4; j++)
          r.v[j] = fc_num<T>::make((m >> (qd * 4 + j) & 1u) ? fc_num<T>::load(q.v[j]) * scale : (A)0);
        reinterpret_cast<fc_quad<T> *>(out)[i0 / 4] = r;
        continue;
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int64_t i = i0 + j;
        if (i >= n) break;
        A v = (m >> (qd * 4 + j) & 1u) ? fc_num<T>::load(x[i]) * scale : (A)0;
        out[i] = fc_num<T>::make(v);
      }
    }
  }
}

template <class T, fl_dropout_rule R>
fl_status launch(fc_context *ctx, T *o, const T *xi, int64_t n, uint64_t seed, uint64_t offset, uint32_t thr,
                 double scale) {
  using A = typename fc_num<T>::acc;
  const bool vec = ((uintptr_t)o | (uintptr_t)xi) % (4 * sizeof(T)) == 0;
  dim3 grid = fc_grid(ctx, (int64_t)fl_dropout_blocks(R, (uint64_t)n), FC_THREADS);
  if (vec) dropout_kernel<T, true, R><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(o, xi, n, seed, offset, thr, (A)scale);
  else dropout_kernel<T, false, R><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(o, xi, n, seed, offset, thr, (A)scale);
  return fc_launched("dropout_kernel");
}

} // namespace

namespace fc {

fl_status dropout_forward(fl_tensor *out, const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed,
                          uint64_t offset) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t n = fl_numel(out);
  if (n == 0) return FL_OK;
  if (!fl_is_contiguous(out) || !fl_is_contiguous(x) || x->dtype != out->dtype)
    return fl_error(FL_EINVAL, "dropout: out and x must be contiguous and of one dtype");
  uint32_t thr = fl_dropout_rule_threshold(rule, p);
  double scale = fl_dropout_scale(p);
  return fc_dispatch<FC_M_FLOAT>(out->dtype, "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T *o = (T *)fc_base(out);
    const T *xi = (const T *)fc_base(x);
    return rule == FL_DROPOUT_BYTE ? launch<T, FL_DROPOUT_BYTE>(ctx, o, xi, n, seed, offset, thr, scale)
                                   : launch<T, FL_DROPOUT_WORD>(ctx, o, xi, n, seed, offset, thr, scale);
  });
}

} // namespace fc
