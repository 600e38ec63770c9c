/* Shape rules: dim normalisation and NumPy broadcasting. (The gradient
 * reduction that undoes broadcasting is in src/autograd/engine.c.) */
#include "internal.h"
#include <string.h>

fl_status fl_norm_dim(const char *op, const fl_tensor *t, int dim, int extra, int *out) {
  int n = t->ndim + extra;
  int d = dim < 0 ? dim + n : dim;
  if (d < 0 || d >= (n ? n : 1)) {
    fl_desc ds = fl_describe(t);
    int m = n ? n : 1;
    return fl_error(FL_EINVAL, "%s: dim %lld out of range for %s (expected %lld..%lld or %d..-1)", op,
                    (long long)fl_mwrap(dim), ds.s, (long long)fl_mdim(0), (long long)fl_mdim(m - 1), -m);
  }
  *out = d;
  return FL_OK;
}

fl_status fl_broadcast_shapes(const char *op, int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                              int64_t *out) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int ia = i - (n - na), ib = i - (n - nb);
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char sa[128], sb[128];
      return fl_error(FL_ESHAPE, "%s: shapes %s and %s cannot be broadcast (dim %lld: %lld vs %lld)", op,
                      fl_dims_str(na, a, sa, sizeof sa), fl_dims_str(nb, b, sb, sizeof sb), (long long)fl_mdim(i), (long long)da,
                      (long long)db);
    }
    out[i] = da == 1 ? db : da;
  }
  *nout = n;
  return FL_OK;
}

bool fl_same_shape(const fl_tensor *a, const fl_tensor *b) {
  return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim);
}

bool fl_same_layout(const fl_tensor *a, const fl_tensor *b) {
  return fl_same_shape(a, b) && a->offset == b->offset && !memcmp(a->stride, b->stride, sizeof(int64_t) * a->ndim);
}

void fl_expand_header(const fl_tensor *t, int ndim, const int64_t *shape, fl_tensor *hdr) {
  int64_t stride[FL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) {
    int j = i - (ndim - t->ndim);
    stride[i] = (j >= 0 && t->shape[j] == shape[i]) ? t->stride[j] : 0;
  }
  fl_header_init(hdr, t);
  hdr->ndim = ndim;
  for (int i = 0; i < ndim; i++) hdr->shape[i] = shape[i], hdr->stride[i] = stride[i];
}

fl_tensor *fl_expand_raw(const fl_tensor *t, int ndim, const int64_t *shape) {
  fl_tensor hdr;
  fl_expand_header(t, ndim, shape, &hdr);
  return fl_alias(t, ndim, hdr.shape, hdr.stride, t->offset);
}

fl_status fl_check_same_device(const char *op, const fl_tensor *a, const fl_tensor *b) {
  if (fl_device_eq(a->storage->device, b->storage->device)) return FL_OK;
  fl_desc da = fl_describe(a), db = fl_describe(b);
  return fl_error(FL_EDEVICE, "%s: expected all tensors on one device, got %s and %s", op, da.s, db.s);
}
