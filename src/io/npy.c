/* NumPy .npy files (versions 1.0, 2.0, 3.0): the magic "\x93NUMPY", the version, the header length (2 bytes
 * in 1.0, 4 after), a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded
 * with spaces and a newline, then the elements. Read through the shared header cursor (json.c), strictly:
 * exactly the three keys, a shape tuple of non-negative ints, and data of exactly the size the header
 * gives. Written as numpy 1.24 writes it, so the bytes match np.save's. */
#include "io.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  fl_dtype dt;    /* what the tensor holds */
  int size;       /* bytes per element in the file */
  char kind;      /* 'f', 'i', 'u', 'b' */
  bool swap;      /* big-endian in the file */
} npy_type;

/* descr -> dtype: f2/f4/f8, i4/i8 and b1 as they are; the small integers (i1, i2, u1, u2) widened to i32 and
 * u4 to i64, exactly (flame has no narrower integers); '>' (big-endian) swapped on load. */
static bool parse_descr(fl_st_str d, npy_type *t, char *why, size_t n) {
  if (d.len != 3 || !strchr("<>|=", d.s[0]) || !strchr("fiub", d.s[1]) || d.s[2] < '1' || d.s[2] > '8') {
    snprintf(why, n, "dtype '%.*s' is not supported (flame reads <f2 <f4 <f8 <i4 <i8 |b1, and i1 i2 u1 u2 u4 "
                     "widened; either byte order)", (int)(d.len > 20 ? 20 : d.len), d.s);
    return false;
  }
  t->kind = d.s[1];
  t->size = d.s[2] - '0';
  t->swap = d.s[0] == '>' && t->size > 1;
  static const struct {
    char kind;
    int size;
    fl_dtype dt;
  } map[] = {{'f', 2, FL_F16}, {'f', 4, FL_F32}, {'f', 8, FL_F64}, {'i', 1, FL_I32}, {'i', 2, FL_I32},
             {'i', 4, FL_I32}, {'i', 8, FL_I64}, {'u', 1, FL_I32}, {'u', 2, FL_I32}, {'u', 4, FL_I64},
             {'b', 1, FL_BOOL}};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (map[i].kind == t->kind && map[i].size == t->size) {
      t->dt = map[i].dt;
      return true;
    }
  snprintf(why, n, "dtype '%.*s' is not supported%s", (int)d.len, d.s,
           t->kind == 'u' && t->size == 8 ? " (u8 does not fit flame's i64)" : "");
  return false;
}

/* A Python string literal without escapes ('...' or "..."), into the arena. */
static bool py_string(fl_json *j, char *arena, fl_st_str *out) {
  fl_json_ws(j);
  if (j->p >= j->end || (*j->p != '\'' && *j->p != '"')) return fl_json_fail(j, "expected a quoted string");
  char q = *j->p++;
  const char *s = j->p;
  while (j->p < j->end && *j->p != q && *j->p != '\\' && *j->p != '\n') j->p++;
  if (j->p >= j->end || *j->p != q) return fl_json_fail(j, "unterminated or escaped string");
  memcpy(arena, s, (size_t)(j->p - s));
  out->s = arena;
  out->len = (size_t)(j->p - s);
  j->p++;
  return true;
}

static bool py_word(fl_json *j, const char *w) {
  fl_json_ws(j);
  size_t n = strlen(w);
  if ((size_t)(j->end - j->p) >= n && memcmp(j->p, w, n) == 0) {
    j->p += n;
    return true;
  }
  return false;
}

typedef struct {
  npy_type type;
  bool fortran;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
} npy_header;

static bool py_shape(fl_json *j, npy_header *h) {
  if (!fl_json_expect(j, '(', "'(' (the shape is a tuple)")) return false;
  h->ndim = 0;
  while (!fl_json_accept(j, ')')) {
    if (h->ndim == FL_MAX_DIMS) return fl_json_fail(j, "more than %d dims (flame's limit)", FL_MAX_DIMS);
    if (!fl_json_uint(j, &h->shape[h->ndim++])) return false;
    if (j->p < j->end && *j->p == 'L') j->p++; /* Python 2's long literals */
    if (fl_json_accept(j, ',')) continue;
    if (h->ndim == 1) return fl_json_fail(j, "expected ',' (a one-element tuple is written (n,))");
    if (!fl_json_expect(j, ')', "',' or ')' in the shape")) return false;
    break;
  }
  return true;
}

