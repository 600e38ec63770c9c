/* Tensors to and from host bytes for the file formats: in, one copy from (mapped) file bytes into a
 * tensor's storage on any device; out, a tensor's elements appended to a file being written. */
#include "io.h"
#include <stdlib.h>
#include <string.h>

fl_status fl_io_copy_in(fl_tensor *t, const void *src, size_t n, const char *op) {
  if (n == 0) return FL_OK;
  void *norm = NULL;
  if (t->dtype == FL_BOOL) { /* bytes other than 0 and 1 would be read as neither: any non-zero one is true */
    const unsigned char *b = src;
    size_t i = 0;
    while (i < n && b[i] <= 1) i++;
    if (i < n) {
      unsigned char *c = malloc(n);
      if (!c) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
      for (size_t k = 0; k < n; k++) c[k] = b[k] != 0;
      src = norm = c;
    }
  }
  fl_status st = FL_OK;
  if (t->storage->device.type == FL_CPU) memcpy(fl_data_ptr(t), src, n);
  else {
    const fl_backend *be;
    st = fl_backend_of(op, t, &be);
    if (st == FL_OK) st = fl_error_context(be->memcpy_h2d(t->storage->device, fl_data_ptr(t), src, n), op);
  }
  free(norm);
  return st;
}

/* Host copies of a device tensor go through a buffer of at most this many bytes. */
#define STAGE_BYTES ((size_t)64 << 20)

fl_status fl_atomic_write_tensor(fl_atomic_file *f, const fl_tensor *t) {
  size_t n = (size_t)fl_numel(t) * fl_dtype_size(t->dtype);
  if (n == 0) return FL_OK;
  fl_tensor *c = NULL;
  void *stage = NULL;
  fl_status st = FL_OK;
  if (fl_is_contiguous(t)) c = fl_retain((fl_tensor *)t);
  else FL_CHECK(fl_contiguous(t, &c)); /* on t's device */
  const char *src = fl_data_ptr(c);
  if (c->storage->device.type == FL_CPU) {
    st = fl_atomic_write(f, src, n);
    goto done;
  }
  const fl_backend *be;
  FL_CHECK(fl_backend_of(f->op, c, &be));
  size_t cap = n < STAGE_BYTES ? n : STAGE_BYTES;
  stage = malloc(cap);
  if (!stage) FL_CHECK(fl_error(FL_ENOMEM, "%s: out of host memory for a %zu-byte staging buffer", f->op, cap));
  for (size_t at = 0; at < n; at += cap) {
    size_t k = n - at < cap ? n - at : cap;
    FL_CHECK(be->memcpy_d2h(c->storage->device, stage, src + at, k));
    FL_CHECK(fl_atomic_write(f, stage, k));
  }
done:
  free(stage);
  fl_release(c);
  return fl_error_context(st, f->op);
}
