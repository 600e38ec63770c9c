/* unary, binary, binary_scalar and where. One instantiation per dtype (and
 * per output kind: same dtype or bool); the op is a runtime switch taken once
 * per vector of elements, which keeps compile time low at no measurable cost
 * for these memory-bound kernels. Arithmetic runs in the compute type (float
 * for f16/bf16, int64 for integers and bool).
 *
 * Operands of another dtype than the compute dtype (bf16 + f32, exp of an
 * i32 tensor) take one converting kernel per compute dtype, which loads each
 * operand through a runtime dtype switch: no cast copy, and no instantiation
 * per dtype pair. A scalar operand is passed by value (one launch). */
#include "ewise.cuh"
#include "ops.cuh"

namespace {

#define FC_SQRT1_2 0.70710678118654752440
#define FC_INV_SQRT_2PI 0.39894228040143267794
#define FC_SQRT_2_OVER_PI 0.79788456080286535588
#define FC_GELU_K 0.044715

template <class C> __device__ __forceinline__ C div_op(C a, C b) { return a / b; }
/* Truncating; x / 0 gives 0 instead of undefined behaviour (the core promotes
 * integer division to float, so this only keeps odd calls defined). */
template <> __device__ __forceinline__ int64_t div_op<int64_t>(int64_t a, int64_t b) {
  return b == 0 ? 0 : b == -1 ? (int64_t)(0 - (uint64_t)a) : a / b;
}

template <class C> __device__ __forceinline__ C sigmoid(C x) { return (C)1 / ((C)1 + fc_exp(-x)); }

template <class C> __device__ __forceinline__ C gelu_tanh(C x) {
  C inner = (C)FC_SQRT_2_OVER_PI * (x + (C)FC_GELU_K * x * x * x);
  return (C)0.5 * x * ((C)1 + fc_tanh(inner));
}

template <class C> __device__ __forceinline__ C gelu_tanh_grad(C x) {
  C inner = (C)FC_SQRT_2_OVER_PI * (x + (C)FC_GELU_K * x * x * x);
  C t = fc_tanh(inner);
  C dinner = (C)FC_SQRT_2_OVER_PI * ((C)1 + (C)(3 * FC_GELU_K) * x * x);
  return (C)0.5 * ((C)1 + t) + (C)0.5 * x * ((C)1 - t * t) * dinner;
}

template <class C> __device__ __forceinline__ C gelu_grad(C x) {
  C cdf = (C)0.5 * ((C)1 + fc_erf(x * (C)FC_SQRT1_2));
  C pdf = (C)FC_INV_SQRT_2PI * fc_exp((C)-0.5 * x * x);
  return cdf + x * pdf;
}

/* (x > 0) - (x < 0), as the CPU backend: NaN gives 0. */
template <class C> __device__ __forceinline__ C sign(C x) { return x > (C)0 ? (C)1 : x < (C)0 ? (C)-1 : (C)0; }

/* Applies EXPR to every element of a vector, as one case of a switch. */
#define FC_MAP(OP, EXPR)              \
  case OP:                            \
    _Pragma("unroll") for (int k = 0; k < V; k++) { \
      C x = v[k];                     \
      v[k] = (EXPR);                  \
    }                                 \
    break;

/* The unary ops on V compute-type values, in place: the one switch every
 * unary kernel (same-dtype and converting) runs, once per vector. */
template <class C>
struct unary_params {
  int op;
  bool has_lo, has_hi; /* CLAMP: a NaN bound means no bound */
  C lo, hi;
};

template <class C, int V>
__device__ __forceinline__ void apply_unary(const unary_params<C> &p, C (&v)[V]) {
  const C lo = p.lo, hi = p.hi;
  const bool has_lo = p.has_lo, has_hi = p.has_hi;
  switch (p.op) {
    FC_MAP(FL_NEG, -x)
    FC_MAP(FL_EXP, fc_exp(x))
    FC_MAP(FL_LOG, fc_log(x))
    FC_MAP(FL_SQRT, fc_sqrt(x))
    FC_MAP(FL_RSQRT, (C)1 / fc_sqrt(x))
    FC_MAP(FL_ABS, fc_abs(x))
    FC_MAP(FL_SIN, fc_sin(x))
    FC_MAP(FL_COS, fc_cos(x))
    FC_MAP(FL_TANH, fc_tanh(x))
    FC_MAP(FL_SIGMOID, sigmoid(x))
    FC_MAP(FL_RELU, x > (C)0 ? x : (C)0) /* NaN gives 0, as on the CPU */
    FC_MAP(FL_GELU, (C)0.5 * x * ((C)1 + fc_erf(x * (C)FC_SQRT1_2)))
    FC_MAP(FL_GELU_TANH, gelu_tanh(x))
    FC_MAP(FL_SILU, x * sigmoid(x))
    FC_MAP(FL_SIGN, sign(x))
    FC_MAP(FL_CLAMP, (has_hi && x > hi) ? hi : (has_lo && x < lo) ? (has_hi && lo > hi ? hi : lo) : x)
    FC_MAP(FL_FLOOR, fc_floor(x))
    FC_MAP(FL_CEIL, fc_ceil(x))
    FC_MAP(FL_ROUND, fc_round(x))
    FC_MAP(FL_TRUNC, fc_trunc(x))
    default: break;
  }
}

template <class T>
struct unary_op {
  using TO = T;
  using T0 = T;
  using T1 = fc_none;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T>();
  unary_params<C> p;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
    C v[V];
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = fc_num<T>::load(a[k]);
    apply_unary<C, V>(p, v);
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_num<T>::make(v[k]);
  }
};

