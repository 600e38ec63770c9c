/* pad: constant padding of any dims (negative pads crop, as PyTorch) as a fill
 * and one strided copy into the narrowed output; reflect and replicate of the
 * last 1 to 3 dims through the backends' pad / pad_backward entries, whose
 * index mapping is core/pool_geom.h's. */
#include "resample.h"

typedef struct {
  int npads;
  int64_t pads[2 * FL_MAX_DIMS];
} constant_ctx;

/* The gradient of a constant pad is the opposite pad (crop, or zeros where it cropped). */
static fl_status constant_grad(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const constant_ctx *c = n->ctx;
  int64_t neg[2 * FL_MAX_DIMS];
  for (int i = 0; i < c->npads; i++) neg[i] = -c->pads[i];
  return fl_pad(gout[0], c->npads, neg, FL_PAD_CONSTANT, 0, &gin[0]);
}

static fl_status pad_grad(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  return fl_resample_grad("pad", FL_OP_PAD_BACKWARD, n, gout[0], n->ctx, NULL, &gin[0]);
}

/* Pads of dim d (counted from the front): before and after. */
static void pads_of(const fl_tensor *x, int npads, const int64_t *pads, int d, int64_t *b, int64_t *a) {
  int j = x->ndim - 1 - d; /* pairs run from the last dim backwards */
  *b = 2 * j < npads ? pads[2 * j] : 0;
  *a = 2 * j < npads ? pads[2 * j + 1] : 0;
}

static fl_status out_shape(const fl_tensor *x, int npads, const int64_t *pads, int64_t *shape) {
  for (int d = 0; d < x->ndim; d++) {
    int64_t b, a, s;
    pads_of(x, npads, pads, d, &b, &a);
    if (fl_add_overflows(x->shape[d], b, &s) || fl_add_overflows(s, a, &s) || s < 0) {
      fl_desc dx = fl_describe(x);
      return fl_error(FL_ESHAPE, "pad: dim %lld of %s padded by %lld and %lld gives a negative size",
                      (long long)fl_mdim(d), dx.s, (long long)b, (long long)a);
    }
    shape[d] = s;
  }
  return FL_OK;
}

static fl_status pad_constant(const fl_tensor *x, int npads, const int64_t *pads, double value, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS], src_off = x->offset, dst_off = 0, len[FL_MAX_DIMS], dstride[FL_MAX_DIMS];
  FL_TRY(out_shape(x, npads, pads, shape));
  fl_tensor *r = NULL, *dst = NULL, *src = NULL;
  fl_status st = FL_OK;
  fl_opts o = {x->dtype, x->storage->device, false};
  FL_CHECK(fl_full(x->ndim, shape, value, o, &r));
  /* the kept part: x narrowed by the crops, into r narrowed by the pads */
  bool empty = false;
  fl_contiguous_strides(r->ndim, r->shape, dstride);
  for (int d = 0; d < x->ndim; d++) {
    int64_t b, a;
    pads_of(x, npads, pads, d, &b, &a);
    len[d] = x->shape[d] + (b < 0 ? b : 0) + (a < 0 ? a : 0);
    if (len[d] <= 0) empty = true, len[d] = 0;
    if (b < 0) src_off += -b * x->stride[d];
    else dst_off += b * dstride[d];
  }
  if (!empty) {
    dst = fl_alias(r, r->ndim, len, dstride, dst_off);
    src = fl_alias(x, x->ndim, len, x->stride, src_off);
    if (!dst || !src) FL_CHECK(fl_error(FL_ENOMEM, "pad: out of host memory"));
    FL_CHECK(fl_copy_kernel("pad", dst, src));
  }
  fl_node *n;
  constant_ctx c = {npads, {0}};
  for (int i = 0; i < npads; i++) c.pads[i] = pads[i];
  FL_CHECK(fl_resample_record("ConstantPadNdBackward", constant_grad, x, r, &c, sizeof c, &n));
  *out = r;
  r = NULL;
