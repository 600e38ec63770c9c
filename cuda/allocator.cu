/* Caching allocator. Requests are rounded up to a size bin (512 B steps below
 * 1 MiB, 2 MiB steps above) and freed blocks wait in a free list per bin for
 * the next request of that bin.
 *
 * Stream order: a block goes back to the pool of the queue (stream) it was
 * allocated on, and only requests on that queue take it: whatever they queue
 * runs after the kernels that used the block, so a block freed right after
 * queuing a kernel can be handed out at once. Blocks of the context's own
 * queue need no bookkeeping (the caller gives the size back on free): that
 * path, every op when no host stream is set, is what it was with one stream.
 * Blocks allocated on a host's queue, and blocks recorded as used on other
 * streams (fc_record_stream: PyTorch's record_stream), are `tracked`. A
 * tracked block freed with uses on other streams gets an event recorded on
 * each of them and waits in `pending` until all have completed (polled with
 * cudaEventQuery by later allocations), then joins its queue's pool. When a
 * host stream is detached, its work is done: its pool joins the own one and
 * its blocks and uses are forgotten (fc_allocator_forget_queue).
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

/* bin size -> free blocks. Vectors keep their capacity, so once warm an
 * alloc/free pair touches no host allocator: the small-op hot path. */
typedef std::unordered_map<size_t, std::vector<void *>> fc_bins;

struct fc_block {                    /* a tracked live block */
  fc_queue *home;                    /* the queue it was allocated on */
  std::vector<cudaStream_t> uses;    /* other streams that used it (fc_record_stream) */
};

struct fc_pending {                  /* a freed block waiting for its uses on other streams */
  void *ptr;
  size_t size;
  fc_queue *home;
  std::vector<cudaEvent_t> events;
};

