/* conv{1,2,3}d and conv_transpose{1,2,3}d: one N-d implementation.
 *
 * Every convolution is one of three problems on a geometry (core/conv_geom.h):
 * FORWARD (y from x and w), DATA (dx from dy and w) and WEIGHT (dw from x and
 * dy). A transposed convolution's forward is the DATA problem of the
 * convolution it transposes, and its backward that convolution's FORWARD and
 * WEIGHT problems. Each problem first goes to the backend's optional direct
 * entry (CUDA: cuDNN) when the backend accepts it, else to the im2col path:
 *   FORWARD  cols = im2col(x);  y_g  = W_g @ cols_g          (one GEMM, batched)
 *   DATA     cols_g = W_g^T @ dy_g;  dx = col2im(cols)       (one GEMM, batched)
 *   WEIGHT   cols = im2col(x);  dW_g += dY_g @ cols_g^T      (one GEMM per chunk)
 * where cols is [cin * kvol, chunk * L] (group g's rows are the block g), so
 * a chunk of images is one GEMM batched over groups with strides; with one
 * group the forward and data GEMMs batch over the images instead and read and
 * write the NCHW tensors in place. Chunks of images keep cols (and the
 * permuted dy) under a workspace cap. The bias is a broadcast add on the
 * device; its gradient is a reduce over n and the spatial dims. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WORKSPACE ((int64_t)256 << 20)
static fl_conv_algo conv_algo = FL_CONV_AUTO;
static int64_t conv_workspace = DEFAULT_WORKSPACE;

fl_conv_algo fl_set_conv_algo(fl_conv_algo a) {
  fl_conv_algo old = conv_algo;
  if (a == FL_CONV_AUTO || a == FL_CONV_GEMM || a == FL_CONV_DIRECT) conv_algo = a;
  return old;
}
fl_conv_algo fl_get_conv_algo(void) { return conv_algo; }

int64_t fl_set_conv_workspace(int64_t bytes) {
  int64_t old = conv_workspace;
  conv_workspace = bytes > 0 ? bytes : DEFAULT_WORKSPACE;
  return old;
}

static int cudnn_api = -1, cudnn_ran = -1; /* -1: FLAME_CUDNN_API not read yet / nothing ran yet */

fl_cudnn_api fl_get_cudnn_api(void) {
  if (cudnn_api < 0) {
    const char *e = getenv("FLAME_CUDNN_API");
    /* graph by default: its cached execution plans cost the host 3-8x less a call than the legacy API's descriptor
     * calls (bench/conv_graph_check.sh on the H200), and train.lua's host-bound step ran 14% faster with it */
    cudnn_api = e && strcmp(e, "legacy") == 0 ? FL_CUDNN_LEGACY : FL_CUDNN_GRAPH;
  }
  return (fl_cudnn_api)cudnn_api;
}

fl_cudnn_api fl_set_cudnn_api(fl_cudnn_api api) {
  fl_cudnn_api old = fl_get_cudnn_api();
  if (api == FL_CUDNN_LEGACY || api == FL_CUDNN_GRAPH) cudnn_api = api;
  return old;
}

void fl_cudnn_note_ran(fl_cudnn_api api) { cudnn_ran = api; }
int fl_cudnn_last_ran(void) { return cudnn_ran; }

fl_conv_params fl_conv_default_params(void) {
  fl_conv_params p = {.groups = 1, .pad_mode = FL_CONV_PAD_EXPLICIT};
  for (int i = 0; i < 3; i++) p.stride[i] = 1, p.dilation[i] = 1;
  return p;
}

static const char *conv_name(int nsp, bool transposed) {
  static const char *names[2][3] = {{"conv1d", "conv2d", "conv3d"},
                                    {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}};
  return names[transposed][nsp - 1];
}

static int64_t prod3(int nsp, const int64_t *v) {
  int64_t r = 1;
  for (int i = 0; i < nsp; i++) r *= v[i];
  return r;
}

/* ---- the im2col path ---- */

/* A stack header over t's storage for one kernel call (never retained). */
static fl_tensor header(const fl_tensor *t, int64_t off, int nd, const int64_t *shape, const int64_t *stride) {
  fl_tensor h;
  memset(&h, 0, sizeof h);
  h.refcount = 1;
  h.storage = t->storage, h.dtype = t->dtype, h.ndim = nd, h.offset = t->offset + off;
  memcpy(h.shape, shape, sizeof(int64_t) * nd);
  if (stride) memcpy(h.stride, stride, sizeof(int64_t) * nd);
  else fl_contiguous_strides(nd, h.shape, h.stride);
  return h;
}

