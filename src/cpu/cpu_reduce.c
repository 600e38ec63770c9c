/* CPU reductions over any set of dims. The core plan (fl_plan_reduce) puts
 * the kept dims outside the reduced ones; each output reduces its slice in
 * runs along the innermost reduced dim. Floats accumulate in f64 (in 32
 * independent lanes on unit-stride f32 runs, which vectorises), integers in
 * wrapping i64. Threads split the outputs, or, when there are fewer outputs
 * than threads, each output's slice into one range per thread whose partial
 * results are combined in thread order: a sum can then differ with the thread
 * count by float reassociation only; max/min/arg* never do. */
#include "cpu.h"
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef enum { M_SUM, M_ISUM, M_PROD, M_IPROD, M_SQDEV, M_MAX, M_MIN } red_mode;

typedef struct {
  double sum;   /* M_SUM, M_PROD, M_SQDEV */
  int64_t isum; /* M_ISUM, M_IPROD */
  double best;  /* M_MAX, M_MIN */
  int64_t at;   /* index of best in the slice; -1 before the first element */
} acc_t;

typedef struct {
  const fl_plan *p;
  red_mode mode;
  fl_dtype dt;
  double mean; /* M_SQDEV */
  fl_context *stop; /* the context that started the op: its stop request ends the fold early */
} red_ctx;

static void acc_init(acc_t *a, red_mode m) {
  a->sum = (m == M_PROD) ? 1 : 0;
  a->isum = (m == M_IPROD) ? 1 : 0;
  a->best = NAN;
  a->at = -1;
}

/* Is v better than the best so far? The first NaN wins, then stays. */
static inline bool better(red_mode m, double v, double best, int64_t at) {
  if (at < 0) return true;
  if (isnan(best)) return false;
  return isnan(v) || (m == M_MAX ? v > best : v < best);
}

/* Blocks of 1024 values: 64 f32 lanes add 16 values each (as fast as the
 * loads), then the lanes go into f64 lanes, so the f32 rounding covers 16
 * values only, like numpy's pairwise blocks. */
FL_CLONES __attribute__((optimize("no-tree-loop-distribute-patterns"))) double fl_cpu_sum_f32(const float *x, int64_t n) {
  double wide[64];
  for (int j = 0; j < 64; j++) wide[j] = 0; /* vector stores: as an initialiser, a rep stos (slow to start) */
  int64_t i = 0;
  for (; i + 1024 <= n; i += 1024) {
    float lane[64] = {0};
    for (int k = 0; k < 1024; k += 64)
      for (int j = 0; j < 64; j++) lane[j] += x[i + k + j];
    for (int j = 0; j < 64; j++) wide[j] += lane[j];
  }
  for (; i + 64 <= n; i += 64)
    for (int j = 0; j < 64; j++) wide[j] += x[i + j];
  double s = 0;
  for (; i < n; i++) s += x[i];
  /* a tree, not a 64-long chain of dependent adds; each level a constant count, so that it vectorises (with the
   * count a variable the tree was most of a short row's sum: softmax over 64 keys) */
#define LEVEL(w) for (int j = 0; j < (w); j++) wide[j] += wide[j + (w)];
  LEVEL(32) LEVEL(16) LEVEL(8) LEVEL(4) LEVEL(2) LEVEL(1)
#undef LEVEL
  return s + wide[0];
}

/* 16 lanes as a GCC/Clang vector: the compare-and-select is written out,
 * which the vectoriser does not do for a float max on its own (it would need
 * -ffinite-math-only); NaNs are flagged on the side. */
typedef float fl_v16f __attribute__((vector_size(64)));
typedef int32_t fl_v16i __attribute__((vector_size(64)));

