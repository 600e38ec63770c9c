/* CPU copy/cast, fill and arange. A same-dtype copy moves bytes (memcpy for
 * contiguous runs); a cast converts through the compute buffer (f64 whenever
 * f64 or a 64-bit integer is involved, so the one rounding is to the target). */
#include "cpu.h"
#include <string.h>

typedef struct { fl_dtype out, in; fl_ckind ck; } cast_ctx;

#define COPY_LOOP(T)                                                                         \
  for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) = *(const T *)(p[1] + i * s[1]); \
  break

static void copy_same(int64_t n, char **p, const int64_t *s, size_t es) {
  if (s[0] == (int64_t)es && s[1] == (int64_t)es) {
    memmove(p[0], p[1], (size_t)n * es);
    return;
  }
  switch (es) {
    case 1: COPY_LOOP(uint8_t);
    case 2: COPY_LOOP(uint16_t);
    case 4: COPY_LOOP(uint32_t);
    default: COPY_LOOP(uint64_t);
  }
}

#define CAST(T, LOAD, STORE)                                             \
  do {                                                                   \
    T buf[FL_CPU_BLOCK];                                                 \
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {                      \
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;           \
      LOAD(buf, p[1] + i * s[1], s[1], m, c->in);                        \
      STORE(p[0] + i * s[0], s[0], buf, m, c->out);                      \
    }                                                                    \
  } while (0)

static void copy_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const cast_ctx *c = vc;
  if (c->out == c->in) {
    copy_same(n, p, s, fl_dtype_size(c->out));
    return;
  }
  switch (c->ck) {
    case FL_CK_F32: CAST(float, fl_load_f32, fl_store_f32); break;
    case FL_CK_F64: CAST(double, fl_load_f64, fl_store_f64); break;
    case FL_CK_I64: CAST(int64_t, fl_load_i64, fl_store_i64); break;
  }
}

static bool wide(fl_dtype d) { return d == FL_F64 || d == FL_I64 || d == FL_I32; }

fl_status fl_cpu_copy(fl_tensor *dst, const fl_tensor *src) {
  cast_ctx c = {dst->dtype, src->dtype, fl_ckind_join(fl_ckind_of(dst->dtype), fl_ckind_of(src->dtype))};
  if (c.ck == FL_CK_F32 && (wide(dst->dtype) || wide(src->dtype))) c.ck = FL_CK_F64; /* ints <-> floats exactly */
  const fl_tensor *ts[2] = {dst, src};
  fl_plan p;
  fl_plan_init(&p, 2, ts);
  /* an overlapping same-storage copy must not be split over threads */
  fl_cpu_run(&p, copy_loop, &c, dst->storage == src->storage ? 0 : 1);
  return FL_OK;
}

#define FILL_LOOP(T)                                            \
  do {                                                          \
    T v;                                                        \
    memcpy(&v, val, sizeof v);                                  \
    if (s[0] == sizeof(T)) {                                    \
      T *o = (T *)p[0];                                         \
      for (int64_t i = 0; i < n; i++) o[i] = v;                 \
    } else {                                                    \
      for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) = v; \
    }                                                           \
  } while (0)

static void fill_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  const char *val = vc; /* one element already converted; its size at [16] */
  switch (val[16]) {
    case 1: FILL_LOOP(uint8_t); break;
    case 2: FILL_LOOP(uint16_t); break;
    case 4: FILL_LOOP(uint32_t); break;
    default: FILL_LOOP(uint64_t); break;
  }
}

fl_status fl_cpu_fill(fl_tensor *out, double value) {
  char v[17] = {0};
  fl_store_f64(v, 0, &value, 1, out->dtype);
  v[16] = (char)fl_dtype_size(out->dtype);
  const fl_tensor *ts[1] = {out};
  fl_plan p;
  fl_plan_init(&p, 1, ts);
  fl_cpu_run(&p, fill_loop, v, 1);
  return FL_OK;
}

fl_status fl_cpu_arange(fl_tensor *out, double start, double step) {
  char *p = fl_data_ptr(out);
  size_t es = fl_dtype_size(out->dtype);
  int64_t n = fl_numel(out);
  for (int64_t i = 0; i < n; i++) fl_st(p + i * es, out->dtype, start + (double)i * step);
  return FL_OK;
}

/* 1 MiB pieces: big enough that a thread's share streams, small enough to spread a staging slot. */
#define HOST_COPY_PIECE ((size_t)1 << 20)

void fl_host_memcpy(void *dst, const void *src, size_t n) {
  int64_t pieces = (int64_t)((n + HOST_COPY_PIECE - 1) / HOST_COPY_PIECE);
  int nt = pieces < 4 ? 1 : fl_cpu_threads_for((int64_t)n / 4); /* a byte copy is ~1/4 of an add */
  if (nt > pieces) nt = (int)pieces;
  FL_CPU_FOR(i, pieces, {
    size_t at = (size_t)i * HOST_COPY_PIECE, k = n - at < HOST_COPY_PIECE ? n - at : HOST_COPY_PIECE;
    memcpy((char *)dst + at, (const char *)src + at, k);
  });
}
