/* Caching device allocator, one per device context (see allocator.cu). */
#ifndef FL_CUDA_ALLOCATOR_CUH
#define FL_CUDA_ALLOCATOR_CUH

#include "context.cuh"

fl_status fc_allocator_create(int device, fc_allocator **out);
/* Device memory for nbytes (0 is allowed) for work on the current queue,
 * reused from that queue's cache when possible. */
fl_status fc_malloc(fc_context *ctx, size_t nbytes, void **ptr);
/* Back to the cache (nbytes as requested); safe for queued kernels because
 * reuse is stream-ordered, and for uses on other streams once recorded. */
void fc_free(fc_context *ctx, void *ptr, size_t nbytes);
/* The live block at ptr is also used by work on `stream`: its free waits for
 * that work (an event) before the block is reused. */
fl_status fc_record_stream(fc_context *ctx, void *ptr, cudaStream_t stream);
/* A stream about to be destroyed, its work done (a communicator's): no block keeps it as a use. */
void fc_allocator_forget_stream(fc_context *ctx, cudaStream_t stream);
/* A host queue detached after its stream's work completed: its cached blocks
 * join the own pool and the blocks and uses recorded against it are dropped. */
void fc_allocator_forget_queue(fc_context *ctx, fc_queue *q);
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
  size_t size = 0;
  fc_scratch() = default;
  fc_scratch(const fc_scratch &) = delete;
  fc_scratch &operator=(const fc_scratch &) = delete;
  fl_status get(fc_context *c, size_t n) {
    ctx = c;
    size = n;
    return fc_malloc(c, n, &ptr);
  }
  ~fc_scratch() {
    if (ptr) fc_free(ctx, ptr, size);
  }
};

/* A contiguous tensor of `like`'s shape over scratch memory (stack headers,
 * never retained): for operands copied to contiguous, or results that need a
 * cast before they reach the caller's tensor. */
static inline fl_status fc_temp_like(fc_context *ctx, const fl_tensor *like, fl_dtype dt, fc_scratch &mem,
                                     fl_storage *st, fl_tensor *t) {
  size_t bytes = (size_t)fl_numel(like) * fl_dtype_size(dt);
  FL_TRY(mem.get(ctx, bytes));
  memset(st, 0, sizeof *st);
  st->refcount = 1;
  st->device = like->storage->device;
  st->data = mem.ptr;
  st->nbytes = bytes;
  memset(t, 0, sizeof *t);
  t->refcount = 1;
  t->storage = st;
  t->dtype = dt;
  t->ndim = like->ndim;
  memcpy(t->shape, like->shape, sizeof t->shape);
  fl_contiguous_strides(t->ndim, t->shape, t->stride);
  return FL_OK;
}

/* Where a kernel that writes only dtype `want` puts its result: out itself
 * when out has that dtype, else scratch of out's shape, which the caller then
 * casts into out (when dst != out). */
struct fc_result_as {
  fc_scratch mem;
  fl_storage st;
  fl_tensor tmp;
  fl_tensor *dst = nullptr;
  fl_status init(fc_context *ctx, fl_tensor *out, fl_dtype want) {
    dst = out;
    if (out->dtype == want) return FL_OK;
    FL_TRY(fc_temp_like(ctx, out, want, mem, &st, &tmp));
    dst = &tmp;
    return FL_OK;
  }
};

#endif
