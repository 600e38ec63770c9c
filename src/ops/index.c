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

/* index_select, gather and scatter_add remember their dim and the index's base. */
typedef struct {
  int dim;
  int64_t base;
} index_dim_ctx;

static fl_status record_index(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, fl_tensor *r,
                              int dim, const fl_tensor *ix, int64_t base) {
  fl_status st = FL_OK;
  fl_node *n;
  index_dim_ctx *c;
  FL_CHECK(fl_record(name, bw, n_in, ins, r, &n));
  if (!n) goto done;
  FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
  c->dim = dim;
  c->base = base;
  FL_CHECK(fl_node_save(n, ix));
done:
  return st;
}

fl_status fl_index_add_new(int ndim, const int64_t *shape, int dim, const fl_tensor *idx, int64_t base,
                           const fl_tensor *src, fl_tensor **out) {
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(src->dtype, src->storage->device, ndim, shape, &r));
  if (fl_numel(idx) == 0) {
    FL_CHECK(fl_zero_(r));
  } else {
    const fl_backend *be;
    FL_CHECK(fl_dispatch("index_add", FL_OP_INDEX_ADD_FRESH, 0, 3, (const fl_tensor *const[]){r, src, idx}, &be));
    FL_CHECK(fl_error_context(be->index_add_fresh(r, dim, idx, src, base), "index_add"));
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

/* the gradient rows are added back where the index picked them, into a fresh tensor (never a zero-fill first) */
static fl_status index_select_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const index_dim_ctx *c = n->ctx;
  fl_tensor *idx;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &idx));
  FL_CHECK(fl_index_add_new(n->in[0].ndim, n->in[0].shape, c->dim, idx, c->base, gout[0], &gin[0]));
done:
  return st;
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
  FL_CHECK(record_index("IndexSelectBackward", index_select_backward, 1, &x, r, d, ix, base));
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
    FL_CHECK(fl_error(FL_ESHAPE, "index_add_: source %s does not fit %s along dim %lld with index %s", b.s, a.s, (long long)fl_mdim(d), c.s));
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

typedef struct {
  int dim;
  int64_t base;
  double alpha;
} index_add_ctx;

/* index_add: the gradient passes to x unchanged, and to src as the rows the index picked. */
static fl_status index_add_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const index_add_ctx *c = n->ctx;
  fl_tensor *g = gout[0], *idx, *rows = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &idx));
  if (n->in[0].node) gin[0] = fl_retain(g);
  if (!n->in[1].node) goto done;
  FL_CHECK(fl_index_select_ex(g, c->dim, idx, c->base, &rows));
  if (c->alpha == 1) {
    gin[1] = rows;
    rows = NULL;
  } else {
    FL_CHECK(fl_binary_scalar(FL_MUL, rows, c->alpha, false, &gin[1]));
  }
done:
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
    index_add_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->dim = d, c->base = base, c->alpha = alpha;
    FL_CHECK(fl_node_save(n, ix));
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
  return fl_error(FL_ESHAPE, "%s: index %s does not fit input %s along dim %lld", op, fl_describe(idx).s, fl_describe(x).s, (long long)fl_mdim(dim));
}

static fl_status gather_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const index_dim_ctx *c = n->ctx;
  return fl_scatter_grad(n, gout[0], c->dim, c->base, &gin[0]);
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
  FL_CHECK(record_index("GatherBackward", gather_backward, 1, &x, r, d, ix, base));
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(r);
  return st;
}

/* src larger than the index: only its leading block (the index's shape) received gradient */
static fl_status pad_to_edge(const fl_edge *e, fl_tensor *gs, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_opts o = {gs->dtype, gs->storage->device, false};
  fl_tensor *z = NULL, *cur = NULL, *nx = NULL;
  FL_CHECK(fl_zeros(e->ndim, e->shape, o, &z));
  cur = fl_retain(z);
  for (int i = 0; i < e->ndim; i++) {
    FL_CHECK(fl_narrow(cur, i, 0, gs->shape[i], &nx));
    fl_release(cur);
    cur = nx;
    nx = NULL;
  }
  FL_CHECK(fl_copy_(cur, gs));
  *out = z;
  z = NULL;
done:
  fl_release(z), fl_release(cur);
  return st;
}

static fl_status scatter_add_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const index_dim_ctx *c = n->ctx;
  const fl_edge *e = &n->in[1];
  fl_tensor *g = gout[0], *idx, *gs = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &idx));
  if (n->in[0].node) gin[0] = fl_retain(g);
  if (!e->node) goto done;
  FL_CHECK(fl_gather_ex(g, c->dim, idx, c->base, &gs));
  if (e->ndim == gs->ndim && !memcmp(e->shape, gs->shape, sizeof(int64_t) * e->ndim)) gin[1] = fl_retain(gs);
  else FL_CHECK(pad_to_edge(e, gs, &gin[1]));
done:
  fl_release(gs);
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
  const fl_tensor *ins[2] = {x, cs};
  FL_CHECK(record_index("ScatterAddBackward", scatter_add_backward, 2, ins, r, d, ix, base));
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
