/* CPU softmax/log_softmax along one dim, and cumsum. x and out are viewed as
 * [outer, n, inner] around dim; each (outer, inner) pair is one row of n
 * elements with stride inner. Unit-stride f32 rows run the vector exp of
 * cpu_vmath.h with the sum in f64; other rows go through f64 buffers. Rows
 * are split over threads. */
#include "cpu.h"
#include "cpu_vmath.h"
#include <math.h>

/* Views x as [outer, n, inner] around dim (contiguous). */
static void split3(const fl_tensor *x, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = 1, *inner = 1, *n = x->shape[dim];
  for (int d = 0; d < dim; d++) *outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

/* Max, exps into o, their sum in f64 (fl_cpu_sum_f32), then a scale (softmax)
 * or x - max - log(sum) formed in f64 (log_softmax): each pass a plain loop
 * the vectoriser takes. */
FL_CLONES static void softmax_row_f32(float *o, const float *x, int64_t n, bool log_) {
  float mx = fl_cpu_extreme_f32(x, n, true);
  if (mx == -INFINITY) mx = 0; /* a row of -inf gives NaN like the reference; a NaN makes the row NaN */
  for (int64_t i = 0; i < n; i++) o[i] = fv_exp(x[i] - mx);
  double sum = fl_cpu_sum_f32(o, n);
  if (log_) {
    double shift = (double)mx + log(sum);
    for (int64_t i = 0; i < n; i++) o[i] = (float)((double)x[i] - shift);
  } else {
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) o[i] *= inv;
  }
}

/* Any dtype and stride: three passes through f64 blocks. */
static void softmax_row_any(char *o, const char *x, int64_t s, int64_t so, int64_t n, fl_dtype dt, bool log_) {
  double v[FL_CPU_BLOCK], mx = -INFINITY, sum = 0;
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(v, x + i * s, s, m, dt);
    for (int64_t j = 0; j < m; j++) mx = fmax(mx, v[j]); /* a NaN still makes the sum, and so the row, NaN */
  }
  if (isinf(mx) && mx < 0) mx = 0;
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(v, x + i * s, s, m, dt);
    for (int64_t j = 0; j < m; j++) sum += exp(v[j] - mx);
  }
  double lse = log(sum);
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(v, x + i * s, s, m, dt);
    for (int64_t j = 0; j < m; j++) v[j] = log_ ? v[j] - mx - lse : exp(v[j] - mx) / sum;
    fl_store_f64(o + i * so, so, v, m, dt);
  }
}

fl_status fl_cpu_softmax(fl_tensor *out, const fl_tensor *x, int dim, bool log_) {
  int64_t outer, n, inner;
  split3(x, dim, &outer, &n, &inner);
  int64_t es = (int64_t)fl_dtype_size(x->dtype), rows = outer * inner;
  const char *xp = fl_data_ptr(x);
  char *op = fl_data_ptr(out);
  int nt = fl_cpu_threads_for(rows * n * 8);
  if (nt > rows) nt = (int)rows;
  bool f32_rows = x->dtype == FL_F32 && inner == 1;
  FL_CPU_FOR(r, rows, {
    int64_t o = r / inner, i = r % inner, off = (o * n * inner + i) * es;
    if (f32_rows) softmax_row_f32((float *)(op + off), (const float *)(xp + off), n, log_);
    else softmax_row_any(op + off, xp + off, inner * es, inner * es, n, x->dtype, log_);
  });
  return FL_OK;
}

fl_status fl_cpu_cumsum(fl_tensor *out, const fl_tensor *x, int dim) {
  /* out is contiguous; x may be strided. Integers wrap. */
  int64_t outer, n, inner;
  split3(out, dim, &outer, &n, &inner);
  size_t eo = fl_dtype_size(out->dtype), ex = fl_dtype_size(x->dtype);
  bool integer = !fl_dtype_is_float(out->dtype);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double acc = 0;
      int64_t iacc = 0;
      for (int64_t k = 0; k < n; k++) {
        int64_t flat = (o * n + k) * inner + i;
        const char *src = (const char *)x->storage->data + fl_cpu_offset_of(x, flat) * (int64_t)ex;
        char *dst = fl_data_ptr(out) + flat * (int64_t)eo;
        if (integer) {
          int64_t v;
          fl_load_i64(&v, src, 0, 1, x->dtype);
          iacc = fl_wadd(iacc, v);
          fl_store_i64(dst, 0, &iacc, 1, out->dtype);
        } else {
          double v;
          fl_load_f64(&v, src, 0, 1, x->dtype);
          acc += v;
          fl_store_f64(dst, 0, &acc, 1, out->dtype);
        }
      }
    }
  return FL_OK;
}
