/* The multi-tensor front-ends behind flame.optim: one optimizer step, the total norm of many tensors, the
 * clip scaling, the EMA lerp and a many-tensor copy. Each checks every tensor (one device, float dtypes, shapes, contiguous
 * targets), copies strided read-only operands to contiguous ones, then makes one backend call for all tensors:
 * a loop over the tensors on the CPU, a fused multi-tensor kernel on CUDA (cuda/optim.cu). Targets are written
 * in place, outside autograd; their versions are bumped so saved-tensor checks see the write. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>

/* The state dtype of a param of dtype dt: its own for f32/f64, f32 for the half types. */
static fl_dtype state_dtype(fl_dtype dt) { return dt == FL_F64 ? FL_F64 : FL_F32; }

static fl_status bad(const char *op, const char *what, int i, const fl_tensor *t, const char *want) {
  return fl_error(FL_EINVAL, "%s: %s %d (%s) %s", op, what, (int)fl_mdim(i), fl_describe(t).s, want);
}

/* A target written in place: float, contiguous, on dev (dev NULL: any), of dtype dt (FL_NDTYPES: any float). */
static fl_status check_target(const char *op, const char *what, int i, const fl_tensor *t, const fl_device *dev) {
  if (!t) return fl_error(FL_EINVAL, "%s: %s %d is missing", op, what, (int)fl_mdim(i));
  if (!fl_dtype_is_float(t->dtype)) return bad(op, what, i, t, "is not a floating-point tensor");
  if (!fl_is_contiguous(t)) return bad(op, what, i, t, "must be contiguous");
  if (dev && (t->storage->device.type != dev->type || t->storage->device.index != dev->index))
    return bad(op, what, i, t, "is on another device than the first tensor");
  return FL_OK;
}

/* t, the i-th `what`, against p, the tensor it pairs with (`of`: "parameter" in the optimizers' steps, the target
 * in the multi-tensor copies) */
static fl_status check_like(const char *op, const char *what, int i, const fl_tensor *t, const fl_tensor *p,
                            const char *of, fl_dtype dt, bool contiguous) {
  if (!t) return fl_error(FL_EINVAL, "%s: %s %d is missing", op, what, (int)fl_mdim(i));
  if (t->dtype != dt) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EDTYPE, "%s: %s %d (%s) must be %s", op, what, (int)fl_mdim(i), d.s, fl_dtype_name(dt));
  }
  if (!fl_same_shape(t, p)) {
    fl_desc d = fl_describe(t), e = fl_describe(p);
    return fl_error(FL_ESHAPE, "%s: %s %d (%s) does not match its %s (%s)", op, what, (int)fl_mdim(i), d.s, of,
                    e.s);
  }
  if (contiguous && !fl_is_contiguous(t)) return bad(op, what, i, t, "must be contiguous");
  const fl_device *dev = &p->storage->device;
  if (t->storage->device.type != dev->type || t->storage->device.index != dev->index)
    return fl_error(FL_EINVAL, "%s: %s %d (%s) is on another device than its %s", op, what, (int)fl_mdim(i),
                    fl_describe(t).s, of);
  return FL_OK;
}

/* Contiguous versions of read-only operands (new references; the same tensor where already contiguous). */
static fl_status contiguous_all(int n, const fl_tensor *const *in, fl_tensor **out) {
  for (int i = 0; i < n; i++) FL_TRY(fl_contiguous(in[i], &out[i]));
  return FL_OK;
}

static void release_all(int n, fl_tensor **ts) {
  if (!ts) return;
  for (int i = 0; i < n; i++) fl_release(ts[i]);
  free(ts);
}

static fl_status check_hypers(const char *op, const fl_optim_args *a) {
  if (!(a->lr >= 0)) return fl_error(FL_EINVAL, "%s: invalid learning rate %g", op, a->lr);
  if (!(a->weight_decay >= 0)) return fl_error(FL_EINVAL, "%s: invalid weight_decay %g", op, a->weight_decay);
  if (a->kind == FL_OPTIM_SGD) {
    if (!(a->momentum >= 0)) return fl_error(FL_EINVAL, "%s: invalid momentum %g", op, a->momentum);
    if (a->nesterov && (a->momentum <= 0 || a->dampening != 0))
      return fl_error(FL_EINVAL, "%s: nesterov momentum requires a momentum and zero dampening", op);
    return FL_OK;
  }
  if (a->kind != FL_OPTIM_ADAM) return fl_error(FL_EINVAL, "%s: unknown optimizer kind %d", op, (int)a->kind);
  if (!(a->eps >= 0)) return fl_error(FL_EINVAL, "%s: invalid epsilon %g", op, a->eps);
  if (!(a->beta1 >= 0 && a->beta1 < 1)) return fl_error(FL_EINVAL, "%s: invalid beta1 %g (not in [0, 1))", op, a->beta1);
  if (!(a->beta2 >= 0 && a->beta2 < 1)) return fl_error(FL_EINVAL, "%s: invalid beta2 %g (not in [0, 1))", op, a->beta2);
  return FL_OK;
}

