/* Fused cross-entropy (log-softmax + NLL + label smoothing) over the rows of [R, C] logits; the formulas are in
 * core/nn_index.h. One block per row. The forward reads the row once: an online (max, sum of exp) pair per
 * thread, plus the weighted sums that smoothing and probability targets need, taken relative to the row's first
 * logit so that lse * S - sum w q x does not cancel; it writes the loss, the f32 logsumexp and the row's weight.
 * The backward reads the row once more and writes dlogits = g (S softmax - w q') in the same pass.
 * Accumulation is f32 (f64 for f64 logits); rows are read in 16-byte vectors where the row allows. */
#include "context.cuh"
#include "nn_index.h"
#include "online.cuh"
#include "ops.cuh"

namespace {

constexpr int CE_THREADS = 512;

struct ce_params {
  const char *x, *target, *weight;
  int64_t R, C, base, ignore_index, tstride;
  bool has_ignore, idx32, probs;
  double smoothing;
  void *loss, *lse, *rw;
  const void *g;
  char *dx;
  unsigned long long *err;
};

/* The class the row's target names, 0-based; -1: ignored; -2: out of range (reported once per row). */
__device__ __forceinline__ int64_t row_class(const ce_params &p, int64_t r, bool report) {
  int64_t off = r * p.tstride;
  int64_t v = p.idx32 ? (int64_t)((const int32_t *)p.target)[off] : ((const int64_t *)p.target)[off];
  if (p.has_ignore && v == p.ignore_index) return -1;
  int64_t c = v - p.base;
  if (c < 0 || c >= p.C) {
    if (report) fc_kerr_report(p.err, FC_KERR_CROSS_ENTROPY, c, p.C);
    return -2;
  }
  return c;
}

template <class C>
struct ce_part {
  online<C> o;
  C a1, a2; /* sum f (x - xref), sum f */
};

template <class C>
__device__ __forceinline__ C warp_sum(C v) {
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

/* Block-wide sum of v; every thread gets it. sh holds CE_THREADS / 32 values. */
template <class C>
__device__ __forceinline__ C block_sum(C v, C *sh) {
  v = warp_sum(v);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  C t = 0;
  for (int i = 0; i < CE_THREADS / 32; i++) t += sh[i];
  return t;
}

template <class C>
__device__ __forceinline__ online<C> block_online(online<C> a, online<C> *sh) {
  for (int d = 16; d > 0; d >>= 1) {
    online<C> b{__shfl_xor_sync(0xffffffffu, a.m, d), __shfl_xor_sync(0xffffffffu, a.s, d)};
    a = merge(a, b);
  }
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) sh[w] = a;
  __syncthreads();
  online<C> t{-(C)INFINITY, (C)0};
  for (int i = 0; i < CE_THREADS / 32; i++) t = merge(t, sh[i]);
  return t;
}

/* Calls f(c, value) for this thread's share of row xr: VEC elements per 16-byte load where VEC > 1. */
template <class T, int VEC, class F>
__device__ __forceinline__ void for_row(const T *xr, int64_t C, F &&f) {
  using A = typename fc_num<T>::acc;
  if (VEC > 1) {
    for (int64_t c0 = (int64_t)threadIdx.x * VEC; c0 < C; c0 += (int64_t)CE_THREADS * VEC) {
      union {
        uint4 u;
        T v[VEC];
      } b;
      b.u = *(const uint4 *)(xr + c0);
#pragma unroll
      for (int k = 0; k < VEC; k++) f(c0 + k, fc_num<T>::load(b.v[k]));
    }
  } else {
    for (int64_t c = threadIdx.x; c < C; c += CE_THREADS) f(c, (A)fc_num<T>::load(xr[c]));
  }
}

template <class T>
__device__ __forceinline__ typename fc_num<T>::acc ld(const char *p, int64_t i) {
  return fc_num<T>::load(((const T *)p)[i]);
}

template <class T, int VEC>
__global__ void __launch_bounds__(CE_THREADS) ce_forward_kernel(ce_params p) {
  using C = typename fc_num<T>::acc;
  __shared__ online<C> sho[CE_THREADS / 32];
  __shared__ C shs[CE_THREADS / 32];
  const C eps = (C)p.smoothing, inv_c = (C)1 / (C)p.C;
  const bool sums = p.probs || eps != (C)0;
  for (int64_t r = blockIdx.x; r < p.R; r += gridDim.x) {
    const T *xr = (const T *)p.x + r * p.C;
    const C xref = fc_num<T>::load(xr[0]);
    int64_t t = p.probs ? 0 : row_class(p, r, threadIdx.x == 0);
    ce_part<C> a{{-(C)INFINITY, (C)0}, (C)0, (C)0};
    for_row<T, VEC>(xr, p.C, [&](int64_t c, C v) {
      push(a.o, v);
      if (sums) {
        C f = p.weight ? ld<T>(p.weight, c) : (C)1;
        if (p.probs) f *= (1 - eps) * ld<T>(p.target, r * p.C + c) + eps * inv_c;
        a.a1 += f * (v - xref);
        a.a2 += f;
      }
    });
    online<C> o = block_online(a.o, sho);
    C a1 = sums ? block_sum(a.a1, shs) : (C)0;
    C a2 = sums ? block_sum(a.a2, shs) : (C)0;
    if (threadIdx.x == 0) {
      C lse = o.m + fc_log(o.s), loss = 0, rw = 0;
      if (p.probs) {
        loss = (lse - xref) * a2 - a1, rw = 1;
      } else if (t >= 0) {
        C wt = p.weight ? ld<T>(p.weight, t) : (C)1, xt = fc_num<T>::load(xr[t]);
        C s = (1 - eps) * wt + (sums ? eps * inv_c * a2 : (C)0);
        loss = (lse - xref) * s - ((1 - eps) * wt * (xt - xref) + (sums ? eps * inv_c * a1 : (C)0));
        rw = wt;
      }
      ((C *)p.loss)[r] = loss;
      ((C *)p.lse)[r] = lse;
      ((C *)p.rw)[r] = rw;
    }
  }
}

template <class T, int VEC>
__global__ void __launch_bounds__(CE_THREADS) ce_backward_kernel(ce_params p) {
  using C = typename fc_num<T>::acc;
  __shared__ C shs[CE_THREADS / 32];
  const C eps = (C)p.smoothing, inv_c = (C)1 / (C)p.C;
  for (int64_t r = blockIdx.x; r < p.R; r += gridDim.x) {
    const T *xr = (const T *)p.x + r * p.C;
    T *dr = (T *)p.dx + r * p.C;
    const int64_t t = p.probs ? 0 : row_class(p, r, false);
    const C g = ((const C *)p.g)[r], lse = ((const C *)p.lse)[r];
    if (t < 0) { /* ignored (or a bad target, reported by the forward): no gradient */
      for (int64_t c = threadIdx.x; c < p.C; c += CE_THREADS) dr[c] = fc_num<T>::make((C)0);
      continue;
    }
    C s;
    if (p.probs || (p.weight && eps != (C)0)) {
      C part = 0;
      for (int64_t c = threadIdx.x; c < p.C; c += CE_THREADS) {
        C f = p.weight ? ld<T>(p.weight, c) : (C)1;
        if (p.probs) f *= (1 - eps) * ld<T>(p.target, r * p.C + c) + eps * inv_c;
        part += f;
      }
      s = block_sum(part, shs);
      if (!p.probs) s = (1 - eps) * (p.weight ? ld<T>(p.weight, t) : (C)1) + eps * inv_c * s;
    } else {
      s = (1 - eps) * (p.weight ? ld<T>(p.weight, t) : (C)1) + eps; /* unweighted: sum_c eps / C = eps */
    }
    auto grad = [&](int64_t c, C v) {
      C w = p.weight ? ld<T>(p.weight, c) : (C)1;
      C q = p.probs ? (1 - eps) * ld<T>(p.target, r * p.C + c) + eps * inv_c : (c == t ? 1 - eps : (C)0) + eps * inv_c;
      return fc_num<T>::make(g * (s * fc_exp(v - lse) - w * q));
    };
    if (VEC > 1) {
      for (int64_t c0 = (int64_t)threadIdx.x * VEC; c0 < p.C; c0 += (int64_t)CE_THREADS * VEC) {
        union {
          uint4 u;
          T v[VEC];
        } in, out;
        in.u = *(const uint4 *)(xr + c0);
#pragma unroll
        for (int k = 0; k < VEC; k++) out.v[k] = grad(c0 + k, fc_num<T>::load(in.v[k]));
        *(uint4 *)(dr + c0) = out.u;
      }
    } else {
      for (int64_t c = threadIdx.x; c < p.C; c += CE_THREADS) dr[c] = grad(c, fc_num<T>::load(xr[c]));
    }
  }
}

fl_status params_of(const fl_ce_args *a, ce_params &p, fl_dtype *acc) {
  const fl_tensor *x = a->logits;
  bool ok = x->ndim == 2 && fl_is_contiguous(x) && fl_dtype_is_float(x->dtype) && x->shape[1] > 0;
  p.R = ok ? x->shape[0] : 0, p.C = ok ? x->shape[1] : 0;
  p.probs = a->target->dtype != FL_I64 && a->target->dtype != FL_I32;
  if (ok && p.probs)
    ok = a->target->dtype == x->dtype && fl_is_contiguous(a->target) && fl_same_shape(a->target, x);
  else if (ok)
    ok = a->target->ndim == 1 && a->target->shape[0] == p.R;
  if (ok && a->weight) ok = a->weight->dtype == x->dtype && a->weight->ndim == 1 && a->weight->shape[0] == p.C &&
                            fl_is_contiguous(a->weight);
  if (!ok) {
    fl_desc dx = fl_describe(x), dt = fl_describe(a->target);
    return fl_error(FL_EINVAL, "cross_entropy: expected contiguous [R, C] float logits and a fitting target, got %s "
                               "and %s", dx.s, dt.s);
  }
  *acc = x->dtype == FL_F64 ? FL_F64 : FL_F32;
  p.x = fc_base(x);
  p.target = fc_base(a->target);
  p.weight = a->weight ? fc_base(a->weight) : nullptr;
  p.base = a->base, p.ignore_index = a->ignore_index, p.has_ignore = a->has_ignore;
  p.idx32 = a->target->dtype == FL_I32;
  p.tstride = p.probs ? 0 : a->target->stride[0];
  p.smoothing = a->smoothing;
  return FL_OK;
}

template <class K>
fl_status launch(fc_context *ctx, fl_dtype dt, ce_params &p, bool vec_ok, K kernels) {
  if (p.R == 0) return FL_OK;
  unsigned grid = (unsigned)fc_min64(p.R, (int64_t)ctx->sm_count * 16);
  return fc_dispatch<FC_M_FLOAT>(dt, "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int V = (int)(16 / sizeof(T));
    bool vec = vec_ok && p.C % V == 0;
    kernels(tag, vec, grid);
    return fc_launched("cross_entropy kernel");
  });
}

} // namespace

