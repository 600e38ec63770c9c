/* Zero copy for hosts on CUDA (docs/embedding.md): a host's device buffer wrapped as a tensor
 * (fl_tensor_from_blob with a CUDA device), and DLPack export and import of kDLCUDA tensors. The host's
 * cudaMalloc'd memory is used in place (ops read and write it, the host sees the writes), flame's caching
 * allocator never takes or frees it, and each deleter runs once, when the last reference goes. Linked with the
 * CUDA runtime in a CUDA build; without a GPU only the argument checks run. tests/test_embed_zero_copy.c is the
 * CPU side. */
#include "check.h"
#include <stdint.h>
#include <stdlib.h>
#ifdef FLAME_HAVE_DLPACK
#include "flame_dlpack.h"
#endif
#if FLAME_HAVE_CUDA
#include <cuda_runtime.h>
#endif

static void argument_checks(void) {
  float x = 0;
  int64_t shape[1] = {1};
  fl_tensor *t = NULL;
  fl_status st = fl_tensor_from_blob(&x, 1, shape, NULL, FL_F32, (fl_device){FL_CUDA, 99}, NULL, NULL, &t);
  CHECK(st == FL_EDEVICE && t == NULL, "from_blob on cuda:99 (no such device) is refused: %s", fl_last_error());
}

#if FLAME_HAVE_CUDA
static const fl_device CUDA0 = {FL_CUDA, 0};
static int freed;
static void cuda_free_deleter(void *ctx, void *data) {
  (void)ctx;
  freed++;
  cudaFree(data);
}

static int64_t cuda_allocated(void) {
  fl_memory_stats s;
  fl_memory_stats_get(CUDA0, &s);
  return s.allocated;
}

/* The host's buffer, wrapped: values in, an op's result out, an in-place write back to the host. */
static void wrapped_device_buffer(void) {
  float host[6] = {1, 2, 3, 4, 5, 6}, back[6];
  float *dev = NULL;
  CHECK(cudaMalloc((void **)&dev, sizeof host) == cudaSuccess, "cudaMalloc");
  cudaMemcpy(dev, host, sizeof host, cudaMemcpyHostToDevice);
  int64_t shape[2] = {2, 3};
  fl_tensor *t = NULL, *s = NULL, *tt = NULL, *c = NULL;
  freed = 0;
  int64_t before = cuda_allocated();
  OK(fl_tensor_from_blob(dev, 2, shape, NULL, FL_F32, CUDA0, cuda_free_deleter, NULL, &t));
  CHECK(cuda_allocated() == before, "wrapping allocates nothing in flame's allocator");
  CHECK(t && fl_tensor_data(t) == (void *)dev && fl_device_of(t).type == FL_CUDA, "the tensor's data is the host's device pointer");
  CHECK(values_are(t, (double[]){1, 2, 3, 4, 5, 6}, 6, 0), "the tensor reads the host's values");
  OK(fl_add(t, t, 1, &s));
  CHECK(values_are(s, (double[]){2, 4, 6, 8, 10, 12}, 6, 0), "an op on it: t + t");
  OK(fl_transpose(t, 0, 1, &tt)); /* a strided view of the host's memory, made contiguous by a kernel */
  OK(fl_contiguous(tt, &c));
  CHECK(values_are(c, (double[]){1, 4, 2, 5, 3, 6}, 6, 0), "a transposed view of it, copied by a kernel");
  OK(fl_fill_(t, 7)); /* flame writes the host's memory */
  OK(fl_synchronize(CUDA0));
  cudaMemcpy(back, dev, sizeof back, cudaMemcpyDeviceToHost);
  CHECK(back[0] == 7 && back[5] == 7, "fill_ wrote the host's buffer (got %g)", back[0]);
  fl_release(t);
  CHECK(freed == 0, "a view still holds the memory: no deleter yet");
  fl_release(tt);
  fl_release(s);
  fl_release(c);
  CHECK(freed == 1, "the deleter ran once, when the last view went");
  CHECK(cuda_allocated() == before, "flame's allocator holds nothing of it afterwards (%lld bytes more)",
        (long long)(cuda_allocated() - before));

  /* strided wrapping: every second element of the host's 8 floats */
  float h8[8] = {0, 10, 1, 11, 2, 12, 3, 13};
  CHECK(cudaMalloc((void **)&dev, sizeof h8) == cudaSuccess, "cudaMalloc");
  cudaMemcpy(dev, h8, sizeof h8, cudaMemcpyHostToDevice);
  int64_t n4[1] = {4}, st2[1] = {2};
  fl_tensor *odd = NULL, *sum = NULL;
  OK(fl_tensor_from_blob(dev + 1, 1, n4, st2, FL_F32, CUDA0, NULL, NULL, &odd));
  OK(fl_sum(odd, 0, false, &sum));
  double x = 0;
  OK(fl_item(sum, &x));
  CHECK(x == 46, "a strided wrap reads every second element (sum %g, expected 46)", x);
  fl_release(sum);
  fl_release(odd);
  cudaFree(dev); /* no deleter given: the host frees */
}

