/* Copies between dtypes and devices, host access, clone/contiguous/detach. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* A CPU header over caller memory (not owned: storage refcount is pinned). */
static fl_tensor host_header(void *data, const fl_tensor *like, fl_dtype dt, fl_storage *st) {
  fl_tensor h;
  memset(&h, 0, sizeof h);
  memset(st, 0, sizeof *st);
  st->refcount = 1 << 30;
  st->device = FL_CPU_DEVICE;
  st->data = data;
  h.refcount = 1 << 30;
  h.storage = st;
  h.dtype = dt;
  h.ndim = like->ndim;
  memcpy(h.shape, like->shape, sizeof h.shape);
  fl_contiguous_strides(h.ndim, h.shape, h.stride);
  return h;
}

fl_status fl_copy_kernel(const char *op, fl_tensor *dst, const fl_tensor *src) {
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_COPY, 0, 2, (const fl_tensor *const[]){dst, src}, &be));
  return fl_error_context(be->copy(dst, src), op);
}

/* src (any layout, same device) into a new contiguous tensor of dtype dt. */
static fl_status contiguous_as(const fl_tensor *src, fl_dtype dt, fl_tensor **out) {
  fl_tensor *t = NULL;
  fl_status st = FL_OK;
  *out = NULL;
  FL_CHECK(fl_tensor_new(dt, src->storage->device, src->ndim, src->shape, &t));
  if (fl_numel(t)) FL_CHECK(fl_copy_kernel("copy", t, src));
  *out = t;
  t = NULL;
done:
  fl_release(t);
  return st;
}

/* dst <- src where src already has dst's shape. */
static fl_status copy_same_shape(fl_tensor *dst, const fl_tensor *src) {
  if (fl_numel(dst) == 0) return FL_OK;
  fl_device sd = src->storage->device, dd = dst->storage->device;
  if (fl_device_eq(sd, dd)) return fl_copy_kernel("copy_", dst, src);
  /* across devices: stage contiguously in dst's dtype on the source side */
  fl_tensor *staged = NULL, *landing = NULL;
  fl_status st = FL_OK;
  const fl_backend *sb, *db;
  FL_CHECK(fl_backend_of("copy_", src, &sb));
  FL_CHECK(fl_backend_of("copy_", dst, &db));
  if (src->dtype == dst->dtype && fl_is_contiguous(src)) staged = fl_retain((fl_tensor *)src);
  else FL_CHECK(contiguous_as(src, dst->dtype, &staged));
  if (fl_is_contiguous(dst)) landing = fl_retain(dst);
  else FL_CHECK(fl_tensor_new(dst->dtype, dd, dst->ndim, dst->shape, &landing));
  size_t n = (size_t)fl_numel(dst) * fl_dtype_size(dst->dtype);
  if (sd.type == FL_CPU) {
    FL_CHECK(db->memcpy_h2d(dd, fl_data_ptr(landing), fl_data_ptr(staged), n));
  } else if (dd.type == FL_CPU) {
    FL_CHECK(sb->memcpy_d2h(sd, fl_data_ptr(landing), fl_data_ptr(staged), n));
  } else { /* device to device through the host */
    void *bounce = malloc(n ? n : 1);
    if (!bounce) FL_CHECK(fl_error(FL_ENOMEM, "copy_: out of host memory for a %zu-byte bounce buffer", n));
    st = sb->memcpy_d2h(sd, bounce, fl_data_ptr(staged), n);
    if (st == FL_OK) st = db->memcpy_h2d(dd, fl_data_ptr(landing), bounce, n);
    free(bounce);
    if (st != FL_OK) goto done;
  }
  if (landing != dst) FL_CHECK(fl_copy_kernel("copy_", dst, landing));
done:
  fl_release(staged);
  fl_release(landing);
  return fl_error_context(st, "copy_");
}

fl_status fl_copy_(fl_tensor *dst, const fl_tensor *src) {
  FL_TRY(fl_check_inplace("copy_", dst, src));
  int n;
  int64_t shape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes("copy_", dst->ndim, dst->shape, src->ndim, src->shape, &n, shape));
  if (n != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * n)) {
    fl_desc a = fl_describe(src), b = fl_describe(dst);
    return fl_error(FL_ESHAPE, "copy_: source %s does not broadcast to destination %s", a.s, b.s);
  }
  fl_tensor *e = fl_expand_raw(src, dst->ndim, dst->shape);
  if (!e) return fl_error(FL_ENOMEM, "copy_: out of host memory");
  if (fl_same_storage(dst, e) && !fl_same_layout(dst, e)) {
    /* The source overlaps dst under another layout (x:copy_(x:t()), a shifted
     * narrow): stage it, or elements would be read after being overwritten. */
    fl_tensor *staged;
    fl_status cs = contiguous_as(e, e->dtype, &staged);
    fl_release(e);
    FL_TRY(fl_error_context(cs, "copy_"));
    e = staged;
  }
  fl_status st = copy_same_shape(dst, e);
  fl_release(e);
  if (st == FL_OK) fl_bump_version(dst);
  return st;
}

