/* The iteration plan: one description of how to walk n same-shape operands
 * (outputs first, then inputs), shared by the CPU loops and the CUDA launch
 * metadata (cuda/iter.cuh). Dims of size 1 are dropped, inputs of a smaller
 * shape broadcast with stride 0, and adjacent dims that are contiguous with
 * each other in every operand are merged, so contiguous operands become 1-D.
 * Reductions order the kept dims outside the reduced ones and merge each group
 * on its own. */
#include "internal.h"

/* Appends dim (size, strides[k]) innermost, merging it into the previous one
 * when every operand steps over the previous dim by exactly this dim's extent. */
static void push_dim(fl_plan *p, int64_t size, const int64_t *st, bool merge, int *group_start) {
  int d = p->ndim;
  if (merge && size == 1) return;
  bool can = merge && d > *group_start;
  for (int k = 0; can && k < p->nops; k++) can = p->stride[k][d - 1] == st[k] * size;
  if (can) {
    p->shape[d - 1] *= size;
    for (int k = 0; k < p->nops; k++) p->stride[k][d - 1] = st[k];
    return;
  }
  p->shape[d] = size;
  for (int k = 0; k < p->nops; k++) p->stride[k][d] = st[k];
  p->ndim++;
}

static void plan_begin(fl_plan *p, int nops) {
  p->nops = nops;
  p->ndim = 0;
  p->nred = 0;
  p->numel = 1;
}

void fl_plan_dims(fl_plan *p, int nops, int ndim, const int64_t *shape, const int64_t *const *strides, bool merge) {
  plan_begin(p, nops);
  int g = 0;
  for (int d = 0; d < ndim; d++) {
    int64_t st[FL_PLAN_MAX];
    for (int k = 0; k < nops; k++) st[k] = strides[k][d];
    p->numel *= shape[d];
    push_dim(p, shape[d], st, merge, &g);
  }
}

/* Stride of operand t along dim d of a shape of ndim dims (right-aligned
 * broadcasting: a missing or size-1 dim of t steps by 0). */
static int64_t bstride(const fl_tensor *t, int ndim, int d, int64_t size) {
  int td = d - (ndim - t->ndim);
  if (td < 0 || (t->shape[td] == 1 && size != 1)) return 0;
  return t->stride[td];
}

static void set_operands(fl_plan *p, int nops, const fl_tensor *const *ts) {
  for (int k = 0; k < nops; k++) {
    p->dtype[k] = ts[k]->dtype;
    p->data[k] = fl_data_ptr(ts[k]);
  }
}

void fl_plan_init(fl_plan *p, int nops, const fl_tensor *const *ts) {
  const fl_tensor *s = ts[0];
  plan_begin(p, nops);
  int g = 0;
  for (int d = 0; d < s->ndim; d++) {
    int64_t st[FL_PLAN_MAX];
    for (int k = 0; k < nops; k++) st[k] = bstride(ts[k], s->ndim, d, s->shape[d]);
    p->numel *= s->shape[d];
    push_dim(p, s->shape[d], st, true, &g);
  }
  set_operands(p, nops, ts);
}

void fl_plan_reduce(fl_plan *p, int nops, const fl_tensor *const *ts, uint32_t mask) {
  const fl_tensor *x = ts[nops - 1];
  plan_begin(p, nops);
  int g = 0;
  for (int pass = 0; pass < 2; pass++) { /* kept dims, then reduced dims */
    int before = p->ndim;
    g = p->ndim;
    for (int d = 0; d < x->ndim; d++) {
      if ((int)(mask >> d & 1) != pass) continue;
      int64_t st[FL_PLAN_MAX];
      for (int k = 0; k < nops; k++) st[k] = bstride(ts[k], x->ndim, d, x->shape[d]);
      if (pass == 0) p->numel *= x->shape[d];
      push_dim(p, x->shape[d], st, true, &g);
    }
    if (pass == 1) p->nred = p->ndim - before;
  }
  /* numel is the number of kept positions (outputs); nred the reduced dims */
  set_operands(p, nops, ts);
}

int64_t fl_plan_reduced_numel(const fl_plan *p) {
  int64_t n = 1;
  for (int d = p->ndim - p->nred; d < p->ndim; d++) n *= p->shape[d];
  return n;
}
