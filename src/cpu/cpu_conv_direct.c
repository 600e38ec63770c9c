/* The CPU's direct convolution (the backend's conv_direct entry, ops/conv.c): the forward of a small f32 2-D
 * convolution with stride 1, dilation 1 and one group, the diffusion UNet's 3x3 convolutions on 8x8 to 32x32
 * images with 16 to 128 channels. There im2col wrote rows of 8 or 16 elements (its loop overhead was most of a
 * convolution's time) and OpenBLAS then packed the columns again for a GEMM of only 16 to 64 rows.
 *
 * Here each task computes one output row of one image for a block of 8 output channels, 16 columns at a time,
 * in registers: for every input channel and kernel tap, one 16-wide load of the (zero-padded) input row and 8
 * multiply-adds with broadcast weights. The input is first copied into a zero-padded buffer (so no bounds
 * checks remain) and the weights into [block][cin][ky][kx][8] order (contiguous per tap). Cases it does not take
 * (other dtypes, strides, dilations, groups, 1-D and 3-D, the backward problems, large channel counts where the
 * GEMM's cache blocking wins) decline with FL_EUNSUPPORTED and go to the im2col path. */
#include "cpu.h"
#include <stdlib.h>
#include <string.h>

#define CB 8       /* output channels per block */
#define FLAT_MAX 1024 /* output positions (in the padded pitch) of conv_flat's image */
#define MAX_K 7
/* Past this reduction length (input channels x taps) the GEMM path measured faster. */
#define MAX_REDUCTION 1152

typedef struct {
  int64_t cin, cout, H, W, OH, OW, k, pad, Hp, Wp, nblocks;
  const float *bias; /* NULL, or [cout] with stride bstride: added as the outputs are stored */
  int64_t bstride;
} geom;

static bool takes(fl_conv_dir dir, const fl_tensor *out, const fl_tensor *x, const fl_tensor *w, const fl_conv_geom *g) {
  if (dir != FL_CONV_FORWARD || g->nsp != 2 || g->groups != 1 || out->dtype != FL_F32 || x->dtype != FL_F32 ||
      w->dtype != FL_F32)
    return false;
  for (int i = 0; i < 2; i++)
    if (g->stride[i] != 1 || g->dil[i] != 1 || g->k[i] != g->k[0] || g->pad[i] != g->pad[0]) return false;
  return g->k[0] <= MAX_K && g->pad[0] < g->k[0] && g->cin * g->k[0] * g->k[0] <= MAX_REDUCTION;
}

/* n floats, as a loop the compiler vectorises (each clone at its width, masked tails): the rows copied here are 8
 * to 32 floats, and a memcpy call per row was a twentieth of the UNet's CPU forward. Its callers are compiled with
 * NO_MEMCPY, or GCC turns the loop back into that call. */
#define NO_MEMCPY "no-tree-loop-distribute-patterns"
static inline __attribute__((always_inline)) void copy_row(float *restrict d, const float *restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

/* An output row of channel o: the sums, plus o's bias where there is one (as the broadcast add would: one f32
 * addition of the stored sum). */
static inline __attribute__((always_inline)) void store_row(const geom *q, float *restrict d, const float *restrict s,
                                                            int64_t n, int64_t o) {
  if (!q->bias) {
    copy_row(d, s, n);
    return;
  }
  float b = q->bias[o * q->bstride];
  for (int64_t i = 0; i < n; i++) d[i] = s[i] + b;
}

static inline __attribute__((always_inline)) void zero_row(float *d, int64_t n) {
  for (int64_t i = 0; i < n; i++) d[i] = 0;
}

/* The padded image as the runs it is in memory, in order: zeros, a row's W floats, zeros, the next row, ... The
 * runs tile the buffer and each is written after the ones before it, so a run may write past its end (whatever it
 * leaves there, a later run writes again): all but the last two go in whole vectors (rows 16 floats a step, zeros
 * 8: the zeros between rows are 2 to 8 floats), up to 15 floats past their end, and the last run is the exact
 * zeros after the image and the slack (32 floats). A row of 8 to 32 floats is then one to two loads and stores with
 * no loop set-up, where three exact loops a row (left zeros, the row, right zeros) were a twentieth of the UNet's
 * CPU forward. A row is read the same way only where x has 16 more floats after its start. */
typedef float vf16 __attribute__((vector_size(16 * sizeof(float))));
typedef float vf8 __attribute__((vector_size(8 * sizeof(float))));
static inline __attribute__((always_inline)) void zero_over(float *d, int64_t n) {
  const vf8 z = {0}; /* 8 floats a step: the zeros between rows are 2 to 8 floats */
  for (int64_t i = 0; i < n; i += 8) memcpy(d + i, &z, sizeof z);
}
static inline __attribute__((always_inline)) void copy_over(float *d, const float *s, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    vf16 v;
    memcpy(&v, s + i, sizeof v);
    memcpy(d + i, &v, sizeof v);
  }
}

