/* CPU layer/rms/group norm (the norm_forward / norm_backward entries, see ops/norm.c for the view
 * [n, groups, cpg, inner]). Every dtype computes in f64 through blocks of FL_CPU_BLOCK converted values.
 * Rows are split over threads for the forward and for dx; dw/db are split over blocks of channels, each summing
 * its rows in order, so the results do not depend on the thread count. */
#include "cpu.h"
#include <math.h>
#include <stdlib.h>

#define CH_BLOCK 64 /* channels per dw/db task */

typedef struct {
  int64_t rows, cols, groups, cpg, inner;
} norm_view;

static norm_view view_of(const fl_tensor *x, const fl_tensor *rstd, int64_t groups, int64_t inner) {
  norm_view v;
  v.rows = fl_numel(rstd), v.cols = fl_numel(x) / v.rows, v.groups = groups, v.inner = inner;
  v.cpg = v.cols / inner;
  return v;
}

/* A whole contiguous parameter as doubles (NULL in, NULL out; *st set on failure). */
static double *load_param(const fl_tensor *p, fl_status *st) {
  if (!p) return NULL;
  int64_t n = fl_numel(p);
  double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
  if (!d) {
    *st = fl_error(FL_ENOMEM, "out of host memory for %lld parameters", (long long)n);
    return NULL;
  }
  fl_load_f64(d, fl_data_ptr(p), (int64_t)fl_dtype_size(p->dtype), n, p->dtype);
  return d;
}

/* Sum of (x - shift)^p over a row of n elements (p = 1 or 2). */
static double row_sum(const char *x, int64_t n, fl_dtype dt, double shift, int p) {
  double v[FL_CPU_BLOCK], s = 0;
  int64_t es = (int64_t)fl_dtype_size(dt);
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(v, x + i * es, es, m, dt);
    if (p == 1)
      for (int64_t j = 0; j < m; j++) s += v[j] - shift;
    else
      for (int64_t j = 0; j < m; j++) s += (v[j] - shift) * (v[j] - shift);
  }
  return s;
}

static void forward_row(const norm_view *v, int64_t r, char *y, char *mean, char *rstd, const char *x, fl_dtype dt,
                        fl_dtype sdt, const double *w, const double *b, double eps) {
  int64_t es = (int64_t)fl_dtype_size(dt), ss = (int64_t)fl_dtype_size(sdt), n = v->cols;
  const char *xr = x + r * n * es;
  char *yr = y + r * n * es;
  double mu = 0, var;
  if (mean) { /* two passes: the mean, then the squared deviations (no cancellation) */
    mu = row_sum(xr, n, dt, 0, 1) / (double)n;
    fl_st(mean + r * ss, sdt, mu);
  }
  var = row_sum(xr, n, dt, mu, 2) / (double)n;
  double rs = 1.0 / sqrt(var + eps);
  fl_st(rstd + r * ss, sdt, rs);
  int64_t ch0 = (r % v->groups) * v->cpg;
  double t[FL_CPU_BLOCK];
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    fl_load_f64(t, xr + i * es, es, m, dt);
    for (int64_t j = 0; j < m; j++) {
      int64_t c = ch0 + (i + j) / v->inner;
      t[j] = (t[j] - mu) * rs;
      if (w) t[j] *= w[c];
      if (b) t[j] += b[c];
    }
    fl_store_f64(yr + i * es, es, t, m, dt);
  }
}

/* An f32 row (every f32 norm): the sums in eight f64 lanes the compiler vectorises, then per channel
 * y = (x - mean) * (rstd * w) + b in f32. The general path above converts each element to f64 and back and
 * divides to find its channel; on the UNet's GroupNorms it was a tenth of a CPU forward. */
