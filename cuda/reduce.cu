/* reduce (sum, mean, prod, max, min, argmax, argmin, var) and cumsum.
 *
 * Planning: the dims of x split into kept dims (the outputs) and reduced dims.
 * Size-1 dims are dropped and neighbours merged where memory allows, so the
 * common cases become 2-D problems: [outputs, contiguous row] (rows kernel) or
 * [reduced rows, contiguous outputs] (cols kernel); see reduce_kernels.cuh.
 * Reductions whose result does not depend on element order also sort the
 * reduced dims by stride, so a transposed input still reads rows unit-stride.
 * A full SUM/MEAN of a contiguous float tensor goes to cub::DeviceReduce::Sum
 * (f16/bf16 read through a float-converting iterator). */
#include "allocator.cuh"
#include "ops.cuh"
#include "reduce_kernels.cuh"
#include <cub/device/device_reduce.cuh>
#include <thrust/iterator/transform_iterator.h>

namespace {

struct red_plan {
  fc_iter<3> kept;
  fc_iter<1> red;
  int64_t nout, nred;
};

int64_t iabs(int64_t v) { return v < 0 ? -v : v; }

fl_status check_out_shape(const char *what, const fl_tensor *t, const fl_tensor *x, uint32_t mask) {
  bool ok = t->ndim == x->ndim;
  for (int d = 0; ok && d < x->ndim; d++) ok = t->shape[d] == ((mask >> d & 1) ? 1 : x->shape[d]);
  if (ok) return FL_OK;
  fl_desc dt = fl_describe(t), dx = fl_describe(x);
  return fl_error(FL_ESHAPE, "reduce: %s %s does not match input %s with reduced dims set to 1", what, dt.s, dx.s);
}

/* val / ix: the tensors that receive values and indices (either may be NULL). */
fl_status make_plan(const fl_tensor *x, const fl_tensor *val, const fl_tensor *ix, uint32_t mask, bool keep_order,
                    red_plan *pl) {
  int64_t ks[FL_MAX_DIMS], kst[3][FL_MAX_DIMS], rs[FL_MAX_DIMS], rst[FL_MAX_DIMS];
  int nk = 0, nr = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (mask >> d & 1) {
      rs[nr] = x->shape[d];
      rst[nr++] = x->stride[d];
    } else {
      ks[nk] = x->shape[d];
      kst[0][nk] = x->stride[d];
      kst[1][nk] = val ? val->stride[d] : 0;
      kst[2][nk++] = ix ? ix->stride[d] : 0;
    }
  }
  /* Order-free reductions: largest stride outermost (stable insertion sort). */
  for (int i = 1; !keep_order && i < nr; i++) {
    for (int j = i; j > 0 && iabs(rst[j - 1]) < iabs(rst[j]); j--) {
      int64_t t = rs[j]; rs[j] = rs[j - 1]; rs[j - 1] = t;
      t = rst[j]; rst[j] = rst[j - 1]; rst[j - 1] = t;
    }
  }
  const int64_t *kp[3] = {kst[0], kst[1], kst[2]};
  const int64_t *rp[1] = {rst};
  fc_iter_init<3>(&pl->kept, nk, ks, kp, true);
  fc_iter_init<1>(&pl->red, nr, rs, rp, true);
  pl->nout = fl_shape_numel(nk, ks);
  pl->nred = fl_shape_numel(nr, rs);
  return FL_OK;
}

/* Can x be loaded V elements at a time along the innermost dim of the walk
 * `unit` (unit-stride there, its size a multiple of V), with every other
 * stride of both walks a multiple of V and x aligned? */