/* [B, R, C] with the given strides. */
static fl_tensor mat3(const fl_tensor *t, int64_t off, int64_t B, int64_t sb, int64_t R, int64_t sr, int64_t C,
                      int64_t sc) {
  return header(t, off, 3, (int64_t[]){B, R, C}, (int64_t[]){sb, sr, sc});
}

static fl_status gemm(const char *op, fl_tensor *c, const fl_tensor *a, bool ta, const fl_tensor *b, bool tb,
                      double beta) {
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_GEMM, 0, 3, (const fl_tensor *const[]){c, a, b}, &be));
  fl_gemm g = {c, a, b, ta, tb, 1.0, beta, NULL};
  return fl_error_context(be->gemm(&g), op);
}

static fl_status im2col(const char *op, fl_tensor *cols, const fl_tensor *x, const fl_conv_geom *g) {
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_IM2COL, 0, 2, (const fl_tensor *const[]){cols, x}, &be));
  return fl_error_context(be->im2col(cols, x, g), op);
}

static fl_status col2im(const char *op, fl_tensor *x, const fl_tensor *cols, const fl_conv_geom *g) {
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_COL2IM, 0, 2, (const fl_tensor *const[]){x, cols}, &be));
  return fl_error_context(be->col2im(x, cols, g), op);
}

/* The sizes one problem works with. */
typedef struct {
  int64_t G, kvol, L, inv, cin_g, cout_g, Kg;
} dims;

static dims dims_of(const fl_conv_geom *g) {
  dims d = {.G = g->groups, .kvol = prod3(g->nsp, g->k), .L = prod3(g->nsp, g->out), .inv = prod3(g->nsp, g->in)};
  d.cin_g = g->cin / d.G, d.cout_g = g->cout / d.G, d.Kg = d.cin_g * d.kvol;
  return d;
}

/* A 1x1 kernel at stride 1 without padding: cols would be x itself (as [cin, L] per image), so
 * with one group the forward and data GEMMs read and write x in place and skip im2col/col2im. */
static bool pointwise(const fl_conv_geom *g) {
  for (int i = 0; i < g->nsp; i++)
    if (g->k[i] != 1 || g->stride[i] != 1 || g->pad[i] != 0) return false;
  return g->groups == 1;
}

/* Images per chunk: as many as keep per_image elements each under the
 * workspace cap (at least one), spread evenly over the chunks. */
static int64_t chunk_images(const fl_conv_geom *g, int64_t per_image, fl_dtype dt) {
  int64_t bytes = per_image * (int64_t)fl_dtype_size(dt), fit = bytes > 0 ? conv_workspace / bytes : g->n;
  if (fit < 1) fit = 1;
  if (fit >= g->n) return g->n > 0 ? g->n : 1;
  int64_t nchunks = (g->n + fit - 1) / fit;
  return (g->n + nchunks - 1) / nchunks;
}

/* Scratch tensors of one problem: cols and, where needed, tmp. */
static fl_status scratch(const fl_tensor *like, int64_t ncols, int64_t ntmp, fl_tensor **cols, fl_tensor **tmp) {
  fl_device dev = like->storage->device;
  FL_TRY(fl_tensor_new(like->dtype, dev, 1, (int64_t[]){ncols}, cols));
  if (ntmp > 0) return fl_tensor_new(like->dtype, dev, 1, (int64_t[]){ntmp}, tmp);
  return FL_OK;
}

/* dy's images [n0, n0 + m) as [cout, m * L] in tmp (the layout the grouped GEMMs read). */
static fl_status permute_dy(const char *op, fl_tensor *tmp, const fl_tensor *dy, const fl_conv_geom *g, int64_t n0,
                            int64_t m, int64_t L) {
  fl_tensor dst = header(tmp, 0, 3, (int64_t[]){g->cout, m, L}, NULL);
  fl_tensor src = header(dy, n0 * g->cout * L, 3, (int64_t[]){g->cout, m, L}, (int64_t[]){L, g->cout * L, 1});
  return fl_copy_kernel(op, &dst, &src);
}

