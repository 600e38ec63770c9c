/* flame.optim's fused multi-tensor kernels: the SGD / Adam / AdamW step, the total norm of many tensors, the
 * clip scaling and the EMA lerp, for every parameter in one or a few launches.
 *
 * Multi-tensor apply (as PyTorch's multi_tensor_apply): the tensors are cut into chunks of MT_CHUNK elements; a
 * launch carries, as its kernel argument (no host-to-device copy, no sync), a table of up to MT_TENSORS tensors
 * (their pointers, sizes and per-tensor scalars) and up to MT_BLOCKS (tensor, chunk) pairs, one per block. When
 * either table fills, the launch goes and the packing continues; a tensor cut between two launches is carried
 * into slot 0 of the next table. 100 tensors of 1M elements take 5 launches.
 *
 * Math in f32 for f32/bf16/f16 params (state f32), in f64 for f64 params; the update follows PyTorch's order of
 * operations (cpu_optim.c computes the same). */
#include "allocator.cuh"
#include "context.cuh"
#include "dispatch.cuh"
#include "ops.cuh"
#include "mt_pack.h"
#include <math.h>
#include <vector>

namespace {

constexpr int MT_TENSORS = 32;
constexpr int MT_BLOCKS = 320;
constexpr int64_t MT_CHUNK = 65536;
constexpr int MT_DEPTH = 5;
constexpr int MT_THREADS = 512;
constexpr int MT_ILP = 4;

/* One launch's table, passed by value as the kernel argument (< 4 KiB with the op). */
struct mt_meta {
  void *ptr[MT_DEPTH][MT_TENSORS];
  int64_t numel[MT_TENSORS];
  double s[2][MT_TENSORS]; /* per-tensor scalars: Adam's step size and sqrt(bias correction 2) */
  int chunk[MT_BLOCKS];
  unsigned char tensor[MT_BLOCKS];
};

/* What the host gives per tensor. */
struct mt_tensor {
  void *ptr[MT_DEPTH];
  int64_t numel;
  double s[2];
};

template <class Op>
__global__ void __launch_bounds__(MT_THREADS) mt_kernel(mt_meta m, Op op, int64_t block_base) {
  int t = m.tensor[blockIdx.x];
  int64_t start = (int64_t)m.chunk[blockIdx.x] * MT_CHUNK;
  int64_t end = start + MT_CHUNK < m.numel[t] ? start + MT_CHUNK : m.numel[t];
  op(m, t, start, end, block_base + blockIdx.x);
}

/* Launches mt_kernel<Op> over every chunk of every non-empty tensor, the tables packed by fl_mt_pack
 * (core/mt_pack.h, tested on the host). block_base counts blocks over all launches (the norm's partials). */
template <class Op>
struct mt_launcher {
  fc_context *ctx;
  const std::vector<mt_tensor> *ts;
  const Op *op;
  const char *name;
  mt_meta m;
  int64_t base;
  fl_status st;
  static void put(void *c, int slot, int tensor) {
    mt_launcher *l = (mt_launcher *)c;
    const mt_tensor &t = (*l->ts)[(size_t)tensor];
    for (int d = 0; d < MT_DEPTH; d++) l->m.ptr[d][slot] = t.ptr[d];
    l->m.numel[slot] = t.numel;
    l->m.s[0][slot] = t.s[0], l->m.s[1][slot] = t.s[1];
  }
  static void block(void *c, int b, int slot, int64_t chunk) {
    mt_launcher *l = (mt_launcher *)c;
    l->m.tensor[b] = (unsigned char)slot;
    l->m.chunk[b] = (int)chunk;
  }
  static int launch(void *c, int nblocks) {
    mt_launcher *l = (mt_launcher *)c;
    mt_kernel<Op><<<nblocks, MT_THREADS, 0, fc_stream(l->ctx)>>>(l->m, *l->op, l->base);
    l->base += nblocks;
    l->st = fc_launched(l->name);
    return l->st != FL_OK;
  }
};

template <class Op>
fl_status mt_apply(fc_context *ctx, const std::vector<mt_tensor> &ts, const Op &op, const char *name) {
  static_assert(sizeof(mt_meta) + sizeof(Op) + sizeof(int64_t) <= 4000, "kernel argument over 4 KiB");
  mt_launcher<Op> l;
  memset(&l.m, 0, sizeof l.m);
  l.ctx = ctx, l.ts = &ts, l.op = &op, l.name = name, l.base = 0, l.st = FL_OK;
  std::vector<int64_t> numel(ts.size());
  for (size_t i = 0; i < ts.size(); i++) numel[i] = ts[i].numel;
  fl_mt_sink sink = {&l, mt_launcher<Op>::put, mt_launcher<Op>::block, mt_launcher<Op>::launch};
  fl_mt_pack((int)ts.size(), numel.data(), MT_TENSORS, MT_BLOCKS, MT_CHUNK, &sink);
  return l.st;
}

/* Blocks mt_apply would launch over these tensors (the norm's partials). */
int64_t mt_blocks(const std::vector<mt_tensor> &ts) {
  int64_t n = 0;
  for (const mt_tensor &t : ts) n += (t.numel + MT_CHUNK - 1) / MT_CHUNK;
  return n;
}

/* ---- the step ---- */

/* MT_ILP consecutive elements as one aligned vector: 16-byte loads for f32, 8-byte for the half types. */
template <class T>
struct alignas(sizeof(T) * MT_ILP) mt_vec {
  T v[MT_ILP];
};
template <class T>
__device__ __forceinline__ bool mt_aligned(const void *ptr) {
  return ((uintptr_t)ptr % (sizeof(T) * MT_ILP)) == 0;
}

template <class T, class S>
struct adam_op {
  using A = typename fc_num<T>::acc;
  A b1, b2, omb1, omb2, eps, wd, decay; /* omb = 1 - beta, rounded once from the double as PyTorch does */
  bool maximize, decoupled, amsgrad;
  /* One element: x the param, m/v (and mx, amsgrad) the state, updated in place. */
  __device__ __forceinline__ void update(A &x, A g, A &m, A &v, A &mx, A step_size, A bc2) const {
    if (maximize) g = -g;
    if (wd != (A)0) {
      if (decoupled) x = x * decay;
      else g = g + wd * x;
    }
    m = m * b1 + omb1 * g; /* exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) */
    v = v * b2 + omb2 * g * g;
    A vm = v;
    if (amsgrad) {
      if (mx > vm) vm = mx;
      mx = vm;
    }
    A denom = sqrt(vm) / bc2 + eps;
    x = x - step_size * (m / denom);
  }
  __device__ void operator()(const mt_meta &mt, int t, int64_t start, int64_t end, int64_t) const {
    T *p = (T *)mt.ptr[0][t];
    const T *g = (const T *)mt.ptr[1][t];
    S *mm = (S *)mt.ptr[2][t], *vv = (S *)mt.ptr[3][t], *vx = (S *)mt.ptr[4][t];
    A step_size = (A)mt.s[0][t], bc2 = (A)mt.s[1][t];
    bool vec = (end - start) % MT_ILP == 0 && mt_aligned<T>(p) && mt_aligned<T>(g) && mt_aligned<S>(mm) &&
               mt_aligned<S>(vv) && (!amsgrad || mt_aligned<S>(vx));
    if (vec) { /* each thread MT_ILP consecutive elements, loaded as vectors (the chunk starts are aligned too) */
      for (int64_t i = start + MT_ILP * (int64_t)threadIdx.x; i < end; i += MT_ILP * (int64_t)blockDim.x) {
        mt_vec<T> pv = *(const mt_vec<T> *)(p + i), gv = *(const mt_vec<T> *)(g + i);
        mt_vec<S> mv = *(const mt_vec<S> *)(mm + i), vvv = *(const mt_vec<S> *)(vv + i), xv;
        if (amsgrad) xv = *(const mt_vec<S> *)(vx + i);
#pragma unroll
        for (int k = 0; k < MT_ILP; k++) {
          A x = fc_num<T>::load(pv.v[k]), m = (A)mv.v[k], v = (A)vvv.v[k], mx = amsgrad ? (A)xv.v[k] : (A)0;
          update(x, fc_num<T>::load(gv.v[k]), m, v, mx, step_size, bc2);
          pv.v[k] = fc_num<T>::make(x), mv.v[k] = (S)m, vvv.v[k] = (S)v;
          if (amsgrad) xv.v[k] = (S)mx;
        }
        *(mt_vec<T> *)(p + i) = pv, *(mt_vec<S> *)(mm + i) = mv, *(mt_vec<S> *)(vv + i) = vvv;
        if (amsgrad) *(mt_vec<S> *)(vx + i) = xv;
      }
      return;
    }
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) { /* unaligned or ragged: one at a time */
      A x = fc_num<T>::load(p[i]), m = (A)mm[i], v = (A)vv[i], mx = amsgrad ? (A)vx[i] : (A)0;
      update(x, fc_num<T>::load(g[i]), m, v, mx, step_size, bc2);
      p[i] = fc_num<T>::make(x), mm[i] = (S)m, vv[i] = (S)v;
      if (amsgrad) vx[i] = (S)mx;
    }
  }
};

