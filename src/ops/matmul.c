/* matmul (1-D, 2-D, batched with broadcast batch dims), bmm, mm and linear,
 * all through the backend's one GEMM entry: the backend sees one batched
 * product with transpose flags; broadcast batches keep stride 0. */
#include "internal.h"
#include <string.h>

/* Fills hdr with a [B, R, C] view of t broadcast to the batch dims, if the
 * batch dims can be walked with one stride (stride 0 for a broadcast batch).
 * hdr is a stack header for the kernel call: no allocation on the hot path. */
static bool as_batched(const fl_tensor *t, int nb, const int64_t *batch, fl_tensor *hdr) {
  int lead = nb - (t->ndim - 2);
  int64_t B = 1, bs = 0;
  bool any = false;
  for (int i = nb - 1; i >= 0; i--) {
    if (batch[i] == 1) continue;
    int j = i - lead;
    int64_t st = (j >= 0 && t->shape[j] == batch[i]) ? t->stride[j] : 0;
    if (!any) bs = st, any = true;
    else if (st != bs * B) return false;
    B *= batch[i];
  }
  fl_header_init(hdr, t);
  hdr->ndim = 3;
  hdr->shape[0] = B;
  hdr->shape[1] = t->shape[t->ndim - 2];
  hdr->shape[2] = t->shape[t->ndim - 1];
  hdr->stride[0] = bs;
  hdr->stride[1] = t->stride[t->ndim - 2];
  hdr->stride[2] = t->stride[t->ndim - 1];
  return true;
}

/* hdr as above; where the batch dims need more than one stride, they are
 * materialised first into *keep (then contiguous). */
static fl_status batched_operand(const fl_tensor *t, int nb, const int64_t *batch, fl_tensor *hdr, fl_tensor **keep) {
  *keep = NULL;
  if (as_batched(t, nb, batch, hdr)) return FL_OK;
  int64_t shape[FL_MAX_DIMS];
  memcpy(shape, batch, sizeof(int64_t) * nb);
  shape[nb] = t->shape[t->ndim - 2];
  shape[nb + 1] = t->shape[t->ndim - 1];
  fl_tensor e, *c = NULL;
  fl_status st = FL_OK;
  fl_expand_header(t, nb + 2, shape, &e);
  FL_CHECK(fl_tensor_new(t->dtype, t->storage->device, nb + 2, shape, &c));
  FL_CHECK(fl_copy_kernel("matmul", c, &e));
  as_batched(c, nb, batch, hdr);
  *keep = c;
  c = NULL;
done:
  fl_release(c);
  return st;
}

static fl_status gemm_nd(const char *name, const fl_tensor *a, bool ta, const fl_tensor *b, bool tb,
                         const fl_tensor *bias, fl_tensor **out);

typedef struct {
  bool trans_a, trans_b;
} gemm_ctx;

/* The gradients of op(A) @ op(B) (+ bias) are GEMMs with transpose flags, no copies:
 * dA = g op(B)^T (stored transposed when ta: op(B) g^T), dB = op(A)^T g (g^T op(A)
 * when tb); the bias gradient is g, which the engine sums to [n]. */
static fl_status matmul_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const gemm_ctx *c = n->ctx;
  bool ta = c->trans_a, tb = c->trans_b;
  fl_tensor *g = gout[0], *a, *b;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &a));
  FL_CHECK(fl_node_saved(n, 1, &b));
  const char *nm = "matmul";
  if (n->in[0].node) FL_CHECK(ta ? gemm_nd(nm, b, tb, g, true, NULL, &gin[0]) : gemm_nd(nm, g, false, b, !tb, NULL, &gin[0]));
  if (n->in[1].node) FL_CHECK(tb ? gemm_nd(nm, g, true, a, ta, NULL, &gin[1]) : gemm_nd(nm, a, !ta, g, false, NULL, &gin[1]));
  if (n->n_in > 2 && n->in[2].node) gin[2] = fl_retain(g);
done:
  return st;
}

/* out = op(a) @ op(b) (+ bias) over broadcast batch dims. a, b have >= 2 dims
 * and, with bias, one dtype. */