template <int NU, int NO>
bool vec_ok(const fc_iter<NU> &unit, const fc_iter<NO> &other, const void *x, size_t elem, int V) {
  if (unit.stride[0][0] != 1 || unit.size[0] % V || !fc_aligned(x, elem * V)) return false;
  for (int d = 1; d < unit.nd; d++)
    if (unit.stride[0][d] % V) return false;
  for (int d = 0; d < other.nd; d++)
    if (other.stride[0][d] % V) return false;
  return true;
}
/* rows: the reduced dims are innermost; cols: the kept dims are. */
template <class T>
bool rows_vec_ok(const red_plan &pl, const T *x, int V) { return vec_ok(pl.red, pl.kept, x, sizeof(T), V); }
template <class T>
bool cols_vec_ok(const red_plan &pl, const T *x, int V) { return vec_ok(pl.kept, pl.red, x, sizeof(T), V); }

/* Splits of the reduced range so that about one full wave of threads runs,
 * keeping at least `min_per` elements in each split. */
int pick_splits(const fc_context *ctx, int64_t threads, int64_t nred, int64_t min_per) {
  int64_t target = (int64_t)ctx->sm_count * 2048;
  if (threads >= target || nred < 2 * min_per) return 1;
  int64_t s = fc_min64(fc_ceil_div(target, threads), nred / min_per);
  return (int)fc_max64(1, fc_min64(s, 65535));
}

template <class R, class T, int V>
fl_status launch_rows(fc_context *ctx, fc_red_args<T> &p, const R &r, fc_scratch &part) {
  int64_t chunks = fc_max64(1, fc_ceil_div(p.nred, V));
  p.group = (int)fc_min64(256, fc_next_pow2(fc_ceil_div(chunks, 8)));
  int64_t groups = FC_THREADS / p.group;
  int64_t bx = fc_min64(fc_ceil_div(p.nout, groups), (int64_t)ctx->sm_count * 32);
  int splits = pick_splits(ctx, bx * FC_THREADS, p.nred, (int64_t)p.group * V * 8);
  p.per_split = fc_ceil_div(fc_ceil_div(p.nred, splits), V) * V;
  p.splits = p.nred ? (int)fc_ceil_div(p.nred, p.per_split) : 1;
  if (p.splits > 1) {
    FL_TRY(part.get(ctx, (size_t)p.nout * p.splits * sizeof(typename R::S)));
    p.partial = part.ptr;
  }
  dim3 grid((unsigned)bx, (unsigned)p.splits);
  fc_reduce_rows_kernel<R, T, V><<<grid, FC_THREADS, 0, fc_stream(ctx)>>>(p, r);
  return fc_launched("reduce_rows_kernel");
}

template <class R, class T, int V>
fl_status launch_cols(fc_context *ctx, fc_red_args<T> &p, const R &r, fc_scratch &part) {
  int64_t bx = fc_ceil_div(fc_ceil_div(p.nout, V), FC_COLS_X);
  int splits = pick_splits(ctx, bx * FC_THREADS, p.nred, FC_COLS_Y * 16);
  p.per_split = fc_ceil_div(p.nred, splits);
  p.splits = p.nred ? (int)fc_ceil_div(p.nred, p.per_split) : 1;
  if (p.splits > 1) {
    FL_TRY(part.get(ctx, (size_t)p.nout * p.splits * sizeof(typename R::S)));
    p.partial = part.ptr;
  }
  if (bx > 0x7fffffff) return fl_error(FL_EINVAL, "reduce: too many outputs (%lld)", (long long)p.nout);
  dim3 grid((unsigned)bx, (unsigned)p.splits), block(FC_COLS_X, FC_COLS_Y);
  fc_reduce_cols_kernel<R, T, V><<<grid, block, 0, fc_stream(ctx)>>>(p, r);
  return fc_launched("reduce_cols_kernel");
}

