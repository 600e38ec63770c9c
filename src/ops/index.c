/* Indexing: index_select, index_add_, gather, scatter_add. Index tensors are
 * i64 or i32 holding indices in [base, base + size): the kernels subtract the
 * base (1 from Lua), so no pass over the index is made here. */
#include "internal.h"
#include <string.h>

/* idx (i64 or i32) as a contiguous tensor on x's device: itself when it already is. */
static fl_status as_index(const char *op, const fl_tensor *x, const fl_tensor *idx, fl_tensor **out) {
  FL_TRY(fl_check_same_device(op, x, idx));
  if (idx->dtype != FL_I64 && idx->dtype != FL_I32) {
    fl_desc d = fl_describe(idx);
    return fl_error(FL_EDTYPE, "%s: index must be an i64 or i32 tensor, got %s", op, d.s);
  }
  return fl_contiguous(idx, out);
}

static fl_status index_select_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_tensor *idx, *z;
  FL_TRY(fl_node_saved(n, 0, &idx));
  fl_opts o = {g->dtype, g->storage->device, false};
  FL_TRY(fl_zeros(n->in[0].ndim, n->in[0].shape, o, &z));
  fl_status st = fl_index_add_ex_(z, (int)n->iarg[0], idx, n->iarg[1], g, 1.0);
  if (st != FL_OK) {
    fl_release(z);
    return st;
  }
  grads[0] = z; /* the scatter-add of the gradient rows */
  return FL_OK;
}

fl_status fl_index_select_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, fl_tensor **out) {
  int d;
  if (x->ndim == 0) return fl_error(FL_EINVAL, "index_select: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("index_select", x, dim, 0, &d));
  if (idx->ndim > 1) {
    fl_desc di = fl_describe(idx);
    return fl_error(FL_ESHAPE, "index_select: index must be 1-D, got %s", di.s);
  }
  fl_tensor *ix = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_index("index_select", x, idx, &ix));
  int64_t shape[FL_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[d] = fl_numel(ix);
  FL_CHECK(fl_tensor_new(x->dtype, x->storage->device, x->ndim, shape, &r));
  if (fl_numel(r) || fl_numel(ix)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("index_select", FL_OP_INDEX_SELECT, 0, 3, (const fl_tensor *const[]){r, x, ix}, &be));
    FL_CHECK(fl_error_context(be->index_select(r, x, d, ix, base), "index_select"));
  }
  fl_node *n;
  FL_CHECK(fl_record("IndexSelectBackward", index_select_backward, 1, &x, r, &n));
  if (n) {
    n->iarg[0] = d;
    n->iarg[1] = base;
    fl_node_save(n, ix);
  }
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(r);
  return st;
}

fl_status fl_index_add_ex_(fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                           double alpha) {
  int d;
  FL_TRY(fl_check_inplace("index_add_", x, src));
  if (x->ndim == 0) return fl_error(FL_EINVAL, "index_add_: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("index_add_", x, dim, 0, &d));
  FL_TRY(fl_check_same_device("index_add_", x, src));
  fl_tensor *ix = NULL, *cs = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_index("index_add_", x, idx, &ix));
  bool ok = src->ndim == x->ndim && idx->ndim <= 1;
  for (int i = 0; ok && i < x->ndim; i++) ok = src->shape[i] == (i == d ? fl_numel(ix) : x->shape[i]);
  if (!ok) {
    fl_desc a = fl_describe(x), b = fl_describe(src), c = fl_describe(idx);
    FL_CHECK(fl_error(FL_ESHAPE, "index_add_: source %s does not fit %s along dim %d with index %s", b.s, a.s, d, c.s));
  }
  FL_CHECK(fl_cast(src, x->dtype, &cs));
  if (fl_numel(ix)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("index_add_", FL_OP_INDEX_ADD, 0, 3, (const fl_tensor *const[]){x, cs, ix}, &be));
    FL_CHECK(fl_error_context(be->index_add(x, d, ix, cs, alpha, base), "index_add_"));
  }
  fl_bump_version(x);
