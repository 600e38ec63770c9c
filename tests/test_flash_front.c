/* The fused attention's front-end (src/ops/flash_attention.c) and its dispatch, checked without a GPU: a stand-in
 * CPU table adds flash_attention entries that record the arguments they get and write known values (2 into dq_acc,
 * 3 into dk, 4 into dv), so the test sees what reaches the backend (shapes, layouts, scratch, the dropout counters)
 * and how the gradients come back through autograd. The kernels themselves are checked by
 * spec/flash_attention_spec.lua on a GPU. */
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;
static void check(bool ok, const char *what) {
  printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) printf("     (last error: %s)\n", fl_last_error());
  if (!ok) failures++;
}

static const fl_backend *cpu;
static fl_flash_args fwd_args, bwd_args;
static int n_fwd, n_bwd;
static int64_t lse_shape[3], lse_ndim, dq_shape[4], dsum_ndim;
static fl_dtype dq_dtype, dk_dtype;
/* What the checks read of tensors the op frees before it returns (scratch, copies): taken during the call. */
static fl_dtype lse_dtype;
static bool fwd_q_contiguous, bwd_dout_contiguous;
static const void *bwd_cu_q_data;

static bool stand_in_supports(const fl_op_query *q) {
  if (q->kind == FL_OP_FLASH_ATTENTION) return q->ts[1]->dtype == FL_BF16;
  return cpu->supports ? cpu->supports(q) : true;
}

static fl_status stand_in_forward(const fl_flash_args *a) {
  fwd_args = *a, n_fwd++;
  lse_ndim = a->lse->ndim, lse_dtype = a->lse->dtype, fwd_q_contiguous = fl_is_contiguous(a->q);
  memcpy(lse_shape, a->lse->shape, sizeof(int64_t) * (size_t)a->lse->ndim);
  FL_TRY(cpu->fill(a->out, 0.5));
  return cpu->fill(a->lse, 0.0);
}

static fl_status stand_in_backward(const fl_flash_args *a) {
  bwd_args = *a, n_bwd++;
  dq_dtype = a->dq_acc->dtype, dk_dtype = a->dk->dtype, dsum_ndim = a->dsum->ndim;
  bwd_dout_contiguous = a->dout && fl_is_contiguous(a->dout), bwd_cu_q_data = a->cu_q ? fl_data_ptr(a->cu_q) : NULL;
  memcpy(dq_shape, a->dq_acc->shape, sizeof(int64_t) * (size_t)a->dq_acc->ndim);
  FL_TRY(cpu->fill(a->dq_acc, 2.0));
  FL_TRY(cpu->fill(a->dk, 3.0));
  return cpu->fill(a->dv, 4.0);
}

/* Every element of t equals v. */
static bool all_equal(const fl_tensor *t, double v) {
  int64_t n = fl_numel(t);
  double buf[4096];
  if (n > 4096 || fl_to_doubles(t, buf) != FL_OK) return false;
  for (int64_t i = 0; i < n; i++)
    if (buf[i] != v) return false;
  return true;
}

static fl_tensor *make(int nd, const int64_t *shape, fl_dtype dt, bool grad) {
  fl_opts o = fl_default_opts();
  o.dtype = dt;
  fl_tensor *t = NULL;
  if (fl_randn(nd, shape, o, &t) != FL_OK) return NULL;
  if (grad) fl_set_requires_grad(t, true);
  return t;
}

static uint64_t rng_offset(void) {
  uint64_t s, o;
  fl_philox_reserve(0, &s, &o);
  return o;
}

