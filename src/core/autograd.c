/* Define-by-run autograd: nodes, edges, saved tensors, hooks and the engine.
 *
 * Each differentiable result owns its backward node (grad_fn); a node holds
 * strong references to the nodes of its inputs (edges) and detached aliases of
 * the tensors its backward needs. Leaves own an accumulator node that points
 * back at them weakly. The engine counts dependencies and runs nodes in
 * topological order (Kahn), so a node runs once all of its consumers have
 * delivered their gradient. Backward functions are written with the ordinary
 * ops, so every backend gets autograd for free. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_disabled;

bool fl_grad_enabled(void) { return !grad_disabled; }
bool fl_set_grad_enabled(bool on) {
  bool prev = !grad_disabled;
  grad_disabled = !on;
  return prev;
}

bool fl_needs_grad(int n, const fl_tensor *const *ts) {
  if (grad_disabled) return false;
  for (int i = 0; i < n; i++)
    if (ts[i] && ts[i]->requires_grad) return true;
  return false;
}

/* ---- nodes ---- */
static fl_node *node_alloc(const char *name, int n_in) {
  fl_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->in = n_in ? calloc((size_t)n_in, sizeof *n->in) : NULL;
  if (n_in && !n->in) {
    free(n);
    return NULL;
  }
  n->refcount = 1;
  n->name = name;
  n->n_in = n_in;
  return n;
}

static void free_saved(fl_node *n) {
  for (int i = 0; i < n->n_saved; i++) {
    fl_release(n->saved[i]);
    n->saved[i] = NULL;
  }
}

/* Iterative, so that dropping a graph of a million nodes does not overflow the C stack. */
void fl_node_release(fl_node *n) {
  fl_node *stack_small[64], **stack = stack_small;
  int top = 0, cap = 64;
  if (n) stack[top++] = n;
  while (top > 0) {
    fl_node *x = stack[--top];
    if (--x->refcount > 0) continue;
    for (int i = 0; i < x->n_in; i++) {
      if (!x->in[i].node) continue;
      if (top == cap) {
        fl_node **bigger = malloc(sizeof *bigger * (size_t)cap * 2);
        if (!bigger) continue; /* leak rather than crash */
        memcpy(bigger, stack, sizeof *stack * (size_t)top);
        if (stack != stack_small) free(stack);
        stack = bigger;
        cap *= 2;
      }
      stack[top++] = x->in[i].node;
    }
    free_saved(x);
    fl_release(x->gbuf);
    for (fl_hook *h = x->hooks, *nx; h; h = nx) {
      nx = h->next;
      if (h->free_ud) h->free_ud(h->ud);
      free(h);
    }
    free(x->in);
    free(x);
  }
  if (stack != stack_small) free(stack);
}

static fl_node *leaf_acc(fl_tensor *t) {
  if (!t->acc) {
    t->acc = node_alloc("AccumulateGrad", 0);
    if (t->acc) t->acc->leaf = t;
  }
  return t->acc;
}

/* The node a gradient for t flows into. */
static fl_node *grad_target(const fl_tensor *t) {
  return t->grad_fn ? t->grad_fn : leaf_acc((fl_tensor *)t);
}

fl_status fl_node_new(const char *name, fl_backward_fn bw, int n, const fl_tensor *const *ts, fl_node **out) {
  fl_node *node = node_alloc(name, n);
  if (!node) return fl_error(FL_ENOMEM, "%s: out of host memory for an autograd node", name);
  node->backward = bw;
  for (int i = 0; i < n; i++) {
    const fl_tensor *t = ts[i];
    if (!t) continue;
    fl_edge *e = &node->in[i];
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->dtype = t->dtype;
    if (t->requires_grad) {
      e->node = grad_target(t);
      if (!e->node) {
        fl_node_release(node);
        return fl_error(FL_ENOMEM, "%s: out of host memory for an autograd node", name);
      }
      e->node->refcount++;
    }
  }
  *out = node;
  return FL_OK;
}

void fl_node_save(fl_node *n, const fl_tensor *t) {
  if (n->n_saved >= FL_NODE_MAX_SAVED) return;
  /* A detached alias: saving an op's own output must not create a cycle. */
  n->saved[n->n_saved] = fl_alias(t, t->ndim, t->shape, t->stride, t->offset);
  n->saved_version[n->n_saved] = t->storage->version;
  n->n_saved++;
}

