/* C tests of the autograd graph's contracts (src/core/autograd.h) with test ops
 * built on them: a node saving 20 tensors, the in-place version check on a
 * saved tensor past the inline slots, typed contexts (inline, on the heap, and
 * holding a reference), a node with two differentiable outputs checked against
 * hand-computed gradients with retain_grad, hooks and autograd.grad on each
 * output, max over a dim as a two-output node, releasing a long graph, a
 * hook that releases the graph during the backward pass, and composite ops
 * naming their result's node. */
#include "internal.h"
#include "check.h"

static fl_tensor *scalar(double v, bool rg) {
  fl_tensor *t = NULL;
  if (fl_scalar(v, opts(FL_F64, rg), &t) != FL_OK) CHECK(false, "a scalar: %s", fl_last_error());
  return t;
}

static fl_tensor *vec3(double a, double b, double c, bool rg) {
  double v[3] = {a, b, c};
  int64_t s3[1] = {3};
  return from(v, 1, s3, FL_F64, rg);
}

static fl_tensor *sum_all(const fl_tensor *t) {
  fl_tensor *s = NULL;
  OK(fl_sum(t, 0, false, &s));
  return s;
}

/* ---- a node that saves 20 tensors: y = x * (sum of the 20 saved scalars) ---- */
#define N_SAVED 20

static fl_status save20_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_status st = FL_OK;
  double total = 0, v;
  for (int i = 0; i < N_SAVED; i++) {
    fl_tensor *s;
    FL_CHECK(fl_node_saved(n, i, &s));
    FL_CHECK(fl_item(s, &v));
    total += v;
  }
  FL_CHECK(fl_binary_scalar(FL_MUL, gout[0], total, false, &gin[0]));
done:
  return st;
}

/* scalars[i] holds i + 1; returns y = 210 x, recorded with the 20 saved. */
static fl_tensor *save20(const fl_tensor *x, fl_tensor **scalars) {
  fl_tensor *y = NULL;
  fl_node *n = NULL;
  bool prev = fl_set_grad_enabled(false);
  OK(fl_binary_scalar(FL_MUL, x, N_SAVED * (N_SAVED + 1) / 2, false, &y));
  fl_set_grad_enabled(prev);
  OK(fl_record("Save20Backward", save20_backward, 1, &x, y, &n));
  bool saved = n != NULL;
  for (int i = 0; saved && i < N_SAVED; i++) saved = fl_node_save(n, scalars[i]) == FL_OK;
  CHECK(saved, "fl_node_save takes %d tensors, each returning FL_OK", N_SAVED);
  return y;
}

static void test_save_many(void) {
  int64_t base = live_bytes();
  fl_tensor *x = vec3(1, 2, 3, true), *sc[N_SAVED];
  for (int i = 0; i < N_SAVED; i++) sc[i] = scalar(i + 1, false);
  fl_tensor *y = save20(x, sc), *l = sum_all(y);
  fl_node *n = y->grad_fn;
  CHECK(n && n->n_saved == N_SAVED, "the node holds all %d saved tensors (%d)", N_SAVED, n ? n->n_saved : -1);
  bool back = true;
  for (int i = 0; n && i < N_SAVED; i++) {
    fl_tensor *s = NULL;
    double v = 0;
    back = back && fl_node_saved(n, i, &s) == FL_OK && fl_same_storage(s, sc[i]) && fl_item(s, &v) == FL_OK &&
           v == i + 1;
  }
  CHECK(back, "each saved tensor reads back as the one saved, in order");
  fl_tensor *none = NULL;
  CHECK(n && fl_node_saved(n, N_SAVED, &none) == FL_EAUTOGRAD && contains(fl_last_error(), "Save20Backward") &&
            contains(fl_last_error(), "saved tensor 20 is missing"),
        "reading past the saved list is an error naming the node: %s", fl_last_error());
  OK(fl_backward(l, NULL, true));
  double g[3] = {210, 210, 210};
  CHECK(values_are(fl_grad(x), g, 3, 0), "the backward reads all 20 saved tensors: dy/dx = 1 + 2 + ... + 20");

  /* the in-place check still fires for a saved tensor past the inline slots */
  OK(fl_binary_scalar_(FL_ADD, sc[16], 1));
  CHECK(fl_backward(l, NULL, false) == FL_EAUTOGRAD && contains(fl_last_error(), "Save20Backward") &&
            contains(fl_last_error(), "modified by an in-place operation"),
        "an in-place write to saved tensor 17 is caught at backward: %s", fl_last_error());
  CHECK(values_are(fl_grad(x), g, 3, 0), "the refused backward left .grad alone");

  /* and for an op's own saved input */
  fl_tensor *w = vec3(1, 1, 1, false), *p = NULL;
  OK(fl_binary(FL_MUL, x, w, &p));
  fl_tensor *lp = sum_all(p);
  OK(fl_binary_scalar_(FL_MUL, w, 2));
  CHECK(fl_backward(lp, NULL, false) == FL_EAUTOGRAD && contains(fl_last_error(), "MulBackward") &&
            contains(fl_last_error(), "in-place"),
        "mul's saved operand written in place: %s", fl_last_error());
  for (int i = 0; i < N_SAVED; i++) fl_release(sc[i]);
  fl_release(x), fl_release(y), fl_release(l), fl_release(w), fl_release(p), fl_release(lp);
  CHECK(live_bytes() == base, "the node's saved tensors are freed with it");
}

