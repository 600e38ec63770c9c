/* CPU backend internals: element loads/stores by dtype and the strided iterator. */
#ifndef FL_CPU_H
#define FL_CPU_H
#include "context.h"
#include "half.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Load any dtype as double (floats) ... */
static inline double fl_ld(const char *p, fl_dtype dt) {
  switch (dt) {
    case FL_F32: return *(const float *)p;
    case FL_F64: return *(const double *)p;
    case FL_F16: return fl_half_to_f32(*(const uint16_t *)p);
    case FL_BF16: return fl_bfloat_to_f32(*(const uint16_t *)p);
    case FL_I32: return *(const int32_t *)p;
    case FL_I64: return (double)*(const int64_t *)p;
    case FL_BOOL: return *(const uint8_t *)p != 0;
    default: return 0;
  }
}
/* ... or as int64 (integer ops keep all 64 bits). */
static inline int64_t fl_ldi(const char *p, fl_dtype dt) {
  switch (dt) {
    case FL_I32: return *(const int32_t *)p;
    case FL_I64: return *(const int64_t *)p;
    case FL_BOOL: return *(const uint8_t *)p != 0;
    default: return (int64_t)fl_ld(p, dt);
  }
}
/* A float to int64 with a defined result: truncation in range, INT64_MIN
 * outside it and for NaN (what x86's conversion gives, as PyTorch does). */
static inline int64_t fl_f2i(double v) {
  return (v >= -9223372036854775808.0 && v < 9223372036854775808.0) ? (int64_t)v : INT64_MIN;
}
static inline void fl_st(char *p, fl_dtype dt, double v) {
  switch (dt) {
    case FL_F32: *(float *)p = (float)v; break;
    case FL_F64: *(double *)p = v; break;
    case FL_F16: *(uint16_t *)p = fl_half_from_f64(v); break; /* one rounding, not two */
    case FL_BF16: *(uint16_t *)p = fl_bfloat_from_f64(v); break;
    case FL_I32: *(int32_t *)p = (int32_t)(uint32_t)fl_f2i(v); break; /* wraps as the cast does: no UB */
    case FL_I64: *(int64_t *)p = fl_f2i(v); break;
    case FL_BOOL: *(uint8_t *)p = v != 0; break;
    default: break;
  }
}
static inline void fl_sti(char *p, fl_dtype dt, int64_t v) {
  switch (dt) {
    case FL_I32: *(int32_t *)p = (int32_t)v; break;
    case FL_I64: *(int64_t *)p = v; break;
    case FL_BOOL: *(uint8_t *)p = v != 0; break;
    default: fl_st(p, dt, (double)v); break;
  }
}

/* ---- the strided loop over an iteration plan (cpu_iter.c) ---- */
/* fn processes a run of len elements along the plan's innermost dim; ptr[k]
 * is operand k's first element and stride[k] its step in bytes. fn must not
 * write to ctx: runs may execute on several threads at once. */
typedef void (*fl_cpu_loop)(void *ctx, int64_t len, char **ptr, const int64_t *stride);
/* Runs fn over all of p's elements. cost is the work of one element in units
 * of an add (exp ~ 8); above a grain of work the range is split over threads. */
void fl_cpu_run(const fl_plan *p, fl_cpu_loop fn, void *ctx, int cost);
/* fl_plan_init + fl_cpu_run. */
void fl_cpu_iterate(int n, fl_tensor *const *ts, fl_cpu_loop fn, void *ctx, int cost);

/* ---- threads (cpu_threads.c) ---- */
/* Threads to use for `work` add-equivalents: 1 below the grain, so small
 * tensors never pay for a parallel region. */
int fl_cpu_threads_for(int64_t work);
#define FL_CPU_GRAIN ((int64_t)1 << 16)

/* for (int64_t i = 0; i < n; i++) BODY, split over nt threads (a variable
 * named nt) when nt > 1; with one thread no parallel region is entered. */
#define FL_CPU_FOR(i, n, ...)                                                  \
  do {                                                                         \
    if (nt > 1) {                                                              \
      _Pragma("omp parallel for schedule(static) num_threads(nt)")             \
      for (int64_t i = 0; i < (n); i++) { __VA_ARGS__; }                       \
    } else {                                                                   \
      for (int64_t i = 0; i < (n); i++) { __VA_ARGS__; }                       \
    }                                                                          \
  } while (0)

/* Inside a parallel region: the chunks 0 .. nchunks-1 this thread runs. The team
 * may be smaller than asked (OpenMP's dynamic adjustment gives fewer threads on a
 * loaded machine), so chunks are dealt round-robin over the team that exists;
 * chunk boundaries depend only on nchunks, so results do not depend on the team. */
#define FL_CPU_CHUNKS(t, nchunks) \
  for (int t = omp_get_thread_num(); t < (nchunks); t += omp_get_num_threads())

