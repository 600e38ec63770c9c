/* copy (with cast), fill and arange. Same-dtype copies move bits (one
 * instantiation per element size); the casts the perf targets name
 * (f32<->bf16, f32<->f16) get their own vectorised instantiation; every other
 * cast pair goes through one runtime-typed kernel, which keeps the number of
 * template instances small while covering all 7x7 pairs. */
#include "allocator.cuh"
#include "ewise.cuh"
#include "ops.cuh"
#include <type_traits>

namespace {

template <class T>
struct copy_op {
  using TO = T;
  using T0 = T;
  using T1 = fc_none;
  using T2 = fc_none;
  static constexpr int VEC = fc_vec_width<T>();
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = a[k];
  }
};

template <class S, class D>
struct cast_op { /* float <-> float only: a cast to bool would need x != 0 */
  static_assert(!std::is_same<D, fc_bool>::value, "casts to bool go through cast_any_kernel");
  using TO = D;
  using T0 = S;
  using T1 = fc_none;
  using T2 = fc_none;
  static constexpr int VEC = fc_vec_width<S, D>();
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_num<D>::make((typename fc_num<D>::acc)fc_num<S>::load(a[k]));
  }
};

template <class T>
struct fill_op {
  using TO = T;
  using T0 = fc_none;
  using T1 = fc_none;
  using T2 = fc_none;
  static constexpr int VEC = fc_vec_width<T>();
  T value;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&)[V], const T1 (&)[V], const T2 (&)[V]) const {
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = value;
  }
};

/* A value of any dtype, exact for every source: integers stay integers. */
struct any_value {
  bool is_int;
  int64_t i;
  double d;
};

__device__ any_value load_any(fl_dtype dt, const char *p) {
  switch (dt) {
    case FL_F32: return {false, 0, (double)*(const float *)p};
    case FL_F64: return {false, 0, *(const double *)p};
    case FL_F16: return {false, 0, (double)fl_half_to_f32(*(const uint16_t *)p)};
    case FL_BF16: return {false, 0, (double)fl_bfloat_to_f32(*(const uint16_t *)p)};
    case FL_I32: return {true, *(const int32_t *)p, 0};
    case FL_I64: return {true, *(const int64_t *)p, 0};
    default: return {true, *(const uint8_t *)p != 0, 0};
  }
}

/* As the CPU backend stores: float targets from the value as a double (f16 and
 * bf16 with a single rounding), integer targets from the exact integer. */
__device__ void store_any(fl_dtype dt, char *p, any_value v) {
  double d = v.is_int ? (double)v.i : v.d;
  int64_t i = v.is_int ? v.i : (int64_t)v.d;
  switch (dt) {
    case FL_F32: *(float *)p = (float)d; break;
    case FL_F64: *(double *)p = d; break;
    case FL_F16: *(uint16_t *)p = fl_half_from_f64(d); break;
    case FL_BF16: *(uint16_t *)p = fl_bfloat_from_f64(d); break;
    case FL_I32: *(int32_t *)p = (int32_t)i; break;
    case FL_I64: *(int64_t *)p = i; break;
    default: *(uint8_t *)p = v.is_int ? v.i != 0 : v.d != 0; break;
  }
}

struct cast_any_args {
  fc_iter<2> it;
  char *dst;
  const char *src;
  fl_dtype dt, st;
  int dsize, ssize;
  int64_t n;
};

__global__ void __launch_bounds__(FC_THREADS) cast_any_kernel(cast_any_args a) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    a.it.offsets(i, off);
    store_any(a.dt, a.dst + off[0] * a.dsize, load_any(a.st, a.src + off[1] * a.ssize));
  }
}

__global__ void __launch_bounds__(FC_THREADS) arange_kernel(char *out, fl_dtype dt, int esize, int64_t n,
                                                            double start, double step) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_any(dt, out + i * esize, any_value{false, 0, start + (double)i * step});
}

fl_status cast_any(fc_context *ctx, fl_tensor *dst, const fl_tensor *src, int64_t n) {
  cast_any_args a;
  const int64_t *strides[2] = {dst->stride, src->stride};
  fc_iter_init<2>(&a.it, dst->ndim, dst->shape, strides, true);
  a.dst = fc_base(dst);
  a.src = fc_base(src);
  a.dt = dst->dtype;
  a.st = src->dtype;
  a.dsize = (int)fl_dtype_size(dst->dtype);
  a.ssize = (int)fl_dtype_size(src->dtype);
  a.n = n;
  cast_any_kernel<<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(a);
  return fc_launched("cast_any_kernel");
}

