/* CPU indexing kernels and random fill. Indices are validated before any write. */
#include "cpu.h"
#include "philox.h"

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src);

/* Index i of idx (i64 or i32, stored as base + position). */
static int64_t stored_at(const fl_tensor *idx, int64_t i) {
  const char *p = (const char *)idx->storage->data + fl_cpu_offset_of(idx, i) * (int64_t)fl_dtype_size(idx->dtype);
  return fl_ldi(p, idx->dtype);
}

/* Every index in [base, base + size), checked before any write. The message
 * counts the index and the dim from the message base: from Lua (index base 1,
 * message base 1) the index reads as the user stored it. */
static fl_status check_indices(const char *op, const fl_tensor *idx, int dim, int64_t size, int64_t base) {
  int64_t n = fl_numel(idx);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = stored_at(idx, i);
    if (v < base || v - base >= size)
      return fl_error(FL_EINDEX, "%s: index %lld out of range for dim %lld of size %lld", op, (long long)fl_mdim(v - base),
                      (long long)fl_mdim(dim), (long long)size);
  }
  return FL_OK;
}

#define idx_at(idx, i) (stored_at(idx, i) - base)

/* A stack header for slice k (length 1) of t along dim. */
static fl_tensor slice(const fl_tensor *t, int dim, int64_t k) {
  fl_tensor s = *t;
  s.shape[dim] = 1;
  s.offset = t->offset + k * t->stride[dim];
  return s;
}

fl_status fl_cpu_index_select(fl_tensor *out, const fl_tensor *x, int dim, const fl_tensor *idx, int64_t base) {
  FL_TRY(check_indices("index_select", idx, dim, x->shape[dim], base));
  for (int64_t j = 0; j < fl_numel(idx); j++) {
    fl_tensor d = slice(out, dim, j), s = slice(x, dim, idx_at(idx, j));
    FL_TRY(fl_cpu_copy(&d, &s));
  }
  return FL_OK;
}

static void axpy_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const double *c = vc; /* alpha, dst dtype, src dtype */
  fl_dtype dd = (fl_dtype)c[1], sd = (fl_dtype)c[2];
  for (int64_t i = 0; i < n; i++)
    fl_st(p[0] + i * s[0], dd, fl_ld(p[0] + i * s[0], dd) + c[0] * fl_ld(p[1] + i * s[1], sd));
}

fl_status fl_cpu_index_add(fl_tensor *x, int dim, const fl_tensor *idx, const fl_tensor *src, double alpha,
                           int64_t base) {
  FL_TRY(check_indices("index_add_", idx, dim, x->shape[dim], base));
  double c[3] = {alpha, x->dtype, src->dtype};
  for (int64_t j = 0; j < fl_numel(idx); j++) {
    fl_tensor d = slice(x, dim, idx_at(idx, j)), s = slice(src, dim, j);
    fl_tensor *ts[2] = {&d, &s};
    fl_cpu_iterate(2, ts, axpy_loop, c);
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
  for (int64_t p = 0; p < n; p++) {
    const char *s = (const char *)x->storage->data + offset_with(idx, x, p, dim, idx_at(idx, p)) * (int64_t)es;
    char *d = (char *)out->storage->data + fl_cpu_offset_of(out, p) * (int64_t)es;
    for (size_t b = 0; b < es; b++) d[b] = s[b];
  }
  return FL_OK;
}

fl_status fl_cpu_scatter_add(fl_tensor *out, int dim, const fl_tensor *idx, const fl_tensor *src, int64_t base) {
  FL_TRY(check_indices("scatter_add", idx, dim, out->shape[dim], base));
  size_t eo = fl_dtype_size(out->dtype), esrc = fl_dtype_size(src->dtype);
  int64_t n = fl_numel(idx);
  for (int64_t p = 0; p < n; p++) {
    char *d = (char *)out->storage->data + offset_with(idx, out, p, dim, idx_at(idx, p)) * (int64_t)eo;
    const char *s = (const char *)src->storage->data + offset_with(idx, src, p, -1, 0) * (int64_t)esrc;
    fl_st(d, out->dtype, fl_ld(d, out->dtype) + fl_ld(s, src->dtype));
  }
  return FL_OK;
}

fl_status fl_cpu_random(fl_tensor *out, fl_rand_kind kind, uint64_t seed, uint64_t offset, double a, double b) {
  int64_t n = fl_numel(out);
  size_t es = fl_dtype_size(out->dtype);
  char *p = fl_data_ptr(out);
  fl_philox_out blk = {{0}};
  int bits = fl_u01_bits_for(out->dtype);
  for (int64_t i = 0; i < n; i++) {
    if (i % 4 == 0) blk = fl_philox(seed, offset + (uint64_t)(i / 4));
    int j = (int)(i % 4);
    if (kind == FL_RAND_UNIFORM) fl_st(p + i * es, out->dtype, a + (b - a) * (double)fl_u01_bits(blk.w[j], bits));
    else if (kind == FL_RAND_NORMAL) fl_st(p + i * es, out->dtype, a + b * (double)fl_normal_from(blk, j));
    else fl_sti(p + i * es, out->dtype, (int64_t)a + fl_randint_from(blk.w[j], b - a));
  }
  return FL_OK;
}