static fl_status gemm_nd(const char *name, const fl_tensor *a, bool ta, const fl_tensor *b, bool tb,
                         const fl_tensor *bias, fl_tensor **out) {
  int la = a->ndim, lb = b->ndim;
  int64_t M = a->shape[la - (ta ? 1 : 2)], K = a->shape[la - (ta ? 2 : 1)];
  int64_t K2 = b->shape[lb - (tb ? 1 : 2)], N = b->shape[lb - (tb ? 2 : 1)];
  if (K != K2) {
    char sa[128], sb[128];
    return fl_error(FL_ESHAPE, "%s: shapes %s and %s cannot be multiplied (%lld != %lld)", name,
                    fl_shape_str(a, sa, sizeof sa), fl_shape_str(b, sb, sizeof sb), (long long)K, (long long)K2);
  }
  int nb;
  int64_t batch[FL_MAX_DIMS], oshape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes(name, la - 2, a->shape, lb - 2, b->shape, &nb, batch));
  if (nb + 2 > FL_MAX_DIMS) return fl_error(FL_ESHAPE, "%s: too many dims", name);
  memcpy(oshape, batch, sizeof(int64_t) * nb);
  oshape[nb] = M;
  oshape[nb + 1] = N;
  fl_tensor a3, b3, c3, *ka = NULL, *kb = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(a->dtype, a->storage->device, nb + 2, oshape, &r));
  if (fl_numel(r)) {
    FL_CHECK(batched_operand(a, nb, batch, &a3, &ka));
    FL_CHECK(batched_operand(b, nb, batch, &b3, &kb));
    fl_header_init(&c3, r);
    c3.ndim = 3;
    c3.shape[0] = fl_shape_numel(nb, batch), c3.shape[1] = M, c3.shape[2] = N;
    c3.stride[0] = M * N, c3.stride[1] = N, c3.stride[2] = 1;
    fl_gemm g = {&c3, &a3, &b3, ta, tb, 1.0, 0.0, bias};
    const fl_backend *be;
    FL_CHECK(fl_dispatch(name, FL_OP_GEMM, 0, 4, (const fl_tensor *const[]){&c3, &a3, &b3, bias}, &be));
    FL_CHECK(fl_error_context(be->gemm(&g), name));
  }
  fl_node *n;
  const fl_tensor *ins[3] = {a, b, bias};
  FL_CHECK(fl_record(bias ? "LinearBackward" : "MatmulBackward", matmul_backward, bias ? 3 : 2, ins, r, &n));
  if (n) {
    gemm_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->trans_a = ta, c->trans_b = tb;
    FL_CHECK(fl_node_save(n, a));
    FL_CHECK(fl_node_save(n, b));
  }
  *out = r;
  r = NULL;
done:
  fl_release(ka), fl_release(kb), fl_release(r);
  return st;
}

static fl_status reject_bool(const char *op, const fl_tensor *a, const fl_tensor *b) {
  if (a->dtype != FL_BOOL && b->dtype != FL_BOOL) return FL_OK;
  return fl_error(FL_EDTYPE, "%s: bool tensors are not supported (got %s and %s)", op, fl_dtype_name(a->dtype),
                  fl_dtype_name(b->dtype));
}

/* t in dtype dt: itself (retained) or a cast (recorded by autograd). */
static fl_status as_dtype(const fl_tensor *t, fl_dtype dt, fl_tensor **out) {
  if (t->dtype == dt) {
    *out = fl_retain((fl_tensor *)t);
    return FL_OK;
  }
  return fl_cast(t, dt, out);
}

fl_status fl_matmul(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  FL_TRY(fl_check_same_device("matmul", a, b));
  if (a->ndim == 0 || b->ndim == 0) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "matmul: both arguments need at least 1 dim, got %s and %s", da.s, db.s);
  }
  FL_TRY(reject_bool("matmul", a, b));
  uint64_t mark = fl_node_mark(); /* a vector operand's result is a reshape of the GEMM's */
  fl_dtype dt = fl_autocast_dtype(FL_AC_LOWER, fl_promote(a->dtype, b->dtype));
  fl_tensor *ca = NULL, *cb = NULL, *ua = NULL, *ub = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_dtype(a, dt, &ca));
  FL_CHECK(as_dtype(b, dt, &cb));
  if (a->ndim == 1) FL_CHECK(fl_unsqueeze(ca, 0, &ua)); /* [K] -> [1, K] */
  else ua = fl_retain(ca);
  if (b->ndim == 1) FL_CHECK(fl_unsqueeze(cb, 1, &ub)); /* [K] -> [K, 1] */
  else ub = fl_retain(cb);
  FL_CHECK(gemm_nd("matmul", ua, false, ub, false, NULL, &r));
  if (a->ndim == 1 || b->ndim == 1) { /* drop the dims added above */
    int64_t shape[FL_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < r->ndim; i++) {
      if (a->ndim == 1 && i == r->ndim - 2) continue;
      if (b->ndim == 1 && i == r->ndim - 1) continue;
      shape[nd++] = r->shape[i];
    }
    FL_CHECK(fl_reshape(r, nd, shape, out));
  } else {
    *out = r;
    r = NULL;
  }
