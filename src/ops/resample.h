/* What the pooling, interpolation and padding front-ends share (ops/pool.c,
 * resize.c, pad.c): the [planes, D, H, W] view of an input and the one
 * backward step of their gather kernels. */
#ifndef FL_OPS_RESAMPLE_H
#define FL_OPS_RESAMPLE_H
#include "internal.h"

/* The leading dims of x (all but the last nsp) as planes, and the last nsp as
 * in[3] with leading 1s. */
void fl_resample_view(const fl_tensor *x, int nsp, int64_t *planes, int64_t *in);
/* out's shape: x's leading dims, then the last nsp of sp[3]. */
int fl_resample_shape(const fl_tensor *x, int nsp, const int64_t *sp, int64_t *shape);
/* Runs kind's forward entry (POOL, INTERP or PAD) into a new contiguous out
 * of shape (and idx, for max pooling) from x contiguous. */
fl_status fl_resample_run(const char *op, fl_op_kind kind, const void *geom, const fl_tensor *x, int ndim,
                          const int64_t *shape, fl_tensor **out, fl_tensor *idx);
/* Records the node of r = op(x) with a copy of the geometry (size bytes) as its context; *node NULL when
 * nothing needs a gradient. */
fl_status fl_resample_record(const char *name, fl_backward_fn bw, const fl_tensor *x, fl_tensor *r,
                             const void *geom, size_t size, fl_node **node);
/* The backward step of all three: dx of input 0's shape, each element
 * gathered from gout by kind's backward entry (idx: max pooling's argmax). */
fl_status fl_resample_grad(const char *op, fl_op_kind kind, fl_node *n, const fl_tensor *gout, const void *geom,
                           const fl_tensor *idx, fl_tensor **dx);
#endif
