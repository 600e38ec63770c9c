/* Fused attention: the front-end of the flash_attention entries (docs/architecture.md, "Flash attention").
 * It checks shapes, dtypes and devices, brings q/k/v to a layout the kernels read (last dim contiguous, other
 * strides multiples of 8 elements, 16-byte aligned data; else a differentiable copy), reserves the dropout
 * counters exactly as the reference attention does (so both draw the same mask), and records one node that saves
 * q, k, v, out and the f32 row logsumexp (plus cu_seqlens): the backward recomputes the probabilities from them.
 * The backward is not itself differentiable. */
#include "internal.h"

typedef struct {
  double scale, p;
  bool causal, bottom_right, varlen;
  uint64_t seed, offset;
  int64_t max_q, max_k;
} flash_ctx;

static const char *op_name(bool varlen) { return varlen ? "flash_attention_varlen" : "scaled_dot_product_attention"; }

/* The kernels' layout: unit last stride, the others multiples of 8, data 16-byte aligned. */
static bool kernel_layout(const fl_tensor *t) {
  if (t->ndim < 1 || t->stride[t->ndim - 1] != 1) return false;
  for (int d = 0; d < t->ndim - 1; d++)
    if (t->stride[d] % 8 != 0) return false;
  return ((uintptr_t)fl_data_ptr(t)) % 16 == 0;
}

static fl_status kernel_input(const fl_tensor *t, fl_tensor **out) {
  if (kernel_layout(t)) {
    *out = fl_retain((fl_tensor *)t);
    return FL_OK;
  }
  return fl_clone(t, out); /* a new, aligned, contiguous tensor; the clone's node carries the gradient back */
}

bool fl_flash_attention_supported(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v) {
  if (!q || !k || !v || q->ndim < 3 || k->ndim != q->ndim || v->ndim != q->ndim) return false;
  if (!fl_device_eq(q->storage->device, k->storage->device) || !fl_device_eq(q->storage->device, v->storage->device))
    return false;
  const fl_backend *be;
  return fl_op_supported(FL_OP_FLASH_ATTENTION, 0, 4, (const fl_tensor *const[]){q, q, k, v}, &be) &&
         be->flash_attention && be->flash_attention_backward;
}

const char *fl_flash_attention_forward_kernel(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v) {
  if (!fl_flash_attention_supported(q, k, v)) return NULL;
  const fl_backend *be = fl_backend_for(q->storage->device.type);
  const char *name = be && be->flash_attention_forward_kernel ? be->flash_attention_forward_kernel(q) : NULL;
  return name ? name : "fused";
}

static fl_status flash_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const flash_ctx *c = n->ctx;
  const char *op = op_name(c->varlen);
  fl_tensor *q, *k, *v, *o, *lse, *cu_q = NULL, *cu_k = NULL;
  fl_tensor *dout = NULL, *dsum = NULL, *dq_acc = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &q));
  FL_CHECK(fl_node_saved(n, 1, &k));
  FL_CHECK(fl_node_saved(n, 2, &v));
  FL_CHECK(fl_node_saved(n, 3, &o));
  FL_CHECK(fl_node_saved(n, 4, &lse));
  if (c->varlen) {
    FL_CHECK(fl_node_saved(n, 5, &cu_q));
    FL_CHECK(fl_node_saved(n, 6, &cu_k));
  }
  if (gout[0]->dtype != o->dtype) FL_CHECK(fl_cast(gout[0], o->dtype, &dout)); /* a hook's gradient of another dtype */
  else FL_CHECK(fl_contiguous(gout[0], &dout));
  if (!fl_is_contiguous(dout) || !kernel_layout(dout)) { /* fl_cast may keep strides; the kernel reads 16 bytes */
    fl_tensor *t;
    FL_CHECK(fl_clone(dout, &t));
    fl_release(dout);
    dout = t;
  }
  fl_device dev = q->storage->device;
  FL_CHECK(fl_tensor_new(FL_F32, dev, lse->ndim, lse->shape, &dsum));
  FL_CHECK(fl_tensor_new(FL_F32, dev, q->ndim, q->shape, &dq_acc));
  FL_CHECK(fl_tensor_new(k->dtype, dev, k->ndim, k->shape, &dk));
  FL_CHECK(fl_tensor_new(v->dtype, dev, v->ndim, v->shape, &dv));
  const fl_backend *be;
  FL_CHECK(fl_dispatch(op, FL_OP_FLASH_ATTENTION, 0, 4, (const fl_tensor *const[]){o, q, k, v}, &be));
  if (!be->flash_attention_backward) {
    st = fl_error(FL_EBACKEND, "%s: the backend has no fused attention backward", op);
    goto done;
  }
  fl_flash_args a = {.q = q, .k = k, .v = v, .cu_q = cu_q, .cu_k = cu_k, .max_q = c->max_q, .max_k = c->max_k,
                     .scale = c->scale, .p = c->p, .causal = c->causal, .bottom_right = c->bottom_right,
                     .seed = c->seed, .offset = c->offset, .out = o, .lse = lse, .dout = dout, .dsum = dsum,
                     .dq_acc = dq_acc, .dk = dk, .dv = dv};
  FL_CHECK(fl_error_context(be->flash_attention_backward(&a), "FlashAttentionBackward"));
  FL_CHECK(fl_cast(dq_acc, q->dtype, &dq));
  fl_tensor *g[3] = {dq, dk, dv};
  for (int i = 0; i < 3; i++) {
    if (n->in[i].node) gin[i] = g[i];
    else fl_release(g[i]);
  }
  dq = dk = dv = NULL;