/* Entry i of an optional list (NULL when the list is absent). */
static const fl_tensor *at(fl_tensor *const *list, int i) { return list ? list[i] : NULL; }

static fl_status check_step(const char *op, const fl_optim_args *a) {
  FL_TRY(check_hypers(op, a));
  const fl_device *dev = &a->params[0]->storage->device;
  bool sgd = a->kind == FL_OPTIM_SGD, mom = sgd && a->momentum != 0;
  for (int i = 0; i < a->n; i++) {
    const fl_tensor *p = a->params[i];
    FL_TRY(check_target(op, "parameter", i, p, dev));
    FL_TRY(check_like(op, "gradient", i, a->grads[i], p, "parameter", p->dtype, false));
    fl_dtype sd = state_dtype(p->dtype);
    if (mom) FL_TRY(check_like(op, "momentum buffer", i, at(a->buf1, i), p, "parameter", sd, true));
    if (sgd) continue;
    FL_TRY(check_like(op, "exp_avg", i, at(a->buf1, i), p, "parameter", sd, true));
    FL_TRY(check_like(op, "exp_avg_sq", i, at(a->buf2, i), p, "parameter", sd, true));
    if (a->amsgrad) FL_TRY(check_like(op, "max_exp_avg_sq", i, at(a->buf3, i), p, "parameter", sd, true));
    if (a->steps[i] < 1) return fl_error(FL_EINVAL, "%s: step %lld of parameter %d is not >= 1", op,
                                         (long long)a->steps[i], (int)fl_mdim(i));
  }
  return FL_OK;
}

static void bump(int n, fl_tensor *const *ts) {
  if (!ts) return;
  for (int i = 0; i < n; i++)
    if (ts[i]) fl_bump_version(ts[i]);
}

fl_status fl_optim_step(const fl_optim_args *a) {
  const char *op = a->kind == FL_OPTIM_SGD ? "sgd" : "adam";
  int n = a->n;
  if (n < 0) return fl_error(FL_EINVAL, "%s: negative tensor count %d", op, n);
  if (n == 0) return FL_OK;
  if (!a->params || !a->grads || (a->kind == FL_OPTIM_ADAM && !a->steps))
    return fl_error(FL_EINVAL, "%s: the parameter, gradient and step lists are required", op);
  FL_TRY(check_step(op, a));
  fl_tensor **g = calloc((size_t)n, sizeof *g);
  if (!g) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
  fl_status st = FL_OK;
  const fl_backend *be;
  FL_CHECK(contiguous_all(a->n, a->grads, g));
  FL_CHECK(fl_dispatch(op, FL_OP_OPTIM_STEP, 0, 2, (const fl_tensor *const[]){a->params[0], g[0]}, &be));
  fl_optim_args b = *a;
  b.grads = (const fl_tensor *const *)g;
  FL_CHECK(fl_error_context(be->optim_step(&b), op));
  bump(a->n, a->params);
  bump(a->n, a->buf1);
  if (a->kind == FL_OPTIM_ADAM) bump(a->n, a->buf2);
  if (a->amsgrad) bump(a->n, a->buf3);
done:
  release_all(a->n, g);
  return st;
}

/* Every tensor of xs: float, of xs[0]'s dtype and device. */
static fl_status check_list(const char *op, int n, const fl_tensor *const *xs, bool contiguous) {
  for (int i = 0; i < n; i++) {
    const fl_tensor *t = xs[i];
    if (!t) return fl_error(FL_EINVAL, "%s: tensor %d is missing", op, (int)fl_mdim(i));
    if (!fl_dtype_is_float(t->dtype)) return bad(op, "tensor", i, t, "is not a floating-point tensor");
    if (t->dtype != xs[0]->dtype) return bad(op, "tensor", i, t, "has another dtype than the first");
    if (contiguous && !fl_is_contiguous(t)) return bad(op, "tensor", i, t, "must be contiguous");
    const fl_device *d0 = &xs[0]->storage->device;
    if (t->storage->device.type != d0->type || t->storage->device.index != d0->index)
      return bad(op, "tensor", i, t, "is on another device than the first");
  }
  return FL_OK;
}

