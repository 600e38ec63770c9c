/* FLAME: the public C API of the tensor engine.
 *
 * Tensors are reference counted: every function that returns a tensor through an
 * out-parameter hands the caller one reference, released with fl_release().
 * Every fallible call returns an fl_status; on failure fl_last_error() holds a
 * thread-local message naming the op, the shapes, dtypes and devices involved.
 * Dims and indices are 0-based here (the Lua layer converts from 1-based). */
#ifndef FLAME_H
#define FLAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_MAX_DIMS 8

typedef enum { FL_F32, FL_F64, FL_F16, FL_BF16, FL_I32, FL_I64, FL_BOOL, FL_NDTYPES } fl_dtype;
typedef enum { FL_CPU, FL_CUDA, FL_NDEVTYPES } fl_devtype;
typedef struct { fl_devtype type; int index; } fl_device;

typedef enum {
  FL_OK = 0,
  FL_EINVAL,       /* bad argument value */
  FL_ESHAPE,       /* shapes do not fit */
  FL_EDTYPE,       /* dtype not accepted */
  FL_EDEVICE,      /* devices mixed or unavailable */
  FL_EINDEX,       /* index out of range */
  FL_ENOMEM,       /* allocation failed */
  FL_EUNSUPPORTED, /* op not implemented on this backend */
  FL_EAUTOGRAD,    /* graph misuse: backward twice, in-place on a saved tensor, ... */
  FL_EBACKEND,     /* a device library call failed */
  FL_EINTERRUPTED  /* the context was interrupted or ran past its budget (fl_context_interrupt) */
} fl_status;

typedef struct fl_tensor fl_tensor;