static fl_status gemm_forward(const char *op, fl_tensor *y, const fl_tensor *x, const fl_tensor *w,
                              const fl_conv_geom *g) {
  dims d = dims_of(g);
  int64_t G = d.G, L = d.L, Kg = d.Kg, cout = g->cout, cg = d.cout_g;
  bool pw = pointwise(g);
  int64_t ncol = pw ? 0 : g->cin * d.kvol * L;
  int64_t nc = chunk_images(g, ncol + (G > 1 ? cout * L : 0), x->dtype);
  fl_tensor *cols = NULL, *tmp = NULL;
  fl_status st = FL_OK;
  FL_CHECK(scratch(x, ncol * nc, G > 1 && nc > 1 ? cout * nc * L : 0, &cols, &tmp));
  for (int64_t n0 = 0; n0 < g->n; n0 += nc) {
    int64_t m = g->n - n0 < nc ? g->n - n0 : nc, yoff = n0 * cout * L;
    fl_conv_geom gc = *g;
    gc.n = m;
    fl_tensor xs = header(x, n0 * g->cin * d.inv, 2, (int64_t[]){m, g->cin * d.inv}, NULL);
    fl_tensor cv = header(cols, 0, 2, (int64_t[]){g->cin * d.kvol, m * L}, NULL);
    if (!pw) FL_CHECK(im2col(op, &cv, &xs, &gc));
    if (G == 1) { /* y[i] = W @ cols[:, image i]: batched over the images, written in place */
      fl_tensor A = mat3(w, 0, m, 0, cout, Kg, Kg, 1), B = mat3(cols, 0, m, L, Kg, m * L, L, 1);
      if (pw) B = mat3(x, n0 * g->cin * L, m, g->cin * L, Kg, L, L, 1);
      fl_tensor C = mat3(y, yoff, m, cout * L, cout, L, L, 1);
      FL_CHECK(gemm(op, &C, &A, false, &B, false, 0));
      continue;
    }
    fl_tensor A = mat3(w, 0, G, cg * Kg, cg, Kg, Kg, 1), B = mat3(cols, 0, G, Kg * m * L, Kg, m * L, m * L, 1);
    if (m == 1) { /* one image: y's group blocks are the GEMM's batches */
      fl_tensor C = mat3(y, yoff, G, cg * L, cg, L, L, 1);
      FL_CHECK(gemm(op, &C, &A, false, &B, false, 0));
      continue;
    }
    fl_tensor C = mat3(tmp, 0, G, cg * m * L, cg, m * L, m * L, 1); /* [cout, m, L], then into y's [m, cout, L] */
    FL_CHECK(gemm(op, &C, &A, false, &B, false, 0));
    fl_tensor dst = header(y, yoff, 3, (int64_t[]){cout, m, L}, (int64_t[]){L, cout * L, 1});
    fl_tensor src = header(tmp, 0, 3, (int64_t[]){cout, m, L}, NULL);
    FL_CHECK(fl_copy_kernel(op, &dst, &src));
  }
done:
  fl_release(cols), fl_release(tmp);
  return st;
}

static fl_status gemm_data(const char *op, fl_tensor *dx, const fl_tensor *dy, const fl_tensor *w,
                           const fl_conv_geom *g) {
  dims d = dims_of(g);
  int64_t G = d.G, L = d.L, Kg = d.Kg, cout = g->cout, cg = d.cout_g;
  bool pw = pointwise(g);
  int64_t ncol = pw ? 0 : g->cin * d.kvol * L;
  int64_t nc = chunk_images(g, ncol + (G > 1 ? cout * L : 0), dy->dtype);
  fl_tensor *cols = NULL, *tmp = NULL;
  fl_status st = FL_OK;
  FL_CHECK(scratch(dy, ncol * nc, G > 1 && nc > 1 ? cout * nc * L : 0, &cols, &tmp));
  for (int64_t n0 = 0; n0 < g->n; n0 += nc) {
    int64_t m = g->n - n0 < nc ? g->n - n0 : nc, yoff = n0 * cout * L;
    fl_conv_geom gc = *g;
    gc.n = m;
    if (G == 1) { /* cols[:, image i] = W^T @ dy[i], batched over the images */
      fl_tensor A = mat3(w, 0, m, 0, cout, Kg, Kg, 1), B = mat3(dy, yoff, m, cout * L, cout, L, L, 1);
      fl_tensor C = mat3(cols, 0, m, L, Kg, m * L, L, 1);
      if (pw) { /* written straight into dx: no col2im */
        C = mat3(dx, n0 * g->cin * L, m, g->cin * L, Kg, L, L, 1);
        FL_CHECK(gemm(op, &C, &A, true, &B, false, 0));
        continue;
      }
      FL_CHECK(gemm(op, &C, &A, true, &B, false, 0));
    } else {
      fl_tensor A = mat3(w, 0, G, cg * Kg, cg, Kg, Kg, 1), C = mat3(cols, 0, G, Kg * m * L, Kg, m * L, m * L, 1);
      fl_tensor B = mat3(dy, yoff, G, cg * L, cg, L, L, 1);
      if (m > 1) {
        FL_CHECK(permute_dy(op, tmp, dy, g, n0, m, L));
        B = mat3(tmp, 0, G, cg * m * L, cg, m * L, m * L, 1);
      }
      FL_CHECK(gemm(op, &C, &A, true, &B, false, 0));
    }
    fl_tensor xs = header(dx, n0 * g->cin * d.inv, 2, (int64_t[]){m, g->cin * d.inv}, NULL);
    fl_tensor cv = header(cols, 0, 2, (int64_t[]){g->cin * d.kvol, m * L}, NULL);
    FL_CHECK(col2im(op, &xs, &cv, &gc));
  }
done:
  fl_release(cols), fl_release(tmp);
  return st;
}

