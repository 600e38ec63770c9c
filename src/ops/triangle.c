/* tril and triu: x where a diagonal-offset mask over the last two dims holds,
 * zero elsewhere. A composite of arange, a comparison and where, so autograd
 * and every device come for free. */
#include "internal.h"

/* mask[i, j] = (j - i <= k) for the lower triangle, (j - i >= k) for the upper. */
static fl_status triangle(const char *op, const fl_tensor *x, int64_t k, bool lower, fl_tensor **out) {
  if (x->ndim < 2) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_ESHAPE, "%s: expected a tensor of at least 2 dims, got %s", op, d.s);
  }
  int64_t rows = x->shape[x->ndim - 2], cols = x->shape[x->ndim - 1], rshape[2] = {rows, 1};
  fl_opts o = {FL_I64, x->storage->device, false};
  fl_tensor *r = NULL, *rc = NULL, *c = NULL, *diff = NULL, *mask = NULL, *zero = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_arange(0, (double)rows, 1, o, &r));
  FL_CHECK(fl_reshape(r, 2, rshape, &rc));
  FL_CHECK(fl_arange(0, (double)cols, 1, o, &c));
  FL_CHECK(fl_binary(FL_SUB, c, rc, &diff));
  FL_CHECK(fl_binary_scalar(lower ? FL_LE : FL_GE, diff, (double)k, false, &mask));
  o.dtype = x->dtype;
  FL_CHECK(fl_scalar(0, o, &zero));
  st = fl_where(mask, x, zero, out);
done:
  fl_release(r), fl_release(rc), fl_release(c), fl_release(diff), fl_release(mask), fl_release(zero);
  return fl_error_context(st, op);
}

fl_status fl_tril(const fl_tensor *x, int64_t k, fl_tensor **out) { return triangle("tril", x, k, true, out); }
fl_status fl_triu(const fl_tensor *x, int64_t k, fl_tensor **out) { return triangle("triu", x, k, false, out); }
