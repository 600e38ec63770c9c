/* The CPU side of the im2col convolution path (ops/conv.c): im2col gathers a
 * chunk of images into the [cin * kvol, n * L] column matrix the GEMMs take,
 * col2im is its adjoint (the data gradient's scatter, done as a gather per
 * input element, so each element is summed in one fixed order by one thread).
 * Both work on 3 spatial dims; 1-D and 2-D geometries get leading size-1 dims
 * (fl_conv_geom3, core/conv_geom.h, shared with cuda/conv.cu). */
#include "cpu.h"

/* One row of cols (channel c, kernel offset k0 k1 k2) for every image: the
 * innermost output dim is walked over its valid range only (zeros outside), a
 * plain copy when the stride is 1. T is the element's bits: im2col only moves them. */
#define IM2COL_ROW(T)                                                                                          \
  static void im2col_row_##T(const fl_conv_geom3 *g, T *dst, const T *x, int64_t c, int64_t k0, int64_t k1, int64_t k2) { \
    int64_t w_off = k2 * g->d[2] - g->p[2];                                                                    \
    /* output positions o with 0 <= o * s + w_off < in */                                                      \
    int64_t lo = w_off >= 0 ? 0 : (-w_off + g->s[2] - 1) / g->s[2];                                            \
    int64_t hi = g->in[2] - w_off <= 0 ? 0 : (g->in[2] - w_off - 1) / g->s[2] + 1;                             \
    if (hi > g->out[2]) hi = g->out[2];                                                                        \
    if (lo > hi) lo = hi;                                                                                      \
    for (int64_t i = 0; i < g->n; i++) {                                                                       \
      const T *xc = x + (i * g->cin + c) * g->inv;                                                             \
      for (int64_t o0 = 0; o0 < g->out[0]; o0++) {                                                             \
        int64_t i0 = o0 * g->s[0] - g->p[0] + k0 * g->d[0];                                                   \
        for (int64_t o1 = 0; o1 < g->out[1]; o1++, dst += g->out[2]) {                                         \
          int64_t i1 = o1 * g->s[1] - g->p[1] + k1 * g->d[1];                                                 \
          if (i0 < 0 || i0 >= g->in[0] || i1 < 0 || i1 >= g->in[1]) {                                          \
            for (int64_t o = 0; o < g->out[2]; o++) dst[o] = 0;                                                \
            continue;                                                                                          \
          }                                                                                                    \
          const T *src = xc + (i0 * g->in[1] + i1) * g->in[2] + w_off;                                         \
          for (int64_t o = 0; o < lo; o++) dst[o] = 0;                                                         \
          if (g->s[2] == 1) {                                                                                  \
            for (int64_t o = lo; o < hi; o++) dst[o] = src[o];                                                 \
          } else {                                                                                             \
            for (int64_t o = lo; o < hi; o++) dst[o] = src[o * g->s[2]];                                       \
          }                                                                                                    \
          for (int64_t o = hi; o < g->out[2]; o++) dst[o] = 0;                                                 \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
  }
IM2COL_ROW(uint16_t)
IM2COL_ROW(uint32_t)
IM2COL_ROW(uint64_t)

fl_status fl_cpu_im2col(fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *gg) {
  fl_conv_geom3 g = fl_conv_geom3_of(gg);
  int64_t rows = g.cin * g.kvol, width = g.n * g.L;
  size_t es = fl_dtype_size(x->dtype);
  char *dst = fl_data_ptr(cols);
  const char *src = fl_data_ptr(x);
  int nt = rows > 1 ? fl_cpu_threads_for(rows * width) : 1;
  FL_CPU_FOR(r, rows, {
    int64_t c = r / g.kvol, kk = r % g.kvol;
    int64_t k0 = kk / (g.k[1] * g.k[2]), k1 = kk / g.k[2] % g.k[1], k2 = kk % g.k[2];
    char *row = dst + (size_t)(r * width) * es;
    if (es == 2) im2col_row_uint16_t(&g, (uint16_t *)row, (const uint16_t *)src, c, k0, k1, k2);
    else if (es == 4) im2col_row_uint32_t(&g, (uint32_t *)row, (const uint32_t *)src, c, k0, k1, k2);
    else im2col_row_uint64_t(&g, (uint64_t *)row, (const uint64_t *)src, c, k0, k1, k2);
  });
  return FL_OK;
}

/* The output position o along one dim that kernel offset k maps onto input
 * position p, or -1 when none does (between strides, or outside the output). */
static inline int64_t out_pos(const fl_conv_geom3 *g, int dim, int64_t p, int64_t k) {
  int64_t t = p + g->p[dim] - k * g->d[dim];
  if (t < 0 || t % g->s[dim]) return -1;
  t /= g->s[dim];
  return t < g->out[dim] ? t : -1;
}

/* Input element (image i, channel c, position p0 p1 p2): the sum of the cols
 * entries that read it, in kernel order. LD loads one cols element as ACC. */
#define COL2IM_SUM(ACC, LD)                                                                       \
  ACC acc = 0;                                                                                    \
  for (int64_t k0 = 0; k0 < g->k[0]; k0++) {                                                      \
    int64_t o0 = out_pos(g, 0, p0, k0);                                                           \
    if (o0 < 0) continue;                                                                         \
    for (int64_t k1 = 0; k1 < g->k[1]; k1++) {                                                    \
      int64_t o1 = out_pos(g, 1, p1, k1);                                                         \
      if (o1 < 0) continue;                                                                       \
      for (int64_t k2 = 0; k2 < g->k[2]; k2++) {                                                  \
        int64_t o2 = out_pos(g, 2, p2, k2);                                                       \
        if (o2 < 0) continue;                                                                     \
        int64_t row = (c * g->k[0] + k0) * g->k[1] * g->k[2] + k1 * g->k[2] + k2;                 \
        acc += LD(row * width + i * g->L + (o0 * g->out[1] + o1) * g->out[2] + o2);               \
      }                                                                                           \
    }                                                                                             \
  }

#define LD_F32(j) ((const float *)cols)[j]
#define LD_F64(j) ((const double *)cols)[j]
#define LD_ANY(j) (float)fl_ld(cols + (j) * 2, dt)
/* One (image, channel) plane of x. */
static void col2im_plane(const fl_conv_geom3 *g, char *x, const char *cols, fl_dtype dt, int64_t plane) {
  int64_t i = plane / g->cin, c = plane % g->cin, width = g->n * g->L;
  int64_t e = plane * g->inv;
  for (int64_t p0 = 0; p0 < g->in[0]; p0++)
    for (int64_t p1 = 0; p1 < g->in[1]; p1++)
      for (int64_t p2 = 0; p2 < g->in[2]; p2++, e++) {
        if (dt == FL_F32) {
          COL2IM_SUM(float, LD_F32)
          ((float *)x)[e] = acc;
        } else if (dt == FL_F64) {
          COL2IM_SUM(double, LD_F64)
          ((double *)x)[e] = acc;
        } else { /* f16, bf16: summed in f32, as on CUDA */
          COL2IM_SUM(float, LD_ANY)
          fl_st(x + e * 2, dt, acc);
        }
      }
}

fl_status fl_cpu_col2im(fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *gg) {
  fl_conv_geom3 g = fl_conv_geom3_of(gg);
  if (!fl_dtype_is_float(x->dtype)) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EDTYPE, "col2im: expected a float dtype, got %s", d.s);
  }
  int64_t planes = g.n * g.cin;
  char *dst = fl_data_ptr(x);
  const char *src = fl_data_ptr(cols);
  int nt = planes > 1 ? fl_cpu_threads_for(planes * g.inv * g.kvol) : 1;
  FL_CPU_FOR(pl, planes, col2im_plane(&g, dst, src, x->dtype, pl));
  return FL_OK;
}