/* Both dense in the same row-major order: one memcpy. */
bool both_contiguous(const fl_tensor *dst, const fl_tensor *src) {
  return fl_is_contiguous(dst) && fl_is_contiguous(src);
}

template <class S, class D>
fl_status cast_fast(fc_context *ctx, fl_tensor *dst, const fl_tensor *src) {
  const fl_tensor *ts[2] = {dst, src};
  return fc_ew_launch<cast_op<S, D>, 2>(ctx, "cast", ts, cast_op<S, D>{});
}

fl_status cast_forward(fc_context *ctx, fl_tensor *dst, const fl_tensor *src, int64_t n) {
  fl_dtype d = dst->dtype, s = src->dtype;
  if (s == FL_F32 && d == FL_BF16) return cast_fast<float, fc_bf16>(ctx, dst, src);
  if (s == FL_BF16 && d == FL_F32) return cast_fast<fc_bf16, float>(ctx, dst, src);
  if (s == FL_F32 && d == FL_F16) return cast_fast<float, fc_half>(ctx, dst, src);
  if (s == FL_F16 && d == FL_F32) return cast_fast<fc_half, float>(ctx, dst, src);
  return cast_any(ctx, dst, src, n);
}

fl_status check_same_shape(const char *op, const fl_tensor *a, const fl_tensor *b) {
  if (fl_same_shape(a, b)) return FL_OK;
  fl_desc da = fl_describe(a), db = fl_describe(b);
  return fl_error(FL_ESHAPE, "%s: shapes differ (%s vs %s)", op, da.s, db.s);
}

} // namespace

namespace fc {

fl_status copy_forward(fl_tensor *dst, const fl_tensor *src) {
  FL_TRY(check_same_shape("copy", dst, src));
  fc_context *ctx;
  FL_TRY(fc_context_of(dst, &ctx));
  if (src->storage->device.type != FL_CUDA) return fl_error(FL_EDEVICE, "copy: source is not on a cuda device");
  int64_t n = fl_numel(dst);
  if (n == 0) return FL_OK;
  size_t es = fl_dtype_size(dst->dtype);
  if (fc_device_of(src) != ctx->device) { /* peer copy: only the plain case */
    if (src->dtype != dst->dtype || !both_contiguous(dst, src))
      return fl_error(FL_EDEVICE, "copy between cuda:%d and cuda:%d needs contiguous tensors of one dtype",
                      fc_device_of(src), ctx->device);
    FC_CUDA(cudaMemcpyPeerAsync(fc_base(dst), ctx->device, fc_base(src), fc_device_of(src), n * es, fc_stream(ctx)));
    return FL_OK;
  }
  if (src->dtype != dst->dtype) return cast_forward(ctx, dst, src, n);
  if (both_contiguous(dst, src)) {
    FC_CUDA(cudaMemcpyAsync(fc_base(dst), fc_base(src), n * es, cudaMemcpyDeviceToDevice, fc_stream(ctx)));
    return FL_OK;
  }
  return fc_dispatch_bits(dst->dtype, "copy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const fl_tensor *ts[2] = {dst, src};
    return fc_ew_launch<copy_op<T>, 2>(ctx, "copy", ts, copy_op<T>{});
  });
}

fl_status fill_forward(fl_tensor *out, double value) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t n = fl_numel(out);
  if (n == 0) return FL_OK;
  return fc_dispatch(out->dtype, "fill", [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    T v = fc_from_double<T>(value);
    unsigned char bytes[sizeof(T)];
    memcpy(bytes, &v, sizeof(T));
    bool uniform = true; /* every byte equal: cudaMemset can write it */
    for (size_t k = 1; k < sizeof(T); k++) uniform = uniform && bytes[k] == bytes[0];
    if (uniform && fl_is_contiguous(out)) {
      FC_CUDA(cudaMemsetAsync(fc_base(out), bytes[0], n * sizeof(T), fc_stream(ctx)));
      return FL_OK;
    }
    const fl_tensor *ts[1] = {out};
    return fc_ew_launch<fill_op<T>, 1>(ctx, "fill", ts, fill_op<T>{v});
  });
}

fl_status arange_forward(fl_tensor *out, double start, double step) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int64_t n = fl_numel(out);
  if (n == 0) return FL_OK;
  if (!fl_is_contiguous(out)) return fl_error(FL_EINVAL, "arange: the output must be contiguous");
  arange_kernel<<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(
      fc_base(out), out->dtype, (int)fl_dtype_size(out->dtype), n, start, step);
  return fc_launched("arange_kernel");
}

} // namespace fc
