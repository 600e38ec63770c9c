/* CPU interpolation (nearest; linear, bilinear, trilinear) over planes,
 * forward and backward, in f64 scratch planes. The source pixels and weights
 * of each output position come from core/pool_geom.h (computed in f32 for
 * f32/f16/bf16 and in f64 for f64, as PyTorch), tabulated once per dim. The
 * backward gathers each input-gradient element over the outputs that read it
 * (fl_interp_range), as the CUDA kernel does. */
#include "cpu_planes.h"
#include <stdlib.h>

typedef struct {
  int64_t i0, i1; /* source pixels */
  double w0, w1;  /* and their weights */
} tap;

typedef struct {
  const fl_interp_geom *g;
  const char *x;
  char *out;
  fl_dtype dt;
  int64_t nin, nout;
  tap *taps[3];        /* per dim, per output position */
  int ntaps[3];        /* 2 for an interpolated linear dim, else 1 */
  int64_t *range[3];   /* backward: per dim, per input position, [lo, hi) of the outputs reading it, */
  int64_t *woff[3];    /* where its weights start in */
  double *wts[3];      /* the weights of those outputs, one run per input position */
} interp_ctx;

static tap make_tap(const fl_interp_geom *g, int d, int64_t o, bool f64) {
  tap t = {o, o, 1, 0};
  if (d < FL_PG_DIMS - g->nsp) return t;
  if (!g->linear) {
    t.i0 = t.i1 = fl_nearest_src(g, d, o);
    return t;
  }
  if (f64) {
    double l;
    fl_linear_src_d(g, d, o, &t.i0, &t.i1, &l);
    t.w0 = 1 - l, t.w1 = l;
  } else {
    float l;
    fl_linear_src_f(g, d, o, &t.i0, &t.i1, &l);
    t.w0 = 1.0f - l, t.w1 = l;
  }
  return t;
}

static void interp_plane(const void *vc, int64_t p, double *a, double *b) {
  const interp_ctx *c = vc;
  const fl_interp_geom *g = c->g;
  const int64_t es = (int64_t)fl_dtype_size(c->dt), H = g->in[1], W = g->in[2];
  fl_load_f64(a, c->x + p * c->nin * es, es, c->nin, c->dt);
  int64_t k = 0;
  for (int64_t od = 0; od < g->out[0]; od++)
    for (int64_t oh = 0; oh < g->out[1]; oh++)
      for (int64_t ow = 0; ow < g->out[2]; ow++) {
        const tap *t0 = &c->taps[0][od], *t1 = &c->taps[1][oh], *t2 = &c->taps[2][ow];
        double s = 0;
        for (int u = 0; u < c->ntaps[0]; u++)
          for (int v = 0; v < c->ntaps[1]; v++)
            for (int w = 0; w < c->ntaps[2]; w++) {
              int64_t i = ((u ? t0->i1 : t0->i0) * H + (v ? t1->i1 : t1->i0)) * W + (w ? t2->i1 : t2->i0);
              s += (u ? t0->w1 : t0->w0) * (v ? t1->w1 : t1->w0) * (w ? t2->w1 : t2->w0) * a[i];
            }
        b[k++] = s;
      }
  fl_store_f64(c->out + p * c->nout * es, es, b, c->nout, c->dt);
}

static double weight(const fl_interp_geom *g, int d, int64_t o, int64_t i, bool f64) {
  return f64 ? fl_interp_weight_d(g, d, o, i) : (double)fl_interp_weight_f(g, d, o, i);
}

/* The weight output o gives input i along dim d, from the tables. */
#define W(d, i, o) c->wts[d][c->woff[d][i] + (o) - c->range[d][2 * (i)]]

static void interp_grad_plane(const void *vc, int64_t p, double *a, double *b) {
  const interp_ctx *c = vc;
  const fl_interp_geom *g = c->g;
  const int64_t es = (int64_t)fl_dtype_size(c->dt), OH = g->out[1], OW = g->out[2];
  fl_load_f64(a, c->x + p * c->nout * es, es, c->nout, c->dt);
  int64_t k = 0;
  for (int64_t id = 0; id < g->in[0]; id++)
    for (int64_t ih = 0; ih < g->in[1]; ih++)
      for (int64_t iw = 0; iw < g->in[2]; iw++) {
        double s = 0;
        for (int64_t od = c->range[0][2 * id]; od < c->range[0][2 * id + 1]; od++) {
          double wd = W(0, id, od);
          for (int64_t oh = c->range[1][2 * ih]; oh < c->range[1][2 * ih + 1]; oh++) {
            double wh = wd * W(1, ih, oh);
            for (int64_t ow = c->range[2][2 * iw]; ow < c->range[2][2 * iw + 1]; ow++)
              s += wh * W(2, iw, ow) * a[(od * OH + oh) * OW + ow];
          }
        }
        b[k++] = s;
      }
  fl_store_f64(c->out + p * c->nin * es, es, b, c->nin, c->dt);
}

