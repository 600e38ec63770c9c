/* The elementwise engine shared by copy/cast/fill, unary, binary and where.
 *
 * An op is a functor F with storage types TO (output) and T0..T2 (inputs, fc_none
 * when unused), a vector width VEC, and
 *   template <int V> void run(TO (&r)[V], const T0 (&a)[V], const T1 (&b)[V], const T2 (&c)[V])
 * which computes V results at once (so a runtime op switch is taken once per
 * vector, not once per element).
 *
 * Operands arrive as tensors of one shape with any strides (0 for broadcast,
 * negative for flips). Their dims are merged where every operand is contiguous,
 * then one of two instantiations runs:
 *  - vectorised: the innermost dim is unit-stride (or 0-stride, broadcast) in
 *    every operand and everything is aligned: V elements per 16-byte-ish access,
 *    one offset computation per vector;
 *  - scalar (V = 1): any strides. */
#ifndef FL_CUDA_EWISE_CUH
#define FL_CUDA_EWISE_CUH

#include "context.cuh"
#include "iter.cuh"
#include "math.cuh"

struct fc_none {};

template <class T, int V>
struct alignas(sizeof(T) * V) fc_vec {
  T v[V];
};

/* Vector width so the narrowest operand moves 16 bytes, at most 8 elements. */
template <class... Ts>
constexpr int fc_vec_width() {
  size_t m = 16;
  ((m = sizeof(Ts) < m ? sizeof(Ts) : m), ...);
  int v = (int)(16 / m);
  return v > 8 ? 8 : v;
}

template <int N> /* N operands: [0] is the output */
struct fc_ew_args {
  fc_iter<N> it;
  char *ptr[N];
  bool bcast[N]; /* innermost stride 0 (vector path: load one, replicate) */
  int64_t n;
};

template <class T, int V>
__device__ __forceinline__ void fc_ew_load(T (&x)[V], const char *base, int64_t off, bool bcast) {
  const T *p = (const T *)base + off;
  if (V == 1 || bcast) {
    T s = *p;
#pragma unroll
    for (int k = 0; k < V; k++) x[k] = s;
  } else {
    fc_vec<T, V> w = *(const fc_vec<T, V> *)p;
#pragma unroll
    for (int k = 0; k < V; k++) x[k] = w.v[k];
  }
}

template <class T, int V>
__device__ __forceinline__ void fc_ew_store(char *base, int64_t off, const T (&r)[V]) {
  T *p = (T *)base + off;
  if (V == 1) {
    *p = r[0];
  } else {
    fc_vec<T, V> w;
#pragma unroll
    for (int k = 0; k < V; k++) w.v[k] = r[k];
    *(fc_vec<T, V> *)p = w;
  }
}

/* One vector (or element, V = 1) at linear index i. */
template <class F, int N, int V>
__device__ __forceinline__ void fc_ew_one(const fc_ew_args<N> &a, const F &f, int64_t i) {
  int64_t off[N];
  a.it.offsets(i, off);
  typename F::T0 x0[V];
  typename F::T1 x1[V];
  typename F::T2 x2[V];
  if constexpr (N > 1) fc_ew_load<typename F::T0, V>(x0, a.ptr[1], off[1], a.bcast[1]);
  if constexpr (N > 2) fc_ew_load<typename F::T1, V>(x1, a.ptr[2], off[2], a.bcast[2]);
  if constexpr (N > 3) fc_ew_load<typename F::T2, V>(x2, a.ptr[3], off[3], a.bcast[3]);
  typename F::TO r[V];
  f.template run<V>(r, x0, x1, x2);
  fc_ew_store<typename F::TO, V>(a.ptr[0], off[0], r);
}

template <class F, int N, int V>
__global__ void __launch_bounds__(FC_THREADS) fc_ew_kernel(fc_ew_args<N> a, F f) {
  const int64_t nvec = a.n / V;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  for (int64_t c = tid; c < nvec; c += step) fc_ew_one<F, N, V>(a, f, c * V);
  if constexpr (V > 1) { /* 1-D only: the last n % V elements, one each */
    int64_t i = nvec * V + tid;
    if (i < a.n) fc_ew_one<F, N, 1>(a, f, i);
  }
}

/* Can every operand be accessed V elements at a time? */
template <int N>
static bool fc_ew_vectorizable(const fc_ew_args<N> &a, const size_t *esize, int V) {
  const fc_iter<N> &it = a.it;
  if (V == 1) return true;
  if (it.nd > 1 && it.size[0] % V) return false;
  for (int k = 0; k < N; k++) {
    if (it.stride[k][0] == 0 && k > 0) continue; /* broadcast input: one load, replicated */
    if (it.stride[k][0] != 1 || !fc_aligned(a.ptr[k], esize[k] * V)) return false;
    for (int d = 1; d < it.nd; d++)
      if (it.stride[k][d] % V) return false;
  }
  return true;
}

/* ts[0] is the output; all share ts[0]'s shape. */
template <class F, int N>
static fl_status fc_ew_launch(fc_context *ctx, const char *name, const fl_tensor *const *ts, const F &f) {
  const fl_tensor *out = ts[0];
  int64_t n = fl_shape_numel(out->ndim, out->shape);
  if (n == 0) return FL_OK;
  fc_ew_args<N> a;
  const int64_t *strides[N];
  size_t esize[N];
  for (int k = 0; k < N; k++) {
    strides[k] = ts[k]->stride;
    a.ptr[k] = fc_base(ts[k]);
    esize[k] = fl_dtype_size(ts[k]->dtype);
  }
  fc_iter_init<N>(&a.it, out->ndim, out->shape, strides, true);
  for (int k = 0; k < N; k++) a.bcast[k] = a.it.stride[k][0] == 0;
  a.n = n;
  if (fc_ew_vectorizable<N>(a, esize, F::VEC)) {
    fc_ew_kernel<F, N, F::VEC><<<fc_grid(ctx, n / F::VEC + 1, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(a, f);
  } else {
    fc_ew_kernel<F, N, 1><<<fc_grid(ctx, n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(a, f);
  }
  return fc_launched(name);
}

#endif