template <class T>
struct logical_not_op {
  using TO = fc_bool;
  using T0 = T;
  using T1 = fc_none;
  using T2 = fc_none;
  static constexpr int VEC = fc_vec_width<T, fc_bool>();
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_bool{(uint8_t)(fc_num<T>::load(a[k]) == 0)};
  }
};

#define FC_MAP2(OP, EXPR)             \
  case OP:                            \
    _Pragma("unroll") for (int k = 0; k < V; k++) { \
      C x = u[k], y = w[k];           \
      u[k] = (EXPR);                  \
    }                                 \
    break;

/* Ops whose result has the compute dtype, on V values: u = u op w. For the
 * *_BACKWARD ops x is the incoming gradient and y the saved input (or output,
 * for sigmoid/tanh). */
template <class C, int V>
__device__ __forceinline__ void apply_binary(int op, C (&u)[V], const C (&w)[V]) {
  switch (op) {
    FC_MAP2(FL_ADD, x + y)
    FC_MAP2(FL_SUB, x - y)
    FC_MAP2(FL_MUL, x * y)
    FC_MAP2(FL_DIV, div_op(x, y))
    FC_MAP2(FL_POW, fc_pow(x, y))
    FC_MAP2(FL_MAXIMUM, fc_max(x, y))
    FC_MAP2(FL_MINIMUM, fc_min(x, y))
    FC_MAP2(FL_RELU_BACKWARD, y > (C)0 ? x : (C)0)
    FC_MAP2(FL_GELU_BACKWARD, x * gelu_grad(y))
    FC_MAP2(FL_GELU_TANH_BACKWARD, x * gelu_tanh_grad(y))
    FC_MAP2(FL_SILU_BACKWARD, x * sigmoid(y) * ((C)1 + y * ((C)1 - sigmoid(y))))
    FC_MAP2(FL_SIGMOID_BACKWARD, x * y * ((C)1 - y))
    FC_MAP2(FL_TANH_BACKWARD, x * ((C)1 - y * y))
    default: break;
  }
}

/* Comparisons and logic on V values: bool results. */
template <class C, int V>
__device__ __forceinline__ void apply_compare(int op, const C (&u)[V], const C (&w)[V], bool (&q)[V]) {
#pragma unroll
  for (int k = 0; k < V; k++) q[k] = false;
#define FC_CMP(OP, EXPR)                            \
  case OP:                                          \
    _Pragma("unroll") for (int k = 0; k < V; k++) { \
      C x = u[k], y = w[k];                         \
      q[k] = (EXPR);                                \
    }                                               \
    break;
  switch (op) {
    FC_CMP(FL_EQ, x == y)
    FC_CMP(FL_NE, x != y)
    FC_CMP(FL_LT, x < y)
    FC_CMP(FL_LE, x <= y)
    FC_CMP(FL_GT, x > y)
    FC_CMP(FL_GE, x >= y)
    FC_CMP(FL_AND, x != (C)0 && y != (C)0)
    FC_CMP(FL_OR, x != (C)0 || y != (C)0)
    default: break;
  }
#undef FC_CMP
}

