/* The 2-D, 32-bit index math of the fast paths of pool.cu, resize.cu and pad.cu: the same windows, ranges and
 * source pixels as core/pool_geom.h's generic functions, for the common case of at most two spatial dims (the
 * padded leading dim has size 1 and the identity mapping) where every size and every element count fits in 31
 * bits. Plain host/device code with no CUDA dependency, so a host program can check it against pool_geom.h
 * shape by shape. The host-side makers return false when a fast path does not apply; the launchers then take
 * the generic kernels.
 *
 * Why: the generic kernels decompose every flat index over three dims with 64-bit (or runtime-checked 32-bit)
 * divisions and walk generic windows; these kernels are memory-bound, and that integer work made them several
 * times slower than the bandwidth allows. Divisions here are by precomputed magic numbers (one multiply-high). */
#ifndef FL_CUDA_RESAMPLE_FAST_CUH
#define FL_CUDA_RESAMPLE_FAST_CUH

#include "../src/core/pool_geom.h"

#ifdef __CUDACC__
#define FC_RF_FN __host__ __device__ __forceinline__
#else
#define FC_RF_FN static inline
#endif

/* n / d for n < 2^31 and 1 <= d < 2^31 as (mulhi(n, m) + n) >> s (Granlund-Montgomery, as PyTorch's
 * IntDivider): exact for every such n (tests/ checks it on the host). */
typedef struct fc_udiv {
  uint32_t d, m, s;
} fc_udiv;

static inline fc_udiv fc_udiv_make(uint32_t d) {
  uint32_t s = 0;
  while (s < 32 && ((uint64_t)1 << s) < d) s++;
  fc_udiv v = {d, (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << s) - d)) / d + 1), s};
  return v;
}

FC_RF_FN uint32_t fc_udiv_q(fc_udiv v, uint32_t n) {
#ifdef __CUDA_ARCH__
  const uint32_t t = __umulhi(n, v.m);
#else
  const uint32_t t = (uint32_t)(((uint64_t)n * v.m) >> 32);
#endif
  return (t + n) >> v.s;
}

/* e -> (plane, row, col) of a [planes, rows, cols] layout */
FC_RF_FN int fc_split2(uint32_t e, fc_udiv cols, fc_udiv rows, int *r, int *c) {
  const uint32_t q = fc_udiv_q(cols, e), p = fc_udiv_q(rows, q);
  *c = (int)(e - q * cols.d);
  *r = (int)(q - p * rows.d);
  return (int)p;
}

/* Every size and count below this bound keeps the 32-bit arithmetic of the fast paths exact (sums of a few
 * such terms, and products of two of them, stay below 2^31). */
#define FC_RF_SMALL ((int64_t)1 << 29)
static inline bool fc_rf_fits(int64_t planes, int64_t nin, int64_t nout) {
  return planes > 0 && planes < INT32_MAX && nin > 0 && nout > 0 && nin <= INT32_MAX / planes && nout <= INT32_MAX / planes;
}

/* ---- pooling: dims h (0) and w (1) ---- */
typedef struct fc_pool2d {
  int kind; /* fl_pool_kind */
  bool count_include_pad;
  int in[2], out[2], k[2], stride[2], pad[2], dil[2];
  fc_udiv in_div[2], out_div[2]; /* rows and cols of the input and the output */
  int64_t base;
} fc_pool2d;

static inline bool fc_pool2d_make(const fl_pool_geom *g, fc_pool2d *f) {
  if (g->in[0] != 1 || g->out[0] != 1 || g->k[0] != 1 || g->stride[0] != 1 || g->pad[0] != 0 || g->dil[0] != 1)
    return false;
  if (!fc_rf_fits(g->planes, g->in[1] * g->in[2], g->out[1] * g->out[2])) return false;
  for (int d = 0; d < 2; d++) {
    const int64_t in = g->in[d + 1], out = g->out[d + 1];
    if (g->kind == FL_POOL_ADAPTIVE_AVG) { /* o in, (o + 1) in + out, i out, (i + 1) out + in */
      if (in >= 32768 || out >= 32768) return false;
      f->k[d] = f->stride[d] = f->dil[d] = 1, f->pad[d] = 0;
    } else {
      const int64_t k = g->k[d + 1], s = g->stride[d + 1], p = g->pad[d + 1], dil = g->dil[d + 1];
      if (in >= FC_RF_SMALL || out >= FC_RF_SMALL || p >= FC_RF_SMALL || k < 1 || s < 1 || dil < 1 ||
          k * dil >= FC_RF_SMALL || out * s >= FC_RF_SMALL)
        return false;
      f->k[d] = (int)k, f->stride[d] = (int)s, f->pad[d] = (int)p, f->dil[d] = (int)dil;
    }
    f->in[d] = (int)in, f->out[d] = (int)out;
    f->in_div[d] = fc_udiv_make((uint32_t)in), f->out_div[d] = fc_udiv_make((uint32_t)out);
  }
  /* the avg divisor dh dw (at most the kernel's area) in an int */
  if (g->kind == FL_POOL_AVG && g->k[1] * g->k[2] >= FC_RF_SMALL) return false;
  f->kind = g->kind, f->count_include_pad = g->count_include_pad, f->base = g->base;
  return true;
}

