/* The index mapping of pooling, interpolation and reflect/replicate padding,
 * shared by the front-ends (ops/pool.c, resize.c, pad.c), the CPU kernels and
 * the CUDA kernels: plain data and plain inline functions, so every device
 * picks the same windows, source pixels and weights (PyTorch 1.13's rules).
 *
 * Every op works on a contiguous tensor viewed as [planes, D, H, W]: the
 * leading dims flattened into planes, the spatial dims padded to three with
 * leading size-1 dims (kernel 1, stride 1, no padding, identity mapping there).
 * Forward kernels compute each output element from its window; backward
 * kernels compute each input-gradient element by gathering over the outputs
 * whose windows touch it (the *_range functions), so no atomics are needed
 * and the result does not depend on the thread schedule. */
#ifndef FL_POOL_GEOM_H
#define FL_POOL_GEOM_H
#include "flame.h" /* fl_pad_mode */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define FL_PG_FN __host__ __device__ __forceinline__
#else
#define FL_PG_FN static inline
#endif

#define FL_PG_DIMS 3

/* a / b for a >= 0, b > 0: a 32-bit division when both fit (GPUs have no 64-bit divide; it is a long
 * subroutine there), and none for b == 1. */
FL_PG_FN int64_t fl_pg_div(int64_t a, int64_t b) {
  if (b == 1) return a;
  return ((a | b) >> 31) == 0 ? (int64_t)((uint32_t)a / (uint32_t)b) : a / b;
}

typedef enum { FL_POOL_MAX, FL_POOL_AVG, FL_POOL_ADAPTIVE_AVG } fl_pool_kind;

typedef struct fl_pool_geom {
  int kind; /* fl_pool_kind */
  bool count_include_pad;
  int64_t planes;
  int64_t in[3], out[3], k[3], stride[3], pad[3], dil[3]; /* adaptive: only in and out */
  int64_t base; /* max: indices stored as base + the flat position in the input plane */
} fl_pool_geom;

/* Output o's window along dim d: input positions lo, lo + step, ... below hi
 * (clipped to the input), and *div the count avg divides by for that dim. */
FL_PG_FN void fl_pool_window(const fl_pool_geom *g, int d, int64_t o, int64_t *lo, int64_t *hi, int64_t *div) {
  const int64_t in = g->in[d];
  if (g->kind == FL_POOL_ADAPTIVE_AVG) { /* [floor(o in / out), ceil((o + 1) in / out)) */
    *lo = fl_pg_div(o * in, g->out[d]);
    *hi = fl_pg_div((o + 1) * in + g->out[d] - 1, g->out[d]);
    *div = *hi - *lo;
    return;
  }
  int64_t start = o * g->stride[d] - g->pad[d];
  if (g->kind == FL_POOL_MAX) {
    int64_t end = start + (g->k[d] - 1) * g->dil[d] + 1;
    while (start < 0) start += g->dil[d];
    *lo = start, *hi = end < in ? end : in, *div = 1;
    return;
  }
  /* avg: the window may reach into the right padding (ceil_mode: past it), as PyTorch counts it */
  int64_t end = start + g->k[d], limit = in + g->pad[d];
  if (end > limit) end = limit;
  int64_t a = start < 0 ? 0 : start, b = end < in ? end : in;
  *div = g->count_include_pad ? end - start : b - a;
  *lo = a, *hi = b;
}

/* The outputs [*lo, *hi) along dim d whose windows may contain input i
 * (for max with dilation a superset: the backward checks the saved argmax). */
FL_PG_FN void fl_pool_range(const fl_pool_geom *g, int d, int64_t i, int64_t *lo, int64_t *hi) {
  const int64_t out = g->out[d];
  int64_t a, b;
  if (g->kind == FL_POOL_ADAPTIVE_AVG) {
    a = fl_pg_div(i * out, g->in[d]);
    b = fl_pg_div((i + 1) * out + g->in[d] - 1, g->in[d]);
  } else {
    const int64_t s = g->stride[d], dil = g->kind == FL_POOL_MAX ? g->dil[d] : 1;
    int64_t first = i + g->pad[d] - (g->k[d] - 1) * dil; /* o s >= first and o s <= i + pad */
    a = first <= 0 ? 0 : fl_pg_div(first + s - 1, s);
    b = fl_pg_div(i + g->pad[d], s) + 1;
  }
  *lo = a;
  *hi = b < out ? b : out;
}

