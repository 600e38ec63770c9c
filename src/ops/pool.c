/* max, avg and adaptive avg pooling over 1 to 3 spatial dims, with PyTorch's
 * output sizes and checks; and the steps all resampling front-ends share
 * (ops/resample.h). Kernels: the backends' pool / pool_backward entries. */
#include "resample.h"
#include <string.h>

void fl_resample_view(const fl_tensor *x, int nsp, int64_t *planes, int64_t *in) {
  *planes = 1;
  for (int d = 0; d < x->ndim - nsp; d++) *planes *= x->shape[d];
  for (int d = 0; d < FL_PG_DIMS; d++) in[d] = d < FL_PG_DIMS - nsp ? 1 : x->shape[x->ndim - FL_PG_DIMS + d];
}

int fl_resample_shape(const fl_tensor *x, int nsp, const int64_t *sp, int64_t *shape) {
  int lead = x->ndim - nsp;
  for (int d = 0; d < lead; d++) shape[d] = x->shape[d];
  for (int d = 0; d < nsp; d++) shape[lead + d] = sp[FL_PG_DIMS - nsp + d];
  return x->ndim;
}

static fl_status call_forward(const fl_backend *be, fl_op_kind kind, const void *geom, fl_tensor *out,
                              fl_tensor *idx, const fl_tensor *x) {
  switch (kind) {
    case FL_OP_POOL: return be->pool(geom, out, idx, x);
    case FL_OP_INTERP: return be->interp(geom, out, x);
    case FL_OP_PAD: return be->pad(geom, out, x);
    default: return fl_error(FL_EINVAL, "not a resampling kind");
  }
}

static fl_status call_backward(const fl_backend *be, fl_op_kind kind, const void *geom, fl_tensor *dx,
                               const fl_tensor *dy, const fl_tensor *idx) {
  switch (kind) {
    case FL_OP_POOL_BACKWARD: return be->pool_backward(geom, dx, dy, idx);
    case FL_OP_INTERP_BACKWARD: return be->interp_backward(geom, dx, dy);
    case FL_OP_PAD_BACKWARD: return be->pad_backward(geom, dx, dy);
    default: return fl_error(FL_EINVAL, "not a resampling kind");
  }
}

fl_status fl_resample_run(const char *op, fl_op_kind kind, const void *geom, const fl_tensor *x, int ndim,
                          const int64_t *shape, fl_tensor **out, fl_tensor *idx) {
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(x->dtype, x->storage->device, ndim, shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(op, kind, 0, idx ? 3 : 2, (const fl_tensor *const[]){r, x, idx}, &be));
    FL_CHECK(fl_error_context(call_forward(be, kind, geom, r, idx, x), op));
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

fl_status fl_resample_record(const char *name, fl_backward_fn bw, const fl_tensor *x, fl_tensor *r,
                             const void *geom, size_t size, fl_node **node) {
  FL_TRY(fl_record(name, bw, 1, &x, r, node));
  if (!*node) return FL_OK;
  void *c;
  FL_TRY(fl_node_ctx(*node, size, NULL, &c));
  memcpy(c, geom, size);
  return FL_OK;
}

fl_status fl_resample_grad(const char *op, fl_op_kind kind, fl_node *n, const fl_tensor *gout, const void *geom,
                           const fl_tensor *idx, fl_tensor **dx) {
  fl_tensor *g = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(gout, &g));
  FL_CHECK(fl_tensor_new(g->dtype, g->storage->device, n->in[0].ndim, n->in[0].shape, &r));
  if (fl_numel(r)) { /* every element is written: each one gathers over the outputs that read it */
    const fl_backend *be;
    FL_CHECK(fl_dispatch(op, kind, 0, idx ? 3 : 2, (const fl_tensor *const[]){r, g, idx}, &be));
    FL_CHECK(fl_error_context(call_backward(be, kind, geom, r, g, idx), op));
  }
  *dx = r;
  r = NULL;
done:
  fl_release(g), fl_release(r);
  return st;
}