FL_CLONES float fl_cpu_extreme_f32(const float *x, int64_t n, bool max) {
  fl_v16f m;
  fl_v16i nan = {0};
  for (int j = 0; j < 16; j++) m[j] = x[0];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    fl_v16f v;
    memcpy(&v, x + i, sizeof v);
    fl_v16i take = max ? v > m : v < m;
    m = (fl_v16f)(((fl_v16i)v & take) | ((fl_v16i)m & ~take));
    nan |= v != v;
  }
  float r = m[0];
  int32_t any = 0;
  for (int j = 0; j < 16; j++) {
    r = (max ? m[j] > r : m[j] < r) ? m[j] : r;
    any |= nan[j];
  }
  for (; i < n; i++) {
    r = (max ? x[i] > r : x[i] < r) ? x[i] : r;
    any |= x[i] != x[i];
  }
  return any || r != r ? NAN : r;
}

/* Folds one run (n elements at p, byte stride s, slice index first) into a. */
static void fold_run(const red_ctx *c, acc_t *a, const char *p, int64_t s, int64_t n, int64_t first) {
  bool unit_f32 = c->dt == FL_F32 && s == 4;
  if (unit_f32 && c->mode == M_SUM) {
    a->sum += fl_cpu_sum_f32((const float *)p, n);
    return;
  }
  if (unit_f32 && (c->mode == M_MAX || c->mode == M_MIN)) {
    const float *x = (const float *)p;
    float m = fl_cpu_extreme_f32(x, n, c->mode == M_MAX);
    if (!better(c->mode, m, a->best, a->at)) return;
    int64_t k = 0; /* the first position holding it */
    if (m != m) while (x[k] == x[k]) k++;
    else while (x[k] != m) k++;
    a->best = m, a->at = first + k;
    return;
  }
  bool integer = c->mode == M_ISUM || c->mode == M_IPROD;
  for (int64_t i = 0; i < n; i += FL_CPU_BLOCK) {
    int64_t m = n - i < FL_CPU_BLOCK ? n - i : FL_CPU_BLOCK;
    double v[FL_CPU_BLOCK];
    int64_t iv[FL_CPU_BLOCK];
    if (integer) fl_load_i64(iv, p + i * s, s, m, c->dt);
    else fl_load_f64(v, p + i * s, s, m, c->dt);
    switch (c->mode) {
      case M_SUM: for (int64_t j = 0; j < m; j++) a->sum += v[j]; break;
      case M_PROD: for (int64_t j = 0; j < m; j++) a->sum *= v[j]; break;
      case M_SQDEV: for (int64_t j = 0; j < m; j++) a->sum += (v[j] - c->mean) * (v[j] - c->mean); break;
      case M_ISUM: for (int64_t j = 0; j < m; j++) a->isum = fl_wadd(a->isum, iv[j]); break;
      case M_IPROD: for (int64_t j = 0; j < m; j++) a->isum = fl_wmul(a->isum, iv[j]); break;
      case M_MAX: case M_MIN:
        for (int64_t j = 0; j < m; j++)
          if (better(c->mode, v[j], a->best, a->at)) a->best = v[j], a->at = first + i + j;
        break;
    }
  }
}

/* Folds elements [begin, end) of the reduced slice starting at x into a. */
static void fold_range(const red_ctx *c, acc_t *a, const char *x, int64_t begin, int64_t end) {
  const fl_plan *p = c->p;
  int k = p->nops - 1, r0 = p->ndim - p->nred, nd = p->ndim;
  int64_t es = (int64_t)fl_dtype_size(c->dt);
  if (p->nred == 0) { /* reducing size-1 dims only: the element itself */
    if (begin < end) fold_run(c, a, x, es, 1, 0);
    return;
  }
  int64_t idx[FL_MAX_DIMS], rem = begin;
  for (int d = nd - 1; d >= r0; d--) {
    idx[d] = rem ? rem % p->shape[d] : 0;
    rem = rem ? rem / p->shape[d] : 0;
  }
  int64_t len = p->shape[nd - 1], inner = p->stride[k][nd - 1] * es;
  fl_cpu_stop stop = fl_cpu_stop_init(c->stop);
  for (int64_t at = begin; at < end;) {
    const char *q = x;
    for (int d = r0; d < nd; d++) q += idx[d] * p->stride[k][d] * es;
    int64_t run = len - idx[nd - 1];
    if (run > end - at) run = end - at;
    if (run > FL_CPU_STOP_GRAIN) run = FL_CPU_STOP_GRAIN;
    fold_run(c, a, q, inner, run, at);
    at += run;
    if (fl_cpu_stopped(&stop, run)) return;
    if ((idx[nd - 1] += run) < len) continue;
    idx[nd - 1] = 0;
    for (int d = nd - 2; d >= r0; d--) {
      if (++idx[d] < p->shape[d]) break;
      idx[d] = 0;
    }
  }
}