/* ---- typed contexts ---- */
typedef struct {
  fl_tensor *scale; /* a reference the context owns */
  double pad[16];   /* larger than the inline slot: the heap path */
} big_ctx;

static int ctx_releases;
static void big_ctx_release(void *p) {
  big_ctx *c = p;
  fl_release(c->scale);
  c->scale = NULL;
  ctx_releases++;
}

/* y = x * scale, with scale held by the context rather than saved */
static fl_status scale_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  const big_ctx *c = n->ctx;
  if (c->pad[15] != 15) return fl_error(FL_EAUTOGRAD, "the context's last field was not kept");
  return fl_binary(FL_MUL, gout[0], c->scale, &gin[0]);
}

static fl_tensor *scale_op(const fl_tensor *x, double s) {
  fl_tensor *y = NULL, *sc = scalar(s, false);
  fl_node *n = NULL;
  big_ctx *c = NULL;
  bool prev = fl_set_grad_enabled(false);
  OK(fl_binary(FL_MUL, x, sc, &y));
  fl_set_grad_enabled(prev);
  OK(fl_record("ScaleBackward", scale_backward, 1, &x, y, &n));
  if (n) OK(fl_node_ctx(n, sizeof *c, big_ctx_release, (void **)&c));
  if (c) {
    c->scale = fl_retain(sc);
    c->pad[15] = 15;
  }
  void *again = NULL;
  CHECK(!n || (fl_node_ctx(n, 8, NULL, &again) == FL_EINVAL && contains(fl_last_error(), "ScaleBackward")),
        "a second context on one node is refused: %s", fl_last_error());
  fl_release(sc);
  return y;
}

static void test_contexts(void) {
  int64_t base = live_bytes();
  fl_tensor *x = vec3(1, 2, 3, true), *y = scale_op(x, 4), *l = sum_all(y);
  CHECK(y->grad_fn && y->grad_fn->ctx != (void *)&y->grad_fn->ctx_small, "a large context lives on the heap");
  OK(fl_backward(l, NULL, false));
  double g[3] = {4, 4, 4};
  CHECK(values_are(fl_grad(x), g, 3, 0), "the backward reads the context's reference");
  CHECK(ctx_releases == 1, "a backward without retain_graph releases the context's references");
  fl_release(y), fl_release(l);
  CHECK(ctx_releases == 1, "and freeing the node does not release them twice");
  y = scale_op(x, 4);
  fl_release(y);
  CHECK(ctx_releases == 2, "a graph freed without a backward releases them once");
  fl_tensor *e = NULL;
  OK(fl_unary(FL_EXP, x, &e));
  CHECK(e && e->grad_fn->ctx == (void *)&e->grad_fn->ctx_small, "a small context lives inside the node");
  fl_release(e), fl_release(x);
  CHECK(live_bytes() == base, "nothing leaks");
}

/* ---- two differentiable outputs: y = 2x and z = x*x as one node ---- */
static bool twoout_got[2];
static int twoout_runs;

/* dx = 2 gy + 2 x gz; a NULL gradient is an output the loss does not reach */
static fl_status twoout_backward(fl_node *n, fl_tensor *const *gout, fl_tensor **gin) {
  fl_status st = FL_OK;
  fl_tensor *x, *a = NULL, *b = NULL, *t = NULL, *zy = NULL;
  twoout_runs++;
  twoout_got[0] = gout[0] != NULL, twoout_got[1] = gout[1] != NULL;
  FL_CHECK(fl_node_saved(n, 0, &x));
  if (!gout[0]) FL_CHECK(fl_output_zeros(n, 0, &zy)); /* exercised: zeros shaped like y */
  FL_CHECK(fl_binary_scalar(FL_MUL, gout[0] ? gout[0] : zy, 2, false, &a));
  if (gout[1]) {
    FL_CHECK(fl_binary(FL_MUL, gout[1], x, &t));
    FL_CHECK(fl_binary_scalar(FL_MUL, t, 2, false, &b));
    FL_CHECK(fl_binary(FL_ADD, a, b, &gin[0]));
  } else {
    gin[0] = fl_retain(a);
  }
done:
  fl_release(a), fl_release(b), fl_release(t), fl_release(zy);
  return st;
}