/* dW_g (+)= dY_g @ cols_g^T per chunk: one GEMM batched over the groups, the
 * chunk's images inside its inner dimension; no loop over images here. */
static fl_status gemm_weight(const char *op, fl_tensor *dw, const fl_tensor *x, const fl_tensor *dy,
                             const fl_conv_geom *g) {
  dims d = dims_of(g);
  int64_t G = d.G, L = d.L, Kg = d.Kg, cout = g->cout, cg = d.cout_g;
  int64_t nc = chunk_images(g, g->cin * d.kvol * L + cout * L, x->dtype);
  fl_tensor *cols = NULL, *tmp = NULL;
  fl_status st = FL_OK;
  FL_CHECK(scratch(x, g->cin * d.kvol * nc * L, nc > 1 ? cout * nc * L : 0, &cols, &tmp));
  fl_tensor C = mat3(dw, 0, G, cg * Kg, cg, Kg, Kg, 1);
  for (int64_t n0 = 0; n0 < g->n; n0 += nc) {
    int64_t m = g->n - n0 < nc ? g->n - n0 : nc;
    fl_conv_geom gc = *g;
    gc.n = m;
    fl_tensor xs = header(x, n0 * g->cin * d.inv, 2, (int64_t[]){m, g->cin * d.inv}, NULL);
    fl_tensor cv = header(cols, 0, 2, (int64_t[]){g->cin * d.kvol, m * L}, NULL);
    FL_CHECK(im2col(op, &cv, &xs, &gc));
    fl_tensor A = mat3(dy, n0 * cout * L, G, cg * L, cg, L, L, 1);
    if (m > 1) {
      FL_CHECK(permute_dy(op, tmp, dy, g, n0, m, L));
      A = mat3(tmp, 0, G, cg * m * L, cg, m * L, m * L, 1);
    }
    fl_tensor B = mat3(cols, 0, G, Kg * m * L, Kg, m * L, m * L, 1);
    FL_CHECK(gemm(op, &C, &A, false, &B, true, n0 ? 1.0 : 0.0));
  }
done:
  fl_release(cols), fl_release(tmp);
  return st;
}

/* y += b along dim 1, as a broadcast add on y's device. */
static fl_status add_bias(const char *op, fl_tensor *y, const fl_tensor *b) {
  int64_t stride[FL_MAX_DIMS] = {0};
  stride[1] = b->stride[0];
  fl_tensor be_ = header(b, 0, y->ndim, y->shape, stride);
  const fl_backend *be;
  FL_TRY(fl_dispatch(op, FL_OP_BINARY, FL_ADD, 3, (const fl_tensor *const[]){y, y, &be_}, &be));
  return fl_error_context(be->binary(FL_ADD, y, y, &be_), op);
}

/* One problem into out (contiguous, allocated): the direct entry where the
 * backend takes it and the algo allows, else the im2col path. a, b contiguous.
 * bias (FORWARD only, may be NULL): added by the direct entry as it stores
 * (*added set) where the backend has conv_direct_bias. */
static fl_status conv_problem(const char *op, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                              const fl_tensor *b, const fl_tensor *bias, const fl_conv_geom *g, bool *added) {
  if (fl_numel(out) == 0) return FL_OK;
  if (fl_numel(a) == 0 || fl_numel(b) == 0) return fl_zero_(out); /* an empty sum: no batch or no channels */
  const fl_backend *be;
  if (conv_algo != FL_CONV_GEMM && fl_op_supported(FL_OP_CONV_DIRECT, (int)dir, 3, (const fl_tensor *const[]){out, a, b}, &be)) {
    fl_profile_tick("conv_direct", out->storage->device);
    *added = bias && dir == FL_CONV_FORWARD && be->conv_direct_bias;
    fl_status st = *added ? be->conv_direct_bias(out, a, b, bias, g) : be->conv_direct(dir, out, a, b, g);
    /* a direct entry may still decline at run time (no algorithm for the case): take the im2col path */
    if (st != FL_EUNSUPPORTED || conv_algo == FL_CONV_DIRECT) return fl_error_context(st, op);
    *added = false;
  } else if (conv_algo == FL_CONV_DIRECT) {
    char dn[32];
    fl_device_name(out->storage->device, dn, sizeof dn);
    fl_desc da = fl_describe(a), db = fl_describe(b);
    return fl_error(FL_EUNSUPPORTED, "%s: no direct convolution path on %s for %s and %s (conv_algo is \"direct\")", op,
                    dn, da.s, db.s);
  }
  switch (dir) {
    case FL_CONV_FORWARD: return gemm_forward(op, out, a, b, g);
    case FL_CONV_DATA: return gemm_data(op, out, a, b, g);
    default: return gemm_weight(op, out, a, b, g);
  }
}