/* b (a later range) folded into a. */
static void acc_merge(red_mode m, acc_t *a, const acc_t *b) {
  switch (m) {
    case M_SUM: case M_SQDEV: a->sum += b->sum; break;
    case M_PROD: a->sum *= b->sum; break;
    case M_ISUM: a->isum = fl_wadd(a->isum, b->isum); break;
    case M_IPROD: a->isum = fl_wmul(a->isum, b->isum); break;
    case M_MAX: case M_MIN:
      if (b->at >= 0 && better(m, b->best, a->best, a->at)) a->best = b->best, a->at = b->at;
      break;
  }
}

/* Folds the whole slice at x, over nt threads. */
static void fold_slice(const red_ctx *c, acc_t *a, const char *x, int64_t nred, int nt) {
  acc_init(a, c->mode);
  if (nt <= 1) {
    fold_range(c, a, x, 0, nred);
    return;
  }
#ifdef _OPENMP
  acc_t part[64];
  if (nt > 64) nt = 64;
  int64_t chunk = (nred + nt - 1) / nt;
#pragma omp parallel num_threads(nt)
  FL_CPU_CHUNKS(t, nt) {
    int64_t b = t * chunk, e = b + chunk < nred ? b + chunk : nred;
    acc_init(&part[t], c->mode);
    if (b < e) fold_range(c, &part[t], x, b, e);
  }
  for (int t = 0; t < nt; t++) acc_merge(c->mode, a, &part[t]);
#endif
}

typedef struct {
  fl_reduce_op op;
  double param;
  int64_t base, nred;
  bool integer;
  fl_tensor *out, *idx;
  fl_context *stop; /* the context that started the op (fl_cpu_stop) */
} red_job;

/* Reduces the slice at x and stores its results at dst (and *ip). */
static void reduce_one(const red_job *j, const fl_plan *p, const char *x, char *dst, char *ip, int nt) {
  int kx = p->nops - 1;
  red_ctx c = {p, M_SUM, p->dtype[kx], 0, j->stop};
  acc_t a;
  double res = 0;
  switch (j->op) {
    case FL_RSUM: case FL_RMEAN:
      if (j->integer) {
        c.mode = M_ISUM;
        fold_slice(&c, &a, x, j->nred, nt);
        fl_store_i64(dst, 0, &a.isum, 1, p->dtype[0]);
        return;
      }
      if (nt <= 1 && p->nred == 1 && c.dt == FL_F32 && p->stride[kx][p->ndim - 1] == 1) {
        a.sum = fl_cpu_sum_f32((const float *)x, j->nred); /* a unit-stride row: straight to the vector sum */
      } else {
        fold_slice(&c, &a, x, j->nred, nt);
      }
      res = j->op == FL_RMEAN ? a.sum / (double)j->nred : a.sum;
      break;
    case FL_RPROD:
      c.mode = j->integer ? M_IPROD : M_PROD;
      fold_slice(&c, &a, x, j->nred, nt);
      if (j->integer) {
        fl_store_i64(dst, 0, &a.isum, 1, p->dtype[0]);
        return;
      }
      res = a.sum;
      break;
    case FL_RVAR: {
      fold_slice(&c, &a, x, j->nred, nt);
      c.mode = M_SQDEV;
      c.mean = a.sum / (double)j->nred;
      fold_slice(&c, &a, x, j->nred, nt);
      double den = (double)j->nred - j->param; /* as torch: no degrees of freedom left divides by 0 */
      res = a.sum / (den > 0 ? den : 0.0);
      break;
    }
    default: { /* MAX, MIN, ARGMAX, ARGMIN */
      c.mode = (j->op == FL_RMAX || j->op == FL_RARGMAX) ? M_MAX : M_MIN;
      fold_slice(&c, &a, x, j->nred, nt);
      int64_t at = a.at + j->base;
      if (j->op == FL_RARGMAX || j->op == FL_RARGMIN) {
        fl_store_i64(dst, 0, &at, 1, p->dtype[0]);
        return;
      }
      if (ip) *(int64_t *)ip = at;
      res = a.best;
    }
  }
  fl_store_f64(dst, 0, &res, 1, p->dtype[0]);
}