/* The dict: exactly 'descr', 'fortran_order' and 'shape', in any order; a trailing comma allowed. */
static bool py_header(fl_json *j, char *arena, npy_header *h, char *why, size_t nwhy) {
  static const char *const keys[] = {"descr", "fortran_order", "shape"};
  unsigned seen = 0;
  if (!fl_json_expect(j, '{', "'{' (the header is a dict)")) return false;
  while (!fl_json_accept(j, '}')) {
    fl_st_str key;
    if (!py_string(j, arena, &key) || !fl_json_expect(j, ':', "':'")) return false;
    int k = 0;
    while (k < 3 && !(key.len == strlen(keys[k]) && memcmp(key.s, keys[k], key.len) == 0)) k++;
    if (k == 3) return fl_json_fail(j, "unknown key '%.*s' (an .npy header has descr, fortran_order, shape)",
                                    (int)(key.len > 40 ? 40 : key.len), key.s);
    if (seen & 1u << k) return fl_json_fail(j, "duplicate key '%s'", keys[k]);
    seen |= 1u << k;
    if (k == 0) {
      fl_st_str d;
      fl_json_ws(j);
      if (j->p < j->end && *j->p == '[') return fl_json_fail(j, "structured dtypes are not supported");
      if (!py_string(j, arena, &d)) return false;
      if (!parse_descr(d, &h->type, why, nwhy)) return false;
    } else if (k == 1) {
      if (py_word(j, "True")) h->fortran = true;
      else if (py_word(j, "False")) h->fortran = false;
      else return fl_json_fail(j, "fortran_order is True or False");
    } else if (!py_shape(j, h)) return false;
    if (fl_json_accept(j, ',')) continue;
    if (!fl_json_expect(j, '}', "',' or '}'")) return false;
    break;
  }
  for (int k = 0; k < 3; k++)
    if (!(seen & 1u << k)) return fl_json_fail(j, "missing key '%s'", keys[k]);
  if (!fl_json_at_end(j)) return fl_json_fail(j, "trailing characters after the dict");
  return true;
}

/* The file's elements as the tensor's: widened and byte-swapped into buf (n elements). */
static void convert(const unsigned char *src, int64_t n, const npy_type *t, void *buf) {
  size_t out = fl_dtype_size(t->dt);
  for (int64_t i = 0; i < n; i++) {
    unsigned char e[8];
    for (int b = 0; b < t->size; b++) e[b] = src[i * t->size + (t->swap ? t->size - 1 - b : b)];
    char *o = (char *)buf + i * (int64_t)out;
    if (t->dt == FL_I32 && t->size < 4) {
      int32_t v = t->kind == 'u' ? (t->size == 1 ? e[0] : (int32_t)(e[0] | e[1] << 8))
                                 : (t->size == 1 ? (int8_t)e[0] : (int16_t)(e[0] | e[1] << 8));
      memcpy(o, &v, 4);
    } else if (t->dt == FL_I64 && t->size == 4) {
      uint32_t u;
      memcpy(&u, e, 4);
      int64_t v = u;
      memcpy(o, &v, 8);
    } else memcpy(o, e, out);
  }
}