static void twoout(const fl_tensor *x, fl_tensor **y, fl_tensor **z) {
  fl_node *n = NULL;
  bool prev = fl_set_grad_enabled(false);
  OK(fl_binary_scalar(FL_MUL, x, 2, false, y));
  OK(fl_binary(FL_MUL, x, x, z));
  fl_set_grad_enabled(prev);
  fl_tensor *outs[2] = {*y, *z};
  OK(fl_record_outputs("TwoOutBackward", twoout_backward, 1, &x, 2, outs, &n));
  if (n) OK(fl_node_save(n, x));
}

static fl_status times10(void *ud, fl_tensor *grad, fl_tensor **replace) {
  (*(int *)ud)++;
  return fl_binary_scalar(FL_MUL, grad, 10, false, replace);
}
static fl_status seen(void *ud, fl_tensor *grad, fl_tensor **replace) {
  double v[3];
  if (fl_to_doubles(grad, v) == FL_OK && v[0] == 1 && v[1] == 2 && v[2] == 3) (*(int *)ud)++;
  return FL_OK;
}

/* loss = sum(c * y) + sum(d * z) */
static fl_tensor *two_loss(const fl_tensor *y, const fl_tensor *z, const fl_tensor *c, const fl_tensor *d) {
  fl_tensor *cy = NULL, *dz = NULL, *s = NULL;
  OK(fl_binary(FL_MUL, c, y, &cy));
  OK(fl_binary(FL_MUL, d, z, &dz));
  OK(fl_binary(FL_ADD, cy, dz, &s));
  fl_tensor *l = sum_all(s);
  fl_release(cy), fl_release(dz), fl_release(s);
  return l;
}

