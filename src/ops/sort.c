/* Sorting: sort, argsort, topk and randperm, over the one backend entry
 * `sort`, which sorts contiguous rows along their last dim. Indices carry a
 * base (1 from Lua) written by the kernel, so no extra pass shifts them. */
#include "autograd.h"

/* Sorts x along dim d without recording autograd: contiguous results in x's
 * shape; values may be NULL (argsort, randperm). */
static fl_status sort_rows(const char *op, const fl_tensor *x, int d, bool desc, int64_t base, fl_tensor **values,
                           fl_tensor **indices) {
  int last = x->ndim - 1;
  fl_tensor *xt = NULL, *xc = NULL, *v = NULL, *i = NULL, *tmp = NULL;
  fl_status st = FL_OK;
  bool prev = fl_set_grad_enabled(false);
  FL_CHECK(fl_transpose(x, d, last, &xt)); /* the sorted dim last, then rows in memory */
  FL_CHECK(fl_contiguous(xt, &xc));
  if (values) FL_CHECK(fl_tensor_new(x->dtype, x->storage->device, xc->ndim, xc->shape, &v));
  FL_CHECK(fl_tensor_new(FL_I64, x->storage->device, xc->ndim, xc->shape, &i));
  if (fl_numel(xc)) {
    const fl_backend *be;
    const fl_tensor *ts[2] = {i, xc}; /* values, when wanted, are the input's dtype and shape */
    FL_CHECK(fl_dispatch(op, FL_OP_SORT, 0, 2, ts, &be));
    FL_CHECK(fl_error_context(be->sort(v, i, xc, desc, base), op));
  }
  if (d != last) { /* back to x's dim order, contiguous as callers expect */
    fl_tensor **outs[2] = {&v, &i};
    for (int k = 0; k < 2; k++) {
      if (!*outs[k]) continue;
      FL_CHECK(fl_transpose(*outs[k], d, last, &tmp));
      fl_release(*outs[k]);
      *outs[k] = NULL;
      FL_CHECK(fl_contiguous(tmp, outs[k]));
      fl_release(tmp);
      tmp = NULL;
    }
  }
  if (values) *values = v, v = NULL;
  *indices = i, i = NULL;
done:
  fl_set_grad_enabled(prev);
  fl_release(xt), fl_release(xc), fl_release(v), fl_release(i), fl_release(tmp);
  return st;
}

typedef struct {
  int dim;
  int64_t base; /* of the saved indices */
} sort_ctx;

/* The values' gradient goes back to the positions the indices name; the
 * indices are not differentiable, so gout[1] is always NULL. */
static fl_status sort_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const sort_ctx *c = n->ctx;
  return gout[0] ? fl_scatter_grad(n, gout[0], c->dim, c->base, &gin[0]) : FL_OK;
}

/* A 0-dim tensor sorts as one element: through a 1-element view. */
static fl_status sort_scalar(const fl_tensor *x, bool desc, int64_t base, fl_tensor **values, fl_tensor **indices) {
  int64_t one = 1;
  fl_tensor *x1 = NULL, *v = NULL, *i = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_reshape(x, 1, &one, &x1));
  FL_CHECK(fl_sort_ex(x1, 0, desc, base, values ? &v : NULL, &i));
  if (values) FL_CHECK(fl_reshape(v, 0, NULL, values));
  if (indices) FL_CHECK(fl_reshape(i, 0, NULL, indices));
done:
  fl_release(x1), fl_release(v), fl_release(i);
  return st;
}

fl_status fl_sort_ex(const fl_tensor *x, int dim, bool descending, int64_t base, fl_tensor **values,
                     fl_tensor **indices) {
  int d;
  FL_TRY(fl_norm_dim("sort", x, dim, 0, &d));
  if (x->ndim == 0) return sort_scalar(x, descending, base, values, indices);
  fl_tensor *v = NULL, *i = NULL;
  fl_status st = FL_OK;
  FL_CHECK(sort_rows("sort", x, d, descending, base, values ? &v : NULL, &i));
  if (v && fl_dtype_is_float(x->dtype)) {
    fl_node *n;
    fl_tensor *outs[2] = {v, NULL}; /* the indices are not differentiable */
    FL_CHECK(fl_record_outputs("SortBackward", sort_backward, 1, &x, 2, outs, &n));
    if (n) {
      sort_ctx *c;
      FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
      c->dim = d, c->base = base;
      FL_CHECK(fl_node_save(n, i));
    }
  }
  if (values) *values = v, v = NULL;
  if (indices) *indices = i, i = NULL;
done:
  fl_release(v), fl_release(i);
  return st;
}