/* ---- pooling ---- */
static const char *const avg_names[] = {"avg_pool1d", "avg_pool2d", "avg_pool3d"};
static const char *const max_names[] = {"max_pool1d", "max_pool2d", "max_pool3d"};
static const char *const adaptive_names[] = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"};

static const char *pool_name(const fl_pool_geom *g, int nsp) {
  const char *const *t = g->kind == FL_POOL_MAX ? max_names : g->kind == FL_POOL_AVG ? avg_names : adaptive_names;
  return t[nsp - 1];
}

static fl_status pool_grad(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const fl_pool_geom *g = n->ctx;
  fl_tensor *idx = NULL;
  if (g->kind == FL_POOL_MAX) FL_TRY(fl_node_saved(n, 0, &idx));
  return fl_resample_grad(n->name, FL_OP_POOL_BACKWARD, n, gout[0], g, idx, &gin[0]);
}

/* The input checks every pool shares: a float tensor of nsp + 1 or nsp + 2 dims, non-empty but for the batch. */
static fl_status check_input(const char *op, const fl_tensor *x, int nsp) {
  if (nsp < 1 || nsp > 3) return fl_error(FL_EINVAL, "%s: 1 to 3 spatial dims, got %d", op, nsp);
  if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
    return fl_error(FL_ESHAPE, "%s: expected a %d-d or %d-d (batched) input, got %s", op, nsp + 1, nsp + 2, fl_describe(x).s);
  if (!fl_dtype_is_float(x->dtype)) return fl_error(FL_EDTYPE, "%s: expected a float tensor, got %s", op, fl_describe(x).s);
  for (int k = x->ndim - nsp - 1; k < x->ndim; k++)
    if (x->shape[k] == 0)
      return fl_error(FL_ESHAPE, "%s: expected non-empty sizes except the batch, got %s (dim %lld is 0)", op, fl_describe(x).s,
                      (long long)fl_mdim(k));
  return FL_OK;
}

/* PyTorch's pooling_output_shape: floor (or ceil) division, and in ceil mode
 * the last window must start inside the input or its left padding. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil, bool ceil_mode) {
  int64_t num = in + 2 * p - dil * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) o--;
  return o;
}

static fl_status pool_geometry(const char *op, const fl_tensor *x, int nsp, const int64_t *kernel,
                               const int64_t *stride, const int64_t *padding, const int64_t *dilation,
                               bool ceil_mode, fl_pool_geom *g) {
  FL_TRY(check_input(op, x, nsp));
  fl_resample_view(x, nsp, &g->planes, g->in);
  for (int d = 0; d < FL_PG_DIMS; d++) g->out[d] = g->in[d], g->k[d] = g->stride[d] = g->dil[d] = 1, g->pad[d] = 0;
  for (int j = 0; j < nsp; j++) {
    int d = FL_PG_DIMS - nsp + j;
    int64_t k = kernel[j], s = stride ? stride[j] : k, p = padding ? padding[j] : 0, dil = dilation ? dilation[j] : 1;
    if (k <= 0) return fl_error(FL_EINVAL, "%s: kernel size must be positive, got %lld", op, (long long)k);
    /* bounded so that the output-size arithmetic below cannot overflow (found by the fuzzer) */
    if (k > INT32_MAX || s > INT32_MAX || p > INT32_MAX || dil > INT32_MAX)
      return fl_error(FL_EINVAL, "%s: kernel size, stride, padding and dilation must be below 2^31, got %lld, %lld, %lld, %lld",
                      op, (long long)k, (long long)s, (long long)p, (long long)dil);
    if (s <= 0) return fl_error(FL_EINVAL, "%s: stride must be positive, got %lld", op, (long long)s);
    if (dil <= 0) return fl_error(FL_EINVAL, "%s: dilation must be positive, got %lld", op, (long long)dil);
    if (p < 0 || p > k / 2)
      return fl_error(FL_EINVAL, "%s: padding %lld should be at least 0 and at most half of the kernel size %lld", op,
                      (long long)p, (long long)k);
    int64_t o = pool_out_size(g->in[d], k, s, p, dil, ceil_mode);
    if (o < 1) {
      fl_desc dx = fl_describe(x);
      return fl_error(FL_ESHAPE,
                      "%s: kernel %lld (dilation %lld) is larger than the padded input %lld (size %lld + padding "
                      "%lld on both sides) of %s: output size %lld is too small",
                      op, (long long)k, (long long)dil, (long long)(g->in[d] + 2 * p), (long long)g->in[d], (long long)p,
                      dx.s, (long long)o);
    }
    g->k[d] = k, g->stride[d] = s, g->pad[d] = p, g->dil[d] = dil, g->out[d] = o;
  }
  return FL_OK;
}