done:
  fl_release(ca), fl_release(cb), fl_release(ua), fl_release(ub), fl_release(r);
  return fl_name_composite(st, mark, "MatmulBackward", out);
}

fl_status fl_mm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  if (a->ndim != 2 || b->ndim != 2) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "mm: expected 2-D tensors, got %s and %s", da.s, db.s);
  }
  uint64_t mark = fl_node_mark();
  return fl_name_composite(fl_matmul(a, b, out), mark, "MmBackward", out);
}

fl_status fl_bmm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0]) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "bmm: expected 3-D tensors with equal batch sizes, got %s and %s", da.s, db.s);
  }
  uint64_t mark = fl_node_mark();
  return fl_name_composite(fl_matmul(a, b, out), mark, "BmmBackward", out);
}

static fl_status check_linear(const fl_tensor *x, const fl_tensor *w, const fl_tensor *b) {
  FL_TRY(fl_check_same_device("linear", x, w));
  if (b) FL_TRY(fl_check_same_device("linear", x, b));
  FL_TRY(reject_bool("linear", x, w));
  bool ok = x->ndim >= 1 && w->ndim == 2 && x->shape[x->ndim - 1] == w->shape[1] &&
            (!b || (b->ndim == 1 && b->shape[0] == w->shape[0]));
  if (ok) return FL_OK;
  fl_desc dx = fl_describe(x), dw = fl_describe(w), db = b ? fl_describe(b) : (fl_desc){"none"};
  return fl_error(FL_ESHAPE, "linear: expected x [..., in], weight [out, in] and bias [out]; got x %s, weight %s, bias %s",
                  dx.s, dw.s, db.s);
}

/* y = x @ w^T + b: one GEMM with trans_b and the bias fused; x's leading dims
 * are flattened into the GEMM's rows (a view when x's layout allows). */
fl_status fl_linear(const fl_tensor *x, const fl_tensor *w, const fl_tensor *b, fl_tensor **out) {
  FL_TRY(check_linear(x, w, b));
  uint64_t mark = fl_node_mark(); /* the result is a reshape of the GEMM's */
  fl_dtype dt = fl_promote(x->dtype, w->dtype);
  if (b) dt = fl_promote(dt, b->dtype);
  dt = fl_autocast_dtype(FL_AC_LOWER, dt);
  fl_tensor *cx = NULL, *cw = NULL, *cb = NULL, *x2 = NULL, *y = NULL;
  fl_status st = FL_OK;
  FL_CHECK(as_dtype(x, dt, &cx));
  FL_CHECK(as_dtype(w, dt, &cw));
  if (b) FL_CHECK(as_dtype(b, dt, &cb));
  int64_t in = w->shape[1], rows = in ? fl_numel(x) / in : fl_shape_numel(x->ndim - 1, x->shape);
  int64_t s2[2] = {rows, in}, shape[FL_MAX_DIMS];
  FL_CHECK(fl_reshape(cx, 2, s2, &x2));
  FL_CHECK(gemm_nd("linear", x2, false, cw, true, cb, &y));
  memcpy(shape, x->shape, sizeof(int64_t) * x->ndim);
  shape[x->ndim - 1] = w->shape[0];
  FL_CHECK(fl_reshape(y, x->ndim, shape, out));
done:
  fl_release(cx), fl_release(cw), fl_release(cb), fl_release(x2), fl_release(y);
  return fl_name_composite(st, mark, "LinearBackward", out);
}
