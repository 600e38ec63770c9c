/* Creation ops and in-place fills. */
#include "internal.h"
#include <math.h>

static fl_status finish(fl_tensor *t, fl_opts o, fl_tensor **out) {
  if (o.requires_grad) {
    fl_status st = fl_set_requires_grad(t, true);
    if (st != FL_OK) {
      fl_release(t);
      return st;
    }
  }
  *out = t;
  return FL_OK;
}

fl_status fl_empty(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  fl_tensor *t;
  FL_TRY(fl_error_context(fl_tensor_new(o.dtype, o.device, ndim, shape, &t), "empty"));
  return finish(t, o, out);
}

fl_status fl_full(int ndim, const int64_t *shape, double value, fl_opts o, fl_tensor **out) {
  fl_tensor *t;
  FL_TRY(fl_error_context(fl_tensor_new(o.dtype, o.device, ndim, shape, &t), "full"));
  fl_status st = fl_fill_(t, value);
  if (st != FL_OK) {
    fl_release(t);
    return st;
  }
  return finish(t, o, out);
}

fl_status fl_zeros(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) { return fl_full(ndim, shape, 0, o, out); }
fl_status fl_ones(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) { return fl_full(ndim, shape, 1, o, out); }
fl_status fl_scalar(double value, fl_opts o, fl_tensor **out) { return fl_full(0, NULL, value, o, out); }

fl_status fl_fill_(fl_tensor *t, double value) {
  FL_TRY(fl_check_inplace("fill_", t, NULL));
  if (fl_numel(t) == 0) return FL_OK;
  const fl_backend *be;
  FL_TRY(fl_dispatch("fill_", FL_OP_FILL, 0, 1, (const fl_tensor *const[]){t}, &be));
  FL_TRY(fl_error_context(be->fill(t, value), "fill_"));
  fl_bump_version(t);
  return FL_OK;
}

fl_status fl_zero_(fl_tensor *t) { return fl_fill_(t, 0); }

/* t[i] = start + i * step, through the backend's arange entry. */
static fl_status ramp(const char *op, fl_tensor *t, double start, double step) {
  if (fl_numel(t) == 0) return FL_OK;
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_ARANGE, 0, 1, (const fl_tensor *const[]){t}, &be));
  return fl_error_context(be->arange(t, start, step), op);
}

fl_status fl_arange(double start, double stop, double step, fl_opts o, fl_tensor **out) {
  if (step == 0 || isnan(step) || isnan(start) || isnan(stop))
    return fl_error(FL_EINVAL, "arange: step must be non-zero and bounds finite (start %g, stop %g, step %g)", start,
                    stop, step);
  double len = ceil((stop - start) / step);
  if (!(len < 0x1p63)) /* also NaN: inf - inf; the cast below would be undefined */
    return fl_error(FL_ESHAPE, "arange: [%g, %g) in steps of %g has too many elements", start, stop, step);
  int64_t n = len > 0 ? (int64_t)len : 0;
  fl_tensor *t = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(o.dtype, o.device, 1, &n, &t));
  FL_CHECK(ramp("arange", t, start, step));
  st = finish(t, o, out);
  t = NULL; /* finish took it */
done:
  fl_release(t);
  return st;
}

fl_status fl_linspace(double a, double b, int64_t n, fl_opts o, fl_tensor **out) {
  if (n < 0) return fl_error(FL_EINVAL, "linspace: number of points must be >= 0, got %lld", (long long)n);
  fl_tensor *t = NULL, *last = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(o.dtype, o.device, 1, &n, &t));
  FL_CHECK(ramp("linspace", t, a, n > 1 ? (b - a) / (double)(n - 1) : 0));
  if (n > 1) { /* the last point is b exactly, not a + (n - 1) * step rounded */
    int64_t one = 1;
    last = fl_alias(t, 1, &one, NULL, n - 1);
    if (!last) FL_CHECK(fl_error(FL_ENOMEM, "linspace: out of host memory"));
    FL_CHECK(fl_fill_(last, b));
  }
  st = finish(t, o, out);
  t = NULL; /* finish took it */
done:
  fl_release(last);
  fl_release(t);
  return st;
}

