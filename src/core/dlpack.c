/* DLPack import and export (include/flame_dlpack.h). Import wraps the producer's memory with
 * fl_tensor_from_blob, whose deleter calls the producer's; export hands out a header over the tensor's
 * storage that the consumer's deleter call releases. */
#ifdef FLAME_HAVE_DLPACK
#include "internal.h"
#include "flame_dlpack.h"
#include <stdlib.h>

#ifndef DLPACK_BOOL_CODE
#define DLPACK_BOOL_CODE 6 /* kDLBool since DLPack 0.8; Debian's 0.6 header lacks the name */
#endif

static const DLDataType dl_types[FL_NDTYPES] = {
    [FL_F32] = {kDLFloat, 32, 1}, [FL_F64] = {kDLFloat, 64, 1}, [FL_F16] = {kDLFloat, 16, 1},
    [FL_BF16] = {kDLBfloat, 16, 1}, [FL_I32] = {kDLInt, 32, 1}, [FL_I64] = {kDLInt, 64, 1},
    [FL_BOOL] = {DLPACK_BOOL_CODE, 8, 1},
};

/* ---- export ---- */
typedef struct {
  DLManagedTensor m;  /* first: the consumer's pointer is this struct's */
  fl_tensor *view;    /* a header over the storage: keeps the memory, not the graph */
  int64_t shape[FL_MAX_DIMS], strides[FL_MAX_DIMS];
} dl_export;

static void export_deleter(DLManagedTensor *m) {
  dl_export *e = (dl_export *)m;
  fl_release(e->view);
  free(e);
}

fl_status fl_to_dlpack(const fl_tensor *t, DLManagedTensor **out) {
  *out = NULL;
  dl_export *e = calloc(1, sizeof *e);
  fl_tensor *view = e ? fl_alias(t, t->ndim, t->shape, t->stride, t->offset) : NULL;
  if (!view) {
    free(e);
    return fl_error(FL_ENOMEM, "to_dlpack: out of host memory for a DLPack header");
  }
  fl_device d = t->storage->device;
  e->view = view;
  for (int i = 0; i < t->ndim; i++) e->shape[i] = t->shape[i], e->strides[i] = t->stride[i];
  DLTensor *dl = &e->m.dl_tensor;
  dl->data = fl_tensor_data(t);
  dl->device.device_type = d.type == FL_CUDA ? kDLCUDA : kDLCPU;
  dl->device.device_id = d.type == FL_CUDA ? d.index : 0;
  dl->ndim = t->ndim;
  dl->dtype = dl_types[t->dtype];
  dl->shape = e->shape;
  dl->strides = e->strides;
  dl->byte_offset = 0;
  e->m.manager_ctx = e;
  e->m.deleter = export_deleter;
  *out = &e->m;
  return FL_OK;
}

/* ---- import ---- */
static void import_deleter(void *ctx, void *data) {
  DLManagedTensor *m = ctx;
  if (m->deleter) m->deleter(m);
}

static fl_status dl_dtype(DLDataType t, fl_dtype *out) {
  for (int i = 0; i < FL_NDTYPES; i++)
    if (dl_types[i].code == t.code && dl_types[i].bits == t.bits && t.lanes == 1) {
      *out = (fl_dtype)i;
      return FL_OK;
    }
  return fl_error(FL_EDTYPE, "from_dlpack: DLPack dtype (code %u, %u bits, %u lanes) has no flame dtype "
                  "(f32 f64 f16 bf16 i32 i64 bool)", (unsigned)t.code, (unsigned)t.bits, (unsigned)t.lanes);
}

static fl_status dl_device(DLDevice d, fl_device *out) {
  if (d.device_type == kDLCPU || d.device_type == kDLCUDAHost) { /* pinned host memory is CPU memory */
    *out = FL_CPU_DEVICE;
    return FL_OK;
  }
  if (d.device_type == kDLCUDA) {
    out->type = FL_CUDA;
    out->index = d.device_id;
    return FL_OK;
  }
  return fl_error(FL_EDEVICE, "from_dlpack: DLPack device type %d (id %d) is not cpu or cuda",
                  (int)d.device_type, (int)d.device_id);
}

fl_status fl_from_dlpack(DLManagedTensor *m, fl_tensor **out) {
  *out = NULL;
  if (!m) return fl_error(FL_EINVAL, "from_dlpack: the DLManagedTensor is NULL");
  const DLTensor *dl = &m->dl_tensor;
  fl_dtype dt = FL_F32;
  fl_device dev;
  FL_TRY(dl_dtype(dl->dtype, &dt));
  FL_TRY(dl_device(dl->device, &dev));
  if (dl->ndim < 0 || dl->ndim > FL_MAX_DIMS)
    return fl_error(FL_ESHAPE, "from_dlpack: a tensor has at most %d dims, got %d", FL_MAX_DIMS, dl->ndim);
  if (dl->byte_offset > (uint64_t)INT64_MAX)
    return fl_error(FL_EINVAL, "from_dlpack: byte_offset %llu is too large", (unsigned long long)dl->byte_offset);
  char *data = dl->data ? (char *)dl->data + dl->byte_offset : NULL;
  return fl_error_context(fl_tensor_from_blob(data, dl->ndim, dl->shape, dl->strides, dt, dev, import_deleter, m, out),
                          "from_dlpack");
}
#endif
