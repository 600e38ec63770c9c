/* Shared by every CUDA source: error checking, launch sizing, small RAII
 * helpers. Everything here reports failures as fl_status through fl_error. */
#ifndef FL_CUDA_COMMON_CUH
#define FL_CUDA_COMMON_CUH

#include "kernel_abi.h"
#include <cuda_runtime.h>

/* A failed CUDA call becomes FL_EBACKEND with the call and CUDA's own words.
 * Non-sticky errors are cleared so the next launch check does not see them. */
fl_status fc_cuda_error(cudaError_t e, const char *what);

#define FC_CUDA(call)                                           \
  do {                                                          \
    cudaError_t fc_e_ = (call);                                 \
    if (fc_e_ != cudaSuccess) return fc_cuda_error(fc_e_, #call); \
  } while (0)

/* After a <<<...>>> launch: launch failures (bad config, no kernel image) show
 * up here; faults inside the kernel surface at the next synchronising call. */
static inline fl_status fc_launched(const char *kernel) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? FL_OK : fc_cuda_error(e, kernel);
}

#define FC_THREADS 256

static inline int64_t fc_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t fc_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fc_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t fc_next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

/* Alignment test for vectorised access: the byte address must be a multiple. */
/* FNV-1a over a key's bytes (zero it first: padding counts), never 0 (a plan cache's empty-slot mark). The plan
 * caches scan by it before comparing whole keys. */
static inline uint64_t fc_key_hash(const void *key, size_t n) {
  const unsigned char *s = (const unsigned char *)key;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
  return h ? h : 1;
}
static inline bool fc_aligned(const void *p, size_t bytes) { return ((uintptr_t)p % bytes) == 0; }

static inline char *fc_base(const fl_tensor *t) {
  return t->storage->data ? fl_data_ptr(t) : (char *)0;
}

static inline int fc_device_of(const fl_tensor *t) { return t->storage->device.index; }

#endif
