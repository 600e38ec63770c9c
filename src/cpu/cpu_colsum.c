/* Sums and means of f32 over leading dims (a column reduction: a bias
 * gradient's sum over the rows of [N, C]; a mean over dims 1 and 3 of
 * [B, C, H, W]). When the innermost kept dim is unit-stride in x, each output's
 * slice is strided but the neighbouring outputs' elements are contiguous, so
 * whole rows are added into a block of per-column accumulators: f32 over 16
 * rows (vectorised like fl_cpu_sum_f32's lanes), then into f64. Threads take
 * column blocks; a column is always summed in row order, so the result does
 * not depend on the thread count. */
#include "cpu.h"

#define COL_BLOCK 1024 /* columns per task: f32 + f64 accumulators stay in L1 */
#define ROW_GROUP 16   /* rows summed in f32 before going into f64 */

typedef struct {
  const fl_plan *p;
  int nk;         /* kept dims; the innermost is the columns */
  int64_t nrow;   /* reduced positions: the rows */
  int64_t ncol;   /* length of the innermost kept dim */
  int64_t bw;     /* columns per block (<= COL_BLOCK) */
  int64_t nblock; /* column blocks per outer kept position */
  bool mean;
} col_job;

/* Adds w (<= COL_BLOCK) columns of n rows (row r at x + off_r, off from the
 * odometer over the reduced dims) into acc. */
FL_CLONES static void col_rows(const col_job *j, const float *x, int64_t w, double *acc) {
  const fl_plan *p = j->p;
  int kx = p->nops - 1, nd = p->ndim;
  int64_t idx[FL_MAX_DIMS] = {0}, off = 0;
  float part[COL_BLOCK];
  for (int64_t r = 0; r < j->nrow;) {
    for (int64_t c = 0; c < w; c++) part[c] = 0.0f;
    int64_t end = r + ROW_GROUP < j->nrow ? r + ROW_GROUP : j->nrow;
    for (; r < end; r++) {
      const float *row = x + off;
      for (int64_t c = 0; c < w; c++) part[c] += row[c];
      for (int d = nd - 1; d >= j->nk; d--) { /* next row */
        off += p->stride[kx][d];
        if (++idx[d] < p->shape[d]) break;
        off -= p->shape[d] * p->stride[kx][d];
        idx[d] = 0;
      }
    }
    for (int64_t c = 0; c < w; c++) acc[c] += part[c];
  }
}

/* Task t: outer kept position t / nblock, column block t % nblock. */
static void col_task(const col_job *j, int64_t t) {
  const fl_plan *p = j->p;
  int kx = p->nops - 1, nk = j->nk;
  int64_t outer = t / j->nblock, c0 = (t % j->nblock) * j->bw;
  int64_t w = j->ncol - c0 < j->bw ? j->ncol - c0 : j->bw;
  int64_t xo = c0, oo = c0 * p->stride[0][nk - 1];
  for (int d = nk - 2; d >= 0; d--) { /* the outer kept coordinates */
    int64_t i = outer % p->shape[d];
    outer /= p->shape[d];
    xo += i * p->stride[kx][d];
    oo += i * p->stride[0][d];
  }
  double acc[COL_BLOCK];
  for (int64_t c = 0; c < w; c++) acc[c] = 0;
  col_rows(j, (const float *)p->data[kx] + xo, w, acc);
  if (j->mean)
    for (int64_t c = 0; c < w; c++) acc[c] /= (double)j->nrow;
  int64_t es = (int64_t)fl_dtype_size(p->dtype[0]);
  fl_store_f64(p->data[0] + oo * es, p->stride[0][nk - 1] * es, acc, w, p->dtype[0]);
}

bool fl_cpu_colsum(const fl_plan *p, bool mean) {
  int kx = p->nops - 1, nk = p->ndim - p->nred;
  if (p->dtype[kx] != FL_F32 || p->nred == 0 || nk == 0) return false;
  if (p->stride[kx][nk - 1] != 1 || p->shape[nk - 1] < 8) return false;
  if (p->stride[kx][p->ndim - 1] == 1) return false; /* rows reduce contiguously: the row path */
  col_job j = {p, nk, fl_plan_reduced_numel(p), p->shape[nk - 1], COL_BLOCK, 0, mean};
  int nt = fl_cpu_threads_for(p->numel * j.nrow);
  int64_t nouter = p->numel / j.ncol;
  if (nt > 1 && nouter < nt) { /* narrower blocks (of 16 columns) so that every thread gets some */
    int64_t per = (j.ncol + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    if (per < j.bw) j.bw = per;
  }
  j.nblock = (j.ncol + j.bw - 1) / j.bw;
  int64_t ntask = nouter * j.nblock;
  if (ntask < nt) nt = (int)ntask;
  FL_CPU_FOR(t, ntask, col_task(&j, t));
  return true;
}
