/* Reading safetensors files: the header is parsed and checked as a whole when the file is opened (the
 * reference reader's rules, docs/architecture.md "Checkpoints"), from memory, so that the same code serves
 * a mapped file and the fuzzer's buffers; a tensor is then copied once from the mapped bytes into its
 * storage (memcpy on the CPU, the backend's host-to-device copy elsewhere). */
#include "io.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 100000000 /* bytes, as the reference reader */

typedef struct {
  fl_st_str name;
  fl_dtype dtype;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
  int64_t begin, end;
} st_tensor;

struct fl_safetensors {
  char *label;
  void *map; /* the mapping open made (NULL for parse) */
  size_t map_len;
  const unsigned char *data; /* the byte buffer after the header */
  int64_t data_len;
  char *arena; /* the decoded names and strings */
  st_tensor *t;
  size_t n, cap;
  fl_st_meta *m;
  size_t nm, capm;
  bool has_meta;
};

/* Every dtype the format names, and ours among them (FL_NDTYPES: one flame does not have). */
static const struct {
  const char *name;
  fl_dtype dt;
} dtypes[] = {
    {"F32", FL_F32}, {"F64", FL_F64}, {"F16", FL_F16}, {"BF16", FL_BF16}, {"I32", FL_I32}, {"I64", FL_I64},
    {"BOOL", FL_BOOL}, {"U8", FL_NDTYPES}, {"I8", FL_NDTYPES}, {"I16", FL_NDTYPES}, {"U16", FL_NDTYPES},
    {"U32", FL_NDTYPES}, {"U64", FL_NDTYPES}, {"F8_E5M2", FL_NDTYPES}, {"F8_E4M3", FL_NDTYPES},
    {"F8_E8M0", FL_NDTYPES}, {"C64", FL_NDTYPES}, {"F4", FL_NDTYPES}, {"F6_E2M3", FL_NDTYPES},
    {"F6_E3M2", FL_NDTYPES},
};

const char *fl_st_dtype_name(fl_dtype dt) {
  for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
    if (dtypes[i].dt == dt) return dtypes[i].name;
  return "?";
}

/* ---- the header parser ---- */
typedef struct {
  fl_json j;
  fl_safetensors *f;
  char *arena; /* next free byte: strings decode into it, each no longer than its encoding */
  char msg[320]; /* a rule broken by well-formed JSON */
} parser;

static bool bad(parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static bool bad(parser *p, const char *fmt, ...) {
  if (p->msg[0]) return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->msg, sizeof p->msg, fmt, ap);
  va_end(ap);
  return false;
}

static bool string(parser *p, fl_st_str *out) {
  size_t len;
  if (!fl_json_string(&p->j, p->arena, &len)) return false;
  out->s = p->arena;
  out->len = len;
  p->arena += len + 1;
  return true;
}

static bool is(fl_st_str s, const char *lit) { return s.len == strlen(lit) && memcmp(s.s, lit, s.len) == 0; }

static bool grow(void **a, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return true;
  size_t c = *cap ? *cap * 2 : 16;
  void *b = realloc(*a, c * elem);
  if (!b) return false;
  *a = b;
  *cap = c;
  return true;
}

static bool dtype_field(parser *p, st_tensor *t) {
  fl_st_str s;
  if (!string(p, &s)) return false;
  fl_name_str nm = fl_show_name(t->name.s, t->name.len);
  for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++) {
    if (!is(s, dtypes[i].name)) continue;
    if (dtypes[i].dt == FL_NDTYPES)
      return bad(p, "tensor %s: dtype %s is not supported (flame has F32, F64, F16, BF16, I32, I64, BOOL)", nm.s,
                 dtypes[i].name);
    t->dtype = dtypes[i].dt;
    return true;
  }
  fl_name_str d = fl_show_name(s.s, s.len);
  return bad(p, "tensor %s: unknown dtype %s", nm.s, d.s);
}

