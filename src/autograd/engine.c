/* The backward pass: fl_backward and fl_autograd_grad.
 *
 * This layer sits above the op front-ends, because it calls them (backward
 * functions are written with the ordinary ops, and gradients are summed, cast
 * and reduced with them); the graph's records it walks are src/core/autograd.c.
 *
 * The engine counts each node's consumers and runs nodes in topological order
 * (Kahn), so a node runs once all of its consumers have delivered their
 * gradients. It buffers one gradient per node output and hands the backward
 * function one gradient per output (NULL where none arrived). */
#include "internal.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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

static void drop_gbufs(fl_node *x) {
  for (int k = 0; k < x->n_out; k++) {
    fl_release(x->out[k].gbuf);
    x->out[k].gbuf = NULL;
  }
}

/* Pass epochs are drawn from one counter: passes on several threads (several states) never share one. */
static atomic_int epoch_counter;
static _Thread_local int epoch;
/* The epochs of the passes running on this thread (outer first): a nested pass must not reach their nodes. */
#define MAX_NESTED_PASSES 32
static _Thread_local int active_epochs[MAX_NESTED_PASSES], n_active;

static bool in_outer_pass(const fl_node *x) {
  for (int i = 0; i < n_active - 1; i++)
    if (x->mark == active_epochs[i]) return true;
  return false;
}

/* Visits x once per pass: resets its scratch and queues it for the walk. The
 * pass holds a reference to every node it visits, so that a hook releasing the
 * graph's tensors cannot free a node the pass will still run. */
static bool visit(fl_node *x, nodevec *stack, nodevec *all) {
  if (x->mark == epoch) return true;
  if (in_outer_pass(x)) return false;
  if (!vec_push(all, x)) return false;
  x->refcount++;
  x->mark = epoch;
  x->deps = 0;
  drop_gbufs(x);
  return vec_push(stack, x);
}

static fl_status visit_error(const fl_node *x) {
  if (in_outer_pass(x))
    return fl_error(FL_EAUTOGRAD,
                    "backward: a nested backward pass (flame.utils.checkpoint's recomputation) reaches %s, which "
                    "the outer pass also uses: pass the tensor to the checkpointed function as an argument, and "
                    "do not use its parameters outside it",
                    x->name ? x->name : "a leaf's gradient accumulator");
  return fl_error(FL_ENOMEM, "backward: out of host memory while sorting the graph");
}

