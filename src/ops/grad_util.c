/* Helpers for backward functions that need more than the ops themselves. */
#include "internal.h"

fl_status fl_output_zeros(const fl_node *n, int k, fl_tensor **out) {
  const fl_node_out *o = &n->out[k];
  if (k < 0 || k >= n->n_out || !o->differentiable)
    return fl_error(FL_EAUTOGRAD, "%s: output %d has no gradient to stand in for", n->name, k);
  fl_opts opts = {o->dtype, o->device, false};
  return fl_zeros(o->ndim, o->shape, opts, out);
}
