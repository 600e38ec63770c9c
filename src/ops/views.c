/* Views: new headers over the same storage, each with its backward. */
#include "internal.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- backward rules ---- */
static fl_status reshape_back(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  return fl_reshape(gout[0], n->in[0].ndim, n->in[0].shape, &gin[0]);
}
static fl_status pass_back(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) { /* expand: the engine sums */
  gin[0] = fl_retain(gout[0]);
  return FL_OK;
}

typedef struct {
  int dims[FL_MAX_DIMS]; /* normalised */
} permute_ctx;

static fl_status permute_back(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const permute_ctx *c = n->ctx;
  int inv[FL_MAX_DIMS];
  for (int i = 0; i < gout[0]->ndim; i++) inv[c->dims[i]] = i;
  return fl_permute(gout[0], inv, &gin[0]);
}

typedef struct {
  int dim;
  int64_t start, len;
  bool drop; /* select: the dim is gone from the view */
} slice_ctx;

/* narrow and select: the gradient lands in a slice of zeros */
static fl_status slice_back(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const slice_ctx *c = n->ctx;
  fl_tensor *g = gout[0], *z = NULL, *part = NULL, *gg = NULL;
  fl_status st = FL_OK;
  fl_opts o = {g->dtype, g->storage->device, false};
  FL_CHECK(fl_zeros(n->in[0].ndim, n->in[0].shape, o, &z));
  FL_CHECK(fl_narrow(z, c->dim, c->start, c->len, &part));
  if (c->drop) FL_CHECK(fl_unsqueeze(g, c->dim, &gg));
  else gg = fl_retain(g);
  FL_CHECK(fl_copy_(part, gg));
  gin[0] = z;
  z = NULL;
done:
  fl_release(z), fl_release(part), fl_release(gg);
  return st;
}

/* Wraps up a view: records its node when the base needs a gradient, with a
 * zeroed context of ctx_size bytes in *ctx (NULL when nothing was recorded). */
static fl_status make_view(const char *name, fl_backward_fn bw, const fl_tensor *t, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset, size_t ctx_size, void **ctx, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_node *n;
  char op[32]; /* the op a message names: "ExpandBackward" is expand (copied by hand: snprintf showed in profiles) */
  size_t len = 0;
  for (; name[len] && len + 1 < sizeof op; len++) op[len] = name[len];
  op[len] = 0;
  op[0] = (char)tolower((unsigned char)op[0]);
  if (strstr(op, "Backward")) *strstr(op, "Backward") = 0;
  if (ctx) *ctx = NULL;
  FL_TRY(fl_check_shape(op, ndim, shape, t->dtype));
  fl_tensor *v = fl_alias(t, ndim, shape, stride, offset);
  if (!v) FL_CHECK(fl_error(FL_ENOMEM, "%s: out of host memory", name));
  FL_CHECK(fl_record(name, bw, 1, &t, v, &n));
  if (n && ctx_size) FL_CHECK(fl_node_ctx(n, ctx_size, NULL, ctx));
  *out = v;
  v = NULL;
done:
  fl_release(v);
  return st;
}

/* PyTorch's rule for when a reshape can be a view of strided memory. */
static bool view_strides(const fl_tensor *t, int nd, const int64_t *shape, int64_t *stride) {
  if (t->ndim == 0 || fl_numel(t) == 0 || fl_is_contiguous(t)) {
    fl_contiguous_strides(nd, shape, stride);
    return true;
  }
  int vd = nd - 1;
  int64_t base = t->stride[t->ndim - 1], tn = 1, vn = 1;
  for (int td = t->ndim - 1; td >= 0; td--) {
    tn *= t->shape[td];
    if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tn * base)) {
      while (vd >= 0 && (vn < tn || shape[vd] == 1)) {
        stride[vd] = vn * base;
        vn *= shape[vd];
        vd--;
      }
      if (vn != tn) return false;
      if (td > 0) {
        base = t->stride[td - 1];
        tn = vn = 1;
      }
    }
  }
  return vd == -1;
}