/* Finds every node reachable from the roots and counts its consumers. */
static fl_status collect(int n_roots, fl_node *const *roots, nodevec *all) {
  fl_status st = FL_OK;
  nodevec stack = {0};
  epoch = atomic_fetch_add(&epoch_counter, 1) + 1;
  active_epochs[n_active - 1] = epoch;
  for (int r = 0; r < n_roots; r++)
    if (!visit(roots[r], &stack, all)) FL_CHECK(visit_error(roots[r]));
  while (stack.n > 0) {
    fl_node *x = stack.v[--stack.n];
    for (int i = 0; i < x->n_in; i++) {
      fl_node *c = x->in[i].node;
      if (!c) continue;
      if (!visit(c, &stack, all)) FL_CHECK(visit_error(c));
      c->deps++;
    }
  }
done:
  free(stack.v);
  return st;
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

/* Sums g down to shape: the one gradient reduction for broadcast inputs. */
static fl_status sum_to_shape(const fl_tensor *g, int ndim, const int64_t *shape, fl_tensor **out) {
  if (g->ndim == ndim && !memcmp(g->shape, shape, sizeof(int64_t) * ndim)) {
    *out = fl_retain((fl_tensor *)g);
    return FL_OK;
  }
  char sa[128], sb[128];
  int lead = g->ndim - ndim;
  if (lead < 0)
    return fl_error(FL_ESHAPE, "gradient of shape %s has fewer dims than input shape %s",
                    fl_shape_str(g, sa, sizeof sa), fl_dims_str(ndim, shape, sb, sizeof sb));
  uint32_t mask = 0;
  for (int i = 0; i < g->ndim; i++) {
    int j = i - lead;
    if (j < 0 || (shape[j] == 1 && g->shape[i] != 1)) mask |= 1u << i;
    else if (shape[j] != g->shape[i])
      return fl_error(FL_ESHAPE, "gradient of shape %s cannot be reduced to input shape %s",
                      fl_shape_str(g, sa, sizeof sa), fl_dims_str(ndim, shape, sb, sizeof sb));
  }
  fl_status st = FL_OK;
  fl_tensor *s = NULL;
  if (mask) FL_CHECK(fl_sum(g, mask, true, &s));
  else s = fl_retain((fl_tensor *)g);
  FL_CHECK(fl_reshape(s, ndim, shape, out));
done:
  fl_release(s);
  return st;
}

/* Shape and dtype of a gradient are made to match its input: broadcasting and
 * type promotion are undone here, once, for every op. */
static fl_status fit_to_edge(const fl_edge *e, fl_tensor *g, fl_tensor **out) {
  fl_status st = FL_OK;
  fl_tensor *r = NULL;
  FL_CHECK(sum_to_shape(g, e->ndim, e->shape, &r));
  if (r->dtype != e->dtype && fl_dtype_is_float(e->dtype)) FL_CHECK(fl_cast(r, e->dtype, out));
  else *out = fl_retain(r);
done:
  fl_release(r);
  return st;
}

/* A gradient the caller handed in (backward's grad, a hook's replacement) enters
 * the pass as a fresh header over the same memory, with no autograd state: the
 * engine may store it as .grad (retain_grad, leaves), and the caller's tensor
 * itself stored there could close a cycle of references (y:retain_grad();
 * y:backward(y) made y.grad = y, which no collector frees). */
static fl_status own_header(const char *op, fl_tensor *t, fl_tensor **out) {
  *out = fl_alias(t, t->ndim, t->shape, t->stride, t->offset);
  return *out ? FL_OK : fl_error(FL_ENOMEM, "%s: out of host memory", op);
}

static fl_status run_hooks(fl_hook *hooks, fl_tensor **g) {
  for (fl_hook *h = hooks; h; h = h->next) {
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
      fl_status st = own_header("hook", rep, g);
      fl_release(rep);
      FL_TRY(st);
    }
  }
  return FL_OK;
}

static fl_status store_leaf_grad(fl_tensor *leaf, fl_tensor *g) {
  if (!leaf->grad) {
    /* The engine may hand the same tensor to several places; .grad must be private, and never the host's
     * memory (a hook's from_blob replacement), which in-place work on .grad (zero_) would write. */
    if (g->refcount > 1 || g->storage->refcount > 1 || g->storage->external || !fl_is_contiguous(g))
      return fl_clone(g, &leaf->grad);
    leaf->grad = fl_retain(g);
    return FL_OK;
  }
  /* In place, as PyTorch's AccumulateGrad (no graph is built through .grad here: grad mode is off): .grad keeps
   * its memory, so a gradient that lives in a larger buffer (DistributedDataParallel's bucket) accumulates there,
   * with no new tensor. Not into memory that overlaps itself (an expanded .grad), the host's (from_blob), or a
   * .grad that is itself differentiable. */
  if (fl_is_contiguous(leaf->grad) && !leaf->grad->storage->external && !leaf->grad->requires_grad) return fl_binary_(FL_ADD, leaf->grad, g);
  return accumulate(&leaf->grad, g);
}

/* The leaf's post-accumulate hooks, once its .grad is stored. */
static fl_status run_post_hooks(fl_node *x) {
  for (fl_hook *h = x->post_hooks; h && x->leaf; h = h->next) {
    fl_tensor *rep = NULL;
    FL_TRY(h->fn(h->ud, x->leaf, &rep));
    if (rep) {
      fl_release(rep);
      return fl_error(FL_EAUTOGRAD, "post-accumulate grad hook: must return nothing (it reads and may change .grad)");
    }
  }
  return FL_OK;
}

/* autograd.grad's targets: (node, output) pairs whose gradients are captured. */
typedef struct {
  int n;
  fl_node *const *nodes;
  const int *outs;
  fl_tensor **grads;
} capture;

/* What every output's gradient goes through before the node runs: its hooks,
 * retain_grad, and autograd.grad's capture. */