template <class T, class S>
struct sgd_op {
  using A = typename fc_num<T>::acc;
  A lr, wd, mom, damp1; /* damp1 = 1 - dampening */
  bool maximize, nesterov, first, has_mom;
  __device__ void operator()(const mt_meta &m, int t, int64_t start, int64_t end, int64_t) const {
    T *p = (T *)m.ptr[0][t];
    const T *g = (const T *)m.ptr[1][t];
    S *buf = (S *)m.ptr[2][t];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      A x = fc_num<T>::load(p[i]), d = fc_num<T>::load(g[i]);
      if (maximize) d = -d;
      if (wd != (A)0) d = d + wd * x;
      if (has_mom) {
        A b = first ? d : mom * (A)buf[i] + damp1 * d;
        buf[i] = (S)b;
        d = nesterov ? d + mom * b : b;
      }
      p[i] = fc_num<T>::make(x - lr * d);
    }
  }
};

static void *data_or_null(fl_tensor *const *list, int i) { return list && list[i] ? (void *)fc_base(list[i]) : nullptr; }

template <class T>
fl_status step_typed(fc_context *ctx, const fl_optim_args *a) {
  using A = typename fc_num<T>::acc;
  using S = A; /* the state: f32 for f32 and the half types, f64 for f64 */
  std::vector<mt_tensor> ts((size_t)a->n);
  for (int i = 0; i < a->n; i++) {
    mt_tensor &t = ts[(size_t)i];
    t.ptr[0] = fc_base(a->params[i]);
    t.ptr[1] = fc_base(a->grads[i]);
    t.ptr[2] = data_or_null(a->buf1, i), t.ptr[3] = data_or_null(a->buf2, i), t.ptr[4] = data_or_null(a->buf3, i);
    t.numel = fl_numel(a->params[i]);
    t.s[0] = t.s[1] = 0;
    if (a->kind == FL_OPTIM_ADAM) {
      double s = (double)a->steps[i];
      t.s[0] = a->lr / (1 - pow(a->beta1, s));
      t.s[1] = sqrt(1 - pow(a->beta2, s));
    }
  }
  if (a->kind == FL_OPTIM_ADAM) {
    adam_op<T, S> op{(A)a->beta1, (A)a->beta2, (A)(1 - a->beta1), (A)(1 - a->beta2), (A)a->eps, (A)a->weight_decay,
                     (A)(1 - a->lr * a->weight_decay), a->maximize, a->decoupled, a->amsgrad};
    return mt_apply(ctx, ts, op, "adam_kernel");
  }
  sgd_op<T, S> op{(A)a->lr, (A)a->weight_decay, (A)a->momentum, (A)(1 - a->dampening),
                  a->maximize, a->nesterov, a->first, a->momentum != 0};
  return mt_apply(ctx, ts, op, "sgd_kernel");
}