/* ---- errors ---- */
const char *fl_last_error(void);
const char *fl_status_name(fl_status s);
/* Sets the thread-local message and returns s (for hooks and backends). */
fl_status fl_error(fl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* How messages number dims and indices: 0 (the default, as the C API counts)
 * or 1 (as Lua counts; luaopen_flame sets it). Process-wide. */
void fl_set_message_base(int base); /* 0 (default) or 1: how messages number dims and indices */

/* ---- dtypes and devices ---- */
const char *fl_dtype_name(fl_dtype dt);
size_t fl_dtype_size(fl_dtype dt);
bool fl_dtype_is_float(fl_dtype dt);
fl_status fl_dtype_parse(const char *name, fl_dtype *out);
fl_dtype fl_promote(fl_dtype a, fl_dtype b);
fl_status fl_device_parse(const char *name, fl_device *out);
void fl_device_name(fl_device d, char *buf, size_t n);
bool fl_device_eq(fl_device a, fl_device b);
bool fl_device_available(fl_devtype t);
int fl_device_count(fl_devtype t);
fl_status fl_synchronize(fl_device d);
extern const fl_device FL_CPU_DEVICE;

/* f16/bf16 conversions: round to nearest even, NaN and Inf kept. */
uint16_t fl_f32_to_f16(float f);
float fl_f16_to_f32(uint16_t h);
uint16_t fl_f32_to_bf16(float f);
float fl_bf16_to_f32(uint16_t h);

/* ---- memory ---- */
typedef struct {
  int64_t allocated, reserved, peak, num_allocs, num_frees, num_cache_hits, num_ooms;
} fl_memory_stats;
fl_status fl_memory_stats_get(fl_device d, fl_memory_stats *out);
fl_status fl_empty_cache(fl_device d);
/* CPU threads for large ops (default: FLAME_NUM_THREADS, else OpenMP's default).
 * Results do not depend on it, except that a float sum/mean/var over fewer
 * outputs than threads adds its per-thread partial sums in another order. */
fl_status fl_set_num_threads(int n);
int fl_get_num_threads(void);
/* The monotonic clock (CLOCK_MONOTONIC) in nanoseconds and in seconds: the one clock of deadlines, timeouts, the
 * profiler and flame.timer() (src/core/clock.c). */
int64_t fl_now_ns(void);
double fl_now_s(void);
/* ---- contexts: what one engine state owns (src/core/context.c) ----
 * The random generator, grad mode, autocast mode, the OOM handler and allocation observer, a limit on the
 * tensor bytes per device, and a stop flag that a budget or another thread sets. Each thread has a current
 * context; until it enters one it uses the process default (one generator shared by such threads, grad and
 * autocast modes per thread, no limit). The Lua states of flame_lua_open (flame_lua.h) each own one. */
typedef struct fl_context fl_context;
fl_status fl_context_new(fl_context **out);
/* Drops the caller's reference: the context lives on while storages charged to it do. */
void fl_context_release(fl_context *c);
/* Makes c (NULL: the default) the calling thread's current context; returns the previous one (NULL: the
 * default), to be entered again when the caller is done. */
fl_context *fl_context_enter(fl_context *c);
fl_context *fl_context_current(void); /* NULL: the default */
/* At most `bytes` of tensor storage on device d charged to c at a time (0: no limit). A storage is charged to
 * the context current when it is allocated, until it is freed; an allocation past the limit runs c's OOM
 * handler once, then fails with FL_ENOMEM naming the limit. */
fl_status fl_context_set_memory_limit(fl_context *c, fl_device d, size_t bytes);
size_t fl_context_memory_used(const fl_context *c, fl_device d);
/* Asks the code running in c to stop: from any thread, async-signal-safe. Ops started after it (and long CPU
 * kernels between chunks) fail with FL_EINTERRUPTED until fl_context_reset_stop. */
void fl_context_interrupt(fl_context *c);
/* A wall-time budget: ops started more than `seconds` from now fail with FL_EINTERRUPTED (0: none). */
void fl_context_set_deadline(fl_context *c, double seconds);
void fl_context_reset_stop(fl_context *c); /* clears an interrupt and the deadline */
/* Whether c should stop now (an interrupt, or its deadline passed): sets the stop flag and the message
 * ("interrupted" or "budget exceeded") and returns FL_EINTERRUPTED; FL_OK otherwise. */
fl_status fl_context_check(fl_context *c);

/* Called when an allocation fails (or would pass the context's memory limit), before one retry: a host
 * frees what it can (the Lua binding runs a full garbage collection). Set on the current context (for the
 * default context: on the calling thread). */
typedef void (*fl_oom_handler)(void *ud, size_t nbytes);
void fl_set_oom_handler(fl_oom_handler fn, void *ud);
/* Called with the bytes of every new storage, so a host can pace its collector. Set like the OOM handler. */
typedef void (*fl_alloc_observer)(void *ud, size_t nbytes);
void fl_set_alloc_observer(fl_alloc_observer fn, void *ud);

/* ---- tensor lifetime and metadata ---- */
fl_tensor *fl_retain(fl_tensor *t);
void fl_release(fl_tensor *t);
int fl_ndim(const fl_tensor *t);
const int64_t *fl_shape(const fl_tensor *t);
const int64_t *fl_strides(const fl_tensor *t);
int64_t fl_offset(const fl_tensor *t);
int64_t fl_numel(const fl_tensor *t);
fl_dtype fl_dtype_of(const fl_tensor *t);
fl_device fl_device_of(const fl_tensor *t);
bool fl_is_contiguous(const fl_tensor *t);
bool fl_same_storage(const fl_tensor *a, const fl_tensor *b);
/* PyTorch's is_set_to: the same memory seen the same way (storage, offset, shape, strides, dtype). */
bool fl_is_set_to(const fl_tensor *a, const fl_tensor *b);
/* A string like "[2, 3]" for messages. */
const char *fl_shape_str(const fl_tensor *t, char *buf, size_t n);

/* ---- creation ---- */
typedef struct { fl_dtype dtype; fl_device device; bool requires_grad; } fl_opts;
fl_opts fl_default_opts(void);
fl_status fl_empty(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_full(int ndim, const int64_t *shape, double value, fl_opts o, fl_tensor **out);
fl_status fl_zeros(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_ones(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_scalar(double value, fl_opts o, fl_tensor **out); /* 0-dim */
/* From host data of dtype o.dtype laid out contiguously. */
fl_status fl_from_host(const void *data, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_from_doubles(const double *data, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_arange(double start, double stop, double step, fl_opts o, fl_tensor **out);
fl_status fl_linspace(double a, double b, int64_t n, fl_opts o, fl_tensor **out);
fl_status fl_eye(int64_t n, int64_t m, fl_opts o, fl_tensor **out);
fl_status fl_rand(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_randn(int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
fl_status fl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, fl_opts o, fl_tensor **out);
void fl_manual_seed(uint64_t seed);
/* Reserve n random counters from the global Philox stream (for dropout masks). */
void fl_philox_reserve(uint64_t n, uint64_t *seed, uint64_t *offset);
/* Sets the generator's state (seed, counter offset); read it with fl_philox_reserve(0, ...). */
void fl_rng_set_state(uint64_t seed, uint64_t offset);

/* ---- zero copy: tensors over the host's memory (src/core/blob.c; docs/embedding.md) ---- */
/* Called once, with the ctx and data given to fl_tensor_from_blob, when the last tensor or view over that
 * memory is released. It runs on the thread that drops the last reference. */
typedef void (*fl_deleter)(void *ctx, void *data);
/* A tensor over memory the host owns: data points at element 0 (a CPU pointer, or a CUDA device pointer when
 * dev is a CUDA device), shape and strides in elements (strides NULL: contiguous row-major; negative and zero
 * strides are allowed), dtype dt. No copy: writes through data show in the tensor and the other way round.
 * flame never frees or moves the memory; deleter (may be NULL) runs when the last reference goes. data must
 * be aligned to the dtype's size and may be NULL only for zero elements; the reach of the strides in bytes
 * must fit int64. On failure nothing is kept and the deleter is not called: the memory stays the caller's.
 * The tensor does not require grad (fl_set_requires_grad makes it a leaf). */
fl_status fl_tensor_from_blob(void *data, int ndim, const int64_t *shape, const int64_t *strides, fl_dtype dt,
                              fl_device dev, fl_deleter deleter, void *ctx, fl_tensor **out);
/* The address of t's element 0 (its offset applied) on t's device; NULL for a zero-size tensor made by flame.
 * Valid while a reference to t (or a view of its storage) is held. With fl_shape, fl_strides (in elements),
 * fl_dtype_of and fl_device_of it describes the memory completely. CUDA work is asynchronous: call
 * fl_synchronize(fl_device_of(t)) before the host reads or writes memory that queued ops use. */
void *fl_tensor_data(const fl_tensor *t);
/* Tells autograd that the host wrote t's memory itself (through fl_tensor_data or its own pointer), so a
 * backward that saved t reports the change instead of using the new values silently. */
void fl_mark_modified(fl_tensor *t);

/* ---- the host's CUDA stream (src/core/context.c, cuda/context.cu; docs/embedding.md) ---- */
/* Orders all work on CUDA device d that runs while c is current (NULL: the default context) on `stream`, a
 * cudaStream_t passed as void *: kernels, cuBLAS and cuDNN calls, copies, the pinned staging of host-to-device
 * copies; NCCL collectives wait for it and it waits for them. fl_synchronize(d), fl_to_host and fl_item wait for
 * that stream. NULL goes back to flame's own stream for d. The switch is ordered: the new stream first waits
 * (on the GPU) for what the old one queued, and leaving a host stream waits on the host for its work. The stream
 * must stay valid until it is unset, or until flame_lua_close for a state's context; do not switch while c runs
 * ops on another thread. Memory c allocates while the stream is set is reused by later work on that stream; a
 * tensor that work on other streams also uses must be recorded (fl_tensor_record_stream). */
fl_status fl_context_set_stream(fl_context *c, fl_device d, void *stream);
/* The stream set for d, NULL when c uses flame's own. */
void *fl_context_stream(const fl_context *c, fl_device d);
/* PyTorch's Tensor.record_stream: t's memory is also used by work queued on `stream` (a cudaStream_t; NULL: the
 * current context's stream for t's device, flame's own when none is set). When its last reference goes, flame
 * reuses the memory only after the work queued on that stream until then has completed (an event recorded at
 * the free, polled by later allocations), instead of at once in the order of the stream it was allocated on.
 * Needed when a tensor made on one stream is read or written by work on another (the host's own kernels, or a
 * state with another stream) and may be freed before that work is done; flame_lua_call records its inputs on
 * the state's stream itself. The stream must stay valid until t's memory is freed (or be one given to a
 * context with fl_context_set_stream, which clears the record when it is unset). A no-op for CPU tensors and
 * memory the host owns (fl_tensor_from_blob). */
fl_status fl_tensor_record_stream(const fl_tensor *t, void *stream);

/* ---- host access (synchronises) ---- */
fl_status fl_to_host(const fl_tensor *t, void *dst); /* contiguous copy, t's dtype */
fl_status fl_to_doubles(const fl_tensor *t, double *dst);
fl_status fl_item(const fl_tensor *t, double *out);

/* ---- conversion and copies ---- */
fl_status fl_to(const fl_tensor *t, fl_dtype dt, fl_device dev, fl_tensor **out);
fl_status fl_cast(const fl_tensor *t, fl_dtype dt, fl_tensor **out);
fl_status fl_to_device(const fl_tensor *t, fl_device dev, fl_tensor **out);
fl_status fl_contiguous(const fl_tensor *t, fl_tensor **out);
fl_status fl_clone(const fl_tensor *t, fl_tensor **out);
fl_status fl_detach(const fl_tensor *t, fl_tensor **out);
/* In-place: dst <- src (broadcast, cast, any device pair). */
fl_status fl_copy_(fl_tensor *dst, const fl_tensor *src);
fl_status fl_fill_(fl_tensor *t, double value);
fl_status fl_zero_(fl_tensor *t);
fl_status fl_uniform_(fl_tensor *t, double lo, double hi);
fl_status fl_normal_(fl_tensor *t, double mean, double std);

/* ---- views (share storage) ---- */
fl_status fl_view(const fl_tensor *t, int ndim, const int64_t *shape, fl_tensor **out);
fl_status fl_reshape(const fl_tensor *t, int ndim, const int64_t *shape, fl_tensor **out);
fl_status fl_permute(const fl_tensor *t, const int *dims, fl_tensor **out);
fl_status fl_transpose(const fl_tensor *t, int d0, int d1, fl_tensor **out);
fl_status fl_narrow(const fl_tensor *t, int dim, int64_t start, int64_t length, fl_tensor **out);
fl_status fl_select(const fl_tensor *t, int dim, int64_t index, fl_tensor **out);
/* n views of t along dim, of sizes[0..n-1] (adding up to its size there), with one backward node (their
 * gradients concatenated); outs[0..n-1] are NULL on an error. */
fl_status fl_split(const fl_tensor *t, int dim, int n, const int64_t *sizes, fl_tensor **outs);
fl_status fl_squeeze(const fl_tensor *t, int dim, fl_tensor **out); /* dim < 0 .. see FL_ALL_DIMS */
fl_status fl_squeeze_all(const fl_tensor *t, fl_tensor **out);
fl_status fl_unsqueeze(const fl_tensor *t, int dim, fl_tensor **out);
fl_status fl_expand(const fl_tensor *t, int ndim, const int64_t *shape, fl_tensor **out);
fl_status fl_flatten(const fl_tensor *t, int start, int stop, fl_tensor **out);
fl_status fl_flip(const fl_tensor *t, int ndims, const int *dims, fl_tensor **out); /* copy */
fl_status fl_cat(int n, fl_tensor *const *ts, int dim, fl_tensor **out);
fl_status fl_stack(int n, fl_tensor *const *ts, int dim, fl_tensor **out);

/* ---- elementwise ---- */
typedef enum {
  FL_NEG, FL_EXP, FL_LOG, FL_SQRT, FL_RSQRT, FL_ABS, FL_SIN, FL_COS, FL_TANH,
  FL_SIGMOID, FL_RELU, FL_GELU, FL_GELU_TANH, FL_SILU, FL_SIGN, FL_LOGICAL_NOT,
  FL_CLAMP, /* params[0], params[1]: min, max; NaN means none */
  /* rounding to an integral value in the input's dtype (integers pass through unchanged);
   * ROUND is half to even, as torch.round */
  FL_FLOOR, FL_CEIL, FL_ROUND, FL_TRUNC,
  FL_NUNARY
} fl_unary_op;
typedef enum {
  FL_ADD, FL_SUB, FL_MUL, FL_DIV, FL_POW, FL_MAXIMUM, FL_MINIMUM,
  FL_EQ, FL_NE, FL_LT, FL_LE, FL_GT, FL_GE, FL_AND, FL_OR,
  /* fused backward helpers: a = incoming gradient, b = the saved input or output */
  FL_RELU_BACKWARD, FL_GELU_BACKWARD, FL_GELU_TANH_BACKWARD, FL_SILU_BACKWARD,
  FL_SIGMOID_BACKWARD, FL_TANH_BACKWARD,
  FL_NBINARY
} fl_binary_op;
const char *fl_unary_name(fl_unary_op op);
const char *fl_binary_name(fl_binary_op op);
fl_status fl_unary(fl_unary_op op, const fl_tensor *x, fl_tensor **out);
fl_status fl_clamp(const fl_tensor *x, double lo, double hi, fl_tensor **out); /* NaN: no bound */
fl_status fl_binary(fl_binary_op op, const fl_tensor *a, const fl_tensor *b, fl_tensor **out);
/* Tensor op number; reversed=true computes number op tensor. The number is passed
 * to the kernel by value and does not widen the tensor's dtype, except that a
 * fraction makes an integer tensor's result f32. */
fl_status fl_binary_scalar(fl_binary_op op, const fl_tensor *a, double s, bool reversed, fl_tensor **out);
/* The same with s taken as a floating-point number even when it is integral
 * (a Lua float such as 2.0): an integer tensor's result is then f32. */
fl_status fl_binary_scalar_float(fl_binary_op op, const fl_tensor *a, double s, bool reversed, fl_tensor **out);
fl_status fl_add(const fl_tensor *a, const fl_tensor *b, double alpha, fl_tensor **out);
fl_status fl_where(const fl_tensor *cond, const fl_tensor *a, const fl_tensor *b, fl_tensor **out);
fl_status fl_lerp(const fl_tensor *a, const fl_tensor *b, const fl_tensor *w, fl_tensor **out);
fl_status fl_masked_fill(const fl_tensor *x, const fl_tensor *mask, double value, fl_tensor **out);
/* In place: dst <- dst op src (broadcast src). Not recorded by autograd. */
fl_status fl_binary_(fl_binary_op op, fl_tensor *dst, const fl_tensor *src);
fl_status fl_binary_scalar_(fl_binary_op op, fl_tensor *dst, double s);
fl_status fl_unary_(fl_unary_op op, fl_tensor *x);
fl_status fl_clamp_(fl_tensor *x, double lo, double hi);
/* NaN and infinity tests (bool; false for integers), and their replacement. */
fl_status fl_isnan(const fl_tensor *x, fl_tensor **out);
fl_status fl_isinf(const fl_tensor *x, fl_tensor **out);
/* NaN -> nan, +inf -> posinf, -inf -> neginf (NaN arguments: 0, and the dtype's largest / lowest finite value). */
fl_status fl_nan_to_num(const fl_tensor *x, double nan, double posinf, double neginf, fl_tensor **out);
/* |a - b| <= atol + rtol |b| elementwise (bool, broadcast), with NaN equal to NaN when equal_nan;
 * infinities are close to themselves. allclose: whether every element is. */
fl_status fl_isclose(const fl_tensor *a, const fl_tensor *b, double rtol, double atol, bool equal_nan, fl_tensor **out);
fl_status fl_allclose(const fl_tensor *a, const fl_tensor *b, double rtol, double atol, bool equal_nan, bool *out);
/* The lower (tril) or upper (triu) triangle of the last two dims, from diagonal k on
 * (k > 0 above the main diagonal); the rest is zero. */
fl_status fl_tril(const fl_tensor *x, int64_t k, fl_tensor **out);
fl_status fl_triu(const fl_tensor *x, int64_t k, fl_tensor **out);

/* ---- reductions ---- */
typedef enum { FL_RSUM, FL_RMEAN, FL_RPROD, FL_RMAX, FL_RMIN, FL_RARGMAX, FL_RARGMIN, FL_RVAR, FL_NREDUCE } fl_reduce_op;
/* dims: bitmask of dims to reduce (0 means all). */
fl_status fl_sum(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_mean(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_prod(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_var(const fl_tensor *x, uint32_t dims, double correction, bool keepdim, fl_tensor **out);
fl_status fl_std(const fl_tensor *x, uint32_t dims, double correction, bool keepdim, fl_tensor **out);
fl_status fl_amax(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_amin(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
/* One dim: values and i64 indices. */
fl_status fl_max_dim(const fl_tensor *x, int dim, bool keepdim, fl_tensor **values, fl_tensor **indices);
fl_status fl_min_dim(const fl_tensor *x, int dim, bool keepdim, fl_tensor **values, fl_tensor **indices);
/* dim FL_ALL_DIMS: over the flattened tensor (negative dims count from the end). */
#define FL_ALL_DIMS INT32_MIN
fl_status fl_argmax(const fl_tensor *x, int dim, bool keepdim, fl_tensor **out);
fl_status fl_argmin(const fl_tensor *x, int dim, bool keepdim, fl_tensor **out);
/* The same with indices returned as base + i (base 1 for Lua). */
fl_status fl_max_dim_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **values,
                        fl_tensor **indices);
fl_status fl_min_dim_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **values,
                        fl_tensor **indices);
fl_status fl_argmax_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **out);
fl_status fl_argmin_ex(const fl_tensor *x, int dim, bool keepdim, int64_t base, fl_tensor **out);
fl_status fl_norm(const fl_tensor *x, double p, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_cumsum(const fl_tensor *x, int dim, fl_tensor **out);
fl_status fl_softmax(const fl_tensor *x, int dim, fl_tensor **out);
fl_status fl_log_softmax(const fl_tensor *x, int dim, fl_tensor **out);
/* log(sum(exp(x))) over dims, computed as max + log(sum(exp(x - max))): no overflow. */
fl_status fl_logsumexp(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
/* all/any over dims (0: all dims): bool, true where every / some element is non-zero. */
fl_status fl_all(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);
fl_status fl_any(const fl_tensor *x, uint32_t dims, bool keepdim, fl_tensor **out);

/* ---- sorting (ops/sort.c) ----
 * Stable: equal elements keep their order, in both directions. NaN sorts as the
 * largest value (last ascending, first descending) and -0 equals +0, as torch.
 * indices are i64 positions along dim plus base (0 for the C API, 1 from Lua);
 * values or indices may be NULL when not wanted. */
fl_status fl_sort_ex(const fl_tensor *x, int dim, bool descending, int64_t base, fl_tensor **values,
                     fl_tensor **indices);
fl_status fl_sort(const fl_tensor *x, int dim, bool descending, fl_tensor **values, fl_tensor **indices);
fl_status fl_argsort(const fl_tensor *x, int dim, bool descending, fl_tensor **out);
/* The k largest (or smallest) along dim, in sorted order; 0 <= k <= size of dim. */
fl_status fl_topk_ex(const fl_tensor *x, int64_t k, int dim, bool largest, int64_t base, fl_tensor **values,
                     fl_tensor **indices);
fl_status fl_topk(const fl_tensor *x, int64_t k, int dim, bool largest, fl_tensor **values, fl_tensor **indices);
/* A random permutation of base .. base + n - 1 from the seeded Philox stream (an argsort of
 * random keys): the same seed gives the same permutation on every device. o.dtype: i64 or i32. */
fl_status fl_randperm_ex(int64_t n, int64_t base, fl_opts o, fl_tensor **out);
fl_status fl_randperm(int64_t n, fl_opts o, fl_tensor **out);

/* ---- linear algebra ---- */
fl_status fl_matmul(const fl_tensor *a, const fl_tensor *b, fl_tensor **out);
/* y = x @ w^T + b (b may be NULL): x [..., in], w [out, in], b [out] -> y [..., out];
 * one GEMM with the bias fused, differentiable in x, w and b. */
fl_status fl_linear(const fl_tensor *x, const fl_tensor *w, const fl_tensor *b, fl_tensor **out);
fl_status fl_bmm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out);
fl_status fl_mm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out);
void fl_set_allow_tf32(bool on);
bool fl_get_allow_tf32(void);

/* ---- indexing (indices are i64 or i32, 0-based) ---- */
fl_status fl_index_select(const fl_tensor *x, int dim, const fl_tensor *idx, fl_tensor **out);
fl_status fl_index_add_(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha);
/* Out of place and differentiable (index_add_ is not recorded by autograd). */
fl_status fl_index_add(const fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha, fl_tensor **out);
fl_status fl_gather(const fl_tensor *x, int dim, const fl_tensor *idx, fl_tensor **out);
fl_status fl_scatter_add(const fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, fl_tensor **out);
/* The same with indices stored as base + i (base 1 for 1-based callers such as
 * Lua): the kernels subtract the base, so no pass over the index is made.
 * Out-of-range messages count positions from the message base (fl_set_message_base):
 * with both bases 1 they quote the index as stored. */
fl_status fl_index_select_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, fl_tensor **out);
fl_status fl_index_add_ex_(fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                           double alpha);
fl_status fl_index_add_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                          double alpha, fl_tensor **out);
fl_status fl_gather_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, fl_tensor **out);
fl_status fl_scatter_add_ex(const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base, const fl_tensor *src,
                            fl_tensor **out);

/* ---- neural-network ops (flame.nn.functional; issue 7's families) ---- */
/* -- norms -- */
/* PyTorch's layer_norm, rms_norm and group_norm (biased variance). normalized_shape: the trailing nshape dims of
 * x; w and b (each may be NULL) have that shape (group_norm: [C], x [N, C, *]); x float, w/b x's dtype or f32
 * (with an f16/bf16 x). eps >= 0 (1e-5 is PyTorch's default; rms_norm's too here). Differentiable in x, w, b. */
fl_status fl_layer_norm(const fl_tensor *x, int nshape, const int64_t *normalized_shape, const fl_tensor *w,
                        const fl_tensor *b, double eps, fl_tensor **out);
fl_status fl_rms_norm(const fl_tensor *x, int nshape, const int64_t *normalized_shape, const fl_tensor *w, double eps,
                      fl_tensor **out);
fl_status fl_group_norm(const fl_tensor *x, int64_t groups, const fl_tensor *w, const fl_tensor *b, double eps,
                        fl_tensor **out);
/* silu(group_norm(x, groups, w, b, eps)): one pass where the backend has it (CPU) and nothing needs a gradient,
 * else the two ops (so its gradient is theirs). Errors name "group_norm_silu". */
fl_status fl_group_norm_silu(const fl_tensor *x, int64_t groups, const fl_tensor *w, const fl_tensor *b, double eps,
                             fl_tensor **out);

/* -- convolution -- */
/* N-d convolution (nsp = 1, 2 or 3 spatial dims) as PyTorch's conv{1,2,3}d and
 * conv_transpose{1,2,3}d: x [n, cin, in...] (or unbatched [cin, in...]),
 * w [cout, cin/groups, k...] (transposed: [cin, cout/groups, k...]), b [cout] or NULL;
 * differentiable in x, w and b. Per-dim sizes in fl_conv_params (entries past nsp unused). */
typedef enum { FL_CONV_PAD_EXPLICIT, FL_CONV_PAD_SAME, FL_CONV_PAD_VALID } fl_conv_padding;
typedef struct {
  int64_t stride[3], padding[3], dilation[3], output_padding[3]; /* output_padding: transposed only */
  int64_t groups;
  fl_conv_padding pad_mode; /* SAME (stride 1 only) / VALID override padding, as PyTorch's strings */
} fl_conv_params;
fl_conv_params fl_conv_default_params(void); /* stride 1, padding 0, dilation 1, groups 1 */
fl_status fl_conv(int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b, const fl_conv_params *p,
                  fl_tensor **out);
fl_status fl_conv_transpose(int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b,
                            const fl_conv_params *p, fl_tensor **out);
/* Which path computes a convolution (process-wide; returns the previous setting): AUTO takes the
 * backend's direct path (CUDA: cuDNN) where it accepts the case, else im2col + GEMM; GEMM always
 * im2col + GEMM; DIRECT only the direct path (an error where there is none). */
typedef enum { FL_CONV_AUTO, FL_CONV_GEMM, FL_CONV_DIRECT } fl_conv_algo;
fl_conv_algo fl_set_conv_algo(fl_conv_algo a);
fl_conv_algo fl_get_conv_algo(void);
/* The im2col path's workspace cap in bytes (default 256 MiB): the images of a batch are
 * processed in chunks whose column buffers fit it (at least one image per chunk).
 * Returns the previous cap; 0 restores the default. */
int64_t fl_set_conv_workspace(int64_t bytes);

/* -- index and losses -- */
/* embedding: weight [V, D] rows picked by ids (i64 or i32, any shape, stored as base + row): ids.shape + [D].
 * padding_row (0-based, or -1 for none) gets no gradient. The backward adds each id's gradient row into a fresh
 * [V, D] (deterministic on CUDA). An id outside [base, base + V) is FL_EINDEX (on CUDA at the next sync). */
fl_status fl_embedding_ex(const fl_tensor *ids, const fl_tensor *weight, int64_t padding_row, int64_t base,
                          fl_tensor **out);
typedef enum { FL_LOSS_NONE, FL_LOSS_MEAN, FL_LOSS_SUM } fl_loss_reduction;
typedef struct {
  fl_loss_reduction reduction;
  bool has_ignore;        /* class-index targets equal to ignore_index (as stored) are skipped */
  int64_t ignore_index;
  double label_smoothing; /* in [0, 1] */
  const fl_tensor *weight; /* NULL or [C] class weights (no gradient, as in PyTorch) */
  int64_t base;           /* class-index targets are stored as base + class */
} fl_ce_opts;
/* cross_entropy: logits [N, C] or [N, C, d1, ...] ([C] for one sample), target [N, d1, ...] class indices
 * (i64/i32) or probabilities of logits' shape and dtype. A fused log-softmax + NLL with label smoothing;
 * "mean" is PyTorch's weighted mean over the non-ignored targets (over N * d1 * ... for probabilities). */
fl_status fl_cross_entropy(const fl_tensor *logits, const fl_tensor *target, const fl_ce_opts *o, fl_tensor **out);

/* -- pooling, resizing, padding -- */
/* Pools over the last nsp (1 to 3) dims of x [N, C, *spatial] or unbatched [C, *spatial] (float dtypes), with
 * PyTorch's output sizes and windows. kernel, stride (NULL: the kernel), padding (NULL: 0) and dilation (NULL:
 * 1) hold nsp sizes; padding is at most half the kernel. avg divides by the window including the padding when
 * count_include_pad (PyTorch's default). max's indices (NULL: not wanted) are i64, base + the flat position of
 * each output's argmax within its input plane (PyTorch's, with base 0). Differentiable in x; the backward of
 * max goes through the saved argmax. */
fl_status fl_avg_pool(const fl_tensor *x, int nsp, const int64_t *kernel, const int64_t *stride,
                      const int64_t *padding, bool ceil_mode, bool count_include_pad, fl_tensor **out);
fl_status fl_max_pool(const fl_tensor *x, int nsp, const int64_t *kernel, const int64_t *stride,
                      const int64_t *padding, const int64_t *dilation, bool ceil_mode, int64_t base,
                      fl_tensor **out, fl_tensor **indices);
/* The mean over PyTorch's adaptive windows to an output of size (nsp sizes; a negative one keeps the input's). */
fl_status fl_adaptive_avg_pool(const fl_tensor *x, int nsp, const int64_t *size, fl_tensor **out);
typedef enum { FL_INTERP_NEAREST, FL_INTERP_LINEAR } fl_interp_mode;
/* Resizes the spatial dims of x [N, C, *spatial] (1 to 3 of them): to size, or by scale (exactly one of the
 * two non-NULL, ndim - 2 entries), with PyTorch's coordinate rules (scale factors used as given, as its
 * recompute_scale_factor default); LINEAR is linear, bilinear or trilinear by the rank, align_corners for it. */
fl_status fl_interpolate(const fl_tensor *x, const int64_t *size, const double *scale, fl_interp_mode mode,
                         bool align_corners, fl_tensor **out);
typedef enum { FL_PAD_CONSTANT, FL_PAD_REFLECT, FL_PAD_REPLICATE } fl_pad_mode;
/* Pads (negative: crops) x by npads values, (before, after) pairs from the last dim backwards: constant for
 * any dims (with value), reflect and replicate for the last 1 to 3 dims of a tensor with 1 or 2 more. */
fl_status fl_pad(const fl_tensor *x, int npads, const int64_t *pads, fl_pad_mode mode, double value,
                 fl_tensor **out);

/* -- dropout and attention -- */
/* Dropout with the global generator: x * keep / (1 - p), keep a pure function of (seed, offset, element
 * index in row-major order) drawn from Philox (src/core/dropout_keep.h), the same on every device. p in
 * [0, 1]; training false or p == 0 returns x itself (a new reference); p == 1 gives zeros. The backward
 * regenerates the mask from (seed, offset, p). */
fl_status fl_dropout(const fl_tensor *x, double p, bool training, fl_tensor **out);
/* The same with the counters given: the mask of (seed, offset). */
fl_status fl_dropout_seeded(const fl_tensor *x, double p, uint64_t seed, uint64_t offset, fl_tensor **out);
/* The attention-dropout mask applied to x (the probabilities [B, Hq, Sq, Sk] of the reference attention, or a
 * [nseq, Hq, max_q, max_k] mask of ones for varlen): fl_dropout's op with the byte rule of
 * src/core/dropout_keep.h (16 elements per Philox block, keep probability round((1 - p) 256) / 256, kept values
 * scaled by 1 / (1 - p)), one reservation of ceil(numel / 16) counters: the mask fl_flash_attention regenerates.
 * Always in training; p == 0 returns x itself. Backward: the same mask (NativeDropoutBackward). */
fl_status fl_attention_dropout(const fl_tensor *x, double p, fl_tensor **out);
/* Softmax over the last dim of scores s [..., Sq, Sk] restricted to the allowed keys: mask (NULL, or bool
 * broadcastable to s, true = attend) and, with causal, key j of query i (0-based, the last two dims) only where
 * j <= i + shift (0: top-left, Sk - Sq: bottom-right). Masked keys get 0; a row with no allowed finite score is
 * all 0, with zero gradient. One kernel; the backward is softmax's. */
fl_status fl_masked_softmax(const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift, fl_tensor **out);
/* Fused attention (FlashAttention-2's algorithm; docs/architecture.md, "Flash attention"): softmax(scale q k^T,
 * masked) (dropped out) v with O(seq) memory. Dense (cu_q == NULL): q [B, Hq, Sq, D], k, v [B, Hk, Sk, D];
 * varlen: q [total_q, Hq, D], k, v [total_k, Hk, D] with cu_q, cu_k i32 [nseq + 1] on q's device (0-based prefix
 * sums, the caller validates their values: a bad one gives wrong rows, never an access outside) and
 * max_q/max_k >= every sequence's length. Hk divides Hq (query head h uses k/v head h / (Hq / Hk)). causal: 0
 * none, 1 top-left (key j of query i where j <= i), 2 bottom-right (j <= i + Sk - Sq, per sequence). p in [0, 1]:
 * the dropout probability (0: none); the mask is the reference attention's, fl_attention_dropout's (one
 * reservation of the global generator of ceil(B Hq Sq Sk / 16) counters, max_q/max_k for varlen). The result is
 * contiguous, q's shape and dtype; a row without an allowed key gives 0. Only where fl_flash_attention_supported says yes (CUDA, bf16/f16,
 * head_dim 32/64/96/128); elsewhere an error, never another path. The backward (dq, dk, dv) is fused too. */
fl_status fl_flash_attention(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v, const fl_tensor *cu_q,
                             const fl_tensor *cu_k, int64_t max_q, int64_t max_k, double scale, int causal, double p,
                             fl_tensor **out);
/* Whether fl_flash_attention runs for q, k, v of these devices, dtypes and head dims (no error set). */
bool fl_flash_attention_supported(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v);
/* The forward kernel fl_flash_attention would run for q, k, v (the backend's name for it, "fused" where it has one
 * only); NULL where fl_flash_attention_supported says no. */
const char *fl_flash_attention_forward_kernel(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v);
/* The gradient of y = softmax(x, dim) (log: y = log_softmax(x, dim)) for the upstream g: one fused kernel over
 * the last dim where the backend has one (and grad mode is off), else composed from ops. */
fl_status fl_softmax_backward(const fl_tensor *g, const fl_tensor *y, int dim, bool log, fl_tensor **out);

/* ---- issue 8: optimizers, checkpoints, data and images ---- */
/* -- optimizers -- */
/* One optimizer step over n parameters at once (flame.optim): the update math of PyTorch's SGD, Adam and AdamW
 * (torch/optim/sgd.py, adam.py, adamw.py) in one backend call, a fused multi-tensor kernel on CUDA. Every
 * params[i] is a contiguous float tensor, all on one device; grads[i] has its shape and dtype (any layout: a
 * strided one is copied); the state tensors (buf1/buf2/buf3[i]) are contiguous, of the param's shape, in the
 * param's dtype for f32/f64 and f32 for f16/bf16 params. params and the state are updated in place.
 * SGD: buf1 the momentum buffers (unused when momentum == 0); first: they are fresh and get d_p itself.
 * Adam/AdamW: buf1 exp_avg, buf2 exp_avg_sq, buf3 max_exp_avg_sq (amsgrad only, else NULL); steps[i] is
 * param i's step count including this step (>= 1); decoupled: AdamW's decay p *= 1 - lr * weight_decay. */
typedef enum { FL_OPTIM_SGD, FL_OPTIM_ADAM } fl_optim_kind;
typedef struct fl_optim_args {
  fl_optim_kind kind;
  int n;
  fl_tensor *const *params;
  const fl_tensor *const *grads;
  fl_tensor *const *buf1, *const *buf2, *const *buf3;
  const int64_t *steps;
  double lr, weight_decay;
  double momentum, dampening;  /* SGD */
  double beta1, beta2, eps;    /* Adam */
  bool maximize, nesterov, first, decoupled, amsgrad;
} fl_optim_args;
fl_status fl_optim_step(const fl_optim_args *a);
/* The total p-norm of n tensors (one float dtype, one device, any shapes) as if they were concatenated: one fused
 * reduction, the result a new 0-dim tensor (f64 for f64 inputs, else f32) that stays on the device. p may be
 * INFINITY (the largest |x|); p > 0. n == 0 gives 0. */
fl_status fl_multi_norm(int n, const fl_tensor *const *xs, double p, fl_tensor **out);
/* xs[i] *= min(1, max_norm / (norm + 1e-6)) with norm a 0-dim float tensor on the same device, read there
 * (no host sync): clip_grad_norm_'s scaling. xs contiguous, float, on norm's device. */
fl_status fl_multi_clip(int n, fl_tensor *const *xs, const fl_tensor *norm, double max_norm);
/* dst[i] -= w * (dst[i] - src[i]) for each i (an EMA update with w = 1 - decay): dst contiguous float, src
 * of dst[i]'s shape and dtype (any layout; a strided one is copied), one device. */
fl_status fl_multi_lerp(int n, fl_tensor *const *dst, const fl_tensor *const *src, double w);
/* dst[i] = src[i] for each i, under the same rules as fl_multi_lerp: one fused launch on CUDA where n copies
 * would be n (DistributedDataParallel moves a bucket's fresh gradients into it with one). */
fl_status fl_multi_copy(int n, fl_tensor *const *dst, const fl_tensor *const *src);

/* -- checkpoints (safetensors) -- */
/* safetensors files (src/io/safetensors*.c): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}, then the data
 * (offsets relative to its start). Opening checks the whole file as the reference (Rust) reader does, a little
 * more strictly (docs/architecture.md, Checkpoints); the data stays in the file (mapped) until a tensor is
 * loaded, and each tensor is then copied once, from the mapped pages into its storage. */
typedef struct { const char *s; size_t len; } fl_st_str; /* bytes with a length: names may hold NUL bytes */
typedef struct fl_safetensors fl_safetensors;
typedef struct {
  fl_st_str name;
  fl_dtype dtype;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t offset, nbytes; /* within the data */
} fl_st_info;
fl_status fl_safetensors_open(const char *path, fl_safetensors **out);
/* The same over size bytes in memory, which the caller keeps until close; label names them in messages. */
fl_status fl_safetensors_parse(const void *data, size_t size, const char *label, fl_safetensors **out);
void fl_safetensors_close(fl_safetensors *f); /* NULL is fine */
size_t fl_safetensors_count(const fl_safetensors *f);
void fl_safetensors_info(const fl_safetensors *f, size_t i, fl_st_info *out); /* i < count, in data order */
/* Tensor i as a new tensor on dev (not requiring grad). */
fl_status fl_safetensors_load(const fl_safetensors *f, size_t i, fl_device dev, fl_tensor **out);
size_t fl_safetensors_metadata_count(const fl_safetensors *f);
void fl_safetensors_metadata(const fl_safetensors *f, size_t i, fl_st_str *key, fl_st_str *value);
/* Writes the tensors (any layout and device; names UTF-8, unique, not "__metadata__") and the metadata
 * (UTF-8 strings; nmeta 0 writes none) as the reference writer does: tensors sorted by dtype (widest first,
 * its enum order) then name, metadata keys sorted, header padded with spaces to 8 bytes. Atomic: a temporary
 * file in path's directory, fsync, rename over path; on any error path is left as it was. */
typedef struct { fl_st_str name; const fl_tensor *tensor; } fl_st_entry;
typedef struct { fl_st_str key, value; } fl_st_meta;
fl_status fl_save_safetensors(const char *path, size_t n, const fl_st_entry *tensors, size_t nmeta,
                              const fl_st_meta *meta);
/* NumPy .npy (src/io/npy.c): versions 1.0-3.0, dtypes <f2 <f4 <f8 <i4 <i8 |b1 as they are, i1 i2 u1 u2 widened
 * to i32 and u4 to i64 (exactly), big-endian ones swapped. A fortran_order file gives the transposed view
 * of its C-order reading (non-contiguous, same values). save writes version 1.0 as np.save does (bf16:
 * an error, NumPy has none), atomically like fl_save_safetensors. */
fl_status fl_load_npy(const char *path, fl_device dev, fl_tensor **out);
fl_status fl_save_npy(const char *path, const fl_tensor *t);

/* -- data and images -- */

/* ---- autograd ---- */
bool fl_requires_grad(const fl_tensor *t);
fl_status fl_set_requires_grad(fl_tensor *t, bool on);
bool fl_is_leaf(const fl_tensor *t);
fl_tensor *fl_grad(const fl_tensor *t); /* borrowed; NULL if none */
fl_status fl_set_grad(fl_tensor *t, fl_tensor *g); /* g may be NULL */
fl_status fl_retain_grad(fl_tensor *t);
const char *fl_grad_fn_name(const fl_tensor *t);
bool fl_grad_enabled(void);
bool fl_set_grad_enabled(bool on); /* returns the previous mode */
/* The op profiler (src/core/profile.c): between start and stop, every kernel dispatch syncs the device and
 * charges the elapsed time to the previous op ("op" in the forward, "Node/op" inside a backward node). stop syncs
 * dev, ends it and returns the entries (valid until the next start on this thread). */
typedef struct {
  char name[96];
  double seconds;
  int64_t calls;
} fl_profile_entry;
void fl_profile_start(void);
int fl_profile_stop(fl_device dev, const fl_profile_entry **out);

/* Autocast (mixed precision, src/core/autocast.c): per thread, like grad mode. With dt FL_BF16 or FL_F16,
 * matmul, linear, the convolutions and attention run in dt and softmax, the norms and the losses in f32;
 * FL_NDTYPES turns it off. *prev (may be NULL) gets the previous dtype (FL_NDTYPES: it was off). */
fl_status fl_autocast_set(fl_dtype dt, fl_dtype *prev);
fl_dtype fl_autocast_get(void);
/* The two op lists: LOWER runs in the autocast dtype, WIDEN in f32 (f64 and integers are never cast). */
typedef enum { FL_AC_LOWER, FL_AC_WIDEN } fl_autocast_list;
/* True when autocast would cast any of the n arguments (NULLs allowed) for an op of the list. */
bool fl_autocast_wants(fl_autocast_list list, int n, const fl_tensor *const *xs);
/* out[i]: xs[i] cast (differentiably) as an op of the list casts it, or a new reference to it (NULL for NULL). */
fl_status fl_autocast_cast(fl_autocast_list list, int n, const fl_tensor *const *xs, fl_tensor **out);
/* grad may be NULL for a single-element output. */
fl_status fl_backward(fl_tensor *out, fl_tensor *grad, bool retain_graph);
/* Gradients of outputs w.r.t. inputs, without touching .grad. grads[i] is NULL
 * where an input is unreachable. grad_outputs may be NULL or hold NULLs. */
fl_status fl_autograd_grad(int n_out, fl_tensor *const *outputs, fl_tensor *const *grad_outputs,
                           int n_in, fl_tensor *const *inputs, bool retain_graph, fl_tensor **grads);
/* A hook sees a tensor's gradient when it is computed; setting *replace (a new
 * reference) replaces that gradient. A non-OK status aborts the backward pass. */
typedef fl_status (*fl_hook_fn)(void *ud, fl_tensor *grad, fl_tensor **replace);
fl_status fl_register_hook(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *));
/* PyTorch's register_post_accumulate_grad_hook: on a leaf, fn(ud, leaf, replace) runs after a backward stored
 * the leaf's .grad (not in autograd.grad, which stores none); it must leave *replace NULL. With it a gradient's
 * consumer (DistributedDataParallel) reads .grad where the engine put it, instead of a copy of each gradient. */
fl_status fl_register_post_accumulate_grad_hook(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *));

/* ---- distributed (src/dist/, cuda/nccl.cu) ---- */
/* The ranks' rendezvous over TCP: rank 0 listens on addr:port, the others connect (retrying until it is up) and
 * receive rank 0's n-byte blob (NCCL's unique id); returns once every rank has it (a barrier). A peer missing
 * or failing before timeout_s (0: 300 s) is an FL_EBACKEND error naming it. world 1: nothing to do. */
fl_status fl_rendezvous(const char *addr, int port, int rank, int world, void *blob, size_t n, double timeout_s);
/* A TCP port on addr that is free now (the system's pick for port 0), for a MASTER_PORT that concurrent jobs on one
 * host do not share. It is free until someone binds it: a rendezvous on it may still, rarely, find it taken. */
fl_status fl_free_port(const char *addr, int *port);
/* A communicator over world ranks on one device each (NCCL on CUDA). Rank 0 makes the unique id (up to cap
 * bytes, *n its size), hands it to every rank (fl_rendezvous), and each calls fl_comm_init with it. On the CPU
 * only world 1 exists (every collective is then the identity). */
typedef struct fl_comm fl_comm;
typedef enum { FL_RED_SUM, FL_RED_AVG, FL_RED_MAX, FL_RED_MIN } fl_red_op;
fl_status fl_comm_unique_id(fl_device dev, void *id, size_t cap, size_t *n);
fl_status fl_comm_init(fl_device dev, const void *id, size_t n, int rank, int world, fl_comm **out);
void fl_comm_destroy(fl_comm *c);
int fl_comm_rank(const fl_comm *c);
int fl_comm_size(const fl_comm *c);
fl_device fl_comm_device(const fl_comm *c);
/* The collectives, on contiguous tensors on the comm's device, queued without a host sync: on CUDA they run on the
 * comm's own stream, ordered after the work already queued and before the work queued next (events, no waits).
 * all_reduce and broadcast (root 0-based) work in place; all_gather: out holds world x in's elements (rank r's
 * block at r); reduce_scatter: in holds world x out's elements, out gets the reduction of block `rank`. */
fl_status fl_all_reduce(fl_comm *c, fl_tensor *t, fl_red_op op);
fl_status fl_broadcast(fl_comm *c, fl_tensor *t, int root);
fl_status fl_all_gather(fl_comm *c, const fl_tensor *in, fl_tensor *out);
fl_status fl_reduce_scatter(fl_comm *c, const fl_tensor *in, fl_tensor *out, fl_red_op op);
/* all_reduce without ordering the work queued next after it (PyTorch's async_op): it still runs after the work
 * already queued, but later work may run beside it, so communication overlaps compute. Until fl_comm_join, t must
 * not be read or written by other work; its memory is not reused before the collective ends, even if t is freed
 * (record-stream semantics). */
fl_status fl_all_reduce_async(fl_comm *c, fl_tensor *t, fl_red_op op);
/* The work queued after this call runs after every collective queued on c so far (no host wait). */
fl_status fl_comm_join(fl_comm *c);
/* The host waits for the queued collectives, checking for a failed or silent peer: an FL_EBACKEND error (and the
 * communicator aborted: every later call fails) when a peer failed or nothing completed within timeout_s. */
fl_status fl_comm_wait(fl_comm *c, double timeout_s);

#ifdef __cplusplus
}
#endif
#endif
