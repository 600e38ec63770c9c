/* Zero copy for hosts (docs/embedding.md): tensors over host memory with a deleter
 * (fl_tensor_from_blob), the raw view of a tensor's memory (fl_tensor_data), and
 * DLPack export and import. Writes go both ways through the same memory, every
 * deleter runs exactly once, when the last reference goes, flame's allocator never
 * sees the host's memory, and bad shapes, strides and pointers are errors. */
#include "check.h"
#include <stdint.h>
#include <stdlib.h>
#ifdef FLAME_HAVE_DLPACK
#include "flame_dlpack.h"
#endif

static int deleted;      /* deleter calls */
static void *deleted_data; /* what the last call got */
static void count_delete(void *ctx, void *data) {
  deleted += *(int *)ctx;
  deleted_data = data;
}

static int64_t cpu_frees(void) {
  fl_memory_stats s;
  fl_memory_stats_get(FL_CPU_DEVICE, &s);
  return s.num_frees;
}

static void blob_contiguous(void) {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  int one = 1;
  fl_tensor *t = NULL, *v = NULL, *s = NULL;
  deleted = 0;
  int64_t frees = cpu_frees();
  OK(fl_tensor_from_blob(buf, 2, shape, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t));
  CHECK(t && fl_tensor_data(t) == (void *)buf, "from_blob: the tensor's data is the host pointer");
  CHECK(t && fl_strides(t)[0] == 3 && fl_strides(t)[1] == 1 && fl_is_contiguous(t), "NULL strides: row-major");
  buf[4] = 50; /* host write, seen by the tensor */
  double got[6];
  OK(fl_to_doubles(t, got));
  CHECK(got[4] == 50 && got[0] == 1, "a host write shows in the tensor (got %g)", got[4]);
  OK(fl_fill_(t, 7)); /* tensor write, seen by the host */
  CHECK(buf[0] == 7 && buf[5] == 7, "an in-place op writes the host's buffer");
  OK(fl_binary_scalar(FL_MUL, t, 2, false, &s));
  CHECK(values_are(s, (double[]){14, 14, 14, 14, 14, 14}, 6, 0), "ops read the host's buffer");
  OK(fl_transpose(t, 0, 1, &v)); /* a view keeps the storage */
  fl_release(t);
  CHECK(deleted == 0, "a view keeps the host's memory: no deleter call yet");
  fl_release(v);
  CHECK(deleted == 1 && deleted_data == (void *)buf, "the deleter ran once, with the host's pointer, at the last release");
  CHECK(cpu_frees() - frees == 0, "flame's allocator never frees host memory");
  fl_release(s);
  CHECK(deleted == 1, "the deleter never runs twice");
}

static void blob_strided(void) {
  /* A column of a 3x4 row-major host matrix, and the same rows backwards (negative stride). */
  double m[12];
  for (int i = 0; i < 12; i++) m[i] = i;
  int64_t shape[1] = {3}, col[1] = {4}, back[1] = {-4};
  fl_tensor *c = NULL, *b = NULL;
  OK(fl_tensor_from_blob(m + 1, 1, shape, col, FL_F64, FL_CPU_DEVICE, NULL, NULL, &c));
  CHECK(values_are(c, (double[]){1, 5, 9}, 3, 0), "strided blob: a column of the host's matrix");
  OK(fl_tensor_from_blob(m + 9, 1, shape, back, FL_F64, FL_CPU_DEVICE, NULL, NULL, &b));
  CHECK(values_are(b, (double[]){9, 5, 1}, 3, 0), "negative stride: the column backwards");
  CHECK(b && fl_tensor_data(b) == (void *)(m + 9), "fl_tensor_data is element 0, not the lowest address");
  OK(fl_fill_(b, -1));
  CHECK(m[1] == -1 && m[5] == -1 && m[9] == -1 && m[0] == 0 && m[2] == 2, "writes land on the strided elements only");
  fl_release(c);
  fl_release(b);
  /* zero elements: no pointer needed */
  int64_t empty[2] = {0, 5};
  fl_tensor *e = NULL;
  OK(fl_tensor_from_blob(NULL, 2, empty, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, &e));
  CHECK(e && fl_numel(e) == 0, "a zero-element blob needs no data");
  fl_release(e);
}

static void expect_error(fl_status st, fl_status want, const char *frag, const char *what) {
  CHECK(st == want && contains(fl_last_error(), frag), "%s: %s", what, fl_last_error());
}