static bool shape_field(parser *p, st_tensor *t) {
  if (!fl_json_expect(&p->j, '[', "'[' (a shape array)")) return false;
  t->ndim = 0;
  if (fl_json_accept(&p->j, ']')) return true;
  do {
    if (t->ndim == FL_MAX_DIMS) {
      fl_name_str nm = fl_show_name(t->name.s, t->name.len);
      return bad(p, "tensor %s has more than %d dims (flame's limit)", nm.s, FL_MAX_DIMS);
    }
    if (!fl_json_uint(&p->j, &t->shape[t->ndim++])) return false;
  } while (fl_json_accept(&p->j, ','));
  return fl_json_expect(&p->j, ']', "',' or ']' in a shape");
}

static bool offsets_field(parser *p, st_tensor *t) {
  return fl_json_expect(&p->j, '[', "'[' (data_offsets)") && fl_json_uint(&p->j, &t->begin) &&
         fl_json_expect(&p->j, ',', "',' (data_offsets has two entries)") && fl_json_uint(&p->j, &t->end) &&
         fl_json_expect(&p->j, ']', "']' (data_offsets has two entries)");
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, each field once, no others. */
static bool tensor_info(parser *p, fl_st_str name) {
  fl_safetensors *f = p->f;
  if (!grow((void **)&f->t, &f->cap, f->n, sizeof *f->t)) return bad(p, "out of host memory");
  st_tensor *t = &f->t[f->n];
  memset(t, 0, sizeof *t);
  t->name = name;
  fl_name_str nm = fl_show_name(name.s, name.len);
  if (!fl_json_expect(&p->j, '{', "'{' (a tensor's entry is an object)")) return false;
  static const char *const fields[] = {"dtype", "shape", "data_offsets"};
  unsigned seen = 0;
  if (!fl_json_accept(&p->j, '}')) {
    do {
      fl_st_str key;
      if (!string(p, &key) || !fl_json_expect(&p->j, ':', "':'")) return false;
      int k = 0;
      while (k < 3 && !is(key, fields[k])) k++;
      fl_name_str kn = fl_show_name(key.s, key.len);
      if (k == 3) return bad(p, "tensor %s: unknown field %s (expected dtype, shape, data_offsets)", nm.s, kn.s);
      if (seen & 1u << k) return bad(p, "tensor %s: duplicate field %s", nm.s, kn.s);
      seen |= 1u << k;
      if (!(k == 0 ? dtype_field(p, t) : k == 1 ? shape_field(p, t) : offsets_field(p, t))) return false;
    } while (fl_json_accept(&p->j, ','));
    if (!fl_json_expect(&p->j, '}', "',' or '}' in a tensor's entry")) return false;
  }
  for (int k = 0; k < 3; k++)
    if (!(seen & 1u << k)) return bad(p, "tensor %s: missing field \"%s\"", nm.s, fields[k]);
  f->n++;
  return true;
}

/* null, or {string: string}. */
static bool metadata(parser *p) {
  fl_safetensors *f = p->f;
  if (f->has_meta) return bad(p, "duplicate \"__metadata__\"");
  f->has_meta = true;
  if (fl_json_null(&p->j)) return true;
  if (!fl_json_expect(&p->j, '{', "'{' (\"__metadata__\" is an object of strings)")) return false;
  if (fl_json_accept(&p->j, '}')) return true;
  do {
    if (!grow((void **)&f->m, &f->capm, f->nm, sizeof *f->m)) return bad(p, "out of host memory");
    fl_st_meta *m = &f->m[f->nm];
    if (!string(p, &m->key) || !fl_json_expect(&p->j, ':', "':'")) return false;
    fl_json_ws(&p->j);
    if (p->j.p < p->j.end && *p->j.p != '"') {
      fl_name_str kn = fl_show_name(m->key.s, m->key.len);
      return bad(p, "metadata value of %s is not a string", kn.s);
    }
    if (!string(p, &m->value)) return false;
    f->nm++;
  } while (fl_json_accept(&p->j, ','));
  return fl_json_expect(&p->j, '}', "',' or '}' in \"__metadata__\"");
}

static bool header(parser *p) {
  if (!fl_json_expect(&p->j, '{', "'{' (the header is a JSON object)")) return false;
  if (!fl_json_accept(&p->j, '}')) {
    do {
      fl_st_str key;
      if (!string(p, &key) || !fl_json_expect(&p->j, ':', "':'")) return false;
      if (!(is(key, "__metadata__") ? metadata(p) : tensor_info(p, key))) return false;
    } while (fl_json_accept(&p->j, ','));
    if (!fl_json_expect(&p->j, '}', "',' or '}' after an entry")) return false;
  }
  if (!fl_json_at_end(&p->j)) return fl_json_fail(&p->j, "trailing characters after the header object");
  return true;
}

/* ---- the checks on the parsed header ---- */
static int by_name(const void *a, const void *b) { return fl_st_cmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name); }
static int by_offsets(const void *a, const void *b) {
  const st_tensor *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return by_name(a, b); /* ties (a second empty tensor at one offset) in a fixed order */
}

