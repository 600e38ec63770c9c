/* interpolate: nearest and linear/bilinear/trilinear resizing of the spatial
 * dims of [N, C, ...] (1 to 3 of them), with PyTorch 1.13's coordinate rules
 * (core/pool_geom.h). Kernels: the backends' interp / interp_backward. */
#include "resample.h"
#include <math.h>

static fl_status interp_grad(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  return fl_resample_grad("interpolate", FL_OP_INTERP_BACKWARD, n, gout[0], n->ctx, NULL, &gin[0]);
}

/* The geometry for x's spatial dims from size or scale (exactly one given). */
static fl_status interp_geometry(const fl_tensor *x, const int64_t *size, const double *scale,
                                 fl_interp_mode mode, bool align_corners, fl_interp_geom *g) {
  const char *op = "interpolate";
  if (x->ndim < 3 || x->ndim > 5)
    return fl_error(FL_ESHAPE, "%s: expected a 3-d, 4-d or 5-d input [N, C, ...], got %s", op, fl_describe(x).s);
  if (!fl_dtype_is_float(x->dtype)) return fl_error(FL_EDTYPE, "%s: expected a float tensor, got %s", op, fl_describe(x).s);
  if (!size == !scale)
    return fl_error(FL_EINVAL, size ? "%s: only one of size and scale_factor may be given"
                                    : "%s: either size or scale_factor must be given", op);
  if (mode != FL_INTERP_NEAREST && mode != FL_INTERP_LINEAR) return fl_error(FL_EINVAL, "%s: unknown mode %d", op, (int)mode);
  const int nsp = x->ndim - 2;
  g->nsp = nsp, g->linear = mode == FL_INTERP_LINEAR, g->align_corners = g->linear && align_corners;
  fl_resample_view(x, nsp, &g->planes, g->in);
  for (int k = 0; k < FL_PG_DIMS; k++) g->out[k] = g->in[k], g->scale[k] = 1, g->scale_f[k] = 1;
  for (int j = 0; j < nsp; j++) {
    const int k = FL_PG_DIMS - nsp + j;
    const int64_t in = g->in[k];
    if (in == 0) return fl_error(FL_ESHAPE, "%s: expected non-empty spatial sizes, got %s", op, fl_describe(x).s);
    int64_t out;
    if (size) {
      out = size[j];
    } else {
      if (!(scale[j] > 0) || !isfinite(scale[j]))
        return fl_error(FL_EINVAL, "%s: scale_factor must be positive and finite, got %g", op, scale[j]);
      double o = floor((double)in * scale[j]);
      out = o < 9.2e18 ? (int64_t)o : INT64_MAX;
    }
    if (out <= 0)
      return fl_error(FL_EINVAL, "%s: output size must be positive, got %lld for dim %lld of %s", op, (long long)out,
                      (long long)fl_mdim(2 + j), fl_describe(x).s);
    g->out[k] = out;
    if (g->align_corners) { /* PyTorch's area_pixel_compute_scale */
      g->scale[k] = out > 1 ? (double)(in - 1) / (double)(out - 1) : 0;
      g->scale_f[k] = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0;
    } else if (scale) { /* compute_scales_value: the factor as given (recompute_scale_factor unset) */
      g->scale[k] = 1.0 / scale[j];
      g->scale_f[k] = (float)(1.0 / scale[j]);
    } else {
      g->scale[k] = (double)in / (double)out;
      g->scale_f[k] = (float)in / (float)out;
    }
  }
  return FL_OK;
}

fl_status fl_interpolate(const fl_tensor *x, const int64_t *size, const double *scale, fl_interp_mode mode,
                         bool align_corners, fl_tensor **out) {
  fl_interp_geom geom;
  FL_TRY(interp_geometry(x, size, scale, mode, align_corners, &geom));
  int64_t shape[FL_MAX_DIMS];
  int nd = fl_resample_shape(x, geom.nsp, geom.out, shape);
  fl_tensor *xc = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(x, &xc));
  FL_CHECK(fl_resample_run("interpolate", FL_OP_INTERP, &geom, xc, nd, shape, &r, NULL));
  fl_node *n;
  static const char *const names[2][3] = {{"UpsampleNearest1DBackward", "UpsampleNearest2DBackward",
                                           "UpsampleNearest3DBackward"},
                                          {"UpsampleLinear1DBackward", "UpsampleBilinear2DBackward",
                                           "UpsampleTrilinear3DBackward"}};
  FL_CHECK(fl_resample_record(names[geom.linear][geom.nsp - 1], interp_grad, x, r, &geom, sizeof geom, &n));
  *out = r;
  r = NULL;
done:
  fl_release(xc), fl_release(r);
  return st;
}