fl_status fl_sort(const fl_tensor *x, int dim, bool descending, fl_tensor **values, fl_tensor **indices) {
  return fl_sort_ex(x, dim, descending, 0, values, indices);
}

fl_status fl_argsort(const fl_tensor *x, int dim, bool descending, fl_tensor **out) {
  return fl_sort_ex(x, dim, descending, 0, NULL, out);
}

/* The first k of a full sort: O(n log n), and the narrow records autograd. */
fl_status fl_topk_ex(const fl_tensor *x, int64_t k, int dim, bool largest, int64_t base, fl_tensor **values,
                     fl_tensor **indices) {
  int d;
  FL_TRY(fl_norm_dim("topk", x, dim, 0, &d));
  int64_t size = x->ndim ? x->shape[d] : 1;
  if (k < 0 || k > size) {
    fl_desc ds = fl_describe(x);
    return fl_error(FL_EINVAL, "topk: k = %lld is out of range for dim %lld of size %lld in %s (expected 0..%lld)",
                    (long long)k, (long long)fl_mdim(d), (long long)size, ds.s, (long long)size);
  }
  fl_tensor *v = NULL, *i = NULL, *nv = NULL, *ni = NULL, *cv = NULL, *ci = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_sort_ex(x, d, largest, base, &v, &i));
  if (x->ndim == 0) {
    *values = v, *indices = i;
    return FL_OK;
  }
  FL_CHECK(fl_narrow(v, d, 0, k, &nv));
  FL_CHECK(fl_contiguous(nv, &cv));
  FL_CHECK(fl_narrow(i, d, 0, k, &ni));
  FL_CHECK(fl_contiguous(ni, &ci));
  *values = cv, *indices = ci;
  cv = ci = NULL;
done:
  fl_release(v), fl_release(i), fl_release(nv), fl_release(ni), fl_release(cv), fl_release(ci);
  return st;
}

fl_status fl_topk(const fl_tensor *x, int64_t k, int dim, bool largest, fl_tensor **values, fl_tensor **indices) {
  return fl_topk_ex(x, k, dim, largest, 0, values, indices);
}

/* An argsort of 62-bit random keys (two 31-bit draws): ties are rare, and where
 * they occur the stable sort breaks them by position on every device alike. */
fl_status fl_randperm_ex(int64_t n, int64_t base, fl_opts o, fl_tensor **out) {
  if (n < 0) return fl_error(FL_EINVAL, "randperm: n must be non-negative, got %lld", (long long)n);
  if (o.dtype == FL_BOOL || o.requires_grad)
    return fl_error(FL_EDTYPE, "randperm: expected an integer or float dtype without requires_grad, got %s%s",
                    fl_dtype_name(o.dtype), o.requires_grad ? " with requires_grad" : "");
  fl_opts ko = {FL_I64, o.device, false};
  fl_tensor *hi = NULL, *lo = NULL, *hs = NULL, *key = NULL, *p = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_randint(0, (int64_t)1 << 31, 1, &n, ko, &hi));
  FL_CHECK(fl_randint(0, (int64_t)1 << 31, 1, &n, ko, &lo));
  FL_CHECK(fl_binary_scalar(FL_MUL, hi, 2147483648.0, false, &hs));
  FL_CHECK(fl_binary(FL_ADD, hs, lo, &key));
  FL_CHECK(sort_rows("randperm", key, 0, false, base, NULL, &p));
  st = o.dtype == FL_I64 ? (*out = p, p = NULL, FL_OK) : fl_cast(p, o.dtype, out);
done:
  fl_release(hi), fl_release(lo), fl_release(hs), fl_release(key), fl_release(p);
  return st;
}

fl_status fl_randperm(int64_t n, fl_opts o, fl_tensor **out) { return fl_randperm_ex(n, 0, o, out); }
