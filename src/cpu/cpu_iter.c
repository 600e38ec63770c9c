/* The CPU strided iterator (a small TensorIterator). */
#include "cpu.h"

void fl_cpu_iterate(int n, fl_tensor *const *ts, fl_cpu_loop fn, void *ctx) {
  int nd = ts[0]->ndim;
  int64_t shape[FL_MAX_DIMS], st[4][FL_MAX_DIMS];
  int d = 0;
  for (int i = 0; i < nd; i++) { /* drop size-1 dims, merge runs that are contiguous for everyone */
    if (ts[0]->shape[i] == 1) continue;
    bool merge = d > 0;
    for (int k = 0; k < n && merge; k++)
      merge = st[k][d - 1] == ts[k]->stride[i] * ts[0]->shape[i];
    if (merge) {
      shape[d - 1] *= ts[0]->shape[i];
      for (int k = 0; k < n; k++) st[k][d - 1] = ts[k]->stride[i];
    } else {
      shape[d] = ts[0]->shape[i];
      for (int k = 0; k < n; k++) st[k][d] = ts[k]->stride[i];
      d++;
    }
  }
  int64_t numel = fl_numel(ts[0]);
  if (numel == 0) return;
  char *base[4], *ptr[4];
  int64_t inner[4];
  for (int k = 0; k < n; k++) {
    base[k] = fl_data_ptr(ts[k]);
    size_t es = fl_dtype_size(ts[k]->dtype);
    for (int i = 0; i < d; i++) st[k][i] *= (int64_t)es;
    inner[k] = d ? st[k][d - 1] : 0;
  }
  int64_t len = d ? shape[d - 1] : 1;
  int64_t idx[FL_MAX_DIMS] = {0};
  for (int64_t done = 0; done < numel; done += len) {
    for (int k = 0; k < n; k++) {
      ptr[k] = base[k];
      for (int i = 0; i < d - 1; i++) ptr[k] += idx[i] * st[k][i];
    }
    fn(ctx, len, ptr, inner);
    for (int i = d - 2; i >= 0; i--) { /* odometer over the outer dims */
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}

int64_t fl_cpu_offset_of(const fl_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  return off;
}