fl_status fl_from_host(const void *data, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  fl_tensor *t;
  FL_TRY(fl_tensor_new(o.dtype, o.device, ndim, shape, &t));
  fl_storage hs;
  fl_tensor h = host_header((void *)data, t, o.dtype, &hs);
  fl_status st = copy_same_shape(t, &h);
  if (st == FL_OK && o.requires_grad) st = fl_set_requires_grad(t, true);
  if (st != FL_OK) {
    fl_release(t);
    return st;
  }
  *out = t;
  return FL_OK;
}

fl_status fl_from_doubles(const double *data, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out) {
  fl_opts ho = {FL_F64, FL_CPU_DEVICE, false};
  fl_tensor *t64, *t;
  FL_TRY(fl_from_host(data, ndim, shape, ho, &t64));
  fl_status st = fl_to(t64, o.dtype, o.device, &t);
  fl_release(t64);
  FL_TRY(st);
  if (o.requires_grad && (st = fl_set_requires_grad(t, true)) != FL_OK) {
    fl_release(t);
    return st;
  }
  *out = t;
  return FL_OK;
}

fl_status fl_to_host(const fl_tensor *t, void *dst) {
  fl_storage hs;
  fl_tensor h = host_header(dst, t, t->dtype, &hs);
  return copy_same_shape(&h, t);
}

fl_status fl_to_doubles(const fl_tensor *t, double *dst) {
  fl_storage hs;
  fl_tensor h = host_header(dst, t, FL_F64, &hs);
  return copy_same_shape(&h, t);
}

fl_status fl_item(const fl_tensor *t, double *out) {
  if (fl_numel(t) != 1) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EINVAL, "item: expected a tensor with one element, got %s", d.s);
  }
  return fl_to_doubles(t, out);
}

/* ---- differentiable conversions ---- */
typedef struct {
  fl_device device; /* the source's */
  fl_dtype dtype;
} to_ctx;

static fl_status to_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const to_ctx *c = n->ctx;
  return fl_to(gout[0], c->dtype, c->device, &gin[0]);
}

fl_status fl_to(const fl_tensor *t, fl_dtype dt, fl_device dev, fl_tensor **out) {
  if (t->dtype == dt && fl_device_eq(t->storage->device, dev)) {
    *out = fl_retain((fl_tensor *)t);
    return FL_OK;
  }
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_error_context(fl_tensor_new(dt, dev, t->ndim, t->shape, &r), "to"));
  FL_CHECK(copy_same_shape(r, t));
  fl_node *n = NULL;
  if (fl_dtype_is_float(dt)) FL_CHECK(fl_record("ToBackward", to_backward, 1, &t, r, &n));
  if (n) {
    to_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->device = t->storage->device, c->dtype = t->dtype;
  }
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

fl_status fl_cast(const fl_tensor *t, fl_dtype dt, fl_tensor **out) { return fl_to(t, dt, t->storage->device, out); }
fl_status fl_to_device(const fl_tensor *t, fl_device dev, fl_tensor **out) { return fl_to(t, t->dtype, dev, out); }

static fl_status identity_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  gin[0] = fl_retain(gout[0]);
  return FL_OK;
}

fl_status fl_clone(const fl_tensor *t, fl_tensor **out) {
  fl_tensor *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(contiguous_as(t, t->dtype, &r));
  FL_CHECK(fl_record("CloneBackward", identity_backward, 1, &t, r, NULL));
  *out = r;
  r = NULL;
done:
  fl_release(r);
  return st;
}

fl_status fl_contiguous(const fl_tensor *t, fl_tensor **out) {
  if (fl_is_contiguous(t)) {
    *out = fl_retain((fl_tensor *)t);
    return FL_OK;
  }
  return fl_clone(t, out);
}

fl_status fl_detach(const fl_tensor *t, fl_tensor **out) {
  *out = fl_alias(t, t->ndim, t->shape, t->stride, t->offset);
  return *out ? FL_OK : fl_error(FL_ENOMEM, "detach: out of host memory");
}
