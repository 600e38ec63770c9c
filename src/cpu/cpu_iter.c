/* The CPU strided loop over an iteration plan (src/core/plan.c), split over
 * threads for large work. Every thread takes one contiguous range of the
 * row-major element order, so which thread computes an element never changes
 * its value. */
#include "cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Runs fn over elements [begin, end) of the plan in runs along the innermost dim. */
static void run_range(const fl_plan *p, fl_cpu_loop fn, void *ctx, int64_t begin, int64_t end, fl_context *sc) {
  int n = p->nops, nd = p->ndim;
  int64_t bst[FL_PLAN_MAX][FL_MAX_DIMS], inner[FL_PLAN_MAX], idx[FL_MAX_DIMS];
  char *ptr[FL_PLAN_MAX];
  for (int k = 0; k < n; k++) {
    int64_t es = (int64_t)fl_dtype_size(p->dtype[k]);
    for (int d = 0; d < nd; d++) bst[k][d] = p->stride[k][d] * es;
    inner[k] = nd ? bst[k][nd - 1] : 0;
  }
  if (nd == 0) { /* one element */
    for (int k = 0; k < n; k++) ptr[k] = p->data[k];
    fn(ctx, 1, ptr, inner);
    return;
  }
  int64_t rem = begin; /* coordinates of begin */
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = rem % p->shape[d];
    rem /= p->shape[d];
  }
  int64_t len = p->shape[nd - 1];
  fl_cpu_stop stop = fl_cpu_stop_init(sc);
  for (int64_t at = begin; at < end;) {
    for (int k = 0; k < n; k++) {
      ptr[k] = p->data[k];
      for (int d = 0; d < nd; d++) ptr[k] += idx[d] * bst[k][d];
    }
    int64_t run = len - idx[nd - 1];
    if (run > end - at) run = end - at;
    if (run > FL_CPU_STOP_GRAIN) run = FL_CPU_STOP_GRAIN;
    fn(ctx, run, ptr, inner);
    at += run;
    if (fl_cpu_stopped(&stop, run)) return;
    if ((idx[nd - 1] += run) < len) continue;
    idx[nd - 1] = 0;
    for (int d = nd - 2; d >= 0; d--) { /* odometer over the outer dims */
      if (++idx[d] < p->shape[d]) break;
      idx[d] = 0;
    }
  }
}

void fl_cpu_run(const fl_plan *p, fl_cpu_loop fn, void *ctx, int cost) {
  int64_t numel = p->numel;
  if (numel <= 0) return;
  int nt = cost > 0 ? fl_cpu_threads_for(numel * cost) : 1; /* cost 0: must stay in order */
  fl_context *sc = fl_ctx();
  if (nt <= 1) {
    run_range(p, fn, ctx, 0, numel, sc);
    return;
  }
#ifdef _OPENMP
  /* chunks of whole cache lines of the widest operand, so threads never share a line they write */
  int64_t chunk = (numel + nt - 1) / nt;
  chunk = (chunk + 63) & ~(int64_t)63;
#pragma omp parallel num_threads(nt)
  FL_CPU_CHUNKS(t, nt) {
    int64_t b = (int64_t)t * chunk, e = b + chunk;
    if (e > numel) e = numel;
    if (b < e) run_range(p, fn, ctx, b, e, sc);
  }
#endif
}

void fl_cpu_iterate(int n, fl_tensor *const *ts, fl_cpu_loop fn, void *ctx, int cost) {
  fl_plan p;
  fl_plan_init(&p, n, (const fl_tensor *const *)ts);
  fl_cpu_run(&p, fn, ctx, cost);
}

int64_t fl_cpu_offset_of(const fl_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  return off;
}