static bool check(parser *p) {
  fl_safetensors *f = p->f;
  if (f->n > 1) qsort(f->t, f->n, sizeof *f->t, by_name); /* (qsort's base must not be NULL, even for 0) */
  for (size_t i = 1; i < f->n; i++)
    if (fl_st_cmp(f->t[i - 1].name, f->t[i].name) == 0) {
      fl_name_str nm = fl_show_name(f->t[i].name.s, f->t[i].name.len);
      return bad(p, "duplicate tensor name %s", nm.s);
    }
  if (f->nm > 1) qsort(f->m, f->nm, sizeof *f->m, fl_st_meta_cmp);
  for (size_t i = 1; i < f->nm; i++)
    if (fl_st_cmp(f->m[i - 1].key, f->m[i].key) == 0) {
      fl_name_str nm = fl_show_name(f->m[i].key.s, f->m[i].key.len);
      return bad(p, "duplicate metadata key %s", nm.s);
    }
  if (f->n > 1) qsort(f->t, f->n, sizeof *f->t, by_offsets);
  int64_t at = 0; /* where the next tensor must begin */
  for (size_t i = 0; i < f->n; i++) {
    st_tensor *t = &f->t[i];
    fl_name_str nm = fl_show_name(t->name.s, t->name.len);
    if (t->end < t->begin)
      return bad(p, "tensor %s: data_offsets [%lld, %lld] end before they begin", nm.s, (long long)t->begin,
                 (long long)t->end);
    if (t->begin > at)
      return bad(p, "tensor %s: data_offsets begin at %lld, leaving a gap after the previous tensor's end at %lld",
                 nm.s, (long long)t->begin, (long long)at);
    if (t->begin < at)
      return bad(p, "tensor %s: data_offsets begin at %lld, overlapping the previous tensor (which ends at %lld)",
                 nm.s, (long long)t->begin, (long long)at);
    int64_t numel = 1, nbytes;
    bool over = false;
    for (int d = 0; d < t->ndim; d++) over = over || fl_mul_overflows(numel, t->shape[d], &numel);
    if (over || fl_mul_overflows(numel, (int64_t)fl_dtype_size(t->dtype), &nbytes))
      return bad(p, "tensor %s: the byte size of its shape overflows", nm.s);
    if (nbytes != t->end - t->begin) {
      char sh[160];
      return bad(p, "tensor %s: shape %s of %s is %lld bytes, but data_offsets [%lld, %lld] span %lld", nm.s,
                 fl_dims_str(t->ndim, t->shape, sh, sizeof sh), fl_st_dtype_name(t->dtype), (long long)nbytes,
                 (long long)t->begin, (long long)t->end, (long long)(t->end - t->begin));
    }
    if (t->end > f->data_len)
      return bad(p, "tensor %s: data_offsets [%lld, %lld] run past the end of the data (%lld bytes)", nm.s,
                 (long long)t->begin, (long long)t->end, (long long)f->data_len);
    at = t->end;
  }
  if (at != f->data_len)
    return bad(p, "%lld trailing bytes after the last tensor (the data is %lld bytes, the tensors cover %lld)",
               (long long)(f->data_len - at), (long long)f->data_len, (long long)at);
  return true;
}