/* fl_pool_window in 32 bits (the adaptive divisions by out: out < 2^15, o in < 2^30) */
FC_RF_FN void fc_pool2d_window(const fc_pool2d *g, int d, int o, int *lo, int *hi, int *div) {
  const int in = g->in[d];
  if (g->kind == FL_POOL_ADAPTIVE_AVG) {
    const uint32_t out = (uint32_t)g->out[d];
    *lo = (int)((uint32_t)(o * in) / out);
    *hi = (int)((uint32_t)((o + 1) * in + (int)out - 1) / out);
    *div = *hi - *lo;
    return;
  }
  int start = o * g->stride[d] - g->pad[d];
  if (g->kind == FL_POOL_MAX) {
    const int end = start + (g->k[d] - 1) * g->dil[d] + 1;
    while (start < 0) start += g->dil[d];
    *lo = start, *hi = end < in ? end : in, *div = 1;
    return;
  }
  int end = start + g->k[d];
  const int limit = in + g->pad[d];
  if (end > limit) end = limit;
  const int a = start < 0 ? 0 : start, b = end < in ? end : in;
  *div = g->count_include_pad ? end - start : b - a;
  *lo = a, *hi = b;
}

/* fl_pool_range in 32 bits; non-overlapping windows (stride == kernel, no dilation or padding) directly */
FC_RF_FN void fc_pool2d_range(const fc_pool2d *g, int d, int i, int *lo, int *hi) {
  const int out = g->out[d];
  int a, b;
  if (g->kind == FL_POOL_ADAPTIVE_AVG) {
    const uint32_t in = (uint32_t)g->in[d];
    a = (int)((uint32_t)(i * out) / in);
    b = (int)((uint32_t)((i + 1) * out + (int)in - 1) / in);
  } else {
    const int s = g->stride[d], dil = g->kind == FL_POOL_MAX ? g->dil[d] : 1;
    if (s == g->k[d] && dil == 1 && g->pad[d] == 0) {
      a = (int)((uint32_t)i / (uint32_t)s), b = a + 1;
    } else {
      const int first = i + g->pad[d] - (g->k[d] - 1) * dil;
      a = first <= 0 ? 0 : (int)((uint32_t)(first + s - 1) / (uint32_t)s);
      b = (int)((uint32_t)(i + g->pad[d]) / (uint32_t)s) + 1;
    }
  }
  *lo = a;
  *hi = b < out ? b : out;
}

/* ---- nearest upsampling by integer factors: out = f in along h and w ---- */
typedef struct fc_near2d {
  int in[2], out[2], f[2];
  fc_udiv in_div[2], out_div[2], f_div[2];
} fc_near2d;

/* Taken only where fl_nearest_src(o) == o / f for every output o (checked here, O(out)): the f32 source scale
 * of a factor like 3 rounds, and for large sizes floor(o scale) can leave o / f. */
