/* Loads of any dtype into a compute buffer and stores back, one typed loop
 * per (dtype, compute type) pair with the dtype switch outside the loop.
 * f16/bf16 round once from the compute type (f32, or f64 for f64 values). */
#include "cpu.h"

fl_ckind fl_ckind_of(fl_dtype dt) {
  if (dt == FL_F64) return FL_CK_F64;
  return fl_dtype_is_float(dt) ? FL_CK_F32 : FL_CK_I64;
}

fl_ckind fl_ckind_join(fl_ckind a, fl_ckind b) {
  if (a == FL_CK_F64 || b == FL_CK_F64) return FL_CK_F64;
  if (a == FL_CK_F32 || b == FL_CK_F32) return FL_CK_F32;
  return FL_CK_I64;
}

/* dst[i] = CONV(element i of type T at p with byte stride s); contiguous runs get a unit-stride loop. */
#define LOAD(T, CONV)                                                                 \
  do {                                                                                \
    if (s == (int64_t)sizeof(T)) {                                                    \
      const T *q = (const T *)p;                                                      \
      for (int64_t i = 0; i < n; i++) dst[i] = CONV(q[i]);                            \
    } else {                                                                          \
      for (int64_t i = 0; i < n; i++) dst[i] = CONV(*(const T *)(p + i * s));         \
    }                                                                                 \
  } while (0)
#define STORE(T, CONV)                                                                \
  do {                                                                                \
    if (s == (int64_t)sizeof(T)) {                                                    \
      T *q = (T *)p;                                                                  \
      for (int64_t i = 0; i < n; i++) q[i] = CONV(src[i]);                            \
    } else {                                                                          \
      for (int64_t i = 0; i < n; i++) *(T *)(p + i * s) = CONV(src[i]);               \
    }                                                                                 \
  } while (0)
#define ID(v) (v)
#define HALF(v) fl_half_to_f32(v)
#define BF(v) fl_bfloat_to_f32(v)
#define NZ(v) ((v) != 0)
#define HALF_I(v) fl_f2i(fl_half_to_f32(v))
#define BF_I(v) fl_f2i(fl_bfloat_to_f32(v))

#define LOAD_ALL(CT)                               \
  switch (dt) {                                    \
    case FL_F32: LOAD(float, (CT)); break;         \
    case FL_F64: LOAD(double, (CT)); break;        \
    case FL_F16: LOAD(uint16_t, (CT)HALF); break;  \
    case FL_BF16: LOAD(uint16_t, (CT)BF); break;   \
    case FL_I32: LOAD(int32_t, (CT)); break;       \
    case FL_I64: LOAD(int64_t, (CT)); break;       \
    case FL_BOOL: LOAD(uint8_t, (CT)NZ); break;    \
    default: break;                                \
  }

FL_CLONES void fl_load_f32(float *dst, const char *p, int64_t s, int64_t n, fl_dtype dt) { LOAD_ALL(float) }
FL_CLONES void fl_load_f64(double *dst, const char *p, int64_t s, int64_t n, fl_dtype dt) { LOAD_ALL(double) }

void fl_load_i64(int64_t *dst, const char *p, int64_t s, int64_t n, fl_dtype dt) {
  switch (dt) {
    case FL_F32: LOAD(float, fl_f2i); break;
    case FL_F64: LOAD(double, fl_f2i); break;
    case FL_F16: LOAD(uint16_t, HALF_I); break;
    case FL_BF16: LOAD(uint16_t, BF_I); break;
    case FL_I32: LOAD(int32_t, ID); break;
    case FL_I64: LOAD(int64_t, ID); break;
    case FL_BOOL: LOAD(uint8_t, NZ); break;
    default: break;
  }
}

#define TO_I32(v) ((int32_t)(uint32_t)fl_f2i(v)) /* wraps like PyTorch's cast (no UB) */
#define I64_TO_I32(v) ((int32_t)(uint32_t)(uint64_t)(v))