static void blob_errors(void) {
  float buf[4];
  fl_tensor *t = NULL;
  int one = 1;
  deleted = 0;
  int64_t neg[1] = {-2}, huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40}, two[2] = {2, 2};
  int64_t far[2] = {INT64_MAX, 1}, wide[2] = {INT64_MAX / 2, 1}, s2[1] = {2};
  expect_error(fl_tensor_from_blob(buf, 1, neg, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_ESHAPE,
               "from_blob: negative size", "a negative size");
  expect_error(fl_tensor_from_blob(buf, 2, huge, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_ESHAPE,
               "too large", "a shape whose bytes overflow");
  expect_error(fl_tensor_from_blob(buf, 2, two, far, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_ESHAPE,
               "reaches beyond int64", "strides whose reach overflows");
  expect_error(fl_tensor_from_blob(buf, 2, two, wide, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_ESHAPE,
               "does not fit int64 bytes", "strides whose reach in bytes overflows");
  expect_error(fl_tensor_from_blob(buf, 9, two, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_ESHAPE,
               "at most 8 dims", "too many dims");
  expect_error(fl_tensor_from_blob(NULL, 1, s2, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t), FL_EINVAL,
               "data is NULL for 2 elements", "a NULL pointer");
  expect_error(fl_tensor_from_blob((char *)buf + 2, 1, s2, NULL, FL_F32, FL_CPU_DEVICE, count_delete, &one, &t),
               FL_EINVAL, "not aligned to f32's 4 bytes", "a misaligned pointer");
  expect_error(fl_tensor_from_blob(buf, 1, s2, NULL, (fl_dtype)99, FL_CPU_DEVICE, count_delete, &one, &t), FL_EDTYPE,
               "bad dtype", "a bad dtype");
  fl_device nodev = {FL_CUDA, 99};
  expect_error(fl_tensor_from_blob(buf, 1, s2, NULL, FL_F32, nodev, count_delete, &one, &t), FL_EDEVICE,
               "from_blob: device cuda:99", "a device that does not exist");
  CHECK(t == NULL && deleted == 0, "a failed call keeps nothing and calls no deleter");
}

static void data_of_flame_tensor(void) {
  int64_t shape[2] = {3, 4};
  fl_tensor *t = NULL, *n = NULL;
  OK(fl_arange(0, 12, 1, opts(FL_I64, false), &t));
  OK(fl_view(t, 2, shape, &n));
  fl_release(t);
  OK(fl_narrow(n, 1, 1, 2, &t)); /* [3, 2] at offset 1, strides [4, 1] */
  int64_t *p = fl_tensor_data(t);
  CHECK(p && p[0] == 1 && p[fl_strides(t)[0]] == 5, "fl_tensor_data: element 0 of a view, offset applied");
  p[fl_strides(t)[0] + 1] = 60;
  fl_mark_modified(t);
  double got[6];
  OK(fl_to_doubles(t, got));
  CHECK(got[3] == 60, "a write through fl_tensor_data shows in the tensor");
  fl_release(t);
  fl_release(n);
}

/* A hook that hands back a tensor over host memory as the gradient: .grad must be a copy, or in-place work on
 * .grad (zero_ between steps) would write the host's buffer. */
static float hook_buf[3] = {10, 20, 30};
static fl_status blob_hook(void *ud, fl_tensor *grad, fl_tensor **replace) {
  int64_t shape[1] = {3};
  return fl_tensor_from_blob(hook_buf, 1, shape, NULL, FL_F32, FL_CPU_DEVICE, NULL, NULL, replace);
}

static void blob_as_gradient(void) {
  int64_t shape[1] = {3};
  fl_tensor *x = NULL, *y = NULL, *s = NULL;
  OK(fl_zeros(1, shape, opts(FL_F32, true), &x));
  OK(fl_register_hook(x, blob_hook, NULL, NULL));
  OK(fl_binary_scalar(FL_MUL, x, 2, false, &y));
  OK(fl_sum(y, 0, false, &s));
  OK(fl_backward(s, NULL, false));
  fl_tensor *g = fl_grad(x);
  CHECK(g && fl_tensor_data(g) != (void *)hook_buf, "a host-memory gradient is copied into .grad");
  CHECK(values_are(g, (double[]){10, 20, 30}, 3, 0), ".grad holds the hook's values");
  if (g) OK(fl_zero_(g));
  CHECK(hook_buf[0] == 10 && hook_buf[2] == 30, "zeroing .grad leaves the host's buffer alone");
  fl_release(y);
  fl_release(s);
  fl_release(x);
}

#ifdef FLAME_HAVE_DLPACK
static int producer_deleted;
static void producer_deleter(DLManagedTensor *m) {
  producer_deleted++;
  free(m);
}

static void dlpack_round_trip(void) {
  int64_t shape[2] = {2, 3};
  fl_tensor *t = NULL, *back = NULL, *v = NULL;
  OK(fl_arange(0, 6, 1, opts(FL_F32, false), &t));
  OK(fl_view(t, 2, shape, &v));
  fl_release(t);
  OK(fl_transpose(v, 0, 1, &t)); /* [3, 2], strides [1, 3]: a strided export */
  fl_release(v);
  DLManagedTensor *m = NULL;
  OK(fl_to_dlpack(t, &m));
  CHECK(m && m->dl_tensor.data == fl_tensor_data(t) && m->dl_tensor.ndim == 2 && m->dl_tensor.shape[0] == 3 &&
            m->dl_tensor.strides[0] == 1 && m->dl_tensor.strides[1] == 3 && m->dl_tensor.dtype.code == kDLFloat &&
            m->dl_tensor.dtype.bits == 32 && m->dl_tensor.device.device_type == kDLCPU,
        "to_dlpack: the tensor's pointer, shape, strides, dtype and device");
  void *mem = fl_tensor_data(t);
  fl_release(t); /* the export keeps the memory alive */
  int64_t frees = cpu_frees();
  OK(fl_from_dlpack(m, &back));
  CHECK(back && fl_tensor_data(back) == mem, "from_dlpack(to_dlpack(t)): the same memory, no copy");
  CHECK(values_are(back, (double[]){0, 3, 1, 4, 2, 5}, 6, 0), "the round trip keeps values and layout");
  fl_release(back); /* runs the export's deleter, which frees the storage */
  CHECK(cpu_frees() - frees == 1, "the last release frees the exported storage once");

  /* A producer's tensor: flame calls its deleter once, when flame is done with it. */
  float *buf = calloc(5, sizeof *buf); /* 4 elements after a 4-byte offset */
  DLManagedTensor *p = calloc(1, sizeof *p);
  int64_t pshape[1] = {4};
  p->dl_tensor = (DLTensor){.data = buf, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLFloat, 32, 1},
                            .shape = pshape, .strides = NULL, .byte_offset = 4};
  p->deleter = producer_deleter;
  producer_deleted = 0;
  OK(fl_from_dlpack(p, &back));
  pshape[0] = 0; /* flame copied the shape; the producer may change its own arrays */
  CHECK(back && fl_numel(back) == 4 && fl_tensor_data(back) == (void *)(buf + 1), "from_dlpack: byte_offset applied");
  buf[1] = 5; /* the producer writes, flame sees it */
  double x;
  OK(fl_sum(back, 0, false, &v));
  OK(fl_item(v, &x));
  fl_release(v);
  CHECK(x == 5, "a producer's write shows in the imported tensor (sum %g)", x);
  fl_release(back);
  CHECK(producer_deleted == 1, "the producer's deleter ran once, at the last release");

  /* Refused imports leave the DLManagedTensor with the caller. */
  DLManagedTensor q = {.dl_tensor = {.data = buf, .device = {kDLCPU, 0}, .ndim = 1, .dtype = {kDLUInt, 8, 1},
                                     .shape = pshape}, .deleter = producer_deleter};
  expect_error(fl_from_dlpack(&q, &back), FL_EDTYPE, "from_dlpack: DLPack dtype (code 1, 8 bits", "a uint8 import");
  q.dl_tensor.dtype = (DLDataType){kDLFloat, 32, 4};
  expect_error(fl_from_dlpack(&q, &back), FL_EDTYPE, "4 lanes", "a vector-lane import");
  q.dl_tensor.dtype = (DLDataType){kDLFloat, 32, 1};
  q.dl_tensor.device = (DLDevice){kDLVulkan, 0};
  expect_error(fl_from_dlpack(&q, &back), FL_EDEVICE, "device type 7", "a Vulkan import");
  CHECK(producer_deleted == 1 && back == NULL, "refused imports call no deleter");
  free(buf);
}
#endif

int main(void) {
  blob_contiguous();
  blob_strided();
  blob_errors();
  data_of_flame_tensor();
  blob_as_gradient();
#ifdef FLAME_HAVE_DLPACK
  dlpack_round_trip();
#else
  printf("skip - DLPack: built without dlpack/dlpack.h\n");
#endif
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