/* Resolves one -1 and checks the element count. */
static fl_status infer_shape(const char *op, const fl_tensor *t, int nd, const int64_t *in, int64_t *shape) {
  int infer = -1;
  int64_t known = 1;
  char a[128], b[128];
  if (nd > FL_MAX_DIMS) return fl_error(FL_ESHAPE, "%s: at most %d dims, got %d", op, FL_MAX_DIMS, nd);
  for (int i = 0; i < nd; i++) {
    shape[i] = in[i];
    if (in[i] == -1) {
      if (infer >= 0) return fl_error(FL_ESHAPE, "%s: only one dim can be -1 in %s", op, fl_dims_str(nd, in, a, sizeof a));
      infer = i;
    } else if (in[i] < 0) {
      return fl_error(FL_ESHAPE, "%s: invalid size in shape %s", op, fl_dims_str(nd, in, a, sizeof a));
    } else if (fl_mul_overflows(known, in[i], &known)) {
      return fl_error(FL_ESHAPE, "%s: shape %s is too large (its element count overflows)", op,
                      fl_dims_str(nd, in, a, sizeof a));
    }
  }
  int64_t n = fl_numel(t);
  if (infer >= 0 && known > 0 && n % known == 0) shape[infer] = n / known;
  if ((infer >= 0 && (known == 0 || n % known)) || fl_shape_numel(nd, shape) != n)
    return fl_error(FL_ESHAPE, "%s: shape %s is invalid for input of shape %s (%lld elements)", op,
                    fl_dims_str(nd, in, a, sizeof a), fl_shape_str(t, b, sizeof b), (long long)n);
  return FL_OK;
}

fl_status fl_view(const fl_tensor *t, int nd, const int64_t *in, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  FL_TRY(infer_shape("view", t, nd, in, shape));
  if (!view_strides(t, nd, shape, stride)) {
    fl_desc d = fl_describe(t);
    char b[128];
    return fl_error(FL_ESHAPE, "view: %s is not contiguous enough to view as %s (use reshape)", d.s,
                    fl_dims_str(nd, shape, b, sizeof b));
  }
  return make_view("ViewBackward", reshape_back, t, nd, shape, stride, t->offset, 0, NULL, out);
}

fl_status fl_reshape(const fl_tensor *t, int nd, const int64_t *in, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  FL_TRY(infer_shape("reshape", t, nd, in, shape));
  if (view_strides(t, nd, shape, stride))
    return make_view("ReshapeBackward", reshape_back, t, nd, shape, stride, t->offset, 0, NULL, out);
  uint64_t mark = fl_node_mark(); /* a clone, then a view of it */
  fl_tensor *c;
  FL_TRY(fl_clone(t, &c));
  fl_status st = fl_view(c, nd, shape, out);
  fl_release(c);
  return fl_name_composite(st, mark, "ReshapeBackward", out);
}

static fl_status permute_view(const char *name, const fl_tensor *t, const int *dims, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  bool seen[FL_MAX_DIMS] = {false};
  for (int i = 0; i < t->ndim; i++) {
    int d;
    FL_TRY(fl_norm_dim("permute", t, dims[i], 0, &d));
    if (seen[d]) return fl_error(FL_EINVAL, "permute: dim %lld repeated", (long long)fl_mdim(d));
    seen[d] = true;
    shape[i] = t->shape[d];
    stride[i] = t->stride[d];
  }
  permute_ctx *c;
  FL_TRY(make_view(name, permute_back, t, t->ndim, shape, stride, t->offset, sizeof *c, (void **)&c, out));
  for (int i = 0; c && i < t->ndim; i++) c->dims[i] = dims[i] < 0 ? dims[i] + t->ndim : dims[i];
  return FL_OK;
}

fl_status fl_permute(const fl_tensor *t, const int *dims, fl_tensor **out) {
  return permute_view("PermuteBackward", t, dims, out);
}

fl_status fl_transpose(const fl_tensor *t, int d0, int d1, fl_tensor **out) {
  int a, b, perm[FL_MAX_DIMS] = {0};
  if (t->ndim == 0) return permute_view("TransposeBackward", t, perm, out);
  FL_TRY(fl_norm_dim("transpose", t, d0, 0, &a));
  FL_TRY(fl_norm_dim("transpose", t, d1, 0, &b));
  for (int i = 0; i < t->ndim; i++) perm[i] = i;
  perm[a] = b;
  perm[b] = a;
  return permute_view("TransposeBackward", t, perm, out);
}

static fl_status slice_view(const char *name, const fl_tensor *t, int dim, int64_t start, int64_t len, bool drop,
                            fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i == dim && drop) continue;
    shape[nd] = i == dim ? len : t->shape[i];
    stride[nd++] = t->stride[i];
  }
  slice_ctx *c;
  FL_TRY(make_view(name, slice_back, t, nd, shape, stride, t->offset + start * t->stride[dim], sizeof *c, (void **)&c,
                   out));
  if (c) c->dim = dim, c->start = start, c->len = len, c->drop = drop;
  return FL_OK;
}

