/* CPU reductions over any set of dims, cumsum and softmax. */
#include "cpu.h"
#include <math.h>
#include <string.h>

typedef struct {
  fl_reduce_op op;
  fl_dtype dt;
  bool integer;
  double acc, mean;
  int64_t iacc, count, best_at;
} red_ctx;

static void red_loop(void *vc, int64_t n, char **p, const int64_t *s) {
  red_ctx *c = vc;
  for (int64_t i = 0; i < n; i++, c->count++) {
    const char *q = p[0] + i * s[0];
    if (c->integer && (c->op == FL_RSUM || c->op == FL_RPROD)) {
      int64_t v = fl_ldi(q, c->dt);
      c->iacc = c->op == FL_RSUM ? c->iacc + v : c->iacc * v;
      continue;
    }
    double v = fl_ld(q, c->dt);
    switch (c->op) {
      case FL_RSUM: case FL_RMEAN: c->acc += v; break;
      case FL_RPROD: c->acc *= v; break;
      case FL_RVAR: c->acc += (v - c->mean) * (v - c->mean); break;
      case FL_RMAX: case FL_RARGMAX:
        if (c->best_at < 0 || v > c->acc || (isnan(v) && !isnan(c->acc))) c->acc = v, c->best_at = c->count;
        break;
      case FL_RMIN: case FL_RARGMIN:
        if (c->best_at < 0 || v < c->acc || (isnan(v) && !isnan(c->acc))) c->acc = v, c->best_at = c->count;
        break;
      default: break;
    }
  }
}

static void run(red_ctx *c, fl_tensor *region, fl_reduce_op op) {
  c->op = op;
  c->acc = (op == FL_RPROD) ? 1 : 0;
  c->iacc = (op == FL_RPROD) ? 1 : 0;
  c->count = 0;
  c->best_at = -1;
  fl_cpu_iterate(1, &region, red_loop, c);
}

fl_status fl_cpu_reduce(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask,
                        double param, int64_t base) {
  /* region: a stack header over the reduced dims; its offset moves per output element */
  fl_tensor region = *x, kept = *x;
  region.ndim = kept.ndim = 0;
  for (int d = 0; d < x->ndim; d++) {
    fl_tensor *t = (mask >> d & 1) ? &region : &kept;
    t->shape[t->ndim] = x->shape[d];
    t->stride[t->ndim++] = x->stride[d];
  }
  int64_t n_out = fl_numel(out), n_red = fl_numel(&region);
  size_t eo = fl_dtype_size(out->dtype);
  red_ctx c = {.dt = x->dtype, .integer = !fl_dtype_is_float(x->dtype)};
  for (int64_t o = 0; o < n_out; o++) {
    region.offset = fl_cpu_offset_of(&kept, o);
    char *dst = fl_data_ptr(out) + o * eo;
    if (op == FL_RVAR) {
      run(&c, &region, FL_RSUM);
      c.mean = c.acc / (double)n_red;
      run(&c, &region, FL_RVAR);
      double den = (double)n_red - param; /* as torch: no degrees of freedom left divides by 0 (Inf, or NaN for 0/0) */
      fl_st(dst, out->dtype, c.acc / (den > 0 ? den : 0.0));
      continue;
    }
    run(&c, &region, op);
    if (c.integer && (op == FL_RSUM || op == FL_RPROD)) {
      fl_sti(dst, out->dtype, c.iacc);
      continue;
    }
    if (op == FL_RMEAN) c.acc /= (double)n_red;
    if (op == FL_RARGMAX || op == FL_RARGMIN) {
      fl_sti(dst, out->dtype, c.best_at + base);
      continue;
    }
    if ((op == FL_RMAX || op == FL_RMIN) && n_red == 0) c.acc = NAN;
    fl_st(dst, out->dtype, c.acc);
    if (idx) ((int64_t *)fl_data_ptr(idx))[o] = c.best_at + base;
  }
  return FL_OK;
}

/* Views x as [outer, n, inner] around dim (x, out contiguous). */
static void split3(const fl_tensor *x, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = 1, *inner = 1, *n = x->shape[dim];
  for (int d = 0; d < dim; d++) *outer *= x->shape[d];
  for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

fl_status fl_cpu_cumsum(fl_tensor *out, const fl_tensor *x, int dim) {
  /* out is contiguous; x may be strided */
  int64_t outer, n, inner;
  split3(out, dim, &outer, &n, &inner);
  size_t eo = fl_dtype_size(out->dtype);
  bool integer = !fl_dtype_is_float(out->dtype);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double acc = 0;
      int64_t iacc = 0;
      for (int64_t k = 0; k < n; k++) {
        int64_t flat = (o * n + k) * inner + i;
        const char *src = (const char *)x->storage->data + fl_cpu_offset_of(x, flat) * (int64_t)fl_dtype_size(x->dtype);
        char *dst = fl_data_ptr(out) + flat * (int64_t)eo;
        if (integer) fl_sti(dst, out->dtype, iacc += fl_ldi(src, x->dtype));
        else fl_st(dst, out->dtype, acc += fl_ld(src, x->dtype));
      }
    }
  return FL_OK;
}

fl_status fl_cpu_softmax(fl_tensor *out, const fl_tensor *x, int dim, bool log_) {
  int64_t outer, n, inner;
  split3(x, dim, &outer, &n, &inner);
  size_t es = fl_dtype_size(x->dtype);
  const char *xp = fl_data_ptr(x);
  char *op = fl_data_ptr(out);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * n * inner + i;
      double mx = -INFINITY, sum = 0;
      for (int64_t k = 0; k < n; k++) mx = fmax(mx, fl_ld(xp + (base + k * inner) * es, x->dtype));
      if (isinf(mx) && mx < 0) mx = 0; /* a row of -inf gives NaN like the reference, not a crash */
      for (int64_t k = 0; k < n; k++) sum += exp(fl_ld(xp + (base + k * inner) * es, x->dtype) - mx);
      double lse = log(sum);
      for (int64_t k = 0; k < n; k++) {
        double v = fl_ld(xp + (base + k * inner) * es, x->dtype) - mx;
        fl_st(op + (base + k * inner) * es, out->dtype, log_ ? v - lse : exp(v) / sum);
      }
    }
  return FL_OK;
}
