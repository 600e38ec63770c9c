/* CPU dropout: out = x * keep / (1 - p), the keep bits of either rule from core/dropout_keep.h (one Philox block
 * per 4 elements for F.dropout's word rule, per 16 for attention's byte rule), so the mask equals the CUDA
 * kernel's. Blocks are split over threads; each element's value depends only on its index, never on the thread
 * count. */
#include "cpu.h"
#include "dropout_keep.h"

/* STORE(i, kept) writes element i, for every element of every block. */
#define DROPOUT_BLOCKS(STORE)                                                                       \
  FL_CPU_FOR(k, nblk, {                                                                             \
    uint32_t m = fl_dropout_block_mask(rule, fl_philox(seed, offset + (uint64_t)k), thr);           \
    for (int j = 0; j < per && k * per + j < n; j++) STORE(k * per + j, (m >> j) & 1u);              \
  })

#define STORE_T(i, kept) os[i] = (kept) ? xs[i] * sc : (T)0

fl_status fl_cpu_dropout(fl_tensor *out, const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed,
                         uint64_t offset) {
  const int per = fl_dropout_per_block(rule);
  int64_t n = fl_numel(out), nblk = (int64_t)fl_dropout_blocks(rule, (uint64_t)n);
  const char *xp = fl_data_ptr(x);
  char *op = fl_data_ptr(out);
  uint32_t thr = fl_dropout_rule_threshold(rule, p);
  double scale = fl_dropout_scale(p);
  int nt = fl_cpu_threads_for(n * 8);
  if (x->dtype == FL_F32) {
    typedef float T;
    const T *xs = (const T *)xp;
    T *os = (T *)op, sc = (T)scale;
    DROPOUT_BLOCKS(STORE_T);
  } else if (x->dtype == FL_F64) {
    typedef double T;
    const T *xs = (const T *)xp;
    T *os = (T *)op, sc = (T)scale;
    DROPOUT_BLOCKS(STORE_T);
  } else { /* f16, bf16: computed in f32 and rounded once, as the CUDA kernel does */
    size_t es = fl_dtype_size(x->dtype);
    fl_dtype dt = x->dtype;
    float sc = (float)scale;
#define STORE_H(i, kept) \
  fl_st(op + (i) * (int64_t)es, dt, (double)((kept) ? (float)fl_ld(xp + (i) * (int64_t)es, dt) * sc : 0.0f))
    DROPOUT_BLOCKS(STORE_H);
#undef STORE_H
  }
  return FL_OK;
}
