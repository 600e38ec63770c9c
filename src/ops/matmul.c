/* matmul (1-D, 2-D, batched with broadcast batch dims), bmm and mm. The backend
 * sees one [B,M,K] x [B,K,N] product; broadcast batches keep stride 0. */
#include "internal.h"
#include <string.h>

/* A [B, R, C] header over t (batch dims collapsed) without copying, if the
 * batch dims can be walked with one stride; NULL otherwise. */
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
  *hdr = *t;
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
  fl_tensor *e = fl_expand_raw(t, nb + 2, shape), *c = NULL;
  if (!e) return fl_error(FL_ENOMEM, "matmul: out of host memory");
  fl_status st = fl_tensor_new(t->dtype, t->storage->device, nb + 2, shape, &c);
  if (st == FL_OK) {
    const fl_backend *be;
    st = fl_backend_of("matmul", t, &be);
    if (st == FL_OK) st = be->copy(c, e);
  }
  fl_release(e);
  if (st != FL_OK) {
    fl_release(c);
    return st;
  }
  *keep = c;
  as_batched(c, nb, batch, hdr);
  return FL_OK;
}

static fl_status matmul_nd(const fl_tensor *a, const fl_tensor *b, fl_tensor **out);

static fl_status matmul_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_tensor *g = gout[0], *a, *b, *at = NULL, *bt = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &a));
  FL_CHECK(fl_node_saved(n, 1, &b));
  if (n->in[0].node) {
    FL_CHECK(fl_transpose(b, -1, -2, &bt));
    FL_CHECK(matmul_nd(g, bt, &gin[0]));
  }
  if (n->in[1].node) {
    FL_CHECK(fl_transpose(a, -1, -2, &at));
    FL_CHECK(matmul_nd(at, g, &gin[1]));
  }
done:
  fl_release(at), fl_release(bt);
  return st;
}

/* Both operands have >= 2 dims and one dtype. */
static fl_status matmul_nd(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
  if (K != K2) {
    char sa[128], sb[128];
    return fl_error(FL_ESHAPE, "matmul: shapes %s and %s cannot be multiplied (%lld != %lld)",
                    fl_shape_str(a, sa, sizeof sa), fl_shape_str(b, sb, sizeof sb), (long long)K, (long long)K2);
  }
  int nb;
  int64_t batch[FL_MAX_DIMS], oshape[FL_MAX_DIMS];
  FL_TRY(fl_broadcast_shapes("matmul", a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nb, batch));
  memcpy(oshape, batch, sizeof(int64_t) * nb);
  oshape[nb] = M;
  oshape[nb + 1] = N;
  if (nb + 2 > FL_MAX_DIMS) return fl_error(FL_ESHAPE, "matmul: too many dims");
  fl_tensor a3, b3, r3, *ka = NULL, *kb = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_tensor_new(a->dtype, a->storage->device, nb + 2, oshape, &r));
  if (fl_numel(r)) {
    FL_CHECK(batched_operand(a, nb, batch, &a3, &ka));
    FL_CHECK(batched_operand(b, nb, batch, &b3, &kb));
    r3 = *r;
    r3.ndim = 3;
    r3.shape[0] = fl_shape_numel(nb, batch), r3.shape[1] = M, r3.shape[2] = N;
    r3.stride[0] = M * N, r3.stride[1] = N, r3.stride[2] = 1;
    const fl_backend *be;
    FL_CHECK(fl_backend_of("matmul", a, &be));
    if (!be->matmul) FL_CHECK(fl_unsupported("matmul", a));
    FL_CHECK(fl_error_context(be->matmul(&r3, &a3, &b3), "matmul"));
  }
  fl_node *n;
  const fl_tensor *ins[2] = {a, b};
  FL_CHECK(fl_record("MatmulBackward", matmul_backward, 2, ins, r, &n));
  if (n) {
    FL_CHECK(fl_node_save(n, a));
    FL_CHECK(fl_node_save(n, b));
  }
  *out = r;
  r = NULL;
done:
  fl_release(ka), fl_release(kb), fl_release(r);
  return st;
}

fl_status fl_matmul(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  FL_TRY(fl_check_same_device("matmul", a, b));
  if (a->ndim == 0 || b->ndim == 0) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "matmul: both arguments need at least 1 dim, got %s and %s", da.s, db.s);
  }
  if (a->dtype == FL_BOOL || b->dtype == FL_BOOL)
    return fl_error(FL_EDTYPE, "matmul: bool tensors are not supported (got %s and %s)", fl_dtype_name(a->dtype),
                    fl_dtype_name(b->dtype));
  fl_dtype dt = fl_promote(a->dtype, b->dtype);
  fl_tensor *ca = NULL, *cb = NULL, *ua = NULL, *ub = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_cast(a, dt, &ca));
  FL_CHECK(fl_cast(b, dt, &cb));
  if (a->ndim == 1) FL_CHECK(fl_unsqueeze(ca, 0, &ua)); /* [K] -> [1, K] */
  else ua = fl_retain(ca);
  if (b->ndim == 1) FL_CHECK(fl_unsqueeze(cb, 1, &ub)); /* [K] -> [K, 1] */
  else ub = fl_retain(cb);
  FL_CHECK(matmul_nd(ua, ub, &r));
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
  return st;
}

fl_status fl_mm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  if (a->ndim != 2 || b->ndim != 2) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "mm: expected 2-D tensors, got %s and %s", da.s, db.s);
  }
  return fl_matmul(a, b, out);
}

fl_status fl_bmm(const fl_tensor *a, const fl_tensor *b, fl_tensor **out) {
  if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0]) {
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_ESHAPE, "bmm: expected 3-D tensors with equal batch sizes, got %s and %s", da.s, db.s);
  }
  return fl_matmul(a, b, out);
}