/* x's image, zero-padded: [cin, Hp, Wp], every float written (the zeros around the image with it: zeroing the
 * whole buffer first wrote it twice), and the slack floats past it zero. */
FL_CLONES __attribute__((optimize(NO_MEMCPY))) static void pad_input(const geom *q, float *xp, const float *x,
                                                                    int64_t slack) {
  int64_t W = q->W, W16 = (W + 15) / 16 * 16, lead = q->pad * q->Wp + q->pad, gap = q->Wp - W;
  int64_t tail = (q->Hp - q->pad - q->H) * q->Wp + q->Wp - q->pad - W; /* the last row's right zeros, the bottom */
  const float *xend = x + q->cin * q->H * W;
  float *d = xp;
  zero_over(d, lead);
  d += lead;
  for (int64_t c = 0; c < q->cin; c++)
    for (int64_t y = 0; y < q->H; y++) {
      const float *s = x + (c * q->H + y) * W;
      bool last = c == q->cin - 1 && y == q->H - 1;
      if (!last && xend - s >= W16) copy_over(d, s, W);
      else copy_row(d, s, W);
      d += W;
      if (last) break;
      int64_t z = y < q->H - 1 ? gap : tail + lead; /* to the next row of this channel, or the next channel's */
      zero_over(d, z);
      d += z;
    }
  zero_row(d, tail + slack);
}

/* One block of CB whole rows of w, [CB, taps] -> [taps, CB]: a constant count, so that it vectorises (each clone
 * at its width); with a variable count it was a fifth of a small convolution's time. */
FL_CLONES static void pack_block(float *restrict wb, const float *restrict src, int64_t taps) {
  for (int64_t t = 0; t < taps; t++)
    for (int o = 0; o < CB; o++) wb[t * CB + o] = src[o * taps + t];
}

/* w [cout, cin, k, k] as [block][cin][k][k][CB], the channels past cout zero. */
static void pack_weights(const geom *q, float *wt, const float *w) {
  int64_t taps = q->cin * q->k * q->k, cb = CB;
  for (int64_t blk = 0; blk < q->nblocks; blk++) {
    float *wb = wt + blk * taps * cb;
    int64_t n = q->cout - blk * cb < cb ? q->cout - blk * cb : cb;
    const float *src = w + blk * cb * taps;
    if (n == cb) {
      pack_block(wb, src, taps);
      continue;
    }
    memset(wb, 0, sizeof(float) * (size_t)(taps * cb));
    for (int64_t t = 0; t < taps; t++) /* contiguous writes: n rows read side by side */
      for (int64_t o = 0; o < n; o++) wb[t * cb + o] = src[o * taps + t];
  }
}

/* vf16, 16 floats: one AVX-512 register (two AVX2 ones: the clones of FL_CLONES pick the width the machine has).
 * Loads go through memcpy (unaligned). Contracted to FMAs where the target has them (plain C11 does not contract). */

