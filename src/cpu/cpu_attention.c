/* CPU side of the attention family: the fused softmax backward over the last
 * dim of contiguous [rows, n] tensors (softmax: gin = y (g - sum(g y));
 * log_softmax: gin = g - exp(y) sum(g)), the dot product in double, rows dealt
 * to threads. */
#include "cpu.h"
#include <math.h>

#define SMB_ROW(T)                                                                  \
  do {                                                                              \
    const T *gr = (const T *)gp + r * n, *yr = (const T *)yp + r * n;               \
    T *o = (T *)op + r * n;                                                         \
    double s = 0;                                                                   \
    for (int64_t i = 0; i < n; i++) s += log_ ? (double)gr[i] : (double)gr[i] * (double)yr[i]; \
    T ts = (T)s;                                                                    \
    for (int64_t i = 0; i < n; i++) o[i] = log_ ? gr[i] - (T)exp((double)yr[i]) * ts : yr[i] * (gr[i] - ts); \
  } while (0)

fl_status fl_cpu_softmax_backward(fl_tensor *gin, const fl_tensor *g, const fl_tensor *y, bool log_) {
  int64_t n = gin->ndim ? gin->shape[gin->ndim - 1] : 1, total = fl_numel(gin);
  if (total == 0) return FL_OK;
  int64_t rows = total / n;
  const char *gp = fl_data_ptr(g), *yp = fl_data_ptr(y);
  char *op = fl_data_ptr(gin);
  fl_dtype dt = gin->dtype;
  size_t es = fl_dtype_size(dt);
  int nt = fl_cpu_threads_for(total * 4);
  if (nt > rows) nt = (int)rows;
  FL_CPU_FOR(r, rows, {
    if (dt == FL_F32) SMB_ROW(float);
    else if (dt == FL_F64) SMB_ROW(double);
    else { /* f16, bf16: in f32, rounded once */
      double s = 0;
      for (int64_t i = 0; i < n; i++) {
        double gv = fl_ld(gp + (r * n + i) * (int64_t)es, dt);
        s += log_ ? gv : gv * fl_ld(yp + (r * n + i) * (int64_t)es, dt);
      }
      float fs = (float)s;
      for (int64_t i = 0; i < n; i++) {
        float gv = (float)fl_ld(gp + (r * n + i) * (int64_t)es, dt), yv = (float)fl_ld(yp + (r * n + i) * (int64_t)es, dt);
        fl_st(op + (r * n + i) * (int64_t)es, dt, (double)(log_ ? gv - expf(yv) * fs : yv * (gv - fs)));
      }
    }
  });
  return FL_OK;
}

/* Element offset of row r's first mask element: r unravelled over the dims before the last. */
static int64_t mask_row_offset(const fl_tensor *m, int64_t r) {
  int64_t off = 0;
  for (int d = m->ndim - 2; d >= 0; d--) {
    off += (r % m->shape[d]) * m->stride[d];
    r /= m->shape[d];
  }
  return off;
}

/* The masked softmax (contract in core/internal.h): per row, the max over the allowed keys, then exp and sum
 * in double; no allowed key above -inf: a row of zeros. */
fl_status fl_cpu_masked_softmax(fl_tensor *out, const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift) {
  int nd = s->ndim;
  int64_t n = s->shape[nd - 1], sq = s->shape[nd - 2], total = fl_numel(s), rows = total / n;
  const char *sp = fl_data_ptr(s), *mp = mask ? fl_data_ptr(mask) : NULL;
  int64_t mstep = mask ? mask->stride[nd - 1] : 0;
  char *op = fl_data_ptr(out);
  fl_dtype dt = s->dtype;
  int64_t es = (int64_t)fl_dtype_size(dt);
  int nt = fl_cpu_threads_for(total * 8);
  if (nt > rows) nt = (int)rows;
  FL_CPU_FOR(r, rows, {
    const char *mr = mask ? mp + mask_row_offset(mask, r) : NULL;
    int64_t lim = causal ? (r % sq) + shift : n - 1; /* keys j <= lim */
    if (lim > n - 1) lim = n - 1;
    const char *xr = sp + r * n * es;
    char *yr = op + r * n * es;
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j <= lim; j++) {
      if (mr && !mr[j * mstep]) continue;
      double v = fl_ld(xr + j * es, dt);
      if (v > m || v != v) m = v;
      if (m != m) break;
    }
    bool live = m > -INFINITY || m != m; /* some allowed score above -inf (or a NaN, which propagates) */
    for (int64_t j = 0; live && j <= lim; j++)
      if (!mr || mr[j * mstep]) sum += exp(fl_ld(xr + j * es, dt) - m);
    for (int64_t j = 0; j < n; j++) {
      bool on = live && j <= lim && (!mr || mr[j * mstep]);
      fl_st(yr + j * es, dt, on ? exp(fl_ld(xr + j * es, dt) - m) / sum : 0.0);
    }
  });
  return FL_OK;
}
