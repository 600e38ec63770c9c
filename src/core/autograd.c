/* Define-by-run autograd, the graph's records: nodes, edges, outputs, saved
 * tensors, typed contexts, hooks and grad mode.
 *
 * Each differentiable result owns a reference to its backward node (grad_fn)
 * and knows which of the node's outputs it is; a node holds strong references
 * to the nodes of its inputs (edges) and detached aliases of the tensors its
 * backward needs. Leaves own an accumulator node that points back at them
 * weakly. Nothing here calls an op: the backward pass, which does, is
 * src/autograd/engine.c. */
#include "context.h"
#include <stdlib.h>
#include <string.h>

/* Grad mode is the current context's (per thread for the default context). */
bool fl_grad_enabled(void) { return !*fl_ctx_grad_disabled(); }
bool fl_set_grad_enabled(bool on) {
  bool *d = fl_ctx_grad_disabled(), prev = !*d;
  *d = !on;
  return prev;
}

/* A backward function that runs a backward pass of its own (flame.utils.checkpoint's recomputation)
 * says so around it; the engine then accepts the nested pass on a graph disjoint from the outer one. */
static _Thread_local bool nested_backward;
bool fl_nested_backward_allowed(void) { return nested_backward; }
bool fl_allow_nested_backward(bool on) {
  bool prev = nested_backward;
  nested_backward = on;
  return prev;
}

bool fl_needs_grad(int n, const fl_tensor *const *ts) {
  if (*fl_ctx_grad_disabled()) return false;
  for (int i = 0; i < n; i++)
    if (ts[i] && ts[i]->requires_grad) return true;
  return false;
}

/* ---- nodes ---- */
/* Nodes made so far, process-wide: every node that exists before a mark has seq <= mark. */
static _Atomic uint64_t node_count;

uint64_t fl_node_mark(void) { return atomic_load(&node_count); }

fl_status fl_name_composite(fl_status st, uint64_t mark, const char *name, fl_tensor *const *out) {
  fl_node *n = st == FL_OK ? (*out)->grad_fn : NULL;
  if (n && n->seq > mark) n->name = name;
  return st;
}

static fl_node *node_alloc(const char *name, int n_in, int n_out) {
  fl_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->in = n_in ? calloc((size_t)n_in, sizeof *n->in) : NULL;
  n->out = n_out > 1 ? calloc((size_t)n_out, sizeof *n->out) : &n->out1;
  if ((n_in && !n->in) || !n->out) {
    free(n->in);
    free(n);
    return NULL;
  }
  n->refcount = 1;
  n->name = name;
  n->seq = atomic_fetch_add(&node_count, 1) + 1;
  n->n_in = n_in;
  n->n_out = n_out;
  n->saved = n->saved_small;
  n->cap_saved = FL_NODE_INLINE_SAVED;
  return n;
}

void fl_node_free_saved(fl_node *n) {
  for (int i = 0; i < n->n_saved; i++) {
    fl_release(n->saved[i].t);
    n->saved[i].t = NULL;
  }
  if (n->ctx_release) n->ctx_release(n->ctx);
  n->ctx_release = NULL;
}

static void free_hooks(fl_hook *h) {
  for (fl_hook *nx; h; h = nx) {
    nx = h->next;
    if (h->free_ud) h->free_ud(h->ud);
    free(h);
  }
}

/* Frees one node whose refcount reached 0 (its inputs are released by the caller). */
static void node_free(fl_node *x) {
  fl_node_free_saved(x);
  for (int k = 0; k < x->n_out; k++) {
    fl_release(x->out[k].gbuf);
    free_hooks(x->out[k].hooks);
  }
  free_hooks(x->post_hooks);
  if (x->saved != x->saved_small) free(x->saved);
  if (x->ctx != (void *)&x->ctx_small) free(x->ctx);
  if (x->out != &x->out1) free(x->out);
  free(x->in);
  free(x);
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
    node_free(x);
  }
  if (stack != stack_small) free(stack);
}

fl_node *fl_grad_target(const fl_tensor *t, int *output_nr) {
  *output_nr = t->grad_fn ? t->output_nr : 0;
  if (t->grad_fn) return t->grad_fn;
  if (!t->acc) {
    fl_tensor *leaf = (fl_tensor *)t;
    leaf->acc = node_alloc("AccumulateGrad", 0, 1);
    if (leaf->acc) leaf->acc->leaf = leaf;
  }
  return t->acc;
}