/* The problem, then the bias (any problem that makes an output: FORWARD, or a transposed convolution's DATA)
 * unless the direct entry added it. */
static fl_status conv_compute(const char *op, fl_conv_dir dir, fl_tensor *out, const fl_tensor *a,
                              const fl_tensor *b, const fl_tensor *bias, const fl_conv_geom *g) {
  bool added = false;
  FL_TRY(conv_problem(op, dir, out, a, b, bias, g, &added));
  return bias && !added && fl_numel(out) ? add_bias(op, out, bias) : FL_OK;
}

/* t itself when contiguous (a new header, no autograd), else a contiguous copy. */
static fl_status dense(const char *op, const fl_tensor *t, fl_tensor **out) {
  if (fl_is_contiguous(t)) {
    *out = fl_alias(t, t->ndim, t->shape, NULL, t->offset);
    return *out ? FL_OK : fl_error(FL_ENOMEM, "%s: out of memory", op);
  }
  FL_TRY(fl_tensor_new(t->dtype, t->storage->device, t->ndim, t->shape, out));
  fl_status st = fl_copy_kernel(op, *out, t);
  if (st != FL_OK) fl_release(*out), *out = NULL;
  return st;
}

/* A new tensor of the given shape holding one problem's result. */
static fl_status conv_new(const char *op, fl_conv_dir dir, int nd, const int64_t *shape, const fl_tensor *a,
                          const fl_tensor *b, const fl_tensor *bias, const fl_conv_geom *g, fl_tensor **out) {
  fl_tensor *da = NULL, *db = NULL, *r = NULL;
  fl_status st = FL_OK;
  FL_CHECK(dense(op, a, &da));
  FL_CHECK(dense(op, b, &db));
  FL_CHECK(fl_tensor_new(a->dtype, a->storage->device, nd, shape, &r));
  FL_CHECK(conv_compute(op, dir, r, da, db, bias, g));
  *out = r;
  r = NULL;
done:
  fl_release(da), fl_release(db), fl_release(r);
  return st;
}

/* ---- autograd ---- */

typedef struct {
  fl_conv_geom g;
  bool transposed;
} conv_ctx;

/* Saved: x and w. A convolution's gradients are its DATA and WEIGHT problems;
 * a transposed one's are the FORWARD and WEIGHT problems of the convolution it
 * transposes (its x is that convolution's dy). The bias's is a sum over n and
 * the spatial dims. */
static fl_status conv_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const conv_ctx *c = n->ctx;
  const char *op = conv_name(c->g.nsp, c->transposed);
  fl_tensor *x, *w, *gy = NULL;
  fl_status st = FL_OK;
  FL_CHECK(fl_node_saved(n, 0, &x));
  FL_CHECK(fl_node_saved(n, 1, &w));
  FL_CHECK(dense(op, gout[0], &gy));
  if (n->in[0].node)
    FL_CHECK(conv_new(op, c->transposed ? FL_CONV_FORWARD : FL_CONV_DATA, x->ndim, x->shape, gy, w, NULL, &c->g, &gin[0]));
  if (n->in[1].node)
    FL_CHECK(c->transposed ? conv_new(op, FL_CONV_WEIGHT, w->ndim, w->shape, gy, x, NULL, &c->g, &gin[1])
                           : conv_new(op, FL_CONV_WEIGHT, w->ndim, w->shape, x, gy, NULL, &c->g, &gin[1]));
  if (n->n_in > 2 && n->in[2].node) {
    uint32_t mask = 1;
    for (int i = 2; i < gy->ndim; i++) mask |= 1u << i;
    FL_CHECK(fl_sum(gy, mask, false, &gin[2]));
  }
done:
  fl_release(gy);
  return st;
}

/* x batched, padding explicit: the geometry is checked, the problem run and recorded. */
static fl_status conv_core(const char *op, const fl_conv_geom *g, bool transposed, const fl_tensor *x,
                           const fl_tensor *w, const fl_tensor *b, fl_tensor **out) {
  int64_t shape[FL_MAX_DIMS];
  int nd = g->nsp + 2;
  shape[0] = g->n;
  shape[1] = transposed ? g->cin : g->cout;
  for (int i = 0; i < g->nsp; i++) shape[2 + i] = transposed ? g->in[i] : g->out[i];
  fl_tensor *y = NULL;
  fl_status st = FL_OK;
  FL_CHECK(conv_new(op, transposed ? FL_CONV_DATA : FL_CONV_FORWARD, nd, shape, x, w, b, g, &y));
  fl_node *n;
  const fl_tensor *ins[3] = {x, w, b};
  FL_CHECK(fl_record("ConvolutionBackward", conv_backward, b ? 3 : 2, ins, y, &n));
  if (n) {
    conv_ctx *c;
    FL_CHECK(fl_node_ctx(n, sizeof *c, NULL, (void **)&c));
    c->g = *g;
    c->transposed = transposed;
    FL_CHECK(fl_node_save(n, x));
    FL_CHECK(fl_node_save(n, w));
  }
  *out = y;
  y = NULL;
done:
  fl_release(y);
  return st;
}

