/* Helpers for backward functions that need more than the ops themselves. */
#include "internal.h"

fl_status fl_output_zeros(const fl_node *n, int k, fl_tensor **out) {
  const fl_node_out *o = &n->out[k];
  if (k < 0 || k >= n->n_out || !o->differentiable)
    return fl_error(FL_EAUTOGRAD, "%s: output %d has no gradient to stand in for", n->name, k);
  fl_opts opts = {o->dtype, o->device, false};
  return fl_zeros(o->ndim, o->shape, opts, out);
}

fl_status fl_scatter_grad(fl_node *n, const fl_tensor *g, int dim, int64_t base, fl_tensor **out) {
  fl_tensor *idx, *z = NULL;
  fl_status st = FL_OK;
  fl_opts o = {g->dtype, g->storage->device, false};
  FL_CHECK(fl_node_saved(n, 0, &idx));
  FL_CHECK(fl_zeros(n->in[0].ndim, n->in[0].shape, o, &z));
  /* straight into the zeros (scatter_add_ex would clone them first); deterministic on CUDA */
  const fl_backend *be;
  FL_CHECK(fl_dispatch("scatter_add", FL_OP_SCATTER_ADD, 0, 3, (const fl_tensor *const[]){z, g, idx}, &be));
  FL_CHECK(fl_error_context(be->scatter_add(z, dim, idx, g, base), "scatter_add"));
  *out = z;
  z = NULL;
done:
  fl_release(z);
  return st;
}
