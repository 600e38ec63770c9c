/* CPU backend internals: element loads/stores by dtype and the strided iterator. */
#ifndef FL_CPU_H
#define FL_CPU_H
#include "internal.h"
#include "half.h"

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
static inline void fl_st(char *p, fl_dtype dt, double v) {
  switch (dt) {
    case FL_F32: *(float *)p = (float)v; break;
    case FL_F64: *(double *)p = v; break;
    case FL_F16: *(uint16_t *)p = fl_half_from_f64(v); break; /* one rounding, not two */
    case FL_BF16: *(uint16_t *)p = fl_bfloat_from_f64(v); break;
    case FL_I32: *(int32_t *)p = (int32_t)v; break;
    case FL_I64: *(int64_t *)p = (int64_t)v; break;
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

/* Calls fn over the elements of n same-shape tensors in row-major order, in
 * runs of `len` elements; strides are in bytes per operand. Dims that are
 * contiguous across all operands are merged first, so the inner run is long. */
typedef void (*fl_cpu_loop)(void *ctx, int64_t len, char **ptr, const int64_t *stride);
void fl_cpu_iterate(int n, fl_tensor *const *ts, fl_cpu_loop fn, void *ctx);

/* Row-major offset (in elements) of the flat index i within t. */
int64_t fl_cpu_offset_of(const fl_tensor *t, int64_t i);
#endif