static void forward_row_f32(const norm_view *v, int64_t r, float *y, float *mean, float *rstd, const float *x,
                            const double *w, const double *b, double eps) {
  int64_t n = v->cols, i;
  const float *xr = x + r * n;
  float *yr = y + r * n;
  double lane[8] = {0}, mu = 0, q = 0;
  if (mean) {
    for (i = 0; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; k++) lane[k] += xr[i + k];
    for (; i < n; i++) lane[0] += xr[i];
    for (int k = 0; k < 8; k++) mu += lane[k], lane[k] = 0;
    mu /= (double)n;
    mean[r] = (float)mu;
  }
  for (i = 0; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) lane[k] += (xr[i + k] - mu) * (xr[i + k] - mu);
  for (; i < n; i++) lane[0] += (xr[i] - mu) * (xr[i] - mu);
  for (int k = 0; k < 8; k++) q += lane[k];
  double rs = 1.0 / sqrt(q / (double)n + eps);
  rstd[r] = (float)rs;
  int64_t ch0 = (r % v->groups) * v->cpg, inner = v->inner;
  float m = (float)mu;
  for (int64_t c = 0; c < v->cpg; c++) {
    float sc = (float)(rs * (w ? w[ch0 + c] : 1.0)), sh = b ? (float)b[ch0 + c] : 0.0f;
    const float *xc = xr + c * inner;
    float *yc = yr + c * inner;
    for (int64_t j = 0; j < inner; j++) yc[j] = (xc[j] - m) * sc + sh;
  }
}

fl_status fl_cpu_norm_forward(fl_tensor *y, fl_tensor *mean, fl_tensor *rstd, const fl_tensor *x, const fl_tensor *w,
                              const fl_tensor *b, int64_t groups, int64_t inner, double eps) {
  norm_view v = view_of(x, rstd, groups, inner);
  fl_status st = FL_OK;
  double *wd = load_param(w, &st), *bd = st == FL_OK ? load_param(b, &st) : NULL;
  if (st == FL_OK) {
    int nt = fl_cpu_threads_for(fl_numel(x) * 4);
    if (nt > v.rows) nt = (int)v.rows;
    char *yp = fl_data_ptr(y), *mp = mean ? fl_data_ptr(mean) : NULL, *rp = fl_data_ptr(rstd);
    const char *xp = fl_data_ptr(x);
    if (x->dtype == FL_F32 && rstd->dtype == FL_F32 && fl_is_contiguous(x) && fl_is_contiguous(y))
      FL_CPU_FOR(r, v.rows, forward_row_f32(&v, r, (float *)yp, (float *)mp, (float *)rp, (const float *)xp, wd, bd, eps));
    else
      FL_CPU_FOR(r, v.rows, forward_row(&v, r, yp, mp, rp, xp, x->dtype, rstd->dtype, wd, bd, eps));
  }
  free(wd), free(bd);
  return st;
}

/* dx of one row: with g = dy * w and xhat = (x - mean) * rstd,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); rms norm has no mean(g) term. */
static void dx_row(const norm_view *v, int64_t r, char *dx, const char *dy, const char *x, fl_dtype dt,
                   const double *w, double mu, double rs, bool centred) {
  int64_t es = (int64_t)fl_dtype_size(dt), n = v->cols, ch0 = (r % v->groups) * v->cpg;
  const char *xr = x + r * n * es, *gr = dy + r * n * es;
  double a[FL_CPU_BLOCK], g[FL_CPU_BLOCK], sg = 0, sgx = 0;
  for (int pass = 0; pass < 2; pass++) {
    double k1 = sg / (double)n, k2 = sgx / (double)n;
    for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
      int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
      fl_load_f64(a, xr + i * es, es, m, dt);
      fl_load_f64(g, gr + i * es, es, m, dt);
      for (int64_t j = 0; j < m; j++) {
        double xh = (a[j] - mu) * rs, gj = w ? g[j] * w[ch0 + (i + j) / v->inner] : g[j];
        if (pass == 0) sg += gj, sgx += gj * xh;
        else a[j] = rs * (gj - (centred ? k1 : 0) - xh * k2);
      }
      if (pass == 1) fl_store_f64(dx + (r * n + i) * es, es, a, m, dt);
    }
  }
}

/* The dw/db sums of channels [c0, c1) of group g0 (into sw, sb): over the batch rows and the inner positions,
 * in order. */