static void test_two_outputs(void) {
  int64_t base = live_bytes();
  fl_tensor *x = vec3(1, 2, -3, true), *c = vec3(1, 2, 3, false), *d = vec3(0.5, -1, 2, false), *y = NULL, *z = NULL;
  twoout(x, &y, &z);
  CHECK(y->grad_fn && y->grad_fn == z->grad_fn && y->output_nr == 0 && z->output_nr == 1 &&
            !strcmp(fl_grad_fn_name(z), "TwoOutBackward"),
        "y and z are outputs 0 and 1 of one node");
  OK(fl_retain_grad(y));
  OK(fl_retain_grad(z));
  fl_tensor *l = two_loss(y, z, c, d);
  OK(fl_backward(l, NULL, true));
  /* dl/dx = 2c + 2 x d = [2 + 1, 4 - 4, 6 - 12] */
  double gx[3] = {3, 0, -6}, gy[3] = {1, 2, 3}, gz[3] = {0.5, -1, 2};
  CHECK(twoout_runs == 1 && twoout_got[0] && twoout_got[1], "the node runs once, with a gradient for each output");
  CHECK(values_are(fl_grad(x), gx, 3, 1e-12), "dl/dx = 2c + 2xd, both outputs feeding the loss");
  CHECK(values_are(fl_grad(y), gy, 3, 0) && values_are(fl_grad(z), gz, 3, 0), "retain_grad on each output: c and d");

  /* hooks on each output: y's sees c; z's multiplies its gradient by 10 */
  int y_seen = 0, z_calls = 0;
  OK(fl_register_hook(y, seen, &y_seen, NULL));
  OK(fl_register_hook(z, times10, &z_calls, NULL));
  OK(fl_set_grad(x, NULL));
  OK(fl_set_grad(y, NULL));
  OK(fl_set_grad(z, NULL));
  OK(fl_backward(l, NULL, true));
  /* dl/dx = 2c + 2 x (10 d) = [2 + 10, 4 - 40, 6 - 120] */
  double gx10[3] = {12, -36, -114}, gz10[3] = {5, -10, 20};
  CHECK(y_seen == 1 && z_calls == 1, "each output's hook runs once, on its own gradient");
  CHECK(values_are(fl_grad(x), gx10, 3, 1e-12), "z's hook replaces only z's gradient");
  CHECK(values_are(fl_grad(y), gy, 3, 0) && values_are(fl_grad(z), gz10, 3, 0), "retain_grad sees the hooked gradient");

  /* autograd.grad captures each output of the node separately */
  fl_tensor *ins[3] = {z, y, x}, *grads[3] = {NULL, NULL, NULL};
  OK(fl_autograd_grad(1, &l, NULL, 3, ins, true, grads));
  CHECK(values_are(grads[0], gz10, 3, 0) && values_are(grads[1], gy, 3, 0) && values_are(grads[2], gx10, 3, 1e-12),
        "autograd.grad w.r.t. (z, y, x)");
  for (int i = 0; i < 3; i++) fl_release(grads[i]);

  /* only y reaches the loss: the backward gets NULL for z */
  fl_tensor *ly = sum_all(y);
  OK(fl_autograd_grad(1, &ly, NULL, 1, &x, true, grads));
  double two[3] = {2, 2, 2};
  CHECK(twoout_got[0] && !twoout_got[1] && values_are(grads[0], two, 3, 0),
        "a loss of y alone: gout[1] is NULL, dx = 2");
  fl_release(grads[0]);
  /* only z: gout[0] NULL, and fl_output_zeros stands in for it */
  fl_tensor *lz = sum_all(z);
  OK(fl_autograd_grad(1, &lz, NULL, 1, &x, true, grads));
  double gzonly[3] = {20, 40, -60}; /* 2 x * 10 (the hook) */
  CHECK(!twoout_got[0] && twoout_got[1] && values_are(grads[0], gzonly, 3, 1e-12),
        "a loss of z alone: gout[0] is NULL, dx = 2x (times the hook's 10)");
  fl_release(grads[0]);

  /* both outputs as roots of one autograd.grad */
  fl_tensor *outs[2] = {y, z}, *gos[2] = {c, d};
  OK(fl_autograd_grad(2, outs, gos, 1, &x, true, grads));
  CHECK(values_are(grads[0], gx10, 3, 1e-12), "y and z as two roots with gradients c and d");
  fl_release(grads[0]);

  fl_tensor *zc = NULL;
  fl_node *n = y->grad_fn;
  CHECK(fl_output_zeros(n, 1, &zc) == FL_OK && fl_ndim(zc) == 1 && fl_shape(zc)[0] == 3 && fl_dtype_of(zc) == FL_F64,
        "fl_output_zeros takes the output's shape and dtype");
  fl_release(zc);

  /* z outlives y: the node stays, and y's slot forgets y */
  fl_release(y);
  CHECK(n->out[0].tensor == NULL && n->out[1].tensor == z, "a released output is forgotten by its node");
  fl_release(x), fl_release(c), fl_release(d), fl_release(z), fl_release(l), fl_release(ly), fl_release(lz);
  CHECK(live_bytes() == base, "the node is freed with its last output");
}

/* ---- max over a dim: (values, indices) from one node ---- */
static void test_max_dim(void) {
  int64_t base = live_bytes();
  double v[6] = {1, 5, 2, 7, 3, 4};
  int64_t s23[2] = {2, 3};
  fl_tensor *x = from(v, 2, s23, FL_F32, true), *val = NULL, *idx = NULL;
  OK(fl_max_dim(x, 1, false, &val, &idx));
  CHECK(fl_requires_grad(val) && !strcmp(fl_grad_fn_name(val), "MaxBackward") && val->grad_fn->n_out == 2,
        "max's values come from MaxBackward, a two-output node");
  CHECK(!fl_requires_grad(idx) && fl_grad_fn_name(idx) == NULL, "the indices are not differentiable");
  fl_release(idx); /* the node still holds what it saved */
  fl_tensor *l = sum_all(val);
  OK(fl_backward(l, NULL, false));
  double g[6] = {0, 1, 0, 1, 0, 0};
  CHECK(values_are(fl_grad(x), g, 6, 0), "the gradient goes to each row's maximum");
  fl_release(val), fl_release(l);
  OK(fl_min_dim(x, 0, true, &val, NULL));
  CHECK(!strcmp(fl_grad_fn_name(val), "MinBackward") && fl_ndim(val) == 2, "min with keepdim, indices not asked for");
  fl_release(val), fl_release(x);
  CHECK(live_bytes() == base, "nothing leaks");
}

