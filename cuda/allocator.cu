/* Caching allocator. Requests are rounded up to a size bin (512 B steps below
 * 1 MiB, 2 MiB steps above) and freed blocks wait in a free list per bin for
 * the next request of that bin. All work of a device runs on its one stream,
 * so a block freed after queuing a kernel can be handed to the next op at once:
 * whatever that op queues runs after the kernel that used the block.
 *
 * On cudaMalloc failure the whole cache is released and the call retried once;
 * a second failure is FL_ENOMEM (the core then runs the host's OOM handler). */
#include "allocator.cuh"
#include <new>
#include <pthread.h>
#include <unordered_map>
#include <vector>

#define FC_SMALL_LIMIT (1u << 20)
#define FC_SMALL_STEP 512u
#define FC_LARGE_STEP (2u << 20)

struct fc_allocator {
  int device;
  pthread_mutex_t mu;
  /* bin size -> free blocks. Vectors keep their capacity, so once warm an
   * alloc/free pair touches no host allocator: the small-op hot path. The
   * caller gives the size back on free, so live blocks need no table. */
  std::unordered_map<size_t, std::vector<void *>> cached;
  size_t cached_blocks;
  fl_memory_stats stats;
};

static size_t bin_size(size_t n) {
  if (n == 0) n = 1; /* a real block, so an empty tensor still has a distinct pointer */
  size_t step = n < FC_SMALL_LIMIT ? FC_SMALL_STEP : FC_LARGE_STEP;
  return (n + step - 1) / step * step;
}

fl_status fc_allocator_create(int device, fc_allocator **out) {
  fc_allocator *a = new (std::nothrow) fc_allocator();
  if (!a) return fl_error(FL_ENOMEM, "out of host memory for the cuda:%d allocator", device);
  a->device = device;
  pthread_mutex_init(&a->mu, NULL);
  *out = a;
  return FL_OK;
}

/* Caller holds the lock. Waits for the stream first: a cached block may still
 * be read by queued kernels, and cudaFree must not pull it from under them. */
static void release_cached(fc_context *ctx, fc_allocator *a) {
  if (!a->cached_blocks) return;
  cudaStreamSynchronize(ctx->stream);
  for (auto &kv : a->cached) {
    for (void *p : kv.second) {
      cudaFree(p);
      a->stats.reserved -= (int64_t)kv.first;
    }
    kv.second.clear();
  }
  a->cached_blocks = 0;
  (void)cudaGetLastError();
}

static void count_live(fc_allocator *a, size_t size) {
  a->stats.allocated += (int64_t)size;
  if (a->stats.allocated > a->stats.peak) a->stats.peak = a->stats.allocated;
  a->stats.num_allocs++;
}

static fl_status alloc_locked(fc_context *ctx, fc_allocator *a, size_t nbytes, void **ptr) {
  size_t size = bin_size(nbytes);
  auto it = a->cached.find(size);
  if (it != a->cached.end() && !it->second.empty()) {
    *ptr = it->second.back();
    it->second.pop_back();
    a->cached_blocks--;
    count_live(a, size);
    a->stats.num_cache_hits++;
    return FL_OK;
  }
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    release_cached(ctx, a);
    e = cudaMalloc(&p, size);
  }
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    a->stats.num_ooms++;
    return fl_error(FL_ENOMEM,
                    "cuda:%d out of memory: could not allocate %zu bytes (%lld bytes reserved by FLAME, %lld in use)",
                    a->device, nbytes, (long long)a->stats.reserved, (long long)a->stats.allocated);
  }
  if (e != cudaSuccess) return fc_cuda_error(e, "cudaMalloc");
  a->stats.reserved += (int64_t)size;
  count_live(a, size);
  *ptr = p;
  return FL_OK;
}

fl_status fc_malloc(fc_context *ctx, size_t nbytes, void **ptr) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  fl_status st = alloc_locked(ctx, a, nbytes, ptr);
  pthread_mutex_unlock(&a->mu);
  return st;
}

void fc_free(fc_context *ctx, void *ptr, size_t nbytes) {
  if (!ptr) return;
  fc_allocator *a = ctx->alloc;
  size_t size = bin_size(nbytes);
  pthread_mutex_lock(&a->mu);
  a->stats.allocated -= (int64_t)size;
  a->stats.num_frees++;
  try {
    a->cached[size].push_back(ptr);
    a->cached_blocks++;
  } catch (...) { /* no exception may cross the C interface: give the block back instead */
    cudaFree(ptr);
    a->stats.reserved -= (int64_t)size;
    (void)cudaGetLastError();
  }
  pthread_mutex_unlock(&a->mu);
}

fl_status fc_empty_cache(fc_context *ctx) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  cudaError_t e = a->cached_blocks ? cudaStreamSynchronize(ctx->stream) : cudaSuccess;
  if (e == cudaSuccess) release_cached(ctx, a);
  pthread_mutex_unlock(&a->mu);
  return e == cudaSuccess ? FL_OK : fc_cuda_error(e, "cudaStreamSynchronize (empty_cache)");
}

void fc_memory_stats(fc_context *ctx, fl_memory_stats *out) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  *out = a->stats;
  pthread_mutex_unlock(&a->mu);
}

void fc_allocator_release(fc_context *ctx) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  release_cached(ctx, a);
  pthread_mutex_unlock(&a->mu);
}
