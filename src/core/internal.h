/* Internal structures shared by the core, the op front-ends and the backends.
 * Host C only; CUDA code sees the plain-data parts through cuda/kernel_abi.h. */
#ifndef FL_INTERNAL_H
#define FL_INTERNAL_H

#include "flame.h"
#include "conv_geom.h"
#include "pool_geom.h"
#include "nn_index.h" /* index and losses: fl_ce_args */
#include "dropout_keep.h" /* fl_dropout_rule */
#include <stdarg.h>
#include <string.h>
#ifndef __cplusplus
#include <stdatomic.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_node fl_node;

/* Refcounts are atomic: a host may hand tensors between states on different threads. (CUDA C++ sees the
 * same layout as a plain int, and only initialises it.) */
#ifdef __cplusplus
#define FL_ATOMIC_INT int
#else
#define FL_ATOMIC_INT _Atomic int
#endif

typedef struct fl_storage {
  FL_ATOMIC_INT refcount;
  struct fl_context *ctx; /* the context its bytes are charged to (NULL: none) */
  fl_device device;
  void *data;
  size_t nbytes;
  uint64_t version; /* bumped by every in-place write: saved-tensor checks */
  /* Memory the host owns (fl_tensor_from_blob, fl_from_dlpack): never returned to flame's
   * allocator; the deleter (may be NULL) gets (deleter_ctx, host_data) when the last reference goes. */
  bool external;
  fl_deleter deleter;
  void *deleter_ctx;
  void *host_data; /* the pointer the host gave (data is the lowest address a stride reaches) */
} fl_storage;

struct fl_tensor {
  FL_ATOMIC_INT refcount;
  fl_storage *storage;
  fl_dtype dtype;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t stride[FL_MAX_DIMS]; /* in elements; may be 0 (expand) or negative (flip) */
  int64_t offset;              /* in elements */
  /* autograd */
  bool requires_grad;
  bool retains_grad;
  fl_tensor *grad;
  fl_node *grad_fn; /* producer of a non-leaf (strong) */
  int output_nr;    /* which output of grad_fn this tensor is */
  fl_node *acc;     /* accumulator of a leaf (strong; the node points back weakly) */
};

/* ---- errors ---- */

/* Prefix the current message with "op: " context, keep the status. */
fl_status fl_error_context(fl_status s, const char *op);
#define FL_TRY(expr)                     \
  do {                                   \
    fl_status fl_try_s_ = (expr);        \
    if (fl_try_s_ != FL_OK) return fl_try_s_; \
  } while (0)
#define FL_CHECK(expr)          \
  do {                          \
    st = (expr);                \
    if (st != FL_OK) goto done; \
  } while (0)

/* Dims and indices in messages are counted from fl_set_message_base's base,
 * so that a Lua user reads the numbers they wrote. */
int64_t fl_mdim(int64_t d); /* d + the message base, for dims and indices printed in messages */
/* The same for a dim or index that may count from the end (-1 the last):
 * negative ones print as given, since they mean the same at either base. */
int64_t fl_mwrap(int64_t d);

/* A short description "f32[2, 3] on cuda:0" for messages. */
typedef struct { char s[160]; } fl_desc;
fl_desc fl_describe(const fl_tensor *t);
const char *fl_dims_str(int n, const int64_t *d, char *buf, size_t len);

/* ---- storage and tensors ---- */
/* Small blocks from per-thread free lists (core/small_alloc.c): tensor and storage headers, small CPU data.
 * 64-byte aligned; fl_small_free takes the size given to the allocation; sizes over FL_SMALL_MAX are plain
 * aligned_alloc / free. fl_small_trim returns the calling thread's lists to the system. */
