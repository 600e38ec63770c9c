/* cat, stack and flip: ops that build a new tensor from pieces of others. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
  int dim;
} cat_ctx;

/* each input's gradient is its slice of g along dim */
static fl_status cat_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  int dim = ((const cat_ctx *)n->ctx)->dim;
  fl_status st = FL_OK;
  int64_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    int64_t len = n->in[i].shape[dim];
    if (n->in[i].node) FL_CHECK(fl_narrow(gout[0], dim, off, len, &gin[i]));
    off += len;
  }
done:
  return st;
}

fl_status fl_cat(int n, fl_tensor *const *ts, int dim, fl_tensor **out) {
  if (n < 1) return fl_error(FL_EINVAL, "cat: expected a non-empty list of tensors");
  const fl_tensor *ref = ts[0];
  int d;
  if (ref->ndim == 0) return fl_error(FL_ESHAPE, "cat: zero-dimensional tensor (element %lld) cannot be concatenated", (long long)fl_mdim(0));
  FL_TRY(fl_norm_dim("cat", ref, dim, 0, &d));
  fl_dtype dt = ref->dtype;
  int64_t shape[FL_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof shape);
  shape[d] = 0;
  for (int i = 0; i < n; i++) {
    const fl_tensor *t = ts[i];
    FL_TRY(fl_check_same_device("cat", ref, t));
    bool ok = t->ndim == ref->ndim;
    for (int k = 0; ok && k < t->ndim; k++) ok = k == d || t->shape[k] == ref->shape[k];
    if (!ok) {
      fl_desc a = fl_describe(ref), b = fl_describe(t);
      return fl_error(FL_ESHAPE, "cat: element %lld %s does not match element %lld %s outside dim %lld", (long long)fl_mdim(i), b.s,
                      (long long)fl_mdim(0), a.s, (long long)fl_mdim(d));
    }
    if (fl_add_overflows(shape[d], t->shape[d], &shape[d]))
      return fl_error(FL_ESHAPE, "cat: the sizes along dim %lld add up to more than int64 holds", (long long)fl_mdim(d));
    dt = fl_promote(dt, t->dtype);
  }
  fl_tensor *r = NULL, *part = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(dt, ref->storage->device, ref->ndim, shape, &r));
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    part = fl_alias(r, r->ndim, ts[i]->shape, r->stride, off * r->stride[d]);
    if (!part) FL_CHECK(fl_error(FL_ENOMEM, "cat: out of host memory"));
    if (fl_numel(part)) FL_CHECK(fl_copy_kernel("cat", part, ts[i]));
    fl_release(part);
    part = NULL;
    off += ts[i]->shape[d];
  }
  fl_node *node = NULL;
  if (fl_dtype_is_float(dt)) FL_CHECK(fl_record("CatBackward", cat_backward, n, (const fl_tensor *const *)ts, r, &node));
  cat_ctx *c;
  if (node) {
    FL_CHECK(fl_node_ctx(node, sizeof *c, NULL, (void **)&c));
    c->dim = d;
  }
  *out = r;
  r = NULL;
done:
  fl_release(part);
  fl_release(r);
  return st;
}

fl_status fl_stack(int n, fl_tensor *const *ts, int dim, fl_tensor **out) {
  if (n < 1) return fl_error(FL_EINVAL, "stack: expected a non-empty list of tensors");
  uint64_t mark = fl_node_mark();
  fl_tensor **us = calloc((size_t)n, sizeof *us);
  if (!us) return fl_error(FL_ENOMEM, "stack: out of host memory");
  fl_status st = FL_OK;
  for (int i = 0; i < n && st == FL_OK; i++) {
    if (!fl_same_shape(ts[i], ts[0])) {
      fl_desc a = fl_describe(ts[0]), b = fl_describe(ts[i]);
      st = fl_error(FL_ESHAPE, "stack: element %lld %s differs in shape from element %lld %s", (long long)fl_mdim(i), b.s,
                   (long long)fl_mdim(0), a.s);
    } else {
      st = fl_unsqueeze(ts[i], dim, &us[i]);
    }
  }
  if (st == FL_OK) st = fl_cat(n, us, dim, out);
  for (int i = 0; i < n; i++) fl_release(us[i]);
  free(us);
  return fl_name_composite(fl_error_context(st, "stack"), mark, "StackBackward", out);
}

typedef struct {
  int ndims;
  int dims[FL_MAX_DIMS];
} flip_ctx;

static fl_status flip_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const flip_ctx *c = n->ctx;
  return fl_flip(gout[0], c->ndims, c->dims, &gin[0]);
}

fl_status fl_flip(const fl_tensor *t, int nd, const int *dims, fl_tensor **out) {
  int64_t stride[FL_MAX_DIMS];
  int64_t offset = t->offset;
  int norm[FL_MAX_DIMS];
  memcpy(stride, t->stride, sizeof stride);
  bool seen[FL_MAX_DIMS] = {false};
  for (int i = 0; i < nd; i++) {
    int d;
    FL_TRY(fl_norm_dim("flip", t, dims[i], 0, &d));
    if (seen[d]) return fl_error(FL_EINVAL, "flip: dim %lld repeated", (long long)fl_mdim(d));
    seen[d] = true;
    norm[i] = d;
    if (t->shape[d] > 0) offset += (t->shape[d] - 1) * t->stride[d];
    stride[d] = -t->stride[d];
  }
  /* a negative-stride view, then a contiguous copy (flip returns a new tensor) */
  fl_tensor *v = fl_alias(t, t->ndim, t->shape, stride, offset), *r = NULL;
  fl_status st = FL_OK;
  if (!v) FL_CHECK(fl_error(FL_ENOMEM, "flip: out of host memory"));
  FL_CHECK(fl_tensor_new(t->dtype, t->storage->device, t->ndim, t->shape, &r));
  if (fl_numel(r)) FL_CHECK(fl_copy_kernel("flip", r, v));
  fl_node *n = NULL;
  if (fl_dtype_is_float(t->dtype)) FL_CHECK(fl_record("FlipBackward", flip_backward, 1, &t, r, &n));
  flip_ctx *c;
  if (n) {
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->ndims = nd;
    memcpy(c->dims, norm, sizeof(int) * (size_t)nd);
  }
  *out = r;
  r = NULL;
done:
  fl_release(v);
  fl_release(r);
  return st;
}