/* tap: acc[o] += x[0 .. 15] * w[o], one 16-wide load and CB multiply-adds. row_taps: one kernel row's taps,
 * xr the input at the first tap and wr the row's weights [k][CB]; conv_row and conv_flat differ only in where xr
 * points. Both inline into each clone of their callers (so they vectorise at its width); k == 3, the common
 * kernel, is a constant count, unrolled. */
static inline __attribute__((always_inline, optimize("fp-contract=fast"))) void tap(vf16 acc[CB], const float *x,
                                                                                     const float *w) {
  vf16 xv;
  memcpy(&xv, x, sizeof xv);
  for (int o = 0; o < CB; o++) acc[o] += xv * w[o];
}
static inline __attribute__((always_inline, optimize("fp-contract=fast"))) void row_taps(vf16 acc[CB], const float *xr,
                                                                                          const float *wr, int64_t k) {
  if (k == 3)
    for (int kx = 0; kx < 3; kx++) tap(acc, xr + kx, wr + kx * CB);
  else
    for (int64_t kx = 0; kx < k; kx++) tap(acc, xr + kx, wr + kx * CB);
}

/* Output row oy of one image for output channels [CB * blk, CB * blk + CB) (those below cout are stored), 16
 * columns at a time: for rows of 16 columns and more. */
FL_CLONES __attribute__((optimize("fp-contract=fast", NO_MEMCPY))) static void conv_row(const geom *q, float *y, const float *xp,
                                                                              const float *wt, int64_t blk, int64_t oy) {
  int64_t k = q->k, taps = q->cin * k * k, nco = q->cout - blk * CB < CB ? q->cout - blk * CB : CB;
  const float *wb = wt + blk * taps * CB;
  for (int64_t ox = 0; ox < q->OW; ox += 16) {
    vf16 acc[CB];
    for (int o = 0; o < CB; o++) acc[o] = (vf16){0};
    for (int64_t c = 0; c < q->cin; c++)
      for (int64_t ky = 0; ky < k; ky++) {
        const float *xr = xp + (c * q->Hp + oy + ky) * q->Wp + ox, *wr = wb + (c * k + ky) * k * CB;
        row_taps(acc, xr, wr, k);
      }
    int64_t n = q->OW - ox < 16 ? q->OW - ox : 16;
    for (int64_t o = 0; o < nco; o++)
      store_row(q, y + ((blk * CB + o) * q->OH + oy) * q->OW + ox, (const float *)&acc[o], n, blk * CB + o);
  }
}

/* The whole image for output channels [CB * blk, CB * blk + CB), for narrow rows (8x8 images): the output
 * positions are taken in the padded input's row pitch, p = oy * Wp + ox, so that every kernel tap is one offset
 * (ky * Wp + kx) from p and 16 consecutive positions span rows; the k - 1 positions past each row's end are
 * computed and dropped. An 8x8 image with a 3x3 kernel fills 80% of each vector this way, 50% by rows. */
FL_CLONES __attribute__((optimize("fp-contract=fast", NO_MEMCPY))) static void conv_flat(const geom *q, float *y, const float *xp,
                                                                               const float *wt, int64_t blk) {
  int64_t k = q->k, taps = q->cin * k * k, nco = q->cout - blk * CB < CB ? q->cout - blk * CB : CB;
  int64_t np = q->OH * q->Wp, plane = q->Hp * q->Wp;
  const float *wb = wt + blk * taps * CB;
  float out[CB][FLAT_MAX + 16];
  for (int64_t p0 = 0; p0 < np; p0 += 16) {
    vf16 acc[CB];
    for (int o = 0; o < CB; o++) acc[o] = (vf16){0};
    for (int64_t c = 0; c < q->cin; c++)
      for (int64_t ky = 0; ky < k; ky++) {
        const float *xr = xp + c * plane + ky * q->Wp + p0, *wr = wb + (c * k + ky) * k * CB;
        row_taps(acc, xr, wr, k);
      }
    for (int o = 0; o < CB; o++) memcpy(&out[o][p0], &acc[o], sizeof acc[o]);
  }
  for (int64_t o = 0; o < nco; o++)
    for (int64_t oy = 0; oy < q->OH; oy++)
      store_row(q, y + ((blk * CB + o) * q->OH + oy) * q->OW, &out[o][oy * q->Wp], q->OW, blk * CB + o);
}

