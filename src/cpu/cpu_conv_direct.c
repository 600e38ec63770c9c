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
} geom;

static bool takes(fl_conv_dir dir, const fl_tensor *out, const fl_tensor *x, const fl_tensor *w, const fl_conv_geom *g) {
  if (dir != FL_CONV_FORWARD || g->nsp != 2 || g->groups != 1 || out->dtype != FL_F32 || x->dtype != FL_F32 ||
      w->dtype != FL_F32)
    return false;
  for (int i = 0; i < 2; i++)
    if (g->stride[i] != 1 || g->dil[i] != 1 || g->k[i] != g->k[0] || g->pad[i] != g->pad[0]) return false;
  return g->k[0] <= MAX_K && g->pad[0] < g->k[0] && g->cin * g->k[0] * g->k[0] <= MAX_REDUCTION;
}

/* x's image i, zero-padded: [cin, Hp, Wp] (the buffer's zeros are written once: pad_zero). */
static void pad_input(const geom *q, float *xp, const float *x) {
  for (int64_t c = 0; c < q->cin; c++)
    for (int64_t y = 0; y < q->H; y++)
      memcpy(xp + (c * q->Hp + y + q->pad) * q->Wp + q->pad, x + (c * q->H + y) * q->W, sizeof(float) * (size_t)q->W);
}

/* w [cout, cin, k, k] as [block][cin][k][k][CB], the channels past cout zero. */
static void pack_weights(const geom *q, float *wt, const float *w) {
  int64_t taps = q->cin * q->k * q->k, cb = CB;
  for (int64_t blk = 0; blk < q->nblocks; blk++) {
    float *wb = wt + blk * taps * cb;
    int64_t n = q->cout - blk * cb < cb ? q->cout - blk * cb : cb;
    if (n < cb) memset(wb, 0, sizeof(float) * (size_t)(taps * cb));
    const float *src = w + blk * cb * taps;
    for (int64_t t = 0; t < taps; t++) /* contiguous writes: eight rows read side by side */
      for (int64_t o = 0; o < n; o++) wb[t * cb + o] = src[o * taps + t];
  }
}

/* 16 floats: one AVX-512 register (two AVX2 ones: the clones of FL_CLONES pick the width the machine has). Loads
 * go through memcpy (unaligned). Contracted to FMAs where the target has them (plain C11 does not contract). */
typedef float vf16 __attribute__((vector_size(16 * sizeof(float))));

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
FL_CLONES __attribute__((optimize("fp-contract=fast"))) static void conv_row(const geom *q, float *y, const float *xp,
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
    for (int64_t o = 0; o < nco; o++) memcpy(y + ((blk * CB + o) * q->OH + oy) * q->OW + ox, &acc[o], sizeof(float) * (size_t)n);
  }
}

/* The whole image for output channels [CB * blk, CB * blk + CB), for narrow rows (8x8 images): the output
 * positions are taken in the padded input's row pitch, p = oy * Wp + ox, so that every kernel tap is one offset
 * (ky * Wp + kx) from p and 16 consecutive positions span rows; the k - 1 positions past each row's end are
 * computed and dropped. An 8x8 image with a 3x3 kernel fills 80% of each vector this way, 50% by rows. */
FL_CLONES __attribute__((optimize("fp-contract=fast"))) static void conv_flat(const geom *q, float *y, const float *xp,
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
      memcpy(y + ((blk * CB + o) * q->OH + oy) * q->OW, &out[o][oy * q->Wp], sizeof(float) * (size_t)q->OW);
}

fl_status fl_cpu_conv_direct(fl_conv_dir dir, fl_tensor *out, const fl_tensor *a, const fl_tensor *b,
                             const fl_conv_geom *g) {
  if (!takes(dir, out, a, b, g)) {
    if (fl_get_conv_algo() != FL_CONV_DIRECT) return FL_EUNSUPPORTED; /* the im2col path follows: no message */
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_EUNSUPPORTED, "no direct convolution path on cpu for input %s and weight %s (it takes the "
                    "forward of f32 2-D convolutions with stride 1, dilation 1, one group, square kernels up to %d, "
                    "input channels x kernel area up to %d)", da.s, db.s, MAX_K, MAX_REDUCTION);
  }
  geom q = {.cin = g->cin, .cout = g->cout, .H = g->in[0], .W = g->in[1], .OH = g->out[0], .OW = g->out[1],
            .k = g->k[0], .pad = g->pad[0]};
  q.Hp = q.H + 2 * q.pad;
  /* by rows (16 columns a step) or flat (in the padded pitch): whichever fills more of its vectors */
  int64_t wide = (q.OW + 15) / 16 * 16, pitch = q.W + 2 * q.pad;
  bool flat = q.OH * pitch <= FLAT_MAX && q.OW * wide > q.OW * pitch && pitch < wide;
  q.Wp = flat ? pitch : wide + q.k - 1; /* by rows, the last 16-column step reads zeros past the row */
  q.nblocks = (q.cout + CB - 1) / CB;
  size_t nxp = (size_t)(q.cin * q.Hp * q.Wp + 32), nwt = (size_t)(q.nblocks * q.cin * q.k * q.k * CB);
  float *xp = fl_small_alloc(sizeof(float) * nxp), *wt = fl_small_alloc(sizeof(float) * nwt);
  if (!xp || !wt) {
    fl_small_free(xp, sizeof(float) * nxp), fl_small_free(wt, sizeof(float) * nwt);
    return fl_error(FL_ENOMEM, "conv2d: out of host memory for the direct path's buffers");
  }
  pack_weights(&q, wt, (const float *)fl_data_ptr(b));
  memset(xp, 0, sizeof(float) * nxp); /* the padding; pad_input writes only the inside */
  const float *x = (const float *)fl_data_ptr(a);
  float *y = (float *)fl_data_ptr(out);
  int64_t tasks = flat ? q.nblocks : q.nblocks * q.OH;
  int nt = fl_cpu_threads_for(q.nblocks * q.OH * q.OW * q.cin * q.k * q.k * CB / 4);
  if (nt > tasks) nt = (int)tasks;
  for (int64_t i = 0; i < g->n; i++) {
    pad_input(&q, xp, x + i * q.cin * q.H * q.W);
    float *yi = y + i * q.cout * q.OH * q.OW;
    if (flat) FL_CPU_FOR(t, tasks, conv_flat(&q, yi, xp, wt, t));
    else FL_CPU_FOR(t, tasks, conv_row(&q, yi, xp, wt, t / q.OH, t % q.OH));
  }
  fl_small_free(xp, sizeof(float) * nxp);
  fl_small_free(wt, sizeof(float) * nwt);
  return FL_OK;
}
