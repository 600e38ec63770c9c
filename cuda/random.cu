/* rand / randn / randint into a contiguous tensor, bit-compatible with the
 * CPU backend: element i takes word i % 4 of Philox block (offset + i / 4) of
 * the seed (core/philox.h). Each thread computes one block and writes its four
 * elements. Values are formed in double and stored with the same conversions
 * as the CPU (f16/bf16 rounded once from the double); uniform draws take the
 * dtype's number of random bits (fl_u01_bits_for), so they never round to b. */
#include "context.cuh"
#include "dispatch.cuh"
#include "ops.cuh"

namespace {

struct random_args {
  char *out;
  int64_t n;
  uint64_t seed, offset;
  double a, b;
  fl_rand_kind kind;
  int bits; /* uniform: random significand bits for the dtype (fl_u01_bits_for) */
};

template <class T>
__global__ void __launch_bounds__(FC_THREADS) random_kernel(random_args r) {
  T *out = (T *)r.out;
  int64_t nblk = (r.n + 3) / 4;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < nblk; g += (int64_t)gridDim.x * blockDim.x) {
    fl_philox_out o = fl_philox(r.seed, r.offset + (uint64_t)g);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      int64_t i = g * 4 + j;
      if (i >= r.n) break;
      T v;
      if (r.kind == FL_RAND_UNIFORM) {
        v = fc_from_double<T>(r.a + (r.b - r.a) * (double)fl_u01_bits(o.w[j], r.bits));
      } else if (r.kind == FL_RAND_NORMAL) {
        v = fc_from_double<T>(r.a + r.b * (double)fl_normal_from(o, j));
      } else {
        int64_t k = (int64_t)r.a + fl_randint_from(o.w[j], r.b - r.a);
        if constexpr (std::is_floating_point<typename fc_num<T>::acc>::value) v = fc_from_double<T>((double)k);
        else v = fc_num<T>::make(k); /* integers stay exact */
      }
      out[i] = v;
    }
  }
}

} // namespace

namespace fc {

fl_status random_forward(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t n = fl_numel(out);
  if (n == 0) return FL_OK;
  if (!fl_is_contiguous(out)) return fl_error(FL_EINVAL, "random: the output must be contiguous");
  random_args r{fc_base(out), n, seed, offset, a, b, kind, fl_u01_bits_for(out->dtype)};
  /* bool has no meaningful distribution of its own; values are cast like any other. */
  return fc_dispatch(out->dtype, "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    random_kernel<T><<<fc_grid(ctx, (n + 3) / 4, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(r);
    return fc_launched("random_kernel");
  });
}

} // namespace fc
