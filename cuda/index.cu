/* index_select, gather (reads through an index) and index_add, scatter_add
 * (atomic adds through an index).
 *
 * All four are one pattern: walk a loop shape with three operands, A (written),
 * B (read) and I (the index), where the indexed operand's stride along `dim`
 * is zeroed and replaced by index * stride. index_select/index_add use a 1-D
 * index; giving it a stride only along `dim` (0 elsewhere) turns them into
 * gather/scatter_add, so two kernels serve all four.
 *
 * Indices are stored as base + position (base 1 from Lua); the kernels
 * subtract the base, and a bad index is reported as its 0-based position,
 * which the message then counts from the message base.
 *
 * A bad index never causes an out-of-bounds access: the kernel ORs its op's
 * bit into the context's sticky error word and skips the element (reads give
 * 0); the next synchronize / memcpy_d2h reports FL_EINDEX. */
#include "context.cuh"
#include "dispatch.cuh"
#include "iter.cuh"
#include "ops.cuh"

namespace {

struct idx_args {
  fc_iter<3> it; /* operands: A, B, I */
  char *a;
  const char *b;
  const char *idx;
  bool idx32;
  int64_t base;
  int64_t dim_size, dim_stride; /* of the indexed operand */
  int64_t n;
  unsigned long long *err;
  int errbit;
  double alpha;
};

/* The 0-based position the index at off names. */
__device__ __forceinline__ int64_t load_index(const idx_args &p, int64_t off) {
  int64_t v = p.idx32 ? (int64_t)((const int32_t *)p.idx)[off] : ((const int64_t *)p.idx)[off];
  return v - p.base;
}

/* A[i] = B[i with dim -> index] */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) gather_kernel(idx_args p) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[3];
    p.it.offsets(i, off);
    int64_t v = load_index(p, off[2]);
    T r = 0;
    if (v >= 0 && v < p.dim_size) r = ((const T *)p.b)[off[1] + v * p.dim_stride];
    else fc_kerr_report(p.err, p.errbit, v, p.dim_size);
    ((T *)p.a)[off[0]] = r;
  }
}

/* Atomic x += v in the element's own rounding. f16/bf16/bool have no native
 * atomic of the right form, so they CAS the aligned 32-bit word around them
 * (the allocator's blocks are 512-byte multiples, so the word is ours). */
__device__ __forceinline__ void atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double *p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int32_t *p, int64_t v) { atomicAdd((int *)p, (int)v); }
__device__ __forceinline__ void atomic_add(int64_t *p, int64_t v) {
  atomicAdd((unsigned long long *)p, (unsigned long long)v);
}

template <class T, class F>
__device__ __forceinline__ void atomic_update_narrow(T *p, F update) {
  unsigned *word = (unsigned *)((uintptr_t)p & ~(uintptr_t)3);
  const int shift = (int)((uintptr_t)p & 3) * 8;
  const unsigned mask = (sizeof(T) == 2 ? 0xffffu : 0xffu) << shift;
  unsigned old = *word, assumed;
  do {
    assumed = old;
    unsigned cur = (assumed & mask) >> shift;
    unsigned nxt = update(cur);
    old = atomicCAS(word, assumed, (assumed & ~mask) | ((nxt << shift) & mask));
  } while (old != assumed);
}
__device__ __forceinline__ void atomic_add(fc_half *p, float v) {
  atomic_update_narrow(p, [v](unsigned h) { return (unsigned)fl_half_from_f32(fl_half_to_f32((uint16_t)h) + v); });
}
__device__ __forceinline__ void atomic_add(fc_bf16 *p, float v) {
  atomic_update_narrow(p, [v](unsigned h) { return (unsigned)fl_bfloat_from_f32(fl_bfloat_to_f32((uint16_t)h) + v); });
}
__device__ __forceinline__ void atomic_add(fc_bool *p, int64_t v) {
  atomic_update_narrow(p, [v](unsigned b) { return (unsigned)(b != 0 || v != 0); });
}

/* A[i with dim -> index] += alpha * B[i] */
template <class T>
__global__ void __launch_bounds__(FC_THREADS) scatter_add_kernel(idx_args p) {
  using C = typename fc_num<T>::acc;
  const C alpha = (C)p.alpha;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[3];
    p.it.offsets(i, off);
    int64_t v = load_index(p, off[2]);
    if (v < 0 || v >= p.dim_size) {
      fc_kerr_report(p.err, p.errbit, v, p.dim_size);
      continue;
    }
    C s = fc_num<T>::load(((const T *)p.b)[off[1]]);
    atomic_add((T *)p.a + off[0] + v * p.dim_stride, alpha == (C)1 ? s : alpha * s);
  }
}

fl_status index_dtype(const char *op, const fl_tensor *idx, bool *idx32) {
  if (idx->dtype != FL_I64 && idx->dtype != FL_I32) {
    fl_desc d = fl_describe(idx);
    return fl_error(FL_EDTYPE, "%s: the index must be i64 or i32, got %s", op, d.s);
  }
  *idx32 = idx->dtype == FL_I32;
  return FL_OK;
}