static fl_status node_new(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, int n_out,
                          fl_node **out) {
  fl_node *node = node_alloc(name, n_in, n_out);
  if (!node) return fl_error(FL_ENOMEM, "%s: out of host memory for an autograd node", name);
  node->backward = bw;
  for (int i = 0; i < n_in; i++) {
    const fl_tensor *t = ins[i];
    if (!t) continue;
    fl_edge *e = &node->in[i];
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->dtype = t->dtype;
    if (t->requires_grad) {
      e->node = fl_grad_target(t, &e->output_nr);
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

/* t becomes output k of n, holding one reference to it. */
static void attach(fl_node *n, int k, fl_tensor *t) {
  fl_node_out *o = &n->out[k];
  t->grad_fn = n;
  t->output_nr = k;
  t->requires_grad = true;
  o->tensor = t;
  o->ndim = t->ndim;
  memcpy(o->shape, t->shape, sizeof o->shape);
  o->dtype = t->dtype;
  o->device = t->storage->device;
  o->differentiable = true;
}

fl_status fl_record_outputs(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, int n_out,
                            fl_tensor *const *outs, fl_node **node) {
  if (node) *node = NULL;
  if (!fl_needs_grad(n_in, ins)) return FL_OK;
  fl_node *nd = NULL;
  FL_TRY(node_new(name, bw, n_in, ins, n_out, &nd));
  int attached = 0;
  for (int k = 0; k < n_out; k++) {
    if (!outs[k]) continue;
    if (attached++) nd->refcount++; /* the first takes over the creation reference */
    attach(nd, k, outs[k]);
  }
  if (!attached) { /* nothing differentiable came out */
    fl_node_release(nd);
    return FL_OK;
  }
  if (node) *node = nd;
  return FL_OK;
}

fl_status fl_record(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, fl_tensor *out,
                    fl_node **node) {
  return fl_record_outputs(name, bw, n_in, ins, 1, &out, node);
}

fl_status fl_node_save(fl_node *n, const fl_tensor *t) {
  if (n->n_saved == n->cap_saved) {
    int cap = n->cap_saved * 2;
    fl_saved *v = n->saved == n->saved_small ? malloc(sizeof *v * (size_t)cap)
                                             : realloc(n->saved, sizeof *v * (size_t)cap);
    if (!v) return fl_error(FL_ENOMEM, "%s: out of host memory saving tensor %d for backward", n->name, n->n_saved);
    if (n->saved == n->saved_small) memcpy(v, n->saved_small, sizeof n->saved_small);
    n->saved = v;
    n->cap_saved = cap;
  }
  /* A detached alias: saving an op's own output must not create a cycle. */
  fl_tensor *a = fl_alias(t, t->ndim, t->shape, t->stride, t->offset);
  if (!a) return fl_error(FL_ENOMEM, "%s: out of host memory saving tensor %d for backward", n->name, n->n_saved);
  n->saved[n->n_saved].t = a;
  n->saved[n->n_saved].version = t->storage->version;
  n->n_saved++;
  return FL_OK;
}

fl_status fl_node_saved(fl_node *n, int i, fl_tensor **out) {
  if (i < 0 || i >= n->n_saved || !n->saved[i].t)
    return fl_error(FL_EAUTOGRAD, "%s: saved tensor %d is missing", n->name, i);
  fl_saved *s = &n->saved[i];
  if (s->t->storage->version != s->version)
    return fl_error(FL_EAUTOGRAD,
                    "%s: a tensor needed for the gradient was modified by an in-place operation "
                    "(version %llu, saved at %llu)",
                    n->name, (unsigned long long)s->t->storage->version, (unsigned long long)s->version);
  *out = s->t;
  return FL_OK;
}

fl_status fl_node_ctx(fl_node *n, size_t size, fl_ctx_release_fn release, void **ctx) {
  if (n->ctx) return fl_error(FL_EINVAL, "%s: the node already has a context", n->name);
  void *p = size <= sizeof n->ctx_small ? (void *)&n->ctx_small : malloc(size);
  if (!p) return fl_error(FL_ENOMEM, "%s: out of host memory for a %zu-byte autograd context", n->name, size);
  memset(p, 0, size);
  n->ctx = p;
  n->ctx_release = release;
  *ctx = p;
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
  if (*fl_ctx_grad_disabled()) return FL_OK;
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
    fl_node_out *o = &t->grad_fn->out[t->output_nr];
    if (o->tensor == t) o->tensor = NULL;
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
  if (t->grad_fn && !on)
    return fl_error(FL_EAUTOGRAD, "requires_grad: cannot turn it off on a non-leaf %s (use detach)", fl_describe(t).s);
  if (on && !fl_dtype_is_float(t->dtype))
    return fl_error(FL_EDTYPE, "requires_grad: only floating-point tensors can require grad, got %s", fl_describe(t).s);
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

/* Appends a hook to *list (hooks run in registration order). */
static fl_status add_hook(const char *op, fl_hook **list, fl_hook_fn fn, void *ud, void (*free_ud)(void *)) {
  fl_hook *h = calloc(1, sizeof *h);
  if (!h) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
  h->fn = fn;
  h->ud = ud;
  h->free_ud = free_ud;
  while (*list) list = &(*list)->next;
  *list = h;
  return FL_OK;
}

static fl_status needs_grad(const char *op, const fl_tensor *t) {
  if (t->requires_grad) return FL_OK;
  fl_desc d = fl_describe(t);
  return fl_error(FL_EAUTOGRAD, "%s: %s does not require grad", op, d.s);
}

fl_status fl_register_hook(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *)) {
  FL_TRY(needs_grad("register_hook", t));
  int k;
  fl_node *n = fl_grad_target(t, &k);
  if (!n) return fl_error(FL_ENOMEM, "register_hook: out of host memory");
  return add_hook("register_hook", &n->out[k].hooks, fn, ud, free_ud);
}

fl_status fl_register_post_accumulate_grad_hook(fl_tensor *t, fl_hook_fn fn, void *ud, void (*free_ud)(void *)) {
  static const char op[] = "register_post_accumulate_grad_hook";
  FL_TRY(needs_grad(op, t));
  if (t->grad_fn) {
    fl_desc d = fl_describe(t);
    return fl_error(FL_EAUTOGRAD, "%s: %s is not a leaf (only a leaf's gradient is accumulated into .grad)", op, d.s);
  }
  int k;
  fl_node *n = fl_grad_target(t, &k);
  if (!n) return fl_error(FL_ENOMEM, "%s: out of host memory", op);
  return add_hook(op, &n->post_hooks, fn, ud, free_ud);
}