struct fc_allocator {
  int device;
  pthread_mutex_t mu;
  fc_bins cached;                                  /* the own queue's pool */
  std::unordered_map<fc_queue *, fc_bins> hosted;  /* host queues' pools */
  std::unordered_map<void *, fc_block> tracked;
  std::vector<fc_pending> pending;
  std::vector<cudaEvent_t> spare_events; /* at least one per recorded use, so that a free need not make one */
  size_t uses_recorded;
  size_t cached_blocks; /* in every pool, not pending */
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

static fc_bins &pool_of(fc_context *ctx, fc_allocator *a, fc_queue *q) {
  return q == &ctx->own ? a->cached : a->hosted[q];
}

/* Caller holds the lock. A block into its queue's pool; no exception may cross
 * the C interface, so when the pool cannot grow the block goes back to the
 * driver instead (cudaFree waits for the work using it). */
static void to_pool(fc_context *ctx, fc_allocator *a, fc_queue *q, void *ptr, size_t size) {
  try {
    pool_of(ctx, a, q)[size].push_back(ptr);
    a->cached_blocks++;
  } catch (...) {
    cudaFree(ptr);
    a->stats.reserved -= (int64_t)size;
    (void)cudaGetLastError();
  }
}

/* Caller holds the lock. Pending blocks whose events have all completed join
 * their pools; `wait` waits for the rest too (empty_cache, an OOM retry). */
static void settle_pending(fc_context *ctx, fc_allocator *a, bool wait) {
  size_t keep = 0;
  for (size_t i = 0; i < a->pending.size(); i++) {
    fc_pending &p = a->pending[i];
    bool done = true;
    for (cudaEvent_t ev : p.events) {
      cudaError_t e = wait ? cudaEventSynchronize(ev) : cudaEventQuery(ev);
      if (e == cudaErrorNotReady) done = false;
      else if (e != cudaSuccess) (void)cudaGetLastError(); /* a broken event: the stream's error shows elsewhere */
    }
    if (!done) {
      if (keep != i) a->pending[keep] = std::move(p);
      keep++;
      continue;
    }
    for (cudaEvent_t ev : p.events) { /* back among the spare ones */
      try {
        a->spare_events.push_back(ev);
      } catch (...) {
        cudaEventDestroy(ev);
      }
    }
    to_pool(ctx, a, p.home, p.ptr, p.size);
  }
  a->pending.resize(keep);
}

/* Caller holds the lock. Waits for each pool's stream first: a cached block
 * may still be read by queued kernels, and cudaFree must not pull it from
 * under them. At exit (`at_exit`) host queues are not waited for: their
 * streams may be gone, and cudaFree waits for the device anyway. */
static cudaError_t release_cached(fc_context *ctx, fc_allocator *a, bool at_exit) {
  if (!at_exit) settle_pending(ctx, a, true);
  if (!a->cached_blocks) return cudaSuccess;
  cudaError_t first = cudaSuccess;
  auto release = [&](fc_bins &bins, cudaStream_t s) {
    bool any = false;
    for (auto &kv : bins) any = any || !kv.second.empty();
    if (!any) return;
    cudaError_t e = s ? cudaStreamSynchronize(s) : cudaSuccess;
    if (e != cudaSuccess && first == cudaSuccess) first = e;
    for (auto &kv : bins) {
      for (void *p : kv.second) {
        cudaFree(p);
        a->stats.reserved -= (int64_t)kv.first;
        a->cached_blocks--;
      }
      kv.second.clear();
    }
  };
  release(a->cached, ctx->own.stream);
  for (auto &kv : a->hosted) release(kv.second, at_exit ? NULL : kv.first->stream);
  (void)cudaGetLastError();
  return first;
}

static void count_live(fc_allocator *a, size_t size) {
  a->stats.allocated += (int64_t)size;
  if (a->stats.allocated > a->stats.peak) a->stats.peak = a->stats.allocated;
  a->stats.num_allocs++;
}

static fl_status alloc_locked(fc_context *ctx, fc_allocator *a, fc_bins &pool, size_t size, size_t nbytes,
                              void **ptr) {
  auto it = pool.find(size);
  if (it != pool.end() && !it->second.empty()) {
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
    (void)release_cached(ctx, a, false);
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

static fl_status host_oom(fc_allocator *a) {
  return fl_error(FL_ENOMEM, "cuda:%d: out of host memory for the allocator's tables", a->device);
}

/* A block on a host queue: from that queue's pool, and tracked so that its free finds the pool again. */
static fl_status alloc_hosted(fc_context *ctx, fc_allocator *a, fc_queue *q, size_t size, size_t nbytes, void **ptr) {
  fc_bins *pool;
  try {
    pool = &a->hosted[q];
  } catch (...) {
    return host_oom(a);
  }
  FL_TRY(alloc_locked(ctx, a, *pool, size, nbytes, ptr));
  try {
    a->tracked.emplace(*ptr, fc_block{q, {}});
    return FL_OK;
  } catch (...) {
    a->stats.allocated -= (int64_t)size;
    a->stats.num_allocs--;
    to_pool(ctx, a, q, *ptr, size);
    return host_oom(a);
  }
}

fl_status fc_malloc(fc_context *ctx, size_t nbytes, void **ptr) {
  fc_allocator *a = ctx->alloc;
  fc_queue *q = fc_queue_cur(ctx);
  size_t size = bin_size(nbytes);
  pthread_mutex_lock(&a->mu);
  if (!a->pending.empty()) settle_pending(ctx, a, false);
  fl_status st = q == &ctx->own ? alloc_locked(ctx, a, a->cached, size, nbytes, ptr)
                                : alloc_hosted(ctx, a, q, size, nbytes, ptr);
  pthread_mutex_unlock(&a->mu);
  return st;
}

/* Caller holds the lock. A tracked block's free: to its home pool, or pending behind an event on each stream
 * that also used it. When an event cannot be recorded (the stream is gone or broken) or there is no room to
 * wait, we wait for the whole device instead. */
static void free_tracked(fc_context *ctx, fc_allocator *a, void *ptr, size_t size, fc_block &b) {
  a->uses_recorded -= b.uses.size();
  fc_pending p{ptr, size, b.home, {}};
  bool ok = true;
  try {
    p.events.reserve(b.uses.size());
    a->pending.reserve(a->pending.size() + 1);
  } catch (...) {
    ok = false;
  }
  for (size_t i = 0; ok && i < b.uses.size(); i++) {
    cudaEvent_t ev = a->spare_events.back();
    a->spare_events.pop_back();
    p.events.push_back(ev); /* reserved above: no throw */
    ok = cudaEventRecord(ev, b.uses[i]) == cudaSuccess;
  }
  if (ok && !p.events.empty()) {
    a->pending.push_back(std::move(p)); /* reserved above */
    return;
  }
  if (!ok) {
    cudaDeviceSynchronize();
    (void)cudaGetLastError();
  }
  for (cudaEvent_t ev : p.events) a->spare_events.push_back(ev); /* into the room they left */
  to_pool(ctx, a, b.home, ptr, size);
}

void fc_free(fc_context *ctx, void *ptr, size_t nbytes) {
  if (!ptr) return;
  fc_allocator *a = ctx->alloc;
  size_t size = bin_size(nbytes);
  pthread_mutex_lock(&a->mu);
  a->stats.allocated -= (int64_t)size;
  a->stats.num_frees++;
  auto it = a->tracked.empty() ? a->tracked.end() : a->tracked.find(ptr);
  if (it == a->tracked.end()) {
    to_pool(ctx, a, &ctx->own, ptr, size); /* the one-stream path */
  } else {
    fc_block b = std::move(it->second);
    a->tracked.erase(it);
    free_tracked(ctx, a, ptr, size, b);
  }
  pthread_mutex_unlock(&a->mu);
}

fl_status fc_record_stream(fc_context *ctx, void *ptr, cudaStream_t stream) {
  fc_allocator *a = ctx->alloc;
  fl_status st = FL_OK;
  pthread_mutex_lock(&a->mu);
  auto it = a->tracked.find(ptr);
  fc_queue *home = it == a->tracked.end() ? &ctx->own : it->second.home;
  bool known = stream == home->stream;
  if (!known && it != a->tracked.end())
    for (cudaStream_t s : it->second.uses) known = known || s == stream;
  if (!known) {
    try {
      /* The event its free will record is made now, so that the free (which cannot fail) has one. */
      if (a->spare_events.size() <= a->uses_recorded) {
        cudaEvent_t ev;
        cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
        if (e != cudaSuccess) st = fc_cuda_error(e, "record_stream: cudaEventCreateWithFlags");
        else a->spare_events.push_back(ev);
      }
      if (st == FL_OK) {
        if (it == a->tracked.end()) it = a->tracked.emplace(ptr, fc_block{home, {}}).first;
        it->second.uses.push_back(stream);
        a->uses_recorded++;
      }
    } catch (...) {
      st = fl_error(FL_ENOMEM, "record_stream: out of host memory");
    }
  }
  pthread_mutex_unlock(&a->mu);
  return st;
}

/* Drops `stream` from the blocks' recorded uses (its work is done); blocks left with no use off their own queue's
 * stream are no longer tracked. Called under the lock. */
static void forget_uses(fc_context *ctx, fc_allocator *a, cudaStream_t stream) {
  for (auto it = a->tracked.begin(); it != a->tracked.end();) {
    fc_block &b = it->second;
    for (size_t i = 0; i < b.uses.size();)
      if (b.uses[i] == stream) {
        b.uses.erase(b.uses.begin() + (long)i); /* its reserved event becomes a spare one */
        a->uses_recorded--;
      } else {
        i++;
      }
    if (b.home == &ctx->own && b.uses.empty()) it = a->tracked.erase(it);
    else ++it;
  }
}

void fc_allocator_forget_stream(fc_context *ctx, cudaStream_t stream) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  forget_uses(ctx, a, stream);
  pthread_mutex_unlock(&a->mu);
}

void fc_allocator_forget_queue(fc_context *ctx, fc_queue *q) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  auto h = a->hosted.find(q);
  if (h != a->hosted.end()) {
    for (auto &kv : h->second)
      for (void *p : kv.second) {
        a->cached_blocks--; /* to_pool counts it again */
        to_pool(ctx, a, &ctx->own, p, kv.first);
      }
    a->hosted.erase(h);
  }
  for (auto &kv : a->tracked)
    if (kv.second.home == q) kv.second.home = &ctx->own;
  forget_uses(ctx, a, q->stream);
  for (fc_pending &p : a->pending)
    if (p.home == q) p.home = &ctx->own;
  pthread_mutex_unlock(&a->mu);
}

fl_status fc_empty_cache(fc_context *ctx) {
  fc_allocator *a = ctx->alloc;
  pthread_mutex_lock(&a->mu);
  cudaError_t e = release_cached(ctx, a, false);
  while (a->spare_events.size() > a->uses_recorded) { /* the ones no live recorded block needs */
    cudaEventDestroy(a->spare_events.back());
    a->spare_events.pop_back();
  }
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
  release_cached(ctx, a, true);
  pthread_mutex_unlock(&a->mu);
}