/* Long kernels stop early when the context that started them must stop (fl_context_interrupt, a passed
 * budget): the loops look at the flag every FL_CPU_STOP_GRAIN elements (runs longer than that are cut), so a
 * check costs nothing measurable. The op's result is then incomplete; the kernel returns FL_EINTERRUPTED where
 * it returns a status, and otherwise the next op or the Lua hook reports the stop. Threads of the team read the
 * context captured by the thread that started the op (fl_cpu_stop_init), since the current context is per
 * thread. */
#define FL_CPU_STOP_GRAIN ((int64_t)1 << 22)
typedef struct {
  fl_context *ctx;
  int64_t left;
} fl_cpu_stop;
static inline fl_cpu_stop fl_cpu_stop_init(fl_context *c) { return (fl_cpu_stop){c, FL_CPU_STOP_GRAIN}; }
/* After n more elements: true when the kernel should stop. */
static inline bool fl_cpu_stopped(fl_cpu_stop *s, int64_t n) {
  if ((s->left -= n) > 0) return false;
  s->left = FL_CPU_STOP_GRAIN;
  return fl_context_stop_reason(s->ctx) != FL_STOP_NONE;
}

/* Row-major offset (in elements) of the flat index i within t. */
int64_t fl_cpu_offset_of(const fl_tensor *t, int64_t i);

/* ---- compute buffers (cpu_convert.c) ---- */
/* Ops run in one of three compute types: f32 (f16, bf16, f32), f64, or i64
 * (integers and bool). Operands of any dtype are converted on load into a
 * buffer of the compute type and on store back out. */
typedef enum { FL_CK_F32, FL_CK_F64, FL_CK_I64 } fl_ckind;
fl_ckind fl_ckind_of(fl_dtype dt);
/* The compute type of two together: f64 if either is f64, else f32 if either
 * is f32, else i64. */
fl_ckind fl_ckind_join(fl_ckind a, fl_ckind b);
#define FL_CPU_BLOCK 256
void fl_load_f32(float *dst, const char *p, int64_t s, int64_t n, fl_dtype dt);
void fl_load_f64(double *dst, const char *p, int64_t s, int64_t n, fl_dtype dt);
void fl_load_i64(int64_t *dst, const char *p, int64_t s, int64_t n, fl_dtype dt);
void fl_store_f32(char *p, int64_t s, const float *src, int64_t n, fl_dtype dt);
void fl_store_f64(char *p, int64_t s, const double *src, int64_t n, fl_dtype dt);
void fl_store_i64(char *p, int64_t s, const int64_t *src, int64_t n, fl_dtype dt);
/* The same, rounding each value as a cast to the compute dtype ct would
 * (f16/bf16 for the f32 type; i32 or bool for the i64 type) first. */
void fl_load_f32_as(float *dst, const char *p, int64_t s, int64_t n, fl_dtype dt, fl_dtype ct);
void fl_load_i64_as(int64_t *dst, const char *p, int64_t s, int64_t n, fl_dtype dt, fl_dtype ct);
#define fl_load_f64_as(dst, p, s, n, dt, ct) fl_load_f64(dst, p, s, n, dt) /* f64 holds every dtype's values */
/* Wrapping integer arithmetic (two's complement, as PyTorch): no signed overflow. */
static inline int64_t fl_wadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t fl_wsub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static inline int64_t fl_wmul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* Scalar references of the elementwise ops (cpu_scalar_ops.c): the f64 and
 * integer paths, and the per-element fallback of the f32 path for ops without
 * a vector loop. A new op needs a case here first; a vector loop is optional. */
double fl_unary_f(fl_unary_op op, double x, double p0, double p1);
/* o[i] = op(x[i]) on f32 with the unary op's vector loops (cpu_unary.c), for ops without parameters; o may be x.
 * For kernels that apply an activation to what they just wrote (norm_silu_forward). */
void fl_cpu_unary_f32(fl_unary_op op, float *o, const float *x, int64_t n);
int64_t fl_unary_i(fl_unary_op op, int64_t x, double p0, double p1);
double fl_binary_f(fl_binary_op op, double a, double b);
int64_t fl_binary_i(fl_binary_op op, int64_t a, int64_t b);

/* Sum of n unit-stride f32 values in f64 (32 independent lanes: vectorised,
 * and exact up to f64 rounding). cpu_reduce.c. */
double fl_cpu_sum_f32(const float *x, int64_t n);
/* Max (or min) of n >= 1 unit-stride f32 values in 16 lanes; NaN propagates. */
float fl_cpu_extreme_f32(const float *x, int64_t n, bool max);
/* The f32 sum (or mean) of a reduction plan whose innermost kept dim is
 * unit-stride in x, by rows into per-column accumulators; false (nothing
 * done) when the plan does not have that form. cpu_colsum.c. */
bool fl_cpu_colsum(const fl_plan *p, bool mean);

/* Function multi-versioning for the hot loops: one clone per x86-64 level,
 * picked at load time (ifunc), so a portable build still runs AVX-512 code.
 * Not under ThreadSanitizer: the ifunc resolvers run, instrumented, before its
 * runtime is up, and crash the process at load (scripts/tsan). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(__SANITIZE_THREAD__)
#define FL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FL_CLONES
#endif
#endif