static fl_status observe(fl_node *x, int k, fl_tensor **g, const capture *cap) {
  fl_node_out *o = &x->out[k];
  FL_TRY(run_hooks(o->hooks, g));
  if (o->tensor && o->tensor->retains_grad) FL_TRY(accumulate(&o->tensor->grad, *g));
  for (int c = 0; cap && c < cap->n; c++)
    if (cap->nodes[c] == x && cap->outs[c] == k) FL_TRY(accumulate(&cap->grads[c], *g));
  return FL_OK;
}

/* Calls x's backward and sends each input's fitted gradient down its edge. */
static fl_status call_backward(fl_node *x, fl_tensor *const *gout, fl_tensor **gin, bool retain) {
  fl_status st = FL_OK;
  fl_tensor *fit = NULL;
  if (x->released)
    FL_CHECK(fl_error(FL_EAUTOGRAD,
                      "backward: trying to backward through the graph a second time (%s): its saved tensors "
                      "were freed; pass retain_graph = true to the first backward",
                      x->name));
  const char *outer = fl_profile_node(x->name);
  st = fl_error_context(x->backward(x, gout, gin), x->name);
  fl_profile_node(outer);
  FL_CHECK(st);
  for (int i = 0; i < x->n_in; i++) {
    fl_edge *e = &x->in[i];
    if (!e->node || !gin[i]) continue;
    FL_CHECK(fl_error_context(fit_to_edge(e, gin[i], &fit), x->name));
    FL_CHECK(accumulate(&e->node->out[e->output_nr].gbuf, fit));
    fl_release(fit);
    fit = NULL;
  }
  if (!retain) {
    fl_node_free_saved(x);
    x->released = true;
  }
done:
  fl_release(fit);
  return st;
}

static fl_status run_node(fl_node *x, bool retain, bool to_leaves, const capture *cap, nodevec *ready) {
  fl_status st = FL_OK;
  /* gout: one gradient per output, taken from the buffers; gin: one per input */
  fl_tensor **gout = calloc((size_t)x->n_out + (size_t)x->n_in, sizeof *gout), **gin = gout + x->n_out;
  bool any = false;
  if (!gout) {
    drop_gbufs(x);
    FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
  }
  for (int k = 0; k < x->n_out; k++) {
    gout[k] = x->out[k].gbuf;
    x->out[k].gbuf = NULL;
  }
  for (int k = 0; k < x->n_out; k++)
    if (gout[k]) {
      any = true;
      FL_CHECK(observe(x, k, &gout[k], cap));
    }
  if (any && !x->backward) { /* an accumulator */
    if (to_leaves && x->leaf) {
      FL_CHECK(store_leaf_grad(x->leaf, gout[0]));
      FL_CHECK(run_post_hooks(x));
    }
  } else if (any) {
    FL_CHECK(call_backward(x, gout, gin, retain));
  }
  for (int i = 0; i < x->n_in; i++) {
    fl_node *c = x->in[i].node;
    if (c && --c->deps == 0 && !vec_push(ready, c)) FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
  }
done:
  for (int i = 0; gout && i < x->n_out + x->n_in; i++) fl_release(gout[i]);
  free(gout);
  return st;
}

