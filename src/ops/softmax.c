/* softmax and log_softmax along one dim. */
#include "internal.h"

typedef struct {
  int dim;
  bool log;
} softmax_ctx;

/* The backend's optional fused backward over the last dim (dropout and attention
 * family: one pass instead of four); *out stays NULL where it has none. */
static fl_status fused_backward(const fl_tensor *g, const fl_tensor *y, bool log, fl_tensor **out) {
  *out = NULL;
  if (g->dtype != y->dtype) return FL_OK;
  fl_tensor *gc = NULL, *r = NULL;
  const fl_backend *be;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(g, &gc));
  const fl_tensor *ts[3] = {gc, gc, y};
  if (!fl_is_contiguous(gc) || !fl_op_supported(FL_OP_SOFTMAX_BACKWARD, 0, 3, ts, &be)) goto done;
  fl_profile_tick("softmax_backward", gc->storage->device);
  FL_CHECK(fl_tensor_new(y->dtype, y->storage->device, y->ndim, y->shape, &r));
  FL_CHECK(fl_error_context(be->softmax_backward(r, gc, y, log), log ? "log_softmax" : "softmax"));
  *out = r;
  r = NULL;
done:
  fl_release(gc), fl_release(r);
  return st;
}

fl_status fl_softmax_backward(const fl_tensor *g, const fl_tensor *y, int dim, bool log, fl_tensor **out) {
  uint32_t mask = 1u << dim;
  fl_tensor *t = NULL, *s = NULL, *u = NULL;
  fl_status st = FL_OK;
  *out = NULL;
  if (dim == y->ndim - 1 && !fl_grad_enabled()) { /* the fused kernel where a backend has one */
    FL_CHECK(fused_backward(g, y, log, out));
    if (*out) goto done;
  }
  if (log) { /* log_softmax: g - exp(y) * sum(g) */
    FL_CHECK(fl_sum(g, mask, true, &s));
    FL_CHECK(fl_unary(FL_EXP, y, &t));
    FL_CHECK(fl_binary(FL_MUL, t, s, &u));
    FL_CHECK(fl_binary(FL_SUB, g, u, out));
  } else { /* softmax: y * (g - sum(g * y)) */
    FL_CHECK(fl_binary(FL_MUL, g, y, &t));
    FL_CHECK(fl_sum(t, mask, true, &s));
    FL_CHECK(fl_binary(FL_SUB, g, s, &u));
    FL_CHECK(fl_binary(FL_MUL, y, u, out));
  }
done:
  fl_release(t), fl_release(s), fl_release(u);
  return st;
}

static fl_status softmax_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const softmax_ctx *c = n->ctx;
  fl_tensor *y;
  FL_TRY(fl_node_saved(n, 0, &y));
  return fl_softmax_backward(gout[0], y, c->dim, c->log, &gin[0]);
}

static const char *grad_name(bool log) { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }

static fl_status softmax_impl(const char *name, const fl_tensor *x, int dim, bool log, fl_tensor **out) {
  FL_AUTOCAST(FL_AC_WIDEN, 1, ((const fl_tensor *const[]){x}), softmax_impl(name, ac[0], dim, log, out));
  int d;
  if (x->ndim == 0) { /* a reshape to [1] and back, named as the op below */
    uint64_t mark = fl_node_mark();
    int64_t one = 1;
    fl_tensor *v, *r;
    FL_TRY(fl_reshape(x, 1, &one, &v));
    fl_status st = softmax_impl(name, v, 0, log, &r);
    fl_release(v);
    FL_TRY(st);
    st = fl_reshape(r, 0, NULL, out);
    fl_release(r);
    return fl_name_composite(st, mark, grad_name(log), out);
  }
  FL_TRY(fl_norm_dim(name, x, dim, 0, &d));
  fl_tensor *xc = NULL, *r = NULL;
  fl_status st = FL_OK;
  if (!fl_dtype_is_float(x->dtype)) FL_CHECK(fl_cast(x, FL_F32, &xc));
  else FL_CHECK(fl_contiguous(x, &xc));
  if (!fl_is_contiguous(xc)) {
    fl_tensor *c;
    FL_CHECK(fl_contiguous(xc, &c));
    fl_release(xc);
    xc = c;
  }
  FL_CHECK(fl_tensor_new(xc->dtype, xc->storage->device, xc->ndim, xc->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_SOFTMAX, 0, 2, (const fl_tensor *const[]){r, xc}, &be));
    FL_CHECK(fl_error_context(be->softmax(r, xc, d, log), name));
  }
  fl_node *n;
  const fl_tensor *in = xc;
  FL_CHECK(fl_record(grad_name(log), softmax_backward, 1, &in, r, &n));
  if (n) {
    softmax_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->dim = d, c->log = log;
    FL_CHECK(fl_node_save(n, r));
  }
  *out = r;
  r = NULL;
done:
  fl_release(xc), fl_release(r);
  return st;
}

fl_status fl_softmax(const fl_tensor *x, int dim, fl_tensor **out) { return softmax_impl("softmax", x, dim, false, out); }
fl_status fl_log_softmax(const fl_tensor *x, int dim, fl_tensor **out) {
  return softmax_impl("log_softmax", x, dim, true, out);
}
