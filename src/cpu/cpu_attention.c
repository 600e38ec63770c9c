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