static void dense_case(void) {
  int64_t qs[4] = {2, 4, 5, 64}, ks[4] = {2, 2, 7, 64};
  fl_tensor *q = make(4, qs, FL_BF16, true), *k = make(4, ks, FL_BF16, true), *v = make(4, ks, FL_BF16, true);
  fl_tensor *f = make(4, qs, FL_F32, false), *out = NULL, *g = NULL;
  check(fl_flash_attention_supported(q, k, v), "supported for bf16 where the backend says so");
  check(!fl_flash_attention_supported(f, f, f), "not for f32, which the backend declines");
  uint64_t before = rng_offset();
  check(fl_flash_attention(q, k, v, NULL, NULL, 0, 0, 0.125, 2, 0.25, &out) == FL_OK && n_fwd == 1,
        "the forward reaches the entry once");
  check(fwd_args.q == q && fwd_args.k == k && fwd_args.v == v, "contiguous q, k, v are passed as they are");
  check(fwd_args.causal && fwd_args.bottom_right && fwd_args.scale == 0.125 && fwd_args.p == 0.25 && !fwd_args.cu_q,
        "causal 2 is bottom-right; scale and p passed");
  check(fwd_args.offset == before && rng_offset() == before + (2 * 4 * 5 * 7 + 15) / 16,
        "dropout reserves ceil(B Hq Sq Sk / 16) counters (the byte rule's), the reference's");
  check(lse_ndim == 3 && lse_shape[0] == 2 && lse_shape[1] == 4 && lse_shape[2] == 5 && lse_dtype == FL_F32,
        "lse is f32 [B, Hq, Sq]");
  check(out && fl_same_shape(out, q) && out->dtype == FL_BF16 && all_equal(out, 0.5), "out is q's shape and dtype");
  fl_opts o = fl_default_opts();
  o.dtype = FL_BF16;
  check(fl_ones(4, qs, o, &g) == FL_OK && fl_backward(out, g, false) == FL_OK && n_bwd == 1,
        "the backward reaches the entry once");
  check(bwd_args.seed == fwd_args.seed && bwd_args.offset == fwd_args.offset && bwd_args.p == 0.25 &&
            bwd_args.bottom_right && bwd_args.out && bwd_args.lse && bwd_args.dout && bwd_dout_contiguous,
        "the backward gets the forward's counters, out, lse and a contiguous dout");
  check(dq_dtype == FL_F32 && !memcmp(dq_shape, qs, sizeof qs) && dsum_ndim == 3 && dk_dtype == FL_BF16,
        "dq_acc is f32 of q's shape, dsum lse's, dk k's dtype");
  check(fl_grad(q) && fl_grad(q)->dtype == FL_BF16 && all_equal(fl_grad(q), 2.0), "q.grad is dq_acc cast to q's dtype");
  check(fl_grad(k) && fl_same_shape(fl_grad(k), k) && all_equal(fl_grad(k), 3.0), "k.grad is dk");
  check(fl_grad(v) && all_equal(fl_grad(v), 4.0), "v.grad is dv");
  fl_release(q), fl_release(k), fl_release(v), fl_release(f), fl_release(out), fl_release(g);
}

static void layout_case(void) {
  int64_t bs[4] = {2, 5, 4, 72}, ks[4] = {2, 4, 5, 64};
  fl_tensor *base = make(4, bs, FL_BF16, false), *t = NULL, *q = NULL, *odd = NULL, *k = make(4, ks, FL_BF16, false);
  fl_tensor *out = NULL;
  /* [2, 4, 5, 64] views: strides (1440, 72, 288, 1), offset 0 (kept) and 1 (misaligned: copied) */
  check(fl_narrow(base, 3, 0, 64, &t) == FL_OK && fl_transpose(t, 1, 2, &q) == FL_OK, "a strided view");
  fl_release(t);
  check(fl_flash_attention(q, k, k, NULL, NULL, 0, 0, 0.125, 0, 0.0, &out) == FL_OK && fwd_args.q == q && !fwd_args.causal,
        "a view with a unit last stride and strides of multiples of 8 is read in place");
  fl_release(out);
  check(fl_narrow(base, 3, 1, 64, &t) == FL_OK && fl_transpose(t, 1, 2, &odd) == FL_OK, "a misaligned view");
  fl_release(t);
  uint64_t before = rng_offset();
  check(fl_flash_attention(odd, k, k, NULL, NULL, 0, 0, 0.125, 1, 0.0, &out) == FL_OK && fwd_args.q != odd &&
            fwd_q_contiguous && fwd_args.causal && !fwd_args.bottom_right,
        "a misaligned view is copied first; causal 1 is top-left");
  check(rng_offset() == before, "no dropout, no counters");
  fl_release(out), fl_release(base), fl_release(q), fl_release(odd), fl_release(k);
}

