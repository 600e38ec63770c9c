/* layer_norm, rms_norm and group_norm: one front-end over one pair of backend entries. Each op is viewed as
 * x [n, groups, cpg, inner] with statistics per row (n, group) over cols = cpg * inner elements and the affine
 * weight/bias per channel (group, c): layer/rms norm is groups = inner = 1 (rows = leading numel, the columns are
 * the channels), group_norm is x [N, C, *] with cpg = C / groups and inner = the spatial numel. The forward saves
 * mean and rstd ([rows], f32; f64 for f64 x) and the backward is one fused kernel call (dx, dw, db), recorded as
 * one node per op. The backward is not itself differentiable (no double backward). */
#include "internal.h"
#include <math.h>

typedef struct {
  int64_t groups, inner;
  bool rms, has_w, has_b;
} norm_ctx;

/* A contiguous tensor with x's data (a new reference). */
static fl_status dense(const fl_tensor *x, fl_tensor **out) {
  FL_TRY(fl_contiguous(x, out));
  if (fl_is_contiguous(*out)) return FL_OK;
  fl_tensor *c;
  fl_status st = fl_contiguous(*out, &c);
  fl_release(*out);
  *out = st == FL_OK ? c : NULL;
  return st;
}

static fl_dtype stat_dtype(fl_dtype x) { return x == FL_F64 ? FL_F64 : FL_F32; }

static fl_status norm_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const norm_ctx *c = n->ctx;
  fl_tensor *x, *w = NULL, *mean = NULL, *rstd, *dy = NULL, *g[3] = {NULL, NULL, NULL};
  fl_status st = FL_OK;
  int k = 0;
  FL_CHECK(fl_node_saved(n, k++, &x));
  if (c->has_w) FL_CHECK(fl_node_saved(n, k++, &w));
  if (!c->rms) FL_CHECK(fl_node_saved(n, k++, &mean));
  FL_CHECK(fl_node_saved(n, k++, &rstd));
  FL_CHECK(dense(gout[0], &dy));
  if (dy->dtype != x->dtype) { /* a gradient of another dtype (a hook's): the kernel reads x's */
    fl_tensor *t;
    FL_CHECK(fl_cast(dy, x->dtype, &t));
    fl_release(dy);
    dy = t;
  }
  /* edges in recording order: x, then w and b when present; a NULL edge node needs no gradient */
  int e = 0, ew = c->has_w ? 1 : -1, eb = c->has_b ? 1 + c->has_w : -1;
  fl_device dev = x->storage->device;
  if (n->in[e].node) FL_CHECK(fl_tensor_new(x->dtype, dev, x->ndim, x->shape, &g[0]));
  if (ew >= 0 && n->in[ew].node) FL_CHECK(fl_tensor_new(n->in[ew].dtype, dev, w->ndim, w->shape, &g[1]));
  if (eb >= 0 && n->in[eb].node) FL_CHECK(fl_tensor_new(n->in[eb].dtype, dev, n->in[eb].ndim, n->in[eb].shape, &g[2]));
  if (fl_numel(x) == 0) { /* no rows: the parameter gradients are sums over nothing */
    if (g[1]) FL_CHECK(fl_fill_(g[1], 0));
    if (g[2]) FL_CHECK(fl_fill_(g[2], 0));
  } else if (g[0] || g[1] || g[2]) {
    const fl_backend *be;
    const char *name = n->name;
    /* x and dy first: the outputs are each optional, and the dispatch finds the device from ts[0] */
    FL_CHECK(fl_dispatch(name, FL_OP_NORM_BACKWARD, 0, 8, (const fl_tensor *const[]){x, dy, g[0], g[1], g[2], w, mean, rstd},
                         &be));
    FL_CHECK(fl_error_context(be->norm_backward(g[0], g[1], g[2], dy, x, w, mean, rstd, c->groups, c->inner), name));
  }
  gin[e] = g[0], g[0] = NULL;
  if (ew >= 0) gin[ew] = g[1], g[1] = NULL;
  if (eb >= 0) gin[eb] = g[2], g[2] = NULL;