/* ---- the norm: per-block partials, then one block combines them in a fixed order ---- */

enum { NORM_L2, NORM_INF, NORM_P };

template <class A>
__device__ A norm_combine(int mode, A x, A y) {
  if (mode == NORM_INF) return (y > x || y != y) ? y : x;
  return x + y;
}

/* Reduces v over the block (every thread gets the result); shared holds blockDim.x values. */
template <class A>
__device__ A block_reduce(int mode, A v, A *shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) shared[threadIdx.x] = norm_combine(mode, shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  A r = shared[0];
  __syncthreads();
  return r;
}

template <class T>
struct norm_op {
  using A = typename fc_num<T>::acc;
  A *partials;
  A p;
  int mode;
  __device__ void operator()(const mt_meta &m, int t, int64_t start, int64_t end, int64_t block) const {
    __shared__ A shared[MT_THREADS];
    const T *x = (const T *)m.ptr[0][t];
    A acc = 0;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      A v = fc_num<T>::load(x[i]);
      v = v < (A)0 ? -v : v;
      A term = mode == NORM_L2 ? v * v : mode == NORM_INF ? v : pow(v, p);
      acc = norm_combine(mode, acc, term);
    }
    A r = block_reduce(mode, acc, shared);
    if (threadIdx.x == 0) partials[block] = r;
  }
};