/* Kept positions [o0, o1): coordinates found once, then an odometer. */
static void reduce_chunk(const red_job *j, const fl_plan *p, int64_t o0, int64_t o1, int nt) {
  int nk = p->ndim - p->nred, kx = p->nops - 1;
  int64_t idx[FL_MAX_DIMS], es[FL_PLAN_MAX], rem = o0;
  char *ptr[FL_PLAN_MAX];
  for (int d = nk - 1; d >= 0; d--) idx[d] = rem % p->shape[d], rem /= p->shape[d];
  for (int k = 0; k < p->nops; k++) {
    es[k] = (int64_t)fl_dtype_size(p->dtype[k]);
    ptr[k] = p->data[k];
    for (int d = 0; d < nk; d++) ptr[k] += idx[d] * p->stride[k][d] * es[k];
  }
  fl_cpu_stop stop = fl_cpu_stop_init(j->stop);
  for (int64_t o = o0; o < o1; o++) {
    reduce_one(j, p, ptr[kx], ptr[0], j->idx ? ptr[1] : NULL, nt);
    if (fl_cpu_stopped(&stop, j->nred)) return;
    for (int d = nk - 1; d >= 0; d--) {
      for (int k = 0; k < p->nops; k++) ptr[k] += p->stride[k][d] * es[k];
      if (++idx[d] < p->shape[d]) break;
      for (int k = 0; k < p->nops; k++) ptr[k] -= p->shape[d] * p->stride[k][d] * es[k];
      idx[d] = 0;
    }
  }
}

/* A fold cut short by a stop request (fl_cpu_stop) leaves out incomplete: the op fails. */
static fl_status stopped(const red_job *j) {
  int r = fl_context_stop_reason(j->stop);
  return r ? fl_stop_error(r) : FL_OK;
}

fl_status fl_cpu_reduce(fl_reduce_op op, fl_tensor *out, fl_tensor *idx, const fl_tensor *x, uint32_t mask,
                        double param, int64_t base) {
  const fl_tensor *ts[3] = {out, idx, x};
  int n = 3;
  if (!idx) ts[1] = x, n = 2;
  fl_plan p;
  fl_plan_reduce(&p, n, ts, mask);
  red_job j = {op, param, base, fl_plan_reduced_numel(&p), !fl_dtype_is_float(x->dtype), out, idx, fl_ctx()};
  if ((op == FL_RSUM || op == FL_RMEAN) && !idx && fl_cpu_colsum(&p, op == FL_RMEAN)) return FL_OK;
  int64_t nkept = p.numel;
  int nt = fl_cpu_threads_for(nkept * j.nred * (op == FL_RVAR ? 2 : 1));
  if (nt <= 1 || nkept < nt) { /* one thread, or few outputs with threads within each */
    reduce_chunk(&j, &p, 0, nkept, nt);
    return stopped(&j);
  }
#ifdef _OPENMP
  int64_t chunk = (nkept + nt - 1) / nt; /* threads over the outputs */
#pragma omp parallel num_threads(nt)
  FL_CPU_CHUNKS(t, nt) {
    int64_t b = t * chunk, e = b + chunk < nkept ? b + chunk : nkept;
    if (b < e) reduce_chunk(&j, &p, b, e, 1);
  }
#endif
  return stopped(&j);
}