done:
  fl_release(dy), fl_release(g[0]), fl_release(g[1]), fl_release(g[2]);
  return st;
}

/* w or b: contiguous, on x's device, of x's dtype or f32 (with a half x), shaped like the affine shape. */
static fl_status check_param(const char *op, const char *what, const fl_tensor *x, const fl_tensor *p, int nd,
                             const int64_t *shape) {
  if (!fl_device_eq(p->storage->device, x->storage->device))
    return fl_error(FL_EDEVICE, "%s: %s %s is not on the input's device (input %s)", op, what, fl_describe(p).s, fl_describe(x).s);
  bool half = x->dtype == FL_F16 || x->dtype == FL_BF16;
  if (p->dtype != x->dtype && !(half && p->dtype == FL_F32))
    return fl_error(FL_EDTYPE, "%s: %s %s must have the input's dtype%s (input %s)", op, what, fl_describe(p).s,
                    half ? " or f32" : "", fl_describe(x).s);
  bool same = p->ndim == nd;
  for (int d = 0; same && d < nd; d++) same = p->shape[d] == shape[d];
  if (!same) {
    char buf[128];
    return fl_error(FL_ESHAPE, "%s: %s %s must have shape %s (input %s)", op, what, fl_describe(p).s,
                    fl_dims_str(nd, shape, buf, sizeof buf), fl_describe(x).s);
  }
  return FL_OK;
}

static const char *grad_name(const char *op) {
  return op[0] == 'l' ? "NativeLayerNormBackward" : op[0] == 'g' ? "NativeGroupNormBackward" : "RmsNormBackward";
}

/* The common part: x checked for dtype and eps here, shapes by the callers (pnd/pshape: the affine shape). */
static fl_status norm_impl(const char *op, const fl_tensor *x, int64_t groups, int64_t inner, int64_t rows,
                           int pnd, const int64_t *pshape, const fl_tensor *w, const fl_tensor *b, double eps, bool rms,
                           fl_tensor **out) {
  FL_AUTOCAST(FL_AC_WIDEN, 3, ((const fl_tensor *const[]){x, w, b}),
              norm_impl(op, ac[0], groups, inner, rows, pnd, pshape, ac[1], ac[2], eps, rms, out));
  if (!fl_dtype_is_float(x->dtype))
    return fl_error(FL_EDTYPE, "%s: input %s must have a float dtype", op, fl_describe(x).s);
  if (!(eps >= 0) || isinf(eps)) return fl_error(FL_EINVAL, "%s: eps must be a finite number >= 0, got %g", op, eps);
  if (w) FL_TRY(check_param(op, "weight", x, w, pnd, pshape));
  if (b) FL_TRY(check_param(op, "bias", x, b, pnd, pshape));
  fl_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *rstd = NULL;
  fl_status st = FL_OK;
  fl_device dev = x->storage->device;
  FL_CHECK(dense(x, &xc));
  if (w) FL_CHECK(dense(w, &wc));
  if (b) FL_CHECK(dense(b, &bc));
  FL_CHECK(fl_tensor_new(x->dtype, dev, x->ndim, x->shape, &y));
  if (!rms) FL_CHECK(fl_tensor_new(stat_dtype(x->dtype), dev, 1, &rows, &mean));
  FL_CHECK(fl_tensor_new(stat_dtype(x->dtype), dev, 1, &rows, &rstd));
  if (fl_numel(x)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(op, FL_OP_NORM_FORWARD, 0, 6, (const fl_tensor *const[]){y, xc, wc, bc, mean, rstd}, &be));
    FL_CHECK(fl_error_context(be->norm_forward(y, mean, rstd, xc, wc, bc, groups, inner, eps), op));
  }
  fl_node *n;
  const fl_tensor *ins[3];
  int nin = 0;
  ins[nin++] = xc;
  if (wc) ins[nin++] = wc;
  if (bc) ins[nin++] = bc;
  FL_CHECK(fl_record(grad_name(op), norm_backward, nin, ins, y, &n));
  if (n) {
    norm_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    *c = (norm_ctx){groups, inner, rms, wc != NULL, bc != NULL};
    FL_CHECK(fl_node_save(n, xc));
    if (wc) FL_CHECK(fl_node_save(n, wc));
    if (!rms) FL_CHECK(fl_node_save(n, mean));
    FL_CHECK(fl_node_save(n, rstd));
  }
  *out = y;
  y = NULL;
