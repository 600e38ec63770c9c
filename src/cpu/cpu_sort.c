/* CPU sort along the last dim: each row's elements become (key, position)
 * pairs (core/sortkey.h), sorted stably (radix, or insertion for short rows);
 * values are then gathered by position. The same keys and the same stable
 * order as the CUDA backend, so the same permutation. */
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

/* Stable insertion sort: for short rows, where radix passes cost more than they save. */
static void insertion_sort(sort_item *a, int64_t n) {
  for (int64_t i = 1; i < n; i++) {
    sort_item v = a[i];
    int64_t j = i;
    for (; j > 0 && a[j - 1].key > v.key; j--) a[j] = a[j - 1];
    a[j] = v;
  }
}

/* LSD radix sort by bytes of the key's width, using tmp: stable, one counting pass
 * for every byte, then one scatter per byte whose value is not the same in every key
 * (small integers and narrow ranges skip most passes). */
static void radix_sort(sort_item *a, sort_item *tmp, int64_t n, int width) {
  int64_t count[8][256] = {{0}};
  int nbytes = width / 8;
  for (int64_t i = 0; i < n; i++)
    for (int b = 0; b < nbytes; b++) count[b][(a[i].key >> (8 * b)) & 255]++;
  sort_item *src = a, *dst = tmp;
  for (int b = 0; b < nbytes; b++) {
    int64_t *c = count[b];
    if (c[(src[0].key >> (8 * b)) & 255] == n) continue; /* every key has this byte */
    int64_t sum = 0;
    for (int d = 0; d < 256; d++) {
      int64_t k = c[d];
      c[d] = sum;
      sum += k;
    }
    for (int64_t i = 0; i < n; i++) dst[c[(src[i].key >> (8 * b)) & 255]++] = src[i];
    sort_item *t = src;
    src = dst, dst = t;
  }
  if (src != a) memcpy(a, src, sizeof *a * (size_t)n);
}

/* Sorts rows [r0, r1) of the contiguous [rows, n] x, with items (2 n) as scratch. */
static void sort_rows(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base,
                      int64_t n, int64_t r0, int64_t r1, sort_item *items) {
  size_t es = fl_dtype_size(x->dtype);
  const char *xd = fl_data_ptr(x);
  char *vd = values ? fl_data_ptr(values) : NULL;
  int64_t *id = (int64_t *)fl_data_ptr(indices);
  for (int64_t r = r0; r < r1; r++) {
    const char *row = xd + (size_t)(r * n) * es;
    for (int64_t i = 0; i < n; i++) items[i] = (sort_item){fl_sortkey(x->dtype, raw_bits(row, i, es), descending), i};
    if (n <= 32) insertion_sort(items, n);
    else radix_sort(items, items + n, n, fl_sortkey_width(x->dtype));
    for (int64_t i = 0; i < n; i++) {
      id[r * n + i] = items[i].pos + base;
      if (vd) memcpy(vd + (size_t)(r * n + i) * es, row + (size_t)items[i].pos * es, es);
    }
  }
}

/* Rows are dealt to threads in contiguous blocks, each with its own scratch. */
fl_status fl_cpu_sort(fl_tensor *values, fl_tensor *indices, const fl_tensor *x, bool descending, int64_t base) {
  int64_t n = x->ndim ? x->shape[x->ndim - 1] : 1, total = fl_numel(x);
  if (n == 0 || total == 0) return FL_OK;
  int64_t rows = total / n;
  int nt = fl_cpu_threads_for(total * 8); /* a few passes over each element */
  if (nt > rows) nt = (int)rows;
  if (nt < 1) nt = 1;
  sort_item *items = malloc(sizeof *items * (size_t)n * 2 * (size_t)nt);
  if (!items) return fl_error(FL_ENOMEM, "sort: out of host memory for a row of %lld", (long long)n);
  if (nt == 1) {
    sort_rows(values, indices, x, descending, base, n, 0, rows, items);
  } else {
#ifdef _OPENMP
    int64_t chunk = (rows + nt - 1) / nt;
#pragma omp parallel num_threads(nt)
    FL_CPU_CHUNKS(t, nt) {
      int64_t r0 = (int64_t)t * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
      if (r0 < r1) sort_rows(values, indices, x, descending, base, n, r0, r1, items + (size_t)t * 2 * (size_t)n);
    }
#else
    sort_rows(values, indices, x, descending, base, n, 0, rows, items);
#endif
  }
  free(items);
  return FL_OK;
}
