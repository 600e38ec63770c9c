/* embedding: rows of a [V, D] weight picked by ids of any shape. The forward is index_select's kernel over the
 * flattened ids; the backward adds the gradient rows into a fresh [V, D] through index_add_fresh (on CUDA a sort
 * by id and one ordered sum per row: deterministic), then clears the padding row. */
#include "internal.h"
#include <string.h>

typedef struct {
  int64_t base, padding_row; /* -1: none */
} embedding_ctx;

static fl_status embedding_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const embedding_ctx *c = n->ctx;
  fl_tensor *idx, *g2 = NULL, *gw = NULL, *row = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &idx));
  int64_t d = n->in[0].shape[1], shape[2] = {fl_numel(idx), d};
  FL_CHECK(fl_reshape(gout[0], 2, shape, &g2));
  FL_CHECK(fl_index_add_new(2, n->in[0].shape, 0, idx, c->base, g2, &gw));
  if (c->padding_row >= 0) {
    FL_CHECK(fl_narrow(gw, 0, c->padding_row, 1, &row));
    FL_CHECK(fl_zero_(row));
  }
  gin[0] = gw;
  gw = NULL;
done:
  fl_release(g2), fl_release(gw), fl_release(row);
  return st;
}

/* Every id in [base, base + rows) on the CPU, with the id as stored in the message (CUDA's kernel reports it at
 * the next sync instead, without a pass here that would wait for the device). */
static fl_status check_ids(const fl_tensor *ids, int64_t rows, int64_t base) {
  if (ids->storage->device.type != FL_CPU) return FL_OK;
  int64_t n = fl_numel(ids);
  const char *p = fl_data_ptr(ids);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = ids->dtype == FL_I32 ? ((const int32_t *)p)[i] : ((const int64_t *)p)[i];
    if (v < base || v - base >= rows)
      return fl_error(FL_EINDEX, "embedding: id %lld out of range for a weight of %lld rows", (long long)fl_mdim(v - base),
                      (long long)rows);
  }
  return FL_OK;
}

fl_status fl_embedding_ex(const fl_tensor *ids, const fl_tensor *weight, int64_t padding_row, int64_t base,
                          fl_tensor **out) {
  if (weight->ndim != 2)
    return fl_error(FL_ESHAPE, "embedding: weight must be 2-D [num_embeddings, dim], got %s", fl_describe(weight).s);
  if (ids->dtype != FL_I64 && ids->dtype != FL_I32)
    return fl_error(FL_EDTYPE, "embedding: ids must be an i64 or i32 tensor, got %s", fl_describe(ids).s);
  FL_TRY(fl_check_same_device("embedding", weight, ids));
  if (padding_row < -1 || padding_row >= weight->shape[0])
    return fl_error(FL_EINVAL, "embedding: padding_idx %lld out of range for a weight of %lld rows",
                    (long long)fl_mdim(padding_row), (long long)weight->shape[0]);
  if (ids->ndim + 1 > FL_MAX_DIMS) return fl_error(FL_ESHAPE, "embedding: ids %s have too many dims", fl_describe(ids).s);
  fl_tensor *ix = NULL, *flat = NULL, *rows = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_contiguous(ids, &ix));
  FL_CHECK(check_ids(ix, weight->shape[0], base));
  int64_t n = fl_numel(ix), shape[FL_MAX_DIMS];
  FL_CHECK(fl_reshape(ix, 1, &n, &flat));
  bool prev = fl_set_grad_enabled(false); /* one node for the whole op, recorded below */
  st = fl_index_select_ex(weight, 0, flat, base, &rows);
  fl_set_grad_enabled(prev);
  if (st != FL_OK) goto done;
  memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
  shape[ids->ndim] = weight->shape[1];
  FL_CHECK(fl_reshape(rows, ids->ndim + 1, shape, &r));
  fl_node *node;
  FL_CHECK(fl_record("EmbeddingBackward", embedding_backward, 1, &weight, r, &node));
  if (node) {
    embedding_ctx *c;
    FL_CHECK(fl_node_ctx(node, sizeof *c, NULL, (void **)&c));
    c->base = base, c->padding_row = padding_row;
    FL_CHECK(fl_node_save(node, flat));
  }
  *out = r;
  r = NULL;
done:
  fl_release(ix), fl_release(flat), fl_release(rows), fl_release(r);
  return fl_error_context(st, "embedding");
}