#define FL_SMALL_MAX ((size_t)64 << 10)
void *fl_small_alloc(size_t n);
void *fl_small_calloc(size_t n);
void fl_small_free(void *p, size_t n);
void fl_small_trim(void);
fl_status fl_storage_new(fl_device dev, size_t nbytes, fl_storage **out);
void fl_storage_release(fl_storage *s);
fl_status fl_tensor_new(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape, fl_tensor **out);
/* A new tensor header over t's storage (no autograd state); stride NULL means contiguous. */
fl_tensor *fl_alias(const fl_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
void fl_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t fl_shape_numel(int ndim, const int64_t *shape);
/* The one checked multiply for sizes, offsets and byte counts that come from
 * user numbers: true (and *out unspecified) when a * b overflows int64. */
static inline bool fl_mul_overflows(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline bool fl_add_overflows(int64_t a, int64_t b, int64_t *out) { return __builtin_add_overflow(a, b, out); }
/* ndim in range, no negative size, and the byte count (over the non-zero
 * sizes) fits int64: every tensor header, new or a view, passes here. op may be NULL. */
fl_status fl_check_shape(const char *op, int ndim, const int64_t *shape, fl_dtype dt);
static inline char *fl_data_ptr(const fl_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)fl_dtype_size(t->dtype);
}
static inline void fl_bump_version(fl_tensor *t) { t->storage->version++; }

/* ---- shapes ---- */
fl_status fl_norm_dim(const char *op, const fl_tensor *t, int dim, int ndim_plus, int *out);
fl_status fl_broadcast_shapes(const char *op, int na, const int64_t *a, int nb, const int64_t *b,
                              int *nout, int64_t *out);
bool fl_same_shape(const fl_tensor *a, const fl_tensor *b);
/* Same shape, strides and offset: the same elements in the same order. */
bool fl_same_layout(const fl_tensor *a, const fl_tensor *b);
fl_status fl_check_same_device(const char *op, const fl_tensor *a, const fl_tensor *b);
/* Expand without autograd (for kernels): a new header, or a stack header that
 * borrows t (never retained or released; for a kernel call on the hot path). */
fl_tensor *fl_expand_raw(const fl_tensor *t, int ndim, const int64_t *shape);
void fl_expand_header(const fl_tensor *t, int ndim, const int64_t *shape, fl_tensor *hdr);
/* *h = a stack header for one kernel call (refcount 1, no autograd state) with t's storage, dtype, shape, strides
 * and offset. Never a struct copy (`*hdr = *t`): that reads t's refcount, which other threads holding t may be
 * changing at that moment, a data race (ThreadSanitizer saw it when two states shared weights:
 * examples/host/threads.c). Written in place, field by field: built in a local and returned, the copy's wide
 * loads of the local's just-stored fields stalled store forwarding, a tenth of a small add's time. The refcount
 * is initialised, not stored atomically (no other thread sees h). */
static inline void fl_header_init(fl_tensor *h, const fl_tensor *t) {
  memset(h, 0, sizeof *h);
#ifdef __cplusplus
  h->refcount = 1;
#else
  atomic_init(&h->refcount, 1);
#endif
  h->storage = t->storage;
  h->dtype = t->dtype;
  h->ndim = t->ndim;
  h->offset = t->offset;
  for (int i = 0; i < FL_MAX_DIMS; i++) h->shape[i] = t->shape[i], h->stride[i] = t->stride[i];
}

/* ---- iteration plan (core/plan.c) ---- */
/* How to walk nops operands of one shape (outputs first, then inputs), computed
 * once for every backend: size-1 dims dropped, broadcast inputs with stride 0,
 * dims contiguous in every operand merged. Dims are outermost first; ndim may
 * be 0 (one element). For reductions (fl_plan_reduce) the kept dims come first
 * and the innermost nred dims are the reduced ones, each group merged on its
 * own; numel then counts the kept positions only. */
#define FL_PLAN_MAX 8
typedef struct fl_plan {
  int nops, ndim, nred;
  int64_t numel;
  int64_t shape[FL_MAX_DIMS];
  int64_t stride[FL_PLAN_MAX][FL_MAX_DIMS]; /* in elements */
  fl_dtype dtype[FL_PLAN_MAX];
  char *data[FL_PLAN_MAX]; /* each operand's first element */
} fl_plan;
/* Every operand takes ts[0]'s shape; the others broadcast to it. */
void fl_plan_init(fl_plan *p, int nops, const fl_tensor *const *ts);
/* Over x = ts[nops - 1]'s shape with the dims in mask reduced; the other
 * operands (outputs, size 1 in the reduced dims) broadcast to it. */
void fl_plan_reduce(fl_plan *p, int nops, const fl_tensor *const *ts, uint32_t mask);
int64_t fl_plan_reduced_numel(const fl_plan *p);
/* Shape and per-operand strides only (no tensors, no data): the CUDA launch
 * metadata. Without merge every dim is kept as given. */
void fl_plan_dims(fl_plan *p, int nops, int ndim, const int64_t *shape, const int64_t *const *strides, bool merge);

/* ---- backends ---- */
typedef enum { FL_RAND_UNIFORM, FL_RAND_NORMAL, FL_RAND_INT } fl_rand_kind;

/* The op kinds of the backend table, for the capability query and dispatch. */
typedef enum {
  FL_OP_COPY, FL_OP_FILL, FL_OP_ARANGE, FL_OP_RANDOM, FL_OP_UNARY, FL_OP_BINARY, FL_OP_BINARY_SCALAR, FL_OP_WHERE,
  FL_OP_REDUCE, FL_OP_CUMSUM, FL_OP_SOFTMAX, FL_OP_GEMM, FL_OP_INDEX_SELECT, FL_OP_INDEX_ADD, FL_OP_GATHER,
  FL_OP_SCATTER_ADD, FL_OP_SORT,
  /* issue 7's families: each adds its kinds below its own marker */
  /* -- norms -- */
  FL_OP_NORM_FORWARD, FL_OP_NORM_BACKWARD, FL_OP_NORM_SILU_FORWARD,

  /* -- convolution -- */
  FL_OP_CONV_DIRECT,
  FL_OP_IM2COL, FL_OP_COL2IM,

  /* -- index and losses -- */
  FL_OP_INDEX_ADD_FRESH, FL_OP_CROSS_ENTROPY, FL_OP_CROSS_ENTROPY_BACKWARD,

  /* -- pooling, resizing, padding -- */
  FL_OP_POOL, FL_OP_POOL_BACKWARD, FL_OP_INTERP, FL_OP_INTERP_BACKWARD, FL_OP_PAD, FL_OP_PAD_BACKWARD,

  /* -- dropout and attention -- */
  FL_OP_DROPOUT,
  FL_OP_SOFTMAX_BACKWARD,
  FL_OP_MASKED_SOFTMAX,

  /* -- issue 8: optimizers -- */
  FL_OP_OPTIM_STEP, FL_OP_MULTI_NORM, FL_OP_MULTI_CLIP, FL_OP_MULTI_LERP, FL_OP_MULTI_COPY,

  /* -- issue 10: fused attention -- */
  FL_OP_FLASH_ATTENTION,

  /* new kinds are appended here */
  FL_NOPKINDS
} fl_op_kind;

/* What a backend is asked before any work: can it run this op on these tensors? */
typedef struct fl_op_query {
  fl_op_kind kind;
  int sub;                  /* the fl_unary_op / fl_binary_op / fl_reduce_op, else 0 */
  int n;                    /* number of tensors in ts */
  const fl_tensor *const *ts; /* output(s) first, then inputs (a NULL entry: an absent optional operand) */
} fl_op_query;

/* C = alpha * op(A) @ op(B) + beta * C (+ bias on every row), batched. */
typedef struct fl_gemm {
  fl_tensor *c;           /* [batch, m, n]: any strides (a backend may work in a temporary) */
  const fl_tensor *a, *b; /* [batch, m, k] ([batch, k, m] when trans_a); [batch, k, n] ([batch, n, k] when
                             trans_b); batch stride may be 0 (broadcast); a, b, c one dtype */
  bool trans_a, trans_b;
  double alpha, beta;     /* beta == 0: c is not read (NaN in c does not propagate) */
  const fl_tensor *bias;  /* NULL or [n] of c's dtype: added to every row */
} fl_gemm;

/* One fused attention problem (ops/flash_attention.c; docs/architecture.md, "Flash attention").
 * Dense: q [B, Hq, Sq, D], k/v [B, Hk, Sk, D]; varlen (cu_q non-NULL): q [total_q, Hq, D], k/v [total_k, Hk, D],
 * sequence b is rows cu[b] .. cu[b + 1] - 1 (cu_q, cu_k i32 [B + 1] on the device, validated by the caller; a
 * kernel clamps bad values so it never reads outside). q, k, v: one dtype (bf16/f16), last dim contiguous, other
 * strides any multiple of 8 elements, data 16-byte aligned. Hk divides Hq (query head h uses k/v head h / (Hq/Hk)).
 * Causal: key j of query i is allowed where j <= i + shift, shift 0 (top-left) or Sk - Sq of the sequence
 * (bottom_right). Dropout (p > 0): the (b, h, i, j) probability is kept by the byte rule (core/dropout_keep.h,
 * FL_DROPOUT_BYTE) at element ((b Hq + h) Sq + i) Sk + j of (seed, offset), Sq/Sk the dense lengths or
 * max_q/max_k (varlen), and scaled by 1 / (1 - p). */
typedef struct fl_flash_args {
  const fl_tensor *q, *k, *v;
  const fl_tensor *cu_q, *cu_k; /* NULL: dense */
  int64_t max_q, max_k;         /* varlen: the bound of every sequence's length (the dropout index's Sq, Sk) */
  double scale, p;
  bool causal, bottom_right;
  uint64_t seed, offset;
  /* forward: out contiguous of q's shape (and dtype), lse f32 contiguous [B, Hq, Sq] or [total_q, Hq] */
  fl_tensor *out, *lse;
  /* backward: dout contiguous of out's shape; dsum f32 of lse's shape (scratch); dq_acc f32 contiguous of q's
   * shape (scratch, zeroed by the entry); dk, dv contiguous of k's shape and dtype (written, not accumulated) */
  const fl_tensor *dout;
  fl_tensor *dsum, *dq_acc, *dk, *dv;
} fl_flash_args;

/* Test hook, CUDA builds only (cuda/flash_attention.cu; tests/test_cuda_flash_keep.c): the keep-bit words one warp of
 * the fused attention holds for dropout p from (seed, offset) over the index ((b Hq + h) Sq + i) Sk + j, written to
 * out (contiguous CUDA i32 [32], lane l's word at l). backward false: fwd_keep_word (cuda/flash_keep.cuh) of the m16
 * fragment of rows r0 .. r0 + 15 and keys n0 .. n0 + 63; true: bwd_keep_word of keys n0 .. n0 + 15 and queries
 * r0 .. r0 + 63. */
fl_status fl_cuda_flash_keep_probe(fl_tensor *out, double p, uint64_t seed, uint64_t offset, int Hq, int64_t Sq,
                                   int64_t Sk, int b, int h, int64_t r0, int64_t n0, bool backward);

/* Kernel-level interface, one table per device type. Front-ends validate
 * arguments, allocate outputs and broadcast operands, then call fl_dispatch,
 * which checks that the entry exists and that supports() accepts. Entries may
 * be NULL ("not implemented on this device"). All entries may run
 * asynchronously except memcpy_d2h, synchronize and the stats.
 * docs/architecture.md (Dispatch) is the contract a new backend implements. */
/* One collective for a backend's `collective` entry (src/dist/comm.c). */
typedef enum { FL_COLL_ALL_REDUCE, FL_COLL_BROADCAST, FL_COLL_ALL_GATHER, FL_COLL_REDUCE_SCATTER } fl_coll_kind;
typedef struct {
  fl_coll_kind kind;
  fl_red_op op;
  int root;
  const fl_tensor *send; /* all_gather, reduce_scatter: the input; else NULL */
  fl_tensor *recv;       /* the tensor written (in place for all_reduce and broadcast) */
  bool async;            /* later work is not ordered after it (until comm_join) */
} fl_collective;

typedef struct fl_backend {
  const char *name;
  /* NULL: every op whose entry is non-NULL is supported for every dtype. */
  bool (*supports)(const fl_op_query *q);
  bool (*available)(void);
  int (*device_count)(void);
  fl_status (*alloc)(fl_device dev, size_t nbytes, void **ptr);
  void (*free)(fl_device dev, void *ptr, size_t nbytes);
  fl_status (*memcpy_h2d)(fl_device dev, void *dst, const void *src, size_t n);
  fl_status (*memcpy_d2h)(fl_device dev, void *dst, const void *src, size_t n);
  fl_status (*synchronize)(fl_device dev);
  fl_status (*memory_stats)(fl_device dev, fl_memory_stats *out);
  fl_status (*empty_cache)(fl_device dev);
  /* The host's streams (CUDA; fl_context_set_stream, docs/architecture.md "The host's stream"). stream_attach
   * gives a counted handle for `stream` on dev and makes the stream wait, without the host, for the work queued
   * on `from`'s stream (from NULL: the backend's own); stream_detach drops one count, the last one waiting for
   * the stream's work and folding what flame cached for it back into the device's caches. record_stream: the
   * block at ptr (a pointer the backend allocated) is also used by work queued on `stream` (NULL: the current context's
   * stream for dev), so it is not reused before that work completes. */
  fl_status (*stream_attach)(fl_device dev, void *stream, void *from, void **handle);
  fl_status (*stream_detach)(fl_device dev, void *handle);
  fl_status (*record_stream)(fl_device dev, void *ptr, void *stream);

  /* dst <- src, same shape (src may have 0 strides), dtypes may differ (cast). */
  fl_status (*copy)(fl_tensor *dst, const fl_tensor *src);
  fl_status (*fill)(fl_tensor *out, double value);
  /* out is contiguous 1-D: out[i] = start + i * step */
  fl_status (*arange)(fl_tensor *out, double start, double step);
  /* out contiguous; element i uses Philox counter (offset + i / per) of seed.
   * UNIFORM: a + (b - a) * u; NORMAL: a + b * n; INT: a + floor(u * (b - a)) */
  fl_status (*random)(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b);
  /* out, x same shape. out's dtype is the compute dtype (bool for LOGICAL_NOT,
   * which computes in x's dtype); x may have another dtype and is converted on load. */
  fl_status (*unary)(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1);
  /* out, a, b same shape (operands expanded); a and b may have different dtypes:
   * each is converted on load to the compute dtype fl_binary_compute(op, out, a, b);
   * out is that dtype, or bool for comparisons and logic ops. */
  fl_status (*binary)(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
  /* out = a op s (reversed: s op a); a converted on load to compute, s rounded
   * once to compute; out is compute, or bool for comparisons and logic ops. */
  fl_status (*binary_scalar)(fl_binary_op op, fl_tensor *out, const fl_tensor *a, double s, bool reversed,
                             fl_dtype compute);
  /* cond bool; out, a, b same dtype; all same shape. */
  fl_status (*where)(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b);
  /* out (and idx, i64, for MAX/MIN/ARGMAX/ARGMIN, may be NULL for MAX/MIN) have x's
   * ndim with the dims in mask set to 1. idx holds base + the flat index over the
   * reduced dims (row-major). VAR uses param as the correction. out dtype:
   * x's, i64 for ARGMAX/ARGMIN (whose values also get + base). */
  fl_status (*reduce)(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask, double param,
                      int64_t base);
  fl_status (*cumsum)(fl_tensor *out, const fl_tensor *x, int dim);
  /* x contiguous, out contiguous, same shape. */
  fl_status (*softmax)(fl_tensor *out, const fl_tensor *x, int dim, bool log);
  fl_status (*gemm)(const fl_gemm *g);
  /* Index tensors are i64 or i32 (any strides) holding indices in [base, base + size);
   * an index outside is FL_EINDEX (position counted from the message base), before any write on the CPU,
   * at the next synchronising call on CUDA. idx of index_select/index_add is 1-D. */
  fl_status (*index_select)(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
  /* x[.., idx[i], ..] += alpha * src[.., i, ..] along dim */
  fl_status (*index_add)(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                         int64_t base);
  /* idx has out's shape */
  fl_status (*gather)(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base);
  /* out[.., idx[p], ..] += src[p] along dim, for p over idx's shape */
  fl_status (*scatter_add)(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
  /* x, values (x's dtype; may be NULL) and indices (i64) contiguous, same shape, sorted along the
   * last dim: each row is sorted stably by its fl_sortkey (core/sortkey.h: NaN largest, -0 == +0),
   * ascending or descending; indices get each element's position in its row plus base. */
  fl_status (*sort)(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base);

  /* ---- norms (ops/norm.c) ---- */
  /* layer_norm, rms_norm and group_norm as one problem: x (contiguous, float) viewed as
   * [n, groups, cpg, inner], statistics per row (n, group) of cols = cpg * inner elements, the affine
   * weight/bias (NULL: none; contiguous; x's dtype or f32) indexed by channel = group * cpg + c, which for
   * layer/rms norm (groups = inner = 1) is the column. rows = numel(rstd); mean NULL means rms (no centring).
   * mean, rstd: contiguous [rows] of the statistics dtype (f64 for f64 x, else f32). y: x's shape and dtype. */
  fl_status (*norm_forward)(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x, const fl_tensor *w,
                            const fl_tensor *b, int64_t groups, int64_t inner, double eps);
  /* dx (x's dtype), dw (w's), db (the bias's dtype, w's shape): each may be NULL (not wanted); dy contiguous
   * of x's shape and dtype; mean/rstd as the forward wrote them. dw/db are written, not accumulated. */
  fl_status (*norm_backward)(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                             const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups,
                             int64_t inner);

  /* Optional: norm_forward with silu applied to y (y = v * sigmoid(v) of each normalised, scaled and shifted v),
   * one pass for fl_group_norm_silu's inference path; without it, or under autograd, the front-end runs
   * group_norm, then silu. mean and rstd as norm_forward writes them. */
  fl_status (*norm_silu_forward)(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x,
                                 const fl_tensor *w, const fl_tensor *b, int64_t groups, int64_t inner, double eps);

  /* ---- convolution (ops/conv.c) ---- */
  /* Optional: a whole convolution problem at once (CUDA: cuDNN), out contiguous, a and b contiguous, all one
   * float dtype. Its supports() may decline any case; the front-end then takes the im2col + gemm path, which
   * always exists. */
  fl_status (*conv_direct)(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                           const fl_conv_geom *g);
  /* Optional, beside conv_direct: its FORWARD problem with bias [cout] (x's dtype, any stride) added as each
   * output is stored, the same sum in the same order as the broadcast add the front-end does otherwise (CPU). */
  fl_status (*conv_direct_bias)(fl_tensor *out, const fl_tensor *x, const fl_tensor *w, const fl_tensor *bias,
                                const fl_conv_geom *g);
  /* The im2col path. x is a chunk of g->n images [n, cin, in...], contiguous; cols is contiguous
   * [cin * kvol, n * L] (kvol = prod k, L = prod out): row c * kvol + kernel offset, column
   * image * L + output position; zero where the window reads padding. Same dtype, any float. */
  fl_status (*im2col)(fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *g);
  /* The adjoint: x = the sum over every cols entry that reads each input element (x is
   * overwritten, padding entries dropped); gathered per element, so deterministic. */
  fl_status (*col2im)(fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *g);

  /* ---- index and losses (ops/embedding.c, ops/loss.c) ---- */
  /* out (as if zeros: never read, every element written) gets out[.., idx[i], ..] += src[.., i, ..] along dim:
   * the backward of index_select and embedding. idx 1-D as for index_add. CUDA (like its index_add and
   * scatter_add) sums each destination's rows in index order: the same bits on every run. */
  fl_status (*index_add_fresh)(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base);
  /* fused log-softmax + NLL (+ label smoothing) over rows; struct fl_ce_args is in core/nn_index.h */
  fl_status (*cross_entropy)(const fl_ce_args *a);
  fl_status (*cross_entropy_backward)(const fl_ce_args *a, fl_tensor *dx, const fl_tensor *g);

  /* ---- pooling, resizing, padding (ops/pool.c, ops/resize.c, ops/pad.c) ---- */
  /* Geometry and index mapping in core/pool_geom.h. Every tensor contiguous, viewed as [planes, D, H, W];
   * x, out, dx, dy one float dtype. pool: out [planes, g->out], idx (max only; i64, may be NULL for the
   * others) gets base + the argmax's flat position in its input plane. The backward entries write every
   * element of dx, each one gathered over the outputs that read it (no atomics). */
  fl_status (*pool)(const fl_pool_geom *g, fl_tensor *out, fl_tensor *idx, const fl_tensor *x);
  fl_status (*pool_backward)(const fl_pool_geom *g, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *idx);
  fl_status (*interp)(const fl_interp_geom *g, fl_tensor *out, const fl_tensor *x);
  fl_status (*interp_backward)(const fl_interp_geom *g, fl_tensor *dx, const fl_tensor *dy);
  /* reflect / replicate: out[o] = x[src(o)] (any dtype: a copy of bits); the backward sums (float dtypes) */
  fl_status (*pad)(const fl_pad_geom *g, fl_tensor *out, const fl_tensor *x);
  fl_status (*pad_backward)(const fl_pad_geom *g, fl_tensor *dx, const fl_tensor *dy);

  /* ---- dropout and attention (ops/dropout.c, ops/attention.c) ---- */
  /* out, x contiguous, one float dtype, same shape: out[i] = x[i] * keep(i) / (1 - p), keep of rule (F.dropout's
   * word rule, attention's byte rule) from core/dropout_keep.h with element index i in row-major order
   * (0 < p <= 1; p == 1 gives zeros). */
  fl_status (*dropout)(fl_tensor *out, const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed,
                       uint64_t offset);
  /* Optional: the fused softmax backward over the last dim; gin, g, y contiguous, one float dtype and shape.
   * softmax: gin = y (g - sum(g y)); log (y = log_softmax): gin = g - exp(y) sum(g). */
  fl_status (*softmax_backward)(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log);
  /* Softmax over the last dim of s [..., Sq, Sk] (out, s contiguous, one float dtype) restricted to the allowed
   * keys: mask NULL or bool of s's shape (any non-negative strides, 0 where broadcast), and with causal, key j
   * of query i (the last two dims, 0-based) only where j <= i + shift. Disallowed keys get 0; a row with no
   * allowed score above -inf gets 0 everywhere. NaN scores propagate to their row. */
  fl_status (*masked_softmax)(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift);

  /* ---- issue 10: fused attention (ops/flash_attention.c) ---- */
  /* Optional (NULL on the CPU; supports() says which dtypes and head dims): the forward writes out and lse (the
   * natural-log logsumexp of the scaled, masked scores; -inf for a row without an allowed key, whose output is 0);
   * the backward recomputes the probabilities from lse and writes dq_acc (f32), dk, dv. */
  fl_status (*flash_attention)(const fl_flash_args *a);
  fl_status (*flash_attention_backward)(const fl_flash_args *a);
  /* Optional: the name of the forward kernel flash_attention would run for q (supported, as supports() said), for
   * F.sdpa_backend; NULL: the backend has one. */
  const char *(*flash_attention_forward_kernel)(const fl_tensor *q);

  /* ---- issue 8: optimizers (ops/optim.c) ---- */
  /* The multi-tensor entries behind flame.optim, argument rules in include/flame.h (fl_optim_step,
   * fl_multi_norm, fl_multi_clip, fl_multi_lerp, fl_multi_copy); the front-end has checked shapes, dtypes, devices and
   * layouts, n >= 1, and every tensor has numel >= 0. norm: out is 0-dim, zeroed by nobody (the entry writes it). */
  fl_status (*optim_step)(const fl_optim_args *a);
  fl_status (*multi_norm)(fl_tensor *out, int n, const fl_tensor *const *xs, double p);
  fl_status (*multi_clip)(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm);
  fl_status (*multi_lerp)(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w);
  fl_status (*multi_copy)(int n, fl_tensor *const *dst, const fl_tensor *const *src);

  /* ---- distributed (src/dist/comm.c) ---- */
  /* Communicators (NCCL on CUDA); the front-end has checked ranks, devices, layouts and sizes. comm_destroy with
   * abort stops a communicator whose peers may be gone. */
  fl_status (*comm_unique_id)(fl_device dev, void *id, size_t cap, size_t *n);
  fl_status (*comm_init)(fl_device dev, const void *id, size_t n, int rank, int world, void **comm);
  void (*comm_destroy)(void *comm, bool abort);
  fl_status (*collective)(void *comm, const fl_collective *c);
  fl_status (*comm_wait)(void *comm, double timeout_s);
  fl_status (*comm_join)(void *comm); /* the current stream waits (on the device) for the queued collectives */

} fl_backend;

const fl_backend *fl_backend_for(fl_devtype t);
void fl_register_backend(fl_devtype t, const fl_backend *b);
/* The backend of a device that exists, or an error naming op and device
 * (for device management; ops go through fl_dispatch). */
fl_status fl_backend_of(const char *op, const fl_tensor *t, const fl_backend **out);
/* The one dispatch step of every op front-end: the backend of ts[0]'s device,
 * once its entry for kind is non-NULL and its supports() accepts; otherwise
 * "<op>: not implemented on cuda:0 for bf16 (input bf16[2, 3] on cuda:0)". */
fl_status fl_dispatch(const char *op, fl_op_kind kind, int sub, int n, const fl_tensor *const *ts,
                      const fl_backend **out);
/* The same check without an error, for an optional fast path the caller can do without. */
bool fl_op_supported(fl_op_kind kind, int sub, int n, const fl_tensor *const *ts, const fl_backend **out);
/* The dtype a binary op computes in, from its output and operands (the rule
 * both backends apply): comparisons in the operands' promoted dtype, logic in
 * bool, everything else in out's dtype. */
static inline fl_dtype fl_binary_compute(fl_binary_op op, const fl_tensor *out, const fl_tensor *a,
                                         const fl_tensor *b) {
  if (op == FL_AND || op == FL_OR) return FL_BOOL;
  if (op >= FL_EQ && op <= FL_GE) return fl_promote(a->dtype, b->dtype);
  return out->dtype;
}
/* dst <- src on one device through the backend's copy (a cast where dtypes
 * differ; src may have 0 strides): the kernel step of every copying op. */
fl_status fl_copy_kernel(const char *op, fl_tensor *dst, const fl_tensor *src);
/* The profiler's hooks (profile.c): a kernel of op is about to be queued on dev; the backward node now running
 * (returns the previous one). Both cost a thread-local test when profiling is off. */
void fl_profile_tick(const char *op, fl_device dev);
const char *fl_profile_node(const char *name);
/* memcpy of non-overlapping host buffers, split over the CPU threads when n is large (cpu_copy.c): the CUDA
 * backend's pinned staging copies pageable bytes with it, since one core cannot keep up with the DMA engine. */
void fl_host_memcpy(void *dst, const void *src, size_t n);
/* The backend's handle for the host stream of CUDA device `cuda_index` in the calling thread's current context
 * (NULL: none, the backend's own stream). One thread-local read: what every CUDA launch asks. */
void *fl_ctx_stream_handle(int cuda_index);
/* A GEMM in the canonical form both backends compute: a [B,M,K], b [B,K,N]
 * (transposes folded into the strides), c [B,M,N]; stack headers, no copies. */
void fl_gemm_operands(const fl_gemm *g, fl_tensor *a, fl_tensor *b);

/* ---- the CUDA backend's cuDNN convolutions (ops/conv.c keeps the switch, cuda/conv_cudnn.cu reads it) ---- */
/* Which cuDNN API conv_direct calls: the legacy one (cudnnConvolutionForward ...) or the backend (graph) API with
 * cached execution plans. The graph API is the default; FLAME_CUDNN_API=legacy picks the legacy one at start-up.
 * fl_set_cudnn_api returns the previous choice (tests and bench/ compare the two in one process). */
typedef enum { FL_CUDNN_LEGACY, FL_CUDNN_GRAPH } fl_cudnn_api;
fl_cudnn_api fl_set_cudnn_api(fl_cudnn_api api);
fl_cudnn_api fl_get_cudnn_api(void);
/* The API that ran the last cuDNN convolution (the graph API's keys without an engine run the legacy one); -1
 * before any. Set by the CUDA backend under its lock; read by tests and bench/ to see which path ran. */
void fl_cudnn_note_ran(fl_cudnn_api api);
int fl_cudnn_last_ran(void);

/* ---- random ---- */
void fl_rng_next(uint64_t counters, uint64_t *seed, uint64_t *offset);

/* ---- allocation hooks (core/memory.c) ---- */
/* FL_OK when d exists in this build and process, else an error naming op and d. */
fl_status fl_device_check(const char *op, fl_device d);
fl_status fl_device_alloc(fl_device dev, size_t nbytes, void **ptr);
void fl_device_free(fl_device dev, void *ptr, size_t nbytes);

#ifdef __cplusplus
}
#endif

#include "autograd.h" /* the graph records every op front-end uses */
#endif
