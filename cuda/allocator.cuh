/* Caching device allocator, one per device context (see allocator.cu). */
#ifndef FL_CUDA_ALLOCATOR_CUH
#define FL_CUDA_ALLOCATOR_CUH

#include "context.cuh"

fl_status fc_allocator_create(int device, fc_allocator **out);
/* Device memory for nbytes (0 is allowed), reused from the cache when possible. */
fl_status fc_malloc(fc_context *ctx, size_t nbytes, void **ptr);
/* Back to the cache; safe for queued kernels because reuse is stream-ordered. */
void fc_free(fc_context *ctx, void *ptr);
/* Releases every cached (unused) block to the driver. */
fl_status fc_empty_cache(fc_context *ctx);
void fc_memory_stats(fc_context *ctx, fl_memory_stats *out);
/* At exit: release cached blocks, ignore errors (the driver may be going). */
void fc_allocator_release(fc_context *ctx);

/* Scoped device scratch (CUB temp storage, copies of operands): freed, in
 * stream order, when it goes out of scope. */
struct fc_scratch {
  fc_context *ctx = nullptr;
  void *ptr = nullptr;
  fc_scratch() = default;
  fc_scratch(const fc_scratch &) = delete;
  fc_scratch &operator=(const fc_scratch &) = delete;
  fl_status get(fc_context *c, size_t n) {
    ctx = c;
    return fc_malloc(c, n, &ptr);
  }
  ~fc_scratch() {
    if (ptr) fc_free(ctx, ptr);
  }
};

#endif
