/* CPU fused cross-entropy over the rows of [R, C] logits (formulas in core/nn_index.h), in f64 for every
 * dtype; rows in parallel. Targets are checked before any write. */
#include "cpu.h"
#include "nn_index.h"
#include <math.h>

typedef struct {
  const fl_ce_args *a;
  int64_t R, C;
  bool probs;
  size_t xs, ts; /* element sizes of logits and target */
} ce_rows;

static int64_t target_at(const fl_ce_args *a, int64_t r) {
  const fl_tensor *t = a->target;
  int64_t off = t->offset + r * t->stride[0];
  return t->dtype == FL_I32 ? ((const int32_t *)t->storage->data)[off] : ((const int64_t *)t->storage->data)[off];
}

/* The row's class, 0-based (checked by ce_setup), or -1 when ignored. */
static int64_t row_class(const ce_rows *c, int64_t r) {
  int64_t v = target_at(c->a, r);
  return c->a->has_ignore && v == c->a->ignore_index ? -1 : fl_wsub(v, c->a->base);
}

static fl_status ce_setup(const fl_ce_args *a, ce_rows *c) {
  const fl_tensor *x = a->logits;
  c->a = a;
  c->R = x->shape[0], c->C = x->shape[1];
  c->probs = a->target->dtype != FL_I64 && a->target->dtype != FL_I32;
  c->xs = fl_dtype_size(x->dtype), c->ts = fl_dtype_size(a->target->dtype);
  if (c->probs) return FL_OK;
  for (int64_t r = 0; r < c->R; r++) {
    int64_t v = target_at(a, r), k = fl_wsub(v, a->base);
    if ((!a->has_ignore || v != a->ignore_index) && (k < 0 || k >= c->C))
      return fl_error(FL_EINDEX, "cross_entropy: target %lld out of range for %lld classes", (long long)fl_mdim(k),
                      (long long)c->C);
  }
  return FL_OK;
}

static double wt(const fl_ce_args *a, int64_t c) {
  return a->weight ? fl_ld(fl_data_ptr(a->weight) + c * (int64_t)fl_dtype_size(a->weight->dtype), a->weight->dtype) : 1;
}

/* q'_c w_c: the smoothed target's weight of class c in row r (t: the class; probabilities when c->probs). */
static double wq(const ce_rows *c, int64_t r, int64_t k, int64_t t) {
  double eps = c->a->smoothing, q;
  if (c->probs) q = (1 - eps) * fl_ld(fl_data_ptr(c->a->target) + (r * c->C + k) * (int64_t)c->ts, c->a->target->dtype);
  else q = k == t ? 1 - eps : 0;
  return wt(c->a, k) * (q + eps / (double)c->C);
}

static double row_x(const ce_rows *c, const char *xr, int64_t k) {
  return fl_ld(xr + k * (int64_t)c->xs, c->a->logits->dtype);
}

fl_status fl_cpu_cross_entropy(const fl_ce_args *a) {
  ce_rows c;
  FL_TRY(ce_setup(a, &c));
  fl_dtype acc = a->loss->dtype;
  size_t as = fl_dtype_size(acc);
  int nt = fl_cpu_threads_for(c.R * c.C * 4);
  FL_CPU_FOR(r, c.R, {
    const char *xr = fl_data_ptr(a->logits) + r * c.C * (int64_t)c.xs;
    int64_t t = c.probs ? 0 : row_class(&c, r);
    double m = -INFINITY, s = 0, sw = 0, swx = 0, xref = row_x(&c, xr, 0);
    for (int64_t k = 0; k < c.C; k++) m = fmax(m, row_x(&c, xr, k));
    for (int64_t k = 0; k < c.C; k++) {
      double v = row_x(&c, xr, k);
      s += exp(v - m);
      if (t >= 0) {
        double f = wq(&c, r, k, t);
        sw += f;
        swx += f * (v - xref);
      }
    }
    double lse = m + log(s), loss = 0, rw = 0;
    if (t >= 0) {
      loss = (lse - xref) * sw - swx;
      rw = c.probs ? 1 : wt(a, t);
    }
    fl_st(fl_data_ptr(a->loss) + r * (int64_t)as, acc, loss);
    fl_st(fl_data_ptr(a->lse) + r * (int64_t)as, acc, lse);
    fl_st(fl_data_ptr(a->rw) + r * (int64_t)as, acc, rw);
  });
  return FL_OK;
}

fl_status fl_cpu_cross_entropy_backward(const fl_ce_args *a, fl_tensor *dx, const fl_tensor *g) {
  ce_rows c;
  FL_TRY(ce_setup(a, &c));
  fl_dtype acc = a->lse->dtype;
  size_t as = fl_dtype_size(acc);
  int nt = fl_cpu_threads_for(c.R * c.C * 4);
  FL_CPU_FOR(r, c.R, {
    const char *xr = fl_data_ptr(a->logits) + r * c.C * (int64_t)c.xs;
    char *dr = fl_data_ptr(dx) + r * c.C * (int64_t)c.xs;
    int64_t t = c.probs ? 0 : row_class(&c, r);
    double gr = fl_ld(fl_data_ptr(g) + r * (int64_t)as, acc), lse = fl_ld(fl_data_ptr(a->lse) + r * (int64_t)as, acc);
    double sw = 0;
    if (t >= 0)
      for (int64_t k = 0; k < c.C; k++) sw += wq(&c, r, k, t);
    for (int64_t k = 0; k < c.C; k++) {
      double d = t >= 0 ? gr * (sw * exp(row_x(&c, xr, k) - lse) - wq(&c, r, k, t)) : 0;
      fl_st(dr + k * (int64_t)c.xs, dx->dtype, d);
    }
  });
  return FL_OK;
}
