/* Storage (refcounted device memory) and tensors (views over a storage). */
#include "context.h"
#include <stdlib.h>
#include <string.h>

fl_status fl_storage_new(fl_device dev, size_t nbytes, fl_storage **out) {
  fl_storage *s = fl_small_calloc(sizeof *s);
  if (!s) return fl_error(FL_ENOMEM, "out of host memory for a storage header");
  atomic_init(&s->refcount, 1); /* a new header no other thread sees: no atomic store */
  s->device = dev;
  s->nbytes = nbytes;
  fl_status st = fl_context_charge(dev, nbytes, &s->ctx);
  if (st == FL_OK) st = fl_device_alloc(dev, nbytes, &s->data);
  if (st != FL_OK) {
    fl_context_uncharge(s->ctx, dev, nbytes);
    fl_small_free(s, sizeof *s);
    return st;
  }
  *out = s;
  return FL_OK;
}

void fl_storage_release(fl_storage *s) {
  if (!s || --s->refcount > 0) return;
  if (!s->external)
    fl_device_free(s->device, s->data, s->nbytes);
  else if (s->deleter)
    s->deleter(s->deleter_ctx, s->host_data);
  fl_context_uncharge(s->ctx, s->device, s->nbytes); /* (NULL for external memory: never charged) */
  fl_small_free(s, sizeof *s);
}

/* The product saturates: only a zero-element shape can overflow it (a view of
 * [0] as [0, 2^62, 4]), and its strides never address memory. */
void fl_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t acc = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = acc;
    if (__builtin_mul_overflow(acc, shape[i] > 0 ? shape[i] : 1, &acc)) acc = INT64_MAX;
  }
}

int64_t fl_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

fl_status fl_check_shape(const char *op, int ndim, const int64_t *shape, fl_dtype dt) {
  const char *sep = op ? ": " : "";
  op = op ? op : "";
  if (ndim < 0 || ndim > FL_MAX_DIMS)
    return fl_error(FL_ESHAPE, "%s%sa tensor has at most %d dims, got %d", op, sep, FL_MAX_DIMS, ndim);
  int64_t bytes = (int64_t)fl_dtype_size(dt); /* over the non-zero sizes: strides use them even when numel is 0 */
  for (int i = 0; i < ndim; i++) {
    char b[160];
    if (shape[i] < 0)
      return fl_error(FL_ESHAPE, "%s%snegative size in shape %s", op, sep, fl_dims_str(ndim, shape, b, sizeof b));
    if (shape[i] > 0 && fl_mul_overflows(bytes, shape[i], &bytes))
      return fl_error(FL_ESHAPE, "%s%sshape %s is too large (its size in bytes overflows)", op, sep,
                      fl_dims_str(ndim, shape, b, sizeof b));
  }
  return FL_OK;
}

fl_status fl_tensor_new(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape, fl_tensor **out) {
  if ((unsigned)dt >= FL_NDTYPES) return fl_error(FL_EDTYPE, "bad dtype %d", (int)dt);
  FL_TRY(fl_check_shape(NULL, ndim, shape, dt));
  fl_tensor *t = fl_small_calloc(sizeof *t);
  if (!t) return fl_error(FL_ENOMEM, "out of host memory for a tensor header");
  int64_t n = fl_shape_numel(ndim, shape);
  fl_status st = fl_storage_new(dev, (size_t)n * fl_dtype_size(dt), &t->storage);
  if (st != FL_OK) {
    fl_small_free(t, sizeof *t);
    return st;
  }
  atomic_init(&t->refcount, 1);
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  fl_contiguous_strides(ndim, t->shape, t->stride);
  *out = t;
  return FL_OK;
}

fl_tensor *fl_alias(const fl_tensor *src, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  fl_tensor *t = fl_small_calloc(sizeof *t);
  if (!t) return NULL;
  atomic_init(&t->refcount, 1);
  t->storage = src->storage;
  src->storage->refcount++;
  t->dtype = src->dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  if (stride) /* NULL: contiguous */
    for (int i = 0; i < ndim; i++) t->stride[i] = stride[i];
  else
    fl_contiguous_strides(ndim, t->shape, t->stride);
  t->offset = offset;
  return t;
}

fl_tensor *fl_retain(fl_tensor *t) {
  if (t) t->refcount++;
  return t;
}

void fl_release(fl_tensor *t) {
  if (!t || --t->refcount > 0) return;
  fl_autograd_tensor_freed(t);
  fl_release(t->grad);
  fl_storage_release(t->storage);
  fl_small_free(t, sizeof *t);
}

int fl_ndim(const fl_tensor *t) { return t->ndim; }
const int64_t *fl_shape(const fl_tensor *t) { return t->shape; }
const int64_t *fl_strides(const fl_tensor *t) { return t->stride; }
int64_t fl_offset(const fl_tensor *t) { return t->offset; }
int64_t fl_numel(const fl_tensor *t) { return fl_shape_numel(t->ndim, t->shape); }
fl_dtype fl_dtype_of(const fl_tensor *t) { return t->dtype; }
fl_device fl_device_of(const fl_tensor *t) { return t->storage->device; }
bool fl_same_storage(const fl_tensor *a, const fl_tensor *b) { return a->storage == b->storage; }

bool fl_is_set_to(const fl_tensor *a, const fl_tensor *b) {
  return a->storage == b->storage && a->dtype == b->dtype && fl_same_layout(a, b);
}

bool fl_is_contiguous(const fl_tensor *t) {
  int64_t acc = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 1) continue;
    if (t->stride[i] != acc) return false;
    acc *= t->shape[i];
  }
  return true;
}

fl_opts fl_default_opts(void) {
  fl_opts o = {FL_F32, {FL_CPU, 0}, false};
  return o;
}
