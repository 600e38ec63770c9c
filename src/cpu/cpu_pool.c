/* CPU max, avg and adaptive avg pooling (1 to 3 spatial dims) over planes,
 * forward and backward, in f64 scratch planes for every float dtype. Windows
 * and the gather ranges of the backward come from core/pool_geom.h, the same
 * functions the CUDA kernels call: each input-gradient element sums over the
 * outputs whose windows touch it (max: whose saved argmax is that element). */
#include "cpu_planes.h"
#include <math.h>
#include <stdlib.h>

fl_status fl_cpu_each_plane(const char *op, int64_t planes, int64_t na, int64_t nb, int64_t work,
                            fl_cpu_plane_fn fn, const void *ctx) {
  int nt = fl_cpu_threads_for(work);
  if (nt > planes) nt = (int)planes;
  if (nt < 1) nt = 1;
  int failed = 0;
  FL_CPU_FOR(t, nt, {
    double *a = malloc(((size_t)na + 1) * sizeof(double)), *b = malloc(((size_t)nb + 1) * sizeof(double));
    if (!a || !b) {
      __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
    } else {
      for (int64_t p = t * planes / nt; p < (t + 1) * planes / nt; p++) fn(ctx, p, a, b);
    }
    free(a), free(b);
  });
  if (failed) return fl_error(FL_ENOMEM, "%s: out of host memory for the plane scratch", op);
  return FL_OK;
}

/* Per dim, tabulated once from core/pool_geom.h: each output's window [lo, hi) and divisor, and each
 * input's range of outputs [lo, hi). */
typedef struct {
  int64_t *win[3];   /* 3 per output position: lo, hi, div */
  int64_t *range[3]; /* 2 per input position: lo, hi */
} pool_tables;

typedef struct {
  const fl_pool_geom *g;
  const char *x;
  char *out;
  int64_t *idx;
  const int64_t *cidx;
  fl_dtype dt;
  int64_t nin, nout;
  pool_tables t;
} pool_ctx;

static void free_tables(pool_tables *t) {
  for (int d = 0; d < 3; d++) free(t->win[d]), free(t->range[d]);
}

static fl_status make_tables(const fl_pool_geom *g, pool_tables *t) {
  for (int d = 0; d < 3; d++) {
    t->win[d] = malloc(sizeof(int64_t) * 3 * (size_t)g->out[d]);
    t->range[d] = malloc(sizeof(int64_t) * 2 * (size_t)g->in[d]);
    if (!t->win[d] || !t->range[d]) {
      free_tables(t);
      return fl_error(FL_ENOMEM, "pool: out of host memory for the window tables");
    }
    for (int64_t o = 0; o < g->out[d]; o++) fl_pool_window(g, d, o, &t->win[d][3 * o], &t->win[d][3 * o + 1], &t->win[d][3 * o + 2]);
    for (int64_t i = 0; i < g->in[d]; i++) fl_pool_range(g, d, i, &t->range[d][2 * i], &t->range[d][2 * i + 1]);
  }
  return FL_OK;
}

/* One output element from its window in the f64 plane x. */
static double pool_one(const fl_pool_geom *g, const pool_tables *t, const double *x, const int64_t *o, int64_t *arg) {
  int64_t lo[3], hi[3], div[3], step[3];
  bool empty = false;
  for (int d = 0; d < 3; d++) {
    const int64_t *w = &t->win[d][3 * o[d]];
    lo[d] = w[0], hi[d] = w[1], div[d] = w[2];
    step[d] = g->kind == FL_POOL_MAX ? g->dil[d] : 1;
    empty = empty || lo[d] >= hi[d];
  }
  const int64_t H = g->in[1], W = g->in[2];
  if (g->kind == FL_POOL_MAX) {
    double best = -INFINITY;
    int64_t bi = -1;
    for (int64_t a = lo[0]; a < hi[0]; a += step[0])
      for (int64_t b = lo[1]; b < hi[1]; b += step[1])
        for (int64_t c = lo[2]; c < hi[2]; c += step[2]) {
          int64_t i = (a * H + b) * W + c;
          double v = x[i];
          if (bi < 0 || v > best || isnan(v)) best = v, bi = i; /* PyTorch: the first max, the last NaN */
        }
    *arg = bi;
    return best;
  }
  if (empty) return 0;
  double s = 0;
  for (int64_t a = lo[0]; a < hi[0]; a++)
    for (int64_t b = lo[1]; b < hi[1]; b++)
      for (int64_t c = lo[2]; c < hi[2]; c++) s += x[(a * H + b) * W + c];
  return s / (double)(div[0] * div[1] * div[2]);
}