/* ---- arguments and geometry ---- */

static fl_status check_tensors(const char *op, int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b) {
  FL_TRY(fl_check_same_device(op, x, w));
  if (b) FL_TRY(fl_check_same_device(op, x, b));
  /* the descriptions are made only for a message: fl_describe formats text, a cost on every call */
  if (x->dtype != w->dtype || (b && b->dtype != x->dtype)) {
    fl_desc dx = fl_describe(x), dw = fl_describe(w);
    fl_desc db = b ? fl_describe(b) : (fl_desc){"none"};
    return fl_error(FL_EDTYPE, "%s: expected input, weight and bias of one dtype, got input %s, weight %s, bias %s", op,
                    dx.s, dw.s, db.s);
  }
  if (!fl_dtype_is_float(x->dtype))
    return fl_error(FL_EDTYPE, "%s: expected a float dtype, got input %s", op, fl_describe(x).s);
  if (x->ndim != nsp + 2 && x->ndim != nsp + 1)
    return fl_error(FL_ESHAPE, "%s: expected a %d-D input [n, c, ...] (or %d-D unbatched), got %s", op, nsp + 2,
                    nsp + 1, fl_describe(x).s);
  if (w->ndim != nsp + 2)
    return fl_error(FL_ESHAPE, "%s: expected a %d-D weight, got %s", op, nsp + 2, fl_describe(w).s);
  return FL_OK;
}

/* v >= lo for each of the nsp entries of a parameter. */
static fl_status check_param(const char *op, const char *what, int nsp, const int64_t *v, int64_t lo) {
  for (int i = 0; i < nsp; i++)
    if (v[i] < lo)
      return fl_error(FL_EINVAL, "%s: %s must be %s, got %lld at spatial dim %lld", op, what,
                      lo ? "positive" : "non-negative", (long long)v[i], (long long)fl_mdim(i));
  return FL_OK;
}

static fl_status too_large(const char *op) {
  return fl_error(FL_ESHAPE, "%s: the sizes, strides, padding or dilation are too large", op);
}

/* The geometry of a convolution of x [n, cin, in...] by w [cout, cin/groups, k...]. */
static fl_status conv_geometry(const char *op, int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b,
                               const fl_conv_params *p, fl_conv_geom *g) {
  memset(g, 0, sizeof *g);
  g->nsp = nsp, g->n = x->shape[0], g->cin = x->shape[1], g->cout = w->shape[0], g->groups = p->groups;
  if (p->groups < 1) return fl_error(FL_EINVAL, "%s: groups must be positive, got %lld", op, (long long)p->groups);
  if (g->cin % g->groups)
    return fl_error(FL_ESHAPE, "%s: input channels %lld (dim %lld of input %s) are not divisible by groups %lld", op,
                    (long long)g->cin, (long long)fl_mdim(1), fl_describe(x).s, (long long)g->groups);
  if (g->cout % g->groups)
    return fl_error(FL_ESHAPE, "%s: output channels %lld (dim %lld of weight %s) are not divisible by groups %lld", op,
                    (long long)g->cout, (long long)fl_mdim(0), fl_describe(w).s, (long long)g->groups);
  int64_t wcin;
  if (fl_mul_overflows(w->shape[1], g->groups, &wcin)) return too_large(op);
  if (wcin != g->cin)
    return fl_error(FL_ESHAPE,
                    "%s: weight %s expects %lld input channels (%lld per group x %lld groups), input %s has %lld", op,
                    fl_describe(w).s, (long long)wcin, (long long)w->shape[1], (long long)g->groups, fl_describe(x).s, (long long)g->cin);
  FL_TRY(check_param(op, "stride", nsp, p->stride, 1));
  FL_TRY(check_param(op, "dilation", nsp, p->dilation, 1));
  FL_TRY(check_param(op, "padding", nsp, p->padding, 0));
  for (int i = 0; i < nsp; i++) {
    int64_t in = x->shape[2 + i], k = w->shape[2 + i], span, padded;
    g->in[i] = in, g->k[i] = k, g->stride[i] = p->stride[i], g->pad[i] = p->padding[i], g->dil[i] = p->dilation[i];
    if (fl_mul_overflows(p->dilation[i], k > 0 ? k - 1 : 0, &span) || fl_add_overflows(span, 1, &span) ||
        fl_mul_overflows(p->padding[i], 2, &padded) || fl_add_overflows(padded, in, &padded))
      return too_large(op);
    if (k < 1 || span > padded)
      return fl_error(FL_ESHAPE,
                      "%s: the kernel (size %lld, %lld with dilation) is larger than the padded input (size %lld) "
                      "at dim %lld of input %s (weight %s)",
                      op, (long long)k, (long long)span, (long long)padded, (long long)fl_mdim(2 + i), fl_describe(x).s, fl_describe(w).s);
    g->out[i] = (padded - span) / p->stride[i] + 1;
  }
  for (int i = nsp; i < 3; i++) g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1;
  if (b && (b->ndim != 1 || b->shape[0] != g->cout)) {
    fl_desc db = fl_describe(b);
    return fl_error(FL_ESHAPE, "%s: expected a bias of shape [%lld] (the weight's dim %lld), got %s", op,
                    (long long)g->cout, (long long)fl_mdim(0), db.s);
  }
  return FL_OK;
}