/* VMAX: vector width to try (1 for reducers not worth a second instantiation). */
template <class R, class T, int VMAX>
fl_status run_reduce(fc_context *ctx, const red_plan &pl, const T *x, void *val, int64_t *idx, const R &r) {
  fc_red_args<T> p;
  p.kept = pl.kept;
  p.red = pl.red;
  p.x = x;
  p.val = val;
  p.idx = idx;
  p.nout = pl.nout;
  p.nred = pl.nred;
  p.partial = nullptr;
  p.group = 1;
  fc_scratch part;
  bool rows = pl.nout == 1 || pl.nred <= 1 || iabs(pl.red.stride[0][0]) < iabs(pl.kept.stride[0][0]);
  if (rows) {
    if constexpr (VMAX > 1) {
      if (rows_vec_ok(pl, x, VMAX)) FL_TRY((launch_rows<R, T, VMAX>(ctx, p, r, part)));
      else FL_TRY((launch_rows<R, T, 1>(ctx, p, r, part)));
    } else {
      FL_TRY((launch_rows<R, T, 1>(ctx, p, r, part)));
    }
  } else {
    if constexpr (VMAX > 1) {
      if (cols_vec_ok(pl, x, VMAX)) FL_TRY((launch_cols<R, T, VMAX>(ctx, p, r, part)));
      else FL_TRY((launch_cols<R, T, 1>(ctx, p, r, part)));
    } else {
      FL_TRY((launch_cols<R, T, 1>(ctx, p, r, part)));
    }
  }
  if (p.splits > 1) {
    fc_reduce_finish_kernel<R, T><<<fc_grid(ctx, p.nout, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(p, r);
    FL_TRY(fc_launched("reduce_finish_kernel"));
  }
  return FL_OK;
}

/* ---- full SUM/MEAN of a contiguous tensor through CUB ---- */

template <class T>
struct to_acc {
  FC_HD typename fc_num<T>::acc operator()(T v) const { return fc_num<T>::load(v); }
};

template <class T>
__global__ void cub_finish_kernel(const typename fc_num<T>::acc *sum, T *out, int64_t n, bool mean) {
  fc_arith_red<T> r{false, mean};
  r.write(*sum, n, out, nullptr);
}

template <class T>
fl_status cub_sum(fc_context *ctx, const T *x, int64_t n, T *out, bool mean) {
  using C = typename fc_num<T>::acc;
  size_t bytes = 0;
  C *res = nullptr;
  auto run = [&](void *tmp) -> cudaError_t {
    if constexpr (std::is_same<T, C>::value) {
      return cub::DeviceReduce::Sum(tmp, bytes, x, res, n, fc_stream(ctx));
    } else {
      return cub::DeviceReduce::Sum(tmp, bytes, thrust::make_transform_iterator(x, to_acc<T>()), res, n,
                                    fc_stream(ctx));
    }
  };
  FC_CUDA(run(nullptr)); /* asks for the temp size only */
  size_t head = 256;     /* the sum itself, ahead of CUB's (aligned) temp storage */
  fc_scratch tmp;
  FL_TRY(tmp.get(ctx, head + bytes));
  res = (C *)tmp.ptr;
  FC_CUDA(run((char *)tmp.ptr + head));
  cub_finish_kernel<T><<<1, 1, 0, fc_stream(ctx)>>>(res, out, n, mean);
  return fc_launched("cub_finish_kernel");
}

fl_status check_dtype(const char *op, const fl_tensor *t, fl_dtype want) {
  if (t->dtype == want) return FL_OK;
  fl_desc d = fl_describe(t);
  return fl_error(FL_EDTYPE, "reduce (%s): expected dtype %s, got %s", op, fl_dtype_name(want), d.s);
}

const char *reduce_name(fl_reduce_op op) {
  static const char *names[] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "var"};
  return (unsigned)op < FL_NREDUCE ? names[op] : "reduce";
}

/* ---- cumsum ---- */

/* One thread per line, walking it in order: for lines that are not unit-stride
 * (adjacent threads then read adjacent lines, which is coalesced). */
/* O: the output element type (T for floats, int64 for integers, as the
 * front-end allocates). */
