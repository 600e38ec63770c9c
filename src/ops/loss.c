/* cross_entropy: a fused log-softmax + NLL (+ label smoothing) over the class dim, through the cross_entropy
 * entries (one kernel per row each way; formulas in core/nn_index.h). Logits [N, C, d1, ...] are brought to rows
 * [N * d1 * ..., C] (a permuted copy, recorded by autograd, when there are spatial dims); the node's output is the
 * per-row loss in f32 (f64 for f64 logits), and the reduction is ordinary ops on it, cast back to logits' dtype.
 * The class weights get no gradient (as in PyTorch); probability targets do. */
#include "internal.h"
#include <string.h>

typedef struct {
  fl_ce_args a; /* tensors refer to the node's saved ones at backward time */
} ce_ctx;

/* d loss_r / d p_c = -(1 - smoothing) w_c log_softmax(x_r)_c, times g_r: the probability target's gradient
 * (ops, not a kernel: a rare path). */
static fl_status target_grad(const fl_ce_args *a, const fl_tensor *g, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *lp = NULL, *g2 = NULL, *t1 = NULL, *t2 = NULL;
  int64_t shape[2] = {g->shape[0], 1};
  FL_CHECK(fl_log_softmax(a->logits, 1, &lp));
  FL_CHECK(fl_reshape(g, 2, shape, &g2));
  FL_CHECK(fl_binary(FL_MUL, lp, g2, &t1));
  if (a->weight) {
    FL_CHECK(fl_binary(FL_MUL, t1, a->weight, &t2));
    fl_release(t1);
    t1 = t2;
    t2 = NULL;
  }
  FL_CHECK(fl_binary_scalar(FL_MUL, t1, -(1 - a->smoothing), false, out));
done:
  fl_release(lp), fl_release(g2), fl_release(t1), fl_release(t2);
  return st;
}

static fl_status ce_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const ce_ctx *c = n->ctx;
  fl_ce_args a = c->a;
  fl_tensor *x, *t, *lse, *w = NULL, *g = NULL, *dx = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &x));
  FL_CHECK(fl_node_saved(n, 1, &t));
  FL_CHECK(fl_node_saved(n, 2, &lse));
  if (a.weight) FL_CHECK(fl_node_saved(n, 3, &w));
  a.logits = x, a.target = t, a.lse = lse, a.weight = w, a.loss = a.rw = NULL;
  FL_CHECK(fl_contiguous(gout[0], &g));
  if (n->n_in > 1 && n->in[1].node) FL_CHECK(target_grad(&a, g, &gin[1]));
  if (!n->in[0].node) goto done;
  FL_CHECK(fl_tensor_new(x->dtype, x->storage->device, 2, x->shape, &dx));
  const fl_backend *be;
  FL_CHECK(fl_dispatch("cross_entropy", FL_OP_CROSS_ENTROPY_BACKWARD, 0, 3, (const fl_tensor *const[]){dx, x, g}, &be));
  FL_CHECK(fl_error_context(be->cross_entropy_backward(&a, dx, g), "cross_entropy"));
  gin[0] = dx;
  dx = NULL;
done:
  fl_release(g), fl_release(dx);
  return st;
}

static fl_status bad(fl_status code, const char *what, const fl_tensor *x, const fl_tensor *t) {
  return fl_error(code, "cross_entropy: %s (logits %s, target %s)", what, fl_describe(x).s, fl_describe(t).s);
}

/* Logits as rows [R, C] (class dim last, contiguous), with autograd through the permute and copy. */
static fl_status as_rows(const fl_tensor *x, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *p = NULL, *cx = NULL;
  int perm[FL_MAX_DIMS], k = 0;
  perm[k++] = 0;
  for (int d = 2; d < x->ndim; d++) perm[k++] = d;
  perm[k++] = 1;
  FL_CHECK(x->ndim > 2 ? fl_permute(x, perm, &p) : (p = fl_retain((fl_tensor *)x), FL_OK));
  FL_CHECK(fl_contiguous(p, &cx));
  int64_t shape[2] = {fl_numel(x) / (x->shape[1] ? x->shape[1] : 1), x->shape[1]};
  FL_CHECK(fl_reshape(cx, 2, shape, out));
done:
  fl_release(p), fl_release(cx);
  return st;
}

