/* Zero copy: tensors over memory the host owns (fl_tensor_from_blob), and the
 * raw view of a tensor's memory a host needs to use it in place. DLPack
 * (src/core/dlpack.c) imports through fl_tensor_from_blob. */
#include "internal.h"
#include <stdint.h>
#include <stdlib.h>

/* The lowest and highest element offsets (from element 0) that shape and
 * strides reach, or an error when they overflow. Zero elements reach nothing. */
static fl_status stride_reach(int ndim, const int64_t *shape, const int64_t *strides, int64_t *lo, int64_t *hi) {
  *lo = *hi = 0;
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0) return FL_OK;
  for (int i = 0; i < ndim; i++) {
    int64_t step;
    if (shape[i] == 1) continue; /* its stride never moves */
    if (fl_mul_overflows(shape[i] - 1, strides[i], &step) ||
        fl_add_overflows(step < 0 ? *lo : *hi, step, step < 0 ? lo : hi)) {
      char b[160], c[160];
      return fl_error(FL_ESHAPE, "from_blob: shape %s with strides %s reaches beyond int64 offsets",
                      fl_dims_str(ndim, shape, b, sizeof b), fl_dims_str(ndim, strides, c, sizeof c));
    }
  }
  return FL_OK;
}

fl_status fl_tensor_from_blob(void *data, int ndim, const int64_t *shape, const int64_t *strides, fl_dtype dt,
                              fl_device dev, fl_deleter deleter, void *ctx, fl_tensor **out) {
  *out = NULL;
  if ((unsigned)dt >= FL_NDTYPES) return fl_error(FL_EDTYPE, "from_blob: bad dtype %d", (int)dt);
  if (ndim > 0 && !shape) return fl_error(FL_EINVAL, "from_blob: shape is NULL for %d dims", ndim);
  FL_TRY(fl_check_shape("from_blob", ndim, shape, dt));
  FL_TRY(fl_device_check("from_blob", dev));
  int64_t contiguous[FL_MAX_DIMS], lo, hi, span = 0;
  if (!strides) {
    fl_contiguous_strides(ndim, shape, contiguous);
    strides = contiguous;
  }
  FL_TRY(stride_reach(ndim, shape, strides, &lo, &hi));
  int64_t numel = fl_shape_numel(ndim, shape), esize = (int64_t)fl_dtype_size(dt);
  if (numel > 0 && (fl_add_overflows(hi - lo, 1, &span) || fl_mul_overflows(span, esize, &span) ||
                    (uint64_t)span > SIZE_MAX)) {
    char b[160];
    return fl_error(FL_ESHAPE, "from_blob: the memory %s reaches does not fit int64 bytes",
                    fl_dims_str(ndim, shape, b, sizeof b));
  }
  if (numel > 0 && !data) return fl_error(FL_EINVAL, "from_blob: data is NULL for %lld elements", (long long)numel);
  if ((uintptr_t)data % (uintptr_t)esize)
    return fl_error(FL_EINVAL, "from_blob: data %p is not aligned to %s's %lld bytes", data, fl_dtype_name(dt),
                    (long long)esize);
  fl_storage *s = fl_small_calloc(sizeof *s);
  fl_tensor *t = fl_small_calloc(sizeof *t);
  if (!s || !t) {
    fl_small_free(s, sizeof *s);
    fl_small_free(t, sizeof *t);
    return fl_error(FL_ENOMEM, "from_blob: out of host memory for a tensor header");
  }
  atomic_init(&s->refcount, 1);
  s->device = dev;
  s->external = true;
  s->deleter = deleter;
  s->deleter_ctx = ctx;
  s->host_data = data;
  s->data = numel > 0 ? (char *)data + lo * esize : data; /* the storage starts at the lowest address reached */
  s->nbytes = numel > 0 ? (size_t)span : 0;
  atomic_init(&t->refcount, 1);
  t->storage = s;
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i], t->stride[i] = strides[i];
  t->offset = numel > 0 ? -lo : 0;
  *out = t;
  return FL_OK;
}

void *fl_tensor_data(const fl_tensor *t) { return t->storage->data ? fl_data_ptr(t) : NULL; }

void fl_mark_modified(fl_tensor *t) { fl_bump_version(t); }