template <class T, class O>
__global__ void __launch_bounds__(FC_THREADS)
    cumsum_seq_kernel(fc_iter<2> lines, int64_t nlines, int64_t L, int64_t xs, int64_t os, const T *x, O *out) {
  using C = typename fc_num<T>::acc;
  for (int64_t l = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; l < nlines; l += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    lines.offsets(l, off);
    C acc = 0;
    for (int64_t i = 0; i < L; i++) {
      acc += fc_num<T>::load(x[off[1] + i * xs]);
      out[off[0] + i * os] = fc_num<O>::make(acc);
    }
  }
}

/* One warp per unit-stride line: 32 elements at a time, a shuffle scan plus
 * the running total of the previous chunks. */
template <class T, class O>
__global__ void __launch_bounds__(FC_THREADS)
    cumsum_warp_kernel(fc_iter<2> lines, int64_t nlines, int64_t L, int64_t xs, int64_t os, const T *x, O *out) {
  using C = typename fc_num<T>::acc;
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t l = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; l < nlines; l += nwarps) {
    int64_t off[2];
    lines.offsets(l, off);
    C carry = 0;
    for (int64_t base = 0; base < L; base += 32) {
      int64_t i = base + lane;
      C v = i < L ? fc_num<T>::load(x[off[1] + i * xs]) : (C)0;
      for (int d = 1; d < 32; d <<= 1) {
        C u = fc_shfl_up(v, d);
        if (lane >= d) v += u;
      }
      v += carry;
      if (i < L) out[off[0] + i * os] = fc_num<O>::make(v);
      carry = fc_shfl_idx(v, 31);
    }
  }
}

} // namespace

namespace fc {

fl_status reduce_forward(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask,
                         double param, int64_t base) {
  const char *name = reduce_name(op);
  if ((unsigned)op >= FL_NREDUCE) return fl_error(FL_EINVAL, "reduce: bad op %d", (int)op);
  if (x->ndim < 32 && (mask >> x->ndim))
    return fl_error(FL_EINVAL, "reduce (%s): dim mask 0x%x names dims beyond the input's %d", name, mask, x->ndim);
  if (mask == 0) mask = x->ndim ? (uint32_t)((1ull << x->ndim) - 1) : 0; /* 0 means every dim */
  bool arg = op == FL_RARGMAX || op == FL_RARGMIN;
  bool minmax = op == FL_RMAX || op == FL_RMIN;
  bool arith = op == FL_RSUM || op == FL_RMEAN || op == FL_RPROD;
  FL_TRY(check_out_shape("output", out, x, mask));
  if (idx && minmax) {
    FL_TRY(check_out_shape("index output", idx, x, mask));
    FL_TRY(check_dtype(name, idx, FL_I64));
  } else {
    idx = nullptr;
  }
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  /* The kernels write i64 for argmax/argmin and integer sums/products, x's
   * dtype otherwise; any other output dtype gets a scratch result and a cast. */
  fl_dtype want = arg || (arith && !fl_dtype_is_float(x->dtype)) ? FL_I64 : x->dtype;
  fc_result_as res;
  FL_TRY(res.init(ctx, out, want));
  fl_tensor *dst = res.dst;
  const fl_tensor *val_t = arg ? nullptr : dst;
  const fl_tensor *idx_t = arg ? dst : idx;
  red_plan pl;
  FL_TRY(make_plan(x, val_t, idx_t, mask, arg || minmax, &pl));
  if (pl.nout == 0) return FL_OK;
  int64_t *ip = idx_t ? (int64_t *)fc_base(idx_t) : nullptr;
  void *vp = val_t ? (void *)fc_base(val_t) : nullptr;
  fl_status st;
  if (arg || minmax) {
    st = fc_dispatch(x->dtype, name, [&](auto tag) {
      using T = typename decltype(tag)::type;
      fc_arg_red<T> r{op == FL_RMAX || op == FL_RARGMAX, base};
      return run_reduce<fc_arg_red<T>, T, 1>(ctx, pl, (const T *)fc_base(x), vp, ip, r);
    });
  } else if (op == FL_RVAR) {
    st = fc_dispatch<FC_M_FLOAT>(x->dtype, name, [&](auto tag) {
      using T = typename decltype(tag)::type;
      fc_var_red<T> r{(typename fc_num<T>::acc)param};
      return run_reduce<fc_var_red<T>, T, 1>(ctx, pl, (const T *)fc_base(x), vp, nullptr, r);
    });
  } else {
    bool full = pl.nout == 1 && pl.red.nd == 1 && pl.red.stride[0][0] == 1 && pl.nred > 0;
    st = fc_dispatch(x->dtype, name, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T *xp = (const T *)fc_base(x);
      constexpr bool is_float = std::is_floating_point<typename fc_num<T>::acc>::value;
      if constexpr (is_float) { /* integers: the split rows kernel (CUB instances cost compile time) */
        if (full && op != FL_RPROD) return cub_sum<T>(ctx, xp, pl.nred, (T *)vp, op == FL_RMEAN);
      }
      fc_arith_red<T> r{op == FL_RPROD, op == FL_RMEAN};
      constexpr int V = is_float ? fc_vec_width<T>() : 1;
      return run_reduce<fc_arith_red<T>, T, V>(ctx, pl, xp, vp, nullptr, r);
    });
  }
  if (st == FL_OK && dst != out) st = copy_forward(out, dst);
  return st;
}

