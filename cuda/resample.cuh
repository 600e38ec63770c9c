/* What the pooling, interpolation and padding kernels share (pool.cu,
 * resize.cu, pad.cu): the [planes, D, H, W] position of a flat index, the
 * compute-type forms of core/pool_geom.h's interpolation functions, and the
 * contract check of their launchers. */
#ifndef FL_CUDA_RESAMPLE_CUH
#define FL_CUDA_RESAMPLE_CUH

#include "context.cuh"
#include "math.cuh"

/* e -> (plane, c[0..2]) for a [planes, s0, s1, s2] contiguous layout (32-bit divisions where they fit). */
FC_DEV int64_t fc_split3(int64_t e, const int64_t *s, int64_t *c) {
  int64_t q = fl_pg_div(e, s[2]);
  c[2] = e - q * s[2];
  e = q, q = fl_pg_div(e, s[1]);
  c[1] = e - q * s[1];
  e = q, q = fl_pg_div(e, s[0]);
  c[0] = e - q * s[0];
  return q;
}

template <class C> FC_DEV C fc_interp_weight(const fl_interp_geom *g, int d, int64_t o, int64_t i);
template <> FC_DEV float fc_interp_weight<float>(const fl_interp_geom *g, int d, int64_t o, int64_t i) {
  return fl_interp_weight_f(g, d, o, i);
}
template <> FC_DEV double fc_interp_weight<double>(const fl_interp_geom *g, int d, int64_t o, int64_t i) {
  return fl_interp_weight_d(g, d, o, i);
}
template <class C> FC_DEV void fc_linear_src(const fl_interp_geom *g, int d, int64_t o, int64_t *i0, int64_t *i1, C *l1);
template <> FC_DEV void fc_linear_src<float>(const fl_interp_geom *g, int d, int64_t o, int64_t *i0, int64_t *i1, float *l1) {
  fl_linear_src_f(g, d, o, i0, i1, l1);
}
template <> FC_DEV void fc_linear_src<double>(const fl_interp_geom *g, int d, int64_t o, int64_t *i0, int64_t *i1,
                                              double *l1) {
  fl_linear_src_d(g, d, o, i0, i1, l1);
}

/* The launchers' contract: every tensor given (NULLs skipped) contiguous and on out's device. */
static inline fl_status fc_resample_check(const char *op, int n, const fl_tensor *const *ts) {
  for (int i = 0; i < n; i++) {
    if (!ts[i]) continue;
    if (!fl_is_contiguous(ts[i]) || ts[i]->storage->device.index != ts[0]->storage->device.index ||
        ts[i]->storage->device.type != FL_CUDA) {
      fl_desc d = fl_describe(ts[i]);
      return fl_error(FL_EINVAL, "%s: the cuda kernel needs contiguous tensors on one device, got %s", op, d.s);
    }
  }
  return FL_OK;
}

/* The launch step of every entry: check the tensors (ts[0] the one written), find the context, and for a
 * non-empty ts[0] call launch(tag, ctx, n) with the storage type of dt (among MASK's dtypes). */
template <unsigned MASK, bool BITS = false, class Launch>
static inline fl_status fc_resample_launch(const char *op, int nts, const fl_tensor *const *ts, fl_dtype dt,
                                           Launch &&launch) {
  FL_TRY(fc_resample_check(op, nts, ts));
  fc_context *ctx;
  FL_TRY(fc_context_of(ts[0], &ctx));
  const int64_t n = fl_numel(ts[0]);
  if (n == 0) return FL_OK;
  auto call = [&](auto tag) { return launch(tag, ctx, n); };
  if constexpr (BITS) return fc_dispatch_bits(dt, op, call);
  else return fc_dispatch<MASK>(dt, op, call);
}

#endif