fl_status fl_narrow(const fl_tensor *t, int dim, int64_t start, int64_t length, fl_tensor **out) {
  int d;
  FL_TRY(fl_norm_dim("narrow", t, dim, 0, &d));
  if (t->ndim == 0) return fl_error(FL_EINVAL, "narrow: cannot narrow a 0-dim tensor");
  if (start < 0 || length < 0 || start > t->shape[d] || length > t->shape[d] - start) { /* no start + length: it may overflow */
    fl_desc ds = fl_describe(t);
    return fl_error(FL_EINDEX, "narrow: start %lld with length %lld is out of bounds for dim %lld of size %lld (%s)",
                    (long long)fl_mdim(start), (long long)length, (long long)fl_mdim(d), (long long)t->shape[d], ds.s);
  }
  return slice_view("NarrowBackward", t, d, start, length, false, out);
}

/* split: the pieces' gradients are concatenated in one node (zeros for a piece without one), where separate
 * narrows would each fill a zeroed input-sized tensor and the engine would add them up: 3 fills, 3 copies and 2
 * adds for a q/k/v split against 3 copies (issue 12: the ops per training step). */
static fl_status split_back(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  int dim = *(const int *)n->ctx;
  fl_status st = FL_OK;
  fl_tensor **parts = calloc((size_t)n->n_out, sizeof *parts);
  if (!parts) return fl_error(FL_ENOMEM, "SplitBackward: out of host memory");
  for (int k = 0; k < n->n_out; k++) {
    const fl_node_out *o = &n->out[k];
    if (gout[k]) parts[k] = fl_retain(gout[k]);
    else FL_CHECK(fl_zeros(o->ndim, o->shape, (fl_opts){o->dtype, o->device, false}, &parts[k]));
  }
  FL_CHECK(fl_cat(n->n_out, parts, dim, &gin[0]));
done:
  for (int k = 0; k < n->n_out; k++) fl_release(parts[k]);
  free(parts);
  return st;
}

fl_status fl_split(const fl_tensor *t, int dim, int n, const int64_t *sizes, fl_tensor **outs) {
  int d;
  for (int k = 0; k < n; k++) outs[k] = NULL;
  if (t->ndim == 0) return fl_error(FL_EINVAL, "split: cannot split a 0-dim tensor");
  FL_TRY(fl_norm_dim("split", t, dim, 0, &d));
  if (n < 1) return fl_error(FL_EINVAL, "split: expected at least one piece, got %d", n);
  int64_t left = t->shape[d];
  for (int k = 0; k < n; k++) {
    if (sizes[k] < 0 || sizes[k] > left) { /* no running sum: it may overflow */
      fl_desc ds = fl_describe(t);
      return fl_error(FL_EINDEX, "split: piece %d of size %lld does not fit in dim %lld of %s", k + 1,
                      (long long)sizes[k], (long long)fl_mdim(d), ds.s);
    }
    left -= sizes[k];
  }
  if (left) {
    fl_desc ds = fl_describe(t);
    return fl_error(FL_EINDEX, "split: the pieces' sizes leave %lld of dim %lld of %s uncovered", (long long)left,
                    (long long)fl_mdim(d), ds.s);
  }
  fl_status st = FL_OK;
  int64_t shape[FL_MAX_DIMS], off = t->offset;
  memcpy(shape, t->shape, sizeof shape);
  for (int k = 0; k < n; k++) {
    shape[d] = sizes[k];
    outs[k] = fl_alias(t, t->ndim, shape, t->stride, off);
    if (!outs[k]) FL_CHECK(fl_error(FL_ENOMEM, "split: out of host memory"));
    off += sizes[k] * t->stride[d];
  }
  fl_node *node;
  FL_CHECK(fl_record_outputs("SplitBackward", split_back, 1, &t, n, outs, &node));
  if (node) {
    int *c;
    FL_CHECK(fl_node_ctx(node, sizeof *c, NULL, (void **)&c));
    *c = d;
  }
  return FL_OK;
done:
  for (int k = 0; k < n; k++) fl_release(outs[k]), outs[k] = NULL;
  return st;
}

