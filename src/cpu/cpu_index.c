/* CPU indexing kernels and random fill. Index tensors are i64 or i32 and hold
 * indices in [base, base + size) (base 1 from Lua): the kernels subtract base,
 * so no shifted copy is made. Indices are validated before any write. */
#include "cpu.h"
#include "philox.h"
#include <string.h>

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src);

/* Index element i (row-major over idx's shape), as stored. */
static int64_t idx_at(const fl_tensor *idx, int64_t i) {
  int64_t off = fl_cpu_offset_of(idx, i);
  if (idx->dtype == FL_I32) return ((const int32_t *)idx->storage->data)[off];
  return ((const int64_t *)idx->storage->data)[off];
}

/* Every index in [base, base + size), checked before any write. The message
 * counts the index (as position index - base) and the dim from the message
 * base: from Lua (index base 1, message base 1) the index reads as stored. */
static fl_status check_indices(const char *op, const fl_tensor *idx, int dim, int64_t size, int64_t base) {
  int64_t n = fl_numel(idx);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = idx_at(idx, i);
    if (v < base || v - base >= size)
      return fl_error(FL_EINDEX, "%s: index %lld out of range for dim %lld of size %lld", op,
                      (long long)fl_mdim(fl_wsub(v, base)), (long long)fl_mdim(dim), (long long)size);
  }
  return FL_OK;
}

/* A stack header for slice k (length 1) of t along dim. */
static void slice(fl_tensor *s, const fl_tensor *t, int dim, int64_t k) {
  fl_header_init(s, t);
  s->shape[dim] = 1;
  s->offset = t->offset + k * t->stride[dim];
}

fl_status fl_cpu_index_select(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  FL_TRY(check_indices("index_select", idx, dim, x->shape[dim], base));
  int64_t n = fl_numel(idx), per = n ? fl_numel(out) / n : 0;
  int nt = n > 1 ? fl_cpu_threads_for(n * per) : 1;
  /* rows in parallel (each row's copy then stays on its thread), or one row with threads inside */
  FL_CPU_FOR(j, n, {
    fl_tensor d, s;
    slice(&d, out, dim, j), slice(&s, x, dim, idx_at(idx, j) - base);
    fl_cpu_copy(&d, &s);
  });
  return FL_OK;
}

typedef struct { double alpha; fl_dtype dd, sd; } axpy_ctx;

static void axpy_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const axpy_ctx *c = vc;
  double a[FL_CPU_BLOCK], b[FL_CPU_BLOCK];
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(a, p[0] + i * s[0], s[0], m, c->dd);
    fl_load_f64(b, p[1] + i * s[1], s[1], m, c->sd);
    for (int64_t j = 0; j < m; j++) a[j] += c->alpha * b[j];
    fl_store_f64(p[0] + i * s[0], s[0], a, m, c->dd);
  }
}

fl_status fl_cpu_index_add(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                           int64_t base) {
  FL_TRY(check_indices("index_add_", idx, dim, x->shape[dim], base));
  axpy_ctx c = {alpha, x->dtype, src->dtype};
  /* rows in order (an index may repeat); each row's update may use threads */
  for (int64_t j = 0; j < fl_numel(idx); j++) {
    fl_tensor d, s;
    slice(&d, x, dim, idx_at(idx, j) - base), slice(&s, src, dim, j);
    fl_tensor *ts[2] = {&d, &s};
    fl_cpu_iterate(2, ts, axpy_loop, &c, 2);
  }
  return FL_OK;
}

/* Offset of element p of `shape_of` in t, with dim's coordinate replaced by k. */
static int64_t offset_with(const fl_tensor *shape_of, const fl_tensor *t, int64_t p, int dim, int64_t k) {
  int64_t off = t->offset;
  for (int d = shape_of->ndim - 1; d >= 0; d--) {
    int64_t c = p % shape_of->shape[d];
    p /= shape_of->shape[d];
    off += (d == dim ? k : c) * t->stride[d];
  }
  return off;
}

fl_status fl_cpu_gather(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  FL_TRY(check_indices("gather", idx, dim, x->shape[dim], base));
  size_t es = fl_dtype_size(x->dtype);
  int64_t n = fl_numel(idx);
  int nt = fl_cpu_threads_for(n * 4);
  FL_CPU_FOR(p, n, {
    const char *s = (const char *)x->storage->data + offset_with(idx, x, p, dim, idx_at(idx, p) - base) * (int64_t)es;
    char *d = (char *)out->storage->data + fl_cpu_offset_of(out, p) * (int64_t)es;
    memcpy(d, s, es);
  });
  return FL_OK;
}

fl_status fl_cpu_scatter_add(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  FL_TRY(check_indices("scatter_add", idx, dim, out->shape[dim], base));
  size_t eo = fl_dtype_size(out->dtype), esrc = fl_dtype_size(src->dtype);
  int64_t n = fl_numel(idx);
  for (int64_t p = 0; p < n; p++) { /* in order: indices may repeat */
    char *d = (char *)out->storage->data + offset_with(idx, out, p, dim, idx_at(idx, p) - base) * (int64_t)eo;
    const char *s = (const char *)src->storage->data + offset_with(idx, src, p, -1, 0) * (int64_t)esrc;
    double a, b;
    fl_load_f64(&a, d, 0, 1, out->dtype);
    fl_load_f64(&b, s, 0, 1, src->dtype);
    a += b;
    fl_store_f64(d, 0, &a, 1, out->dtype);
  }
  return FL_OK;
}

fl_status fl_cpu_random(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b) {
  int64_t n = fl_numel(out);
  size_t es = fl_dtype_size(out->dtype);
  char *p = fl_data_ptr(out);
  int bits = fl_u01_bits_for(out->dtype);
  int nt = fl_cpu_threads_for(n * 8);
  int64_t nblk = (n + 3) / 4;
  /* each block of 4 elements is one Philox draw: blocks split over threads give the same stream */
  FL_CPU_FOR(k, nblk, {
    fl_philox_out blk = fl_philox(seed, offset + (uint64_t)k);
    for (int j = 0; j < 4 && k * 4 + j < n; j++) {
      char *q = p + (k * 4 + j) * (int64_t)es;
      if (kind == FL_RAND_UNIFORM) fl_st(q, out->dtype, a + (b - a) * (double)fl_u01_bits(blk.w[j], bits));
      else if (kind == FL_RAND_NORMAL) fl_st(q, out->dtype, a + b * (double)fl_normal_from(blk, j));
      else fl_sti(q, out->dtype, (int64_t)a + fl_randint_from(blk.w[j], b - a));
    }
  });
  return FL_OK;
}

fl_status fl_cpu_fill(fl_tensor *out, double value);

/* index_add into zeros: the backward of index_select and embedding (rows added in index order). */
fl_status fl_cpu_index_add_fresh(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  FL_TRY(check_indices("index_add_", idx, dim, out->shape[dim], base));
  FL_TRY(fl_cpu_fill(out, 0));
  return fl_cpu_index_add(out, dim, idx, src, 1.0, base);
}