/* Runs the kernel for a checked geometry and records the node. */
static fl_status pool_run(const fl_pool_geom *geom, int nsp, const fl_tensor *x, fl_tensor **out,
                          fl_tensor **indices) {
  const char *op = pool_name(geom, nsp);
  int64_t shape[FL_MAX_DIMS];
  int nd = fl_resample_shape(x, nsp, geom->out, shape);
  fl_tensor *xc = NULL, *r = NULL, *idx = NULL;
  fl_status st = FL_OK;
  bool is_max = geom->kind == FL_POOL_MAX;
  FL_CHECK(fl_contiguous(x, &xc));
  if (is_max) FL_CHECK(fl_tensor_new(FL_I64, x->storage->device, nd, shape, &idx));
  FL_CHECK(fl_resample_run(op, FL_OP_POOL, geom, xc, nd, shape, &r, idx));
  fl_node *n;
  static const char *const grad_names[] = {"MaxPoolBackward", "AvgPoolBackward", "AdaptiveAvgPoolBackward"};
  FL_CHECK(fl_resample_record(grad_names[geom->kind], pool_grad, x, r, geom, sizeof *geom, &n));
  if (n && is_max) FL_CHECK(fl_node_save(n, idx));
  *out = r;
  r = NULL;
  if (indices) *indices = idx, idx = NULL;
done:
  fl_release(xc), fl_release(r), fl_release(idx);
  return st;
}

fl_status fl_avg_pool(const fl_tensor *x, int nsp, const int64_t *kernel, const int64_t *stride,
                      const int64_t *padding, bool ceil_mode, bool count_include_pad, fl_tensor **out) {
  fl_pool_geom g = {.kind = FL_POOL_AVG, .count_include_pad = count_include_pad};
  const char *op = nsp >= 1 && nsp <= 3 ? avg_names[nsp - 1] : "avg_pool";
  FL_TRY(pool_geometry(op, x, nsp, kernel, stride, padding, NULL, ceil_mode, &g));
  return pool_run(&g, nsp, x, out, NULL);
}

fl_status fl_max_pool(const fl_tensor *x, int nsp, const int64_t *kernel, const int64_t *stride,
                      const int64_t *padding, const int64_t *dilation, bool ceil_mode, int64_t base,
                      fl_tensor **out, fl_tensor **indices) {
  fl_pool_geom g = {.kind = FL_POOL_MAX, .base = base};
  const char *op = nsp >= 1 && nsp <= 3 ? max_names[nsp - 1] : "max_pool";
  FL_TRY(pool_geometry(op, x, nsp, kernel, stride, padding, dilation, ceil_mode, &g));
  return pool_run(&g, nsp, x, out, indices);
}

fl_status fl_adaptive_avg_pool(const fl_tensor *x, int nsp, const int64_t *size, fl_tensor **out) {
  fl_pool_geom g = {.kind = FL_POOL_ADAPTIVE_AVG};
  const char *op = nsp >= 1 && nsp <= 3 ? adaptive_names[nsp - 1] : "adaptive_avg_pool";
  FL_TRY(check_input(op, x, nsp));
  fl_resample_view(x, nsp, &g.planes, g.in);
  for (int d = 0; d < FL_PG_DIMS; d++) g.out[d] = g.in[d];
  for (int j = 0; j < nsp; j++) {
    if (size[j] == 0)
      return fl_error(FL_EINVAL, "%s: output size must be positive (or nil to keep the input's), got 0", op);
    if (size[j] > 0) g.out[FL_PG_DIMS - nsp + j] = size[j];
  }
  return pool_run(&g, nsp, x, out, NULL);
}