/* The geometry of the convolution that conv_transpose(x, w) transposes: its
 * input is the transposed one's output, its output the transposed one's input,
 * its weight w as given ([cout, cin/groups, k...] from its point of view). */
static fl_status transpose_geometry(const char *op, int nsp, const fl_tensor *x, const fl_tensor *w,
                                    const fl_tensor *b, const fl_conv_params *p, fl_conv_geom *g) {
  memset(g, 0, sizeof *g);
  g->nsp = nsp, g->n = x->shape[0], g->cout = x->shape[1], g->groups = p->groups;
  if (p->groups < 1) return fl_error(FL_EINVAL, "%s: groups must be positive, got %lld", op, (long long)p->groups);
  if (w->shape[0] != g->cout)
    return fl_error(FL_ESHAPE, "%s: weight %s expects %lld input channels (its dim %lld), input %s has %lld", op, fl_describe(w).s,
                    (long long)w->shape[0], (long long)fl_mdim(0), fl_describe(x).s, (long long)g->cout);
  if (g->cout % g->groups)
    return fl_error(FL_ESHAPE, "%s: input channels %lld (dim %lld of input %s) are not divisible by groups %lld", op,
                    (long long)g->cout, (long long)fl_mdim(1), fl_describe(x).s, (long long)g->groups);
  if (fl_mul_overflows(w->shape[1], g->groups, &g->cin)) return too_large(op);
  FL_TRY(check_param(op, "stride", nsp, p->stride, 1));
  FL_TRY(check_param(op, "dilation", nsp, p->dilation, 1));
  FL_TRY(check_param(op, "padding", nsp, p->padding, 0));
  FL_TRY(check_param(op, "output_padding", nsp, p->output_padding, 0));
  for (int i = 0; i < nsp; i++) {
    int64_t in = x->shape[2 + i], k = w->shape[2 + i], s = p->stride[i], d = p->dilation[i], op_ = p->output_padding[i];
    if (op_ >= s && op_ >= d)
      return fl_error(FL_EINVAL,
                      "%s: output_padding %lld must be smaller than the stride %lld or the dilation %lld at spatial "
                      "dim %lld",
                      op, (long long)op_, (long long)s, (long long)d, (long long)fl_mdim(i));
    int64_t a, span, out;
    /* out = (in - 1) * s - 2 pad + d (k - 1) + output_padding + 1 */
    if (k < 1)
      return fl_error(FL_ESHAPE, "%s: the weight %s has an empty kernel at its dim %lld", op, fl_describe(w).s,
                      (long long)fl_mdim(2 + i));
    if (fl_mul_overflows(in > 0 ? in - 1 : 0, s, &a) || fl_mul_overflows(d, k - 1, &span) ||
        fl_add_overflows(a, span, &out) || fl_add_overflows(out, op_ + 1, &out) ||
        fl_mul_overflows(p->padding[i], 2, &a))
      return too_large(op);
    out -= a;
    if (in < 1 || out < 1)
      return fl_error(FL_ESHAPE, "%s: the output size %lld at dim %lld is not positive (input %s, weight %s)", op,
                      (long long)(in < 1 ? 0 : out), (long long)fl_mdim(2 + i), fl_describe(x).s, fl_describe(w).s);
    g->in[i] = out, g->k[i] = k, g->out[i] = in, g->stride[i] = s, g->pad[i] = p->padding[i], g->dil[i] = d;
  }
  for (int i = nsp; i < 3; i++) g->in[i] = g->k[i] = g->out[i] = g->stride[i] = g->dil[i] = 1;
  if (b && (b->ndim != 1 || b->shape[0] != g->cin)) {
    fl_desc db = fl_describe(b);
    return fl_error(FL_ESHAPE, "%s: expected a bias of shape [%lld] (the weight's dim %lld x groups), got %s", op,
                    (long long)g->cin, (long long)fl_mdim(1), db.s);
  }
  return FL_OK;
}