done:
  fl_release(xc), fl_release(wc), fl_release(bc), fl_release(y), fl_release(mean), fl_release(rstd);
  return st;
}

/* layer/rms norm: normalized_shape must be x's trailing dims. */
static fl_status trailing(const char *op, const fl_tensor *x, int nshape, const int64_t *shape, int64_t *rows) {
  bool ok = nshape >= 1 && nshape <= x->ndim && shape;
  for (int d = 0; ok && d < nshape; d++) ok = shape[d] == x->shape[x->ndim - nshape + d];
  if (!ok) {
    char buf[128];
    fl_desc dx = fl_describe(x);
    if (nshape < 1 || !shape) return fl_error(FL_ESHAPE, "%s: normalized_shape must have at least one dim", op);
    return fl_error(FL_ESHAPE, "%s: normalized_shape %s does not match the trailing dims of input %s", op,
                    fl_dims_str(nshape, shape, buf, sizeof buf), dx.s);
  }
  *rows = 1;
  for (int d = 0; d < x->ndim - nshape; d++) *rows *= x->shape[d];
  return FL_OK;
}

fl_status fl_layer_norm(const fl_tensor *x, int nshape, const int64_t *normalized_shape, const fl_tensor *w,
                        const fl_tensor *b, double eps, fl_tensor **out) {
  int64_t rows = 0;
  FL_TRY(trailing("layer_norm", x, nshape, normalized_shape, &rows));
  return norm_impl("layer_norm", x, 1, 1, rows, nshape, normalized_shape, w, b, eps, false, out);
}

fl_status fl_rms_norm(const fl_tensor *x, int nshape, const int64_t *normalized_shape, const fl_tensor *w, double eps,
                      fl_tensor **out) {
  int64_t rows = 0;
  FL_TRY(trailing("rms_norm", x, nshape, normalized_shape, &rows));
  return norm_impl("rms_norm", x, 1, 1, rows, nshape, normalized_shape, w, NULL, eps, true, out);
}

fl_status fl_group_norm(const fl_tensor *x, int64_t groups, const fl_tensor *w, const fl_tensor *b, double eps,
                        fl_tensor **out) {
  if (x->ndim < 2)
    return fl_error(FL_ESHAPE, "group_norm: input %s must have at least 2 dims [N, C, *]", fl_describe(x).s);
  int64_t c = x->shape[1];
  if (groups < 1 || c % groups != 0)
    return fl_error(FL_ESHAPE, "group_norm: groups %lld does not divide the %lld channels (dim %lld) of input %s",
                    (long long)groups, (long long)c, (long long)fl_mdim(1), fl_describe(x).s);
  int64_t inner = 1, rows;
  for (int d = 2; d < x->ndim; d++) inner *= x->shape[d]; /* no overflow: x's sizes passed fl_check_shape */
  /* groups divides c, so it is bounded by c -- except for c == 0, where any count divides */
  if (fl_mul_overflows(x->shape[0], groups, &rows))
    return fl_error(FL_ESHAPE, "group_norm: %lld groups of input %s overflow the row count", (long long)groups, fl_describe(x).s);
  return norm_impl("group_norm", x, groups, inner, rows, 1, &c, w, b, eps, false, out);
}