#ifdef FLAME_HAVE_DLPACK
static int producer_deleted;
static void producer_deleter(DLManagedTensor *m) {
  producer_deleted++;
  cudaFree(m->dl_tensor.data);
  free(m);
}

static void dlpack_cuda(void) {
  fl_tensor *t = NULL, *back = NULL, *v = NULL;
  fl_opts o = opts(FL_F32, false);
  o.device = CUDA0;
  OK(fl_arange(0, 6, 1, o, &t));
  DLManagedTensor *m = NULL;
  OK(fl_to_dlpack(t, &m));
  CHECK(m && m->dl_tensor.device.device_type == kDLCUDA && m->dl_tensor.device.device_id == 0 &&
            m->dl_tensor.data == fl_tensor_data(t) && m->dl_tensor.ndim == 1 && m->dl_tensor.shape[0] == 6,
        "to_dlpack of a cuda tensor: kDLCUDA device 0, the tensor's device pointer");
  void *mem = fl_tensor_data(t);
  fl_release(t);
  OK(fl_from_dlpack(m, &back));
  CHECK(back && fl_tensor_data(back) == mem && fl_device_of(back).type == FL_CUDA, "from_dlpack(to_dlpack(t)): the same device memory");
  CHECK(values_are(back, (double[]){0, 1, 2, 3, 4, 5}, 6, 0), "the round trip keeps the values");
  fl_release(back);

  /* A producer's device tensor (as PyTorch or CuPy would hand over): used in place, its deleter called once. */
  float h[4] = {1, 2, 3, 4};
  float *dev = NULL;
  CHECK(cudaMalloc((void **)&dev, sizeof h) == cudaSuccess, "cudaMalloc");
  cudaMemcpy(dev, h, sizeof h, cudaMemcpyHostToDevice);
  DLManagedTensor *p = calloc(1, sizeof *p);
  static int64_t pshape[1] = {4};
  p->dl_tensor = (DLTensor){.data = dev, .device = {kDLCUDA, 0}, .ndim = 1, .dtype = {kDLFloat, 32, 1},
                            .shape = pshape, .strides = NULL, .byte_offset = 0};
  p->deleter = producer_deleter;
  producer_deleted = 0;
  OK(fl_from_dlpack(p, &back));
  CHECK(back && fl_tensor_data(back) == (void *)dev, "from_dlpack of a kDLCUDA tensor: no copy");
  OK(fl_add(back, back, 1, &v));
  CHECK(values_are(v, (double[]){2, 4, 6, 8}, 4, 0), "an op on the imported device memory");
  fl_release(v);
  fl_release(back);
  CHECK(producer_deleted == 1, "the producer's deleter ran once");

  DLManagedTensor q = {.dl_tensor = {.data = dev, .device = {kDLCUDA, 99}, .ndim = 1, .dtype = {kDLFloat, 32, 1},
                                     .shape = pshape}};
  fl_status st = fl_from_dlpack(&q, &back);
  CHECK(st == FL_EDEVICE, "a kDLCUDA tensor of a device that does not exist is refused: %s", fl_last_error());
}
#endif
#endif

int main(void) {
  argument_checks();
#if FLAME_HAVE_CUDA
  if (fl_device_available(FL_CUDA)) {
    wrapped_device_buffer();
#ifdef FLAME_HAVE_DLPACK
    dlpack_cuda();
#else
    printf("note - built without DLPack: the kDLCUDA checks are skipped\n");
#endif
  } else {
    printf("note - no CUDA device: the device-pointer checks are skipped\n");
  }
#else
  printf("note - built without CUDA: the device-pointer checks are skipped\n");
#endif
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