fl_status fl_node_saved(fl_node *n, int i, fl_tensor **out) {
  if (i >= n->n_saved || !n->saved[i])
    return fl_error(FL_EAUTOGRAD, "%s: saved tensor %d is missing (out of memory when recording?)", n->name, i);
  if (n->saved[i]->storage->version != n->saved_version[i])
    return fl_error(FL_EAUTOGRAD,
                    "%s: a tensor needed for the gradient was modified by an in-place operation "
                    "(version %llu, saved at %llu)",
                    n->name, (unsigned long long)n->saved[i]->storage->version,
                    (unsigned long long)n->saved_version[i]);
  *out = n->saved[i];
  return FL_OK;
}

void fl_node_attach(fl_node *n, fl_tensor *out) {
  out->grad_fn = n;
  out->requires_grad = true;
  n->out = out;
}

fl_status fl_record(const char *name, fl_backward_fn bw, int n, const fl_tensor *const *ts, fl_tensor *out,
                    fl_node **node) {
  if (node) *node = NULL;
  if (!fl_needs_grad(n, ts)) return FL_OK;
  fl_node *nd;
  FL_TRY(fl_node_new(name, bw, n, ts, &nd));
  fl_node_attach(nd, out);
  if (node) *node = nd;
  return FL_OK;
}

fl_status fl_check_inplace(const char *op, const fl_tensor *t, const fl_tensor *src) {
  bool overlaps = false; /* a 0 stride over several elements: one write per element would race (as in PyTorch) */
  for (int i = 0; i < t->ndim; i++) overlaps |= t->stride[i] == 0 && t->shape[i] > 1;
  if (overlaps && fl_numel(t) > 0) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EINVAL,
                    "%s: cannot write in place to %s: it is an expanded view, so several of its elements share one "
                    "memory location (clone it first)",
                    op, d.s);
  }
  if (grad_disabled) return FL_OK;
  if (t->requires_grad) {
    fl_desc d = fl_describe(t);
    if (!t->grad_fn)
      return fl_error(FL_EAUTOGRAD, "%s: in-place operation on a leaf %s that requires grad (use flame.no_grad)", op, d.s);
    return fl_error(FL_EAUTOGRAD,
                    "%s: in-place operation on %s, which is part of an autograd graph, is not supported "
                    "(use the out-of-place form)",
                    op, d.s);
  }
  if (src && src->requires_grad) { /* the write would drop src's gradient silently */
    fl_desc ds = fl_describe(src);
    return fl_error(FL_EAUTOGRAD,
                    "%s: the source %s requires grad, but in-place writes are not recorded by autograd "
                    "(use the out-of-place form, or flame.no_grad)",
                    op, ds.s);
  }
  return FL_OK;
}

void fl_autograd_tensor_freed(fl_tensor *t) {
  if (t->grad_fn) {
    if (t->grad_fn->out == t) t->grad_fn->out = NULL;
    fl_node_release(t->grad_fn);
  }
  if (t->acc) {
    t->acc->leaf = NULL;
    fl_node_release(t->acc);
  }
}

/* ---- tensor-level API ---- */
bool fl_requires_grad(const fl_tensor *t) { return t->requires_grad; }
bool fl_is_leaf(const fl_tensor *t) { return t->grad_fn == NULL; }
fl_tensor *fl_grad(const fl_tensor *t) { return t->grad; }
const char *fl_grad_fn_name(const fl_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }

fl_status fl_set_requires_grad(fl_tensor *t, bool on) {
  fl_desc d = fl_describe(t);
  if (t->grad_fn && !on)
    return fl_error(FL_EAUTOGRAD, "requires_grad: cannot turn it off on a non-leaf %s (use detach)", d.s);
  if (on && !fl_dtype_is_float(t->dtype))
    return fl_error(FL_EDTYPE, "requires_grad: only floating-point tensors can require grad, got %s", d.s);
  if (!t->grad_fn) t->requires_grad = on;
  return FL_OK;
}