static void free_tables(interp_ctx *c) {
  for (int d = 0; d < 3; d++) free(c->taps[d]), free(c->range[d]), free(c->woff[d]), free(c->wts[d]);
}

/* The per-dim tables: taps for the forward, gather ranges for the backward. */
static fl_status tables(interp_ctx *c, bool backward) {
  const fl_interp_geom *g = c->g;
  for (int d = 0; d < 3; d++) {
    c->ntaps[d] = g->linear && d >= FL_PG_DIMS - g->nsp ? 2 : 1;
    if (!backward) {
      c->taps[d] = malloc((size_t)g->out[d] * sizeof(tap));
      if (!c->taps[d]) goto nomem;
      for (int64_t o = 0; o < g->out[d]; o++) c->taps[d][o] = make_tap(g, d, o, c->dt == FL_F64);
    } else {
      c->range[d] = malloc((size_t)g->in[d] * 2 * sizeof(int64_t));
      c->woff[d] = malloc((size_t)g->in[d] * sizeof(int64_t));
      if (!c->range[d] || !c->woff[d]) goto nomem;
      int64_t total = 0;
      for (int64_t i = 0; i < g->in[d]; i++) {
        int64_t *r = &c->range[d][2 * i];
        fl_interp_range(g, d, i, &r[0], &r[1], c->dt == FL_F64);
        c->woff[d][i] = total;
        total += r[1] - r[0];
      }
      c->wts[d] = malloc((size_t)(total + 1) * sizeof(double));
      if (!c->wts[d]) goto nomem;
      for (int64_t i = 0; i < g->in[d]; i++)
        for (int64_t o = c->range[d][2 * i]; o < c->range[d][2 * i + 1]; o++)
          c->wts[d][c->woff[d][i] + o - c->range[d][2 * i]] = weight(g, d, o, i, c->dt == FL_F64);
    }
  }
  return FL_OK;
nomem:
  free_tables(c);
  return fl_error(FL_ENOMEM, "interpolate: out of host memory for the index tables");
}

/* Nearest on f32 (the diffusion UNet's upsampling): a gather per output, without the f64 planes, whose
 * conversions made an 8x8 to 16x16 upsampling of 32 channels cost as much as a convolution. */
static void nearest_f32(const interp_ctx *c) {
  const fl_interp_geom *g = c->g;
  const int64_t H = g->in[1], W = g->in[2];
  int nt = fl_cpu_threads_for(g->planes * c->nout);
  FL_CPU_FOR(p, g->planes, {
    const float *x = (const float *)c->x + p * c->nin;
    float *o = (float *)c->out + p * c->nout;
    for (int64_t od = 0; od < g->out[0]; od++)
      for (int64_t oh = 0; oh < g->out[1]; oh++) {
        const float *row = x + (c->taps[0][od].i0 * H + c->taps[1][oh].i0) * W;
        for (int64_t ow = 0; ow < g->out[2]; ow++) *o++ = row[c->taps[2][ow].i0];
      }
  });
}

fl_status fl_cpu_interp(const fl_interp_geom *g, fl_tensor *out, const fl_tensor *x) {
  interp_ctx c = {g, fl_data_ptr(x), fl_data_ptr(out), x->dtype, fl_plane3(g->in), fl_plane3(g->out), {0}, {0}, {0}, {0}, {0}};
  FL_TRY(tables(&c, false));
  if (!g->linear && x->dtype == FL_F32) {
    nearest_f32(&c);
    free_tables(&c);
    return FL_OK;
  }
  int64_t taps = c.ntaps[0] * c.ntaps[1] * c.ntaps[2];
  fl_status st = fl_cpu_each_plane("interpolate", g->planes, c.nin, c.nout, g->planes * c.nout * taps * 2,
                                   interp_plane, &c);
  free_tables(&c);
  return st;
}

fl_status fl_cpu_interp_backward(const fl_interp_geom *g, fl_tensor *dx, const fl_tensor *dy) {
  interp_ctx c = {g, fl_data_ptr(dy), fl_data_ptr(dx), dy->dtype, fl_plane3(g->in), fl_plane3(g->out), {0}, {0}, {0}, {0}, {0}};
  FL_TRY(tables(&c, true));
  int64_t taps = c.ntaps[0] * c.ntaps[1] * c.ntaps[2];
  fl_status st = fl_cpu_each_plane("interpolate backward", g->planes, c.nout, c.nin,
                                   g->planes * c.nout * taps * 8, interp_grad_plane, &c);
  free_tables(&c);
  return st;
}
