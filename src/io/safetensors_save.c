/* Writing safetensors files byte for byte as the reference writer (the Rust crate behind Python's
 * safetensors) does: tensors ordered by dtype, widest first in the crate's enum order, then by name (bytewise);
 * the header as compact JSON, "__metadata__" first (keys sorted here: the crate's map has no fixed order),
 * each tensor {"dtype","shape","data_offsets"}, padded with spaces to a multiple of 8 bytes; then the data,
 * little-endian, each tensor's elements row-major. The file is replaced atomically (atomic_file.c). */
#include "io.h"
#include <stdlib.h>
#include <string.h>

/* The crate's Dtype enum order among ours (BOOL < F16 < BF16 < I32 < F32 < F64 < I64): files list the
 * larger ranks first. */
static int rank(fl_dtype dt) {
  switch (dt) {
  case FL_BOOL: return 0;
  case FL_F16: return 1;
  case FL_BF16: return 2;
  case FL_I32: return 3;
  case FL_F32: return 4;
  case FL_F64: return 5;
  default: return 6; /* FL_I64 */
  }
}


static int by_file_order(const void *x, const void *y) {
  const fl_st_entry *a = x, *b = y;
  int ra = rank(a->tensor->dtype), rb = rank(b->tensor->dtype);
  if (ra != rb) return rb - ra;
  return fl_st_cmp(a->name, b->name);
}

static int by_name(const void *x, const void *y) { return fl_st_cmp(((const fl_st_entry *)x)->name, ((const fl_st_entry *)y)->name); }

/* Names (e sorted by name) and metadata (sorted by key): UTF-8 (the header is), and no duplicates (the sorted neighbours). */
static fl_status check_inputs(const char *path, size_t n, const fl_st_entry *e, size_t nmeta, const fl_st_meta *m) {
  for (size_t i = 0; i < n; i++) {
    fl_name_str nm = fl_show_name(e[i].name.s, e[i].name.len);
    if (!fl_utf8_valid(e[i].name.s, e[i].name.len))
      return fl_error(FL_EINVAL, "save: %s: tensor name %s is not valid UTF-8", path, nm.s);
    if (e[i].name.len == 12 && memcmp(e[i].name.s, "__metadata__", 12) == 0)
      return fl_error(FL_EINVAL, "save: %s: \"__metadata__\" is reserved and cannot name a tensor", path);
    if (i && fl_st_cmp(e[i - 1].name, e[i].name) == 0)
      return fl_error(FL_EINVAL, "save: %s: duplicate tensor name %s", path, nm.s);
  }
  for (size_t i = 0; i < nmeta; i++) {
    fl_name_str nm = fl_show_name(m[i].key.s, m[i].key.len);
    if (!fl_utf8_valid(m[i].key.s, m[i].key.len))
      return fl_error(FL_EINVAL, "save: %s: metadata key %s is not valid UTF-8", path, nm.s);
    if (!fl_utf8_valid(m[i].value.s, m[i].value.len))
      return fl_error(FL_EINVAL, "save: %s: metadata value of %s is not valid UTF-8", path, nm.s);
    if (i && fl_st_cmp(m[i - 1].key, m[i].key) == 0)
      return fl_error(FL_EINVAL, "save: %s: duplicate metadata key %s", path, nm.s);
  }
  return FL_OK;
}

static void put_header(fl_buf *b, size_t n, const fl_st_entry *e, size_t nmeta, const fl_st_meta *m) {
  fl_buf_add(b, "{", 1);
  if (nmeta) {
    fl_buf_add(b, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < nmeta; i++) {
      if (i) fl_buf_add(b, ",", 1);
      fl_json_put_string(b, m[i].key.s, m[i].key.len);
      fl_buf_add(b, ":", 1);
      fl_json_put_string(b, m[i].value.s, m[i].value.len);
    }
    fl_buf_add(b, "}", 1);
  }
  int64_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const fl_tensor *t = e[i].tensor;
    if (i || nmeta) fl_buf_add(b, ",", 1);
    fl_json_put_string(b, e[i].name.s, e[i].name.len);
    fl_buf_addf(b, ":{\"dtype\":\"%s\",\"shape\":[", fl_st_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) fl_buf_addf(b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    int64_t nbytes = fl_numel(t) * (int64_t)fl_dtype_size(t->dtype);
    fl_buf_addf(b, "],\"data_offsets\":[%lld,%lld]}", (long long)at, (long long)(at + nbytes));
    at += nbytes;
  }
  fl_buf_add(b, "}", 1);
  while (b->len % 8) fl_buf_add(b, " ", 1);
}

fl_status fl_save_safetensors(const char *path, size_t n, const fl_st_entry *tensors, size_t nmeta,
                              const fl_st_meta *meta) {
  fl_st_entry *e = NULL;
  fl_st_meta *m = NULL;
  fl_buf hdr = {0};
  fl_atomic_file af = {.fd = -1};
  fl_status st = FL_OK;
  e = malloc((n ? n : 1) * sizeof *e);
  m = malloc((nmeta ? nmeta : 1) * sizeof *m);
  if (!e || !m) FL_CHECK(fl_error(FL_ENOMEM, "save: %s: out of host memory", path));
  if (n) memcpy(e, tensors, n * sizeof *e);
  if (nmeta) memcpy(m, meta, nmeta * sizeof *m);
  for (size_t i = 0; i < n; i++)
    if (!e[i].tensor) { /* before the sort reads its dtype */
      fl_name_str nm = fl_show_name(e[i].name.s, e[i].name.len);
      FL_CHECK(fl_error(FL_EINVAL, "save: %s: tensor %s is NULL", path, nm.s));
    }
  qsort(e, n, sizeof *e, by_file_order);
  qsort(m, nmeta, sizeof *m, fl_st_meta_cmp);
  /* names sort by dtype first: a duplicate name with another dtype is not a neighbour, so check by name */
  fl_st_entry *byname = malloc((n ? n : 1) * sizeof *byname);
  if (!byname) FL_CHECK(fl_error(FL_ENOMEM, "save: %s: out of host memory", path));
  if (n) memcpy(byname, e, n * sizeof *e);
  qsort(byname, n, sizeof *byname, by_name);
  st = check_inputs(path, n, byname, nmeta, m);
  free(byname);
  FL_CHECK(st);
  put_header(&hdr, n, e, nmeta, m);
  if (hdr.oom) FL_CHECK(fl_error(FL_ENOMEM, "save: %s: out of host memory for the header", path));
  FL_CHECK(fl_atomic_open(&af, path, "save"));
  uint64_t len = hdr.len; /* little-endian (io.h) */
  FL_CHECK(fl_atomic_write(&af, &len, 8));
  FL_CHECK(fl_atomic_write(&af, hdr.data, hdr.len));
  for (size_t i = 0; i < n; i++) FL_CHECK(fl_atomic_write_tensor(&af, e[i].tensor));
  FL_CHECK(fl_atomic_commit(&af));
done:
  fl_atomic_abort(&af);
  fl_buf_free(&hdr);
  free(e);
  free(m);
  return st;
}