done:
  fl_release(r), fl_release(dst), fl_release(src);
  return st;
}

static fl_status pad_mapped(const fl_tensor *x, int npads, const int64_t *pads, fl_pad_mode mode, fl_tensor **out) {
  const char *mname = mode == FL_PAD_REFLECT ? "reflect" : "replicate";
  const int nsp = npads / 2;
  if (nsp > 3) return fl_error(FL_EINVAL, "pad: %s padding takes 2, 4 or 6 values (the last 1 to 3 dims), got %d", mname, npads);
  if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
    return fl_error(FL_ESHAPE, "pad: %s padding of the last %d dim%s needs a %d-d or %d-d input, got %s", mname, nsp,
                    nsp > 1 ? "s" : "", nsp + 1, nsp + 2, fl_describe(x).s);
  fl_pad_geom g = {.mode = mode};
  int64_t shape[FL_MAX_DIMS];
  FL_TRY(out_shape(x, npads, pads, shape));
  fl_resample_view(x, nsp, &g.planes, g.in);
  for (int k = 0; k < FL_PG_DIMS; k++) g.out[k] = g.in[k], g.before[k] = 0;
  for (int j = 0; j < nsp; j++) {
    int d = x->ndim - nsp + j, k = FL_PG_DIMS - nsp + j;
    int64_t b, a;
    pads_of(x, npads, pads, d, &b, &a);
    if (mode == FL_PAD_REFLECT && (b >= x->shape[d] || a >= x->shape[d]))
      return fl_error(FL_EINVAL, "pad: reflect padding (%lld, %lld) must be less than the size %lld of dim %lld of %s",
                      (long long)b, (long long)a, (long long)x->shape[d], (long long)fl_mdim(d), fl_describe(x).s);
    if (x->shape[d] == 0 || shape[d] == 0)
      return fl_error(FL_ESHAPE, "pad: %s padding of dim %lld of %s by (%lld, %lld) needs a non-empty input and output",
                      mname, (long long)fl_mdim(d), fl_describe(x).s, (long long)b, (long long)a);
    g.before[k] = b, g.out[k] = shape[d];
  }
  fl_tensor *xc = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(x, &xc));
  FL_CHECK(fl_resample_run("pad", FL_OP_PAD, &g, xc, x->ndim, shape, &r, NULL));
  fl_node *n;
  static const char *const names[2][3] = {{"ReflectionPad1DBackward", "ReflectionPad2DBackward", "ReflectionPad3DBackward"},
                                          {"ReplicationPad1DBackward", "ReplicationPad2DBackward",
                                           "ReplicationPad3DBackward"}};
  FL_CHECK(fl_resample_record(names[mode == FL_PAD_REPLICATE][nsp - 1], pad_grad, x, r, &g, sizeof g, &n));
  *out = r;
  r = NULL;
done:
  fl_release(xc), fl_release(r);
  return st;
}

fl_status fl_pad(const fl_tensor *x, int npads, const int64_t *pads, fl_pad_mode mode, double value, fl_tensor **out) {
  if (npads < 0 || npads % 2) return fl_error(FL_EINVAL, "pad: the padding length must be even, got %d", npads);
  if (npads / 2 > x->ndim) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EINVAL, "pad: %d padding values pad %d dims, more than the %d of %s", npads, npads / 2, x->ndim, d.s);
  }
  if (mode == FL_PAD_CONSTANT) return pad_constant(x, npads, pads, value, out);
  if (mode != FL_PAD_REFLECT && mode != FL_PAD_REPLICATE) return fl_error(FL_EINVAL, "pad: unknown mode %d", (int)mode);
  if (npads == 0) return fl_error(FL_EINVAL, "pad: %s padding needs 2, 4 or 6 values", mode == FL_PAD_REFLECT ? "reflect" : "replicate");
  return pad_mapped(x, npads, pads, mode, out);
}