fl_status fl_eye(int64_t n, int64_t m, fl_opts o, fl_tensor **out) {
  if (n < 0 || m < 0) return fl_error(FL_EINVAL, "eye: sizes must be >= 0, got %lld x %lld", (long long)n, (long long)m);
  int64_t shape[2] = {n, m};
  fl_tensor *t;
  bool rg = o.requires_grad;
  o.requires_grad = false;
  FL_TRY(fl_zeros(2, shape, o, &t));
  int64_t k = n < m ? n : m, stride = m + 1;
  fl_tensor *diag = fl_alias(t, 1, &k, &stride, 0); /* the diagonal as a strided view */
  fl_status st = diag ? fl_fill_(diag, 1) : fl_error(FL_ENOMEM, "eye: out of host memory");
  fl_release(diag);
  if (st != FL_OK) {
    fl_release(t);
    return st;
  }
  o.requires_grad = rg;
  return finish(t, o, out);
}

static fl_status random_fill(const char *op, fl_tensor *t, fl_rand_kind kind, double a, double b) {
  int64_t n = fl_numel(t);
  if (n == 0) return FL_OK;
  uint64_t seed, offset;
  fl_rng_next((uint64_t)(n + 3) / 4, &seed, &offset);
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_RANDOM, 0, 1, (const fl_tensor *const[]){t}, &be));
  if (fl_is_contiguous(t)) return fl_error_context(be->random(t, kind, seed, offset, a, b), op);
  fl_tensor *tmp = NULL; /* a strided target gets the same numbers as a contiguous one */
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(t->dtype, t->storage->device, t->ndim, t->shape, &tmp));
  FL_CHECK(fl_error_context(be->random(tmp, kind, seed, offset, a, b), op));
  FL_CHECK(fl_copy_kernel(op, t, tmp));
done:
  fl_release(tmp);
  return st;
}

static fl_status random_new(const char *op, int ndim, const int64_t *shape, fl_opts o, fl_rand_kind kind, double a,
                            double b, fl_tensor **out) {
  if (kind != FL_RAND_INT && !fl_dtype_is_float(o.dtype))
    return fl_error(FL_EDTYPE, "%s: expected a floating-point dtype, got %s", op, fl_dtype_name(o.dtype));
  fl_tensor *t;
  FL_TRY(fl_error_context(fl_tensor_new(o.dtype, o.device, ndim, shape, &t), op));
  fl_status st = random_fill(op, t, kind, a, b);
  if (st != FL_OK) {
    fl_release(t);
    return st;
  }
  return finish(t, o, out);
}

fl_status fl_rand(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  return random_new("rand", ndim, shape, o, FL_RAND_UNIFORM, 0, 1, out);
}
fl_status fl_randn(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  return random_new("randn", ndim, shape, o, FL_RAND_NORMAL, 0, 1, out);
}
fl_status fl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  if (high <= low) return fl_error(FL_EINVAL, "randint: expected low < high, got [%lld, %lld)", (long long)low, (long long)high);
  if (o.dtype == FL_BOOL || (fl_dtype_is_float(o.dtype) && o.requires_grad))
    return fl_error(FL_EDTYPE, "randint: bad dtype %s", fl_dtype_name(o.dtype));
  /* Samples are drawn in double: every value must fit the dtype and be exact in a double. */
  int64_t lim_lo = -((int64_t)1 << 53), lim_hi = (int64_t)1 << 53;
  if (o.dtype == FL_I32) lim_lo = INT32_MIN, lim_hi = INT32_MAX;
  else if (o.dtype == FL_F16) lim_lo = -65504, lim_hi = 65504;
  if (low < lim_lo || high - 1 > lim_hi) /* high > low, so high - 1 does not overflow */
    return fl_error(FL_EINVAL, "randint: range [%lld, %lld) is beyond what %s holds exactly ([%lld, %lld])",
                    (long long)low, (long long)high, fl_dtype_name(o.dtype), (long long)lim_lo, (long long)lim_hi);
  return random_new("randint", ndim, shape, o, FL_RAND_INT, (double)low, (double)high, out);
}

fl_status fl_uniform_(fl_tensor *t, double lo, double hi) {
  FL_TRY(fl_check_inplace("uniform_", t, NULL));
  if (!fl_dtype_is_float(t->dtype)) return fl_error(FL_EDTYPE, "uniform_: expected a floating-point tensor, got %s", fl_dtype_name(t->dtype));
  FL_TRY(random_fill("uniform_", t, FL_RAND_UNIFORM, lo, hi));
  fl_bump_version(t);
  return FL_OK;
}

fl_status fl_normal_(fl_tensor *t, double mean, double std) {
  FL_TRY(fl_check_inplace("normal_", t, NULL));
  if (!fl_dtype_is_float(t->dtype)) return fl_error(FL_EDTYPE, "normal_: expected a floating-point tensor, got %s", fl_dtype_name(t->dtype));
  FL_TRY(random_fill("normal_", t, FL_RAND_NORMAL, mean, std));
  fl_bump_version(t);
  return FL_OK;
}
