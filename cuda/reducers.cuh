/* Reduction operators for the reduce kernels. A reducer R has a state S and
 *   init(), add(S&, C value, int64 flat_index), combine(S, S),
 *   write(S, n, T *value_out, int64_t *index_out)
 * plus a warp shuffle for S. combine() must not depend on the order partial
 * states arrive in beyond rounding (ties in argmax/argmin compare indices). */
#ifndef FL_CUDA_REDUCERS_CUH
#define FL_CUDA_REDUCERS_CUH

#include "math.cuh"

FC_DEV float fc_shfl_down(float v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
FC_DEV double fc_shfl_down(double v, int d, int w) { return __shfl_down_sync(0xffffffffu, v, d, w); }
FC_DEV int64_t fc_shfl_down(int64_t v, int d, int w) {
  return (int64_t)__shfl_down_sync(0xffffffffu, (long long)v, d, w);
}

FC_DEV float fc_shfl_up(float v, int d) { return __shfl_up_sync(0xffffffffu, v, d); }
FC_DEV double fc_shfl_up(double v, int d) { return __shfl_up_sync(0xffffffffu, v, d); }
FC_DEV int64_t fc_shfl_up(int64_t v, int d) { return (int64_t)__shfl_up_sync(0xffffffffu, (long long)v, d); }
FC_DEV float fc_shfl_idx(float v, int l) { return __shfl_sync(0xffffffffu, v, l); }
FC_DEV double fc_shfl_idx(double v, int l) { return __shfl_sync(0xffffffffu, v, l); }
FC_DEV int64_t fc_shfl_idx(int64_t v, int l) { return (int64_t)__shfl_sync(0xffffffffu, (long long)v, l); }

/* SUM, MEAN (sum, divided at the end) and PROD. */
template <class T>
struct fc_arith_red {
  using C = typename fc_num<T>::acc;
  using S = C;
  /* integer sums and products are i64 (the front-end's dtype); floats keep T */
  using O = std::conditional_t<std::is_floating_point<C>::value, T, int64_t>;
  bool prod, mean;
  FC_DEV S init() const { return prod ? (S)1 : (S)0; }
  FC_DEV void add(S &s, C v, int64_t) const { s = prod ? s * v : s + v; }
  FC_DEV S combine(S a, S b) const { return prod ? a * b : a + b; }
  FC_DEV S shfl(S s, int d, int w) const { return fc_shfl_down(s, d, w); }
  FC_DEV void write(S s, int64_t n, O *val, int64_t *) const {
    if (mean) s = std::is_floating_point<C>::value ? s / (C)n : (n ? s / (C)n : (C)0);
    *val = fc_num<O>::make(s);
  }
};

template <class C>
struct fc_arg_state {
  C v;
  int64_t i; /* -1: empty */
};

/* MAX/MIN with the flat index of the winner (ARGMAX/ARGMIN, or max/min with
 * indices). NaN wins (as in PyTorch); among equal values the first index wins. */
template <class T>
struct fc_arg_red {
  using C = typename fc_num<T>::acc;
  using S = fc_arg_state<C>;
  using O = T;
  bool is_max;
  int64_t base; /* added to the written index (1 for Lua callers) */
  FC_DEV S init() const { return S{(C)0, -1}; }
  FC_DEV S combine(S a, S b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    bool an = fc_isnan(a.v), bn = fc_isnan(b.v);
    if (an || bn) return (an && bn) ? (a.i < b.i ? a : b) : (an ? a : b);
    if (a.v == b.v) return a.i < b.i ? a : b;
    return (is_max ? a.v > b.v : a.v < b.v) ? a : b;
  }
  FC_DEV void add(S &s, C v, int64_t i) const { s = combine(s, S{v, i}); }
  FC_DEV S shfl(S s, int d, int w) const { return S{fc_shfl_down(s.v, d, w), fc_shfl_down(s.i, d, w)}; }
  FC_DEV void write(S s, int64_t, T *val, int64_t *idx) const {
    if (val) *val = fc_num<T>::make(s.i < 0 ? empty() : s.v);
    if (idx) *idx = s.i + base;
  }
  static FC_DEV C empty() { /* nothing was reduced: NaN as on the CPU (0 for integers) */
    if constexpr (std::is_floating_point<C>::value) return (C)NAN;
    else return 0;
  }
};

template <class C>
struct fc_welford {
  C mean, m2;
  int64_t n;
};

/* VAR by Welford's update and Chan's merge: one pass, no cancellation. */
template <class T>
struct fc_var_red {
  using C = typename fc_num<T>::acc;
  using S = fc_welford<C>;
  using O = T;
  C correction;
  FC_DEV S init() const { return S{(C)0, (C)0, 0}; }
  FC_DEV void add(S &s, C v, int64_t) const {
    s.n++;
    C d = v - s.mean;
    s.mean += d / (C)s.n;
    s.m2 += d * (v - s.mean);
  }
  FC_DEV S combine(S a, S b) const {
    if (a.n == 0) return b;
    if (b.n == 0) return a;
    int64_t n = a.n + b.n;
    C d = b.mean - a.mean, fb = (C)b.n / (C)n;
    return S{a.mean + d * fb, a.m2 + b.m2 + d * d * (C)a.n * fb, n};
  }
  FC_DEV S shfl(S s, int d, int w) const {
    return S{fc_shfl_down(s.mean, d, w), fc_shfl_down(s.m2, d, w), fc_shfl_down(s.n, d, w)};
  }
  FC_DEV void write(S s, int64_t, T *val, int64_t *) const {
    C den = (C)s.n - correction;
    *val = fc_num<T>::make(s.m2 / (den > (C)0 ? den : (C)0));
  }
};

#endif