static inline bool fc_near2d_make(const fl_interp_geom *g, fc_near2d *f) {
  if (g->linear || g->in[0] != 1 || g->out[0] != 1 || !fc_rf_fits(g->planes, g->in[1] * g->in[2], g->out[1] * g->out[2]))
    return false;
  for (int d = 0; d < 2; d++) {
    const int64_t in = g->in[d + 1], out = g->out[d + 1];
    if (out >= ((int64_t)1 << 24) || out % in != 0) return false; /* also bounds the check's loop */
    const int64_t fac = out / in;
    for (int64_t o = 0; o < out; o++) {
      const int64_t src = d + 1 < FL_PG_DIMS - g->nsp ? o : fl_nearest_src(g, d + 1, o);
      if (src != o / fac) return false;
    }
    f->in[d] = (int)in, f->out[d] = (int)out, f->f[d] = (int)fac;
    f->in_div[d] = fc_udiv_make((uint32_t)in), f->out_div[d] = fc_udiv_make((uint32_t)out);
    f->f_div[d] = fc_udiv_make((uint32_t)fac);
  }
  return true;
}

/* ---- reflect and replicate padding ---- */
typedef struct fc_pad2d {
  int mode, in[2], out[2], before[2];
  fc_udiv in_div[2], out_div[2];
} fc_pad2d;

static inline bool fc_pad2d_make(const fl_pad_geom *g, fc_pad2d *f) {
  if (g->in[0] != 1 || g->out[0] != 1 || g->before[0] != 0 || !fc_rf_fits(g->planes, g->in[1] * g->in[2], g->out[1] * g->out[2]))
    return false;
  for (int d = 0; d < 2; d++) {
    const int64_t in = g->in[d + 1], out = g->out[d + 1], b = g->before[d + 1];
    if (in >= FC_RF_SMALL || out >= FC_RF_SMALL || b >= FC_RF_SMALL || b <= -FC_RF_SMALL) return false;
    f->in[d] = (int)in, f->out[d] = (int)out, f->before[d] = (int)b;
    f->in_div[d] = fc_udiv_make((uint32_t)in), f->out_div[d] = fc_udiv_make((uint32_t)out);
  }
  f->mode = g->mode;
  return true;
}

/* fl_pad_src in 32 bits */
FC_RF_FN int fc_pad2d_src(const fc_pad2d *g, int d, int o) { return fl_pad_map_i(o - g->before[d], g->in[d], g->mode); }

/* The outputs along dim d that read input i, as fl_pad_sources finds them, in forms the kernels keep in registers
 * (no indexed arrays, which would go to local memory). Replicate: one interval [*lo, *hi), empty when lo >= hi. */
FC_RF_FN void fc_pad2d_replicate_range(const fc_pad2d *g, int d, int i, int *lo, int *hi) {
  const int in = g->in[d], out = g->out[d], b = g->before[d];
  const int a = i == 0 ? 0 : i + b, e = i == in - 1 ? out : i + b + 1;
  *lo = a < 0 ? 0 : a;
  *hi = e > out ? out : e;
}

/* Reflect: candidate k of 0..2 (the direct position and its two mirrors) ... */
FC_RF_FN int fc_pad2d_cand(const fc_pad2d *g, int d, int i, int k) {
  const int b = g->before[d];
  return k == 0 ? b - i : k == 1 ? b + i : b + 2 * (g->in[d] - 1) - i;
}

/* ... and bit k set when candidate k reads i and is not an earlier one again (fl_pad_sources' order) */
FC_RF_FN unsigned fc_pad2d_reflect_mask(const fc_pad2d *g, int d, int i) {
  unsigned mask = 0;
  for (int k = 0; k < 3; k++) {
    const int c = fc_pad2d_cand(g, d, i, k);
    bool dup = false;
    for (int m = 0; m < k; m++) dup = dup || (((mask >> m) & 1u) && fc_pad2d_cand(g, d, i, m) == c);
    if (!dup && c >= 0 && c < g->out[d] && fc_pad2d_src(g, d, c) == i) mask |= 1u << k;
  }
  return mask;
}

/* fl_pad_sources in 32 bits from the three above: the same intervals in the same order (the host test checks it) */
FC_RF_FN int fc_pad2d_sources(const fc_pad2d *g, int d, int i, int *lo, int *hi) {
  int n = 0;
  if (g->mode == FL_PAD_REPLICATE) {
    int a, e;
    fc_pad2d_replicate_range(g, d, i, &a, &e);
    if (a < e) lo[n] = a, hi[n] = e, n++;
    return n;
  }
  const unsigned mask = fc_pad2d_reflect_mask(g, d, i);
  for (int k = 0; k < 3; k++)
    if ((mask >> k) & 1u) lo[n] = fc_pad2d_cand(g, d, i, k), hi[n] = lo[n] + 1, n++;
  return n;
}

#endif