done:
  fl_release(ix), fl_release(cs);
  return st;
}

/* index_add: the gradient passes to x unchanged, and to src as the rows the index picked. */
static fl_status index_add_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_tensor *idx, *rows;
  FL_TRY(fl_node_saved(n, 0, &idx));
  if (n->in[0].node) grads[0] = fl_retain(g);
  if (!n->in[1].node) return FL_OK;
  FL_TRY(fl_index_select_ex(g, (int)n->iarg[0], idx, n->iarg[1], &rows));
  if (n->darg[0] == 1) {
    grads[1] = rows;
    return FL_OK;
  }
  fl_status st = fl_binary_scalar(FL_MUL, rows, n->darg[0], false, &grads[1]);
  fl_release(rows);
  return st;
}

fl_status fl_index_add_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                          double alpha, fl_tensor **out) {
  int d;
  if (x->ndim == 0) return fl_error(FL_EINVAL, "index_add: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("index_add", x, dim, 0, &d));
  fl_tensor *ix = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_index("index_add", x, idx, &ix));
  bool prev = fl_set_grad_enabled(false); /* the clone and the in-place add are recorded as one node below */
  st = fl_clone(x, &r);
  if (st == FL_OK) st = fl_index_add_ex_(r, d, ix, base, src, alpha);
  fl_set_grad_enabled(prev);
  if (st != FL_OK) goto done;
  fl_node *n;
  const fl_tensor *ins[2] = {x, src};
  if (fl_dtype_is_float(r->dtype)) FL_CHECK(fl_record("IndexAddBackward", index_add_backward, 2, ins, r, &n));
  else n = NULL;
  if (n) {
    n->iarg[0] = d;
    n->iarg[1] = base;
    n->darg[0] = alpha;
    fl_node_save(n, ix);
  }
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(r);
  return st; /* errors from index_add_ already name the op */
}

/* idx must not exceed ref in any dim but `dim` (and not exceed src anywhere). */
static fl_status check_index_shape(const char *op, const fl_tensor *x, int dim, const fl_tensor *idx,
                                   const fl_tensor *src) {
  bool ok = idx->ndim == x->ndim && (!src || src->ndim == x->ndim);
  for (int i = 0; ok && i < x->ndim; i++) {
    if (i != dim && idx->shape[i] > x->shape[i]) ok = false;
    if (src && idx->shape[i] > src->shape[i]) ok = false;
  }
  if (ok) return FL_OK;
  fl_desc a = fl_describe(x), b = fl_describe(idx);
  return fl_error(FL_ESHAPE, "%s: index %s does not fit input %s along dim %d", op, b.s, a.s, dim);
}

static fl_status gather_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_tensor *idx, *z;
  FL_TRY(fl_node_saved(n, 0, &idx));
  fl_opts o = {g->dtype, g->storage->device, false};
  FL_TRY(fl_zeros(n->in[0].ndim, n->in[0].shape, o, &z));
  fl_status st = fl_scatter_add_ex(z, (int)n->iarg[0], idx, n->iarg[1], g, &grads[0]);
  fl_release(z);
  return st;
}

fl_status fl_gather_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, fl_tensor **out) {
  int d;
  if (x->ndim == 0) return fl_error(FL_EINVAL, "gather: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("gather", x, dim, 0, &d));
  FL_TRY(check_index_shape("gather", x, d, idx, NULL));
  fl_tensor *ix = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_index("gather", x, idx, &ix));
  FL_CHECK(fl_tensor_new(x->dtype, x->storage->device, ix->ndim, ix->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("gather", FL_OP_GATHER, 0, 3, (const fl_tensor *const[]){r, x, ix}, &be));
    FL_CHECK(fl_error_context(be->gather(r, x, d, ix, base), "gather"));
  }
  fl_node *n;
  FL_CHECK(fl_record("GatherBackward", gather_backward, 1, &x, r, &n));
  if (n) {
    n->iarg[0] = d;
    n->iarg[1] = base;
    fl_node_save(n, ix);
  }
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(r);
  return st;
}

