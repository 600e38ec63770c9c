/* CPU dropout: out = x * keep / (1 - p), the keep bits from core/dropout_keep.h
 * (one Philox block per four elements), so the mask equals the CUDA kernel's.
 * Blocks are split over threads; each element's value depends only on its
 * index, never on the thread count. */
#include "cpu.h"
#include "dropout_keep.h"

#define DROPOUT_LOOP(T)                                                          \
  do {                                                                           \
    const T *xs = (const T *)xp;                                                 \
    T *os = (T *)op;                                                             \
    T sc = (T)scale;                                                             \
    FL_CPU_FOR(k, nblk, {                                                        \
      fl_philox_out blk = fl_philox(seed, offset + (uint64_t)k);                 \
      for (int j = 0; j < 4 && k * 4 + j < n; j++) {                             \
        int64_t i = k * 4 + j;                                                   \
        os[i] = fl_dropout_keep_word(blk.w[j], thr) ? xs[i] * sc : (T)0;         \
      }                                                                          \
    });                                                                          \
  } while (0)

fl_status fl_cpu_dropout(fl_tensor *out, const fl_tensor *x, double p, uint64_t seed, uint64_t offset) {
  int64_t n = fl_numel(out), nblk = (n + 3) / 4;
  const char *xp = fl_data_ptr(x);
  char *op = fl_data_ptr(out);
  uint32_t thr = fl_dropout_threshold(p);
  double scale = fl_dropout_scale(p);
  int nt = fl_cpu_threads_for(n * 8);
  if (x->dtype == FL_F32) DROPOUT_LOOP(float);
  else if (x->dtype == FL_F64) DROPOUT_LOOP(double);
  else { /* f16, bf16: computed in f32 and rounded once, as the CUDA kernel does */
    size_t es = fl_dtype_size(x->dtype);
    fl_dtype dt = x->dtype;
    float sc = (float)scale;
    FL_CPU_FOR(k, nblk, {
      fl_philox_out blk = fl_philox(seed, offset + (uint64_t)k);
      for (int j = 0; j < 4 && k * 4 + j < n; j++) {
        int64_t i = k * 4 + j;
        float v = fl_dropout_keep_word(blk.w[j], thr) ? (float)fl_ld(xp + i * (int64_t)es, dt) * sc : 0.0f;
        fl_st(op + i * (int64_t)es, dt, (double)v);
      }
    });
  }
  return FL_OK;
}