fl_status bad_shapes(const char *op, const fl_tensor *a, const fl_tensor *b, const fl_tensor *c) {
  fl_desc da = fl_describe(a), db = fl_describe(b), dc = fl_describe(c);
  return fl_error(FL_ESHAPE, "%s: shapes do not fit (%s, %s, %s)", op, da.s, db.s, dc.s);
}

/* Loop over `loop`'s shape; A/B/I strides given; `which` (0: A, 1: B) is indexed. */
fl_status run(const char *op, int errbit, const fl_tensor *loop, const fl_tensor *A, const fl_tensor *B,
              const int64_t *istride, const fl_tensor *idx, int64_t base, int dim, int which, double alpha,
              fl_dtype dt, bool scatter) {
  fc_context *ctx;
  FL_TRY(fc_context_of(A, &ctx));
  idx_args p;
  FL_TRY(index_dtype(op, idx, &p.idx32));
  p.n = fl_numel(loop);
  if (p.n == 0) return FL_OK;
  int64_t as[FL_MAX_DIMS], bs[FL_MAX_DIMS];
  memcpy(as, A->stride, sizeof as);
  memcpy(bs, B->stride, sizeof bs);
  const fl_tensor *ixd = which == 0 ? A : B;
  p.dim_size = ixd->shape[dim];
  p.dim_stride = ixd->stride[dim];
  (which == 0 ? as : bs)[dim] = 0;
  const int64_t *st[3] = {as, bs, istride};
  fc_iter_init<3>(&p.it, loop->ndim, loop->shape, st, true);
  p.a = fc_base(A);
  p.b = fc_base(B);
  p.idx = fc_base(idx);
  p.err = fc_kerr_arm(ctx);
  p.errbit = errbit;
  p.alpha = alpha;
  p.base = base;
  unsigned grid = fc_grid(ctx, p.n, FC_THREADS);
  if (scatter) {
    return fc_dispatch(dt, op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      scatter_add_kernel<T><<<grid, FC_THREADS, 0, ctx->stream>>>(p);
      return fc_launched("scatter_add_kernel");
    });
  }
  return fc_dispatch_bits(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<grid, FC_THREADS, 0, ctx->stream>>>(p);
    return fc_launched("gather_kernel");
  });
}

/* Strides that read a 1-D index by the coordinate along dim. */
void index_along(const fl_tensor *idx, int dim, int64_t *st) {
  for (int d = 0; d < FL_MAX_DIMS; d++) st[d] = 0;
  st[dim] = idx->ndim ? idx->stride[0] : 0;
}

bool check_dim(int dim, const fl_tensor *t) { return t->ndim > 0 && dim >= 0 && dim < t->ndim; }

/* a and b agree on every dim except dim, where a has n. */
bool same_but_dim(const fl_tensor *a, const fl_tensor *b, int dim, int64_t n) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != (d == dim ? n : b->shape[d])) return false;
  return true;
}

} // namespace

namespace fc {

fl_status index_select_forward(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  const char *op = "index_select";
  if (!check_dim(dim, x) || idx->ndim > 1 || !same_but_dim(out, x, dim, fl_numel(idx)) || out->dtype != x->dtype)
    return bad_shapes(op, out, x, idx);
  int64_t ist[FL_MAX_DIMS];
  index_along(idx, dim, ist);
  return run(op, FC_KERR_INDEX_SELECT, out, out, x, ist, idx, base, dim, 1, 1.0, x->dtype, false);
}

fl_status index_add_forward(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                            int64_t base) {
  const char *op = "index_add";
  if (!check_dim(dim, x) || idx->ndim > 1 || !same_but_dim(src, x, dim, fl_numel(idx)) || src->dtype != x->dtype)
    return bad_shapes(op, x, src, idx);
  int64_t ist[FL_MAX_DIMS];
  index_along(idx, dim, ist);
  return run(op, FC_KERR_INDEX_ADD, src, x, src, ist, idx, base, dim, 0, alpha, x->dtype, true);
}

fl_status gather_forward(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  const char *op = "gather";
  bool ok = check_dim(dim, x) && out->ndim == x->ndim && fl_same_shape(out, idx) && out->dtype == x->dtype;
  for (int d = 0; ok && d < x->ndim; d++) ok = d == dim || out->shape[d] <= x->shape[d];
  if (!ok) return bad_shapes(op, out, x, idx);
  return run(op, FC_KERR_GATHER, out, out, x, idx->stride, idx, base, dim, 1, 1.0, x->dtype, false);
}

fl_status scatter_add_forward(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  const char *op = "scatter_add";
  bool ok = check_dim(dim, out) && idx->ndim == out->ndim && src->ndim == out->ndim && src->dtype == out->dtype;
  for (int d = 0; ok && d < out->ndim; d++)
    ok = idx->shape[d] <= src->shape[d] && (d == dim || idx->shape[d] <= out->shape[d]);
  if (!ok) return bad_shapes(op, out, src, idx);
  return run(op, FC_KERR_SCATTER_ADD, idx, out, src, idx->stride, idx, base, dim, 0, 1.0, out->dtype, true);
}

} // namespace fc
