/* The attention family's masked softmax: softmax over the last dim of the
 * scores s [..., Sq, Sk] restricted to the allowed keys (a bool mask broadcast
 * to s, true = attend, and/or the causal rule key j <= query i + shift), in one
 * kernel instead of masked_fill + softmax + the fully-masked-row fix-ups.
 * Disallowed keys get probability 0; a row with no allowed finite score gets 0
 * everywhere (so its gradient is 0 too). The backward is softmax's (the
 * fused softmax_backward entry): y = 0 wherever a key was masked. */
#include "internal.h"
#include <string.h>

static fl_status masked_softmax_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_tensor *y;
  FL_TRY(fl_node_saved(n, 0, &y));
  return fl_softmax_backward(gout[0], y, y->ndim - 1, false, &gin[0]);
}

static fl_status check_masked_softmax(const fl_tensor *s, const fl_tensor *mask) {
  const char *op = "masked_softmax";
  if (!fl_dtype_is_float(s->dtype) || s->ndim < 2) {
    fl_desc d = fl_describe(s);
    return fl_error(FL_EDTYPE, "%s: expected floating-point scores [..., seq_q, seq_k], got %s", op, d.s);
  }
  if (!mask) return FL_OK;
  FL_TRY(fl_check_same_device(op, s, mask));
  int nb;
  int64_t shape[FL_MAX_DIMS];
  fl_status st = mask->dtype == FL_BOOL ? fl_broadcast_shapes(op, s->ndim, s->shape, mask->ndim, mask->shape, &nb, shape)
                                        : FL_EDTYPE;
  if (st == FL_OK && nb == s->ndim && !memcmp(shape, s->shape, sizeof(int64_t) * nb)) return FL_OK;
  return fl_error(st == FL_EDTYPE ? FL_EDTYPE : FL_ESHAPE, "%s: the mask must be bool and broadcast to the scores %s, got %s",
                  op, fl_describe(s).s, fl_describe(mask).s);
}

fl_status fl_masked_softmax(const fl_tensor *s, const fl_tensor *mask, bool causal, int64_t shift, fl_tensor **out) {
  FL_TRY(check_masked_softmax(s, mask));
  /* Only whether key j <= query i + shift matters, for i < seq_q and j < seq_k: a shift past seq_k means what seq_k
   * does, one below -seq_q what -seq_q does. Clamped here, so that neither backend's i + shift overflows for the
   * extreme integers a script may pass (the fuzzer's math.maxinteger did). */
  int64_t sq = s->shape[s->ndim - 2], sk = s->shape[s->ndim - 1];
  if (shift > sk) shift = sk;
  if (shift < -sq) shift = -sq;
  fl_tensor *sc = NULL, *r = NULL, m;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(s, &sc));
  FL_CHECK(fl_tensor_new(sc->dtype, sc->storage->device, sc->ndim, sc->shape, &r));
  if (mask) fl_expand_header(mask, sc->ndim, sc->shape, &m); /* stride 0 where broadcast: no copy */
  if (fl_numel(r)) {
    const fl_backend *be;
    const fl_tensor *ts[3] = {r, sc, mask ? &m : NULL};
    FL_CHECK(fl_dispatch("masked_softmax", FL_OP_MASKED_SOFTMAX, 0, 3, ts, &be));
    FL_CHECK(fl_error_context(be->masked_softmax(r, sc, mask ? &m : NULL, causal, shift), "masked_softmax"));
  }
  fl_node *n;
  const fl_tensor *in = sc;
  FL_CHECK(fl_record("MaskedSoftmaxBackward", masked_softmax_backward, 1, &in, r, &n));
  if (n) FL_CHECK(fl_node_save(n, r));
  *out = r;
  r = NULL;
done:
  fl_release(sc), fl_release(r);
  return st;
}