static fl_status check_args(const fl_tensor *x, const fl_tensor *t, const fl_ce_opts *o, bool *probs) {
  if (!fl_dtype_is_float(x->dtype)) return bad(FL_EDTYPE, "logits must be a float tensor", x, t);
  FL_TRY(fl_check_same_device("cross_entropy", x, t));
  if (x->ndim < 2) return bad(FL_ESHAPE, "logits must be [C], [N, C] or [N, C, d1, ...]", x, t);
  if (x->shape[1] == 0) return bad(FL_ESHAPE, "logits have no classes", x, t);
  *probs = fl_dtype_is_float(t->dtype);
  if (*probs) {
    if (!fl_same_shape(x, t)) return bad(FL_ESHAPE, "probability targets must have the logits' shape", x, t);
  } else if (t->dtype == FL_I64 || t->dtype == FL_I32) {
    bool ok = t->ndim == x->ndim - 1 && t->shape[0] == x->shape[0];
    for (int d = 2; ok && d < x->ndim; d++) ok = t->shape[d - 1] == x->shape[d];
    if (!ok) return bad(FL_ESHAPE, "class-index targets must be [N, d1, ...] (the logits' shape without the class dim)", x, t);
  } else {
    return bad(FL_EDTYPE, "target must hold class indices (i64 or i32) or probabilities (float)", x, t);
  }
  if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
    return fl_error(FL_EINVAL, "cross_entropy: label_smoothing must be in [0, 1], got %g", o->label_smoothing);
  if (o->weight) {
    fl_desc dw = fl_describe(o->weight), dx = fl_describe(x);
    if (o->weight->ndim != 1 || o->weight->shape[0] != x->shape[1] || !fl_dtype_is_float(o->weight->dtype))
      return fl_error(FL_ESHAPE, "cross_entropy: weight must be a float [C] tensor for logits %s, got %s", dx.s, dw.s);
    FL_TRY(fl_check_same_device("cross_entropy", x, o->weight));
  }
  return FL_OK;
}

/* The per-row losses [R] and their weights in the mean, with the node recorded on the rows. */
static fl_status rows_loss(fl_tensor *x2, const fl_tensor *t, const fl_tensor *w, const fl_ce_opts *o,
                           fl_tensor **loss, fl_tensor **rw) {
  fl_status st = FL_OK;
  fl_tensor *t2 = NULL, *lse = NULL, *l = NULL, *r = NULL;
  fl_dtype acc = x2->dtype == FL_F64 ? FL_F64 : FL_F32;
  int64_t rows = x2->shape[0];
  if (fl_dtype_is_float(t->dtype)) FL_CHECK(as_rows(t, &t2));
  else FL_CHECK(fl_reshape(t, 1, &rows, &t2));
  fl_device dev = x2->storage->device;
  FL_CHECK(fl_tensor_new(acc, dev, 1, &rows, &l));
  FL_CHECK(fl_tensor_new(acc, dev, 1, &rows, &r));
  FL_CHECK(fl_tensor_new(acc, dev, 1, &rows, &lse));
  fl_ce_args a = {x2, t2, w, o->base, o->ignore_index, o->has_ignore, o->label_smoothing, l, lse, r};
  const fl_backend *be;
  FL_CHECK(fl_dispatch("cross_entropy", FL_OP_CROSS_ENTROPY, 0, 3, (const fl_tensor *const[]){l, x2, t2}, &be));
  FL_CHECK(be->cross_entropy(&a));
  fl_node *n;
  /* probability targets are differentiable (as in PyTorch); class indices are not */
  int nin = fl_dtype_is_float(t2->dtype) ? 2 : 1;
  FL_CHECK(fl_record("CrossEntropyBackward", ce_backward, nin, (const fl_tensor *const[]){x2, t2}, l, &n));
  if (n) {
    ce_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->a = a;
    FL_CHECK(fl_node_save(n, x2));
    FL_CHECK(fl_node_save(n, t2));
    FL_CHECK(fl_node_save(n, lse));
    if (w) FL_CHECK(fl_node_save(n, w));
  }
  *loss = l, *rw = r;
  l = r = NULL;
done:
  fl_release(t2), fl_release(lse), fl_release(l), fl_release(r);
  return st;
}