/* The result of V values of one op: TO is T (arithmetic) or fc_bool (CMP). */
template <class T, class TO, int V>
__device__ __forceinline__ void finish(int op, typename fc_num<T>::acc (&u)[V], const typename fc_num<T>::acc (&w)[V],
                                       TO (&r)[V]) {
  using C = typename fc_num<T>::acc;
  if constexpr (std::is_same<TO, fc_bool>::value) {
    bool q[V];
    apply_compare<C, V>(op, u, w, q);
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_bool{(uint8_t)q[k]};
  } else {
    apply_binary<C, V>(op, u, w);
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_num<T>::make(u[k]);
  }
}

/* Same-dtype operands (the fast path): TO = T, or fc_bool for comparisons. */
template <class T, class TO_>
struct binary_op {
  using TO = TO_;
  using T0 = T;
  using T1 = T;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T, TO_>();
  int op;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&b)[V], const T2 (&)[V]) const {
    C u[V], w[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
      u[k] = fc_num<T>::load(a[k]);
      w[k] = fc_num<T>::load(b[k]);
    }
    finish<T, TO, V>(op, u, w, r);
  }
};

/* a op s (or s op a) with a already in the compute dtype: one launch, s by value. */
template <class T, class TO_>
struct scalar_op {
  using TO = TO_;
  using T0 = T;
  using T1 = fc_none;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T, TO_>();
  int op;
  bool rev;
  C s;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
    C u[V], w[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
      C x = fc_num<T>::load(a[k]);
      u[k] = rev ? s : x;
      w[k] = rev ? x : s;
    }
    finish<T, TO, V>(op, u, w, r);
  }
};

/* ---- the converting path: operands of other dtypes, converted on load ---- */

/* A value of any dtype as compute type T's accumulator, rounded as a cast to T would. */
template <class T, class X>
__device__ __forceinline__ typename fc_num<T>::acc convert_to(X v) {
  using C = typename fc_num<T>::acc;
  if constexpr (std::is_same<T, fc_bool>::value) return (C)(v != (X)0);
  else if constexpr (std::is_same<T, fc_half>::value || std::is_same<T, fc_bf16>::value)
    return fc_num<T>::load(fc_num<T>::make((float)v));
  else if constexpr (std::is_same<T, int32_t>::value) return (C)(int32_t)v;
  else return (C)v;
}

/* One element of runtime dtype dt at element offset off: a switch per load,
 * so one kernel per compute dtype serves every operand dtype. */
template <class T>
__device__ __forceinline__ typename fc_num<T>::acc load_as(const char *p, int64_t off, int dt) {
  switch (dt) {
    case FL_F32: return convert_to<T>(((const float *)p)[off]);
    case FL_F64: return convert_to<T>(((const double *)p)[off]);
    case FL_F16: return convert_to<T>(fl_half_to_f32(((const uint16_t *)p)[off]));
    case FL_BF16: return convert_to<T>(fl_bfloat_to_f32(((const uint16_t *)p)[off]));
    case FL_I32: return convert_to<T>((int64_t)((const int32_t *)p)[off]);
    case FL_I64: return convert_to<T>(((const int64_t *)p)[off]);
    default: return convert_to<T>((int64_t)(((const uint8_t *)p)[off] != 0));
  }
}

struct mixed_args {
  fc_iter<3> it; /* out, a, b (b's strides unused for a scalar) */
  char *out;
  const char *a, *b; /* b NULL: the scalar s */
  int da, db, op;
  bool rev;
  double s;
  int64_t n;
};

