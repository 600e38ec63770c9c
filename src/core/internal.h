/* Internal structures shared by the core, the op front-ends and the backends.
 * Host C only; CUDA code sees the plain-data parts through cuda/kernel_abi.h. */
#ifndef FL_INTERNAL_H
#define FL_INTERNAL_H

#include "flame.h"
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fl_node fl_node;

typedef struct fl_storage {
  int refcount;
  fl_device device;
  void *data;
  size_t nbytes;
  uint64_t version; /* bumped by every in-place write: saved-tensor checks */
} fl_storage;

struct fl_tensor {
  int refcount;
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
fl_status fl_storage_new(fl_device dev, size_t nbytes, fl_storage **out);
void fl_storage_release(fl_storage *s);
fl_status fl_tensor_new(fl_dtype dt, fl_device dev, int ndim, const int64_t *shape, fl_tensor **out);
/* A new tensor header over t's storage (no autograd state); stride NULL means contiguous. */
fl_tensor *fl_alias(const fl_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
void fl_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int64_t fl_shape_numel(int ndim, const int64_t *shape);
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

/* ---- backends ---- */
typedef enum { FL_RAND_UNIFORM, FL_RAND_NORMAL, FL_RAND_INT } fl_rand_kind;

/* Kernel-level interface, one table per device type. Front-ends validate
 * arguments, allocate outputs and broadcast operands before calling; entries
 * may be NULL, which means "not implemented on this device". All entries may
 * run asynchronously except memcpy_d2h, synchronize and the stats. */
typedef struct fl_backend {
  const char *name;
  bool (*available)(void);
  int (*device_count)(void);
  fl_status (*alloc)(fl_device dev, size_t nbytes, void **ptr);
  void (*free)(fl_device dev, void *ptr, size_t nbytes);
  fl_status (*memcpy_h2d)(fl_device dev, void *dst, const void *src, size_t n);
  fl_status (*memcpy_d2h)(fl_device dev, void *dst, const void *src, size_t n);
  fl_status (*synchronize)(fl_device dev);
  fl_status (*memory_stats)(fl_device dev, fl_memory_stats *out);
  fl_status (*empty_cache)(fl_device dev);

  /* dst <- src, same shape (src may have 0 strides), dtypes may differ (cast). */
  fl_status (*copy)(fl_tensor *dst, const fl_tensor *src);
  fl_status (*fill)(fl_tensor *out, double value);
  /* out is contiguous 1-D: out[i] = start + i * step */
  fl_status (*arange)(fl_tensor *out, double start, double step);
  /* out contiguous; element i uses Philox counter (offset + i / per) of seed.
   * UNIFORM: a + (b - a) * u; NORMAL: a + b * n; INT: a + floor(u * (b - a)) */
  fl_status (*random)(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b);
  /* out, x same shape; out dtype == x dtype except LOGICAL_NOT (bool). */
  fl_status (*unary)(fl_unary_op op, fl_tensor *out, const fl_tensor *x, double p0, double p1);
  /* out, a, b same shape (operands expanded); a, b same dtype; out is that
   * dtype, or bool for comparisons and logic ops. */
  fl_status (*binary)(fl_binary_op op, fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
  /* cond bool; out, a, b same dtype; all same shape. */
  fl_status (*where)(fl_tensor *out, const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b);
  /* out (and idx, i64, for MAX/MIN/ARGMAX/ARGMIN, may be NULL for MAX/MIN) have x's
   * ndim with the dims in mask set to 1. idx holds the flat index over the
   * reduced dims (row-major). VAR uses param as the correction. out dtype:
   * x's, i64 for ARGMAX/ARGMIN. */
  fl_status (*reduce)(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask, double param);
  fl_status (*cumsum)(fl_tensor *out, const fl_tensor *x, int dim);
  /* x contiguous, out contiguous, same shape. */
  fl_status (*softmax)(fl_tensor *out, const fl_tensor *x, int dim, bool log);
  /* out contiguous [B,M,N]; a [B,M,K], b [B,K,N] any strides (batch stride may be 0); same dtype. */
  fl_status (*matmul)(fl_tensor *out, const fl_tensor *a, const fl_tensor *b);
  /* idx is 1-D i64 (0-based). Out-of-range indices: FL_EINDEX. */
  fl_status (*index_select)(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx);
  /* x[.., idx[i], ..] += alpha * src[.., i, ..] along dim */
  fl_status (*index_add)(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha);
  /* idx i64 with out's shape */
  fl_status (*gather)(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx);
  /* out[.., idx[p], ..] += src[p] along dim, for p over idx's shape */
  fl_status (*scatter_add)(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src);
  /* x, values (x's dtype; may be NULL) and indices (i64) contiguous, same shape, sorted along the
   * last dim: each row is sorted stably by its fl_sortkey (core/sortkey.h: NaN largest, -0 == +0),
   * ascending or descending; indices get each element's position in its row plus base. */
  fl_status (*sort)(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base);
} fl_backend;

const fl_backend *fl_backend_for(fl_devtype t);
void fl_register_backend(fl_devtype t, const fl_backend *b);
/* The backend of t's device, or an error naming op and device. */
fl_status fl_backend_of(const char *op, const fl_tensor *t, const fl_backend **out);
fl_status fl_unsupported(const char *op, const fl_tensor *t);
#define FL_BACKEND_CALL(op, t, entry, ...)                      \
  do {                                                          \
    const fl_backend *be_;                                      \
    FL_TRY(fl_backend_of(op, t, &be_));                         \
    if (!be_->entry) return fl_unsupported(op, t);              \
    FL_TRY(fl_error_context(be_->entry(__VA_ARGS__), op));      \
  } while (0)

/* ---- random ---- */
void fl_rng_next(uint64_t counters, uint64_t *seed, uint64_t *offset);

/* ---- allocation hooks (core/memory.c) ---- */
fl_status fl_device_alloc(fl_device dev, size_t nbytes, void **ptr);
void fl_device_free(fl_device dev, void *ptr, size_t nbytes);

#ifdef __cplusplus
}
#endif

#include "autograd.h" /* the graph records every op front-end uses */
#endif