static fl_status reduce(const fl_tensor *x, const fl_tensor *t, fl_tensor *loss, fl_tensor *rw, bool probs,
                        fl_loss_reduction red, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *s = NULL, *den = NULL, *m = NULL, *shaped = NULL;
  if (red == FL_LOSS_NONE) {
    int nd = probs ? t->ndim - 1 : t->ndim;
    int64_t shape[FL_MAX_DIMS];
    for (int d = 0, k = 0; d < t->ndim; d++)
      if (!probs || d != 1) shape[k++] = t->shape[d];
    FL_CHECK(fl_reshape(loss, nd, shape, &shaped));
    FL_CHECK(fl_cast(shaped, x->dtype, out));
    goto done;
  }
  FL_CHECK(fl_sum(loss, 0, false, &s));
  if (red == FL_LOSS_SUM) {
    FL_CHECK(fl_cast(s, x->dtype, out));
  } else {
    if (probs) FL_CHECK(fl_binary_scalar(FL_DIV, s, (double)fl_numel(loss), false, &m));
    else {
      FL_CHECK(fl_sum(rw, 0, false, &den));
      FL_CHECK(fl_binary(FL_DIV, s, den, &m));
    }
    FL_CHECK(fl_cast(m, x->dtype, out));
  }
done:
  fl_release(s), fl_release(den), fl_release(m), fl_release(shaped);
  return st;
}

/* One sample: logits [C] with a 0-dim class or [C] probabilities, as a batch of one. */
static fl_status unbatched(const fl_tensor *logits, const fl_tensor *target, const fl_ce_opts *o, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *x1 = NULL, *t1 = NULL, *r1 = NULL;
  FL_CHECK(fl_unsqueeze(logits, 0, &x1));
  FL_CHECK(fl_unsqueeze(target, 0, &t1));
  FL_CHECK(fl_cross_entropy(x1, t1, o, &r1));
  if (o->reduction == FL_LOSS_NONE) FL_CHECK(fl_reshape(r1, 0, NULL, out));
  else *out = fl_retain(r1);
done:
  fl_release(x1), fl_release(t1), fl_release(r1);
  return st;
}

fl_status fl_cross_entropy(const fl_tensor *logits, const fl_tensor *target, const fl_ce_opts *o, fl_tensor **out) {
  FL_AUTOCAST(FL_AC_WIDEN, 2, ((const fl_tensor *const[]){logits, target}), fl_cross_entropy(ac[0], ac[1], o, out));
  if (logits->ndim == 1 && target->ndim == (fl_dtype_is_float(target->dtype) ? 1 : 0))
    return unbatched(logits, target, o, out);
  bool probs = false;
  FL_TRY(check_args(logits, target, o, &probs));
  uint64_t mark = fl_node_mark();
  fl_status st = FL_OK;
  fl_tensor *x2 = NULL, *w = NULL, *wc = NULL, *loss = NULL, *rw = NULL, *tc = NULL, *r = NULL;
  FL_CHECK(as_rows(logits, &x2));
  if (o->weight) {
    bool prev = fl_set_grad_enabled(false);
    st = fl_cast(o->weight, logits->dtype, &wc);
    if (st == FL_OK) st = fl_contiguous(wc, &w);
    fl_set_grad_enabled(prev);
    if (st != FL_OK) goto done;
  }
  if (probs) {
    FL_CHECK(fl_cast(target, logits->dtype, &tc));
  } else {
    tc = fl_retain((fl_tensor *)target);
  }
  FL_CHECK(rows_loss(x2, tc, w, o, &loss, &rw));
  FL_CHECK(reduce(logits, tc, loss, rw, probs, o->reduction, &r));
  *out = r;
  r = NULL;
done:
  fl_release(x2), fl_release(w), fl_release(wc), fl_release(loss), fl_release(rw), fl_release(tc), fl_release(r);
  st = fl_error_context(st, "cross_entropy");
  return st == FL_OK ? fl_name_composite(st, mark, "CrossEntropyLossBackward", out) : st;
}