done:
  fl_release(dout), fl_release(dsum), fl_release(dq_acc), fl_release(dq), fl_release(dk), fl_release(dv);
  return st;
}

/* Shapes, dtypes and devices; *nseq and the extents the dropout index uses. */
static fl_status check_args(const char *op, const fl_tensor *q, const fl_tensor *k, const fl_tensor *v,
                            const fl_tensor *cu_q, const fl_tensor *cu_k, int64_t max_q, int64_t max_k,
                            int64_t *nseq) {
  bool varlen = cu_q != NULL;
  int nd = varlen ? 3 : 4, hd = 1; /* the heads dim: [B, H, S, D] and [T, H, D] alike */
  if (q->ndim != nd || k->ndim != nd || v->ndim != nd)
    return fl_error(FL_ESHAPE, "%s: q, k and v must be %s, got q %s, k %s, v %s", op,
                    varlen ? "3-D [total_tokens, heads, head_dim]" : "4-D [batch, heads, seq, head_dim]", fl_describe(q).s, fl_describe(k).s,
                    fl_describe(v).s);
  FL_TRY(fl_check_same_device(op, q, k));
  FL_TRY(fl_check_same_device(op, q, v));
  if (k->dtype != q->dtype || v->dtype != q->dtype)
    return fl_error(FL_EDTYPE, "%s: q, k and v must have one dtype, got q %s, k %s, v %s", op, fl_describe(q).s, fl_describe(k).s, fl_describe(v).s);
  if (k->shape[nd - 1] != q->shape[nd - 1] || v->shape[nd - 1] != q->shape[nd - 1])
    return fl_error(FL_ESHAPE, "%s: q, k and v must have one head_dim (dim %lld), got q %s, k %s, v %s", op,
                    (long long)fl_mdim(nd - 1), fl_describe(q).s, fl_describe(k).s, fl_describe(v).s);
  for (int d = 0; d < nd - 1; d++)
    if (v->shape[d] != k->shape[d])
      return fl_error(FL_ESHAPE, "%s: k and v must have one shape, got k %s and v %s", op, fl_describe(k).s, fl_describe(v).s);
  if (!varlen && k->shape[0] != q->shape[0])
    return fl_error(FL_ESHAPE, "%s: q and k must have one batch size (dim %lld), got q %s and k %s", op,
                    (long long)fl_mdim(0), fl_describe(q).s, fl_describe(k).s);
  if (k->shape[hd] == 0 || q->shape[hd] % k->shape[hd] != 0)
    return fl_error(FL_ESHAPE,
                    "%s: the k/v heads (%lld) must divide the q heads (%lld) (dim %lld) for grouped-query attention",
                    op, (long long)k->shape[hd], (long long)q->shape[hd], (long long)fl_mdim(hd));
  if (!varlen) {
    *nseq = q->shape[0];
    return FL_OK;
  }
  if (!cu_k) return fl_error(FL_EINVAL, "%s: cu_seqlens_q and cu_seqlens_k must both be given", op);
  const fl_tensor *cus[2] = {cu_q, cu_k};
  const char *names[2] = {"cu_seqlens_q", "cu_seqlens_k"};
  for (int i = 0; i < 2; i++) {
    fl_desc dc = fl_describe(cus[i]);
    if (cus[i]->dtype != FL_I32 || cus[i]->ndim != 1 || cus[i]->shape[0] < 1)
      return fl_error(FL_EDTYPE, "%s: %s must be an i32 tensor [batch + 1], got %s", op, names[i], dc.s);
    if (!fl_device_eq(cus[i]->storage->device, q->storage->device))
      return fl_error(FL_EDEVICE, "%s: %s must be on q's device, got %s and q %s", op, names[i], dc.s, fl_describe(q).s);
  }
  if (cu_k->shape[0] != cu_q->shape[0])
    return fl_error(FL_ESHAPE, "%s: cu_seqlens_q and cu_seqlens_k must have one length, got %lld and %lld", op,
                    (long long)cu_q->shape[0], (long long)cu_k->shape[0]);
  if (max_q < 0 || max_k < 0 || max_q > INT32_MAX || max_k > INT32_MAX)
    return fl_error(FL_EINVAL, "%s: max_seqlen_q and max_seqlen_k must be in [0, 2^31), got %lld and %lld", op,
                    (long long)max_q, (long long)max_k);
  *nseq = cu_q->shape[0] - 1;
  return FL_OK;
}

