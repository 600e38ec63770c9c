/* unary, binary and where. One instantiation per dtype (and per output kind:
 * same dtype or bool); the op is a runtime switch taken once per vector of
 * elements, which keeps compile time low at no measurable cost for these
 * memory-bound kernels. Arithmetic runs in the compute type (float for
 * f16/bf16, int64 for integers and bool). */
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

template <class T>
struct unary_op {
  using TO = T;
  using T0 = T;
  using T1 = fc_none;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T>();
  int op;
  bool has_lo, has_hi; /* CLAMP: a NaN bound means no bound */
  C lo, hi;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&)[V], const T2 (&)[V]) const {
    C v[V];
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = fc_num<T>::load(a[k]);
    switch (op) {
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

/* Ops whose result has the operands' dtype. For the *_BACKWARD ops x is the
 * incoming gradient and y the saved input (or output, for sigmoid/tanh). */
template <class T>
struct binary_op {
  using TO = T;
  using T0 = T;
  using T1 = T;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T>();
  int op;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&b)[V], const T2 (&)[V]) const {
    C u[V], w[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
      u[k] = fc_num<T>::load(a[k]);
      w[k] = fc_num<T>::load(b[k]);
    }
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
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_num<T>::make(u[k]);
  }
};

/* Comparisons and logic: bool results. */
template <class T>
struct compare_op {
  using TO = fc_bool;
  using T0 = T;
  using T1 = T;
  using T2 = fc_none;
  using C = typename fc_num<T>::acc;
  static constexpr int VEC = fc_vec_width<T, fc_bool>();
  int op;
  template <int V>
  __device__ void run(TO (&r)[V], const T0 (&a)[V], const T1 (&b)[V], const T2 (&)[V]) const {
    bool q[V];
#pragma unroll
    for (int k = 0; k < V; k++) q[k] = false;
#define FC_CMP(OP, EXPR)                                                   \
  case OP:                                                                 \
    _Pragma("unroll") for (int k = 0; k < V; k++) {                        \
      C x = fc_num<T>::load(a[k]), y = fc_num<T>::load(b[k]);              \
      q[k] = (EXPR);                                                       \
    }                                                                      \
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
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = fc_bool{(uint8_t)q[k]};
  }
};

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

} // namespace

namespace fc {

fl_status unary_forward(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1) {
  const fl_tensor *ts[2] = {out, x};
  FL_TRY(same_shapes(fl_unary_name(op), 2, ts));
  if ((unsigned)op >= FL_NUNARY) return fl_error(FL_EINVAL, "unary: bad op %d", (int)op);
  fl_dtype want = op == FL_LOGICAL_NOT ? FL_BOOL : x->dtype;
  if (out->dtype != want) return dtype_mismatch(fl_unary_name(op), out, x);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  return fc_dispatch(x->dtype, fl_unary_name(op), [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    if (op == FL_LOGICAL_NOT) return fc_ew_launch<logical_not_op<T>, 2>(ctx, "logical_not", ts, logical_not_op<T>{});
    using C = typename fc_num<T>::acc;
    /* integer clamp bounds: the integers inside [p0, p1], as on the CPU */
    constexpr bool is_int = !std::is_floating_point<C>::value;
    double lo = is_int ? ceil(p0) : p0, hi = is_int ? floor(p1) : p1;
    unary_op<T> f{(int)op, !isnan(p0), !isnan(p1), isnan(lo) ? (C)0 : (C)lo, isnan(hi) ? (C)0 : (C)hi};
    return fc_ew_launch<unary_op<T>, 2>(ctx, "unary", ts, f);
  });
}

fl_status binary_forward(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b) {
  const fl_tensor *ts[3] = {out, a, b};
  if ((unsigned)op >= FL_NBINARY) return fl_error(FL_EINVAL, "binary: bad op %d", (int)op);
  const char *name = fl_binary_name(op);
  FL_TRY(same_shapes(name, 3, ts));
  if (a->dtype != b->dtype) return dtype_mismatch(name, a, b);
  bool cmp = is_compare(op);
  if (out->dtype != (cmp ? FL_BOOL : a->dtype)) return dtype_mismatch(name, out, a);
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  return fc_dispatch(a->dtype, name, [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    if (cmp) return fc_ew_launch<compare_op<T>, 3>(ctx, "compare", ts, compare_op<T>{(int)op});
    return fc_ew_launch<binary_op<T>, 3>(ctx, "binary", ts, binary_op<T>{(int)op});
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
