/* index_select and gather (reads through an index); index_add and scatter_add
 * (adds through an index) are the deterministic kernels of index_det.cu.
 *
 * Both reads are one pattern: walk a loop shape with three operands, A (written),
 * B (read) and I (the index), where the indexed operand's stride along `dim`
 * is zeroed and replaced by index * stride. index_select uses a 1-D
 * index; giving it a stride only along `dim` (0 elsewhere) turns it into
 * gather, so one kernel serves both.
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

/* index_select of contiguous x and out, as [outer, size, inner] -> [outer, n, inner]: a block per output row
 * copies the picked row in W-sized pieces (16 bytes where the rows allow). A bad index writes zeros. */
template <class W>
__global__ void __launch_bounds__(FC_THREADS) select_rows_kernel(const W *x, W *out, idx_args p, int64_t outer,
                                                                 int64_t n, int64_t inner_w) {
  for (int64_t r = blockIdx.x; r < outer * n; r += gridDim.x) {
    const int64_t o = r / n, j = r - o * n;
    const int64_t v = load_index(p, j * p.dim_stride);
    W *dst = out + r * inner_w;
    if (v < 0 || v >= p.dim_size) {
      if (threadIdx.x == 0) fc_kerr_report(p.err, p.errbit, v, p.dim_size);
      for (int64_t c = threadIdx.x; c < inner_w; c += blockDim.x) dst[c] = W{};
      continue;
    }
    const W *src = x + (o * p.dim_size + v) * inner_w;
    for (int64_t c = threadIdx.x; c < inner_w; c += blockDim.x) dst[c] = src[c];
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

/* Loop over `loop`'s shape; A/B/I strides given; B is indexed along dim. */
fl_status run(const char *op, int errbit, const fl_tensor *loop, const fl_tensor *A, const fl_tensor *B,
              const int64_t *istride, const fl_tensor *idx, int64_t base, int dim, fl_dtype dt) {
  fc_context *ctx;
  FL_TRY(fc_context_of(A, &ctx));
  idx_args p;
  FL_TRY(index_dtype(op, idx, &p.idx32));
  p.n = fl_numel(loop);
  if (p.n == 0) return FL_OK;
  int64_t as[FL_MAX_DIMS], bs[FL_MAX_DIMS];
  memcpy(as, A->stride, sizeof as);
  memcpy(bs, B->stride, sizeof bs);
  p.dim_size = B->shape[dim];
  p.dim_stride = B->stride[dim];
  bs[dim] = 0;
  const int64_t *st[3] = {as, bs, istride};
  fc_iter_init<3>(&p.it, loop->ndim, loop->shape, st, true);
  p.a = fc_base(A);
  p.b = fc_base(B);
  p.idx = fc_base(idx);
  p.err = fc_kerr_arm(ctx);
  p.errbit = errbit;
  p.base = base;
  unsigned grid = fc_grid(ctx, p.n, FC_THREADS);
  return fc_dispatch_bits(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p);
    return fc_launched("gather_kernel");
  });
}

/* The contiguous case of index_select (the forward of embedding too): select_rows_kernel. */
fl_status select_rows(const char *op, fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  idx_args p;
  memset(&p, 0, sizeof p);
  FL_TRY(index_dtype(op, idx, &p.idx32));
  int64_t outer = 1, inner = 1, n = out->shape[dim];
  for (int d = 0; d < dim; d++) outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) inner *= x->shape[d];
  p.idx = fc_base(idx);
  p.base = base;
  p.dim_size = x->shape[dim];
  p.dim_stride = idx->ndim ? idx->stride[0] : 0; /* here: the index's stride */
  p.err = fc_kerr_arm(ctx);
  p.errbit = FC_KERR_INDEX_SELECT;
  const int64_t bytes = inner * (int64_t)fl_dtype_size(x->dtype);
  const unsigned grid = (unsigned)fc_min64(outer * n, (int64_t)ctx->sm_count * 32);
  if (bytes % 16 == 0 && fc_aligned(fc_base(x), 16) && fc_aligned(fc_base(out), 16)) {
    select_rows_kernel<uint4><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>((const uint4 *)fc_base(x), (uint4 *)fc_base(out), p,
                                                                    outer, n, bytes / 16);
    return fc_launched("select_rows_kernel");
  }
  return fc_dispatch_bits(x->dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    select_rows_kernel<T><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>((const T *)fc_base(x), (T *)fc_base(out), p, outer, n,
                                                                inner);
    return fc_launched("select_rows_kernel");
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
  if (fl_is_contiguous(x) && fl_is_contiguous(out) && fl_numel(out) > 0) return select_rows(op, out, x, dim, idx, base);
  int64_t ist[FL_MAX_DIMS];
  index_along(idx, dim, ist);
  return run(op, FC_KERR_INDEX_SELECT, out, out, x, ist, idx, base, dim, x->dtype);
}

fl_status index_add_forward(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                            int64_t base) {
  const char *op = "index_add";
  bool idx32;
  if (!check_dim(dim, x) || idx->ndim > 1 || !same_but_dim(src, x, dim, fl_numel(idx)) || src->dtype != x->dtype)
    return bad_shapes(op, x, src, idx);
  FL_TRY(index_dtype(op, idx, &idx32));
  return index_add_det(op, FC_KERR_INDEX_ADD, x, dim, idx, src, alpha, base, false);
}

fl_status gather_forward(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  const char *op = "gather";
  bool ok = check_dim(dim, x) && out->ndim == x->ndim && fl_same_shape(out, idx) && out->dtype == x->dtype;
  for (int d = 0; ok && d < x->ndim; d++) ok = d == dim || out->shape[d] <= x->shape[d];
  if (!ok) return bad_shapes(op, out, x, idx);
  return run(op, FC_KERR_GATHER, out, out, x, idx->stride, idx, base, dim, x->dtype);
}

fl_status scatter_add_forward(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  const char *op = "scatter_add";
  bool ok = check_dim(dim, out) && idx->ndim == out->ndim && src->ndim == out->ndim && src->dtype == out->dtype;
  for (int d = 0; ok && d < out->ndim; d++)
    ok = idx->shape[d] <= src->shape[d] && (d == dim || idx->shape[d] <= out->shape[d]);
  if (!ok) return bad_shapes(op, out, src, idx);
  bool idx32;
  FL_TRY(index_dtype(op, idx, &idx32));
  return scatter_add_det(op, FC_KERR_SCATTER_ADD, out, dim, idx, src, base);
}

/* index_add into zeros (the backward of index_select and embedding): out is written whole, never read. */
fl_status index_add_fresh_forward(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  const char *op = "index_add";
  bool idx32;
  if (!check_dim(dim, out) || idx->ndim > 1 || !same_but_dim(src, out, dim, fl_numel(idx)) || src->dtype != out->dtype)
    return bad_shapes(op, out, src, idx);
  FL_TRY(index_dtype(op, idx, &idx32));
  return index_add_det(op, FC_KERR_INDEX_ADD, out, dim, idx, src, 1.0, base, true);
}

} // namespace fc