namespace fc {

fl_status cross_entropy_forward(const fl_ce_args *a) {
  ce_params p;
  memset(&p, 0, sizeof p);
  fl_dtype acc;
  FL_TRY(params_of(a, p, &acc));
  const fl_tensor *outs[3] = {a->loss, a->lse, a->rw};
  for (const fl_tensor *o : outs)
    if (o->dtype != acc || !fl_is_contiguous(o) || fl_numel(o) != p.R)
      return fl_error(FL_EINVAL, "cross_entropy: the row outputs must be contiguous [%lld] %s", (long long)p.R,
                      fl_dtype_name(acc));
  fc_context *ctx;
  FL_TRY(fc_context_of(a->logits, &ctx));
  p.loss = fl_data_ptr(a->loss), p.lse = fl_data_ptr(a->lse), p.rw = fl_data_ptr(a->rw);
  if (!p.probs) p.err = fc_kerr_arm(ctx);
  bool vec_ok = fc_aligned(p.x, 16);
  return launch(ctx, a->logits->dtype, p, vec_ok, [&](auto tag, bool vec, unsigned grid) {
    using T = typename decltype(tag)::type;
    constexpr int V = (int)(16 / sizeof(T));
    if (vec) ce_forward_kernel<T, V><<<grid, CE_THREADS, 0, fc_stream(ctx)>>>(p);
    else ce_forward_kernel<T, 1><<<grid, CE_THREADS, 0, fc_stream(ctx)>>>(p);
  });
}

fl_status cross_entropy_backward(const fl_ce_args *a, fl_tensor *dx, const fl_tensor *g) {
  ce_params p;
  memset(&p, 0, sizeof p);
  fl_dtype acc;
  FL_TRY(params_of(a, p, &acc));
  if (!fl_same_shape(dx, a->logits) || dx->dtype != a->logits->dtype || !fl_is_contiguous(dx) ||
      g->dtype != acc || !fl_is_contiguous(g) || fl_numel(g) != p.R || a->lse->dtype != acc ||
      !fl_is_contiguous(a->lse)) {
    fl_desc d = fl_describe(dx), dg = fl_describe(g);
    return fl_error(FL_EINVAL, "cross_entropy backward: operands do not fit (%s, %s)", d.s, dg.s);
  }
  fc_context *ctx;
  FL_TRY(fc_context_of(a->logits, &ctx));
  p.lse = fl_data_ptr(a->lse);
  p.g = fl_data_ptr(g);
  p.dx = fl_data_ptr(dx);
  bool vec_ok = fc_aligned(p.x, 16) && fc_aligned(p.dx, 16);
  return launch(ctx, a->logits->dtype, p, vec_ok, [&](auto tag, bool vec, unsigned grid) {
    using T = typename decltype(tag)::type;
    constexpr int V = (int)(16 / sizeof(T));
    if (vec) ce_backward_kernel<T, V><<<grid, CE_THREADS, 0, fc_stream(ctx)>>>(p);
    else ce_backward_kernel<T, 1><<<grid, CE_THREADS, 0, fc_stream(ctx)>>>(p);
  });
}

} // namespace fc