template <class A>
__global__ void __launch_bounds__(MT_THREADS) norm_finish(A *out, const A *partials, int64_t n, int mode, A p) {
  __shared__ A shared[MT_THREADS];
  A acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = norm_combine(mode, acc, partials[i]);
  A r = block_reduce(mode, acc, shared);
  if (threadIdx.x == 0) *out = mode == NORM_L2 ? sqrt(r) : mode == NORM_INF ? r : pow(r, (A)1 / p);
}

/* ---- the clip scaling and the EMA lerp ---- */

template <class T, class N>
struct clip_op {
  using A = typename fc_num<T>::acc;
  const N *norm;
  A max_norm;
  __device__ void operator()(const mt_meta &m, int t, int64_t start, int64_t end, int64_t) const {
    N c = (N)max_norm / (*norm + (N)1e-6); /* clip_grad_norm_'s coefficient, in the norm's dtype */
    A coef = (A)(c < (N)1 ? c : (N)1);
    T *x = (T *)m.ptr[0][t];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) x[i] = fc_num<T>::make(fc_num<T>::load(x[i]) * coef);
  }
};

template <class T>
struct lerp_op {
  using A = typename fc_num<T>::acc;
  A w;
  __device__ void operator()(const mt_meta &m, int t, int64_t start, int64_t end, int64_t) const {
    T *d = (T *)m.ptr[0][t];
    const T *s = (const T *)m.ptr[1][t];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      A x = fc_num<T>::load(d[i]);
      d[i] = fc_num<T>::make(x - w * (x - fc_num<T>::load(s[i])));
    }
  }
};

template <class T>
struct copy_op {
  __device__ void operator()(const mt_meta &m, int t, int64_t start, int64_t end, int64_t) const {
    T *d = (T *)m.ptr[0][t];
    const T *s = (const T *)m.ptr[1][t];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) d[i] = s[i];
  }
};

std::vector<mt_tensor> list_of(int n, const fl_tensor *const *a, const fl_tensor *const *b) {
  std::vector<mt_tensor> ts((size_t)n);
  for (int i = 0; i < n; i++) {
    mt_tensor &t = ts[(size_t)i];
    memset(&t, 0, sizeof t);
    t.ptr[0] = fc_base(a[i]);
    if (b) t.ptr[1] = fc_base(b[i]);
    t.numel = fl_numel(a[i]);
  }
  return ts;
}

} // namespace

