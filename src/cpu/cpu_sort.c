/* CPU sort along the last dim: each row's elements become (key, position)
 * pairs (core/sortkey.h), merge-sorted stably; values are then gathered by
 * position. The same keys as the CUDA backend, so the same permutation. */
#include "cpu.h"
#include "sortkey.h"
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t key; int64_t pos; } sort_item;

/* Raw bits of element i of a contiguous row, zero-extended. */
static uint64_t raw_bits(const char *row, int64_t i, size_t es) {
  switch (es) {
    case 8: { uint64_t v; memcpy(&v, row + i * 8, 8); return v; }
    case 4: { uint32_t v; memcpy(&v, row + i * 4, 4); return v; }
    case 2: { uint16_t v; memcpy(&v, row + i * 2, 2); return v; }
    default: return (uint8_t)row[i];
  }
}

/* Bottom-up merge sort of a[0..n) using tmp; stable (ties keep the left run first). */
static void merge_sort(sort_item *a, sort_item *tmp, int64_t n) {
  sort_item *src = a, *dst = tmp;
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = src[j].key < src[i].key ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    sort_item *t = src;
    src = dst, dst = t;
  }
  if (src != a) memcpy(a, src, sizeof *a * (size_t)n);
}

fl_status fl_cpu_sort(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base) {
  int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, total = fl_numel(x);
  if (n == 0 || total == 0) return FL_OK;
  int64_t rows = total / n;
  size_t es = fl_dtype_size(x->dtype);
  sort_item *items = malloc(sizeof *items * (size_t)n * 2);
  if (!items) return fl_error(FL_ENOMEM, "sort: out of host memory for a row of %lld", (long long)n);
  const char *xd = fl_data_ptr(x);
  char *vd = values ? fl_data_ptr(values) : NULL;
  int64_t *id = (int64_t *)fl_data_ptr(indices);
  for (int64_t r = 0; r < rows; r++) {
    const char *row = xd + (size_t)(r * n) * es;
    for (int64_t i = 0; i < n; i++) items[i] = (sort_item){fl_sortkey(x->dtype, raw_bits(row, i, es), descending), i};
    merge_sort(items, items + n, n);
    for (int64_t i = 0; i < n; i++) {
      id[r * n + i] = items[i].pos + base;
      if (vd) memcpy(vd + (size_t)(r * n + i) * es, row + (size_t)items[i].pos * es, es);
    }
  }
  free(items);
  return FL_OK;
}
