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
fl_status fl_cpu_norm_silu_forward(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x,
                                   const fl_tensor *w, const fl_tensor *b, int64_t groups, int64_t inner, double eps);
fl_status fl_cpu_norm_backward(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                               const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups,
                               int64_t inner);

/* -- convolution -- */
fl_status fl_cpu_conv_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                             const fl_conv_geom *g);
fl_status fl_cpu_conv_direct_bias(fl_tensor *out, const fl_tensor *x, const fl_tensor *w, const fl_tensor *bias,
                                  const fl_conv_geom *g);
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
fl_status fl_cpu_dropout(fl_tensor *out, const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed,
                         uint64_t offset);
fl_status fl_cpu_softmax_backward(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log);
fl_status fl_cpu_masked_softmax(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift);

/* -- issue 8: optimizers -- */
fl_status fl_cpu_optim_step(const fl_optim_args *a);
fl_status fl_cpu_multi_norm(fl_tensor *out, int n, const fl_tensor *const *xs, double p);
fl_status fl_cpu_multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm);
fl_status fl_cpu_multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w);
fl_status fl_cpu_multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src);


/* The stats and the cache are the process's, shared by states on several threads: the counters are updated
 * atomically (small blocks take no lock), the cache of large blocks is behind a lock. */
static fl_memory_stats stats;
#define STAT_ADD(field, v) __atomic_add_fetch(&stats.field, (int64_t)(v), __ATOMIC_RELAXED)
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

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
static size_t cached_bytes;

static size_t round_size(size_t n) {
  return n >= CACHE_MIN ? (n + 4095) & ~(size_t)4095 : ((n + 63) & ~(size_t)63); /* 64-byte alignment for SIMD */
}

static void *cache_take(size_t size) {
  if (size < CACHE_MIN) return NULL; /* never cached */
  void *p = NULL;
  pthread_mutex_lock(&cache_mu);
  for (int i = 0; i < cached_n; i++) {
    if (cache[i].size != size) continue;
    p = cache[i].ptr;
    cache[i] = cache[--cached_n];
    cached_bytes -= size;
    break;
  }
  pthread_mutex_unlock(&cache_mu);
  if (p) STAT_ADD(reserved, -(int64_t)size), STAT_ADD(num_cache_hits, 1);
  return p;
}

static bool cache_put(void *p, size_t size) {
  if (size < CACHE_MIN) return false;
  pthread_mutex_lock(&cache_mu);
  bool kept = cached_n < CACHE_SLOTS && cached_bytes + size <= CACHE_MAX_BYTES;
  if (kept) {
    cache[cached_n].ptr = p;
    cache[cached_n++].size = size;
    cached_bytes += size;
  }
  pthread_mutex_unlock(&cache_mu);
  if (kept) STAT_ADD(reserved, size);
  return kept;
}

static fl_status cpu_empty_cache(fl_device dev) {
  fl_small_trim(); /* the calling thread's small blocks (headers included) */
  pthread_mutex_lock(&cache_mu);
  for (int i = 0; i < cached_n; i++) free(cache[i].ptr);
  size_t freed = cached_bytes;
  cached_n = 0;
  cached_bytes = 0;
  pthread_mutex_unlock(&cache_mu);
  STAT_ADD(reserved, -(int64_t)freed);
  return FL_OK;
}

static fl_status cpu_alloc(fl_device dev, size_t nbytes, void **ptr) {
  size_t size = round_size(nbytes ? nbytes : 1);
  bool small = size < CACHE_MIN; /* small blocks: fl_small_alloc's size classes, given back by fl_small_free */
  *ptr = small ? fl_small_alloc(size) : cache_take(size);
  if (!*ptr && !small) *ptr = aligned_alloc(64, size);
  if (!*ptr) { /* give the cache back to the system and try once more */
    cpu_empty_cache(dev);
    *ptr = small ? fl_small_alloc(size) : aligned_alloc(64, size);
  }
  if (!*ptr) {
    STAT_ADD(num_ooms, 1);
    return fl_error(FL_ENOMEM, "out of host memory allocating %zu bytes (%lld bytes held by tensors)", nbytes,
                    (long long)__atomic_load_n(&stats.allocated, __ATOMIC_RELAXED));
  }
  int64_t now = STAT_ADD(allocated, nbytes), peak = __atomic_load_n(&stats.peak, __ATOMIC_RELAXED);
  while (now > peak && !__atomic_compare_exchange_n(&stats.peak, &peak, now, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  STAT_ADD(reserved, nbytes);
  STAT_ADD(num_allocs, 1);
  return FL_OK;
}

static void cpu_free(fl_device dev, void *ptr, size_t nbytes) {
  size_t size = round_size(nbytes ? nbytes : 1);
  STAT_ADD(allocated, -(int64_t)nbytes);
  STAT_ADD(reserved, -(int64_t)nbytes);
  STAT_ADD(num_frees, 1);
  if (size < CACHE_MIN) fl_small_free(ptr, size);
  else if (!cache_put(ptr, size)) free(ptr);
}

static fl_status cpu_memcpy(fl_device dev, void *dst, const void *src, size_t n) {
  if (n) memcpy(dst, src, n);
  return FL_OK;
}

static fl_status cpu_memory_stats(fl_device dev, fl_memory_stats *out) {
#define STAT_GET(field) out->field = __atomic_load_n(&stats.field, __ATOMIC_RELAXED)
  STAT_GET(allocated), STAT_GET(reserved), STAT_GET(peak), STAT_GET(num_allocs), STAT_GET(num_frees);
  STAT_GET(num_cache_hits), STAT_GET(num_ooms);
#undef STAT_GET
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
    .norm_silu_forward = fl_cpu_norm_silu_forward,

    /* -- convolution -- */
    .conv_direct = fl_cpu_conv_direct,
    .conv_direct_bias = fl_cpu_conv_direct_bias,
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
    .multi_copy = fl_cpu_multi_copy,

};

const fl_backend *fl_cpu_backend(void) { return &cpu_backend; }