fl_status cumsum_forward(fl_tensor *out, const fl_tensor *x, int dim) {
  if (dim < 0 || dim >= (x->ndim ? x->ndim : 1)) return fl_error(FL_EINVAL, "cumsum: bad dim %d", dim);
  if (!fl_same_shape(out, x)) {
    fl_desc a = fl_describe(out), b = fl_describe(x);
    return fl_error(FL_ESHAPE, "cumsum: output %s must match input %s", a.s, b.s);
  }
  fc_context *ctx;
  FL_TRY(fc_context_of(out, &ctx));
  if (fl_numel(x) == 0) return FL_OK;
  /* floats keep their dtype, integers sum in (and write) i64; another output
   * dtype gets a scratch result and a cast */
  fl_dtype want = fl_dtype_is_float(x->dtype) ? x->dtype : FL_I64;
  fc_result_as res;
  FL_TRY(res.init(ctx, out, want));
  fl_tensor *dst = res.dst;
  int64_t L = x->ndim ? x->shape[dim] : 1;
  int64_t xs = x->ndim ? x->stride[dim] : 0, os = x->ndim ? dst->stride[dim] : 0;
  int64_t shape[FL_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) shape[d] = d == dim ? 1 : x->shape[d];
  fc_iter<2> lines;
  const int64_t *st[2] = {dst->stride, x->stride};
  fc_iter_init<2>(&lines, x->ndim, shape, st, true);
  int64_t nlines = fl_numel(x) / L;
  fl_status s = fc_dispatch(x->dtype, "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using O = std::conditional_t<std::is_floating_point<typename fc_num<T>::acc>::value, T, int64_t>;
    const T *xp = (const T *)fc_base(x);
    O *o = (O *)fc_base(dst);
    if (xs == 1 && L > 1) {
      cumsum_warp_kernel<T, O><<<fc_grid(ctx, nlines * 32, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(lines, nlines,
                                                                                                       L, xs, os, xp, o);
    } else {
      cumsum_seq_kernel<T, O><<<fc_grid(ctx, nlines, FC_THREADS), FC_THREADS, 0, fc_stream(ctx)>>>(lines, nlines, L, xs,
                                                                                                os, xp, o);
    }
    return fc_launched("cumsum_kernel");
  });
  if (s == FL_OK && dst != out) s = copy_forward(out, dst);
  return s;
}

} // namespace fc