/* out = a op b (or a op s) in compute type T; TO is T or fc_bool. */
template <class T, class TO>
__global__ void __launch_bounds__(FC_THREADS) mixed_binary_kernel(mixed_args p) {
  using C = typename fc_num<T>::acc;
  const C s = fc_num<T>::load(fc_from_double<T>(p.s)); /* rounded once to the compute dtype */
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += step) {
    int64_t off[3];
    p.it.offsets(i, off);
    C x = load_as<T>(p.a, off[1], p.da), y = p.b ? load_as<T>(p.b, off[2], p.db) : s;
    C u[1] = {p.rev ? y : x}, w[1] = {p.rev ? x : y};
    TO r[1];
    finish<T, TO, 1>(p.op, u, w, r);
    ((TO *)p.out)[off[0]] = r[0];
  }
}

/* out = f(x) in out's (float) dtype T, x of another dtype (an integer tensor's exp). */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) mixed_unary_kernel(mixed_args p, unary_params<typename fc_num<T>::acc> u) {
  using C = typename fc_num<T>::acc;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += step) {
    int64_t off[3];
    p.it.offsets(i, off);
    C v[1] = {load_as<T>(p.a, off[1], p.da)};
    apply_unary<C, 1>(u, v);
    ((T *)p.out)[off[0]] = fc_num<T>::make(v[0]);
  }
}

template <class T> /* T: raw bits of the element size */
struct where_op {
  using TO = T;
  using T0 = fc_bool;
  using T1 = T;
  using T2 = T;
  static constexpr int VEC = fc_vec_width<fc_bool, T>();
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&c)[V], const T1 (&a)[V], const T2 (&b)[V]) const {
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = c[k].x ? a[k] : b[k];
  }
};

bool is_compare(fl_binary_op op) { return op >= FL_EQ && op <= FL_OR; }

fl_status same_shapes(const char *op, int n, const fl_tensor *const *ts) {
  for (int k = 1; k < n; k++) {
    if (!fl_same_shape(ts[0], ts[k])) {
      fl_desc a = fl_describe(ts[0]), b = fl_describe(ts[k]);
      return fl_error(FL_ESHAPE, "%s: operands must have the output's shape (%s vs %s)", op, a.s, b.s);
    }
  }
  return FL_OK;
}

fl_status dtype_mismatch(const char *op, const fl_tensor *a, const fl_tensor *b) {
  fl_desc da = fl_describe(a), db = fl_describe(b);
  return fl_error(FL_EDTYPE, "%s: unexpected dtypes (%s, %s)", op, da.s, db.s);
}

/* Clamp bounds in the compute type: for integers, the integers inside [p0, p1], as on the CPU. */
template <class C>
unary_params<C> unary_params_for(int op, double p0, double p1) {
  constexpr bool is_int = !std::is_floating_point<C>::value;
  double lo = is_int ? ceil(p0) : p0, hi = is_int ? floor(p1) : p1;
  return unary_params<C>{op, !isnan(p0), !isnan(p1), isnan(lo) ? (C)0 : (C)lo, isnan(hi) ? (C)0 : (C)hi};
}

/* The converting path for a binary op (b NULL: the scalar s) in compute dtype ct. */
fl_status launch_mixed(fc_context *ctx, const char *name, fl_binary_op op, fl_tensor *out, const fl_tensor *a,
                       const fl_tensor *b, double s, bool rev, fl_dtype ct) {
  mixed_args p;
  const int64_t *strides[3] = {out->stride, a->stride, b ? b->stride : a->stride};
  fc_iter_init<3>(&p.it, out->ndim, out->shape, strides, true);
  p.out = fc_base(out), p.a = fc_base(a), p.b = b ? fc_base(b) : nullptr;
  p.da = a->dtype, p.db = b ? b->dtype : a->dtype, p.op = op, p.rev = rev, p.s = s;
  p.n = fl_numel(out);
  if (p.n == 0) return FL_OK;
  unsigned grid = fc_grid(ctx, p.n, FC_THREADS);
  if (is_compare(op)) {
    return fc_dispatch(ct, name, [&](auto tag) {
      using T = typename decltype(tag)::type;
      mixed_binary_kernel<T, fc_bool><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p);
      return fc_launched("mixed_binary_kernel");
    });
  }
  return fc_dispatch<FC_M_ALL & ~FC_M_BOOL>(ct, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    mixed_binary_kernel<T, T><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p);
    return fc_launched("mixed_binary_kernel");
  });
}

} // namespace

