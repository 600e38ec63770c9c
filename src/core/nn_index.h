/* The index-and-losses family's internal interface: the arguments of the fused cross-entropy entries (backend
 * table) and the front-ends' shared helper. */
#ifndef FL_NN_INDEX_H
#define FL_NN_INDEX_H

#include "flame.h"

/* Rows r of logits [R, C] (contiguous, a float dtype) against a target that is either [R] class indices (i64 or
 * i32, stored as base + class, any stride) or [R, C] probabilities (logits' dtype, contiguous). With q the target
 * distribution (one-hot of the class, or the probabilities), smoothed as q' = (1 - smoothing) q + smoothing / C,
 * and w the class weights (all 1 without weight):
 *   loss[r] = -sum_c w_c q'_c log_softmax(x_r)_c = lse_r * S_r - sum_c w_c q'_c x_c,  S_r = sum_c w_c q'_c,
 *   dx[r, c] = g[r] * (S_r softmax(x_r)_c - w_c q'_c).
 * A class-index row whose stored target equals ignore_index (when has_ignore) gets loss 0, weight 0 and a zero
 * gradient; another target outside [base, base + C) is FL_EINDEX (at the next sync on CUDA).
 * loss, lse and rw are [R] contiguous in the accumulation dtype (f32; f64 for f64 logits): the row's loss, its
 * logsumexp (saved for the backward) and its weight in PyTorch's "mean" (w[target], 0 when ignored; 1 for
 * probability targets). g is [R] of that dtype, dx [R, C] contiguous of logits' dtype. */
typedef struct fl_ce_args {
  const fl_tensor *logits, *target, *weight; /* weight: NULL or [C] contiguous, logits' dtype */
  int64_t base, ignore_index;
  bool has_ignore;
  double smoothing;
  fl_tensor *loss, *lse, *rw;
} fl_ce_args;

/* A new tensor of the given shape: zeros, plus src's slices along dim added at the rows idx names (1-D, stored as
 * base + row), in index order: the backward of index_select and embedding, through the index_add_fresh entry. */
fl_status fl_index_add_new(int ndim, const int64_t *shape, int dim, const fl_tensor *idx, int64_t base,
                           const fl_tensor *src, fl_tensor **out);

#endif