static void dwdb_sums(const norm_view *v, int64_t g0, int64_t c0, int64_t c1, double *sw, double *sb, const char *dy,
                      const char *x, fl_dtype dt, const char *mean, const char *rstd, fl_dtype sdt) {
  int64_t es = (int64_t)fl_dtype_size(dt), ss = (int64_t)fl_dtype_size(sdt), nb = v->rows / v->groups;
  double a[FL_CPU_BLOCK], g[FL_CPU_BLOCK];
  int64_t len = (c1 - c0) * v->inner;
  for (int64_t c = 0; c < c1 - c0; c++) sw[c] = sb[c] = 0;
  for (int64_t nn = 0; nn < nb; nn++) {
    int64_t r = nn * v->groups + g0;
    double mu = mean ? fl_ld(mean + r * ss, sdt) : 0, rs = fl_ld(rstd + r * ss, sdt);
    int64_t off = r * v->cols + (c0 - g0 * v->cpg) * v->inner;
    for (int64_t i = 0; i < len; i += FL_CPU_BLOCK) {
      int64_t m = len - i < FL_CPU_BLOCK ? len - i : FL_CPU_BLOCK;
      fl_load_f64(a, x + (off + i) * es, es, m, dt);
      fl_load_f64(g, dy + (off + i) * es, es, m, dt);
      for (int64_t j = 0; j < m; j++) {
        int64_t c = (i + j) / v->inner;
        sw[c] += g[j] * (a[j] - mu) * rs;
        sb[c] += g[j];
      }
    }
  }
}

fl_status fl_cpu_norm_backward(fl_tensor *dx, fl_tensor *dw, fl_tensor *db, const fl_tensor *dy, const fl_tensor *x,
                               const fl_tensor *w, const fl_tensor *mean, const fl_tensor *rstd, int64_t groups,
                               int64_t inner) {
  norm_view v = view_of(x, rstd, groups, inner);
  fl_status st = FL_OK;
  const char *xp = fl_data_ptr(x), *gp = fl_data_ptr(dy), *mp = mean ? fl_data_ptr(mean) : NULL,
             *rp = fl_data_ptr(rstd);
  fl_dtype sdt = rstd->dtype;
  int64_t ss = (int64_t)fl_dtype_size(sdt);
  if (dx) {
    double *wd = load_param(w, &st);
    if (st != FL_OK) return st;
    int nt = fl_cpu_threads_for(fl_numel(x) * 6);
    if (nt > v.rows) nt = (int)v.rows;
    char *op = fl_data_ptr(dx);
    FL_CPU_FOR(r, v.rows,
               dx_row(&v, r, op, gp, xp, x->dtype, wd, mp ? fl_ld(mp + r * ss, sdt) : 0, fl_ld(rp + r * ss, sdt),
                      mp != NULL));
    free(wd);
  }
  if (dw || db) {
    int64_t per = (v.cpg + CH_BLOCK - 1) / CH_BLOCK, tasks = v.groups * per;
    int nt = fl_cpu_threads_for(fl_numel(x) * 4);
    if (nt > tasks) nt = (int)tasks;
    char *wp = dw ? fl_data_ptr(dw) : NULL, *bp = db ? fl_data_ptr(db) : NULL;
    fl_dtype wdt = dw ? dw->dtype : FL_F32, bdt = db ? db->dtype : FL_F32;
    FL_CPU_FOR(t, tasks, {
      int64_t g0 = t / per, c0 = g0 * v.cpg + (t % per) * CH_BLOCK;
      int64_t c1 = c0 + CH_BLOCK < (g0 + 1) * v.cpg ? c0 + CH_BLOCK : (g0 + 1) * v.cpg;
      double sw[CH_BLOCK], sb[CH_BLOCK];
      dwdb_sums(&v, g0, c0, c1, sw, sb, gp, xp, x->dtype, mp, rp, sdt);
      if (wp) fl_store_f64(wp + c0 * (int64_t)fl_dtype_size(wdt), (int64_t)fl_dtype_size(wdt), sw, c1 - c0, wdt);
      if (bp) fl_store_f64(bp + c0 * (int64_t)fl_dtype_size(bdt), (int64_t)fl_dtype_size(bdt), sb, c1 - c0, bdt);
    });
  }
  return st;
}
