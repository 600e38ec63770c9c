/* The CPU backend table and host memory (aligned, counted). */
#include "cpu.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src);
fl_status fl_cpu_fill(fl_tensor *out, double value);
fl_status fl_cpu_arange(fl_tensor *out, double start, double step);
fl_status fl_cpu_random(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b);
fl_status fl_cpu_unary(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1);
fl_status fl_cpu_binary(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
fl_status fl_cpu_binary_scalar(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                               fl_dtype compute);
fl_status fl_cpu_where(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b);
fl_status fl_cpu_reduce(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask, double param,
                        int64_t base);
fl_status fl_cpu_cumsum(fl_tensor *out, const fl_tensor *x, int dim);
fl_status fl_cpu_softmax(fl_tensor *out, const fl_tensor *x, int dim, bool log);
fl_status fl_cpu_gemm(const fl_gemm *g);
fl_status fl_cpu_index_select(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
fl_status fl_cpu_index_add(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                           int64_t base);
fl_status fl_cpu_gather(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
fl_status fl_cpu_scatter_add(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
fl_status fl_cpu_sort(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base);
/* -- norms -- */
fl_status fl_cpu_norm_forward(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x, const fl_tensor *w,
                              const fl_tensor *b, int64_t groups, int64_t inner, double eps);
fl_status fl_cpu_norm_backward(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                               const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups,
                               int64_t inner);

/* -- convolution -- */
fl_status fl_cpu_im2col(fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *g);
fl_status fl_cpu_col2im(fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *g);

/* -- index and losses -- */
fl_status fl_cpu_index_add_fresh(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
fl_status fl_cpu_cross_entropy(const fl_ce_args *a);
fl_status fl_cpu_cross_entropy_backward(const fl_ce_args *a, fl_tensor *dx, const fl_tensor *g);

/* -- pooling, resizing, padding -- */
fl_status fl_cpu_pool(const fl_pool_geom *g, fl_tensor *out, fl_tensor *idx, const fl_tensor *x);
fl_status fl_cpu_pool_backward(const fl_pool_geom *g, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *idx);
fl_status fl_cpu_interp(const fl_interp_geom *g, fl_tensor *out, const fl_tensor *x);
fl_status fl_cpu_interp_backward(const fl_interp_geom *g, fl_tensor *dx, const fl_tensor *dy);
fl_status fl_cpu_pad(const fl_pad_geom *g, fl_tensor *out, const fl_tensor *x);
fl_status fl_cpu_pad_backward(const fl_pad_geom *g, fl_tensor *dx, const fl_tensor *dy);

/* -- dropout and attention -- */
fl_status fl_cpu_dropout(fl_tensor *out, const fl_tensor *x, double p, uint64_t seed, uint64_t offset);
fl_status fl_cpu_softmax_backward(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log);
fl_status fl_cpu_masked_softmax(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift);

/* -- issue 8: optimizers -- */
fl_status fl_cpu_optim_step(const fl_optim_args *a);
fl_status fl_cpu_multi_norm(fl_tensor *out, int n, const fl_tensor *const *xs, double p);
fl_status fl_cpu_multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm);
fl_status fl_cpu_multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w);


static fl_memory_stats stats;
/* The cache and the stats are the process's, shared by states on several threads. */
static pthread_mutex_t mem_mu = PTHREAD_MUTEX_INITIALIZER;

/* A small cache of large freed blocks. Fresh large allocations come from mmap
 * and pay a page fault per 4 KiB on first touch, which made a 512^3 matmul 20%
 * slower than BLAS on a reused buffer; reusing same-sized blocks avoids it.
 * Blocks are keyed by their exact rounded size; the cache is bounded and
 * flame.empty_cache("cpu") (fl_empty_cache) releases it. */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_MAX_BYTES ((size_t)256 << 20)
#define CACHE_SLOTS 64
static struct { void *ptr; size_t size; } cache[CACHE_SLOTS];
static int cached_n;

static size_t round_size(size_t n) {
  return n >= CACHE_MIN ? (n + 4095) & ~(size_t)4095 : ((n + 63) & ~(size_t)63); /* 64-byte alignment for SIMD */
}

static void *cache_take(size_t size) {
  for (int i = 0; i < cached_n; i++) {
    if (cache[i].size != size) continue;
    void *p = cache[i].ptr;
    cache[i] = cache[--cached_n];
    stats.reserved -= (int64_t)size;
    stats.num_cache_hits++;
    return p;
  }
  return NULL;
}

static bool cache_put(void *p, size_t size) {
  if (size < CACHE_MIN || cached_n == CACHE_SLOTS || (size_t)(stats.reserved - stats.allocated) + size > CACHE_MAX_BYTES)
    return false;
  cache[cached_n].ptr = p;
  cache[cached_n++].size = size;
  return true;
}

static void empty_cache_locked(void) {
  for (int i = 0; i < cached_n; i++) free(cache[i].ptr);
  cached_n = 0;
  stats.reserved = stats.allocated;
}

static fl_status cpu_empty_cache(fl_device dev) {
  pthread_mutex_lock(&mem_mu);
  empty_cache_locked();
  pthread_mutex_unlock(&mem_mu);
  return FL_OK;
}

static fl_status cpu_alloc(fl_device dev, size_t nbytes, void **ptr) {
  size_t size = round_size(nbytes ? nbytes : 1);
  pthread_mutex_lock(&mem_mu);
  *ptr = cache_take(size);
  pthread_mutex_unlock(&mem_mu);
  if (!*ptr) *ptr = aligned_alloc(64, size);
  pthread_mutex_lock(&mem_mu);
  if (!*ptr) { /* give the cache back to the system and try once more */
    empty_cache_locked();
    *ptr = aligned_alloc(64, size);
  }
  if (!*ptr) {
    stats.num_ooms++;
    long long held = (long long)stats.allocated;
    pthread_mutex_unlock(&mem_mu);
    return fl_error(FL_ENOMEM, "out of host memory allocating %zu bytes (%lld bytes held by tensors)", nbytes, held);
  }
  stats.allocated += (int64_t)nbytes;
  stats.reserved += (int64_t)nbytes;
  if (stats.allocated > stats.peak) stats.peak = stats.allocated;
  stats.num_allocs++;
  pthread_mutex_unlock(&mem_mu);
  return FL_OK;
}

static void cpu_free(fl_device dev, void *ptr, size_t nbytes) {
  size_t size = round_size(nbytes ? nbytes : 1);
  pthread_mutex_lock(&mem_mu);
  stats.allocated -= (int64_t)nbytes;
  stats.reserved -= (int64_t)nbytes;
  stats.num_frees++;
  bool kept = cache_put(ptr, size);
  if (kept) stats.reserved += (int64_t)size;
  pthread_mutex_unlock(&mem_mu);
  if (!kept) free(ptr);
}

static fl_status cpu_memcpy(fl_device dev, void *dst, const void *src, size_t n) {
  if (n) memcpy(dst, src, n);
  return FL_OK;
}

static fl_status cpu_memory_stats(fl_device dev, fl_memory_stats *out) {
  pthread_mutex_lock(&mem_mu);
  *out = stats;
  pthread_mutex_unlock(&mem_mu);
  return FL_OK;
}

static const fl_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy_h2d = cpu_memcpy,
    .memcpy_d2h = cpu_memcpy,
    .memory_stats = cpu_memory_stats,
    .empty_cache = cpu_empty_cache,
    .copy = fl_cpu_copy,
    .fill = fl_cpu_fill,
    .arange = fl_cpu_arange,
    .random = fl_cpu_random,
    .unary = fl_cpu_unary,
    .binary = fl_cpu_binary,
    .binary_scalar = fl_cpu_binary_scalar,
    .where = fl_cpu_where,
    .reduce = fl_cpu_reduce,
    .cumsum = fl_cpu_cumsum,
    .softmax = fl_cpu_softmax,
    .gemm = fl_cpu_gemm,
    .index_select = fl_cpu_index_select,
    .index_add = fl_cpu_index_add,
    .gather = fl_cpu_gather,
    .scatter_add = fl_cpu_scatter_add,
    .sort = fl_cpu_sort,
    /* -- norms -- */
    .norm_forward = fl_cpu_norm_forward,
    .norm_backward = fl_cpu_norm_backward,

    /* -- convolution -- */
    .im2col = fl_cpu_im2col,
    .col2im = fl_cpu_col2im,

    /* -- index and losses -- */
    .index_add_fresh = fl_cpu_index_add_fresh,
    .cross_entropy = fl_cpu_cross_entropy,
    .cross_entropy_backward = fl_cpu_cross_entropy_backward,

    /* -- pooling, resizing, padding -- */
    .pool = fl_cpu_pool,
    .pool_backward = fl_cpu_pool_backward,
    .interp = fl_cpu_interp,
    .interp_backward = fl_cpu_interp_backward,
    .pad = fl_cpu_pad,
    .pad_backward = fl_cpu_pad_backward,

    /* -- dropout and attention -- */
    .dropout = fl_cpu_dropout,
    .softmax_backward = fl_cpu_softmax_backward,
    .masked_softmax = fl_cpu_masked_softmax,

    /* -- issue 8: optimizers -- */
    .optim_step = fl_cpu_optim_step,
    .multi_norm = fl_cpu_multi_norm,
    .multi_clip = fl_cpu_multi_clip,
    .multi_lerp = fl_cpu_multi_lerp,

};

const fl_backend *fl_cpu_backend(void) { return &cpu_backend; }