/* ---- opening ---- */
static fl_status parse(fl_safetensors *f, const void *file, size_t size, const char *op) {
  const unsigned char *bytes = file;
  const char *L = f->label;
  if (size < 8)
    return fl_error(FL_EINVAL, "%s: %s: %zu bytes, too short for the 8-byte header length (truncated file)", op, L, size);
  uint64_t n;
  memcpy(&n, bytes, 8); /* little-endian (io.h) */
  if (n > MAX_HEADER)
    return fl_error(FL_EINVAL, "%s: %s: header length %llu exceeds the limit of %d bytes", op, L, (unsigned long long)n,
                    MAX_HEADER);
  if (n > size - 8)
    return fl_error(FL_EINVAL, "%s: %s: header length %llu runs past the end of the file (%zu bytes after the length)",
                    op, L, (unsigned long long)n, size - 8);
  const char *h = (const char *)bytes + 8;
  if (!fl_utf8_valid(h, (size_t)n)) return fl_error(FL_EINVAL, "%s: %s: the header is not valid UTF-8", op, L);
  f->data = bytes + 8 + n;
  f->data_len = (int64_t)(size - 8 - n);
  f->arena = malloc((size_t)n + 1);
  if (!f->arena) return fl_error(FL_ENOMEM, "%s: %s: out of host memory for a %llu-byte header", op, L, (unsigned long long)n);
  parser p;
  fl_json_init(&p.j, h, (size_t)n, "JSON header");
  p.f = f;
  p.arena = f->arena;
  p.msg[0] = 0;
  if (header(&p) && check(&p)) return FL_OK;
  return fl_error(FL_EINVAL, "%s: %s: %s", op, L, p.msg[0] ? p.msg : p.j.err);
}

static fl_status new_handle(const char *label, fl_safetensors **out) {
  fl_safetensors *f = calloc(1, sizeof *f);
  if (f) f->label = strdup(label ? label : "<memory>");
  if (!f || !f->label) {
    free(f);
    return fl_error(FL_ENOMEM, "load: out of host memory");
  }
  *out = f;
  return FL_OK;
}

fl_status fl_safetensors_parse(const void *data, size_t size, const char *label, fl_safetensors **out) {
  fl_safetensors *f = NULL;
  *out = NULL;
  FL_TRY(new_handle(label, &f));
  fl_status st = parse(f, data, size, "load");
  if (st != FL_OK) fl_safetensors_close(f);
  else *out = f;
  return st;
}

fl_status fl_safetensors_open(const char *path, fl_safetensors **out) {
  fl_safetensors *f = NULL;
  *out = NULL;
  FL_TRY(new_handle(path, &f));
  fl_mapped m;
  fl_status st = fl_map_file(path, "load", &m);
  if (st == FL_OK) {
    f->map = m.data;
    f->map_len = m.size;
    st = parse(f, m.data ? m.data : (const void *)"", m.size, "load");
  }
  if (st != FL_OK) fl_safetensors_close(f);
  else *out = f;
  return st;
}

void fl_safetensors_close(fl_safetensors *f) {
  if (!f) return;
  fl_unmap_file(&(fl_mapped){f->map, f->map_len});
  free(f->label);
  free(f->arena);
  free(f->t);
  free(f->m);
  free(f);
}

size_t fl_safetensors_count(const fl_safetensors *f) { return f->n; }
size_t fl_safetensors_metadata_count(const fl_safetensors *f) { return f->nm; }

void fl_safetensors_info(const fl_safetensors *f, size_t i, fl_st_info *out) {
  const st_tensor *t = &f->t[i];
  out->name = t->name;
  out->dtype = t->dtype;
  out->ndim = t->ndim;
  memcpy(out->shape, t->shape, sizeof out->shape);
  out->offset = t->begin;
  out->nbytes = t->end - t->begin;
}

void fl_safetensors_metadata(const fl_safetensors *f, size_t i, fl_st_str *key, fl_st_str *value) {
  *key = f->m[i].key;
  *value = f->m[i].value;
}

/* ---- loading a tensor ---- */
fl_status fl_safetensors_load(const fl_safetensors *f, size_t i, fl_device dev, fl_tensor **out) {
  const st_tensor *s = &f->t[i];
  fl_tensor *t;
  *out = NULL;
  FL_TRY(fl_error_context(fl_tensor_new(s->dtype, dev, s->ndim, s->shape, &t), "load"));
  fl_status st = fl_io_copy_in(t, f->data + s->begin, (size_t)(s->end - s->begin), "load");
  if (st != FL_OK) {
    fl_release(t);
    return st;
  }
  *out = t;
  return FL_OK;
}