namespace fc {

fl_status unary_forward(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1) {
  const fl_tensor *ts[2] = {out, x};
  FL_TRY(same_shapes(fl_unary_name(op), 2, ts));
  if ((unsigned)op >= FL_NUNARY) return fl_error(FL_EINVAL, "unary: bad op %d", (int)op);
  if (op == FL_LOGICAL_NOT && out->dtype != FL_BOOL) return dtype_mismatch(fl_unary_name(op), out, x);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (op != FL_LOGICAL_NOT && out->dtype != x->dtype) { /* x converted on load to out's float dtype */
    mixed_args p;
    const int64_t *strides[3] = {out->stride, x->stride, x->stride};
    fc_iter_init<3>(&p.it, out->ndim, out->shape, strides, true);
    p.out = fc_base(out), p.a = fc_base(x), p.b = nullptr, p.da = x->dtype, p.n = fl_numel(out);
    if (p.n == 0) return FL_OK;
    return fc_dispatch<FC_M_FLOAT>(out->dtype, fl_unary_name(op), [&](auto tag) {
      using T = typename decltype(tag)::type;
      auto u = unary_params_for<typename fc_num<T>::acc>(op, p0, p1);
      mixed_unary_kernel<T><<<fc_grid(ctx, p.n, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(p, u);
      return fc_launched("mixed_unary_kernel");
    });
  }
  return fc_dispatch(x->dtype, fl_unary_name(op), [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    if (op == FL_LOGICAL_NOT) return fc_ew_launch<logical_not_op<T>, 2>(ctx, "logical_not", ts, logical_not_op<T>{});
    unary_op<T> f{unary_params_for<typename fc_num<T>::acc>(op, p0, p1)};
    return fc_ew_launch<unary_op<T>, 2>(ctx, "unary", ts, f);
  });
}

fl_status binary_forward(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  const fl_tensor *ts[3] = {out, a, b};
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  const char *name = fl_binary_name(op);
  FL_TRY(same_shapes(name, 3, ts));
  bool cmp = is_compare(op);
  fl_dtype ct = fl_binary_compute(op, out, a, b);
  if (out->dtype != (cmp ? FL_BOOL : ct)) return dtype_mismatch(name, out, a);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (a->dtype != ct || b->dtype != ct) return launch_mixed(ctx, name, op, out, a, b, 0, false, ct);
  return fc_dispatch(ct, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (cmp) return fc_ew_launch<binary_op<T, fc_bool>, 3>(ctx, "compare", ts, binary_op<T, fc_bool>{(int)op});
    return fc_ew_launch<binary_op<T, T>, 3>(ctx, "binary", ts, binary_op<T, T>{(int)op});
  });
}

fl_status binary_scalar_forward(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                                fl_dtype ct) {
  const fl_tensor *ts[2] = {out, a};
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  const char *name = fl_binary_name(op);
  FL_TRY(same_shapes(name, 2, ts));
  bool cmp = is_compare(op);
  if (out->dtype != (cmp ? FL_BOOL : ct)) return dtype_mismatch(name, out, a);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (a->dtype != ct) return launch_mixed(ctx, name, op, out, a, nullptr, s, reversed, ct);
  return fc_dispatch(ct, name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = typename fc_num<T>::acc;
    C sv = fc_num<T>::load(fc_from_double<T>(s)); /* rounded once to the compute dtype */
    if (cmp) return fc_ew_launch<scalar_op<T, fc_bool>, 2>(ctx, "compare", ts, scalar_op<T, fc_bool>{(int)op, reversed, sv});
    return fc_ew_launch<scalar_op<T, T>, 2>(ctx, "binary", ts, scalar_op<T, T>{(int)op, reversed, sv});
  });
}

fl_status where_forward(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b) {
  const fl_tensor *ts[4] = {out, cond, a, b};
  FL_TRY(same_shapes("where", 4, ts));
  if (cond->dtype != FL_BOOL) return dtype_mismatch("where (condition must be bool)", cond, a);
  if (a->dtype != out->dtype || b->dtype != out->dtype) return dtype_mismatch("where", a, b);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  return fc_dispatch_bits(out->dtype, "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return fc_ew_launch<where_op<T>, 4>(ctx, "where", ts, where_op<T>{});
  });
}

} // namespace fc