namespace fc {

fl_status optim_step(const fl_optim_args *a) {
  fc_context *ctx;
  FL_TRY(fc_context_of(a->params[0], &ctx));
  return fc_dispatch<FC_M_FLOAT>(a->params[0]->dtype, "optimizer step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return step_typed<T>(ctx, a);
  });
}

fl_status multi_norm(fl_tensor *out, int n, const fl_tensor *const *xs, double p) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  int mode = isinf(p) ? NORM_INF : p == 2 ? NORM_L2 : NORM_P;
  std::vector<mt_tensor> ts = list_of(n, xs, nullptr);
  int64_t blocks = mt_blocks(ts);
  return fc_dispatch<FC_M_FLOAT>(xs[0]->dtype, "multi_norm", [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    using A = typename fc_num<T>::acc;
    if (out->dtype != (sizeof(A) == 8 ? FL_F64 : FL_F32))
      return fl_error(FL_EINVAL, "multi_norm: the result must be %s", sizeof(A) == 8 ? "f64" : "f32");
    fc_scratch part;
    FL_TRY(part.get(ctx, sizeof(A) * (size_t)(blocks > 0 ? blocks : 1)));
    norm_op<T> op{(A *)part.ptr, (A)p, mode};
    FL_TRY(mt_apply(ctx, ts, op, "norm_kernel"));
    norm_finish<A><<<1, MT_THREADS, 0, fc_stream(ctx)>>>((A *)fc_base(out), (const A *)part.ptr, blocks, mode, (A)p);
    return fc_launched("norm_finish");
  });
}

fl_status multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm) {
  fc_context *ctx;
  FL_TRY(fc_context_of(norm, &ctx));
  std::vector<mt_tensor> ts = list_of(n, (const fl_tensor *const *)xs, nullptr);
  return fc_dispatch<FC_M_FLOAT>(xs[0]->dtype, "clip_grad_norm", [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    using A = typename fc_num<T>::acc;
    if (norm->dtype == FL_F64) return mt_apply(ctx, ts, clip_op<T, double>{(const double *)fc_base(norm), (A)max_norm}, "clip_kernel");
    if (norm->dtype == FL_F32) return mt_apply(ctx, ts, clip_op<T, float>{(const float *)fc_base(norm), (A)max_norm}, "clip_kernel");
    return fl_error(FL_EDTYPE, "clip_grad_norm: the norm must be f32 or f64 on CUDA, got %s", fl_dtype_name(norm->dtype));
  });
}

fl_status multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w) {
  fc_context *ctx;
  FL_TRY(fc_context_of(dst[0], &ctx));
  std::vector<mt_tensor> ts = list_of(n, (const fl_tensor *const *)dst, src);
  return fc_dispatch<FC_M_FLOAT>(dst[0]->dtype, "ema", [&](auto tag) -> fl_status {
    using T = typename decltype(tag)::type;
    using A = typename fc_num<T>::acc;
    return mt_apply(ctx, ts, lerp_op<T>{(A)w}, "lerp_kernel");
  });
}

/* A copy moves bits: the kernel is instantiated per element size, not per float dtype. */
fl_status multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src) {
  fc_context *ctx;
  FL_TRY(fc_context_of(dst[0], &ctx));
  std::vector<mt_tensor> ts = list_of(n, (const fl_tensor *const *)dst, src);
  switch (fl_dtype_size(dst[0]->dtype)) {
    case 2: return mt_apply(ctx, ts, copy_op<uint16_t>{}, "copy_kernel");
    case 4: return mt_apply(ctx, ts, copy_op<uint32_t>{}, "copy_kernel");
    case 8: return mt_apply(ctx, ts, copy_op<uint64_t>{}, "copy_kernel");
    default: return fl_error(FL_EDTYPE, "multi_copy: %s is not supported on CUDA", fl_dtype_name(dst[0]->dtype));
  }
}

} // namespace fc