fl_status fl_set_grad(fl_tensor *t, fl_tensor *g) {
  if (g) {
    if (!fl_same_shape(t, g) || !fl_device_eq(t->storage->device, g->storage->device) || g->dtype != t->dtype) {
      fl_desc a = fl_describe(g), b = fl_describe(t);
      return fl_error(FL_EINVAL, "grad: assigned gradient %s does not match the tensor %s", a.s, b.s);
    }
    /* .grad links are the only tensor-to-tensor references: refuse one that closes a cycle, which would leak */
    for (const fl_tensor *c = g; c; c = c->grad)
      if (c == t) {
        fl_desc b = fl_describe(t);
        return fl_error(FL_EINVAL, "grad: assigning %s as its own gradient (directly or through .grad links) would make a reference cycle", b.s);
      }
    fl_retain(g);
  }
  fl_release(t->grad);
  t->grad = g;
  return FL_OK;
}

fl_status fl_retain_grad(fl_tensor *t) {
  if (!t->requires_grad) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EAUTOGRAD, "retain_grad: %s does not require grad", d.s);
  }
  t->retains_grad = true;
  return FL_OK;
}

fl_status fl_register_hook(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *)) {
  if (!t->requires_grad) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EAUTOGRAD, "register_hook: %s does not require grad", d.s);
  }
  fl_node *n = grad_target(t);
  fl_hook *h = calloc(1, sizeof *h);
  if (!n || !h) {
    free(h);
    return fl_error(FL_ENOMEM, "register_hook: out of host memory");
  }
  h->fn = fn;
  h->ud = ud;
  h->free_ud = free_ud;
  fl_hook **p = &n->hooks; /* hooks run in registration order */
  while (*p) p = &(*p)->next;
  *p = h;
  return FL_OK;
}

/* ---- the engine ---- */
typedef struct {
  fl_node **v;
  int n, cap;
} nodevec;

static bool vec_push(nodevec *s, fl_node *x) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    fl_node **v = realloc(s->v, sizeof *v * (size_t)cap);
    if (!v) return false;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
  return true;
}

static int epoch;

/* Finds every node reachable from the roots and counts its consumers. */
static fl_status collect(int n_roots, fl_node *const *roots, nodevec *all) {
  nodevec stack = {0};
  epoch++;
  fl_status st = FL_OK;
  for (int r = 0; r < n_roots; r++) {
    fl_node *x = roots[r];
    if (x->mark == epoch) continue;
    x->mark = epoch;
    x->deps = 0;
    if (!vec_push(&stack, x) || !vec_push(all, x)) st = FL_ENOMEM;
  }
  while (st == FL_OK && stack.n > 0) {
    fl_node *x = stack.v[--stack.n];
    for (int i = 0; i < x->n_in; i++) {
      fl_node *c = x->in[i].node;
      if (!c) continue;
      if (c->mark != epoch) {
        c->mark = epoch;
        c->deps = 0;
        fl_release(c->gbuf);
        c->gbuf = NULL;
        if (!vec_push(&stack, c) || !vec_push(all, c)) st = FL_ENOMEM;
      }
      c->deps++;
    }
  }
  free(stack.v);
  return st == FL_OK ? FL_OK : fl_error(FL_ENOMEM, "backward: out of host memory while sorting the graph");
}

/* dst <- dst + g (out of place: gradients may be shared by several consumers). */
static fl_status accumulate(fl_tensor **dst, fl_tensor *g) {
  if (!*dst) {
    *dst = fl_retain(g);
    return FL_OK;
  }
  fl_tensor *s;
  FL_TRY(fl_binary(FL_ADD, *dst, g, &s));
  fl_release(*dst);
  *dst = s;
  return FL_OK;
}

/* Shape and dtype of a gradient are made to match its input: broadcasting and
 * type promotion are undone here, once, for every op. */
static fl_status fit_to_edge(const fl_edge *e, fl_tensor *g, fl_tensor **out) {
  fl_tensor *r;
  FL_TRY(fl_sum_to_shape(g, e->ndim, e->shape, &r));
  if (r->dtype != e->dtype && fl_dtype_is_float(e->dtype)) {
    fl_tensor *c;
    fl_status st = fl_cast(r, e->dtype, &c);
    fl_release(r);
    FL_TRY(st);
    r = c;
  }
  *out = r;
  return FL_OK;
}

