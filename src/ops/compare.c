/* Value tests built from the elementwise ops: isnan, isinf, nan_to_num,
 * isclose/allclose, and the all/any reductions. Composites, so every device
 * runs them and nan_to_num is differentiable through where. */
#include "internal.h"
#include <float.h>
#include <math.h>

fl_status fl_isnan(const fl_tensor *x, fl_tensor **out) {
  return fl_error_context(fl_binary(FL_NE, x, x, out), "isnan"); /* only NaN differs from itself */
}

fl_status fl_isinf(const fl_tensor *x, fl_tensor **out) {
  fl_tensor *a = NULL;
  fl_status st = fl_unary(FL_ABS, x, &a);
  if (st == FL_OK) st = fl_binary_scalar(FL_EQ, a, INFINITY, false, out);
  fl_release(a);
  return fl_error_context(st, "isinf");
}

static double largest_finite(fl_dtype dt) {
  switch (dt) {
    case FL_F64: return DBL_MAX;
    case FL_F16: return 65504.0;
    case FL_BF16: return 3.3895313892515355e38;
    default: return FLT_MAX;
  }
}

fl_status fl_nan_to_num(const fl_tensor *x, double nan, double posinf, double neginf, fl_tensor **out) {
  if (!fl_dtype_is_float(x->dtype)) return fl_clone(x, out); /* integers hold neither */
  if (isnan(nan)) nan = 0;
  if (isnan(posinf)) posinf = largest_finite(x->dtype);
  if (isnan(neginf)) neginf = -largest_finite(x->dtype);
  fl_tensor *m = NULL, *a = NULL, *b = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_isnan(x, &m));
  FL_CHECK(fl_masked_fill(x, m, nan, &a));
  fl_release(m), m = NULL;
  FL_CHECK(fl_binary_scalar(FL_EQ, x, INFINITY, false, &m));
  FL_CHECK(fl_masked_fill(a, m, posinf, &b));
  fl_release(m), m = NULL;
  FL_CHECK(fl_binary_scalar(FL_EQ, x, -INFINITY, false, &m));
  st = fl_masked_fill(b, m, neginf, out);
done:
  fl_release(m), fl_release(a), fl_release(b);
  return fl_error_context(st, "nan_to_num");
}

/* |a - b| <= atol + rtol |b| with |a - b| finite (inf and -inf are not close, though the
 * tolerance of an infinite b is infinite), or a == b (equal infinities), or both NaN when equal_nan. */
static fl_status isclose_raw(const fl_tensor *a, const fl_tensor *b, double rtol, double atol, bool equal_nan,
                             fl_tensor **out) {
  fl_tensor *d = NULL, *ad = NULL, *ab = NULL, *tol = NULL, *tol2 = NULL, *le = NULL, *eq = NULL, *r = NULL;
  fl_tensor *na = NULL, *nb = NULL, *nn = NULL, *fin = NULL, *ok = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_binary(FL_SUB, a, b, &d));
  FL_CHECK(fl_unary(FL_ABS, d, &ad));
  FL_CHECK(fl_unary(FL_ABS, b, &ab));
  FL_CHECK(fl_binary_scalar(FL_MUL, ab, rtol, false, &tol));
  FL_CHECK(fl_binary_scalar(FL_ADD, tol, atol, false, &tol2));
  FL_CHECK(fl_binary(FL_LE, ad, tol2, &le));
  FL_CHECK(fl_binary_scalar(FL_NE, ad, INFINITY, false, &fin));
  FL_CHECK(fl_binary(FL_AND, le, fin, &ok));
  FL_CHECK(fl_binary(FL_EQ, a, b, &eq));
  FL_CHECK(fl_binary(FL_OR, ok, eq, &r));
  if (equal_nan) {
    FL_CHECK(fl_isnan(a, &na));
    FL_CHECK(fl_isnan(b, &nb));
    FL_CHECK(fl_binary(FL_AND, na, nb, &nn));
    FL_CHECK(fl_binary(FL_OR, r, nn, out));
  } else {
    *out = r, r = NULL;
  }
done:
  fl_release(d), fl_release(ad), fl_release(ab), fl_release(tol), fl_release(tol2), fl_release(le), fl_release(eq);
  fl_release(r), fl_release(na), fl_release(nb), fl_release(nn), fl_release(fin), fl_release(ok);
  return st;
}

fl_status fl_isclose(const fl_tensor *a, const fl_tensor *b, double rtol, double atol, bool equal_nan, fl_tensor **out) {
  if (rtol < 0 || atol < 0) return fl_error(FL_EINVAL, "isclose: rtol and atol must be non-negative, got %g and %g", rtol, atol);
  bool prev = fl_set_grad_enabled(false); /* a bool result: nothing to differentiate */
  fl_status st = isclose_raw(a, b, rtol, atol, equal_nan, out);
  fl_set_grad_enabled(prev);
  return fl_error_context(st, "isclose");
}

fl_status fl_allclose(const fl_tensor *a, const fl_tensor *b, double rtol, double atol, bool equal_nan, bool *out) {
  fl_tensor *c = NULL, *all = NULL;
  double v = 0;
  fl_status st = fl_isclose(a, b, rtol, atol, equal_nan, &c);
  if (st == FL_OK) st = fl_all(c, 0, false, &all);
  if (st == FL_OK) st = fl_item(all, &v);
  fl_release(c), fl_release(all);
  *out = v != 0;
  return fl_error_context(st, "allclose");
}

/* all: no element is zero; any: some element is non-zero (NaN counts as non-zero). */
static fl_status all_any(const char *op, const fl_tensor *x, uint32_t dims, bool keepdim, bool is_all, fl_tensor **out) {
  fl_tensor *pick = NULL, *count = NULL;
  fl_status st = FL_OK;
  bool prev = fl_set_grad_enabled(false);
  FL_CHECK(fl_binary_scalar(is_all ? FL_EQ : FL_NE, x, 0, false, &pick));
  FL_CHECK(fl_sum(pick, dims, keepdim, &count)); /* i64 count of the zeros (all) or non-zeros (any) */
  st = fl_binary_scalar(is_all ? FL_EQ : FL_GT, count, 0, false, out);
done:
  fl_set_grad_enabled(prev);
  fl_release(pick), fl_release(count);
  return fl_error_context(st, op);
}

fl_status fl_all(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return all_any("all", x, dims, keepdim, true, out);
}
fl_status fl_any(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  return all_any("any", x, dims, keepdim, false, out);
}