/* x with the odd part of "same" padding (one more zero after than before, as
 * PyTorch) appended along each spatial dim that needs it; fills p's symmetric part. */
static fl_status same_padding(const char *op, int nsp, const fl_tensor *x, const fl_tensor *w, fl_conv_params *p,
                              fl_tensor **out) {
  fl_tensor *cur = fl_retain((fl_tensor *)x), *z = NULL, *next = NULL;
  fl_status st = FL_OK;
  for (int i = 0; i < nsp; i++) {
    if (p->stride[i] != 1) {
      st = fl_error(FL_EINVAL, "%s: padding \"same\" is not supported for strided convolutions (stride %lld at spatial dim %lld)",
                    op, (long long)p->stride[i], (long long)fl_mdim(i));
      goto done;
    }
    int64_t total;
    if (p->dilation[i] < 1 || w->shape[2 + i] < 1) { /* reported by the geometry check */
      p->padding[i] = 0;
      continue;
    }
    if (fl_mul_overflows(p->dilation[i], w->shape[2 + i] - 1, &total)) {
      st = too_large(op);
      goto done;
    }
    p->padding[i] = total / 2;
    if (total % 2 == 0) continue;
    int64_t shape[FL_MAX_DIMS];
    memcpy(shape, cur->shape, sizeof(int64_t) * cur->ndim);
    shape[2 + i] = 1;
    fl_opts o = {cur->dtype, cur->storage->device, false};
    FL_CHECK(fl_zeros(cur->ndim, shape, o, &z));
    FL_CHECK(fl_cat(2, (fl_tensor *const[]){cur, z}, 2 + i, &next));
    fl_release(cur), fl_release(z);
    cur = next, z = next = NULL;
  }
  p->pad_mode = FL_CONV_PAD_EXPLICIT;
  *out = cur;
  cur = NULL;
done:
  fl_release(cur), fl_release(z), fl_release(next);
  return st;
}

static fl_status conv_any(int nsp, bool transposed, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b,
                          const fl_conv_params *params, fl_tensor **out) {
  if (nsp < 1 || nsp > 3) return fl_error(FL_EINVAL, "conv: expected 1, 2 or 3 spatial dims, got %d", nsp);
  FL_AUTOCAST(FL_AC_LOWER, 3, ((const fl_tensor *const[]){x, w, b}), conv_any(nsp, transposed, ac[0], ac[1], ac[2], params, out));
  const char *op = conv_name(nsp, transposed);
  fl_conv_params p = params ? *params : fl_conv_default_params();
  FL_TRY(check_tensors(op, nsp, x, w, b));
  if (transposed && p.pad_mode != FL_CONV_PAD_EXPLICIT)
    return fl_error(FL_EINVAL, "%s: padding must be sizes (\"same\" and \"valid\" are for convolutions)", op);
  uint64_t mark = fl_node_mark(); /* unbatched input and odd "same" padding add steps around the core */
  bool unbatched = x->ndim == nsp + 1;
  fl_tensor *xb = NULL, *xp = NULL, *y = NULL;
  fl_conv_geom g;
  fl_status st = FL_OK;
  if (unbatched) FL_CHECK(fl_unsqueeze(x, 0, &xb));
  else xb = fl_retain((fl_tensor *)x);
  if (p.pad_mode == FL_CONV_PAD_VALID) {
    for (int i = 0; i < nsp; i++) p.padding[i] = 0;
    xp = fl_retain(xb);
  } else if (p.pad_mode == FL_CONV_PAD_SAME) {
    FL_CHECK(same_padding(op, nsp, xb, w, &p, &xp));
  } else {
    xp = fl_retain(xb);
  }
  FL_CHECK(transposed ? transpose_geometry(op, nsp, xp, w, b, &p, &g) : conv_geometry(op, nsp, xp, w, b, &p, &g));
  FL_CHECK(conv_core(op, &g, transposed, xp, w, b, &y));
  if (unbatched) FL_CHECK(fl_squeeze(y, 0, out));
  else *out = fl_retain(y);
done:
  fl_release(xb), fl_release(xp), fl_release(y);
  return fl_name_composite(st, mark, "ConvolutionBackward", out);
}

fl_status fl_conv(int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b, const fl_conv_params *p,
                  fl_tensor **out) {
  return conv_any(nsp, false, x, w, b, p, out);
}

fl_status fl_conv_transpose(int nsp, const fl_tensor *x, const fl_tensor *w, const fl_tensor *b,
                            const fl_conv_params *p, fl_tensor **out) {
  return conv_any(nsp, true, x, w, b, p, out);
}