static fl_status run_hooks(fl_node *x, fl_tensor **g) {
  for (fl_hook *h = x->hooks; h; h = h->next) {
    fl_tensor *rep = NULL;
    FL_TRY(h->fn(h->ud, *g, &rep));
    if (rep) {
      /* a replacement keeps the gradient's shape, dtype and device (as .grad = does) */
      if (!fl_same_shape(rep, *g) || rep->dtype != (*g)->dtype ||
          !fl_device_eq(rep->storage->device, (*g)->storage->device)) {
        fl_desc a = fl_describe(rep), b = fl_describe(*g);
        fl_release(rep);
        return fl_error(FL_EAUTOGRAD, "hook: returned gradient %s does not match the gradient %s it replaces", a.s,
                        b.s);
      }
      fl_release(*g);
      *g = rep;
    }
  }
  return FL_OK;
}

static fl_status store_leaf_grad(fl_tensor *leaf, fl_tensor *g) {
  if (!leaf->grad) {
    /* The engine may hand the same tensor to several places; .grad must be private. */
    if (g->refcount > 1 || g->storage->refcount > 1 || !fl_is_contiguous(g)) return fl_clone(g, &leaf->grad);
    leaf->grad = fl_retain(g);
    return FL_OK;
  }
  return accumulate(&leaf->grad, g);
}

typedef struct {
  int n;
  fl_node *const *nodes;
  fl_tensor **grads;
} capture;

static fl_status run_node(fl_node *x, fl_tensor *g, bool retain, bool to_leaves, capture *cap, nodevec *ready) {
  fl_status st = FL_OK;
  fl_tensor **grads = NULL;
  if (g) {
    FL_CHECK(run_hooks(x, &g));
    if (x->out && x->out->retains_grad) FL_CHECK(accumulate(&x->out->grad, g));
    for (int k = 0; cap && k < cap->n; k++)
      if (cap->nodes[k] == x) FL_CHECK(accumulate(&cap->grads[k], g));
    if (!x->backward) { /* an accumulator */
      if (to_leaves && x->leaf) FL_CHECK(store_leaf_grad(x->leaf, g));
    } else {
      if (x->released)
        FL_CHECK(fl_error(FL_EAUTOGRAD,
                          "backward: trying to backward through the graph a second time (%s): its saved tensors "
                          "were freed; pass retain_graph = true to the first backward",
                          x->name));
      grads = calloc((size_t)x->n_in + 1, sizeof *grads);
      if (!grads) FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
      FL_CHECK(fl_error_context(x->backward(x, g, grads), x->name));
      for (int i = 0; i < x->n_in; i++) {
        fl_edge *e = &x->in[i];
        if (!e->node || !grads[i]) continue;
        fl_tensor *fit = NULL;
        FL_CHECK(fl_error_context(fit_to_edge(e, grads[i], &fit), x->name));
        st = accumulate(&e->node->gbuf, fit);
        fl_release(fit);
        if (st != FL_OK) goto done;
      }
      if (!retain) {
        free_saved(x);
        x->released = true;
      }
    }
  }
  for (int i = 0; i < x->n_in; i++) {
    fl_node *c = x->in[i].node;
    if (c && --c->deps == 0 && !vec_push(ready, c)) FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
  }
done:
  if (grads)
    for (int i = 0; i < x->n_in; i++) fl_release(grads[i]);
  free(grads);
  fl_release(g);
  return st;
}

