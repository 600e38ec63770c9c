/* logsumexp over dims: m + log(sum(exp(x - m))) with m the detached max, so no
 * exp overflows; an infinite max is replaced by 0 (then the result is that
 * infinity, or NaN with NaN inputs, as torch) and an empty reduction gives -inf.
 * A composite: its gradient, softmax(x) * g, comes from the ops it uses. */
#include "internal.h"
#include <math.h>

/* The max over dims (keepdim) that is safe to subtract: detached, finite, 0 when empty. */
static fl_status shift_of(const fl_tensor *x, uint32_t dims, fl_tensor **out) {
  fl_tensor *m = NULL, *a = NULL, *inf = NULL;
  fl_status st = FL_OK;
  bool prev = fl_set_grad_enabled(false);
  if (fl_numel(x) == 0) {
    int64_t shape[FL_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = (dims >> d & 1) ? 1 : x->shape[d];
    fl_opts o = {x->dtype, x->storage->device, false};
    st = fl_zeros(x->ndim, shape, o, out);
    goto done;
  }
  FL_CHECK(fl_amax(x, dims, true, &m));
  FL_CHECK(fl_unary(FL_ABS, m, &a));
  FL_CHECK(fl_binary_scalar(FL_EQ, a, INFINITY, false, &inf));
  st = fl_masked_fill(m, inf, 0, out);
done:
  fl_set_grad_enabled(prev);
  fl_release(m), fl_release(a), fl_release(inf);
  return st;
}

fl_status fl_logsumexp(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out) {
  FL_AUTOCAST(FL_AC_WIDEN, 1, ((const fl_tensor *const[]){x}), fl_logsumexp(ac[0], dims, keepdim, out));
  uint32_t all = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
  if (dims == 0) dims = all;
  if (dims & ~all) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EINVAL, "logsumexp: dims out of range for %s", d.s);
  }
  fl_tensor *xf = NULL, *m = NULL, *c = NULL, *e = NULL, *s = NULL, *l = NULL, *r = NULL;
  fl_status st = FL_OK;
  if (fl_dtype_is_float(x->dtype)) xf = fl_retain((fl_tensor *)x);
  else FL_CHECK(fl_cast(x, FL_F32, &xf)); /* integers give f32, as exp does */
  FL_CHECK(shift_of(xf, dims, &m));
  FL_CHECK(fl_binary(FL_SUB, xf, m, &c));
  FL_CHECK(fl_unary(FL_EXP, c, &e));
  FL_CHECK(fl_sum(e, dims, true, &s));
  FL_CHECK(fl_unary(FL_LOG, s, &l));
  FL_CHECK(fl_binary(FL_ADD, l, m, &r));
  if (keepdim) {
    *out = r, r = NULL;
  } else {
    int64_t shape[FL_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++)
      if (!(dims >> d & 1)) shape[nd++] = x->shape[d];
    st = fl_reshape(r, nd, shape, out);
  }
done:
  fl_release(xf), fl_release(m), fl_release(c), fl_release(e), fl_release(s), fl_release(l), fl_release(r);
  return fl_error_context(st, "logsumexp");
}