static fl_status scatter_add_backward(fl_node *n, fl_tensor *g, fl_tensor **grads) {
  fl_tensor *idx, *gs = NULL, *z = NULL, *part = NULL;
  FL_TRY(fl_node_saved(n, 0, &idx));
  if (n->in[0].node) grads[0] = fl_retain(g);
  if (!n->in[1].node) return FL_OK;
  fl_status st = fl_gather_ex(g, (int)n->iarg[0], idx, n->iarg[1], &gs);
  fl_edge *e = &n->in[1];
  if (st == FL_OK && !(e->ndim == gs->ndim && !memcmp(e->shape, gs->shape, sizeof(int64_t) * e->ndim))) {
    /* src larger than the index: only its leading block received gradient */
    fl_opts o = {g->dtype, g->storage->device, false};
    st = fl_zeros(e->ndim, e->shape, o, &z);
    fl_tensor *cur = z ? fl_retain(z) : NULL;
    for (int i = 0; st == FL_OK && i < e->ndim; i++) {
      fl_tensor *nx;
      st = fl_narrow(cur, i, 0, gs->shape[i], &nx);
      fl_release(cur);
      cur = st == FL_OK ? nx : NULL;
    }
    if (st == FL_OK) st = fl_copy_(cur, gs);
    fl_release(cur);
    if (st == FL_OK) grads[1] = fl_retain(z);
  } else if (st == FL_OK) {
    grads[1] = fl_retain(gs);
  }
  fl_release(gs), fl_release(z), fl_release(part);
  return st;
}

fl_status fl_scatter_add_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                            fl_tensor **out) {
  int d;
  if (x->ndim == 0) return fl_error(FL_EINVAL, "scatter_add: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("scatter_add", x, dim, 0, &d));
  FL_TRY(fl_check_same_device("scatter_add", x, src));
  FL_TRY(check_index_shape("scatter_add", x, d, idx, src));
  fl_tensor *ix = NULL, *r = NULL, *cs = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_index("scatter_add", x, idx, &ix));
  FL_CHECK(fl_cast(src, x->dtype, &cs));
  bool prev = fl_set_grad_enabled(false);
  st = fl_clone(x, &r);
  fl_set_grad_enabled(prev);
  if (st != FL_OK) goto done;
  if (fl_numel(ix)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("scatter_add", FL_OP_SCATTER_ADD, 0, 3, (const fl_tensor *const[]){r, cs, ix}, &be));
    FL_CHECK(fl_error_context(be->scatter_add(r, d, ix, cs, base), "scatter_add"));
  }
  fl_node *n;
  const fl_tensor *ins[2] = {x, cs};
  FL_CHECK(fl_record("ScatterAddBackward", scatter_add_backward, 2, ins, r, &n));
  if (n) {
    n->iarg[0] = d;
    n->iarg[1] = base;
    fl_node_save(n, ix);
  }
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(r), fl_release(cs);
  return st;
}

/* The 0-based public forms. */
fl_status fl_index_select(const fl_tensor *x, int dim, const fl_tensor *idx, fl_tensor **out) {
  return fl_index_select_ex(x, dim, idx, 0, out);
}
fl_status fl_index_add_(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha) {
  return fl_index_add_ex_(x, dim, idx, 0, src, alpha);
}
fl_status fl_index_add(const fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                       fl_tensor **out) {
  return fl_index_add_ex(x, dim, idx, 0, src, alpha, out);
}
fl_status fl_gather(const fl_tensor *x, int dim, const fl_tensor *idx, fl_tensor **out) {
  return fl_gather_ex(x, dim, idx, 0, out);
}
fl_status fl_scatter_add(const fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, fl_tensor **out) {
  return fl_scatter_add_ex(x, dim, idx, 0, src, out);
}