/* ---- interpolation ---- */
typedef struct fl_interp_geom {
  int nsp;             /* interpolated dims: the last nsp of the three */
  bool linear;         /* linear/bilinear/trilinear, else nearest */
  bool align_corners;
  int64_t planes, in[3], out[3];
  double scale[3];     /* PyTorch's source scale: 1/scale_factor when one was given, else in/out
                          ((in - 1)/(out - 1) with align_corners), computed in f64 ... */
  float scale_f[3];    /* ... and in f32, for the f32 compute type (and nearest, always f32) */
} fl_interp_geom;

/* nearest: floor(o * scale) in f32, as PyTorch's nearest_idx (same size and 2x are exact shortcuts) */
FL_PG_FN int64_t fl_nearest_src(const fl_interp_geom *g, int d, int64_t o) {
  const int64_t in = g->in[d], out = g->out[d];
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  int64_t s = (int64_t)floorf((float)o * g->scale_f[d]);
  return s < in - 1 ? s : in - 1;
}

/* linear: the source position in the compute type C (float for f32/f16/bf16,
 * double for f64), as PyTorch's area_pixel_compute_source_index; i0 its floor,
 * i1 the next pixel (i0 at the last), l1 the weight of i1 (1 - l1 that of i0). */
#define FL_PG_LINEAR(C, SUF, SCALE)                                                                            \
  FL_PG_FN void fl_linear_src_##SUF(const fl_interp_geom *g, int d, int64_t o, int64_t *i0, int64_t *i1, C *l1) { \
    const C scale = g->SCALE[d];                                                                          \
    C r = g->align_corners ? scale * (C)o : scale * ((C)o + (C)0.5) - (C)0.5;                             \
    if (r < 0) r = 0;                                                                                     \
    int64_t i = (int64_t)r;                                                                               \
    if (i > g->in[d] - 1) i = g->in[d] - 1;                                                              \
    C l = r - (C)i;                                                                                       \
    *l1 = l < 0 ? (C)0 : l > 1 ? (C)1 : l;                                                                \
    *i0 = i;                                                                                              \
    *i1 = i < g->in[d] - 1 ? i + 1 : i;                                                                   \
  }                                                                                                       \
  /* The weight output o gives input i along dim d (0 when it does not touch it). */                      \
  FL_PG_FN C fl_interp_weight_##SUF(const fl_interp_geom *g, int d, int64_t o, int64_t i) {                \
    if (d < FL_PG_DIMS - g->nsp) return (C)(o == i);                                                      \
    if (!g->linear) return (C)(fl_nearest_src(g, d, o) == i);                                             \
    int64_t i0, i1;                                                                                       \
    C l1;                                                                                                 \
    fl_linear_src_##SUF(g, d, o, &i0, &i1, &l1);                                                          \
    return (i0 == i ? (C)1 - l1 : (C)0) + (i1 == i ? l1 : (C)0);                                          \
  }
FL_PG_LINEAR(float, f, scale_f)
FL_PG_LINEAR(double, d, scale)
#undef FL_PG_LINEAR

/* The lowest source pixel output o reads along dim d (monotonic in o), with
 * the linear source computed in f64 or f32 as the weights are. */
FL_PG_FN int64_t fl_interp_first_src(const fl_interp_geom *g, int d, int64_t o, bool f64) {
  if (!g->linear) return fl_nearest_src(g, d, o);
  int64_t i0, i1;
  if (f64) {
    double l;
    fl_linear_src_d(g, d, o, &i0, &i1, &l);
  } else {
    float l;
    fl_linear_src_f(g, d, o, &i0, &i1, &l);
  }
  return i0;
}