static fl_status npy_read(const unsigned char *b, size_t size, const char *L, fl_device dev, fl_tensor **out) {
  const char *op = "load_npy";
  if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
    return fl_error(FL_EINVAL, "%s: %s: not an .npy file (no \\x93NUMPY magic)", op, L);
  int major = b[6], minor = b[7];
  if (major < 1 || major > 3 || minor != 0)
    return fl_error(FL_EINVAL, "%s: %s: .npy version %d.%d is not supported (1.0, 2.0, 3.0 are)", op, L, major, minor);
  size_t start = major == 1 ? 10 : 12;
  if (size < start) return fl_error(FL_EINVAL, "%s: %s: truncated header", op, L);
  size_t hlen = major == 1 ? (size_t)(b[8] | b[9] << 8)
                           : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
  if (hlen > size - start)
    return fl_error(FL_EINVAL, "%s: %s: header length %zu runs past the end of the file", op, L, hlen);
  const char *hs = (const char *)b + start;
  if (major == 3 ? !fl_utf8_valid(hs, hlen) : memchr(hs, 0, hlen) != NULL)
    return fl_error(FL_EINVAL, "%s: %s: the header is not valid text", op, L);
  char *arena = malloc(hlen + 1);
  if (!arena) return fl_error(FL_ENOMEM, "%s: %s: out of host memory", op, L);
  fl_json j;
  fl_json_init(&j, hs, hlen, "npy header");
  npy_header h = {0};
  char why[160] = "";
  bool ok = py_header(&j, arena, &h, why, sizeof why);
  free(arena);
  if (!ok) return fl_error(FL_EINVAL, "%s: %s: %s", op, L, why[0] ? why : j.err);
  int64_t numel = 1, nbytes;
  bool over = false;
  for (int d = 0; d < h.ndim; d++) over = over || fl_mul_overflows(numel, h.shape[d], &numel);
  if (over || fl_mul_overflows(numel, h.type.size, &nbytes))
    return fl_error(FL_EINVAL, "%s: %s: the byte size of the shape overflows", op, L);
  size_t have = size - start - hlen;
  if ((uint64_t)nbytes != have) {
    char sh[160];
    return fl_error(FL_EINVAL, "%s: %s: the data is %zu bytes, but shape %s of %d-byte elements needs %lld (%s)", op, L,
                    have, fl_dims_str(h.ndim, h.shape, sh, sizeof sh), h.type.size, (long long)nbytes,
                    have < (uint64_t)nbytes ? "truncated" : "trailing bytes");
  }
  /* Fortran order: the elements of the reversed shape in C order, then the dims reversed back (a view) */
  int64_t cshape[FL_MAX_DIMS];
  int perm[FL_MAX_DIMS];
  for (int d = 0; d < h.ndim; d++) {
    cshape[d] = h.fortran ? h.shape[h.ndim - 1 - d] : h.shape[d];
    perm[d] = h.ndim - 1 - d;
  }
  fl_tensor *t = NULL, *v = NULL;
  void *buf = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_error_context(fl_tensor_new(h.type.dt, dev, h.ndim, cshape, &t), op));
  const void *src = b + start + hlen;
  if (h.type.swap || (int)fl_dtype_size(h.type.dt) != h.type.size) {
    buf = malloc((size_t)numel * fl_dtype_size(h.type.dt) + 1);
    if (!buf) FL_CHECK(fl_error(FL_ENOMEM, "%s: %s: out of host memory", op, L));
    convert(src, numel, &h.type, buf);
    src = buf;
  }
  FL_CHECK(fl_io_copy_in(t, src, (size_t)numel * fl_dtype_size(h.type.dt), op));
  if (h.fortran && h.ndim > 1) {
    FL_CHECK(fl_permute(t, perm, &v));
    fl_release(t);
    t = v;
  }
  *out = t;
  t = NULL;
done:
  free(buf);
  fl_release(t);
  return st;
}

fl_status fl_load_npy(const char *path, fl_device dev, fl_tensor **out) {
  fl_mapped m;
  *out = NULL;
  FL_TRY(fl_map_file(path, "load_npy", &m));
  fl_status st = npy_read(m.data ? m.data : (const void *)"", m.size, path, dev, out);
  fl_unmap_file(&m);
  return st;
}

/* ---- writing ---- */
fl_status fl_save_npy(const char *path, const fl_tensor *t) {
  static const char *const descr[FL_NDTYPES] = {
      [FL_F32] = "<f4", [FL_F64] = "<f8", [FL_F16] = "<f2", [FL_I32] = "<i4", [FL_I64] = "<i8", [FL_BOOL] = "|b1"};
  if (!descr[t->dtype])
    return fl_error(FL_EDTYPE, "save_npy: %s: NumPy has no %s; cast the tensor first (to f32: exact)", path,
                    fl_dtype_name(t->dtype));
  fl_buf h = {0};
  fl_buf_addf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr[t->dtype]);
  for (int d = 0; d < t->ndim; d++) fl_buf_addf(&h, d ? ", %lld" : "%lld", (long long)t->shape[d]);
  fl_buf_add(&h, t->ndim == 1 ? ",), }" : "), }", t->ndim == 1 ? 5 : 4);
  /* numpy's room to grow the first dim in place: 21 digits less the ones it has */
  if (t->ndim > 0) {
    char first[24];
    int k = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int i = k; i < 21; i++) fl_buf_add(&h, " ", 1);
  }
  size_t pre = 10; /* magic, version 1.0, a 2-byte length: 8 dims of 19 digits stay far below 65536 bytes */
  while ((pre + h.len + 1) % 64) fl_buf_add(&h, " ", 1);
  fl_buf_add(&h, "\n", 1);
  fl_status st = FL_OK;
  fl_atomic_file af = {.fd = -1};
  if (h.oom) FL_CHECK(fl_error(FL_ENOMEM, "save_npy: %s: out of host memory", path));
  unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(h.len & 0xFF), (unsigned char)(h.len >> 8)};
  FL_CHECK(fl_atomic_open(&af, path, "save_npy"));
  FL_CHECK(fl_atomic_write(&af, magic, sizeof magic));
  FL_CHECK(fl_atomic_write(&af, h.data, h.len));
  FL_CHECK(fl_atomic_write_tensor(&af, t));
  FL_CHECK(fl_atomic_commit(&af));
done:
  fl_atomic_abort(&af);
  fl_buf_free(&h);
  return st;
}