static void varlen_case(void) {
  int64_t qs[3] = {9, 4, 64}, ks[3] = {10, 2, 64}, three = 3;
  fl_tensor *q = make(3, qs, FL_BF16, true), *k = make(3, ks, FL_BF16, true), *v = make(3, ks, FL_BF16, true);
  fl_tensor *cq = NULL, *ck = NULL, *c64 = NULL, *out = NULL, *g = NULL;
  fl_opts o = fl_default_opts();
  o.dtype = FL_I32;
  /* cu_q = {0, 4, 9}, cu_k = {0, 6, 10} */
  int32_t cqv[3] = {0, 4, 9}, ckv[3] = {0, 6, 10};
  check(fl_empty(1, &three, o, &cq) == FL_OK && fl_empty(1, &three, o, &ck) == FL_OK, "cu_seqlens tensors");
  memcpy(fl_data_ptr(cq), cqv, sizeof cqv), memcpy(fl_data_ptr(ck), ckv, sizeof ckv);
  uint64_t before = rng_offset();
  check(fl_flash_attention(q, k, v, cq, ck, 5, 6, 0.125, 2, 0.1, &out) == FL_OK && fwd_args.cu_q == cq &&
            fwd_args.cu_k == ck && fwd_args.max_q == 5 && fwd_args.max_k == 6,
        "varlen passes cu_seqlens and the max lengths");
  check(lse_ndim == 2 && lse_shape[0] == 9 && lse_shape[1] == 4, "varlen lse is f32 [total_q, Hq]");
  check(rng_offset() == before + (2 * 4 * 5 * 6 + 15) / 16, "dropout reserves ceil(nseq Hq max_q max_k / 16)");
  fl_opts ob = fl_default_opts();
  ob.dtype = FL_BF16;
  check(fl_ones(3, qs, ob, &g) == FL_OK && fl_backward(out, g, false) == FL_OK && bwd_args.cu_q &&
            bwd_cu_q_data == fl_data_ptr(cq) && bwd_args.max_k == 6 &&
            fl_grad(q) && all_equal(fl_grad(q), 2.0) && fl_grad(v) && all_equal(fl_grad(v), 4.0),
        "the varlen backward gets cu_seqlens; gradients come back");
  fl_release(out), out = NULL;
  /* errors */
  o.dtype = FL_I64;
  check(fl_empty(1, &three, o, &c64) == FL_OK, "an i64 tensor");
  check(fl_flash_attention(q, k, v, cq, NULL, 5, 6, 0.125, 0, 0, &out) == FL_EINVAL &&
            strstr(fl_last_error(), "cu_seqlens_q and cu_seqlens_k must both be given"),
        "cu_seqlens_k missing");
  check(fl_flash_attention(q, k, v, c64, ck, 5, 6, 0.125, 0, 0, &out) == FL_EDTYPE &&
            strstr(fl_last_error(), "cu_seqlens_q must be an i32 tensor [batch + 1]"),
        "cu_seqlens of another dtype");
  check(fl_flash_attention(q, k, v, cq, ck, -1, 6, 0.125, 0, 0, &out) == FL_EINVAL &&
            strstr(fl_last_error(), "max_seqlen_q and max_seqlen_k must be in [0, 2^31)"),
        "a negative max_seqlen");
  int64_t hs[3] = {9, 3, 64};
  fl_tensor *q3 = make(3, hs, FL_BF16, false);
  check(fl_flash_attention(q3, k, v, cq, ck, 5, 6, 0.125, 0, 0, &out) == FL_ESHAPE &&
            strstr(fl_last_error(), "the k/v heads (2) must divide the q heads (3)"),
        "heads GQA cannot divide");
  check(fl_flash_attention(q, k, v, cq, ck, 5, 6, 0.125, 0, 1.5, &out) == FL_EINVAL &&
            strstr(fl_last_error(), "dropout_p must be in [0, 1], got 1.5"),
        "dropout_p out of range");
  fl_tensor *f = make(3, qs, FL_F32, false), *fk = make(3, ks, FL_F32, false);
  check(fl_flash_attention(f, fk, fk, cq, ck, 5, 6, 0.125, 0, 0, &out) == FL_EBACKEND &&
            strstr(fl_last_error(), "flash_attention_varlen: no fused attention for q f32[9, 4, 64]"),
        "f32 is refused, not run another way");
  fl_release(q), fl_release(k), fl_release(v), fl_release(cq), fl_release(ck), fl_release(c64), fl_release(g);
  fl_release(q3), fl_release(f), fl_release(fk);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  cpu = fl_backend_for(FL_CPU);
  fl_backend stand_in = *cpu;
  stand_in.name = "cpu-with-flash";
  stand_in.supports = stand_in_supports;
  stand_in.flash_attention = stand_in_forward;
  stand_in.flash_attention_backward = stand_in_backward;
  fl_register_backend(FL_CPU, &stand_in);
  fl_manual_seed(5);
  dense_case();
  layout_case();
  varlen_case();
  printf("%d failed\n", failures);
  return failures != 0;
}