/* roots[r]'s output root_outs[r] starts with gradient root_grads[r]. */
static fl_status engine(int n_roots, fl_node *const *roots, const int *root_outs, fl_tensor *const *root_grads,
                        bool retain, bool to_leaves, const capture *cap) {
  fl_status st = FL_OK;
  nodevec all = {0}, ready = {0};
  /* A nested pass would overwrite the marks, counts and partial sums of the outer pass's nodes: only a
   * backward function that asks for it may start one, and its graph must not reach the outer pass's. */
  if (n_active > 0 && !fl_nested_backward_allowed())
    return fl_error(FL_EAUTOGRAD, "backward: cannot start a backward pass from a hook of another one");
  if (n_active == MAX_NESTED_PASSES) return fl_error(FL_EAUTOGRAD, "backward: too many nested backward passes");
  n_active++;
  bool prev = fl_set_grad_enabled(false);
  fl_dtype prev_ac = fl_autocast_get(); /* gradients run in the dtypes the forward chose */
  (void)fl_autocast_set(FL_NDTYPES, NULL);
  FL_CHECK(collect(n_roots, roots, &all));
  for (int r = 0; r < n_roots; r++) FL_CHECK(accumulate(&roots[r]->out[root_outs[r]].gbuf, root_grads[r]));
  for (int r = 0; r < n_roots; r++)
    if (roots[r]->deps == 0 && roots[r]->mark == epoch) {
      roots[r]->mark = -1; /* queued once even if listed twice */
      if (!vec_push(&ready, roots[r])) FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
    }
  while (ready.n > 0) FL_CHECK(run_node(ready.v[--ready.n], retain, to_leaves, cap, &ready));
done:
  for (int i = 0; i < all.n; i++) { /* partial sums left by an error, and the pass's references */
    drop_gbufs(all.v[i]);
    fl_node_release(all.v[i]);
  }
  fl_set_grad_enabled(prev);
  (void)fl_autocast_set(prev_ac, NULL);
  n_active--;
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
    return own_header(op, grad, g);
  }
  if (fl_numel(out) != 1)
    return fl_error(FL_EINVAL, "%s: grad can be implicit only for a single-element output, got %s", op, d.s);
  fl_opts o = {out->dtype, out->storage->device, false};
  return fl_ones(out->ndim, out->shape, o, g);
}

fl_status fl_backward(fl_tensor *out, fl_tensor *grad, bool retain_graph) {
  fl_status st = FL_OK;
  fl_tensor *g = NULL;
  int k;
  FL_CHECK(root_grad("backward", out, grad, &g));
  fl_node *root = fl_grad_target(out, &k);
  if (!root) FL_CHECK(fl_error(FL_ENOMEM, "backward: out of host memory"));
  FL_CHECK(engine(1, &root, &k, &g, retain_graph, true, NULL));
done:
  fl_release(g);
  return st;
}

fl_status fl_autograd_grad(int n_out, fl_tensor *const *outputs, fl_tensor *const *grad_outputs, int n_in,
                           fl_tensor *const *inputs, bool retain_graph, fl_tensor **grads) {
  fl_status st = FL_OK;
  fl_node **roots = calloc((size_t)n_out + 1, sizeof *roots);
  fl_node **targets = calloc((size_t)n_in + 1, sizeof *targets);
  int *root_outs = calloc((size_t)n_out + 1, sizeof *root_outs);
  int *target_outs = calloc((size_t)n_in + 1, sizeof *target_outs);
  fl_tensor **gs = calloc((size_t)n_out + 1, sizeof *gs);
  for (int i = 0; i < n_in; i++) grads[i] = NULL;
  if (!roots || !targets || !root_outs || !target_outs || !gs)
    FL_CHECK(fl_error(FL_ENOMEM, "autograd.grad: out of host memory"));
  for (int i = 0; i < n_in; i++) {
    if (!inputs[i]->requires_grad) {
      fl_desc d = fl_describe(inputs[i]);
      FL_CHECK(fl_error(FL_EAUTOGRAD, "autograd.grad: input %lld (%s) does not require grad", (long long)fl_mdim(i), d.s));
    }
    targets[i] = fl_grad_target(inputs[i], &target_outs[i]);
    if (!targets[i]) FL_CHECK(fl_error(FL_ENOMEM, "autograd.grad: out of host memory"));
  }
  for (int i = 0; i < n_out; i++) {
    FL_CHECK(root_grad("autograd.grad", outputs[i], grad_outputs ? grad_outputs[i] : NULL, &gs[i]));
    roots[i] = fl_grad_target(outputs[i], &root_outs[i]);
    if (!roots[i]) FL_CHECK(fl_error(FL_ENOMEM, "autograd.grad: out of host memory"));
  }
  capture cap = {n_in, targets, target_outs, grads};
  FL_CHECK(engine(n_out, roots, root_outs, gs, retain_graph, false, &cap));
done:
  if (st != FL_OK)
    for (int i = 0; i < n_in; i++) {
      fl_release(grads[i]);
      grads[i] = NULL;
    }
  for (int i = 0; gs && i < n_out; i++) fl_release(gs[i]);
  free(gs);
  free(roots);
  free(targets);
  free(root_outs);
  free(target_outs);
  return st;
}