static fl_status engine(int n_roots, fl_node *const *roots, fl_tensor *const *root_grads, bool retain, bool to_leaves,
                        capture *cap) {
  nodevec all = {0}, ready = {0};
  static _Thread_local bool running;
  if (running) /* the marks and partial sums of the outer pass would be overwritten */
    return fl_error(FL_EAUTOGRAD, "backward: cannot start a backward pass from a hook of another one");
  running = true;
  bool prev = fl_set_grad_enabled(false);
  fl_status st = collect(n_roots, roots, &all);
  /* Hooks run Lua code that may drop the graph's last references (a tensor
   * released by <close>): every node stays alive until the pass returns. */
  for (int i = 0; i < all.n; i++) all.v[i]->refcount++;
  for (int r = 0; st == FL_OK && r < n_roots; r++) st = accumulate(&roots[r]->gbuf, root_grads[r]);
  for (int r = 0; st == FL_OK && r < n_roots; r++)
    if (roots[r]->deps == 0 && roots[r]->mark == epoch) {
      roots[r]->mark = -1; /* queued once even if listed twice */
      if (!vec_push(&ready, roots[r])) st = fl_error(FL_ENOMEM, "backward: out of host memory");
    }
  while (st == FL_OK && ready.n > 0) {
    fl_node *x = ready.v[--ready.n];
    fl_tensor *g = x->gbuf;
    x->gbuf = NULL;
    st = run_node(x, g, retain, to_leaves, cap, &ready);
  }
  for (int i = 0; i < all.n; i++) { /* drop partial sums left by an error */
    fl_release(all.v[i]->gbuf);
    all.v[i]->gbuf = NULL;
  }
  for (int i = 0; i < all.n; i++) fl_node_release(all.v[i]);
  fl_set_grad_enabled(prev);
  running = false;
  free(all.v);
  free(ready.v);
  return st;
}

static fl_status root_grad(const char *op, fl_tensor *out, fl_tensor *grad, fl_tensor **g) {
  fl_desc d = fl_describe(out);
  if (!out->requires_grad)
    return fl_error(FL_EAUTOGRAD, "%s: %s does not require grad and has no grad_fn", op, d.s);
  if (grad) {
    if (!fl_same_shape(grad, out)) {
      fl_desc dg = fl_describe(grad);
      return fl_error(FL_ESHAPE, "%s: gradient %s does not match output %s", op, dg.s, d.s);
    }
    FL_TRY(fl_check_same_device(op, out, grad));
    if (grad->dtype != out->dtype) return fl_cast(grad, out->dtype, g); /* as every gradient is fit to its input */
    *g = fl_retain(grad);
    return FL_OK;
  }
  if (fl_numel(out) != 1)
    return fl_error(FL_EINVAL, "%s: grad can be implicit only for a single-element output, got %s", op, d.s);
  fl_opts o = {out->dtype, out->storage->device, false};
  return fl_ones(out->ndim, out->shape, o, g);
}

fl_status fl_backward(fl_tensor *out, fl_tensor *grad, bool retain_graph) {
  fl_tensor *g;
  FL_TRY(root_grad("backward", out, grad, &g));
  fl_node *root = grad_target(out);
  fl_status st = root ? engine(1, &root, &g, retain_graph, true, NULL) : fl_error(FL_ENOMEM, "backward: out of memory");
  fl_release(g);
  return st;
}

fl_status fl_autograd_grad(int n_out, fl_tensor *const *outputs, fl_tensor *const *grad_outputs, int n_in,
                           fl_tensor *const *inputs, bool retain_graph, fl_tensor **grads) {
  fl_status st = FL_OK;
  fl_node **roots = calloc((size_t)n_out + 1, sizeof *roots);
  fl_node **targets = calloc((size_t)n_in + 1, sizeof *targets);
  fl_tensor **gs = calloc((size_t)n_out + 1, sizeof *gs);
  for (int i = 0; i < n_in; i++) grads[i] = NULL;
  if (!roots || !targets || !gs) FL_CHECK(fl_error(FL_ENOMEM, "autograd.grad: out of host memory"));
  for (int i = 0; i < n_in; i++) {
    if (!inputs[i]->requires_grad) {
      fl_desc d = fl_describe(inputs[i]);
      FL_CHECK(fl_error(FL_EAUTOGRAD, "autograd.grad: input %d (%s) does not require grad", i, d.s));
    }
    targets[i] = grad_target(inputs[i]);
  }
  for (int i = 0; i < n_out; i++) {
    FL_CHECK(root_grad("autograd.grad", outputs[i], grad_outputs ? grad_outputs[i] : NULL, &gs[i]));
    roots[i] = grad_target(outputs[i]);
  }
  capture cap = {n_in, targets, grads};
  st = engine(n_out, roots, gs, retain_graph, false, &cap);
  if (st != FL_OK)
    for (int i = 0; i < n_in; i++) {
      fl_release(grads[i]);
      grads[i] = NULL;
    }
done:
  for (int i = 0; gs && i < n_out; i++) fl_release(gs[i]);
  free(gs);
  free(roots);
  free(targets);
  return st;
}