fl_status fl_multi_norm(int n, const fl_tensor *const *xs, double p, fl_tensor **out) {
  const char *op = "multi_norm";
  if (n < 1) return fl_error(FL_EINVAL, "%s: needs at least one tensor", op);
  if (!(p > 0)) return fl_error(FL_EINVAL, "%s: norm type must be > 0, got %g", op, p);
  FL_TRY(check_list(op, n, xs, false));
  fl_tensor **c = calloc((size_t)n, sizeof *c), *r = NULL;
  if (!c) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
  fl_status st = FL_OK;
  const fl_backend *be;
  FL_CHECK(contiguous_all(n, xs, c));
  FL_CHECK(fl_tensor_new(state_dtype(xs[0]->dtype), xs[0]->storage->device, 0, NULL, &r));
  FL_CHECK(fl_dispatch(op, FL_OP_MULTI_NORM, 0, 2, (const fl_tensor *const[]){r, c[0]}, &be));
  FL_CHECK(fl_error_context(be->multi_norm(r, n, (const fl_tensor *const *)c, p), op));
  *out = r;
  r = NULL;
done:
  release_all(n, c);
  fl_release(r);
  return st;
}

fl_status fl_multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm) {
  const char *op = "clip_grad_norm";
  if (n == 0) return FL_OK;
  if (n < 0) return fl_error(FL_EINVAL, "%s: negative tensor count %d", op, n);
  FL_TRY(check_list(op, n, (const fl_tensor *const *)xs, true));
  if (!norm || norm->ndim != 0 || !fl_dtype_is_float(norm->dtype))
    return fl_error(FL_EINVAL, "%s: the norm must be a 0-dim float tensor", op);
  const fl_device *d0 = &xs[0]->storage->device;
  if (norm->storage->device.type != d0->type || norm->storage->device.index != d0->index)
    return fl_error(FL_EDEVICE, "%s: the norm is on another device than the gradients", op);
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_MULTI_CLIP, 0, 2, (const fl_tensor *const[]){xs[0], norm}, &be));
  FL_TRY(fl_error_context(be->multi_clip(n, xs, norm, max_norm), op));
  bump(n, xs);
  return FL_OK;
}

/* dst[i] <- src[i] (FL_OP_MULTI_COPY) or dst[i] -= w (dst[i] - src[i]) (FL_OP_MULTI_LERP): the same checks, one
 * backend call. what/from name the two lists in messages. */
static fl_status pairwise(const char *op, fl_op_kind kind, const char *what, const char *from, int n,
                          fl_tensor *const *dst, const fl_tensor *const *src, double w) {
  if (n == 0) return FL_OK;
  if (n < 0) return fl_error(FL_EINVAL, "%s: negative tensor count %d", op, n);
  const fl_device *dev = &dst[0]->storage->device;
  for (int i = 0; i < n; i++) {
    FL_TRY(check_target(op, what, i, dst[i], dev));
    FL_TRY(check_like(op, from, i, src[i], dst[i], what, dst[i]->dtype, false));
  }
  fl_tensor **c = calloc((size_t)n, sizeof *c);
  if (!c) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
  fl_status st = FL_OK;
  const fl_backend *be;
  FL_CHECK(contiguous_all(n, src, c));
  FL_CHECK(fl_dispatch(op, kind, 0, 2, (const fl_tensor *const[]){dst[0], c[0]}, &be));
  if (kind == FL_OP_MULTI_COPY) FL_CHECK(fl_error_context(be->multi_copy(n, dst, (const fl_tensor *const *)c), op));
  else FL_CHECK(fl_error_context(be->multi_lerp(n, dst, (const fl_tensor *const *)c, w), op));
  bump(n, dst);
done:
  release_all(n, c);
  return st;
}

fl_status fl_multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w) {
  if (!(w >= 0 && w <= 1)) return fl_error(FL_EINVAL, "ema: weight %g not in [0, 1]", w);
  return pairwise("ema", FL_OP_MULTI_LERP, "average", "parameter", n, dst, src, w);
}

fl_status fl_multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src) {
  return pairwise("multi_copy", FL_OP_MULTI_COPY, "target", "source", n, dst, src, 0);
}