static void pool_plane(const void *vc, int64_t p, double *a, double *b) {
  const pool_ctx *c = vc;
  const fl_pool_geom *g = c->g;
  const int64_t es = (int64_t)fl_dtype_size(c->dt);
  fl_load_f64(a, c->x + p * c->nin * es, es, c->nin, c->dt);
  int64_t *ix = c->idx ? c->idx + p * c->nout : NULL, k = 0, o[3];
  for (o[0] = 0; o[0] < g->out[0]; o[0]++)
    for (o[1] = 0; o[1] < g->out[1]; o[1]++)
      for (o[2] = 0; o[2] < g->out[2]; o[2]++, k++) {
        int64_t arg = -1;
        b[k] = pool_one(g, &c->t, a, o, &arg);
        if (ix) ix[k] = arg + g->base;
      }
  fl_store_f64(c->out + p * c->nout * es, es, b, c->nout, c->dt);
}

static int64_t window_size(const fl_pool_geom *g) {
  if (g->kind == FL_POOL_ADAPTIVE_AVG) {
    int64_t w = 1;
    for (int d = 0; d < 3; d++) w *= g->in[d] / g->out[d] + 2;
    return w;
  }
  return g->k[0] * g->k[1] * g->k[2];
}

fl_status fl_cpu_pool(const fl_pool_geom *g, fl_tensor *out, fl_tensor *idx, const fl_tensor *x) {
  pool_ctx c = {g, fl_data_ptr(x), fl_data_ptr(out), idx ? (int64_t *)fl_data_ptr(idx) : NULL, NULL, x->dtype,
                fl_plane3(g->in), fl_plane3(g->out), {{0}, {0}}};
  FL_TRY(make_tables(g, &c.t));
  fl_status st = fl_cpu_each_plane("pool", g->planes, c.nin, c.nout, g->planes * c.nout * window_size(g), pool_plane, &c);
  free_tables(&c.t);
  return st;
}

/* dx at input position i (flat in its plane) from the f64 plane dy. */
static double pool_grad_one(const fl_pool_geom *g, const pool_tables *t, const double *dy, const int64_t *ix,
                            const int64_t *i) {
  int64_t lo[3], hi[3], o[3];
  for (int d = 0; d < 3; d++) lo[d] = t->range[d][2 * i[d]], hi[d] = t->range[d][2 * i[d] + 1];
  const int64_t flat = (i[0] * g->in[1] + i[1]) * g->in[2] + i[2], OH = g->out[1], OW = g->out[2];
  double s = 0;
  for (o[0] = lo[0]; o[0] < hi[0]; o[0]++)
    for (o[1] = lo[1]; o[1] < hi[1]; o[1]++)
      for (o[2] = lo[2]; o[2] < hi[2]; o[2]++) {
        int64_t k = (o[0] * OH + o[1]) * OW + o[2];
        if (g->kind == FL_POOL_MAX) {
          if (ix[k] - g->base == flat) s += dy[k];
          continue;
        }
        s += dy[k] / (double)(t->win[0][3 * o[0] + 2] * t->win[1][3 * o[1] + 2] * t->win[2][3 * o[2] + 2]);
      }
  return s;
}

static void pool_grad_plane(const void *vc, int64_t p, double *a, double *b) {
  const pool_ctx *c = vc;
  const fl_pool_geom *g = c->g;
  const int64_t es = (int64_t)fl_dtype_size(c->dt);
  fl_load_f64(a, c->x + p * c->nout * es, es, c->nout, c->dt);
  const int64_t *ix = c->cidx ? c->cidx + p * c->nout : NULL;
  int64_t k = 0, i[3];
  for (i[0] = 0; i[0] < g->in[0]; i[0]++)
    for (i[1] = 0; i[1] < g->in[1]; i[1]++)
      for (i[2] = 0; i[2] < g->in[2]; i[2]++) b[k++] = pool_grad_one(g, &c->t, a, ix, i);
  fl_store_f64(c->out + p * c->nin * es, es, b, c->nin, c->dt);
}

fl_status fl_cpu_pool_backward(const fl_pool_geom *g, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *idx) {
  pool_ctx c = {g, fl_data_ptr(dy), fl_data_ptr(dx), NULL, idx ? (const int64_t *)fl_data_ptr(idx) : NULL,
                dy->dtype, fl_plane3(g->in), fl_plane3(g->out), {{0}, {0}}};
  FL_TRY(make_tables(g, &c.t));
  fl_status st = fl_cpu_each_plane("pool backward", g->planes, c.nout, c.nin, g->planes * c.nout * window_size(g) * 2,
                                   pool_grad_plane, &c);
  free_tables(&c.t);
  return st;
}
