/* The one dispatch step every op front-end takes: find the backend of the
 * output's device, check that it has the entry and that it accepts these
 * tensors, and otherwise fail before any work with a message naming the op,
 * the device and the dtype. */
#include "context.h"
#include <stdio.h>

static bool has_entry(const fl_backend *b, fl_op_kind k) {
  switch (k) {
    case FL_OP_COPY: return b->copy != NULL;
    case FL_OP_FILL: return b->fill != NULL;
    case FL_OP_ARANGE: return b->arange != NULL;
    case FL_OP_RANDOM: return b->random != NULL;
    case FL_OP_UNARY: return b->unary != NULL;
    case FL_OP_BINARY: return b->binary != NULL;
    case FL_OP_BINARY_SCALAR: return b->binary_scalar != NULL;
    case FL_OP_WHERE: return b->where != NULL;
    case FL_OP_REDUCE: return b->reduce != NULL;
    case FL_OP_CUMSUM: return b->cumsum != NULL;
    case FL_OP_SOFTMAX: return b->softmax != NULL;
    case FL_OP_GEMM: return b->gemm != NULL;
    case FL_OP_INDEX_SELECT: return b->index_select != NULL;
    case FL_OP_INDEX_ADD: return b->index_add != NULL;
    case FL_OP_GATHER: return b->gather != NULL;
    case FL_OP_SCATTER_ADD: return b->scatter_add != NULL;
    case FL_OP_SORT: return b->sort != NULL;
    /* -- norms -- */
    case FL_OP_NORM_FORWARD: return b->norm_forward != NULL;
    case FL_OP_NORM_BACKWARD: return b->norm_backward != NULL;
    case FL_OP_NORM_SILU_FORWARD: return b->norm_silu_forward != NULL;

    /* -- convolution -- */
    case FL_OP_CONV_DIRECT: return b->conv_direct != NULL;
    case FL_OP_IM2COL: return b->im2col != NULL;
    case FL_OP_COL2IM: return b->col2im != NULL;

    /* -- index and losses -- */
    case FL_OP_INDEX_ADD_FRESH: return b->index_add_fresh != NULL;
    case FL_OP_CROSS_ENTROPY: return b->cross_entropy != NULL;
    case FL_OP_CROSS_ENTROPY_BACKWARD: return b->cross_entropy_backward != NULL;

    /* -- pooling, resizing, padding -- */
    case FL_OP_POOL: return b->pool != NULL;
    case FL_OP_POOL_BACKWARD: return b->pool_backward != NULL;
    case FL_OP_INTERP: return b->interp != NULL;
    case FL_OP_INTERP_BACKWARD: return b->interp_backward != NULL;
    case FL_OP_PAD: return b->pad != NULL;
    case FL_OP_PAD_BACKWARD: return b->pad_backward != NULL;

    /* -- dropout and attention -- */
    case FL_OP_DROPOUT: return b->dropout != NULL;
    case FL_OP_SOFTMAX_BACKWARD: return b->softmax_backward != NULL;
    case FL_OP_MASKED_SOFTMAX: return b->masked_softmax != NULL;

    /* -- issue 8: optimizers -- */
    case FL_OP_OPTIM_STEP: return b->optim_step != NULL;
    case FL_OP_MULTI_NORM: return b->multi_norm != NULL;
    case FL_OP_MULTI_CLIP: return b->multi_clip != NULL;
    case FL_OP_MULTI_LERP: return b->multi_lerp != NULL;
    case FL_OP_MULTI_COPY: return b->multi_copy != NULL;

    /* -- issue 10: fused attention -- */
    case FL_OP_FLASH_ATTENTION: return b->flash_attention != NULL && b->flash_attention_backward != NULL;

    default: return false;
  }
}

/* The tensor the message describes: the first input (its dtype is what the
 * backend lacks a kernel for), else the output. */
static fl_status not_implemented(const char *op, int n, const fl_tensor *const *ts) {
  const fl_tensor *t = n > 1 && ts[1] ? ts[1] : ts[0];
  fl_desc d = fl_describe(t);
  char dn[32];
  fl_device_name(ts[0]->storage->device, dn, sizeof dn);
  return fl_error(FL_EUNSUPPORTED, "%s: not implemented on %s for %s (input %s)", op, dn, fl_dtype_name(t->dtype), d.s);
}

/* For optional fast paths (conv_direct): true when the device's backend has
 * the entry and accepts these tensors; no error is set either way. */
bool fl_op_supported(fl_op_kind kind, int sub, int n, const fl_tensor *const *ts, const fl_backend **out) {
  const fl_backend *b = fl_backend_for(ts[0]->storage->device.type);
  if (!b || !has_entry(b, kind)) return false;
  if (b->supports) {
    fl_op_query q = {kind, sub, n, ts};
    if (!b->supports(&q)) return false;
  }
  *out = b;
  return true;
}

fl_status fl_dispatch(const char *op, fl_op_kind kind, int sub, int n, const fl_tensor *const *ts,
                      const fl_backend **out) {
  const fl_backend *b;
  int stop = fl_context_stop_reason(fl_ctx()); /* an interrupt or a passed budget stops the next op */
  if (stop) return fl_error_context(fl_stop_error(stop), op);
  FL_TRY(fl_backend_of(op, ts[0], &b));
  if (!has_entry(b, kind)) return not_implemented(op, n, ts);
  if (b->supports) {
    fl_op_query q = {kind, sub, n, ts};
    if (!b->supports(&q)) return not_implemented(op, n, ts);
  }
  *out = b;
  fl_profile_tick(op, ts[0]->storage->device);
  return FL_OK;
}

/* Folds the transposes into stack headers: op(a) as [B,M,K], op(b) as [B,K,N]. */
static void transposed_view(const fl_tensor *t, bool trans, fl_tensor *v) {
  fl_header_init(v, t);
  if (!trans) return;
  v->shape[1] = t->shape[2], v->shape[2] = t->shape[1];
  v->stride[1] = t->stride[2], v->stride[2] = t->stride[1];
}

void fl_gemm_operands(const fl_gemm *g, fl_tensor *a, fl_tensor *b) {
  transposed_view(g->a, g->trans_a, a);
  transposed_view(g->b, g->trans_b, b);
}