fl_status fl_select(const fl_tensor *t, int dim, int64_t index, fl_tensor **out) {
  int d;
  if (t->ndim == 0) return fl_error(FL_EINVAL, "select: cannot index a 0-dim tensor");
  FL_TRY(fl_norm_dim("select", t, dim, 0, &d));
  int64_t given = index;
  if (index < 0) index += t->shape[d];
  if (index < 0 || index >= t->shape[d]) {
    fl_desc ds = fl_describe(t);
    return fl_error(FL_EINDEX, "select: index %lld out of range for dim %lld of size %lld (%s)", (long long)fl_mwrap(given),
                    (long long)fl_mdim(d), (long long)t->shape[d], ds.s);
  }
  return slice_view("SelectBackward", t, d, index, 1, true, out);
}

static fl_status reshaped_view(const char *name, const fl_tensor *t, int nd, const int64_t *shape, const int64_t *stride,
                               fl_tensor **out) {
  return make_view(name, reshape_back, t, nd, shape, stride, t->offset, 0, NULL, out);
}

fl_status fl_squeeze(const fl_tensor *t, int dim, fl_tensor **out) {
  int d;
  if (t->ndim == 0) return reshaped_view("SqueezeBackward", t, 0, NULL, NULL, out);
  FL_TRY(fl_norm_dim("squeeze", t, dim, 0, &d));
  if (t->shape[d] != 1) return reshaped_view("SqueezeBackward", t, t->ndim, t->shape, t->stride, out);
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++)
    if (i != d) shape[nd] = t->shape[i], stride[nd++] = t->stride[i];
  return reshaped_view("SqueezeBackward", t, nd, shape, stride, out);
}

fl_status fl_squeeze_all(const fl_tensor *t, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] != 1) shape[nd] = t->shape[i], stride[nd++] = t->stride[i];
  return reshaped_view("SqueezeBackward", t, nd, shape, stride, out);
}

fl_status fl_unsqueeze(const fl_tensor *t, int dim, fl_tensor **out) {
  int d;
  FL_TRY(fl_norm_dim("unsqueeze", t, dim, 1, &d));
  if (t->ndim >= FL_MAX_DIMS) return fl_error(FL_ESHAPE, "unsqueeze: a tensor has at most %d dims", FL_MAX_DIMS);
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  for (int i = 0, j = 0; i <= t->ndim; i++) {
    if (i == d) {
      shape[i] = 1;
      stride[i] = (d < t->ndim) ? t->stride[d] * t->shape[d] : 1;
    } else {
      shape[i] = t->shape[j];
      stride[i] = t->stride[j++];
    }
  }
  return reshaped_view("UnsqueezeBackward", t, t->ndim + 1, shape, stride, out);
}

fl_status fl_expand(const fl_tensor *t, int nd, const int64_t *in, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], stride[FL_MAX_DIMS];
  char a[128], b[128];
  if (nd < t->ndim || nd > FL_MAX_DIMS)
    return fl_error(FL_ESHAPE, "expand: cannot expand %s to %s (fewer dims)", fl_shape_str(t, a, sizeof a),
                    fl_dims_str(nd, in, b, sizeof b));
  for (int i = 0; i < nd; i++) {
    int j = i - (nd - t->ndim);
    int64_t want = in[i] == -1 && j >= 0 ? t->shape[j] : in[i];
    if (j >= 0 && t->shape[j] == want) stride[i] = t->stride[j];
    else if ((j < 0 || t->shape[j] == 1) && want >= 0) stride[i] = 0;
    else
      return fl_error(FL_ESHAPE, "expand: cannot expand %s to %s (dim %lld: %lld to %lld; only size-1 dims expand)",
                      fl_shape_str(t, a, sizeof a), fl_dims_str(nd, in, b, sizeof b), (long long)fl_mdim(i), j >= 0 ? (long long)t->shape[j] : 1LL,
                      (long long)in[i]);
    shape[i] = want;
  }
  return make_view("ExpandBackward", pass_back, t, nd, shape, stride, t->offset, 0, NULL, out);
}

fl_status fl_flatten(const fl_tensor *t, int start, int stop, fl_tensor **out) {
  if (t->ndim == 0) {
    int64_t one = 1;
    return fl_reshape(t, 1, &one, out);
  }
  int s, e;
  FL_TRY(fl_norm_dim("flatten", t, start, 0, &s));
  FL_TRY(fl_norm_dim("flatten", t, stop, 0, &e));
  if (s > e) return fl_error(FL_EINVAL, "flatten: start dim %lld is after end dim %lld", (long long)fl_mdim(s),
                                (long long)fl_mdim(e));
  int64_t shape[FL_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i > s && i <= e) shape[nd - 1] *= t->shape[i];
    else shape[nd++] = t->shape[i];
  }
  return fl_reshape(t, nd, shape, out);
}