/* The first output o along dim d whose first source pixel is >= want: a walk
 * from an estimate over the monotonic source index (exact from any start). */
FL_PG_FN int64_t fl_interp_lower(const fl_interp_geom *g, int d, int64_t want, bool f64) {
  const int64_t out = g->out[d];
  const float s = g->scale_f[d]; /* only an estimate: f32 is enough (and fast on GPUs) */
  float est = s > 0 ? (g->linear && !g->align_corners ? ((float)want + 0.5f) / s - 0.5f : (float)want / s) : 0;
  int64_t o = !(est > 0) ? 0 : est >= (float)out ? out : (int64_t)est;
  while (o > 0 && fl_interp_first_src(g, d, o - 1, f64) >= want) o--;
  while (o < out && fl_interp_first_src(g, d, o, f64) < want) o++;
  return o;
}

/* The outputs [*lo, *hi) along dim d that read input i (a superset by at most
 * the outputs of weight 0). f64: the compute type of the weights. */
FL_PG_FN void fl_interp_range(const fl_interp_geom *g, int d, int64_t i, int64_t *lo, int64_t *hi, bool f64) {
  if (d < FL_PG_DIMS - g->nsp) {
    *lo = i, *hi = i + 1;
    return;
  }
  /* a linear output reads its first pixel and the next */
  *lo = fl_interp_lower(g, d, g->linear ? i - 1 : i, f64);
  *hi = fl_interp_lower(g, d, i + 1, f64);
}

/* ---- reflect and replicate padding ---- */
typedef struct fl_pad_geom {
  int mode; /* FL_PAD_REFLECT or FL_PAD_REPLICATE (constant padding is a fill and a copy) */
  int64_t planes, in[3], out[3], before[3]; /* before: the padding before each dim (negative: cropped) */
} fl_pad_geom;

/* The reflect/replicate rule on j = o - before (the unpadded position), in
 * either index width: the CUDA 2-d fast path (cuda/resample_fast.cuh) keeps
 * 32 bits, so both widths come from this one definition. */
#define FL_PAD_MAP(T, SUF)                                                     \
  FL_PG_FN T fl_pad_map_##SUF(T j, T in, int mode) {                           \
    if (mode == FL_PAD_REFLECT) return j < 0 ? -j : j >= in ? 2 * (in - 1) - j : j; \
    return j < 0 ? 0 : j >= in ? in - 1 : j;                                   \
  }
FL_PAD_MAP(int64_t, l)
FL_PAD_MAP(int, i)
#undef FL_PAD_MAP

/* The input position output o reads along dim d (reflect needs before, after < in). */
FL_PG_FN int64_t fl_pad_src(const fl_pad_geom *g, int d, int64_t o) {
  return fl_pad_map_l(o - g->before[d], g->in[d], g->mode);
}

/* The outputs along dim d that read input i, as up to three intervals
 * [lo[k], hi[k]); returns how many. Replicate: one interval (the edges take
 * the whole padding); reflect: the direct position and its mirrors. */
FL_PG_FN int fl_pad_sources(const fl_pad_geom *g, int d, int64_t i, int64_t *lo, int64_t *hi) {
  const int64_t in = g->in[d], out = g->out[d], b = g->before[d];
  int n = 0;
  if (g->mode == FL_PAD_REPLICATE) {
    int64_t a = i == 0 ? 0 : i + b, e = i == in - 1 ? out : i + b + 1;
    if (a < 0) a = 0;
    if (e > out) e = out;
    if (a < e) lo[n] = a, hi[n] = e, n++;
    return n;
  }
  const int64_t c[3] = {b - i, b + i, b + 2 * (in - 1) - i};
  for (int k = 0; k < 3; k++) {
    bool dup = false;
    for (int m = 0; m < n; m++) dup = dup || lo[m] == c[k];
    if (!dup && c[k] >= 0 && c[k] < out && fl_pad_src(g, d, c[k]) == i) lo[n] = c[k], hi[n] = c[k] + 1, n++;
  }
  return n;
}

#endif