/* The generator's counters for the dropout mask: one reservation of the byte rule's ceil(count / 16) blocks, as
 * fl_attention_dropout over the reference's probabilities [B, Hq, Sq, Sk] (varlen: [nseq, Hq, max_q, max_k]). */
static fl_status reserve_dropout(const char *op, int64_t nseq, int64_t hq, int64_t sq, int64_t sk, uint64_t *seed,
                                 uint64_t *offset) {
  int64_t n;
  if (fl_mul_overflows(nseq, hq, &n) || fl_mul_overflows(n, sq, &n) || fl_mul_overflows(n, sk, &n))
    return fl_error(FL_ESHAPE, "%s: the dropout mask of %lld x %lld x %lld x %lld elements overflows", op,
                    (long long)nseq, (long long)hq, (long long)sq, (long long)sk);
  *seed = *offset = 0;
  if (n > 0) fl_rng_next(fl_dropout_blocks(FL_DROPOUT_BYTE, (uint64_t)n), seed, offset);
  return FL_OK;
}

fl_status fl_flash_attention(const fl_tensor *q, const fl_tensor *k, const fl_tensor *v, const fl_tensor *cu_q,
                             const fl_tensor *cu_k, int64_t max_q, int64_t max_k, double scale, int causal, double p,
                             fl_tensor **out) {
  bool varlen = cu_q != NULL;
  const char *op = op_name(varlen);
  int64_t nseq = 0;
  FL_TRY(check_args(op, q, k, v, cu_q, cu_k, max_q, max_k, &nseq));
  if (!(p >= 0.0 && p <= 1.0)) return fl_error(FL_EINVAL, "%s: dropout_p must be in [0, 1], got %g", op, p);
  if (causal < 0 || causal > 2) return fl_error(FL_EINVAL, "%s: causal must be 0, 1 or 2, got %d", op, causal);
  if (!fl_flash_attention_supported(q, k, v)) {
    fl_desc dq = fl_describe(q);
    return fl_error(FL_EBACKEND, "%s: no fused attention for q %s (CUDA, bf16 or f16, head_dim 32, 64, 96 or 128)",
                    op, dq.s);
  }
  fl_tensor *qc = NULL, *kc = NULL, *vc = NULL, *o = NULL, *lse = NULL;
  fl_status st = FL_OK;
  FL_CHECK(kernel_input(q, &qc));
  FL_CHECK(kernel_input(k, &kc));
  FL_CHECK(kernel_input(v, &vc));
  fl_device dev = q->storage->device;
  int64_t lse_shape[3] = {q->shape[0], q->shape[1], varlen ? 0 : q->shape[2]};
  FL_CHECK(fl_tensor_new(q->dtype, dev, q->ndim, q->shape, &o));
  FL_CHECK(fl_tensor_new(FL_F32, dev, varlen ? 2 : 3, lse_shape, &lse));
  int64_t sq = varlen ? max_q : q->shape[2], sk = varlen ? max_k : k->shape[2];
  uint64_t seed = 0, offset = 0;
  if (p > 0) FL_CHECK(reserve_dropout(op, nseq, q->shape[1], sq, sk, &seed, &offset));
  const fl_backend *be;
  FL_CHECK(fl_dispatch(op, FL_OP_FLASH_ATTENTION, 0, 4, (const fl_tensor *const[]){o, qc, kc, vc}, &be));
  fl_flash_args a = {.q = qc, .k = kc, .v = vc, .cu_q = cu_q, .cu_k = varlen ? cu_k : NULL, .max_q = max_q,
                     .max_k = max_k, .scale = scale, .p = p, .causal = causal != 0, .bottom_right = causal == 2,
                     .seed = seed, .offset = offset, .out = o, .lse = lse};
  FL_CHECK(fl_error_context(be->flash_attention(&a), op));
  fl_node *n;
  FL_CHECK(fl_record("FlashAttentionBackward", flash_backward, 3, (const fl_tensor *const[]){qc, kc, vc}, o, &n));
  if (n) {
    flash_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    *c = (flash_ctx){scale, p, causal != 0, causal == 2, varlen, seed, offset, max_q, max_k};
    FL_CHECK(fl_node_save(n, qc));
    FL_CHECK(fl_node_save(n, kc));
    FL_CHECK(fl_node_save(n, vc));
    FL_CHECK(fl_node_save(n, o));
    FL_CHECK(fl_node_save(n, lse));
    if (varlen) {
      FL_CHECK(fl_node_save(n, cu_q));
      FL_CHECK(fl_node_save(n, cu_k));
    }
  }
  *out = o;
  o = NULL;
done:
  fl_release(qc), fl_release(kc), fl_release(vc), fl_release(o), fl_release(lse);
  return st;
}
