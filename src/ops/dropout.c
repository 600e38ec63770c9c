/* Dropout from the counter-based Philox: the mask is a pure function of (seed,
 * offset, element index) (core/dropout_keep.h), so it is the same on every
 * device and is never stored: the backward applies the same kernel to the
 * upstream gradient, dx = dy * keep / (1 - p). Two rules share this op:
 * F.dropout's word rule and the attention-dropout byte rule (the reference
 * attention's mask, which the fused attention kernels regenerate). */
#include "internal.h"

typedef struct {
  double p;
  fl_dropout_rule rule;
  uint64_t seed, offset;
} dropout_ctx;

static const char *rule_name(fl_dropout_rule r) { return r == FL_DROPOUT_BYTE ? "attention_dropout" : "dropout"; }

static fl_status check_p(fl_dropout_rule r, double p) {
  if (p >= 0.0 && p <= 1.0) return FL_OK; /* also refuses NaN */
  return fl_error(FL_EINVAL, "%s: p must be in [0, 1], got %g", rule_name(r), p);
}

static fl_status dropout_rule(const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed, uint64_t offset,
                              fl_tensor **out);

static fl_status dropout_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const dropout_ctx *c = n->ctx;
  return dropout_rule(gout[0], c->p, c->rule, c->seed, c->offset, &gin[0]);
}

/* The mask of (rule, seed, offset) applied to x, with its node. */
static fl_status dropout_rule(const fl_tensor *x, double p, fl_dropout_rule rule, uint64_t seed, uint64_t offset,
                              fl_tensor **out) {
  const char *name = rule_name(rule);
  FL_TRY(check_p(rule, p));
  if (!fl_dtype_is_float(x->dtype)) {
    fl_desc d = fl_describe(x);
    return fl_error(FL_EDTYPE, "%s: expected a floating-point tensor, got %s", name, d.s);
  }
  fl_tensor *xc = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(x, &xc)); /* the element index is the row-major one, whatever x's strides */
  FL_CHECK(fl_tensor_new(xc->dtype, xc->storage->device, xc->ndim, xc->shape, &r));
  if (fl_numel(r)) {
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_DROPOUT, 0, 2, (const fl_tensor *const[]){r, xc}, &be));
    FL_CHECK(fl_error_context(be->dropout(r, xc, p, rule, seed, offset), name));
  }
  fl_node *n;
  const fl_tensor *in = xc;
  FL_CHECK(fl_record("NativeDropoutBackward", dropout_backward, 1, &in, r, &n));
  if (n) {
    dropout_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->p = p, c->rule = rule, c->seed = seed, c->offset = offset;
  }
  *out = r;
  r = NULL;
done:
  fl_release(xc), fl_release(r);
  return st;
}

fl_status fl_dropout_seeded(const fl_tensor *x, double p, uint64_t seed, uint64_t offset, fl_tensor **out) {
  return dropout_rule(x, p, FL_DROPOUT_WORD, seed, offset, out);
}

/* Either rule with the global generator: one reservation of the blocks the mask uses. */
static fl_status dropout_global(const fl_tensor *x, double p, bool training, fl_dropout_rule rule, fl_tensor **out) {
  FL_TRY(check_p(rule, p));
  if (!training || p == 0.0) { /* the identity: x itself, no kernel */
    *out = fl_retain((fl_tensor *)x);
    return FL_OK;
  }
  uint64_t seed, offset;
  fl_rng_next(fl_dropout_blocks(rule, (uint64_t)fl_numel(x)), &seed, &offset);
  return dropout_rule(x, p, rule, seed, offset, out);
}

fl_status fl_dropout(const fl_tensor *x, double p, bool training, fl_tensor **out) {
  return dropout_global(x, p, training, FL_DROPOUT_WORD, out);
}

fl_status fl_attention_dropout(const fl_tensor *x, double p, fl_tensor **out) {
  return dropout_global(x, p, true, FL_DROPOUT_BYTE, out);
}