FL_CLONES void fl_store_f32(char *p, int64_t s, const float *src, int64_t n, fl_dtype dt) {
  switch (dt) {
    case FL_F32: STORE(float, ID); break;
    case FL_F64: STORE(double, (double)); break;
    case FL_F16: STORE(uint16_t, fl_half_from_f32); break;
    case FL_BF16: STORE(uint16_t, fl_bfloat_from_f32); break;
    case FL_I32: STORE(int32_t, TO_I32); break;
    case FL_I64: STORE(int64_t, fl_f2i); break;
    case FL_BOOL: STORE(uint8_t, NZ); break;
    default: break;
  }
}

FL_CLONES void fl_store_f64(char *p, int64_t s, const double *src, int64_t n, fl_dtype dt) {
  switch (dt) {
    case FL_F32: STORE(float, (float)); break;
    case FL_F64: STORE(double, ID); break;
    case FL_F16: STORE(uint16_t, fl_half_from_f64); break; /* one rounding, not two */
    case FL_BF16: STORE(uint16_t, fl_bfloat_from_f64); break;
    case FL_I32: STORE(int32_t, TO_I32); break;
    case FL_I64: STORE(int64_t, fl_f2i); break;
    case FL_BOOL: STORE(uint8_t, NZ); break;
    default: break;
  }
}

void fl_store_i64(char *p, int64_t s, const int64_t *src, int64_t n, fl_dtype dt) {
  switch (dt) {
    case FL_F32: STORE(float, (float)); break;
    case FL_F64: STORE(double, (double)); break;
    case FL_F16: STORE(uint16_t, fl_half_from_f64); break;
    case FL_BF16: STORE(uint16_t, fl_bfloat_from_f64); break;
    case FL_I32: STORE(int32_t, I64_TO_I32); break;
    case FL_I64: STORE(int64_t, ID); break;
    case FL_BOOL: STORE(uint8_t, NZ); break;
    default: break;
  }
}

/* ---- loads into the compute type of a compute dtype ct ----
 * A value of another dtype is converted as a cast to ct would convert it (one
 * rounding from the source), then widened to the compute type: an i32 operand
 * of an f16 op is rounded to f16, a float operand of a logic op becomes 0/1. */

static float round_to(float v, fl_dtype ct) {
  return ct == FL_F16 ? fl_half_to_f32(fl_half_from_f32(v)) : fl_bfloat_to_f32(fl_bfloat_from_f32(v));
}
static float round_from_f64(double v, fl_dtype ct) {
  return ct == FL_F16 ? fl_half_to_f32(fl_half_from_f64(v)) : fl_bfloat_to_f32(fl_bfloat_from_f64(v));
}

void fl_load_f32_as(float *dst, const char *p, int64_t s, int64_t n, fl_dtype dt, fl_dtype ct) {
  if (ct == dt || ct == FL_F32) {
    fl_load_f32(dst, p, s, n, dt);
  } else if (dt == FL_F32 || dt == FL_F16 || dt == FL_BF16) { /* exact in f32: one rounding to ct */
    fl_load_f32(dst, p, s, n, dt);
    for (int64_t i = 0; i < n; i++) dst[i] = round_to(dst[i], ct);
  } else { /* f64 and integers: through f64, one rounding to ct */
    double v[FL_CPU_BLOCK];
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
      fl_load_f64(v, p + i * s, s, m, dt);
      for (int64_t j = 0; j < m; j++) dst[i + j] = round_from_f64(v[j], ct);
    }
  }
}

void fl_load_i64_as(int64_t *dst, const char *p, int64_t s, int64_t n, fl_dtype dt, fl_dtype ct) {
  if (ct == FL_BOOL && dt != FL_BOOL) { /* truth values, as a cast to bool */
    double v[FL_CPU_BLOCK];
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
      fl_load_f64(v, p + i * s, s, m, dt);
      for (int64_t j = 0; j < m; j++) dst[i + j] = v[j] != 0;
    }
    return;
  }
  fl_load_i64(dst, p, s, n, dt);
  if (ct == FL_I32 && dt != FL_I32)
    for (int64_t i = 0; i < n; i++) dst[i] = (int32_t)(uint32_t)(uint64_t)dst[i];
}