static fl_status direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b, const fl_tensor *bias,
                        const fl_conv_geom *g) {
  if (!takes(dir, out, a, b, g)) {
    if (fl_get_conv_algo() != FL_CONV_DIRECT) return FL_EUNSUPPORTED; /* the im2col path follows: no message */
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_EUNSUPPORTED, "no direct convolution path on cpu for input %s and weight %s (it takes the "
                    "forward of f32 2-D convolutions with stride 1, dilation 1, one group, square kernels up to %d, "
                    "input channels x kernel area up to %d)", da.s, db.s, MAX_K, MAX_REDUCTION);
  }
  geom q = {.cin = g->cin, .cout = g->cout, .H = g->in[0], .W = g->in[1], .OH = g->out[0], .OW = g->out[1],
            .k = g->k[0], .pad = g->pad[0], .bias = bias ? (const float *)fl_data_ptr(bias) : NULL,
            .bstride = bias ? bias->stride[0] : 0};
  q.Hp = q.H + 2 * q.pad;
  /* by rows (16 columns a step) or flat (in the padded pitch): whichever fills more of its vectors */
  int64_t wide = (q.OW + 15) / 16 * 16, pitch = q.W + 2 * q.pad;
  bool flat = q.OH * pitch <= FLAT_MAX && q.OW * wide > q.OW * pitch && pitch < wide;
  q.Wp = flat ? pitch : wide + q.k - 1; /* by rows, the last 16-column step reads zeros past the row */
  q.nblocks = (q.cout + CB - 1) / CB;
  int64_t slack = 32; /* conv_flat's last step reads past the image */
  size_t nxp = (size_t)(q.cin * q.Hp * q.Wp + slack), nwt = (size_t)(q.nblocks * q.cin * q.k * q.k * CB);
  float *xp = fl_small_alloc(sizeof(float) * nxp), *wt = fl_small_alloc(sizeof(float) * nwt);
  if (!xp || !wt) {
    fl_small_free(xp, sizeof(float) * nxp), fl_small_free(wt, sizeof(float) * nwt);
    return fl_error(FL_ENOMEM, "conv2d: out of host memory for the direct path's buffers");
  }
  pack_weights(&q, wt, (const float *)fl_data_ptr(b));
  const float *x = (const float *)fl_data_ptr(a);
  float *y = (float *)fl_data_ptr(out);
  int64_t tasks = flat ? q.nblocks : q.nblocks * q.OH;
  int nt = fl_cpu_threads_for(q.nblocks * q.OH * q.OW * q.cin * q.k * q.k * CB / 4);
  if (nt > tasks) nt = (int)tasks;
  for (int64_t i = 0; i < g->n; i++) {
    pad_input(&q, xp, x + i * q.cin * q.H * q.W, slack);
    float *yi = y + i * q.cout * q.OH * q.OW;
    if (flat) FL_CPU_FOR(t, tasks, conv_flat(&q, yi, xp, wt, t));
    else FL_CPU_FOR(t, tasks, conv_row(&q, yi, xp, wt, t / q.OH, t % q.OH));
  }
  fl_small_free(xp, sizeof(float) * nxp);
  fl_small_free(wt, sizeof(float) * nwt);
  return FL_OK;
}

fl_status fl_cpu_conv_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                             const fl_conv_geom *g) {
  return direct(dir, out, a, b, NULL, g);
}

fl_status fl_cpu_conv_direct_bias(fl_tensor *out, const fl_tensor *x, const fl_tensor *w, const fl_tensor *bias,
                                  const fl_conv_geom *g) {
  return direct(FL_CONV_FORWARD, out, x, w, bias, g);
}