/* ---- a long chain is released (and run) without recursion ---- */
static void test_large_graph(void) {
  int64_t base = live_bytes();
  enum { LEN = 200000 }; /* deep enough that recursion would show */
  fl_tensor *x = scalar(1, true), *y = fl_retain(x);
  bool built = true;
  for (int i = 0; i < LEN && built; i++) {
    fl_tensor *nx = NULL;
    built = fl_binary_scalar(FL_ADD, y, 1, false, &nx) == FL_OK;
    fl_release(y);
    y = nx;
  }
  CHECK(built && !strcmp(fl_grad_fn_name(y), "AddBackward"), "a chain of %d adds", LEN);
  OK(fl_backward(y, NULL, true));
  double one = 1;
  CHECK(values_are(fl_grad(x), &one, 1, 0), "backward through it (iterative engine)");
  fl_release(y);
  CHECK(x->acc && x->acc->refcount == 1, "releasing the chain's head frees every node (iteratively), down to x's");
  fl_release(x);
  CHECK(live_bytes() == base, "all of it");
}

/* ---- a hook that releases the graph mid-backward ---- */
static fl_tensor *held[2];
static fl_status drop_graph(void *ud, fl_tensor *grad, fl_tensor **replace) {
  for (int i = 0; i < 2; i++) {
    fl_release(held[i]);
    held[i] = NULL;
  }
  return FL_OK;
}

static void test_hook_drops_graph(void) {
  int64_t base = live_bytes();
  fl_tensor *x = vec3(1, 2, 3, true), *y = NULL, *m = NULL;
  OK(fl_unary(FL_EXP, x, &y));
  OK(fl_binary_scalar(FL_MUL, y, 3, false, &m));
  fl_tensor *l = sum_all(m);
  fl_release(m);
  held[0] = y, held[1] = l; /* the hook drops the last references to y and the loss */
  OK(fl_register_hook(y, drop_graph, NULL, NULL));
  OK(fl_backward(l, NULL, false));
  double g[3] = {3 * exp(1.0), 3 * exp(2.0), 3 * exp(3.0)};
  CHECK(held[0] == NULL && values_are(fl_grad(x), g, 3, 1e-12),
        "the nodes a hook's releases would free live until the pass ends: dx = 3 exp(x)");
  fl_release(x);
  CHECK(live_bytes() == base, "and are freed when it does");
}

/* ---- a composite op renames its result's node only when it made that node ---- */
static void test_name_composite(void) {
  int64_t base = live_bytes();
  fl_tensor *x = vec3(1, 2, 3, true), *y = NULL, *z = NULL, *none = NULL;
  OK(fl_unary(FL_EXP, x, &y));
  uint64_t mark = fl_node_mark();
  z = fl_retain(y); /* a composite that returns an input as it is (as contiguous does) */
  CHECK(fl_name_composite(FL_OK, mark, "PassBackward", &z) == FL_OK && !strcmp(fl_grad_fn_name(y), "ExpBackward"),
        "an input's node, made before the mark, keeps its name");
  fl_release(z);
  OK(fl_binary_scalar(FL_MUL, y, 2, false, &z));
  OK(fl_name_composite(FL_OK, mark, "TwiceExpBackward", &z));
  CHECK(!strcmp(fl_grad_fn_name(z), "TwiceExpBackward") && !strcmp(fl_grad_fn_name(y), "ExpBackward"),
        "the result's node, made after it, is renamed, and only that node");
  CHECK(fl_name_composite(FL_EINVAL, mark, "FailedBackward", &none) == FL_EINVAL && none == NULL,
        "a failed composite's status passes through and its unset result is not read");
  fl_release(z), fl_release(y);
  /* linear's result is a reshape of its GEMM's */
  double xv[6] = {1, 2, 3, 4, 5, 6}, wv[6] = {1, 0, -1, 2, 1, 0}, bv[2] = {0.5, -0.5};
  int64_t s123[3] = {1, 2, 3}, s23[2] = {2, 3}, s2[1] = {2};
  fl_tensor *x3 = from(xv, 3, s123, FL_F32, true), *w = from(wv, 2, s23, FL_F32, true), *b = from(bv, 1, s2, FL_F32, true);
  OK(fl_linear(x3, w, b, &y));
  double want[4] = {1 - 3 + 0.5, 2 + 2 - 0.5, 4 - 6 + 0.5, 8 + 5 - 0.5};
  CHECK(!strcmp(fl_grad_fn_name(y), "LinearBackward") && values_are(y, want, 4, 0), "linear is LinearBackward");
  fl_release(y), fl_release(x3), fl_release(w), fl_release(b), fl_release(x);
  CHECK(live_bytes() == base, "nothing leaks");
}

int main(void) {
  test_save_many();
  test_contexts();
  test_two_outputs();
  test_max_dim();
  test_large_graph();
  test_hook_drops_graph();
  test_name_composite();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
